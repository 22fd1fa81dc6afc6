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
    /// The bypass engines' config.ini cannot be read or is invalid.
    #[error("read the DPDK configuration {path}: {source}")]
    DpdkConfig {
        /// The file (`--dpdk-config`).
        path: std::path::PathBuf,
        /// Which key or line is at fault.
        source: dpdk_stack::config::ConfigError,
    },
    /// A flag contradicts itself or the configuration file.
    #[error("{flag}: {problem}")]
    BadFlag {
        /// The flag at fault.
        flag: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Bringing the DPDK port up failed (EAL, mempool, port, MAC).
    #[error("bring up the DPDK port: {0}")]
    DpdkSetup(#[source] dpdk_stack::SetupError),
    /// F-Stack's initialisation failed.
    #[cfg(feature = "fstack")]
    #[error("initialise F-Stack: {0}")]
    FstackInit(#[source] fstack::api::FstackError),
    /// An I/O step failed.
    #[error("{step}: {source}")]
    Io {
        /// What the engine was doing.
        step: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl EngineError {
    /// The exit code `main` documents: 2 for usage and configuration
    /// errors (nothing was served), 1 when serving failed.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::KindUnavailable { .. }
            | Self::CoreUnavailable { .. }
            | Self::PinFailed { .. }
            | Self::Shm { .. }
            | Self::DpdkConfig { .. }
            | Self::BadFlag { .. } => 2,
            Self::DpdkSetup(_) | Self::Io { .. } => 1,
            #[cfg(feature = "fstack")]
            Self::FstackInit(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_errors_exit_2_and_serving_errors_exit_1() {
        let config = EngineError::DpdkConfig {
            path: "x.ini".into(),
            source: dpdk_stack::config::ConfigError::Missing { key: "port0.addr" },
        };
        let flag = EngineError::BadFlag {
            flag: "--listen",
            problem: "port 0".into(),
        };
        let io = EngineError::Io {
            step: "accept a connection".into(),
            source: std::io::ErrorKind::Other.into(),
        };
        assert_eq!(
            (config.exit_code(), flag.exit_code(), io.exit_code()),
            (2, 2, 1)
        );
        assert!(config.to_string().contains("port0.addr"), "{config}");
    }
}
