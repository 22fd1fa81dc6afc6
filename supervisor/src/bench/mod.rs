//! `supervisor bench`: the experiment's report in one command.
//!
//! For each testbed (impairment off and on), each engine this build and host
//! can run, and each message count, the load generator runs R times closed
//! loop, then R times open loop at a fixed fraction of the closed loop's
//! median rate. On the same testbed, in the same run, the peers: sockperf
//! ping-pong and under-load (768-byte messages, the mean of 512..=1024),
//! iperf3 bulk (the same bytes as the count's requests) and netperf TCP_RR
//! where installed. Everything lands in DIR: `results.json`, `results.md`
//! and SVG/PNG plots.
//!
//! Bottom-up: [`stats`] (median, spread, flags), [`peers`] (running and
//! parsing the peer tools), [`report`] (the document and its markdown),
//! [`plot`] (the figures); [`run`] drives the matrix.

pub mod peers;
pub mod plot;
pub mod report;
pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use shm_layout::{Role, Segment};

use self::peers::{Peer, Placement, Server, PEER_MESSAGE_SIZE};
use self::report::{Availability, Cell, HostFacts, Results, RunRecord, TestbedRecord};
use self::stats::Figures;
use crate::config::{BackendChoice, ConfigError, Impairment, TestbedConfig};
use crate::lifecycle::attach::{self, LoadOptions, ResultRow};
use crate::lifecycle::bypass::Pmd;
use crate::lifecycle::session::{self, EngineKind, Run, StartOptions};
use crate::lifecycle::LifecycleError;
use crate::net;

/// Exit code: a run lost messages, failed, or a plot could not be drawn
/// (the report is written all the same).
pub const EXIT_INCOMPLETE: i32 = 1;
/// Exit code: stopped by SIGINT/SIGTERM (partial report written).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Impairment setting of a testbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    /// A plain bridge.
    Off,
    /// The configured delay and loss (the defaults when the config has none).
    On,
}

impl Setting {
    fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
        }
    }
}

/// `supervisor bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Engines to measure; one this build or host cannot run is listed with the reason.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kernel,dpdk,fstack"
    )]
    pub engines: Vec<EngineKind>,
    /// Message counts: one row of the table each.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub packets: Vec<u64>,
    /// Testbeds: without impairment (off) and with it (on).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "off,on")]
    pub impairment: Vec<Setting>,
    /// Peer tools measured on the same path; a missing one is listed as skipped.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sockperf,iperf3,netperf"
    )]
    pub peers: Vec<Peer>,
    /// Output directory (created): results.json, results.md, plots/, logs/.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// Runs per cell; the report gives the median and the spread.
    #[arg(long, default_value_t = 3)]
    pub repetitions: u32,
    /// Open-loop rate as a fraction of the median closed-loop rate (and
    /// sockperf under-load as a fraction of its ping-pong rate).
    #[arg(long, default_value_t = 0.8)]
    pub open_fraction: f64,
    /// Kernel engine, loadgen and sockperf spin on non-blocking sockets.
    #[arg(long)]
    pub busy_poll: bool,
    /// Poll-mode driver of the bypass engines: af_xdp, af_packet or pci:DDDD:BB:DD.F.
    #[arg(long, default_value = "af_xdp")]
    pub pmd: Pmd,
    /// Warm-up messages of each loadgen run (excluded from its figures).
    #[arg(long, default_value_t = 1000)]
    pub warmup: u64,
    /// Testbed configuration the two testbeds derive from (default:
    /// config/testbed.toml if present, else built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory of the `engine` and `loadgen` binaries (default: beside this one).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// Why the bench could not run or report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A bad option value.
    #[error("{option} {value}: {reason}")]
    BadOption {
        /// The option.
        option: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The testbed configuration.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The output directory cannot be written.
    #[error("cannot write the report to {path}: {source}")]
    Output {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A testbed network could not be built.
    #[error("testbed `{testbed}`: {message}")]
    Network {
        /// Testbed name.
        testbed: String,
        /// What failed.
        message: String,
    },
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

impl BenchArgs {
    fn validate(&self) -> Result<(), BenchError> {
        let bad = |option, value: String, reason: &str| BenchError::BadOption {
            option,
            value,
            reason: reason.to_owned(),
        };
        if self.packets.is_empty() || self.packets.contains(&0) {
            return Err(bad(
                "--packets",
                format!("{:?}", self.packets),
                "every count must be at least 1",
            ));
        }
        if self.engines.is_empty() && self.peers.is_empty() {
            return Err(bad(
                "--engines/--peers",
                String::new(),
                "nothing to measure",
            ));
        }
        if self.impairment.is_empty() {
            return Err(bad("--impairment", String::new(), "give off, on or both"));
        }
        if self.repetitions == 0 || self.repetitions > 100 {
            return Err(bad(
                "--repetitions",
                self.repetitions.to_string(),
                "must be within 1..=100",
            ));
        }
        if !(self.open_fraction > 0.0 && self.open_fraction <= 1.0) {
            return Err(bad(
                "--open-fraction",
                self.open_fraction.to_string(),
                "must be within (0, 1]",
            ));
        }
        Ok(())
    }
}

/// Creates the output directory and proves it writable, before minutes of
/// measurement.
fn prepare_out(out: &Path) -> Result<(), BenchError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| BenchError::Output { path, source }
    };
    for dir in [out.to_owned(), out.join("plots"), out.join("logs")] {
        std::fs::create_dir_all(&dir).map_err(err(&dir))?;
    }
    let probe = out.join(".write-test");
    std::fs::write(&probe, b"").map_err(err(&probe))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BenchError> {
    std::fs::write(path, bytes).map_err(|source| BenchError::Output {
        path: path.to_owned(),
        source,
    })
}

/// UTC time as ISO 8601, from the system clock.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn git_revision() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "HEAD"]) {
        None => "unknown (not run from a git checkout)".to_owned(),
        Some(rev) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
    }
}

