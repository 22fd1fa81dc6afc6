//! The lifecycle subcommands: `start`, `attach`, `stats`, `stop`, `run`.
//! Each parses its arguments into options, calls the lifecycle, and maps
//! the outcome to an exit code (documented in `supervisor --help`).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use contract::argv::to_argv;
use contract::{EngineKind, Pmd};
use serde::{Deserialize, Serialize};
use shm_layout::Segment;
use testbed::bins::{self, Binary};
use testbed::config::TestbedConfig;
use testbed::host::process::{self, ProcessId};
use testbed::host::wait::{self, Check, Waited};
use testbed::remote::control::OwnerRecord;
use testbed::run::attach::{self, LoadOptions, ResultRow};
use testbed::run::netview;
use testbed::run::session::{self, Run, StartOptions, DEFAULT_READY_TIMEOUT};
use testbed::run::state::{Phase, RunState, StateError};
use testbed::run::teardown::{describe_leftovers, teardown_recorded, TeardownReport};
use testbed::run::LifecycleError;
use testbed::state::StateFile;

/// Exit code: every message answered, every step done.
pub const EXIT_OK: i32 = 0;
/// Exit code: the experiment ran but messages were lost or mismatched.
pub const EXIT_LOSS: i32 = 1;
/// Exit code: a child (engine) died unexpectedly.
pub const EXIT_CHILD_DIED: i32 = 3;
/// Exit code: stopped by SIGINT/SIGTERM (everything cleaned).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Options shared by every lifecycle command.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct CommonArgs {
    /// Testbed configuration (default: config/testbed.toml if present, else built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl CommonArgs {
    fn load(&self) -> Result<TestbedConfig, LifecycleError> {
        Ok(TestbedConfig::load(self.config.as_deref())?)
    }
}

/// How a run's engine is started: the options `start` and `run` share.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct EngineOptions {
    /// Engine to serve with.
    #[arg(long, value_enum, default_value_t = EngineKind::Kernel)]
    pub engine: EngineKind,
    /// Kernel engine spins on non-blocking sockets instead of sleeping.
    #[arg(long)]
    pub busy_poll: bool,
    /// Directory of the `engine` and `loadgen` binaries (default: beside this one).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Remove the leftovers of a crashed run instead of refusing to start.
    #[arg(long)]
    pub clean_leftovers: bool,
    /// Seconds to wait for the engine to serve.
    #[arg(long, default_value_t = DEFAULT_READY_TIMEOUT.as_secs())]
    pub ready_timeout_s: u64,
    /// Poll-mode driver of a bypass engine: af_xdp, af_packet (on NS3's
    /// veth), memif (shared memory with the dpdk load generator: no
    /// kernel, no link, no impairment; needs --client dpdk and
    /// `[impairment] backend = "none"`) or pci:DDDD:BB:DD.F (a PCI NIC,
    /// bound for the run and given back at stop; no testbed network, the
    /// load generator runs at the NIC's other end; see `supervisor nic`).
    #[arg(long, default_value = "af_xdp")]
    pub pmd: Pmd,
    /// One minimum TCP retransmission timeout for every stack of the run,
    /// ms, 1..=10000 (Linux: the routes' rto_min; F-Stack: rexmit_min
    /// with 1 ms of slop, the least it takes; smoltcp: its sockets'
    /// minimum). Default: each stack's
    /// own (200, 30 + 10 slop, 10).
    #[arg(long)]
    pub rto_min_ms: Option<u32>,
}

impl EngineOptions {
    /// Start's options; `client` is the load generator's stack the run
    /// expects.
    fn start_options(&self, client: contract::ClientStack) -> StartOptions {
        StartOptions {
            engine: self.engine,
            busy_poll: self.busy_poll,
            bin_dir: self.bin_dir.clone().unwrap_or_else(bins::default_dir),
            clean_leftovers: self.clean_leftovers,
            ready_timeout: Duration::from_secs(self.ready_timeout_s),
            pmd: self.pmd.clone(),
            rto_min_ms: self.rto_min_ms,
            client,
        }
    }
}

/// `supervisor start`.
#[derive(Debug, Clone, clap::Parser, Serialize, Deserialize)]
#[command(name = "start")]
pub struct StartArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub engine: EngineOptions,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
    /// Return once the engine serves, leaving a background supervisor that
    /// owns the run (stop it with `supervisor stop`).
    #[arg(long)]
    pub detach: bool,
    /// Internal: this process is the background supervisor of `--detach`.
    #[arg(long, hide = true)]
    pub background: bool,
    /// Run the engine on this host (`ssh://[user@]host[:port]`), as
    /// `[hosts] engine` in the configuration; `attach`, `stats` and `stop`
    /// then reach the run through this supervisor.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_host: Option<String>,
    /// Run the load generator on this host, as `[hosts] client`.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_host: Option<String>,
}

