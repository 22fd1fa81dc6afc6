//! The engine's command line. The engine parses it; the supervisor fills
//! it and renders it with [`crate::argv::to_argv`]; a user may run the
//! engine by hand with the same flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::kinds::EngineKind;

/// bypasslab server engine: answers each length-prefixed request with its length.
#[derive(Debug, Clone, PartialEq, Parser, Serialize, Deserialize)]
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

    /// Connection attempts that can wait at once for the server to take
    /// them: kernel, `listen(2)`'s backlog (capped by
    /// net.core.somaxconn); dpdk, the sockets kept listening (a SYN beyond
    /// them is answered with a reset); fstack, `ff_listen`'s backlog.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..4096))]
    pub listen_backlog: u32,

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

    /// Smallest TCP retransmission timeout of the dpdk backend's smoltcp
    /// sockets, ms (default: smoltcp's 10). The kernel's comes from the
    /// route's `rto_min`, F-Stack's from config.ini's `[freebsd.sysctl]`.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rto_min_ms: Option<u32>,
}

impl Default for EngineArgs {
    /// Every flag at its default, as `engine` with no arguments.
    fn default() -> Self {
        // No argument is required, so an empty command line always parses.
        Self::parse_from(["engine"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argv::{reparse, to_argv};

    #[test]
    fn a_rendered_command_line_parses_back() {
        let defaults = EngineArgs::default();
        assert_eq!(to_argv(&defaults).unwrap(), Vec::<String>::new());
        let args = EngineArgs {
            kind: EngineKind::Dpdk,
            listen: "0.0.0.0:7100".parse().unwrap(),
            core: Some(1),
            busy_poll: true,
            shm: Some("/run/x/segment".into()),
            dpdk_config: "/run/x/engine-config.ini".into(),
            ..defaults
        };
        let argv = to_argv(&args).unwrap();
        assert_eq!(
            argv,
            [
                "--kind",
                "dpdk",
                "--listen",
                "0.0.0.0:7100",
                "--core",
                "1",
                "--busy-poll",
                "--shm",
                "/run/x/segment",
                "--dpdk-config",
                "/run/x/engine-config.ini"
            ]
        );
        assert_eq!(reparse::<EngineArgs>(&argv).unwrap(), args);
    }
}
