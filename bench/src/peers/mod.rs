//! The peers measured beside the engines on the same testbed: sockperf
//! (ping-pong and under-load over TCP), iperf3 (bulk) and netperf TCP_RR.
//! Servers run in NS3 on the engine's core, clients in NS1 on the load
//! generator's core, both pinned with `taskset`.
//!
//! Parsing is kept apart from running: the `parse_*` functions turn a tool's
//! output into [`Figures`] and never panic on odd text.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use bench_report::stats::Figures;
use testbed::config::TestbedConfig;
use testbed::host::process;
use testbed::net;

/// The message size given to the peers: the mean of the loadgen's uniform
/// 512..=1024 sizes.
pub const PEER_MESSAGE_SIZE: u64 = 768;

/// A peer tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    /// sockperf ping-pong and under-load, TCP, 768-byte messages.
    Sockperf,
    /// iperf3 bulk TCP bandwidth.
    Iperf3,
    /// netperf TCP_RR with 768-byte requests and 4-byte responses.
    Netperf,
}

impl Peer {
    /// Its name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sockperf => "sockperf",
            Self::Iperf3 => "iperf3",
            Self::Netperf => "netperf",
        }
    }

    /// Programs it needs.
    fn programs(self) -> &'static [&'static str] {
        match self {
            Self::Sockperf => &["sockperf"],
            Self::Iperf3 => &["iperf3"],
            Self::Netperf => &["netperf", "netserver"],
        }
    }

    /// Whether every program is installed; otherwise why it is skipped.
    ///
    /// # Errors
    /// The reason, for the report.
    pub fn detect(self) -> Result<(), String> {
        let missing: Vec<&str> = self
            .programs()
            .iter()
            .copied()
            .filter(|p| find_program(p).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(match self {
            Self::Netperf => format!(
                "{} not installed: netperf is not in Debian's main archive (non-free, or build it from source), so it is measured only where the user installed it",
                missing.join(" and ")
            ),
            _ => format!(
                "{} not installed (Debian package `{}`; scripts/setup and scripts/bench install it)",
                missing.join(", "),
                self.as_str()
            ),
        })
    }
}

/// The full path of `program` in PATH.
#[must_use]
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Where a peer runs: namespaces, cores, address and the logs directory.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The testbed.
    pub config: TestbedConfig,
    /// Server address (NS3).
    pub server: String,
    /// Directory for the tools' raw output.
    pub log_dir: PathBuf,
    /// Spin on non-blocking sockets (sockperf `--nonblocked`).
    pub busy_poll: bool,
}

impl Placement {
    fn pinned(&self, ns: &str, core: usize, program: &str) -> Command {
        let mut c = net::in_namespace(ns, "taskset");
        c.arg("-c").arg(core.to_string()).arg(program);
        c
    }

    fn server_cmd(&self, program: &str) -> Command {
        self.pinned(
            &self.config.server_ns(),
            self.config.cores().engine,
            program,
        )
    }

    fn client_cmd(&self, program: &str) -> Command {
        self.pinned(
            &self.config.client_ns(),
            self.config.cores().loadgen,
            program,
        )
    }
}