/// `supervisor attach`.
#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    /// Message counts, one load-generator run each (e.g. 10000,100000,1000000).
    #[arg(long, value_delimiter = ',', required = true)]
    pub packets: Vec<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub load: LoadOptions,
    /// Directory of the `loadgen` binary (default: beside this one).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Print the rows as one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `supervisor stats`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// One JSON document (with --follow: one JSON line per interval).
    #[arg(long)]
    pub json: bool,
    /// Keep printing every interval until the run ends or Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Interval for --follow, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
}

/// `supervisor stop`.
#[derive(Debug, Clone, clap::Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `supervisor run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub engine: EngineOptions,
    /// Message counts, one load-generator run each.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub packets: Vec<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub load: LoadOptions,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run the engine on this host (`ssh://[user@]host[:port]`), as
    /// `[hosts] engine` in the configuration.
    #[arg(long)]
    pub engine_host: Option<String>,
    /// Run the load generator on this host, as `[hosts] client`.
    #[arg(long)]
    pub client_host: Option<String>,
}

impl RunArgs {
    /// The configuration, with the hosts given on the command line.
    ///
    /// # Errors
    /// The configuration (or a host URL) is bad.
    pub fn config(&self) -> Result<TestbedConfig, LifecycleError> {
        Ok(self
            .common
            .load()?
            .with_hosts(self.engine_host.as_deref(), self.client_host.as_deref())?)
    }
}

/// How long `stop` waits for the owning supervisor to finish its teardown.
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// SIGINT/SIGTERM raise this flag; long waits check it.
pub(crate) fn interrupt_flag() -> Result<Arc<AtomicBool>, LifecycleError> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&flag))
            .map_err(LifecycleError::io("installing signal handlers"))?;
    }
    Ok(flag)
}

fn say(line: &str) {
    eprintln!("supervisor: {line}");
}

fn print_teardown(report: &TeardownReport) {
    for line in &report.done {
        say(line);
    }
    for line in &report.problems {
        say(&format!("cleanup problem: {line}"));
    }
}

/// `start`: in the foreground, serve until a signal or the engine's death;
/// with `--detach`, hand the run to a background supervisor.
///
/// # Errors
/// The failed step (everything created before it is removed).
pub fn start(args: &StartArgs) -> Result<i32, LifecycleError> {
    let config = args
        .common
        .load()?
        .with_hosts(args.engine_host.as_deref(), args.client_host.as_deref())?;
    if config.hosts().is_some() {
        refuse_on_two_hosts(&args.engine.pmd, config.client_stack())?;
        return if args.detach && !args.background {
            start_detached(args, &config)
        } else {
            super::remote::start(args, &config)
        };
    }
    bins::require(
        &bins::path(
            &args.engine.start_options(config.client_stack()).bin_dir,
            Binary::Engine,
        )?,
        args.engine.engine,
    )?;
    if args.detach && !args.background {
        return start_detached(args, &config);
    }
    let interrupted = interrupt_flag()?;
    let options = args.engine.start_options(config.client_stack());
    let mut run = Run::start(config, &options, &mut |l| say(l))?;
    if interrupted.load(Ordering::Relaxed) {
        // The signal came while starting: the start was interrupted, not
        // completed.
        say("signal received while starting: stopping");
        print_teardown(&run.stop());
        return Ok(EXIT_INTERRUPTED);
    }
    say("serving; Ctrl-C or `supervisor stop` ends the run");
    let code = watch(&mut run, &interrupted)?;
    print_teardown(&run.stop());
    Ok(code)
}

