//! The server engine: answers bypasslab's wire protocol with one of several
//! backends, pinned to a core, publishing its counters into the shared-memory
//! segment.
//!
//! Layers, bottom-up: [`protocol`] decodes requests and produces replies;
//! [`backend`] moves bytes (kernel sockets, DPDK + smoltcp, F-Stack);
//! [`replies`] holds what a socket-call backend has yet to write;
//! [`context`] holds the stop flag and publishes counters on a timer.

pub mod backend;
pub mod context;
pub mod dpdk;
pub mod fstack;
pub mod kernel;
pub mod pin;
pub mod replies;
pub mod report;
pub mod shm_sink;

/// Errors that end the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The requested backend is not compiled into this binary.
    #[error("engine kind `{kind}` is not available in this build: {how_to_enable}")]
    KindUnavailable {
        /// The kind asked for.
        kind: &'static str,
        /// What the user must do to get it.
        how_to_enable: &'static str,
    },
    /// `--core` names a core this machine does not have (or may not use).
    #[error("cannot pin to core {core}: usable cores are {available:?}")]
    CoreUnavailable {
        /// The core asked for.
        core: usize,
        /// The cores the process may run on.
        available: Vec<usize>,
    },
    /// The scheduler refused to pin the thread.
    #[error("pinning the serving thread to core {core} failed")]
    PinFailed {
        /// The core asked for.
        core: usize,
    },
    /// The shared-memory segment could not be opened or the slot claimed.
    #[error("{step}: {source}")]
    Shm {
        /// What the engine was doing.
        step: String,
        /// The underlying error.
        source: shm_layout::ShmError,
    },
    /// An I/O step failed.
    #[error("{step}: {source}")]
    Io {
        /// What the engine was doing.
        step: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
