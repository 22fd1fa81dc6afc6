//! `attach`: runs the load generator in NS1 against the running engine, once
//! per message count, and turns what both wrote into the segment into a
//! result row.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use contract::argv::to_argv;
use contract::loadgen::{parse_slot_kind, Mode, Pattern, ShortConnections};
use contract::{ClientStack, EngineKind, PmdKind};
use serde::Serialize;
use shm_layout::{CounterReadings, LatencySummary, Role, Segment, Snapshot};

use super::client::{self, ClientCore, ClientPort};
use super::error::LifecycleError;
use super::memif::{self, MemifRefusal};
use super::netview;
use super::state::{Phase, RunState};
use crate::bins::{self, Binary};
use crate::config::TestbedConfig;
use crate::host::process::{self, Ending, ProcessId};
use crate::host::wait::{self, Check, Waited};
use crate::host::{command, cpu};
use crate::net::{self, rx_drops};
use crate::placement::Node;
use crate::state::{read_json, write_json, StateDir, StateFile};
use crate::topology::NsRole;

pub use contract::loadgen::{LoadOptions, REPLY_TIMEOUT_MS};

/// One result row: one load-generator run at one message count.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    /// Messages requested.
    pub packets: u64,
    /// Engine kind.
    pub engine: EngineKind,
    /// The load generator's TCP stack, as its slot says.
    pub client: ClientStack,
    /// A bypass client's poll-mode driver (`af_xdp`, `af_packet`).
    pub client_pmd: Option<&'static str>,
    /// How a bypass client used its core (spinning alone, or yielding to
    /// the link emulator on the same core).
    pub client_core: Option<ClientCore>,
    /// Load mode (`closed` / `open`).
    pub mode: Mode,
    /// Connection pattern (`persistent` / `short`).
    pub pattern: Pattern,
    /// Short connections: their rate and handshakes, from the load
    /// generator's result (`None` for persistent ones).
    pub short: Option<ShortConnections>,
    /// Requests sent (after warm-up).
    pub sent: u64,
    /// Replies received and verified.
    pub answered: u64,
    /// Requests without a correct reply.
    pub failed: u64,
    /// Messages exchanged during warm-up (excluded from every other figure
    /// of the row except `engine_received`).
    pub warmup: u64,
    /// Requests the engine decoded during this run, warm-up included
    /// (engine's own counter): equals `sent + warmup` on a clean run.
    pub engine_received: u64,
    /// Wall time of the measured phase, seconds.
    pub elapsed_s: f64,
    /// Answered messages per second.
    pub messages_per_s: f64,
    /// Request bytes answered per second, in kB/s (1 kB = 1000 bytes), as
    /// the original experiment reported bandwidth.
    pub bandwidth_kb_s: f64,
    /// Round-trip times, microseconds.
    pub rtt: LatencySummary,
    /// How the load generator ended.
    pub loadgen_exit: Ending,
    /// Impairment backend in force and the loss it was configured with.
    pub impairment: String,
    /// Loss observed on the impaired direction so far, percent (None when
    /// the backend cannot count it).
    pub observed_loss_percent: Option<f64>,
    /// How busy the engine kept its core during the run (0..=1): the share
    /// of the run's time its poll loop spent in passes that found work when
    /// it spins, else its CPU time over the run.
    pub engine_busy: Option<f64>,
    /// The same for the load generator: near 1, the client is the limit.
    pub loadgen_busy: Option<f64>,
    /// The engine's CPU time over the run's wall time (0..=1).
    pub engine_cpu: Option<f64>,
    /// The load generator's CPU time over its wall time (0..=1).
    pub loadgen_cpu: Option<f64>,
    /// Frames lost inside the engine during the run, by where (zero on a
    /// clean engine): a loss here is not the link's.
    pub engine_losses: EngineLosses,
}

/// Frames lost on the server's side of the link during one run, not by the
/// link: a bypass engine's port counters' growth, and the drops of NS3's
/// interface before any stack saw the frame. `None`: not measured (the
/// kernel engine has no port counters; a NIC bound to DPDK has no kernel
/// interface to read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EngineLosses {
    /// Frames NS3's interface dropped on receive before the engine's stack
    /// saw them (`ethtool -S`: on an AF_XDP veth, redirects into a full
    /// AF_XDP ring, which the port's `imissed` does not count).
    pub interface_rx_drops: Option<u64>,
    /// The port's receive queue was full (`imissed`).
    pub rx_missed: Option<u64>,
    /// No receive mbuf (`rx_nombuf`).
    pub rx_nombuf: Option<u64>,
    /// Failed transmissions (`oerrors`).
    pub tx_errors: Option<u64>,
    /// Frames its stack wrote that never reached the driver.
    pub tx_dropped: Option<u64>,
    /// Reads of the port's counters that failed.
    pub port_stats_failures: Option<u64>,
}