fn host_facts() -> HostFacts {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown CPU".to_owned(), |(_, v)| v.trim().to_owned());
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024);
    HostFacts {
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        cpu,
        cores: crate::config::host_cores(),
        memory_mib,
        loadavg_start: loadavg(),
        loadavg_end: String::new(),
        doctor: serde_json::to_value(crate::doctor::run()).unwrap_or_default(),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Kinds compiled into the engine binary: `engine --list-kinds` (a JSON
/// list or map of kinds with availability and reason) where the binary
/// has it; otherwise kernel and dpdk are built in and fstack is not.
fn compiled_kinds(bin_dir: &Path) -> Vec<(String, Result<(), String>)> {
    let listed = session::binary(bin_dir, "engine").ok().and_then(|bin| {
        std::process::Command::new(bin)
            .arg("--list-kinds")
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
    });
    if let Some(kinds) = listed.as_ref().and_then(parse_kind_list) {
        return kinds;
    }
    vec![
        ("kernel".into(), Ok(())),
        ("dpdk".into(), Ok(())),
        (
            "fstack".into(),
            Err("engine built without the `fstack` feature".into()),
        ),
    ]
}

/// Reads `engine --list-kinds`: `[{"kind"|"name": .., "available": bool,
/// "reason": ..}]`, `{"kinds": [...]}` or `{"kernel": {"available": ..}}`.
fn parse_kind_list(v: &serde_json::Value) -> Option<Vec<(String, Result<(), String>)>> {
    let entry = |name: String, e: &serde_json::Value| {
        let available = e
            .get("available")
            .and_then(serde_json::Value::as_bool)
            .or_else(|| e.as_bool())
            .unwrap_or(true);
        let reason = e
            .get("reason")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("not available in this build")
            .to_owned();
        (name, if available { Ok(()) } else { Err(reason) })
    };
    let list = v.get("kinds").unwrap_or(v);
    if let Some(items) = list.as_array() {
        let out: Vec<_> = items
            .iter()
            .filter_map(|e| {
                let name = e
                    .get("kind")
                    .or_else(|| e.get("name"))
                    .and_then(serde_json::Value::as_str)
                    .or_else(|| e.as_str())?;
                Some(entry(name.to_owned(), e))
            })
            .collect();
        return (!out.is_empty()).then_some(out);
    }
    let map = list.as_object()?;
    let out: Vec<_> = map.iter().map(|(k, e)| entry(k.clone(), e)).collect();
    (!out.is_empty()).then_some(out)
}

/// Which requested engines can run here, and why not.
fn engine_availability(
    requested: &[EngineKind],
    bin_dir: &Path,
    doctor: &serde_json::Value,
) -> Vec<(EngineKind, Availability)> {
    let compiled = compiled_kinds(bin_dir);
    let host_engines: Vec<&str> = doctor
        .get("engines")
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    let doctor_reason = |kind: &str| {
        doctor
            .get("checks")
            .and_then(serde_json::Value::as_array)
            .and_then(|checks| {
                checks
                    .iter()
                    .find(|c| c.get("name").and_then(serde_json::Value::as_str) == Some(kind))
            })
            .map(|c| {
                format!(
                    "this host cannot run it (doctor: {}; {})",
                    c.get("detail")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or(""),
                    c.get("consequence")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("")
                )
            })
            .unwrap_or_else(|| "this host cannot run it (see `supervisor doctor`)".to_owned())
    };
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for &kind in requested {
        if seen.contains(&kind) {
            continue;
        }
        seen.push(kind);
        let name = kind.as_str();
        let reason = match compiled.iter().find(|(k, _)| k == name) {
            None => Some("the engine binary does not list this kind".to_owned()),
            Some((_, Err(why))) => Some(why.clone()),
            Some((_, Ok(()))) if !host_engines.contains(&name) => Some(doctor_reason(name)),
            Some((_, Ok(()))) => None,
        };
        out.push((
            kind,
            Availability {
                name: name.to_owned(),
                available: reason.is_none(),
                reason,
            },
        ));
    }
    out
}

/// The testbed of one setting: the base config renamed (unique to this
/// process) with impairment off, or on (the configured one, else the
/// defaults: 100 µs, 1 %).
fn testbed_for(base: &TestbedConfig, setting: Setting) -> Result<TestbedConfig, BenchError> {
    let tag = match setting {
        Setting::Off => 'o',
        Setting::On => 'i',
    };
    let named = base
        .clone()
        .with_name(&format!("b{tag}{}", std::process::id()))?;
    let configured = base.impairment().clone();
    let impairment = match setting {
        Setting::Off => Impairment {
            backend: BackendChoice::None,
            delay_us: 0,
            jitter_us: 0,
            loss_percent: 0.0,
            ..configured
        },
        Setting::On if configured.backend == BackendChoice::None || configured.is_noop() => {
            TestbedConfig::default().impairment().clone()
        }
        Setting::On => configured,
    };
    Ok(named.with_impairment(impairment)?)
}

/// One line: the impairment backend in force and its configuration.
fn describe_impairment(status: &net::NetStatus) -> String {
    let i = &status.impairment;
    match i.backend.as_deref() {
        None => "testbed not up".to_owned(),
        Some("none") => "none (plain bridge)".to_owned(),
        Some(backend) => format!(
            "{backend}: {} µs delay, {} % loss, {}",
            i.configured.delay_us,
            i.configured.loss_percent,
            i.configured.direction.as_str()
        ),
    }
}

/// Removes the testbed network when dropped (also on errors and signals).
struct NetGuard {
    config: TestbedConfig,
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        if let Err(e) = net::down(&self.config) {
            eprintln!(
                "supervisor: cleanup problem: testbed `{}` network down: {e}",
                self.config.name()
            );
        }
    }
}

/// The matrix in progress.
struct Bench<'a> {
    args: &'a BenchArgs,
    bin_dir: PathBuf,
    progress: ProgressBar,
    interrupted: Arc<AtomicBool>,
    cells: Vec<Cell>,
    problems: Vec<String>,
}