/// Waits until a signal or the engine's death; returns the exit code.
fn watch(run: &mut Run, interrupted: &AtomicBool) -> Result<i32, LifecycleError> {
    loop {
        if interrupted.load(Ordering::Relaxed) {
            say("signal received: stopping");
            return Ok(EXIT_OK);
        }
        if let Some(ending) = run.engine_ending()? {
            say(&format!(
                "the engine (pid {}) {ending}; ending the run",
                run.state().engine.map_or(0, |p| p.pid)
            ));
            return Ok(EXIT_CHILD_DIED);
        }
        if let Some((pid, how)) = run.config().and_then(netview::emulator_ending) {
            say(&format!(
                "the link emulator (pid {pid}) {how}; ending the run"
            ));
            return Ok(EXIT_LOSS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_detached(args: &StartArgs, config: &TestbedConfig) -> Result<i32, LifecycleError> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(LifecycleError::io("locating this binary"))?;
    let dir = config.state_dir();
    dir.create().map_err(LifecycleError::io(format!(
        "creating {}",
        dir.path().display()
    )))?;
    let log_path = dir.file(StateFile::SupervisorLog);
    let (log, log_err) = testbed::host::command::log_streams(&log_path).map_err(
        LifecycleError::io(format!("creating {}", log_path.display())),
    )?;
    // Read through our own handle: a background supervisor that fails to
    // start tears its run down, and its log file with it.
    let mut log_reader = std::fs::File::open(&log_path).map_err(LifecycleError::io(format!(
        "opening {}",
        log_path.display()
    )))?;
    // What it said, and its log gone: a start that failed before it
    // recorded a run has no teardown to remove the log.
    let mut log_tail = || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut log_reader, &mut text);
        if RunState::load(config.name()).is_err()
            && !matches!(OwnerRecord::load(config.name()), Ok(Some(_)))
        {
            dir.remove(StateFile::SupervisorLog);
            dir.remove_if_empty();
        }
        session::tail_of(&text, &log_path)
    };
    // The same start, in the background: its arguments are these, rendered.
    let background = StartArgs {
        detach: false,
        background: true,
        ..args.clone()
    };
    let mut command = std::process::Command::new(exe);
    command
        .arg("start")
        .args(to_argv(&background)?)
        // Its own process group: the terminal's Ctrl-C is not for it.
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let mut child = command.spawn().map_err(|source| LifecycleError::Spawn {
        role: "background supervisor",
        source,
    })?;
    let limit = Duration::from_secs(args.engine.ready_timeout_s + 60);
    let waited = wait::until(limit, Duration::from_millis(50), || {
        match child.try_wait() {
            Ok(Some(status)) => return Check::Failed(Ok(process::Ending::from_status(status))),
            Ok(None) => {}
            Err(e) => return Check::Failed(Err(e)),
        }
        match serving_owned_by(config, child.id()) {
            Some(serving) => Check::Ready(serving),
            None => Check::Pending,
        }
    });
    match waited {
        Ok((engine, server)) => {
            println!(
                "testbed `{}`: engine `{engine}` serving on {server} (supervisor pid {}, log {}); `supervisor stop` ends it",
                config.name(),
                child.id(),
                log_path.display()
            );
            Ok(EXIT_OK)
        }
        Err(Waited::Failed(Ok(ending))) => Err(LifecycleError::DiedStarting {
            role: "background supervisor",
            pid: child.id(),
            ending,
            log_tail: log_tail(),
        }),
        Err(Waited::Failed(Err(e))) => Err(LifecycleError::io(
            "waiting for the background supervisor",
        )(e)),
        Err(Waited::TimedOut) => {
            let _ = process::terminate(&mut child, Duration::from_secs(10));
            Err(LifecycleError::StartTimeout {
                role: "background supervisor",
                pid: child.id(),
                seconds: limit.as_secs(),
                log_tail: log_tail(),
            })
        }
    }
}

/// What a two-host run cannot take, refused before any host is reached:
/// a memif pair (two hosts share no memory) and a DPDK client (it takes
/// over NS1's veth, which two hosts lack).
///
/// # Errors
/// [`LifecycleError::Memif`], [`LifecycleError::Client`].
pub(crate) fn refuse_on_two_hosts(
    pmd: &Pmd,
    client: contract::ClientStack,
) -> Result<(), LifecycleError> {
    if *pmd == Pmd::Memif {
        return Err(testbed::run::memif::MemifRefusal::TwoHosts.into());
    }
    if client.is_bypass() {
        return Err(testbed::run::client::ClientRefusal::RemoteClient.into());
    }
    Ok(())
}

/// The engine and its address once the run of `config` is serving and
/// owned by the supervisor `pid` (a single-host run's state, or a two-host
/// run's owner record).
fn serving_owned_by(config: &TestbedConfig, pid: u32) -> Option<(EngineKind, String)> {
    if config.hosts().is_some() {
        return OwnerRecord::load(config.name())
            .ok()
            .flatten()
            .filter(|r| r.owner.pid == pid)
            .map(|r| (r.engine, format!("{} (two hosts)", r.server)));
    }
    RunState::load(config.name())
        .ok()
        .filter(|s| s.supervisor.pid == pid && s.phase == Phase::Ready)
        .map(|s| (s.engine_kind, s.server.to_string()))
}

/// Loads the run state of a live run.
fn live_run(config: &TestbedConfig) -> Result<RunState, LifecycleError> {
    let state = RunState::load(config.name())?;
    if !state.supervisor.is_alive() {
        return Err(LifecycleError::Leftovers {
            testbed: state.testbed.clone(),
            pid: state.supervisor.pid,
            what: describe_leftovers(&state),
        });
    }
    Ok(state)
}

/// `attach`: one load-generator run per count against the running engine.
///
/// # Errors
/// No live run, or a step failed.
pub fn attach(args: &AttachArgs) -> Result<i32, LifecycleError> {
    let config = args.common.load()?;
    if OwnerRecord::load(config.name())?.is_some() {
        return super::remote::attach(args, &config);
    }
    let state = live_run(&config)?;
    let interrupted = interrupt_flag()?;
    let bin_dir = args.bin_dir.clone().unwrap_or_else(bins::default_dir);
    let mut rows = Vec::new();
    for &packets in &args.packets {
        if !args.json {
            say(&format!("attaching the load generator: {packets} messages"));
        }
        let row = attach::attach(
            &config,
            &state,
            &bin_dir,
            packets,
            &args.load,
            &interrupted,
            None,
        )?
        .row;
        if !args.json {
            print!("{}", attach::format_table(std::slice::from_ref(&row)));
        }
        rows.push(row);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    }
    Ok(if rows.iter().all(ResultRow::is_clean) {
        EXIT_OK
    } else {
        EXIT_LOSS
    })
}

/// What `stats --json` prints.
#[derive(Debug, Serialize)]
pub struct StatsDocument {
    /// Testbed name.
    pub testbed: String,
    /// Run phase.
    pub phase: Phase,
    /// Engine kind.
    pub engine_kind: EngineKind,
    /// The supervisor owning the run.
    pub supervisor_pid: u32,
    /// Core of the engine.
    pub engine_core: usize,
    /// Core of the load generator.
    pub loadgen_core: usize,
    /// Address the engine serves.
    pub server: String,
    /// Impairment in force.
    pub impairment: String,
    /// Observed loss on the impaired direction, percent.
    pub observed_loss_percent: Option<f64>,
    /// The attached load generator's stack, as its slot says (none
    /// attached yet: `None`).
    pub client: Option<ClientInfo>,
    /// Everything in the segment: header and one entry per producer.
    pub segment: shm_layout::Snapshot,
}

/// The load generator's TCP stack and, for a bypass one, its PMD.
#[derive(Debug, Serialize)]
pub struct ClientInfo {
    /// `kernel` or `dpdk`.
    pub stack: contract::ClientStack,
    /// `af_xdp`, `af_packet` (bypass stacks only).
    pub pmd: Option<&'static str>,
}

impl ClientInfo {
    /// From the load generator's slot in `snapshot`, if it has one.
    fn of(snapshot: &shm_layout::Snapshot) -> Option<Self> {
        let slot = attach::slot(snapshot, shm_layout::Role::Loadgen)?;
        let (_, stack, pmd) = contract::loadgen::parse_slot_kind(&slot.info.kind)?;
        Some(Self {
            stack,
            pmd: pmd.map(contract::PmdKind::ini_name),
        })
    }
}

fn stats_document(config: &TestbedConfig, state: &RunState, segment: &Segment) -> StatsDocument {
    let status = testbed::net::status(config).ok();
    let snapshot = segment.snapshot();
    StatsDocument {
        testbed: state.testbed.clone(),
        phase: state.phase,
        engine_kind: state.engine_kind,
        supervisor_pid: state.supervisor.pid,
        engine_core: state.engine_core,
        loadgen_core: state.loadgen_core,
        server: state.server.to_string(),
        impairment: status
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), netview::describe_impairment),
        observed_loss_percent: status.as_ref().and_then(netview::observed_loss_percent),
        client: ClientInfo::of(&snapshot),
        segment: snapshot,
    }
}