impl EngineLosses {
    /// The growth of each counter between two readings (the port's, and
    /// the interface's drops).
    fn between(
        before: Option<&CounterReadings>,
        after: Option<&CounterReadings>,
        interface: (Option<u64>, Option<u64>),
    ) -> Self {
        let grew = |get: fn(&CounterReadings) -> Option<u64>| match (before, after) {
            (Some(b), Some(a)) => Some(get(a)?.saturating_sub(get(b).unwrap_or(0))),
            _ => None,
        };
        Self {
            interface_rx_drops: match interface {
                (Some(b), Some(a)) => Some(a.saturating_sub(b)),
                _ => None,
            },
            rx_missed: grew(|c| c.rx_missed),
            rx_nombuf: grew(|c| c.rx_nombuf),
            tx_errors: grew(|c| c.tx_errors),
            tx_dropped: grew(|c| c.tx_dropped),
            port_stats_failures: grew(|c| c.port_stats_failures),
        }
    }

    /// Whether any frame was lost on the server's side.
    #[must_use]
    pub fn any(&self) -> bool {
        self.interface_rx_drops.is_some_and(|n| n > 0) || self.port_any()
    }

    /// Whether the engine's port counted any frame lost.
    fn port_any(&self) -> bool {
        [
            self.rx_missed,
            self.rx_nombuf,
            self.tx_errors,
            self.tx_dropped,
            self.port_stats_failures,
        ]
        .iter()
        .any(|v| v.is_some_and(|v| v > 0))
    }
}

/// How busy both processes were over one load-generator run, and what the
/// server's side lost meanwhile.
#[derive(Debug, Clone, Copy, Default)]
pub struct Busy {
    engine: Option<f64>,
    loadgen: Option<f64>,
    engine_cpu: Option<f64>,
    loadgen_cpu: Option<f64>,
    engine_losses: EngineLosses,
}

impl Busy {
    /// From the engine's counters before and after the run (its loop's
    /// busy share, its port's losses), the load generator's slot, the CPU
    /// shares where the processes could be measured, and the interface's
    /// drop counter before and after.
    #[must_use]
    pub fn of(
        engine: (Option<&CounterReadings>, Option<&CounterReadings>),
        loadgen: &shm_layout::SlotSnapshot,
        cpu: (Option<f64>, Option<f64>),
        interface_drops: (Option<u64>, Option<u64>),
    ) -> Self {
        let (before, after) = engine;
        let (engine_cpu, loadgen_cpu) = cpu;
        let grew = |get: fn(&CounterReadings) -> Option<u64>| match (before, after) {
            (Some(b), Some(a)) => Some(get(a)?.saturating_sub(get(b).unwrap_or(0))),
            _ => None,
        };
        // A spinning loop's time in passes that found work, over the same
        // producer's clock; a process that sleeps has its CPU time instead.
        let spin = |busy: Option<u64>, elapsed: Option<u64>| {
            busy.zip(elapsed)
                .and_then(|(busy, elapsed)| shm_layout::busy_share(busy, elapsed))
        };
        let engine_spin = spin(grew(|c| c.busy_ns), grew(|c| c.elapsed_ns));
        let loadgen_spin = loadgen.counters.and_then(|c| spin(c.busy_ns, c.elapsed_ns));
        Self {
            engine: engine_spin.or(engine_cpu),
            loadgen: loadgen_spin.or(loadgen_cpu),
            engine_cpu,
            loadgen_cpu,
            engine_losses: EngineLosses::between(before, after, interface_drops),
        }
    }
}

impl ResultRow {
    /// Whether every message was answered correctly.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.answered == self.packets && self.loadgen_exit.is_success()
    }
}

/// Load generators recorded as running in a state directory (for
/// teardown).
#[must_use]
pub fn recorded_loadgens(dir: &StateDir) -> Vec<ProcessId> {
    read_json::<ProcessId>(&dir.file(StateFile::LoadgenPid))
        .ok()
        .flatten()
        .into_iter()
        .collect()
}

/// The slot of `role` in a snapshot.
#[must_use]
pub fn slot(snapshot: &Snapshot, role: Role) -> Option<&shm_layout::SlotSnapshot> {
    snapshot.slots.iter().find(|s| s.role == role)
}

/// One load-generator run: its row, what it printed, and the exact
/// command lines of it and of the engine it ran against.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The result row.
    pub row: ResultRow,
    /// The load generator's stdout (its own final JSON result).
    pub stdout: String,
    /// The load generator's command line, as it ran.
    pub command: Vec<String>,
}

