//! Starting and stopping the userspace link emulator: the `supervisor
//! emulator` subcommand run in NS2 on the emulator's core, its arguments
//! rendered from [`EmulatorArgs`], ready once it has published its first
//! counters (its packet rings are bound then).

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use contract::argv::{to_argv, RenderError};
use contract::emulator::{EmulatorArgs, SUBCOMMAND};
use serde::{Deserialize, Serialize};

use super::emulator::EmulatorStats;
use crate::config::TestbedConfig;
use crate::host::command::log_streams;
use crate::host::process::{Ending, ProcessId};
use crate::host::wait::{self, Check, Waited};
use crate::placement::Node;
use crate::state::StateFile;

/// Environment variable naming the supervisor binary to start the emulator
/// with, for callers that are not the supervisor binary (tests, the bench
/// run from another binary).
pub const SUPERVISOR_EXE_ENV: &str = "BYPASSLAB_SUPERVISOR";

/// How long the emulator may take to bind its rings.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// Why the emulator did not come up.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The supervisor binary that runs it cannot be found.
    #[error("locating the supervisor binary that runs the emulator: {0}")]
    Locate(#[source] std::io::Error),
    /// Its arguments cannot be rendered (a bug of the contract).
    #[error("rendering the emulator's arguments: {0}")]
    Render(#[from] RenderError),
    /// Its log cannot be created.
    #[error("creating the emulator's log {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It cannot be spawned.
    #[error("spawning {exe}: {source}")]
    Spawn {
        /// The binary.
        exe: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It exited before it was ready.
    #[error("it {ending} at start: {log_tail}")]
    Exited {
        /// How it ended.
        ending: Ending,
        /// The end of its log.
        log_tail: String,
    },
    /// It did not publish counters in time.
    #[error("not ready after {} s", READY_WITHIN.as_secs())]
    NotReady,
}

/// The emulator as `net up` records it: identified by pid and start time
/// so a reused pid is never signalled, with the arguments it runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorRecord {
    /// Its pid and start time.
    #[serde(flatten)]
    pub process: ProcessId,
    /// The arguments it was started with (a changed config restarts it).
    pub args: Vec<String>,
    /// Where it publishes its counters.
    pub stats_file: PathBuf,
}

/// The emulator's arguments for `cfg`.
#[must_use]
pub fn args(cfg: &TestbedConfig) -> EmulatorArgs {
    let i = cfg.impairment();
    EmulatorArgs {
        a: cfg.emulator_iface(),
        b: cfg.server_peer_iface(),
        delay_us: i.delay_us,
        jitter_us: i.jitter_us,
        loss_percent: i.loss_percent,
        direction: i.direction,
        core: Some(cfg.cores().emulator),
        mode: i.emulator_mode,
        stats_file: cfg.state_dir().file(StateFile::EmulatorStats),
        mtu: cfg.mtu(),
        seed: i.seed,
    }
}

/// The emulator's full argv after the supervisor binary, as recorded.
///
/// # Errors
/// [`LaunchError::Render`].
pub fn argv(cfg: &TestbedConfig) -> Result<Vec<String>, LaunchError> {
    let mut argv = vec![SUBCOMMAND.to_owned()];
    argv.extend(to_argv(&args(cfg))?);
    Ok(argv)
}

/// A started emulator, not yet known to be ready.
pub struct Started {
    child: Child,
    /// What to record of it.
    pub record: EmulatorRecord,
}

/// Spawns the emulator in NS2 with `argv`, in its own process group (a
/// Ctrl-C aimed at `net up` must not stop it).
///
/// # Errors
/// The binary cannot be found or spawned, or its log created.
pub fn spawn(cfg: &TestbedConfig, argv: Vec<String>) -> Result<Started, LaunchError> {
    let dir = cfg.state_dir();
    let log = dir.file(StateFile::EmulatorLog);
    let stats_file = dir.file(StateFile::EmulatorStats);
    let _ = std::fs::remove_file(&stats_file);
    let exe = match std::env::var_os(SUPERVISOR_EXE_ENV) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().map_err(LaunchError::Locate)?,
    };
    let (out, err) = log_streams(&log).map_err(|source| LaunchError::Log {
        path: log.clone(),
        source,
    })?;
    let node = Node::in_namespace(cfg.bridge_ns(), Some(cfg.cores().emulator));
    let mut command = node.command(&exe);
    command
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .spawn()
        .map_err(|source| LaunchError::Spawn { exe, source })?;
    let record = EmulatorRecord {
        process: ProcessId::of_child(&child),
        args: argv,
        stats_file,
    };
    Ok(Started { child, record })
}

impl Started {
    /// Waits until it has published its first counters.
    ///
    /// # Errors
    /// It exited, or is not ready in time.
    pub fn wait_ready(mut self, cfg: &TestbedConfig) -> Result<(), LaunchError> {
        let pid = self.record.process.pid;
        let log = cfg.state_dir().file(StateFile::EmulatorLog);
        let waited = wait::until(READY_WITHIN, Duration::from_millis(5), || {
            if EmulatorStats::read(&self.record.stats_file).is_ok_and(|s| s.pid == pid) {
                return Check::Ready(());
            }
            match self.child.try_wait() {
                Ok(Some(status)) => Check::Failed(Ending::from_status(status)),
                _ => Check::Pending,
            }
        });
        match waited {
            Ok(()) => Ok(()),
            Err(Waited::Failed(ending)) => Err(LaunchError::Exited {
                ending,
                log_tail: std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            }),
            Err(Waited::TimedOut) => Err(LaunchError::NotReady),
        }
    }
}
