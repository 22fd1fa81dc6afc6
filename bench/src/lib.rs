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
//! The full matrix takes most of a day, so the report is saved after every
//! repetition and `--resume` continues it (`bench_report::resume`).
//!
//! Bottom-up: [`host`] (machine facts), [`availability`] (which engines
//! and peers can be measured, and why not), [`peers`] (one file per peer
//! tool behind the [`peers::Peer`] trait), [`record`] (an engine run
//! checked against the loadgen's own counters), [`matrix`] (the runs on one
//! testbed); [`run`] drives the whole. The report itself (its model,
//! markdown, statistics, plots and resume) is the `bench-report` crate.

pub mod availability;
pub mod engine_run;
pub mod estimate;
pub mod host;
pub mod matrix;
pub mod peers;
pub mod record;
pub mod two_hosts;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use bench_report::model::{self, Availability, Results, Session, TestbedRecord};
use bench_report::resume::ResumeError;
use bench_report::{plot, resume, stats};
use contract::{EngineKind, Pmd};
use testbed::bins;
use testbed::config::{BackendChoice, ConfigError, Impairment, TestbedConfig};
use testbed::impairment::Backend;
use testbed::net::{self, NetError};
use testbed::run::attach::REPLY_TIMEOUT_MS;

use self::matrix::{Bench, Half, Plan};
use self::peers::{Peer, PEER_MESSAGE_SIZE};

/// How big the matrix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Every dimension at sizes that finish in about an hour.
    Default,
    /// The original experiment's counts on both testbeds, 3 runs per cell.
    Full,
}

/// A test an engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineTest {
    /// One message in flight per connection.
    Closed,
    /// A fixed rate spread over the connections.
    Open,
    /// A new connection per request: connect, request, reply, close.
    Short,
}

impl EngineTest {
    /// Its name in the report.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::Short => "short",
        }
    }
}

/// A minimum RTO on the command line: each stack's own, or one for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtoChoice(pub Option<u32>);

fn parse_rto(text: &str) -> Result<RtoChoice, String> {
    if text == "own" {
        return Ok(RtoChoice(None));
    }
    match text.parse::<u32>() {
        Ok(ms) if ms > 0 => Ok(RtoChoice(Some(ms))),
        _ => Err(format!(
            "`{text}` is no minimum RTO: give `own` or milliseconds (e.g. 10)"
        )),
    }
}

/// A peer named on the command line.
#[derive(Clone, Copy)]
pub struct PeerName(pub &'static dyn Peer);

impl std::fmt::Display for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

impl std::fmt::Debug for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

/// `--peers`'s parser: the names of [`peers::ALL`], shown in the help.
fn peer_names() -> impl clap::builder::TypedValueParser<Value = PeerName> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(peers::ALL.iter().map(|p| p.name())).map(
        |name: String| {
            // Only the possible values reach here.
            PeerName(peers::by_name(&name).unwrap_or(peers::ALL[0]))
        },
    )
}

/// Exit code: a run lost messages, failed, or a plot could not be drawn
/// (the report is written all the same).
pub const EXIT_INCOMPLETE: i32 = 1;
/// Exit code: stopped by SIGINT/SIGTERM (partial report written).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Impairment setting of a testbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    /// A plain bridge.
    Off,
    /// The configured delay and loss (the defaults when the config has none).
    On,
}

impl Setting {
    /// `off` or `on`, as the report names it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
        }
    }
}