/// How often a running load generator's progress is read from the segment.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// Runs the load generator once with `packets` messages and builds its
/// row; returns it with what the load generator printed on stdout (its own
/// final JSON result, so a caller can check the row against the loadgen's
/// own counters) and its command line.
///
/// Without `progress` the load generator draws its own progress bar (when
/// stderr is a terminal). With it, the load generator draws none and
/// `progress` gets the messages answered so far (of the measured phase,
/// from the segment) every [`PROGRESS_INTERVAL`], for a caller with a bar
/// of its own: a run of a million messages over the impaired link takes
/// most of an hour.
///
/// # Errors
/// The run is not ready, the segment cannot be opened, the loadgen cannot
/// start or overruns its bound, or `interrupted` was raised (the loadgen is
/// then stopped).
pub fn attach(
    config: &TestbedConfig,
    run: &RunState,
    bin_dir: &Path,
    packets: u64,
    load: &LoadOptions,
    interrupted: &AtomicBool,
    progress: Option<&mut dyn FnMut(u64)>,
) -> Result<Attached, LifecycleError> {
    require_ready(run)?;
    if let Some(nic) = &run.pci_device {
        return Err(LifecycleError::NoLocalClient {
            testbed: run.testbed.clone(),
            device: nic.address.to_string(),
            server: run.server,
        });
    }
    let segment_path = run.segment_path()?.to_owned();
    let segment = Segment::open(&segment_path)?;
    let engine_before = slot(&segment.snapshot(), Role::Engine).and_then(|s| s.counters);
    let server_node = config.node(NsRole::Server);
    let drops_before = rx_drops::rx_drops(&server_node, &config.server_iface());
    let engine_pid = run.engine.map(|p| p.pid);
    // A DPDK client takes NS1's veth for the length of its run; the guard
    // gives it back however the run ends.
    let dpdk_client = match client::stack_of(config, load.client) {
        ClientStack::Kernel if memif::engine_on_memif(run.engine_kind, run.pmd.as_ref()) => {
            return Err(MemifRefusal::KernelClient.into());
        }
        ClientStack::Kernel => None,
        ClientStack::Dpdk => {
            let pmd = memif::client_pmd(run.engine_kind, run.pmd.as_ref(), &load.client_pmd)?;
            ClientPort::check(config, &pmd)?;
            let core = ClientCore::of(config.cores(), netview::emulator_running(config));
            let say = &mut |l: &str| eprintln!("supervisor: {l}");
            say(&format!(
                "dpdk load generator: {}",
                core.describe(config.cores())
            ));
            Some((ClientPort::prepare(config, run, &pmd, say)?, core))
        }
    };
    let engine_cpu_before = engine_pid.and_then(cpu::process_cpu);
    let ran = run_loadgen(
        &config.node(NsRole::Client),
        run,
        &segment,
        bin_dir,
        packets,
        load,
        dpdk_client.as_ref().map(|(port, core)| DpdkClient {
            ini: port.ini(),
            rto_min_ms: run.rto_min_ms,
            core: *core,
        }),
        interrupted,
        progress,
    );
    let client_core = dpdk_client.as_ref().map(|(_, core)| *core);
    if let Some((port, _)) = dpdk_client {
        let report = port.teardown();
        for line in report.done.iter().chain(&report.problems) {
            eprintln!("supervisor: {line}");
        }
    }
    let ran = ran?;
    let engine_cpu = engine_pid
        .and_then(cpu::process_cpu)
        .zip(engine_cpu_before)
        .and_then(|(after, before)| cpu::share(after.saturating_sub(before), ran.wall));
    if let Some((pid, how)) = netview::emulator_ending(config) {
        eprintln!(
            "supervisor: the link emulator (pid {pid}) {how}: NS1 and NS3 are cut off; restart the network with `supervisor stop` then `start`"
        );
    }
    let snapshot = settled_snapshot(&segment);
    let engine_after = slot(&snapshot, Role::Engine).and_then(|s| s.counters);
    let loadgen = slot(&snapshot, Role::Loadgen).ok_or(LifecycleError::MissingSlot {
        segment: segment_path.clone(),
        role: "loadgen",
    })?;
    let busy = Busy::of(
        (engine_before.as_ref(), engine_after.as_ref()),
        loadgen,
        (engine_cpu, ran.cpu),
        (
            drops_before,
            rx_drops::rx_drops(&server_node, &config.server_iface()),
        ),
    );
    let (impairment, observed_loss_percent) = impairment_summary(config);
    let mut row = build_row(
        packets,
        run.engine_kind,
        load,
        loadgen,
        engine_received(engine_before.as_ref(), engine_after.as_ref()),
        ran.ending,
        impairment,
        observed_loss_percent,
        busy,
        ShortConnections::from_result(&ran.stdout),
    );
    row.client_core = client_core;
    Ok(Attached {
        row,
        stdout: ran.stdout,
        command: ran.command,
    })
}

