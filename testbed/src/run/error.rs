//! Errors of the run lifecycle, named after the step that failed.

use std::path::PathBuf;

use crate::host::process::Ending;

/// A failed lifecycle step.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// A run of this testbed is in progress.
    #[error("testbed `{testbed}` is already running (supervisor pid {pid}, engine {engine}); stop it first with `supervisor stop`")]
    AlreadyRunning {
        /// Testbed name.
        testbed: String,
        /// The owning supervisor.
        pid: u32,
        /// Its engine kind.
        engine: String,
    },
    /// A crashed run left resources behind.
    #[error("testbed `{testbed}` has leftovers of a crashed run (supervisor pid {pid} is gone): {what}. Remove them with `supervisor stop`, or pass --clean-leftovers to `start`")]
    Leftovers {
        /// Testbed name.
        testbed: String,
        /// The dead supervisor.
        pid: u32,
        /// What is left.
        what: String,
    },
    /// The run is not ready for load.
    #[error(
        "testbed `{testbed}` is not ready (phase {phase}); wait for `supervisor start` to finish"
    )]
    NotReady {
        /// Testbed name.
        testbed: String,
        /// Its phase.
        phase: String,
    },
    /// Run state file problem.
    #[error(transparent)]
    State(#[from] super::state::StateError),
    /// The network could not be brought up or down.
    #[error("testbed network: {0}")]
    Network(String),
    /// Hugepage reservation failed.
    #[error(transparent)]
    Hugepages(#[from] crate::host::hugepages::HugepageError),
    /// The shared-memory segment failed.
    #[error("shared-memory segment: {0}")]
    Segment(#[from] shm_layout::ShmError),
    /// A sibling binary is missing.
    #[error("cannot find the `{name}` binary at {path}: build the workspace first (`cargo build --release`) or pass --bin-dir")]
    MissingBinary {
        /// Binary name.
        name: &'static str,
        /// Where it was expected.
        path: PathBuf,
    },
    /// Starting a child failed.
    #[error("starting the {role}: {source}")]
    Spawn {
        /// `engine` or `load generator`.
        role: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A child died during start-up.
    #[error("the {role} (pid {pid}) {ending} while starting; its last output:\n{log_tail}")]
    DiedStarting {
        /// Which child.
        role: &'static str,
        /// Its pid.
        pid: u32,
        /// How it ended.
        ending: Ending,
        /// The end of its log.
        log_tail: String,
    },
    /// A child did not become ready in time.
    #[error("the {role} (pid {pid}) did not report ready within {seconds} s; its last output:\n{log_tail}")]
    StartTimeout {
        /// Which child.
        role: &'static str,
        /// Its pid.
        pid: u32,
        /// The bound.
        seconds: u64,
        /// The end of its log.
        log_tail: String,
    },
    /// The user interrupted.
    #[error("interrupted by a signal")]
    Interrupted,
    /// The testbed configuration is unusable (exit code 2, like `net`).
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// An engine kind this build or host cannot run.
    #[error("{0}")]
    Unsupported(String),
    /// Other I/O, with context.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: String,
        /// The error.
        source: std::io::Error,
    },
}

impl LifecycleError {
    /// Wraps an I/O error with the step it belongs to.
    pub fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let step = step.into();
        move |source| Self::Io { step, source }
    }
}