impl Bench<'_> {
    fn say(&self, line: &str) {
        if self.progress.is_hidden() {
            eprintln!("supervisor: {line}");
        } else {
            self.progress.println(format!("supervisor: {line}"));
        }
    }

    fn stopped(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    fn reps(&self) -> u64 {
        u64::from(self.args.repetitions)
    }

    fn load(&self, mode: &str, rate: Option<u64>) -> LoadOptions {
        LoadOptions {
            connections: 1,
            loadgen_busy_poll: self.args.busy_poll,
            mode: mode.to_owned(),
            rate,
            seed: 1,
            min_size: 512,
            max_size: 1024,
            warmup: self.args.warmup,
            timeout_ms: 5000,
        }
    }

    /// Every engine on one testbed: start, each count closed then open, stop.
    fn engines(&mut self, config: &TestbedConfig, setting: Setting, engines: &[EngineKind]) {
        for &engine in engines {
            if self.stopped() {
                return;
            }
            let options = StartOptions {
                engine,
                busy_poll: self.args.busy_poll,
                bin_dir: self.bin_dir.clone(),
                clean_leftovers: true,
                ready_timeout: Duration::from_secs(30),
                pmd: self.args.pmd.clone(),
            };
            self.progress.set_message(format!(
                "{} engine {}: starting",
                setting.as_str(),
                engine.as_str()
            ));
            let progress = self.progress.clone();
            let started = Run::start(config.clone(), &options, &mut |l| {
                if progress.is_hidden() {
                    eprintln!("supervisor: {l}");
                } else {
                    progress.println(format!("supervisor: {l}"));
                }
            });
            let mut run = match started {
                Ok(run) => run,
                Err(e) => {
                    let why = format!("the {} engine did not start: {e}", engine.as_str());
                    self.say(&why);
                    for &packets in &self.args.packets {
                        for test in ["closed", "open"] {
                            let mut cell = Cell::new(
                                engine.as_str(),
                                "engine",
                                test,
                                setting.as_str(),
                                packets,
                            );
                            cell.errors.push(why.clone());
                            self.cells.push(cell);
                            self.progress.inc(packets * self.reps());
                        }
                    }
                    continue;
                }
            };
            let mut died: Option<String> = None;
            for &packets in &self.args.packets {
                let mut closed = Cell::new(
                    engine.as_str(),
                    "engine",
                    "closed",
                    setting.as_str(),
                    packets,
                );
                let mut open =
                    Cell::new(engine.as_str(), "engine", "open", setting.as_str(), packets);
                if let Some(why) = &died {
                    closed.errors.push(why.clone());
                    open.errors.push(why.clone());
                    self.progress.inc(2 * packets * self.reps());
                } else {
                    let load = self.load("closed", None);
                    self.engine_cell(config, &mut run, &mut closed, &load);
                    closed.aggregate();
                    match closed.aggregate.median.messages_per_s {
                        Some(rate) if rate >= 1.0 => {
                            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                            let target = (rate * self.args.open_fraction).round().max(1.0) as u64;
                            open.target_rate = Some(target);
                            let load = self.load("open", Some(target));
                            self.engine_cell(config, &mut run, &mut open, &load);
                        }
                        _ => {
                            open.errors.push(
                                "no closed-loop rate to derive the open-loop rate from".into(),
                            );
                            self.progress.inc(packets * self.reps());
                        }
                    }
                    if let Ok(Some(ending)) = run.engine_ending() {
                        died = Some(format!("the {} engine {ending}", engine.as_str()));
                    }
                }
                self.cells.push(closed);
                self.cells.push(open);
            }
            for line in run.stop().problems {
                self.problems
                    .push(format!("{} teardown: {line}", engine.as_str()));
            }
        }
    }

    fn engine_cell(
        &mut self,
        config: &TestbedConfig,
        run: &mut Run,
        cell: &mut Cell,
        load: &LoadOptions,
    ) {
        for rep in 1..=self.args.repetitions {
            if self.stopped() {
                return;
            }
            self.progress.set_message(format!(
                "{} {} {} {} ({rep}/{})",
                cell.impairment, cell.subject, cell.test, cell.packets, self.args.repetitions
            ));
            if let Ok(Some(ending)) = run.engine_ending() {
                cell.errors.push(format!("the engine {ending}"));
                self.progress.inc(cell.packets);
                continue;
            }
            let state = run.state().clone();
            let outcome = attach::attach_once_with_output(
                config,
                &state,
                &self.bin_dir,
                cell.packets,
                load,
                &self.interrupted,
            );
            self.progress.inc(cell.packets);
            match outcome {
                Ok((row, stdout)) => {
                    let histogram = state
                        .segment
                        .as_deref()
                        .and_then(|p| Segment::open(p).ok())
                        .map(|s| s.histogram(Role::Loadgen));
                    cell.runs.push(engine_record(
                        &row,
                        &stdout,
                        histogram.as_ref(),
                        loadgen_command(config, &state, &self.bin_dir, cell.packets, load),
                    ));
                }
                Err(LifecycleError::Interrupted) => return,
                Err(e) => cell.errors.push(e.to_string()),
            }
        }
    }

    /// Every selected peer on one testbed.
    fn peers(&mut self, config: &TestbedConfig, setting: Setting, peers: &[Peer]) {
        let placement = Placement {
            config: config.clone(),
            server: config.server_addr().to_string(),
            log_dir: self.args.out.join("logs").join(setting.as_str()),
            busy_poll: self.args.busy_poll,
        };
        if let Err(e) = std::fs::create_dir_all(&placement.log_dir) {
            self.problems
                .push(format!("creating {}: {e}", placement.log_dir.display()));
        }
        for &peer in peers {
            if self.stopped() {
                return;
            }
            match peer {
                Peer::Sockperf => self.sockperf(&placement, setting),
                Peer::Iperf3 => self.iperf3(&placement, setting),
                Peer::Netperf => self.netperf(&placement, setting),
            }
        }
    }

    fn fail_all(&mut self, subject: &str, tests: &[&str], setting: Setting, why: &str) {
        self.say(why);
        for &packets in &self.args.packets {
            for test in tests {
                let mut cell = Cell::new(subject, "peer", test, setting.as_str(), packets);
                cell.errors.push(why.to_owned());
                self.cells.push(cell);
                self.progress.inc(packets * self.reps());
            }
        }
    }

    fn sockperf(&mut self, p: &Placement, setting: Setting) {
        let port = p.config.port().wrapping_add(1);
        let server = match Server::start(
            peers::sockperf_server(p, port),
            p.log_dir.join("sockperf-server.log"),
            &p.config,
            port,
        ) {
            Ok(s) => s,
            Err(e) => return self.fail_all("sockperf", &["ping-pong", "under-load"], setting, &e),
        };
        // sockperf is bounded by time, not count: a 1-second ping-pong gives
        // the rate that turns each count into a duration.
        let calibration = peers::run_client(
            peers::sockperf_client(p, port, 1, None),
            &p.log_dir.join("sockperf-calibration.log"),
            Duration::from_secs(60),
            &self.interrupted,
        )
        .and_then(|o| peers::parse_sockperf(&o.text));
        // Under loss a 1-second sample holds a handful of retransmission
        // stalls at most: a slow link is measured again over 5 seconds.
        let calibration = match calibration {
            Ok(f) if f.messages_per_s.is_some_and(|r| r < 2000.0) => peers::run_client(
                peers::sockperf_client(p, port, 5, None),
                &p.log_dir.join("sockperf-calibration-5s.log"),
                Duration::from_secs(60),
                &self.interrupted,
            )
            .and_then(|o| peers::parse_sockperf(&o.text)),
            other => other,
        };
        let rate = match calibration.as_ref().ok().and_then(|f| f.messages_per_s) {
            Some(r) if r > 0.0 => r,
            _ => {
                let why = format!(
                    "sockperf calibration failed: {}",
                    calibration.err().unwrap_or_else(|| "no rate".into())
                );
                drop(server);
                return self.fail_all("sockperf", &["ping-pong", "under-load"], setting, &why);
            }
        };
        for &packets in &self.args.packets.clone() {
            let mut pp = Cell::new("sockperf", "peer", "ping-pong", setting.as_str(), packets);
            let seconds = seconds_for(packets, rate);
            for rep in 1..=self.args.repetitions {
                let command = peers::sockperf_client(p, port, seconds, None);
                let log = p.log_dir.join(format!("sockperf-pp-{packets}-{rep}.log"));
                self.peer_run(&mut pp, rep, command, &log, seconds + 60, |o| {
                    let f = peers::parse_sockperf(&o.text)?;
                    Ok((f, peers::sockperf_percentiles(&o.text)))
                });
            }
            pp.aggregate();
            let mut ul = Cell::new("sockperf", "peer", "under-load", setting.as_str(), packets);
            match pp.aggregate.median.messages_per_s {
                Some(r) if r >= 1.0 => {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let mps = (r * self.args.open_fraction).round().max(1.0) as u64;
                    ul.target_rate = Some(mps);
                    #[allow(clippy::cast_precision_loss)]
                    let seconds = seconds_for(packets, mps as f64);
                    for rep in 1..=self.args.repetitions {
                        let command = peers::sockperf_client(p, port, seconds, Some(mps));
                        let log = p.log_dir.join(format!("sockperf-ul-{packets}-{rep}.log"));
                        self.peer_run(&mut ul, rep, command, &log, seconds + 60, |o| {
                            let f = peers::parse_sockperf(&o.text)?;
                            Ok((f, peers::sockperf_percentiles(&o.text)))
                        });
                    }
                }
                _ => {
                    ul.errors
                        .push("no ping-pong rate to derive the under-load rate from".into());
                    self.progress.inc(packets * self.reps());
                }
            }
            for cell in [pp, ul] {
                self.cells.push(cell);
            }
        }
        drop(server);
    }

    fn iperf3(&mut self, p: &Placement, setting: Setting) {
        let port = p.config.port().wrapping_add(2);
        for &packets in &self.args.packets.clone() {
            let mut cell = Cell::new("iperf3", "peer", "bulk", setting.as_str(), packets);
            for rep in 1..=self.args.repetitions {
                let server = match Server::start(
                    peers::iperf3_server(p, port),
                    p.log_dir.join(format!("iperf3-server-{packets}-{rep}.log")),
                    &p.config,
                    port,
                ) {
                    Ok(s) => s,
                    Err(e) => {
                        cell.errors.push(e);
                        self.progress.inc(packets);
                        continue;
                    }
                };
                let bytes = packets.saturating_mul(PEER_MESSAGE_SIZE);
                let command = peers::iperf3_client(p, port, bytes);
                let log = p.log_dir.join(format!("iperf3-{packets}-{rep}.json"));
                let limit = 120 + bytes / 1_000_000;
                let server_command = server.command.clone();
                self.peer_run(&mut cell, rep, command, &log, limit, |o| {
                    Ok((peers::parse_iperf3(&o.text)?, Vec::new()))
                });
                if let Some(last) = cell.runs.last_mut() {
                    if !last.command.contains(" ; server: ") {
                        last.command = format!("{} ; server: {server_command}", last.command);
                    }
                }
                server.finish(Duration::from_secs(5));
            }
            self.cells.push(cell);
        }
    }

    fn netperf(&mut self, p: &Placement, setting: Setting) {
        let port = p.config.port().wrapping_add(3);
        let server = match Server::start(
            peers::netperf_server(p, port),
            p.log_dir.join("netserver.log"),
            &p.config,
            port,
        ) {
            Ok(s) => s,
            Err(e) => return self.fail_all("netperf", &["tcp_rr"], setting, &e),
        };
        for &packets in &self.args.packets.clone() {
            let mut cell = Cell::new("netperf", "peer", "tcp_rr", setting.as_str(), packets);
            for rep in 1..=self.args.repetitions {
                let command = peers::netperf_client(p, port, packets);
                let log = p.log_dir.join(format!("netperf-{packets}-{rep}.log"));
                // Bounded as if no slower than 100 transactions/s.
                self.peer_run(&mut cell, rep, command, &log, 60 + packets / 100, |o| {
                    Ok((peers::parse_netperf(&o.text)?, Vec::new()))
                });
            }
            self.cells.push(cell);
        }
        drop(server);
    }

    fn peer_run(
        &mut self,
        cell: &mut Cell,
        rep: u32,
        command: std::process::Command,
        log: &Path,
        limit_s: u64,
        parse: impl Fn(&peers::ClientOutput) -> Result<(Figures, Vec<(f64, f64)>), String>,
    ) {
        if self.stopped() {
            return;
        }
        self.progress.set_message(format!(
            "{} {} {} {} ({rep}/{})",
            cell.impairment, cell.subject, cell.test, cell.packets, self.args.repetitions
        ));
        let outcome = peers::run_client(
            command,
            log,
            Duration::from_secs(limit_s),
            &self.interrupted,
        )
        .and_then(|o| parse(&o).map(|(f, cdf)| (o, f, cdf)));
        self.progress.inc(cell.packets);
        match outcome {
            Ok((output, figures, cdf)) => cell.runs.push(RunRecord {
                command: output.command,
                clean: true,
                inconsistencies: Vec::new(),
                detail: serde_json::json!({ "log": log.file_name().map(|n| n.to_string_lossy().into_owned()) }),
                figures,
                cdf,
            }),
            Err(e) if self.stopped() => {
                let _ = e;
            }
            Err(e) => cell.errors.push(e),
        }
    }
}