fn require_ready(run: &RunState) -> Result<(), LifecycleError> {
    if run.phase == Phase::Ready {
        Ok(())
    } else {
        Err(LifecycleError::NotReady {
            testbed: run.testbed.clone(),
            phase: run.phase,
        })
    }
}

/// Requests the engine decoded between two of its counter readings (0
/// when either is missing).
#[must_use]
pub fn engine_received(before: Option<&CounterReadings>, after: Option<&CounterReadings>) -> u64 {
    match (
        before.and_then(|c| c.messages_received),
        after.and_then(|c| c.messages_received),
    ) {
        (Some(b), Some(a)) => a.saturating_sub(b),
        _ => 0,
    }
}

/// One load-generator run, as it ended.
#[derive(Debug, Clone)]
pub struct LoadgenRun {
    /// Its pid.
    pub pid: u32,
    /// How it ended.
    pub ending: Ending,
    /// Its stdout (its own final JSON result).
    pub stdout: String,
    /// Its command line, as it ran.
    pub command: Vec<String>,
    /// Its wall time, start to exit.
    pub wall: Duration,
    /// Its CPU time over its wall time (0..=1), where it could be read.
    pub cpu: Option<f64>,
}

/// What a DPDK load generator is given beside the load options.
#[derive(Debug, Clone, Copy)]
pub struct DpdkClient<'a> {
    /// Its config.ini ([`ClientPort::ini`]).
    pub ini: &'a Path,
    /// The run's minimum RTO, ms.
    pub rto_min_ms: Option<u32>,
    /// Whether it yields its core.
    pub core: ClientCore,
}

/// Runs the load generator once at `node` against `run`'s server,
/// publishing into `segment` (the run's), recorded in the run's state
/// directory while it runs; on DPDK when `dpdk` says how (its port
/// already prepared); `progress` as for [`attach`].
///
/// # Errors
/// The run is not ready, the loadgen cannot start or overruns its bound,
/// or `interrupted` was raised (the loadgen is then stopped).
#[allow(clippy::too_many_arguments)]
pub fn run_loadgen(
    node: &Node,
    run: &RunState,
    segment: &Segment,
    bin_dir: &Path,
    packets: u64,
    load: &LoadOptions,
    dpdk: Option<DpdkClient<'_>>,
    interrupted: &AtomicBool,
    mut progress: Option<&mut dyn FnMut(u64)>,
) -> Result<LoadgenRun, LifecycleError> {
    require_ready(run)?;
    let loadgen = bins::path(bin_dir, Binary::Loadgen)?;
    let mut args = load.loadgen_args(
        std::net::SocketAddr::V4(run.server),
        packets,
        Some(run.loadgen_core),
        run.segment.clone(),
        progress.is_none(),
    );
    if let Some(dpdk) = dpdk {
        args.stack = ClientStack::Dpdk;
        args.dpdk_config = Some(dpdk.ini.to_owned());
        args.rto_min_ms = dpdk.rto_min_ms;
        args.yield_idle = dpdk.core == ClientCore::YieldsToEmulator;
    }
    let argv = to_argv(&args)?;
    // A caller that shows progress itself (bench, a remote host's serve)
    // gets the load generator's stderr only when it fails: EAL's and
    // libbpf's start-up lines of each DPDK client would bury its own.
    let quiet = progress.is_some();
    let mut command = node.command(&loadgen);
    command
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if quiet {
        command.stderr(Stdio::piped());
    }
    let words = command::words(&command);
    let children_cpu_before = cpu::reaped_children_cpu();
    let started = std::time::Instant::now();
    let mut child = command.spawn().map_err(|source| LifecycleError::Spawn {
        role: "load generator",
        source,
    })?;
    let pid_file = StateDir::of(&run.testbed).file(StateFile::LoadgenPid);
    // Recorded for teardown: a `stop` from elsewhere stops it first.
    let _ = write_json(&pid_file, &ProcessId::of_child(&child));
    // Drain stdout on a thread so a chatty loadgen never blocks on a full pipe.
    let reader = command::drain(child.stdout.take());
    let errors = command::drain(child.stderr.take());
    let limit = load.bound(packets);
    let mut next_progress = std::time::Instant::now() + PROGRESS_INTERVAL;
    let waited = wait::until(limit, Duration::from_millis(20), || {
        if let Some(observe) = progress.as_mut() {
            if std::time::Instant::now() >= next_progress {
                next_progress += PROGRESS_INTERVAL;
                if let Some(lg) = slot(&segment.snapshot(), Role::Loadgen) {
                    observe(lg.counters_or_zero().messages_received);
                }
            }
        }
        if interrupted.load(Ordering::Relaxed) {
            return Check::Failed(None);
        }
        match child.try_wait() {
            Ok(Some(status)) => Check::Ready(Ending::from_status(status)),
            Ok(None) => Check::Pending,
            Err(e) => Check::Failed(Some(e)),
        }
    });
    let ending = match waited {
        Ok(ending) => ending,
        Err(stopped) => {
            let _ = process::terminate(&mut child, Duration::from_secs(3));
            let _ = std::fs::remove_file(&pid_file);
            return Err(match stopped {
                Waited::Failed(None) => LifecycleError::Interrupted,
                Waited::Failed(Some(e)) => LifecycleError::io("waiting for the load generator")(e),
                Waited::TimedOut => LifecycleError::Overran {
                    role: "load generator",
                    pid: child.id(),
                    seconds: limit.as_secs(),
                },
            });
        }
    };
    // Reaped by the wait above: its CPU time is now among the children's.
    let wall = started.elapsed();
    let cpu = cpu::share(cpu::reaped_children_cpu() - children_cpu_before, wall);
    let _ = std::fs::remove_file(&pid_file);
    let stdout = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&errors.join().unwrap_or_default()).into_owned();
    // Say what died and how: a row's counts alone do not tell a killed load
    // generator or a dead link emulator from a lossy link.
    if !ending.is_success() {
        for line in last_lines(&stderr, STDERR_SHOWN) {
            eprintln!("{line}");
        }
        eprintln!(
            "supervisor: the load generator (pid {}) {ending}",
            child.id()
        );
        if let Some(losses) = loss_summary(&stdout) {
            eprintln!("supervisor: the load generator counted {losses}");
        }
    }
    Ok(LoadgenRun {
        pid: child.id(),
        ending,
        stdout,
        command: words,
        wall,
        cpu,
    })
}