fn print_stats_human(doc: &StatsDocument) {
    println!(
        "testbed {} — engine {} ({:?}), supervisor pid {}, cores engine {} / loadgen {}, {}",
        doc.testbed,
        doc.engine_kind,
        doc.phase,
        doc.supervisor_pid,
        doc.engine_core,
        doc.loadgen_core,
        doc.server
    );
    let loss = doc
        .observed_loss_percent
        .map_or_else(|| "n/a".to_owned(), |l| format!("{l:.2} %"));
    println!("impairment: {} (observed loss {loss})", doc.impairment);
    for slot in &doc.segment.slots {
        let head = format!(
            "{:?} pid {} [{:?}] {}",
            slot.role, slot.info.pid, slot.info.state, slot.info.kind
        );
        let Some(c) = &slot.counters else {
            println!("{head}: counters unreadable (being rewritten without pause)");
            continue;
        };
        // A counter the producer does not measure shows as —, not 0.
        let v = |x: Option<u64>| x.map_or_else(|| "—".to_owned(), |x| x.to_string());
        println!(
            "{head}: sent {} received {} failed {} bytes out/in {}/{} conns {} proto-errors {} rx/tx pkts {}/{}",
            v(c.messages_sent), v(c.messages_received), v(c.messages_failed), v(c.bytes_sent),
            v(c.bytes_received), v(c.connections_active), v(c.protocol_errors), v(c.rx_packets),
            v(c.tx_packets)
        );
        let losses: Vec<String> = [
            ("rx missed", c.rx_missed),
            ("rx no mbuf", c.rx_nombuf),
            ("tx errors", c.tx_errors),
            ("tx dropped", c.tx_dropped),
            ("port stats failures", c.port_stats_failures),
        ]
        .iter()
        .filter_map(|(what, n)| n.filter(|n| *n > 0).map(|n| format!("{what} {n}")))
        .collect();
        if !losses.is_empty() {
            println!("    ⚠ lost inside the engine: {}", losses.join(", "));
        }
        if let Some(l) = slot.latency.as_ref().filter(|l| l.count > 0) {
            let bound = if l.percentiles_are_lower_bounds {
                "≥"
            } else {
                ""
            };
            println!(
                "    rtt µs: mean {:.1} p50 {bound}{:.1} p90 {bound}{:.1} p99 {bound}{:.1} p99.9 {bound}{:.1} max {:.1} ({} samples, {} clamped)",
                l.mean_us, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.count, l.clamped
            );
        }
    }
}

