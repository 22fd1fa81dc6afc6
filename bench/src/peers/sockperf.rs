//! sockperf: ping-pong (one message in flight, like the closed loop) and
//! under-load (a fixed rate, like the open loop) over TCP, 768-byte
//! messages, every one answered.

use std::time::Duration;

use bench_report::stats::Figures;

use super::{
    run_client, seconds_for, Cells, ParseError, Parsed, Peer, PeerClient, PeerError, PeerServer,
    Placement, PEER_MESSAGE_SIZE,
};
use crate::Setting;

/// The peer.
pub struct Sockperf;

const NAME: &str = "sockperf";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(NAME, reason)
}

impl Peer for Sockperf {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tests(&self) -> &'static [&'static str] {
        &["ping-pong", "under-load"]
    }

    fn programs(&self) -> &'static [&'static str] {
        &["sockperf"]
    }

    fn parse(&self, output: &str) -> Result<Parsed, ParseError> {
        Ok((parse_figures(output)?, percentiles(output)))
    }

    fn measure(&self, bench: &mut dyn Cells, p: &Placement, setting: Setting) {
        let port = p.config.port().wrapping_add(1);
        let Some(server) = bench.peer_server(
            self,
            &server(p, port),
            &p.log("sockperf-server.log"),
            p,
            setting,
        ) else {
            return;
        };
        let rate = match calibrate(bench, p, port) {
            Ok(rate) => rate,
            Err(_) if bench.stopped() => return,
            Err(e) => {
                drop(server);
                let why = format!("sockperf calibration failed: {e}");
                bench.say(&why);
                return bench.fail_subject(self.name(), setting, &why);
            }
        };
        for packets in bench.packets(setting) {
            let pp = bench.peer_cell(self, "ping-pong", setting, packets, 1);
            let seconds = seconds_for(packets, rate);
            bench.run_peer_cell(self, p, pp, seconds + 60, &|rep| {
                let log = p.log(&format!("sockperf-pp-{packets}-{rep}.log"));
                (client(p, port, seconds, None), log)
            });
            let ul = bench.peer_cell(self, "under-load", setting, packets, 1);
            let missing = bench.missing_at(ul);
            if missing == 0 || bench.stopped() {
                continue;
            }
            match bench.open_rate(pp, ul) {
                Some(mps) => {
                    bench.set_target_rate(ul, mps);
                    #[allow(clippy::cast_precision_loss)]
                    let seconds = seconds_for(packets, mps as f64);
                    bench.run_peer_cell(self, p, ul, seconds + 60, &|rep| {
                        let log = p.log(&format!("sockperf-ul-{packets}-{rep}.log"));
                        (client(p, port, seconds, Some(mps)), log)
                    });
                }
                None => bench.fail(
                    ul,
                    missing,
                    "no ping-pong rate to derive the under-load rate from",
                ),
            }
        }
        drop(server);
    }
}

/// sockperf is bounded by time, not count: a 1-second ping-pong gives the
/// rate that turns each count into a duration. Under loss a 1-second
/// sample holds a handful of retransmission stalls at most, so a slow link
/// is measured again over 5 seconds.
fn calibrate(bench: &dyn Cells, p: &Placement, port: u16) -> Result<f64, PeerError> {
    let measure = |seconds: u64, log: &str| -> Result<Figures, PeerError> {
        let output = run_client(
            p,
            &client(p, port, seconds, None),
            &p.log(log),
            Duration::from_secs(60),
            bench.interrupted(),
        )?;
        Ok(parse_figures(&output.text)?)
    };
    let calibration = match measure(1, "sockperf-calibration.log") {
        Ok(f) if f.messages_per_s.is_some_and(|r| r < 2000.0) => {
            measure(5, "sockperf-calibration-5s.log")
        }
        other => other,
    };
    match calibration? {
        Figures {
            messages_per_s: Some(rate),
            ..
        } if rate > 0.0 => Ok(rate),
        _ => Err(PeerError::NoRate { tool: NAME }),
    }
}

/// The sockperf server (`sr`) on `port`.
#[must_use]
pub fn server(p: &Placement, port: u16) -> PeerServer {
    PeerServer::Sockperf {
        address: p.server,
        port,
        nonblocked: p.busy_poll,
    }
}

/// A sockperf client: `pp` (ping-pong) when `mps` is `None`, else `ul`
/// (under-load) at `mps` messages per second; every message is answered.
#[must_use]
pub fn client(p: &Placement, port: u16, seconds: u64, mps: Option<u64>) -> PeerClient {
    PeerClient::Sockperf {
        server: p.server_at(port),
        message_size: u32::try_from(PEER_MESSAGE_SIZE).unwrap_or(u32::MAX),
        seconds,
        mps,
        nonblocked: p.busy_poll,
    }
}

/// sockperf's percentile lines, as (quantile 0..=1, µs) pairs, MIN and MAX
/// included: a coarse CDF.
#[must_use]
pub fn percentiles(text: &str) -> Vec<(f64, f64)> {
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
pub fn parse_figures(text: &str) -> Result<Figures, ParseError> {
    let text = strip_ansi(text);
    let valid = text
        .lines()
        .find(|l| l.contains("[Valid Duration]"))
        .ok_or_else(|| err("no `[Valid Duration]` line in its output"))?;
    let field = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let run_s =
        field(valid, "RunTime=").ok_or_else(|| err("no RunTime in the Valid Duration line"))?;
    let received = field(valid, "ReceivedMessages=")
        .ok_or_else(|| err("no ReceivedMessages in the Valid Duration line"))?;
    let mean = text
        .lines()
        .find_map(|l| field(l, "avg-rtt="))
        .ok_or_else(|| err("no avg-rtt in its output (was --full-rtt given?)"))?;
    let points = percentiles(&text);
    let at = |q: f64| {
        points
            .iter()
            .find(|(pq, _)| (pq - q).abs() < 1e-9)
            .map(|p| p.1)
    };
    if run_s <= 0.0 || received <= 0.0 {
        return Err(err(format!(
            "no message exchanged ({received} in {run_s} s)"
        )));
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
        ..Figures::default()
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
    fn output_parses() {
        let f = parse_figures(PP).unwrap();
        assert_eq!(f.messages, Some(19527.0));
        assert_eq!(f.elapsed_s, Some(0.55));
        assert!((f.messages_per_s.unwrap() - 19527.0 / 0.55).abs() < 1e-6);
        assert_eq!(f.rtt_mean_us, Some(28.15));
        assert_eq!(f.rtt_p50_us, Some(12.408));
        assert_eq!(f.rtt_p99_us, Some(20.26));
        assert_eq!(f.rtt_p999_us, Some(5196.847));
        assert_eq!(f.rtt_max_us, Some(23973.174));
        let cdf = percentiles(PP);
        assert_eq!(cdf.first(), Some(&(0.0, 11.216)));
        assert_eq!(cdf.last().map(|p| p.0), Some(1.0));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_figures("").is_err());
        assert!(parse_figures("sockperf: [Valid Duration] RunTime=x").is_err());
        let no_traffic =
            "[Valid Duration] RunTime=0.5 sec; SentMessages=0; ReceivedMessages=0\navg-rtt=0";
        assert!(parse_figures(no_traffic).is_err());
    }
}
