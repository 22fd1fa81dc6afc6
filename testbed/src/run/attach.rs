//! `attach`: runs the load generator in NS1 against the running engine, once
//! per message count, and turns what both wrote into the segment into a
//! result row.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use contract::argv::to_argv;
use contract::loadgen::{LoadgenArgs, Mode, Progress};
use contract::EngineKind;
use serde::Serialize;
use shm_layout::{Counters, LatencySummary, Role, Segment, Snapshot};

use super::error::LifecycleError;
use super::netview;
use super::state::{Phase, RunState};
use crate::bins::{self, Binary};
use crate::config::TestbedConfig;
use crate::host::process::{self, Ending, ProcessId};
use crate::host::wait::{self, Check, Waited};
use crate::host::{command, cpu};
use crate::net;
use crate::state::{read_json, write_json, StateFile};
use crate::topology::NsRole;

/// Load generator options passed through by `attach` and `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadOptions {
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    pub connections: u32,
    /// Spin on non-blocking sockets instead of sleeping in poll.
    #[arg(long)]
    pub loadgen_busy_poll: bool,
    /// `closed`: one message in flight per connection (as in the original);
    /// `open`: a fixed rate, latency measured from the intended send time.
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: Mode,
    /// Messages per second for `--mode open`.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seed of the message-size sequence.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Smallest message, bytes (header included).
    #[arg(long, default_value_t = 512)]
    pub min_size: u32,
    /// Largest message, bytes (header included).
    #[arg(long, default_value_t = 1024)]
    pub max_size: u32,
    /// Messages exchanged before measuring.
    #[arg(long, default_value_t = 1000)]
    pub warmup: u64,
    /// A reply later than this counts as lost, milliseconds. Generous: over
    /// a lossy link TCP's exponential backoff (200 ms, 400 ms, 800 ms, ...
    /// after consecutive losses of one segment) delays a reply by seconds
    /// without losing it; such delays show up in the maximum RTT instead.
    #[arg(long, default_value_t = REPLY_TIMEOUT_MS)]
    pub timeout_ms: u64,
}

/// The load generator's reply timeout under the supervisor: generous,
/// because over the impaired link consecutive losses of one segment back
/// off for seconds without losing the message, and a 1 000 000-message run
/// must not fail on one such stall.
pub const REPLY_TIMEOUT_MS: u64 = 30_000;

impl LoadOptions {
    /// The load generator's arguments for one run of `packets` messages
    /// against `run`.
    #[must_use]
    pub fn loadgen_args(&self, run: &RunState, packets: u64, bar: bool) -> LoadgenArgs {
        LoadgenArgs {
            packets: Some(packets),
            connections: usize::try_from(self.connections).unwrap_or(usize::MAX),
            busy_poll: self.loadgen_busy_poll,
            mode: self.mode,
            rate: self.rate.map(|r| r as f64),
            seed: self.seed,
            min_size: self.min_size,
            max_size: self.max_size,
            core: Some(run.loadgen_core),
            warmup: self.warmup,
            timeout_ms: self.timeout_ms,
            shm: run.segment.clone(),
            progress: if bar { Progress::Auto } else { Progress::Never },
            ..LoadgenArgs::new(std::net::SocketAddr::V4(run.server))
        }
    }

    /// How long one run of `packets` messages may take at most: every
    /// message (warm-up included) waiting out its reply timeout, plus a
    /// minute to connect and finish.
    #[must_use]
    pub fn bound(&self, packets: u64) -> Duration {
        let messages = packets.saturating_add(self.warmup).max(1);
        let worst = Duration::from_millis(messages.saturating_mul(self.timeout_ms.max(1)));
        worst.min(Duration::from_secs(7 * 86_400)) + Duration::from_secs(60)
    }
}