/// `stats`: reads the segment (and nothing else of the children).
///
/// # Errors
/// No live run, or the segment fails validation.
pub fn stats(args: &StatsArgs) -> Result<i32, LifecycleError> {
    let config = args.common.load()?;
    if OwnerRecord::load(config.name())?.is_some() {
        return super::remote::stats(args, &config);
    }
    let state = live_run(&config)?;
    let path = state.segment_path()?;
    let segment = Segment::open(path)?;
    if !args.follow {
        let doc = stats_document(&config, &state, &segment);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            print_stats_human(&doc);
        }
        return Ok(EXIT_OK);
    }
    let interrupted = interrupt_flag()?;
    let interval = Duration::from_millis(args.interval_ms.max(10));
    while !interrupted.load(Ordering::Relaxed) && state.supervisor.is_alive() {
        let doc = stats_document(&config, &state, &segment);
        if args.json {
            println!("{}", serde_json::to_string(&doc).unwrap_or_default());
        } else {
            print_stats_human(&doc);
        }
        std::thread::sleep(interval);
    }
    Ok(EXIT_OK)
}

/// `stop`: asks the owning supervisor to end the run, or cleans the
/// leftovers of a dead one. Harmless when nothing runs.
///
/// # Errors
/// The owning supervisor does not finish in time.
pub fn stop(args: &StopArgs) -> Result<i32, LifecycleError> {
    let config = args.common.load()?;
    if let Some(record) = OwnerRecord::load(config.name())? {
        return super::remote::stop(&config, &record);
    }
    let state = match RunState::load(config.name()) {
        Ok(state) => state,
        Err(StateError::NotRunning { .. }) => {
            say(&format!(
                "nothing to stop: no run of testbed `{}`",
                config.name()
            ));
            return Ok(EXIT_OK);
        }
        Err(e) => return Err(e.into()),
    };
    if state.supervisor.is_alive() && state.supervisor != ProcessId::current() {
        say(&format!(
            "asking the supervisor (pid {}) to stop the run",
            state.supervisor.pid
        ));
        terminate_owner(state.supervisor, &config)?;
        if RunState::load(config.name()).is_err() {
            say("stopped; everything the run created is removed");
            return Ok(EXIT_OK);
        }
    }
    // The owner is gone (crashed, or killed before finishing): clean up from
    // the record.
    say(&format!(
        "the supervisor (pid {}) is gone; removing its leftovers: {}",
        state.supervisor.pid,
        describe_leftovers(&state)
    ));
    let mut report = TeardownReport::default();
    teardown_recorded(
        &config,
        &RunState::load(config.name()).unwrap_or(state),
        &mut report,
    );
    print_teardown(&report);
    Ok(EXIT_OK)
}