/// Lines of a quiet load generator's stderr shown when it fails.
const STDERR_SHOWN: usize = 20;

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> impl Iterator<Item = &str> {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    lines.into_iter().skip(skip)
}

/// The failure counters of a load generator's result line, named, when
/// any is non-zero: what a failed run's row alone does not say.
fn loss_summary(stdout: &str) -> Option<String> {
    let result = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())?;
    let named: Vec<String> = [
        ("timeouts", "timed out"),
        ("resets", "connections reset"),
        ("lost_in_flight", "lost in flight"),
        ("mismatches", "mismatched"),
        ("unsent", "never sent"),
        ("connect_refused", "connects refused"),
        ("connect_failed", "connects failed"),
        ("connect_timeouts", "connects timed out"),
    ]
    .iter()
    .filter_map(|(key, what)| {
        let n = result.get(*key)?.as_u64()?;
        (n > 0).then(|| format!("{n} {what}"))
    })
    .collect();
    (!named.is_empty()).then(|| named.join(", "))
}

/// A snapshot taken once the engine has published twice more: the engine
/// publishes on a timer, so right after the load generator exits its last
/// replies may not be counted yet. Two publications guarantee one that began
/// after the exit. Bounded: a stalled engine yields what it has after 2 s.
#[must_use]
pub fn settled_snapshot(segment: &Segment) -> Snapshot {
    let engine_elapsed = |s: &Snapshot| {
        slot(s, Role::Engine).map(|e| (e.counters_or_zero().elapsed_ns, e.info.state))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut last = engine_elapsed(&segment.snapshot());
    let mut changes = 0;
    loop {
        let snapshot = segment.snapshot();
        let now = engine_elapsed(&snapshot);
        if now != last {
            changes += 1;
            last = now;
        }
        let engine_gone = now.is_none_or(|(_, state)| state != shm_layout::ProducerState::Running);
        if changes >= 2 || engine_gone || std::time::Instant::now() >= deadline {
            return snapshot;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The row of one load-generator run of `packets` messages against an
/// engine of `engine` kind: the load generator's own slot, the requests the
/// engine counted meanwhile, how the load generator ended, the impairment
/// in force, and how busy both sides were.
#[allow(clippy::too_many_arguments)]
#[must_use]
pub fn build_row(
    packets: u64,
    engine: EngineKind,
    load: &LoadOptions,
    loadgen: &shm_layout::SlotSnapshot,
    engine_received: u64,
    ending: Ending,
    impairment: String,
    observed_loss_percent: Option<f64>,
    busy: Busy,
    short: Option<ShortConnections>,
) -> ResultRow {
    let counters = loadgen.counters_or_zero();
    let rtt = loadgen.latency.unwrap_or_default();
    let (client, client_pmd) = parse_slot_kind(&loadgen.info.kind)
        .map_or((ClientStack::Kernel, None), |(_, stack, pmd)| {
            (stack, pmd.map(contract::PmdKind::ini_name))
        });
    let elapsed_s = counters.elapsed_ns as f64 / 1e9;
    let per_s = |x: f64| if elapsed_s > 0.0 { x / elapsed_s } else { 0.0 };
    // The load generator counts the request bytes answered correctly.
    #[allow(clippy::cast_precision_loss)]
    let answered_bytes = counters.answered_bytes as f64;
    ResultRow {
        packets,
        engine,
        client,
        client_pmd,
        client_core: None,
        mode: load.mode,
        pattern: load.pattern,
        short: short.filter(|_| load.pattern == Pattern::Short),
        sent: counters.messages_sent,
        answered: counters.messages_received,
        failed: counters.messages_failed,
        warmup: counters.warmup_messages,
        engine_received,
        elapsed_s,
        messages_per_s: per_s(counters.messages_received as f64),
        bandwidth_kb_s: per_s(answered_bytes) / 1000.0,
        rtt,
        loadgen_exit: ending,
        impairment,
        observed_loss_percent,
        engine_busy: busy.engine,
        loadgen_busy: busy.loadgen,
        engine_cpu: busy.engine_cpu,
        loadgen_cpu: busy.loadgen_cpu,
        engine_losses: busy.engine_losses,
    }
}

fn impairment_summary(config: &TestbedConfig) -> (String, Option<f64>) {
    match net::status(config) {
        Ok(status) => (
            netview::describe_impairment(&status),
            netview::observed_loss_percent(&status),
        ),
        Err(e) => (format!("unknown ({e})"), None),
    }
}

/// The human table of result rows, shaped like the original experiment's.
/// Markers after a row: `≥` before percentiles that are lower bounds
/// (samples above the histogram's top were clamped), and a note naming the
/// frames lost inside the engine, which are not the link's loss.
#[must_use]
pub fn format_table(rows: &[ResultRow]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:>9} {:>7} {:>7} {:>6} {:>9} {:>7} {:>10} {:>11} {:>11} {:>10} {:>11} {:>11}  {}\n",
        "packets",
        "client",
        "engine",
        "mode",
        "answered",
        "failed",
        "rtt mean",
        "rtt p50",
        "rtt p99",
        "rtt max",
        "msgs/s",
        "kB/s",
        "impairment (observed loss)"
    ));
    for r in rows {
        let loss = r
            .observed_loss_percent
            .map_or_else(|| "n/a".to_owned(), |l| format!("{l:.2} %"));
        let bound = if r.rtt.percentiles_are_lower_bounds {
            "≥"
        } else {
            " "
        };
        let mode = match r.pattern {
            Pattern::Short => "short",
            Pattern::Persistent => r.mode.name(),
        };
        out.push_str(&format!(
            "{:>9} {:>7} {:>7} {:>6} {:>9} {:>7} {:>8.1}µs {bound}{:>8.1}µs {bound}{:>8.1}µs {:>8.1}µs {:>11.0} {:>11.1}  {} ({loss})\n",
            r.packets,
            r.client.name(),
            r.engine.as_str(),
            mode,
            r.answered,
            r.failed,
            r.rtt.mean_us,
            r.rtt.p50_us,
            r.rtt.p99_us,
            r.rtt.max_us,
            r.messages_per_s,
            r.bandwidth_kb_s,
            r.impairment,
        ));
        if let Some(short) = &r.short {
            out.push_str(&format!(
                "{:>9}   short connections, {} request(s) each: {:.0} connections/s, connect p50 {:.1}µs p99 {:.1}µs (rtt: the request alone)\n",
                "",
                short.requests_per_connection,
                short.connections_per_s,
                short.connect.p50_us,
                short.connect.p99_us,
            ));
        }
        for note in row_notes(r) {
            out.push_str(&format!("{:>9} ⚠ {note}\n", ""));
        }
    }
    out
}

/// What a row's figures alone would hide: clamped samples and frames lost
/// inside the engine.
#[must_use]
pub fn row_notes(r: &ResultRow) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(short) = r.short.filter(|s| s.connect_errors() > 0) {
        notes.push(format!(
            "failed connects: {} refused, {} failed, {} timed out",
            short.connect_refused, short.connect_failed, short.connect_timeouts
        ));
    }
    if r.client_core == Some(ClientCore::YieldsToEmulator) {
        notes.push(
            "the dpdk load generator shared its core with the link emulator and yielded it when idle: its figures include that sharing (separate cores in [cores] of testbed.toml let it spin)"
                .to_owned(),
        );
    }
    if r.client_pmd == Some(PmdKind::Memif.ini_name()) {
        notes.push(
            "memif pair: the load generator and the engine exchanged frames through shared memory, with no kernel, veth or link between them (the stacks' own floor, not a deployment figure)"
                .to_owned(),
        );
    }
    if r.rtt.clamped > 0 {
        notes.push(format!(
            "{} RTT samples above the histogram's top (~17 s) were clamped: the percentiles are lower bounds",
            r.rtt.clamped
        ));
    }
    let l = &r.engine_losses;
    if let Some(n) = l.interface_rx_drops.filter(|n| *n > 0) {
        notes.push(format!(
            "{n} frames dropped on receive by NS3's interface before any stack saw them (on an AF_XDP port: a full ring; the port's own count below may include them)"
        ));
    }
    if l.port_any() {
        let named: Vec<String> = [
            ("missed by a full receive queue", l.rx_missed),
            ("without a receive mbuf", l.rx_nombuf),
            ("failed on transmit", l.tx_errors),
            ("dropped before the driver", l.tx_dropped),
            ("failed reads of the port's counters", l.port_stats_failures),
        ]
        .iter()
        .filter_map(|(what, n)| n.filter(|n| *n > 0).map(|n| format!("{n} {what}")))
        .collect();
        notes.push(format!(
            "frames lost inside the engine (not the link's loss): {}",
            named.join(", ")
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::hugepages::HugepageGrant;
    use crate::run::state::Phase;

    fn state() -> RunState {
        RunState {
            testbed: "t".into(),
            phase: Phase::Ready,
            supervisor: ProcessId::current(),
            engine_kind: EngineKind::Dpdk,
            engine: None,
            engine_core: 1,
            loadgen_core: 0,
            server: "10.77.0.3:7000".parse().unwrap(),
            segment: None,
            hugepages: HugepageGrant::default(),
            created_network: false,
            removed_server_address: None,
            pci_device: None,
            port: None,
            pmd: None,
            engine_command: Vec::new(),
            rto_min_ms: None,
            tuned_routes: Vec::new(),
            files: Vec::new(),
            started_unix: 0,
        }
    }

    fn load() -> LoadOptions {
        LoadOptions {
            connections: 1,
            loadgen_busy_poll: false,
            mode: Mode::Closed,
            rate: None,
            seed: 1,
            min_size: 512,
            max_size: 1024,
            warmup: 0,
            timeout_ms: REPLY_TIMEOUT_MS,
            pattern: Pattern::Persistent,
            requests_per_connection: 1,
            client: None,
            client_pmd: contract::Pmd::AfXdp,
        }
    }

    #[test]
    fn a_quiet_load_generators_failure_shows_its_last_lines() {
        let text = (1..=30).map(|i| format!("line {i}\n")).collect::<String>();
        let shown: Vec<&str> = last_lines(&text, STDERR_SHOWN).collect();
        assert_eq!(shown.len(), 20);
        assert_eq!(shown[0], "line 11");
        assert_eq!(shown[19], "line 30");
        assert_eq!(last_lines("one\n", 20).collect::<Vec<_>>(), ["one"]);
        assert_eq!(last_lines("", 20).count(), 0);
    }

    #[test]
    fn a_failed_runs_losses_are_named() {
        let line = r#"{"sent":10,"timeouts":3,"resets":1,"mismatches":0,"unsent":0}"#;
        assert_eq!(
            loss_summary(line).as_deref(),
            Some("3 timed out, 1 connections reset")
        );
        assert_eq!(loss_summary(r#"{"timeouts":0}"#), None);
        assert_eq!(loss_summary("no json"), None);
    }

    /// A short-connection result line gives its figures, and a row shows
    /// them with the failed connects named; a persistent one has none.
    #[test]
    fn short_connection_figures_come_from_the_loadgen_result() {
        let line = r#"{"sent":10,"requests_per_connection":2,"connections_completed":5,"connections_per_s":250.0,"connect":{"count":5,"clamped":0,"percentiles_are_lower_bounds":false,"min_us":10.0,"mean_us":20.0,"p50_us":18.0,"p90_us":30.0,"p99_us":40.0,"p999_us":40.0,"max_us":41.0},"connect_refused":1,"connect_failed":0,"connect_timeouts":2}"#;
        let short = ShortConnections::from_result(&format!("noise\n{line}\n")).expect("parsed");
        assert_eq!(short.connections_completed, 5);
        assert_eq!(short.connect_errors(), 3);
        assert!(ShortConnections::from_result(r#"{"sent":10}"#).is_none());
        let mut r = row(LatencySummary::default(), EngineLosses::default());
        r.short = Some(short);
        let notes = row_notes(&r).join("\n");
        assert!(
            notes.contains("1 refused, 0 failed, 2 timed out"),
            "{notes}"
        );
        r.pattern = Pattern::Short;
        let table = format_table(&[r]);
        assert!(table.contains("250 connections/s"), "{table}");
        assert!(
            table.contains(" short "),
            "the mode column says short: {table}"
        );
    }

    /// 1000 requests sent, 900 answered with 700 000 request bytes in 2 s.
    fn row(rtt: LatencySummary, losses: EngineLosses) -> ResultRow {
        let counters = shm_layout::Counters {
            messages_sent: 1000,
            messages_received: 900,
            messages_failed: 100,
            bytes_sent: 1_000_000,
            answered_bytes: 700_000,
            elapsed_ns: 2_000_000_000,
            ..shm_layout::Counters::default()
        };
        let loadgen = shm_layout::SlotSnapshot {
            role: Role::Loadgen,
            info: shm_layout::ProducerInfo::starting("closed-loop", None),
            generation: 1,
            counters: Some(CounterReadings::new(&counters, shm_layout::Measured::ALL)),
            latency: Some(rtt),
            ring: shm_layout::RingStats::default(),
        };
        build_row(
            1000,
            state().engine_kind,
            &load(),
            &loadgen,
            1000,
            Ending::Exited { code: 1 },
            "none".into(),
            None,
            Busy {
                engine_losses: losses,
                ..Busy::default()
            },
            None,
        )
    }

    #[test]
    fn bandwidth_counts_the_answered_request_bytes_exactly() {
        let r = row(LatencySummary::default(), EngineLosses::default());
        // 700 000 B / 2 s / 1000, not 1 000 000 × 900 / 1000 / 2 / 1000.
        assert!(
            (r.bandwidth_kb_s - 350.0).abs() < 1e-9,
            "{}",
            r.bandwidth_kb_s
        );
        assert!((r.messages_per_s - 450.0).abs() < 1e-9);
        assert!(row_notes(&r).is_empty());
    }

    #[test]
    fn a_memif_row_says_no_link_was_on_its_path() {
        let mut r = row(LatencySummary::default(), EngineLosses::default());
        r.client = ClientStack::Dpdk;
        r.client_pmd = Some(PmdKind::Memif.ini_name());
        let table = format_table(std::slice::from_ref(&r));
        assert!(table.contains("⚠ memif pair"), "{table}");
    }

    #[test]
    fn clamped_samples_and_engine_losses_are_marked() {
        let rtt = LatencySummary {
            count: 900,
            clamped: 3,
            percentiles_are_lower_bounds: true,
            ..LatencySummary::default()
        };
        let losses = EngineLosses {
            interface_rx_drops: Some(12),
            rx_missed: Some(7),
            tx_dropped: Some(0),
            ..EngineLosses::default()
        };
        let r = row(rtt, losses);
        let notes = row_notes(&r);
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes[0].contains("3 RTT samples") && notes[0].contains("lower bounds"));
        assert!(
            notes[1].contains("12 frames dropped on receive by NS3's interface"),
            "{notes:?}"
        );
        assert!(
            notes[2].contains("7 missed by a full receive queue"),
            "{notes:?}"
        );
        let table = format_table(std::slice::from_ref(&r));
        assert!(table.contains('≥') && table.contains("⚠ frames lost inside the engine"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["engine_losses"]["interface_rx_drops"], 12);
        assert_eq!(json["engine_losses"]["rx_missed"], 7);
        assert_eq!(json["engine_losses"]["rx_nombuf"], serde_json::Value::Null);
        assert_eq!(json["rtt"]["clamped"], 3);
    }

    #[test]
    fn losses_are_the_growth_of_measured_counters() {
        let before = CounterReadings {
            rx_missed: Some(5),
            tx_errors: Some(1),
            ..CounterReadings::default()
        };
        let after = CounterReadings {
            rx_missed: Some(9),
            tx_errors: Some(1),
            ..CounterReadings::default()
        };
        let l = EngineLosses::between(Some(&before), Some(&after), (None, None));
        assert_eq!(l.rx_missed, Some(4));
        assert_eq!(l.tx_errors, Some(0));
        assert_eq!(l.rx_nombuf, None, "not measured stays unknown");
        assert_eq!(l.interface_rx_drops, None, "not measured stays unknown");
        assert!(l.any());
        assert!(!EngineLosses::between(None, Some(&after), (Some(3), None)).any());
        let dropped = EngineLosses::between(None, None, (Some(3), Some(10)));
        assert_eq!(dropped.interface_rx_drops, Some(7));
        assert!(dropped.any(), "the interface's drops alone are a loss");
    }
}
