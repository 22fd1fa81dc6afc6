//! The `dpdk` backend: DPDK's poll-mode driver moves frames, smoltcp runs
//! ARP, IPv4 and TCP in userspace, [`protocol::ServerSession`] answers.
//!
//! Bringing the port up (config.ini, EAL's argv, EAL, the mbuf pool, the
//! port, the smoltcp device over mbufs and the interface) is
//! [`dpdk_stack`]'s, shared with any DPDK client. What is the server's is
//! here, one job per module, bottom-up: `app` answers requests on one
//! socket; `pool` keeps the listening sockets and recycles finished ones;
//! [`server`] is the poll loop (the port's counters become the engine's
//! through [`dpdk_stack::counters`]).
//!
//! The engine's readiness is announced on stderr once the port is started
//! and the sockets listen:
//!
//! ```text
//! engine: dpdk ready: net_af_xdp0 (port 0, 02:00:00:00:00:03) 10.0.0.3/24 port 7000 lcore 1
//! ```

mod app;
mod pool;
pub mod server;

#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod testing;

/// `config.ini`, as the fstack backend reads it too.
pub use dpdk_stack::config;
/// EAL's argv from `config.ini`.
pub use dpdk_stack::eal_args;

use std::path::PathBuf;
use std::time::Duration;

use dpdk_stack::{Attached, PortPlan};

use shm_layout::{Counter, Measured};

use crate::backend::{Backend, SERVING};
use crate::context::ServeContext;
use crate::EngineError;
use config::DpdkConfig;
use contract::engine::EngineArgs;
use server::{Server, ServerConfig};

/// What the backend is built from (the engine's flags and its config file).
#[derive(Debug, Clone)]
pub struct DpdkOptions {
    /// The F-Stack-format `config.ini`.
    pub config_path: PathBuf,
    /// TCP port to serve (the address comes from `[port0] addr`).
    pub port: u16,
    /// The address `--listen` named, if not the wildcard: it must equal
    /// `[port0] addr`.
    pub listen_ip: Option<std::net::IpAddr>,
    /// `--core`: the serving lcore, winning over `lcore_mask`.
    pub core: Option<usize>,
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long to keep serving after the stop signal.
    pub drain: Duration,
    /// Port counters are read at this interval (the publication interval).
    pub stats_interval: Duration,
    /// The sockets' smallest retransmission timeout (`None`: smoltcp's).
    pub rto_min: Option<Duration>,
    /// Sockets kept listening: connection attempts that can arrive at once.
    pub listen_backlog: u32,
}

impl DpdkOptions {
    /// The options the engine's command line gives.
    #[must_use]
    pub fn from_args(args: &EngineArgs) -> Self {
        Self {
            config_path: args.dpdk_config.clone(),
            port: args.listen.port(),
            listen_ip: Some(args.listen.ip()).filter(|ip| !ip.is_unspecified()),
            core: args.core,
            max_connections: 4096,
            drain: Duration::from_millis(200),
            stats_interval: Duration::from_millis(args.publish_interval_ms.max(1)),
            rto_min: None,
            listen_backlog: args.listen_backlog,
        }
    }
}

/// The DPDK + smoltcp backend. Construction reads and checks the
/// configuration; [`Backend::serve`] brings up EAL and the port (once per
/// process), serves, and tears them down again.
#[derive(Debug)]
pub struct DpdkBackend {
    options: DpdkOptions,
    config: DpdkConfig,
    plan: PortPlan,
}