/// The command line of `c`, for the report.
#[must_use]
pub fn describe(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A server process in NS3, stopped (by its pid) when dropped.
pub struct Server {
    child: Option<Child>,
    /// Its command line.
    pub command: String,
    log: PathBuf,
}

impl Server {
    /// Starts `command` with output to `log`, and waits (at most 10 s) until
    /// something listens on TCP `port` in NS3.
    ///
    /// # Errors
    /// It cannot start, dies, or does not listen in time.
    pub fn start(
        mut command: Command,
        log: PathBuf,
        config: &TestbedConfig,
        port: u16,
    ) -> Result<Self, String> {
        let text = describe(&command);
        let out = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("duplicating {}: {e}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting `{text}`: {e}"))?;
        let mut server = Self {
            child: Some(child),
            command: text,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = server.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    server.child = None;
                    return Err(format!(
                        "`{}` exited at start ({}): {}",
                        server.command,
                        process::Ending::from_status(status),
                        tail(&server.log)
                    ));
                }
            }
            if listening(config, port) {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "`{}` did not listen on port {port} within 10 s: {}",
                    server.command,
                    tail(&server.log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a one-off server (iperf3 -1) to finish, at most `limit`.
    pub fn finish(mut self, limit: Duration) {
        if let Some(child) = self.child.as_mut() {
            let _ = process::wait_timeout(child, limit);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = process::terminate(&mut child, Duration::from_secs(3));
        }
    }
}

fn listening(config: &TestbedConfig, port: u16) -> bool {
    let out = net::in_namespace(&config.server_ns(), "ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .stderr(Stdio::null())
        .output();
    out.is_ok_and(|o| o.status.success() && !o.stdout.trim_ascii().is_empty())
}

fn tail(path: &Path) -> String {
    testbed::run::session::log_tail(path)
}

/// What a client run printed, with its command line.
#[derive(Debug, Clone)]
pub struct ClientOutput {
    /// The command line.
    pub command: String,
    /// stdout and stderr, concatenated.
    pub text: String,
}

/// Runs a client to completion, at most `limit`; stops it (by its pid) on
/// timeout or when `interrupted` is raised.
///
/// # Errors
/// It cannot start, fails, times out or is interrupted.
pub fn run_client(
    mut command: Command,
    log: &Path,
    limit: Duration,
    interrupted: &AtomicBool,
) -> Result<ClientOutput, String> {
    let text = describe(&command);
    let out = File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("duplicating {}: {e}", log.display()))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("starting `{text}`: {e}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if interrupted.load(Ordering::Relaxed) {
            let _ = process::terminate(&mut child, Duration::from_secs(3));
            return Err("interrupted".into());
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for `{text}`: {e}")),
        }
        if Instant::now() >= deadline {
            let _ = process::terminate(&mut child, Duration::from_secs(3));
            return Err(format!(
                "`{text}` did not finish within {} s",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(log).unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "`{text}` failed ({}): {}",
            process::Ending::from_status(status),
            tail(log)
        ));
    }
    Ok(ClientOutput {
        command: text,
        text: output,
    })
}

// ---- sockperf ----

/// The sockperf server command (`sr`) on `port`.
#[must_use]
pub fn sockperf_server(p: &Placement, port: u16) -> Command {
    let mut c = p.server_cmd("sockperf");
    c.args(["sr", "--tcp", "-i", &p.server, "-p", &port.to_string()]);
    if p.busy_poll {
        c.arg("--nonblocked");
    }
    c
}

/// A sockperf client: `pp` (ping-pong) when `mps` is `None`, else `ul`
/// (under-load) at `mps` messages per second; every message is answered.
#[must_use]
pub fn sockperf_client(p: &Placement, port: u16, seconds: u64, mps: Option<u64>) -> Command {
    let mut c = p.client_cmd("sockperf");
    c.arg(if mps.is_some() { "ul" } else { "pp" });
    c.args([
        "--tcp",
        "-i",
        &p.server,
        "-p",
        &port.to_string(),
        "-m",
        &PEER_MESSAGE_SIZE.to_string(),
        "-t",
        &seconds.to_string(),
        "--full-rtt",
    ]);
    if let Some(mps) = mps {
        c.args(["--mps", &mps.to_string(), "--reply-every", "1"]);
    }
    if p.busy_poll {
        c.arg("--nonblocked");
    }
    c
}

/// sockperf's percentile lines, as (quantile 0..=1, µs) pairs, MIN and MAX
/// included: a coarse CDF.
#[must_use]
pub fn sockperf_percentiles(text: &str) -> Vec<(f64, f64)> {
    let text = strip_ansi(text);
    let mut points = Vec::new();
    for line in text.lines() {
        let Some((_, rest)) = line.split_once("--->") else {
            continue;
        };
        let Some((key, value)) = rest.split_once('=') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let key = key.trim();
        let q = if key.contains("<MAX>") {
            Some(1.0)
        } else if key.contains("<MIN>") {
            Some(0.0)
        } else {
            key.strip_prefix("percentile")
                .and_then(|p| p.trim().parse::<f64>().ok())
                .map(|p| p / 100.0)
        };
        if let Some(q) = q {
            points.push((q, value));
        }
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// Figures of a sockperf `pp` or `ul` run with `--full-rtt`: messages and
/// rate from the "Valid Duration" line (warm-up excluded), RTT from
/// `avg-rtt` and the percentile lines. Bandwidth counts request bytes, as
/// the engines' rows do.
///
/// # Errors
/// A line the figures need is missing.
pub fn parse_sockperf(text: &str) -> Result<Figures, String> {
    let text = strip_ansi(text);
    let valid = text
        .lines()
        .find(|l| l.contains("[Valid Duration]"))
        .ok_or("no `[Valid Duration]` line in sockperf's output")?;
    let field = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let run_s = field(valid, "RunTime=").ok_or("no RunTime in the Valid Duration line")?;
    let received = field(valid, "ReceivedMessages=")
        .ok_or("no ReceivedMessages in the Valid Duration line")?;
    let mean = text
        .lines()
        .find_map(|l| field(l, "avg-rtt="))
        .ok_or("no avg-rtt in sockperf's output (was --full-rtt given?)")?;
    let points = sockperf_percentiles(&text);
    let at = |q: f64| {
        points
            .iter()
            .find(|(pq, _)| (pq - q).abs() < 1e-9)
            .map(|p| p.1)
    };
    if run_s <= 0.0 || received <= 0.0 {
        return Err(format!(
            "sockperf exchanged no message ({received} in {run_s} s)"
        ));
    }
    #[allow(clippy::cast_precision_loss)]
    let size = PEER_MESSAGE_SIZE as f64;
    Ok(Figures {
        messages: Some(received),
        elapsed_s: Some(run_s),
        messages_per_s: Some(received / run_s),
        bandwidth_kb_s: Some(received * size / run_s / 1000.0),
        rtt_mean_us: Some(mean),
        rtt_p50_us: at(0.5),
        rtt_p99_us: at(0.99),
        rtt_p999_us: at(0.999),
        rtt_max_us: at(1.0),
    })
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---- iperf3 ----

/// The one-off iperf3 server on `port`.
#[must_use]
pub fn iperf3_server(p: &Placement, port: u16) -> Command {
    let mut c = p.server_cmd("iperf3");
    c.args(["-s", "-1", "-p", &port.to_string()]);
    c
}

/// An iperf3 client moving `bytes` from NS1 to NS3, JSON output.
#[must_use]
pub fn iperf3_client(p: &Placement, port: u16, bytes: u64) -> Command {
    let mut c = p.client_cmd("iperf3");
    c.args([
        "-c",
        &p.server,
        "-p",
        &port.to_string(),
        "-n",
        &bytes.to_string(),
        "-J",
    ]);
    c
}

/// Figures of `iperf3 -J`: bandwidth from what the receiver got
/// (`end.sum_received`), and the sender's mean smoothed RTT from TCP_INFO
/// as the only latency figure iperf3 has.
///
/// # Errors
/// Not iperf3's JSON, or an error reported in it.
pub fn parse_iperf3(text: &str) -> Result<Figures, String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("iperf3 printed no JSON: {e}"))?;
    if let Some(err) = doc.get("error").and_then(|e| e.as_str()) {
        return Err(format!("iperf3: {err}"));
    }
    let received = doc
        .pointer("/end/sum_received")
        .ok_or("iperf3 JSON has no end.sum_received")?;
    let bytes = received
        .get("bytes")
        .and_then(serde_json::Value::as_f64)
        .ok_or("iperf3 JSON: no received bytes")?;
    let seconds = received
        .get("seconds")
        .and_then(serde_json::Value::as_f64)
        .ok_or("iperf3 JSON: no receive time")?;
    if bytes <= 0.0 || seconds <= 0.0 {
        return Err(format!("iperf3 moved nothing ({bytes} B in {seconds} s)"));
    }
    let mean_rtt = doc
        .pointer("/end/streams/0/sender/mean_rtt")
        .and_then(serde_json::Value::as_f64);
    #[allow(clippy::cast_precision_loss)]
    let size = PEER_MESSAGE_SIZE as f64;
    Ok(Figures {
        // In 768-byte units, so the row compares with the same count.
        messages: Some(bytes / size),
        elapsed_s: Some(seconds),
        messages_per_s: None,
        bandwidth_kb_s: Some(bytes / seconds / 1000.0),
        rtt_mean_us: mean_rtt,
        ..Figures::default()
    })
}

// ---- netperf ----

/// netserver in the foreground on `port`.
#[must_use]
pub fn netperf_server(p: &Placement, port: u16) -> Command {
    let mut c = p.server_cmd("netserver");
    c.args(["-D", "-p", &port.to_string()]);
    c
}

/// netperf TCP_RR with `transactions` 768-byte requests and 4-byte
/// responses (the engines' protocol), key=value output.
#[must_use]
pub fn netperf_client(p: &Placement, port: u16, transactions: u64) -> Command {
    let mut c = p.client_cmd("netperf");
    c.args([
        "-H",
        &p.server,
        "-p",
        &port.to_string(),
        "-t",
        "TCP_RR",
        "-l",
        &format!("-{transactions}"),
        "-P",
        "0",
        "--",
        "-r",
        &format!("{PEER_MESSAGE_SIZE},4"),
        "-k",
        "THROUGHPUT,ELAPSED_TIME,MEAN_LATENCY,P50_LATENCY,P99_LATENCY,MAX_LATENCY,TRANSACTION_RATE",
    ]);
    c
}

/// Figures of netperf's key=value output. Latency percentiles exist only
/// when netperf was built with histograms; a missing or negative one is
/// `None`.
///
/// # Errors
/// No transaction rate in the output.
pub fn parse_netperf(text: &str) -> Result<Figures, String> {
    let value = |key: &str| -> Option<f64> {
        text.lines()
            .filter_map(|l| l.trim().split_once('='))
            .find(|(k, _)| k.trim() == key)
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let rate = value("TRANSACTION_RATE")
        .or_else(|| value("THROUGHPUT"))
        .filter(|r| *r > 0.0)
        .ok_or("netperf printed no transaction rate")?;
    let elapsed = value("ELAPSED_TIME");
    #[allow(clippy::cast_precision_loss)]
    let size = PEER_MESSAGE_SIZE as f64;
    Ok(Figures {
        messages: elapsed.map(|e| (rate * e).round()),
        elapsed_s: elapsed,
        messages_per_s: Some(rate),
        bandwidth_kb_s: Some(rate * size / 1000.0),
        rtt_mean_us: value("MEAN_LATENCY"),
        rtt_p50_us: value("P50_LATENCY"),
        rtt_p99_us: value("P99_LATENCY"),
        rtt_p999_us: None,
        rtt_max_us: value("MAX_LATENCY"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PP: &str = "sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m
sockperf: [Total Run] RunTime=1.002 sec; Warm up time=400 msec; SentMessages=29093; ReceivedMessages=29092
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=0.550 sec; SentMessages=19527; ReceivedMessages=19527
sockperf: \x1b[2;35m====> avg-rtt=28.150 (std-dev=372.279)\x1b[0m
sockperf: ---> <MAX> observation = 23973.174
sockperf: ---> percentile 99.999 = 23973.174
sockperf: ---> percentile 99.990 = 14924.033
sockperf: ---> percentile 99.900 = 5196.847
sockperf: ---> percentile 99.000 =   20.260
sockperf: ---> percentile 90.000 =   13.820
sockperf: ---> percentile 50.000 =   12.408
sockperf: ---> <MIN> observation =   11.216
";

    #[test]
    fn sockperf_output_parses() {
        let f = parse_sockperf(PP).unwrap();
        assert_eq!(f.messages, Some(19527.0));
        assert_eq!(f.elapsed_s, Some(0.55));
        assert!((f.messages_per_s.unwrap() - 19527.0 / 0.55).abs() < 1e-6);
        assert_eq!(f.rtt_mean_us, Some(28.15));
        assert_eq!(f.rtt_p50_us, Some(12.408));
        assert_eq!(f.rtt_p99_us, Some(20.26));
        assert_eq!(f.rtt_p999_us, Some(5196.847));
        assert_eq!(f.rtt_max_us, Some(23973.174));
        let cdf = sockperf_percentiles(PP);
        assert_eq!(cdf.first(), Some(&(0.0, 11.216)));
        assert_eq!(cdf.last().map(|p| p.0), Some(1.0));
    }

    #[test]
    fn sockperf_garbage_is_an_error() {
        assert!(parse_sockperf("").is_err());
        assert!(parse_sockperf("sockperf: [Valid Duration] RunTime=x").is_err());
        let no_traffic =
            "[Valid Duration] RunTime=0.5 sec; SentMessages=0; ReceivedMessages=0\navg-rtt=0";
        assert!(parse_sockperf(no_traffic).is_err());
    }

    #[test]
    fn iperf3_json_parses() {
        let doc = r#"{"start":{},"end":{"streams":[{"sender":{"mean_rtt":42}}],
            "sum_sent":{"bytes":7864320,"seconds":0.0013},
            "sum_received":{"bytes":7680000,"seconds":0.0075}}}"#;
        let f = parse_iperf3(doc).unwrap();
        assert_eq!(f.messages, Some(10000.0));
        assert!((f.bandwidth_kb_s.unwrap() - 7680000.0 / 0.0075 / 1000.0).abs() < 1e-6);
        assert_eq!(f.rtt_mean_us, Some(42.0));
        assert!(parse_iperf3(r#"{"error":"unable to connect"}"#).is_err());
        assert!(parse_iperf3("not json").is_err());
    }

    #[test]
    fn netperf_keyval_parses() {
        let text = "THROUGHPUT=12000.50\nELAPSED_TIME=2.00\nMEAN_LATENCY=83.2\nP50_LATENCY=80\nP99_LATENCY=-1\nMAX_LATENCY=400\nTRANSACTION_RATE=12000.50\n";
        let f = parse_netperf(text).unwrap();
        assert_eq!(f.messages_per_s, Some(12000.5));
        assert_eq!(f.messages, Some(24001.0));
        assert_eq!(f.rtt_p99_us, None);
        assert_eq!(f.rtt_p50_us, Some(80.0));
        assert!(parse_netperf("nothing").is_err());
    }
}