/// SIGTERM to the supervisor owning a run, then waits (bounded) until it
/// has finished its teardown and exited.
///
/// # Errors
/// [`LifecycleError::StopTimeout`].
pub(crate) fn terminate_owner(
    owner: ProcessId,
    config: &TestbedConfig,
) -> Result<(), LifecycleError> {
    owner.signal(nix::sys::signal::Signal::SIGTERM);
    let gone = wait::until(STOP_WITHIN, Duration::from_millis(50), || {
        if owner.is_alive() {
            Check::<(), ()>::Pending
        } else {
            Check::Ready(())
        }
    });
    gone.map_err(|_| LifecycleError::StopTimeout {
        pid: owner.pid,
        seconds: STOP_WITHIN.as_secs(),
        log: config.state_dir().file(StateFile::SupervisorLog),
    })
}

/// What `run --json` prints.
#[derive(Debug, Serialize)]
pub struct RunDocument {
    /// One row per message count.
    pub rows: Vec<ResultRow>,
    /// The engine's death, if it died.
    pub engine_died: Option<String>,
    /// What teardown did.
    pub teardown: TeardownReport,
}

/// `run`: start, attach once per count, print the table, stop.
///
/// # Errors
/// A step failed (everything created is removed).
pub fn run(args: &RunArgs) -> Result<i32, LifecycleError> {
    let config = args.config()?;
    if let (Some(addr), true) = (args.engine.pmd.pci(), args.engine.engine.is_bypass()) {
        // Nothing here can attach to it: refused before anything is set up.
        return Err(LifecycleError::NoLocalClient {
            testbed: config.name().to_owned(),
            device: addr.to_string(),
            server: std::net::SocketAddrV4::new(config.server_addr(), config.port()),
        });
    }
    let client = testbed::run::client::stack_of(&config, args.load.client);
    if client.is_bypass() {
        // Refused before anything is set up.
        let pmd = testbed::run::memif::client_pmd(
            args.engine.engine,
            Some(&args.engine.pmd),
            &args.load.client_pmd,
        )?;
        testbed::run::client::ClientPort::check(&config, &pmd)?;
    }
    let interrupted = interrupt_flag()?;
    let options = args.engine.start_options(client);
    let mut run = Run::start(config.clone(), &options, &mut |l| say(l))?;
    let mut rows = Vec::new();
    let mut engine_died = None;
    let mut code = EXIT_OK;
    for &packets in &args.packets {
        say(&format!(
            "load generator: {packets} messages, {} loop",
            args.load.mode.name()
        ));
        let state = run.state().clone();
        match attach::attach(
            &config,
            &state,
            &options.bin_dir,
            packets,
            &args.load,
            &interrupted,
            None,
        ) {
            Ok(attach::Attached { row, .. }) => {
                if !row.is_clean() {
                    code = EXIT_LOSS;
                }
                rows.push(row);
            }
            Err(LifecycleError::Interrupted) => {
                say("signal received: stopping");
                code = EXIT_INTERRUPTED;
                break;
            }
            Err(e) => {
                print_teardown(&run.stop());
                return Err(e);
            }
        }
        if let Some(ending) = run.engine_ending()? {
            engine_died = Some(format!("the engine {ending}"));
            say(&format!(
                "the engine (pid {}) {ending}; ending the run",
                state.engine.map_or(0, |p| p.pid)
            ));
            code = EXIT_CHILD_DIED;
            break;
        }
        if netview::emulator_ending(&config).is_some() {
            // attach said how it ended; later counts cannot pass.
            code = EXIT_LOSS;
            break;
        }
        if interrupted.load(Ordering::Relaxed) {
            code = EXIT_INTERRUPTED;
            break;
        }
    }
    let teardown = run.stop();
    if args.json {
        let doc = RunDocument {
            rows,
            engine_died,
            teardown,
        };
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print_teardown(&teardown);
        print!("{}", attach::format_table(&rows));
    }
    Ok(code)
}