/// One result row: one load-generator run at one message count.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    /// Messages requested.
    pub packets: u64,
    /// Engine kind.
    pub engine: EngineKind,
    /// Load mode (`closed` / `open`).
    pub mode: Mode,
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
    /// of its poll loop's passes that found work when it spins, else its
    /// CPU time over the run.
    pub engine_busy: Option<f64>,
    /// The same for the load generator: near 1, the client is the limit.
    pub loadgen_busy: Option<f64>,
    /// The engine's CPU time over the run's wall time (0..=1).
    pub engine_cpu: Option<f64>,
    /// The load generator's CPU time over its wall time (0..=1).
    pub loadgen_cpu: Option<f64>,
}

/// How busy both processes were over one load-generator run.
#[derive(Debug, Clone, Copy, Default)]
struct Busy {
    engine: Option<f64>,
    loadgen: Option<f64>,
    engine_cpu: Option<f64>,
    loadgen_cpu: Option<f64>,
}

impl ResultRow {
    /// Whether every message was answered correctly.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.answered == self.packets && self.loadgen_exit.is_success()
    }
}

/// Load generators recorded as running on a testbed (for teardown).
#[must_use]
pub fn recorded_loadgens(config: &TestbedConfig) -> Vec<ProcessId> {
    read_json::<ProcessId>(&config.state_dir().file(StateFile::LoadgenPid))
        .ok()
        .flatten()
        .into_iter()
        .collect()
}