impl DpdkBackend {
    /// Reads `options.config_path` and prepares EAL's arguments.
    ///
    /// # Errors
    /// [`EngineError::DpdkConfig`] naming the config file and the key at
    /// fault, [`EngineError::BadFlag`] for a `--listen` the stack cannot
    /// serve.
    pub fn new(options: DpdkOptions) -> Result<Self, EngineError> {
        let config =
            DpdkConfig::load(&options.config_path).map_err(|source| EngineError::DpdkConfig {
                path: options.config_path.clone(),
                source,
            })?;
        if !config.ignored.is_empty() {
            eprintln!(
                "engine: dpdk: keys not used by this engine: {}",
                config.ignored.join(", ")
            );
        }
        if options.port == 0 {
            return Err(EngineError::BadFlag {
                flag: "--listen",
                problem: "the stack needs a port other than 0".to_owned(),
            });
        }
        if let Some(ip) = options.listen_ip {
            if ip != std::net::IpAddr::V4(config.port0.addr) {
                return Err(EngineError::BadFlag {
                    flag: "--listen",
                    problem: format!(
                        "names {ip}, but the stack's address is [port0] addr = {} \
                         (pass 0.0.0.0:PORT or that address)",
                        config.port0.addr
                    ),
                });
            }
        }
        let plan = PortPlan::from_config(&config, options.core);
        Ok(Self {
            options,
            config,
            plan,
        })
    }

    /// The address the stack serves: `[port0] addr` and the `--listen` port.
    #[must_use]
    pub fn listen_addr(&self) -> std::net::SocketAddr {
        (self.config.port0.addr, self.options.port).into()
    }

    /// EAL's arguments, as they will be passed.
    #[must_use]
    pub fn eal_args(&self) -> &[String] {
        &self.plan.eal_args
    }
}

impl Backend for DpdkBackend {
    fn name(&self) -> &'static str {
        "dpdk"
    }

    /// A poll-mode driver has nothing to sleep on: the loop always spins.
    fn busy_polls(&self) -> bool {
        true
    }

    /// The port's own counters join once they could be read
    /// ([`dpdk_stack::counters`]).
    fn measured(&self) -> Measured {
        SERVING
            .with(Counter::BusyLoops)
            .with(Counter::IdleLoops)
            .with(Counter::BusyNs)
            .with(Counter::Resets)
            .with(Counter::IdleTimeouts)
            .with(Counter::TxDropped)
            .with(Counter::PortStatsFailures)
    }

    fn serve(&mut self, ctx: &mut ServeContext) -> Result<(), EngineError> {
        let (options, config) = (&self.options, &self.config);
        dpdk_stack::attach(&self.plan, |port| serve_on(port, options, config, ctx))
            .map_err(EngineError::DpdkSetup)
    }
}

/// Listening sockets the engine keeps at most, whatever `listen_backlog`
/// asks. smoltcp visits every socket of its set on each poll, so 1024 idle
/// listeners took about half the engine's time at one connection (perf:
/// `Interface::poll`, `Socket::dispatch`, `egress_permitted` and `poll_at`
/// over the listeners, 45 % of its samples). A pass takes one driver burst
/// of frames at most, and the pool puts back the listeners its SYNs took
/// before the next pass, so two bursts' worth meets every SYN of a burst.
const MAX_LISTENERS: usize = 2 * dpdk_sys::MAX_BURST;

/// Serves on the ready port until stopped.
fn serve_on(
    mut port: Attached<'_>,
    options: &DpdkOptions,
    config: &DpdkConfig,
    ctx: &mut ServeContext,
) {
    let mut server_config = ServerConfig::new(config.port0, options.port);
    server_config.pool.listen_backlog = usize::try_from(options.listen_backlog.max(1))
        .unwrap_or(1)
        .min(MAX_LISTENERS);
    server_config.pool.max_sockets =
        options.max_connections.max(1) + server_config.pool.listen_backlog;
    server_config.drain = options.drain;
    server_config.stats_interval = options.stats_interval;
    server_config.pool.rto_min = options.rto_min.map(Into::into);
    let mut server = Server::new(server_config, &mut port.device, port.mac);
    eprintln!(
        "engine: dpdk ready: {} port {} lcore {}",
        port.describe(config.port0.addr, config.port0.prefix_len),
        options.port,
        port.lcore,
    );
    ctx.mark_ready();
    server.run(&mut port.device, ctx);
}