/// Whole seconds for a time-bounded tool to exchange about `packets`
/// messages at `rate`, plus sockperf's warm-up and cool-down (≈ 0.45 s).
fn seconds_for(packets: u64, rate: f64) -> u64 {
    #[allow(clippy::cast_precision_loss)]
    let s = packets as f64 / rate + 0.5;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = s.ceil().max(1.0) as u64;
    s
}

/// The load generator's command line as `attach` runs it, and the
/// engine's it ran against.
fn loadgen_command(
    config: &TestbedConfig,
    state: &crate::lifecycle::state::RunState,
    bin_dir: &Path,
    packets: u64,
    load: &LoadOptions,
) -> String {
    let segment = state
        .segment
        .as_deref()
        .map_or_else(String::new, |p| p.display().to_string());
    format!(
        "ip netns exec {} {} --connect {} --packets {packets} --connections {} --mode {} --seed {} --min-size {} --max-size {} --warmup {} --timeout-ms {} --core {} --shm {segment}{}{} ; engine: ip netns exec {} {} --kind {} --listen 0.0.0.0:{} --core {} --shm {segment}{}",
        config.client_ns(),
        bin_dir.join("loadgen").display(),
        state.server,
        load.connections,
        load.mode,
        load.seed,
        load.min_size,
        load.max_size,
        load.warmup,
        load.timeout_ms,
        state.loadgen_core,
        load.rate.map_or_else(String::new, |r| format!(" --rate {r}")),
        if load.loadgen_busy_poll { " --busy-poll" } else { "" },
        config.server_ns(),
        bin_dir.join("engine").display(),
        state.engine_kind,
        config.port(),
        state.engine_core,
        match (state.engine_kind.as_str(), load.loadgen_busy_poll) {
            // The bench gives the kernel engine --busy-poll with the loadgen's.
            ("kernel", true) => " --busy-poll",
            ("kernel", false) => "",
            _ => " --dpdk-config <engine-config.ini>",
        },
    )
}

