//! The engine's command line. The supervisor launches the engine with these
//! flags; a user may run it by hand the same way.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Which backend answers the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// Linux kernel TCP sockets (Case 1).
    Kernel,
    /// DPDK poll-mode driver + smoltcp TCP in userspace (Case 2).
    Dpdk,
    /// DPDK + F-Stack (FreeBSD TCP in userspace); needs the `fstack` feature.
    Fstack,
}

/// bypasslab server engine: answers each length-prefixed request with its length.
#[derive(Debug, Clone, Parser)]
#[command(name = "engine", version, about)]
pub struct EngineArgs {
    /// Backend to serve with.
    #[arg(long, value_enum, default_value = "kernel")]
    pub kind: EngineKind,

    /// Address and port to listen on (kernel: bind address; bypass engines:
    /// the stack's own IPv4 address comes from the DPDK config, only the
    /// port is used).
    #[arg(long, default_value = "0.0.0.0:7000")]
    pub listen: SocketAddr,

    /// Core to pin the serving loop to (none: not pinned).
    #[arg(long)]
    pub core: Option<usize>,

    /// Spin on non-blocking sockets instead of sleeping in epoll (kernel
    /// backend; bypass backends always poll).
    #[arg(long)]
    pub busy_poll: bool,

    /// Shared-memory segment to publish counters into (the engine slot).
    /// Without it the engine prints its final counters as JSON on exit only.
    #[arg(long)]
    pub shm: Option<PathBuf>,

    /// How often counters are published, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub publish_interval_ms: u64,

    /// Most connections served at once; more are accepted and closed at
    /// once, and counted (kernel backend).
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,

    /// After SIGTERM/SIGINT: how long open connections are still served
    /// before they are closed, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub drain_ms: u64,

    /// Print the engine kinds this binary was built with as one JSON
    /// document (for unavailable ones: why, and how to enable them), then exit.
    #[arg(long)]
    pub list_kinds: bool,

    /// F-Stack-format config.ini for the bypass engines (`[dpdk]`, `[port0]`).
    #[arg(long, default_value = "config/config.ini")]
    pub dpdk_config: PathBuf,
}
