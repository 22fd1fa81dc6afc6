//! `attach`: runs the load generator in NS1 against the running engine, once
//! per message count, and turns what both wrote into the segment into a
//! result row.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use contract::argv::to_argv;
use contract::loadgen::Mode;
use contract::EngineKind;
use serde::Serialize;
use shm_layout::{Counters, LatencySummary, Role, Segment, Snapshot};

use super::error::LifecycleError;
use super::netview;
use super::state::{Phase, RunState};
use crate::bins::{self, Binary};
use crate::config::TestbedConfig;
use crate::host::command;
use crate::host::process::{self, Ending, ProcessId};
use crate::host::wait::{self, Check, Waited};
use crate::net;
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
pub fn recorded_loadgens(dir: &crate::state::StateDir) -> Vec<ProcessId> {
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
    let segment_path = run.segment_path()?.to_owned();
    let segment = Segment::open(&segment_path)?;
    let engine_before = slot(&segment.snapshot(), Role::Engine).map(|s| s.counters);
    let ran = run_loadgen(
        &config.node(NsRole::Client),
        run,
        &segment,
        bin_dir,
        packets,
        load,
        interrupted,
        progress,
    )?;
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
    let (impairment, observed_loss_percent) = impairment_summary(config);
    let row = build_row(
        packets,
        run.engine_kind,
        load,
        loadgen,
        engine_received(engine_before.as_ref(), engine_after.as_ref()),
        ran.ending,
        impairment,
        observed_loss_percent,
    );
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

/// Requests the engine decoded between two of its counter readings.
#[must_use]
pub fn engine_received(before: Option<&Counters>, after: Option<&Counters>) -> u64 {
    match (before, after) {
        (Some(b), Some(a)) => a.messages_received.saturating_sub(b.messages_received),
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
}

/// Runs the load generator once at `node` against `run`'s server,
/// publishing into `segment` (the run's), recorded in the run's state
/// directory while it runs; `progress` as for [`attach`].
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
    interrupted: &AtomicBool,
    mut progress: Option<&mut dyn FnMut(u64)>,
) -> Result<LoadgenRun, LifecycleError> {
    require_ready(run)?;
    let loadgen = bins::path(bin_dir, Binary::Loadgen)?;
    let argv = to_argv(&load.loadgen_args(
        std::net::SocketAddr::V4(run.server),
        packets,
        Some(run.loadgen_core),
        run.segment.clone(),
        progress.is_none(),
    ))?;
    let mut command = node.command(&loadgen);
    command
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let words = command::words(&command);
    let mut child = command.spawn().map_err(|source| LifecycleError::Spawn {
        role: "load generator",
        source,
    })?;
    let pid_file = StateDir::of(&run.testbed).file(StateFile::LoadgenPid);
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
    Ok(LoadgenRun {
        pid: child.id(),
        ending,
        stdout,
        command: words,
    })
}

/// A snapshot taken once the engine has published twice more: the engine
/// publishes on a timer, so right after the load generator exits its last
/// replies may not be counted yet. Two publications guarantee one that began
/// after the exit. Bounded: a stalled engine yields what it has after 2 s.
#[must_use]
pub fn settled_snapshot(segment: &Segment) -> Snapshot {
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

/// The row of one load-generator run of `packets` messages against an
/// engine of `engine` kind: the load generator's own slot, the requests the
/// engine counted meanwhile, how the load generator ended, and the
/// impairment in force.
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
) -> ResultRow {
    let counters = &loadgen.counters;
    let rtt = loadgen.latency;
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
        engine,
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