/// The quantiles plotted and stored for an engine run's CDF.
fn cdf_quantiles() -> Vec<f64> {
    let mut q: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
    q.extend([0.995, 0.999, 0.9995, 0.9999, 1.0]);
    q
}

/// One engine run's record: figures from the segment's row, checked
/// against the loadgen's own JSON result and the engine's counter.
fn engine_record(
    row: &ResultRow,
    stdout: &str,
    histogram: Option<&shm_layout::LocalHistogram>,
    command: String,
) -> RunRecord {
    #[allow(clippy::cast_precision_loss)]
    let figures = Figures {
        messages: Some(row.answered as f64),
        elapsed_s: Some(row.elapsed_s),
        messages_per_s: Some(row.messages_per_s),
        bandwidth_kb_s: Some(row.bandwidth_kb_s),
        rtt_mean_us: Some(row.rtt.mean_us),
        rtt_p50_us: Some(row.rtt.p50_us),
        rtt_p99_us: Some(row.rtt.p99_us),
        rtt_p999_us: Some(row.rtt.p999_us),
        rtt_max_us: Some(row.rtt.max_us),
    };
    let report: Option<serde_json::Value> = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(serde_json::Value::is_object);
    let mut problems = Vec::new();
    match &report {
        None => problems.push("the load generator printed no JSON result".to_owned()),
        Some(r) => {
            let get = |k: &str| r.get(k).and_then(serde_json::Value::as_f64);
            #[allow(clippy::cast_precision_loss)]
            for (key, ours) in [
                ("answered", row.answered as f64),
                ("sent", row.sent as f64),
                ("failed", row.failed as f64),
            ] {
                if get(key) != Some(ours) {
                    problems.push(format!("{key}: segment {ours}, loadgen {:?}", get(key)));
                }
            }
            if let Some(theirs) = get("messages_per_s") {
                if (theirs - row.messages_per_s).abs() > 0.02 * theirs.max(1.0) {
                    problems.push(format!(
                        "messages_per_s: segment {:.1}, loadgen {theirs:.1}",
                        row.messages_per_s
                    ));
                }
            }
        }
    }
    if row.engine_received != row.sent + row.warmup {
        problems.push(format!(
            "engine received {} requests, loadgen sent {} + {} warm-up",
            row.engine_received, row.sent, row.warmup
        ));
    }
    let cdf = histogram
        .filter(|h| h.count() > 0)
        .map(|h| {
            cdf_quantiles()
                .into_iter()
                .map(|q| {
                    #[allow(clippy::cast_precision_loss)]
                    let us = h.value_at_quantile(q) as f64 / 1000.0;
                    (q, us)
                })
                .collect()
        })
        .unwrap_or_default();
    RunRecord {
        command,
        figures,
        clean: row.is_clean(),
        inconsistencies: problems,
        cdf,
        detail: serde_json::json!({
            "row": row,
            "loadgen_report": report,
            "histogram_count": histogram.map(shm_layout::LocalHistogram::count),
        }),
    }
}