/// `supervisor bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Engines to measure (default: every kind); one this build or host
    /// cannot run is listed with the reason.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub engines: Vec<EngineKind>,
    /// The matrix's size: `default` (every dimension, about an hour on two
    /// cores) or `full` (the original experiment's counts, 10 000 to
    /// 1 000 000 messages, on both testbeds, 3 runs each: most of a day).
    /// The options below override a preset's axes on both testbeds.
    #[arg(long, value_enum, default_value_t = Preset::Default)]
    pub preset: Preset,
    /// Message counts: one row of the table each (default: the preset's).
    #[arg(long, value_delimiter = ',')]
    pub packets: Vec<u64>,
    /// The load generator's connection counts of the engines' cells
    /// (default: the preset's; the peers run one).
    #[arg(long, value_delimiter = ',')]
    pub connections: Vec<u32>,
    /// The engines' tests (default: the preset's).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub tests: Vec<EngineTest>,
    /// Minimum RTOs of the impaired testbed's engine cells: `own` (each
    /// stack's) or milliseconds for every stack (default: the preset's,
    /// `own,10`). The plain bridge loses nothing, so its cells run at `own`.
    #[arg(long, value_delimiter = ',', value_parser = parse_rto)]
    pub rto_min: Vec<RtoChoice>,
    /// The load generator's stacks for the engines' cells: kernel, dpdk
    /// (default: both where this host can run the DPDK client, else kernel,
    /// with the reason said). Each engine cell is measured with each; the
    /// report's "both ends" table sets them side by side.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub clients: Vec<contract::ClientStack>,
    /// Testbeds: without impairment (off) and with it (on).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "off,on")]
    pub impairment: Vec<Setting>,
    /// Peer tools measured on the same path (default: every peer); a
    /// missing one is listed as skipped.
    #[arg(long, value_delimiter = ',', value_parser = peer_names())]
    pub peers: Vec<PeerName>,
    /// Output directory (created): results.json, results.md, plots/, logs/.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// Runs per cell, on both testbeds (default: the preset's); the report
    /// gives the median and the spread.
    #[arg(long)]
    pub repetitions: Option<u32>,
    /// Open-loop rate as a fraction of the median closed-loop rate (and
    /// sockperf under-load as a fraction of its ping-pong rate).
    #[arg(long, default_value_t = 0.8)]
    pub open_fraction: f64,
    /// Kernel engine, loadgen and sockperf spin on non-blocking sockets.
    #[arg(long)]
    pub busy_poll: bool,
    /// Poll-mode driver of the bypass engines: af_xdp, af_packet,
    /// pci:DDDD:BB:DD.F, or memif (each bypass engine joined to the dpdk
    /// client through shared memory: the stacks' own floor; needs
    /// `--impairment off`, and takes the dpdk client and the bypass
    /// engines by default).
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
    /// Continue the report in --out: keep its runs, measure only the
    /// repetitions it lacks (it must have been measured with the same
    /// open fraction, busy-poll, PMD, warm-up and impaired link).
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace a report already in --out (otherwise the bench refuses).
    #[arg(long)]
    pub overwrite: bool,
    /// Calibrate, print how long the runs the report lacks would take, and
    /// measure nothing.
    #[arg(long, conflicts_with = "no_estimate")]
    pub estimate: bool,
    /// Start measuring at once, without the calibration that prices the
    /// matrix (about a minute).
    #[arg(long)]
    pub no_estimate: bool,
}

