//! The load generator: drives an engine with length-prefixed requests of
//! random size and checks every reply.
//!
//! Layers, bottom-up: [`protocol`] encodes requests and decodes replies;
//! [`config`] turns the command line into a checked [`config::Config`];
//! [`stack`] is the TCP client stack under it (the kernel's sockets);
//! [`driver`] runs the connections (closed or open loop, persistent or
//! short, blocking or busy-poll) over a stack and measures; [`progress`] shows it on stderr; [`telemetry`] publishes live numbers into the
//! shared-memory segment; [`result`] is the final JSON.

pub mod config;
pub mod driver;
pub mod progress;
pub mod result;
pub mod stack;
pub mod telemetry;

use std::net::SocketAddr;

/// Errors that stop the load generator before or outside the run itself
/// (message losses are results, not errors).
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The flags make no sense.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// `--core` names a core this process may not run on.
    #[error("cannot pin to core {core}: usable cores are {available:?}")]
    CoreUnavailable {
        /// The core asked for.
        core: usize,
        /// The cores the process may run on.
        available: Vec<usize>,
    },
    /// The scheduler refused to pin the thread.
    #[error("pinning to core {core} failed")]
    PinFailed {
        /// The core asked for.
        core: usize,
    },
    /// The segment could not be opened or the slot claimed.
    #[error("{step}: {source}")]
    Shm {
        /// What was being done.
        step: String,
        /// The underlying error.
        source: shm_layout::ShmError,
    },
    /// A connection to the server could not be made.
    #[error("connect to {addr} (connection {index}): {source}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// Which connection (0-based).
        index: usize,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The client's stack could not be brought up.
    #[error("the client stack: {0}")]
    Stack(stack::StackError),
    /// The dpdk stack's config.ini is unreadable or wrong.
    #[error("--dpdk-config {}: {source}", path.display())]
    DpdkConfig {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, naming the key.
        source: dpdk_stack::config::ConfigError,
    },
    /// EAL, the mbuf pool or the port could not be brought up.
    #[error("the dpdk stack: {0}")]
    DpdkSetup(dpdk_stack::SetupError),
    /// Another I/O step failed.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl LoadgenError {
    /// The documented exit code: 2 for configuration errors, 1 otherwise.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_)
            | Self::CoreUnavailable { .. }
            | Self::PinFailed { .. }
            | Self::Shm { .. }
            | Self::DpdkConfig { .. } => 2,
            Self::Connect { .. } | Self::Stack(_) | Self::DpdkSetup(_) | Self::Io { .. } => 1,
        }
    }
}

/// Pins the calling thread to `core`.
///
/// # Errors
/// [`LoadgenError::CoreUnavailable`] or [`LoadgenError::PinFailed`].
pub fn pin_current_thread(core: usize) -> Result<(), LoadgenError> {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let Some(id) = ids.iter().copied().find(|c| c.id == core) else {
        return Err(LoadgenError::CoreUnavailable {
            core,
            available: ids.iter().map(|c| c.id).collect(),
        });
    };
    if core_affinity::set_for_current(id) {
        Ok(())
    } else {
        Err(LoadgenError::PinFailed { core })
    }
}