/// `bench`: the whole matrix, then the report.
///
/// # Errors
/// Bad options, an unwritable output directory, a testbed that cannot be
/// built. Failed runs are reported in the results, not as errors.
pub fn run(args: &BenchArgs) -> Result<i32, BenchError> {
    args.validate()?;
    let base = TestbedConfig::load(args.config.as_deref())?;
    prepare_out(&args.out)?;
    let started_utc = utc_now();
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))
            .map_err(BenchError::Signals)?;
    }
    let bin_dir = args
        .bin_dir
        .clone()
        .unwrap_or_else(session::default_bin_dir);
    let mut host = host_facts();
    let engines = engine_availability(&args.engines, &bin_dir, &host.doctor);
    let runnable: Vec<EngineKind> = engines
        .iter()
        .filter(|(_, a)| a.available)
        .map(|(k, _)| *k)
        .collect();
    let mut peer_list: Vec<Peer> = args.peers.clone();
    peer_list.dedup();
    let peers: Vec<(Peer, Availability)> = peer_list
        .iter()
        .map(|&p| {
            let detected = p.detect();
            (
                p,
                Availability {
                    name: p.as_str().to_owned(),
                    available: detected.is_ok(),
                    reason: detected.err(),
                },
            )
        })
        .collect();
    let usable_peers: Vec<Peer> = peers
        .iter()
        .filter(|(_, a)| a.available)
        .map(|(p, _)| *p)
        .collect();
    for (_, a) in engines
        .iter()
        .map(|(k, a)| (k.as_str(), a))
        .chain(peers.iter().map(|(p, a)| (p.as_str(), a)))
    {
        if let Some(reason) = &a.reason {
            eprintln!("supervisor: {} skipped: {reason}", a.name);
        }
    }

    // The whole matrix, weighted by messages, for one progress bar.
    let per_setting: u64 = args
        .packets
        .iter()
        .map(|&n| {
            let engine_runs = 2 * runnable.len() as u64;
            let peer_runs: u64 = usable_peers
                .iter()
                .map(|p| if *p == Peer::Sockperf { 2 } else { 1 })
                .sum();
            n * u64::from(args.repetitions) * (engine_runs + peer_runs)
        })
        .sum();
    let progress = ProgressBar::new(per_setting * args.impairment.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut bench = Bench {
        args,
        bin_dir,
        progress,
        interrupted: Arc::clone(&interrupted),
        cells: Vec::new(),
        problems: Vec::new(),
    };
    let mut testbeds = Vec::new();
    let mut settings = args.impairment.clone();
    settings.dedup();
    for setting in settings {
        if bench.stopped() {
            break;
        }
        let config = testbed_for(&base, setting)?;
        bench.say(&format!(
            "testbed `{}`: impairment {}",
            config.name(),
            setting.as_str()
        ));
        let _ = net::down(&config);
        net::up(&config).map_err(|e| BenchError::Network {
            testbed: config.name().to_owned(),
            message: e.to_string(),
        })?;
        let guard = NetGuard {
            config: config.clone(),
        };
        bench.engines(&config, setting, &runnable);
        bench.peers(&config, setting, &usable_peers);
        let status = net::status(&config).ok();
        testbeds.push(TestbedRecord {
            impairment: setting.as_str().to_owned(),
            name: config.name().to_owned(),
            described: status
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), describe_impairment),
            observed_loss_percent: status
                .as_ref()
                .and_then(|s| s.impairment.observed.as_ref())
                .and_then(|o| o.loss_percent),
            config: serde_json::to_value(&config).unwrap_or_default(),
        });
        drop(guard);
    }
    bench.progress.finish_and_clear();
    let was_interrupted = bench.stopped();

    let mut cells = std::mem::take(&mut bench.cells);
    for cell in &mut cells {
        cell.aggregate();
    }
    report::compute_ratios(&mut cells);
    host.loadavg_end = loadavg();
    let mut results = Results {
        schema: report::SCHEMA,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_utc,
        finished_utc: utc_now(),
        git_revision: git_revision(),
        configuration: serde_json::json!({
            "engines": args.engines.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
            "packets": args.packets,
            "impairment": args.impairment,
            "peers": args.peers,
            "repetitions": args.repetitions,
            "open_fraction": args.open_fraction,
            "busy_poll": args.busy_poll,
            "pmd": args.pmd.to_string(),
            "warmup": args.warmup,
            "loadgen": {"connections": 1, "min_size": 512, "max_size": 1024, "seed": 1, "timeout_ms": 5000},
            "peer_message_size": PEER_MESSAGE_SIZE,
            "spread_flag_percent": stats::SPREAD_FLAG_PERCENT,
        }),
        host,
        engines: engines.into_iter().map(|(_, a)| a).collect(),
        peers: peers.into_iter().map(|(_, a)| a).collect(),
        testbeds,
        cells,
        plots: Vec::new(),
        problems: std::mem::take(&mut bench.problems),
        interrupted: was_interrupted,
    };
    match plot::draw_all(&results, &args.out.join("plots")) {
        Ok(outcome) => {
            results.plots = outcome.files;
            results.problems.extend(outcome.notes);
        }
        Err(e) => results.problems.push(format!("plots: {e}")),
    }
    let json = serde_json::to_vec_pretty(&results).unwrap_or_default();
    write_file(&args.out.join("results.json"), &json)?;
    write_file(
        &args.out.join("results.md"),
        report::markdown(&results).as_bytes(),
    )?;
    eprintln!(
        "supervisor: wrote {} and {}",
        args.out.join("results.json").display(),
        args.out.join("results.md").display()
    );
    if was_interrupted {
        return Ok(EXIT_INTERRUPTED);
    }
    let complete = results.cells.iter().all(|c| {
        c.errors.is_empty()
            && c.runs
                .iter()
                .all(|r| r.clean && r.inconsistencies.is_empty())
    }) && results.problems.iter().all(|p| !p.starts_with("plots:"));
    Ok(if complete { 0 } else { EXIT_INCOMPLETE })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_list_shapes() {
        let a = serde_json::json!([{"kind":"kernel","available":true},{"kind":"fstack","available":false,"reason":"no FF_PATH"}]);
        let k = parse_kind_list(&a).unwrap();
        assert_eq!(k[1], ("fstack".to_owned(), Err("no FF_PATH".to_owned())));
        let b = serde_json::json!({"kernel": {"available": true}, "dpdk": true});
        assert!(parse_kind_list(&b).unwrap().iter().all(|(_, r)| r.is_ok()));
        assert!(parse_kind_list(&serde_json::json!(3)).is_none());
    }

    #[test]
    fn durations_cover_the_count() {
        assert_eq!(seconds_for(10_000, 20_000.0), 1);
        assert_eq!(seconds_for(10_000, 430.0), 24);
    }

    #[test]
    fn utc_is_iso() {
        let t = utc_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z'));
    }
}