/// Why the bench could not run or report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A bad option value.
    #[error("{option} {value}: {reason}")]
    BadOption {
        /// The option.
        option: String,
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
    #[error("testbed `{testbed}`: {source}")]
    Network {
        /// Testbed name.
        testbed: String,
        /// What failed.
        source: Box<NetError>,
    },
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    /// The report in --out cannot be continued, or would be replaced.
    #[error(transparent)]
    Resume(#[from] ResumeError),
}

impl BenchArgs {
    /// The engines asked for: every kind when none is named.
    #[must_use]
    pub fn engines(&self) -> Vec<EngineKind> {
        if self.engines.is_empty() && self.pmd == Pmd::Memif {
            // A memif pair needs a bypass engine at its other end.
            EngineKind::ALL
                .into_iter()
                .filter(|k| k.is_bypass())
                .collect()
        } else if self.engines.is_empty() {
            EngineKind::ALL.to_vec()
        } else {
            self.engines.clone()
        }
    }

    /// The peers asked for: every peer when none is named.
    #[must_use]
    pub fn peers(&self) -> Vec<&'static dyn Peer> {
        if self.peers.is_empty() {
            peers::ALL.to_vec()
        } else {
            self.peers.iter().map(|p| p.0).collect()
        }
    }

    /// The two halves of the matrix: the preset's axes, overridden by the
    /// options given.
    #[must_use]
    pub fn halves(&self) -> (Half, Half) {
        let tests: Vec<&'static str> = if self.tests.is_empty() {
            matrix::ENGINE_TESTS.to_vec()
        } else {
            self.tests.iter().map(|t| t.as_str()).collect()
        };
        let mut clients = self.clients.clone();
        clients.sort_unstable();
        clients.dedup();
        if clients.is_empty() && self.pmd == Pmd::Memif {
            clients = vec![contract::ClientStack::Dpdk];
        } else if clients.is_empty() {
            clients = vec![contract::ClientStack::Kernel, contract::ClientStack::Dpdk];
        }
        let (mut off, mut on) = match self.preset {
            Preset::Default => (
                Half {
                    packets: vec![10_000],
                    connections: vec![1, 16, 64, 256, 1024],
                    tests: tests.clone(),
                    rto_min_ms: vec![None],
                    clients: clients.clone(),
                    repetitions: 3,
                },
                Half {
                    packets: vec![10_000],
                    connections: vec![1, 64],
                    tests,
                    rto_min_ms: vec![None, Some(10)],
                    clients: clients.clone(),
                    repetitions: 1,
                },
            ),
            Preset::Full => {
                let half = Half {
                    packets: vec![10_000, 100_000, 1_000_000],
                    connections: vec![1, 16, 64, 256, 1024],
                    tests,
                    rto_min_ms: vec![None],
                    clients: clients.clone(),
                    repetitions: 3,
                };
                let on = Half {
                    connections: vec![1, 64],
                    rto_min_ms: vec![None, Some(10)],
                    ..half.clone()
                };
                (half, on)
            }
        };
        for half in [&mut off, &mut on] {
            if !self.packets.is_empty() {
                half.packets.clone_from(&self.packets);
            }
            if !self.connections.is_empty() {
                half.connections.clone_from(&self.connections);
            }
            if let Some(r) = self.repetitions {
                half.repetitions = r;
            }
        }
        if !self.rto_min.is_empty() {
            on.rto_min_ms = self.rto_min.iter().map(|r| r.0).collect();
        }
        (off, on)
    }

    fn validate(&self) -> Result<(), BenchError> {
        let bad = |field: &str, value: String, reason: &str| BenchError::BadOption {
            option: flag(field),
            value,
            reason: reason.to_owned(),
        };
        if self.packets.contains(&0) {
            return Err(bad(
                "packets",
                format!("{:?}", self.packets),
                "every count must be at least 1",
            ));
        }
        if self.connections.iter().any(|&n| n == 0 || n > 4096) {
            return Err(bad(
                "connections",
                format!("{:?}", self.connections),
                "every count must be within 1..=4096",
            ));
        }
        if self.impairment.is_empty() {
            return Err(bad("impairment", String::new(), "give off, on or both"));
        }
        if let Some(r) = self.repetitions.filter(|r| *r == 0 || *r > 100) {
            return Err(bad("repetitions", r.to_string(), "must be within 1..=100"));
        }
        if self.pmd == Pmd::Memif {
            // What `supervisor run --pmd memif` refuses, refused before
            // the matrix starts rather than in every cell.
            let memif = "--pmd memif joins a bypass engine and the dpdk load generator through shared memory";
            if self.impairment != [Setting::Off] {
                return Err(bad(
                    "impairment",
                    format!("{:?}", self.impairment),
                    &format!("{memif}, with no link to impair: give --impairment off"),
                ));
            }
            if self.clients.contains(&contract::ClientStack::Kernel) {
                return Err(bad(
                    "clients",
                    "kernel".into(),
                    &format!("{memif}: the kernel client cannot reach it (give --clients dpdk, or leave it unset)"),
                ));
            }
            if self.engines.contains(&EngineKind::Kernel) {
                return Err(bad(
                    "engines",
                    "kernel".into(),
                    &format!("{memif}: the kernel engine has no DPDK port"),
                ));
            }
        }
        if !(self.open_fraction > 0.0 && self.open_fraction <= 1.0) {
            return Err(bad(
                "open_fraction",
                self.open_fraction.to_string(),
                "must be within (0, 1]",
            ));
        }
        Ok(())
    }
}

