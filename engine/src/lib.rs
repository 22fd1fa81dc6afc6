//! The server engine: answers bypasslab's wire protocol with one of several
//! backends, pinned to a core, publishing its counters into the shared-memory
//! segment.
//!
//! Layers, bottom-up: [`protocol`] decodes requests and produces replies;
//! [`backend`] moves bytes (kernel sockets, DPDK + smoltcp, F-Stack);
//! [`context`] holds the stop flag and publishes counters on a timer.

pub mod backend;
pub mod cli;
pub mod context;

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
    /// An I/O step failed.
    #[error("{step}: {source}")]
    Io {
        /// What the engine was doing.
        step: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