fn slot(snapshot: &Snapshot, role: Role) -> Option<&shm_layout::SlotSnapshot> {
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
    mut progress: Option<&mut dyn FnMut(u64)>,
) -> Result<Attached, LifecycleError> {
    if run.phase != Phase::Ready {
        return Err(LifecycleError::NotReady {
            testbed: run.testbed.clone(),
            phase: run.phase,
        });
    }
    if let Some(nic) = &run.pci_device {
        return Err(LifecycleError::NoLocalClient {
            testbed: run.testbed.clone(),
            device: nic.address.to_string(),
            server: run.server,
        });
    }
    let loadgen = bins::path(bin_dir, Binary::Loadgen)?;
    let segment_path = run.segment_path()?.to_owned();
    let segment = Segment::open(&segment_path)?;
    let engine_before = slot(&segment.snapshot(), Role::Engine).map(|s| s.counters);

    let argv = to_argv(&load.loadgen_args(run, packets, progress.is_none()))?;
    let mut command = config.node(NsRole::Client).command(&loadgen);
    command
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let words = command::words(&command);
    let engine_pid = run.engine.map(|p| p.pid);
    let engine_cpu_before = engine_pid.and_then(cpu::process_cpu);
    let children_cpu_before = cpu::reaped_children_cpu();
    let started = std::time::Instant::now();
    let mut child = command.spawn().map_err(|source| LifecycleError::Spawn {
        role: "load generator",
        source,
    })?;
    let pid_file = config.state_dir().file(StateFile::LoadgenPid);
    // Recorded for teardown: a `stop` from elsewhere stops it first.
    let _ = write_json(&pid_file, &ProcessId::of_child(&child));
    // Drain stdout on a thread so a chatty loadgen never blocks on a full pipe.
    let reader = command::drain(child.stdout.take());
    let limit = load.bound(packets);
    let mut next_progress = std::time::Instant::now() + PROGRESS_INTERVAL;
    let waited = wait::until(limit, Duration::from_millis(20), || {
        if let Some(observe) = progress.as_mut() {
            if std::time::Instant::now() >= next_progress {
                next_progress += PROGRESS_INTERVAL;
                if let Some(lg) = slot(&segment.snapshot(), Role::Loadgen) {
                    observe(lg.counters.messages_received);
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
    let loadgen_cpu = cpu::share(cpu::reaped_children_cpu() - children_cpu_before, wall);
    let engine_cpu = engine_pid
        .and_then(cpu::process_cpu)
        .zip(engine_cpu_before)
        .and_then(|(after, before)| cpu::share(after.saturating_sub(before), wall));
    let _ = std::fs::remove_file(&pid_file);
    let stdout = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    // Say what died and how: a row's counts alone do not tell a killed load
    // generator or a dead link emulator from a lossy link.
    if !ending.is_success() {
        eprintln!(
            "supervisor: the load generator (pid {}) {ending}",
            child.id()
        );
    }
    if let Some((pid, how)) = netview::emulator_ending(config) {
        eprintln!(
            "supervisor: the link emulator (pid {pid}) {how}: NS1 and NS3 are cut off; restart the network with `supervisor stop` then `start`"
        );
    }

    let snapshot = settled_snapshot(&segment);
    let engine_after = slot(&snapshot, Role::Engine).map(|s| s.counters);
    let loadgen = slot(&snapshot, Role::Loadgen).ok_or(LifecycleError::MissingSlot {
        segment: segment_path.clone(),
        role: "loadgen",
    })?;
    let counters = loadgen.counters;
    let rtt = loadgen.latency;
    let engine_received = match (engine_before, engine_after) {
        (Some(b), Some(a)) => a.messages_received.saturating_sub(b.messages_received),
        _ => 0,
    };
    let engine_loops = match (engine_before, engine_after) {
        (Some(b), Some(a)) => cpu::loop_share(
            a.busy_loops.saturating_sub(b.busy_loops),
            a.idle_loops.saturating_sub(b.idle_loops),
        ),
        _ => None,
    };
    let busy = Busy {
        engine: engine_loops.or(engine_cpu),
        loadgen: cpu::loop_share(counters.busy_loops, counters.idle_loops).or(loadgen_cpu),
        engine_cpu,
        loadgen_cpu,
    };
    let (impairment, observed_loss_percent) = impairment_summary(config);
    let row = build_row(
        packets,
        run,
        load,
        &counters,
        rtt,
        engine_received,
        ending,
        impairment,
        observed_loss_percent,
        busy,
    );
    Ok(Attached {
        row,
        stdout,
        command: words,
    })
}

/// A snapshot taken once the engine has published twice more: the engine
/// publishes on a timer, so right after the load generator exits its last
/// replies may not be counted yet. Two publications guarantee one that began
/// after the exit. Bounded: a stalled engine yields what it has after 2 s.
fn settled_snapshot(segment: &Segment) -> Snapshot {
    let engine_elapsed =
        |s: &Snapshot| slot(s, Role::Engine).map(|e| (e.counters.elapsed_ns, e.info.state));
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

#[allow(clippy::too_many_arguments)]
fn build_row(
    packets: u64,
    run: &RunState,
    load: &LoadOptions,
    counters: &Counters,
    rtt: LatencySummary,
    engine_received: u64,
    ending: Ending,
    impairment: String,
    observed_loss_percent: Option<f64>,
    busy: Busy,
) -> ResultRow {
    let elapsed_s = counters.elapsed_ns as f64 / 1e9;
    let per_s = |x: f64| if elapsed_s > 0.0 { x / elapsed_s } else { 0.0 };
    // Bytes of the requests that were answered: bytes_sent counts requests
    // written, including those that failed; scale to answered ones.
    let answered_bytes = if counters.messages_sent > 0 {
        counters.bytes_sent as f64 * counters.messages_received as f64
            / counters.messages_sent as f64
    } else {
        0.0
    };
    ResultRow {
        packets,
        engine: run.engine_kind,
        mode: load.mode,
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
#[must_use]
pub fn format_table(rows: &[ResultRow]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:>9} {:>7} {:>6} {:>9} {:>7} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}  {}\n",
        "packets",
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
        out.push_str(&format!(
            "{:>9} {:>7} {:>6} {:>9} {:>7} {:>8.1}µs {:>8.1}µs {:>8.1}µs {:>8.1}µs {:>11.0} {:>11.1}  {} ({loss})\n",
            r.packets,
            r.engine.as_str(),
            r.mode.name(),
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
    }
    out
}
