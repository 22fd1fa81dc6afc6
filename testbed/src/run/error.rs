//! Errors of the run lifecycle, named after the step that failed.

use std::path::PathBuf;

use contract::argv::RenderError;
use contract::EngineKind;

use super::bypass::BypassError;
use super::state::{NoSegment, Phase, StateError};
use crate::bins::BinError;
use crate::config::ConfigError;
use crate::host::hugepages::HugepageError;
use crate::host::process::Ending;
use crate::net::NetError;

/// A failed lifecycle step.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// A DPDK load generator cannot run as asked.
    #[error(transparent)]
    Client(#[from] super::client::ClientRefusal),
    /// The memif pair cannot be had as asked.
    #[error(transparent)]
    Memif(#[from] super::memif::MemifRefusal),
    /// A host or session of a two-host run failed.
    #[error(transparent)]
    Remote(Box<crate::remote::peer::RemoteError>),
    /// The supervisor owning a two-host run could not be reached.
    #[error(transparent)]
    Control(#[from] crate::remote::control::ControlError),
    /// A run of this testbed is in progress.
    #[error("testbed `{testbed}` is already running (supervisor pid {pid}, engine {engine}); stop it first with `supervisor stop`")]
    AlreadyRunning {
        /// Testbed name.
        testbed: String,
        /// The owning supervisor.
        pid: u32,
        /// Its engine kind.
        engine: EngineKind,
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
        phase: Phase,
    },
    /// A run on a PCI NIC has no load generator of the supervisor's: its
    /// peer is the machine at the NIC's other end.
    #[error("testbed `{testbed}` serves on PCI NIC {device}: there is no NS1 to run the load generator in; run it on the machine at the NIC's other end (`loadgen --connect {server} --packets N`), and `supervisor stats` shows the engine's side")]
    NoLocalClient {
        /// Testbed name.
        testbed: String,
        /// The NIC.
        device: String,
        /// Where the engine answers.
        server: std::net::SocketAddrV4,
    },
    /// The run has no segment yet.
    #[error(transparent)]
    NoSegment(#[from] NoSegment),
    /// Run state file problem.
    #[error(transparent)]
    State(#[from] StateError),
    /// The network could not be brought up or down.
    #[error("testbed network: {0}")]
    Network(#[source] Box<NetError>),
    /// NS3 could not be prepared for a bypass engine.
    #[error(transparent)]
    Bypass(Box<BypassError>),
    /// An equal minimum RTO cannot be had.
    #[error(transparent)]
    Rto(#[from] super::rto::RtoError),
    /// Hugepage reservation failed.
    #[error(transparent)]
    Hugepages(#[from] HugepageError),
    /// The shared-memory segment failed.
    #[error("shared-memory segment: {0}")]
    Segment(#[from] shm_layout::ShmError),
    /// A sibling binary is missing or lacks the engine kind.
    #[error(transparent)]
    Binary(#[from] BinError),
    /// A child's command line cannot be rendered (a contract bug).
    #[error("rendering a command line: {0}")]
    Render(#[from] RenderError),
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
    /// The engine started, but refused settings of the run's config.ini:
    /// the run would not be what it says.
    #[error("the engine refused settings of the run's config.ini, so the run would not be as configured (a bypasslab bug; please report it): {}", lines.join("; "))]
    SettingsRefused {
        /// Its log's lines saying so.
        lines: Vec<String>,
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
    /// A child did not finish within its bound.
    #[error("the {role} (pid {pid}) did not finish within {seconds} s and was stopped")]
    Overran {
        /// Which child.
        role: &'static str,
        /// Its pid.
        pid: u32,
        /// The bound.
        seconds: u64,
    },
    /// The owning supervisor did not finish stopping.
    #[error("the supervisor (pid {pid}) did not finish stopping within {seconds} s; see {log}")]
    StopTimeout {
        /// The owning supervisor.
        pid: u32,
        /// The bound.
        seconds: u64,
        /// Its log.
        log: PathBuf,
    },
    /// The load generator's slot is missing from the segment after a run.
    #[error("the segment {segment} has no {role} slot after the load generator ran: it never claimed it (its output above says why)")]
    MissingSlot {
        /// The segment.
        segment: PathBuf,
        /// The slot's role.
        role: &'static str,
    },
    /// The user interrupted.
    #[error("interrupted by a signal")]
    Interrupted,
    /// The testbed configuration is unusable (exit code 2, like `net`).
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// Other I/O, with context.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: String,
        /// The error.
        source: std::io::Error,
    },
}

// Boxed: both carry a failed command's whole account, and every
// lifecycle result would otherwise be as large.
impl From<NetError> for LifecycleError {
    fn from(e: NetError) -> Self {
        Self::Network(Box::new(e))
    }
}

impl From<crate::remote::peer::RemoteError> for LifecycleError {
    fn from(e: crate::remote::peer::RemoteError) -> Self {
        match e {
            crate::remote::peer::RemoteError::Interrupted => Self::Interrupted,
            other => Self::Remote(Box::new(other)),
        }
    }
}

impl From<BypassError> for LifecycleError {
    fn from(e: BypassError) -> Self {
        Self::Bypass(Box::new(e))
    }
}

impl LifecycleError {
    /// Whether the command line or the configuration asked for something
    /// that cannot be (exit code 2), rather than a step failing (1).
    #[must_use]
    pub fn is_usage(&self) -> bool {
        match self {
            Self::Config(_) | Self::NoLocalClient { .. } | Self::Client(_) | Self::Memif(_) => true,
            Self::Bypass(e) => matches!(
                &**e,
                BypassError::Pci(super::pci::PciStepError::Nic(n)) if n.is_usage()
            ),
            _ => false,
        }
    }

    /// Wraps an I/O error with the step it belongs to.
    pub fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let step = step.into();
        move |source| Self::Io { step, source }
    }
}