/// The flag of `BenchArgs`'s field `field`, as its clap derive spells it.
fn flag(field: &str) -> String {
    use clap::Args as _;
    let command = BenchArgs::augment_args(clap::Command::new("bench"));
    let long = command
        .get_arguments()
        .find(|a| a.get_id() == field)
        .and_then(clap::Arg::get_long)
        .map_or_else(|| field.to_owned(), |long| format!("--{long}"));
    long
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

/// The testbed of one setting: the base config renamed (unique to this
/// process) with impairment off, or on (the configured one, else the
/// defaults: 100 µs, 1 %).
fn testbed_for(base: &TestbedConfig, setting: Setting) -> Result<TestbedConfig, BenchError> {
    let tag = match setting {
        Setting::Off => 'o',
        Setting::On => 'i',
    };
    // This host's testbed gets a name of its own so the bench never takes
    // over a user's; over two hosts nothing is built here and the hosts'
    // sessions keep the configuration's name.
    let named = if base.hosts().is_some() {
        base.clone()
    } else {
        base.clone()
            .with_name(&format!("b{tag}{}", std::process::id()))?
    };
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
    match status.impairment.backend {
        Some(Backend::None) => "none (plain bridge)".to_owned(),
        _ => testbed::run::netview::describe_impairment(status),
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

/// The configuration recorded in the report; [`resume::MUST_MATCH`] names
/// the keys a resumed report must share.
fn configuration(args: &BenchArgs, impaired: &TestbedConfig) -> serde_json::Value {
    let (off, on) = args.halves();
    let mut packets = off.packets.clone();
    packets.extend(on.packets.iter().filter(|p| !off.packets.contains(p)));
    packets.sort_unstable();
    serde_json::json!({
        "preset": args.preset,
        "engines": args.engines(),
        "packets": packets,
        "impairment": args.impairment,
        "peers": args.peers().iter().map(|p| p.name()).collect::<Vec<_>>(),
        "tests": tests(args),
        "halves": {"off": off, "on": on},
        "repetitions": off.repetitions.max(on.repetitions),
        "open_fraction": args.open_fraction,
        "busy_poll": args.busy_poll,
        "pmd": args.pmd.to_string(),
        "warmup": args.warmup,
        "loadgen": {"min_size": 512, "max_size": 1024, "seed": 1,
                    "timeout_ms": REPLY_TIMEOUT_MS},
        "peer_message_size": PEER_MESSAGE_SIZE,
        "impaired_link": serde_json::to_value(impaired.impairment()).unwrap_or_default(),
        "spread_flag_percent": stats::SPREAD_FLAG_PERCENT,
    })
}

/// The tests of each subject asked for, as the report records them (so
/// it can list the cells still without runs, knowing nothing of peers).
fn tests(args: &BenchArgs) -> serde_json::Value {
    let (off, on) = args.halves();
    let mut engine_tests = off.tests.clone();
    engine_tests.extend(on.tests.iter().filter(|t| !off.tests.contains(t)));
    let subjects = args
        .engines()
        .into_iter()
        .map(|e| (e.as_str(), engine_tests.as_slice()))
        .chain(args.peers().into_iter().map(|p| (p.name(), p.tests())));
    serde_json::Value::Object(
        subjects
            .map(|(subject, tests)| (subject.to_owned(), serde_json::json!(tests)))
            .collect(),
    )
}

/// The report this invocation adds to: the saved one (`--resume`), or a
/// new one. A report in --out is never replaced without `--overwrite`.
fn starting_report(
    args: &BenchArgs,
    configuration: &serde_json::Value,
) -> Result<Option<Results>, BenchError> {
    let path = args.out.join(resume::RESULTS_FILE);
    if args.resume {
        let saved = resume::load(&path)?;
        resume::check_compatible(&path, &saved, configuration)?;
        return Ok(Some(saved));
    }
    if path.exists() && !args.overwrite {
        return Err(ResumeError::Exists(path).into());
    }
    Ok(None)
}

/// Replaces `old`'s entry of the same name, or appends.
fn merge_availability(old: &mut Vec<Availability>, new: Vec<Availability>) {
    for a in new {
        match old.iter_mut().find(|o| o.name == a.name) {
            Some(o) => *o = a,
            None => old.push(a),
        }
    }
}

/// The whole matrix weighted by messages still to exchange, for one bar.
/// No time estimate: the cells run at rates from tens of thousands of
/// messages/s (plain bridge) down to a few hundred (impaired link, kernel
/// TCP's retransmission timeouts), so the rate so far predicts nothing.
fn progress_bar(total: u64) -> ProgressBar {
    let progress = ProgressBar::new(total);
    progress.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {percent:>3}% of the messages {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    progress
}

/// `args` with the client stacks this host can run: the DPDK client needs
/// what the dpdk engine needs. Left to the default it is dropped, with the
/// reason said; asked for by name, its absence is an error.
fn with_runnable_clients(
    args: &BenchArgs,
    bin_dir: &Path,
    doctor: &serde_json::Value,
) -> Result<BenchArgs, BenchError> {
    let mut args = args.clone();
    let (off, _) = args.halves();
    if !off.clients.contains(&contract::ClientStack::Dpdk) {
        return Ok(args);
    }
    let dpdk = availability::engines(&[EngineKind::Dpdk], bin_dir, doctor);
    let Some(reason) = dpdk.first().and_then(|(_, a)| a.reason.clone()) else {
        return Ok(args);
    };
    if !args.clients.is_empty() || args.pmd == Pmd::Memif {
        return Err(BenchError::BadOption {
            option: flag("clients"),
            value: "dpdk".to_owned(),
            reason: format!("the DPDK client cannot run here: {reason}"),
        });
    }
    eprintln!("supervisor: dpdk client skipped: {reason}");
    args.clients = vec![contract::ClientStack::Kernel];
    Ok(args)
}

/// `bench`: the whole matrix, then the report.
///
/// # Errors
/// Bad options, an unwritable output directory, a report in it that cannot
/// be continued (or would be replaced), a testbed that cannot be built.
/// Failed runs are reported in the results, not as errors.
pub fn run(args: &BenchArgs) -> Result<i32, BenchError> {
    args.validate()?;
    let bin_dir = args.bin_dir.clone().unwrap_or_else(bins::default_dir);
    let host = host::facts();
    let base = TestbedConfig::load(args.config.as_deref())?;
    let over_two_hosts = base.hosts().is_some();
    let args = &if over_two_hosts {
        two_hosts::args(args)?
    } else {
        with_runnable_clients(args, &bin_dir, &host.doctor)?
    };
    let impaired = testbed_for(&base, Setting::On)?;
    let configuration = configuration(args, &impaired);
    let saved = starting_report(args, &configuration)?;
    prepare_out(&args.out)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))
            .map_err(BenchError::Signals)?;
    }
    let (engines, peers) = if over_two_hosts {
        (
            two_hosts::engines(&args.engines()),
            two_hosts::peers(&args.peers()),
        )
    } else {
        (
            availability::engines(&args.engines(), &bin_dir, &host.doctor),
            availability::peers(&args.peers()),
        )
    };
    for (_, a) in engines
        .iter()
        .map(|(k, a)| (k.as_str(), a))
        .chain(peers.iter().map(|(p, a)| (p.name(), a)))
    {
        if let Some(reason) = &a.reason {
            eprintln!("supervisor: {} skipped: {reason}", a.name);
        }
    }
    let runnable: Vec<EngineKind> = engines
        .iter()
        .filter(|(_, a)| a.available)
        .map(|(k, _)| *k)
        .collect();
    let usable_peers: Vec<&'static dyn Peer> = peers
        .iter()
        .filter(|(_, a)| a.available)
        .map(|(p, _)| *p)
        .collect();

    let session_record = Session {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_utc: host::utc_now(),
        git_revision: host::git_revision(),
        loadavg_start: host.loadavg_start.clone(),
        ..Session::default()
    };
    let mut results = match saved {
        Some(mut saved) => {
            let retried = saved.cells.iter_mut().filter(|c| !c.errors.is_empty());
            let mut superseded = Vec::new();
            for cell in retried {
                for e in cell.errors.drain(..) {
                    superseded.push(format!(
                        "earlier session: {} {} ({}, {}): {e}",
                        cell.subject, cell.test, cell.impairment, cell.packets
                    ));
                }
            }
            saved.problems.extend(superseded);
            if saved.sessions.is_empty() {
                // A report from before sessions were recorded.
                saved.sessions.push(Session {
                    command: saved.command.clone(),
                    started_utc: saved.started_utc.clone(),
                    finished_utc: saved.finished_utc.clone(),
                    git_revision: saved.git_revision.clone(),
                    loadavg_start: saved.host.loadavg_start.clone(),
                    loadavg_end: saved.host.loadavg_end.clone(),
                    interrupted: saved.interrupted,
                });
            }
            eprintln!(
                "supervisor: resuming {} ({} cells, {} runs kept)",
                args.out.join(resume::RESULTS_FILE).display(),
                saved.cells.len(),
                saved.cells.iter().map(|c| c.runs.len()).sum::<usize>()
            );
            saved
        }
        None => Results {
            schema: model::SCHEMA,
            command: String::new(),
            started_utc: String::new(),
            finished_utc: String::new(),
            git_revision: String::new(),
            configuration: serde_json::Value::Null,
            host: host.clone(),
            engines: Vec::new(),
            peers: Vec::new(),
            testbeds: Vec::new(),
            cells: Vec::new(),
            plots: Vec::new(),
            problems: Vec::new(),
            interrupted: false,
            sessions: Vec::new(),
            hosts: Vec::new(),
        },
    };
    results.schema = model::SCHEMA;
    results.command.clone_from(&session_record.command);
    results.started_utc.clone_from(&session_record.started_utc);
    results
        .git_revision
        .clone_from(&session_record.git_revision);
    results.configuration = if args.resume {
        resume::widen(&results, configuration)
    } else {
        configuration
    };
    results.host = host;
    results.interrupted = false;
    merge_availability(
        &mut results.engines,
        engines.into_iter().map(|(_, a)| a).collect(),
    );
    merge_availability(
        &mut results.peers,
        peers.into_iter().map(|(_, a)| a).collect(),
    );
    results.sessions.push(session_record);

    let (off, on) = args.halves();
    let plan = Plan {
        off,
        on,
        open_fraction: args.open_fraction,
        busy_poll: args.busy_poll,
        pmd: args.pmd.clone(),
        warmup: args.warmup,
        bin_dir,
        out: args.out.clone(),
    };
    let mut settings = args.impairment.clone();
    settings.dedup();
    let mut bench = Bench::new(&plan, results, interrupted);
    let subjects: Vec<&str> = runnable
        .iter()
        .map(|e| e.as_str())
        .chain(usable_peers.iter().map(|p| p.name()))
        .collect();
    let remaining = |bench: &Bench, setting: Setting| -> u64 {
        subjects.iter().map(|s| bench.remaining(s, setting)).sum()
    };
    let total: u64 = settings.iter().map(|&s| remaining(&bench, s)).sum();
    let estimated = if args.no_estimate || total == 0 {
        None
    } else {
        let testbeds = settings
            .iter()
            .map(|&s| testbed_for(&base, s).map(|c| (s, c)))
            .collect::<Result<Vec<_>, _>>()?;
        eprintln!("supervisor: calibrating (a short closed loop per engine and testbed) to price the matrix");
        let calibration = estimate::calibrate(
            &plan,
            &testbeds,
            &runnable,
            peers::Cells::interrupted(&bench),
            &mut |l| eprintln!("supervisor: {l}"),
        );
        let peer_names: Vec<&str> = usable_peers.iter().map(|p| p.name()).collect();
        let eta = estimate::estimate(
            &bench,
            &plan,
            &calibration,
            &settings,
            &runnable,
            &peer_names,
        );
        eprintln!(
            "supervisor: estimated {} for the runs this report lacks (rates from a {} calibration on this machine, whose load moves them: {})",
            estimate::human(eta),
            estimate::human(calibration.took),
            calibration.describe()
        );
        Some(eta)
    };
    if args.estimate {
        return Ok(0);
    }
    let measuring = std::time::Instant::now();
    bench.show_progress(progress_bar(total));
    bench.save();
    for setting in settings {
        if bench.stopped() {
            break;
        }
        if remaining(&bench, setting) == 0 {
            bench.say(&format!(
                "impairment {}: every cell already has its runs",
                setting.as_str()
            ));
            continue;
        }
        let config = testbed_for(&base, setting)?;
        bench.say(&format!(
            "testbed `{}`: impairment {}",
            config.name(),
            setting.as_str()
        ));
        if over_two_hosts {
            // The hosts' link is theirs: nothing to build here; each engine
            // host says what impairment it put in force.
            bench.engines(&config, setting, &runnable);
            bench.peers(&config, setting, &usable_peers);
            let said = bench.remote_impairments(setting);
            bench.results.testbeds.push(TestbedRecord {
                impairment: setting.as_str().to_owned(),
                name: config.name().to_owned(),
                described: if said.is_empty() {
                    "two hosts: no engine started".to_owned()
                } else {
                    format!("two hosts: {}", said.join("; "))
                },
                observed_loss_percent: None,
                config: serde_json::to_value(&config).unwrap_or_default(),
            });
            bench.save();
            continue;
        }
        let _ = net::down(&config);
        net::up(&config).map_err(|source| BenchError::Network {
            testbed: config.name().to_owned(),
            source: Box::new(source),
        })?;
        let guard = NetGuard {
            config: config.clone(),
        };
        bench.engines(&config, setting, &runnable);
        bench.peers(&config, setting, &usable_peers);
        let status = net::status(&config).ok();
        bench.results.testbeds.push(TestbedRecord {
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
        bench.save();
    }
    bench.progress().finish_and_clear();
    eprintln!(
        "supervisor: the matrix took {}{}",
        estimate::human(measuring.elapsed()),
        estimated.map_or_else(String::new, |e| format!(
            " (estimated {})",
            estimate::human(e)
        ))
    );
    let was_interrupted = bench.stopped();
    let mut results = bench.results;
    finish(&mut results, &args.out, was_interrupted)?;
    if was_interrupted {
        eprintln!(
            "supervisor: interrupted; `supervisor bench --resume --out {}` (with the same options) measures what is missing",
            args.out.display()
        );
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

/// Closes this session in the report, draws the plots and writes it all.
fn finish(results: &mut Results, out: &Path, interrupted: bool) -> Result<(), BenchError> {
    results.aggregate();
    let now = host::utc_now();
    let loadavg = host::loadavg();
    results.finished_utc.clone_from(&now);
    results.host.loadavg_end.clone_from(&loadavg);
    results.interrupted = interrupted;
    if let Some(session) = results.sessions.last_mut() {
        session.finished_utc = now;
        session.loadavg_end = loadavg;
        session.interrupted = interrupted;
    }
    // Drawn anew from every cell: notes of an earlier drawing go.
    results.plots.clear();
    results.problems.retain(|p| !p.starts_with("plots"));
    match plot::draw_all(results, &out.join("plots")) {
        Ok(outcome) => {
            results.plots = outcome.files;
            results.problems.extend(outcome.notes);
        }
        Err(e) => results.problems.push(format!("plots: {e}")),
    }
    resume::save(out, results).map_err(|(path, source)| BenchError::Output { path, source })?;
    eprintln!(
        "supervisor: wrote {} and {}",
        out.join(resume::RESULTS_FILE).display(),
        out.join(resume::MARKDOWN_FILE).display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_name_the_flag_as_clap_spells_it() {
        assert_eq!(flag("open_fraction"), "--open-fraction");
        assert_eq!(flag("packets"), "--packets");
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    /// `bench <extra>`'s arguments.
    pub(crate) fn bench_args(extra: &[&str]) -> BenchArgs {
        use clap::Parser;
        let mut argv = vec!["bench"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("parses").bench
    }

    #[test]
    fn every_engine_cell_is_measured_with_each_client_stack_asked_for() {
        let (off, on) = bench_args(&[]).halves();
        for half in [&off, &on] {
            assert_eq!(
                half.clients,
                [contract::ClientStack::Kernel, contract::ClientStack::Dpdk],
                "default: both"
            );
        }
        let (off, _) = bench_args(&["--clients", "kernel"]).halves();
        let keys = off.engine_keys("dpdk", Setting::Off);
        assert!(keys.iter().all(|k| k.client == "kernel"));

        let (off, on) = bench_args(&["--clients", "dpdk,kernel,dpdk"]).halves();
        assert_eq!(
            on.clients,
            [contract::ClientStack::Kernel, contract::ClientStack::Dpdk],
            "each once, the kernel's first"
        );
        let keys = off.engine_keys("dpdk", Setting::Off);
        let (kernel, dpdk): (Vec<_>, Vec<_>) = keys.iter().partition(|k| k.client == "kernel");
        assert_eq!(kernel.len(), dpdk.len(), "every cell with both clients");
        assert!(dpdk.iter().all(|k| k.client == "dpdk"));
        use clap::Parser;
        assert!(
            Cli::try_parse_from(["bench", "--clients", "fstack"]).is_err(),
            "no F-Stack client"
        );
    }

    /// Without DPDK on the host, the default drops the DPDK client and
    /// asking for it by name is an error naming the reason.
    #[test]
    fn a_dpdk_client_the_host_cannot_run_is_dropped_or_refused() {
        let missing = std::path::Path::new("/nonexistent-bin-dir");
        let doctor = serde_json::json!({ "engines": ["kernel"] });
        let args = with_runnable_clients(&bench_args(&[]), missing, &doctor).expect("default");
        assert_eq!(
            args.clients,
            [contract::ClientStack::Kernel],
            "the default falls back to the kernel client alone"
        );
        let err =
            with_runnable_clients(&bench_args(&["--clients", "kernel,dpdk"]), missing, &doctor)
                .map(|_| ())
                .expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("--clients dpdk: the DPDK client cannot run here"),
            "{err}"
        );
        let kernel_only =
            with_runnable_clients(&bench_args(&["--clients", "kernel"]), missing, &doctor);
        assert!(
            kernel_only.is_ok(),
            "nothing to check without the DPDK client"
        );
    }
}
