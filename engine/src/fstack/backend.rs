//! The F-Stack backend: reads the same config.ini as the dpdk engine,
//! initialises F-Stack with EAL pointed at the configured port, and serves
//! from inside `ff_run` on the lcore of `lcore_mask`.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use super::api::Stack;
use super::server::Server;
use shm_layout::{Counter, Measured};

use crate::backend::{Backend, SERVING};
use crate::context::ServeContext;
use crate::dpdk::config::DpdkConfig;
use crate::dpdk::eal_args::eal_args;
use crate::EngineError;
use contract::engine::EngineArgs;

/// What the backend is built from.
#[derive(Debug, Clone)]
pub struct FstackOptions {
    /// The F-Stack config.ini (the supervisor writes one per run).
    pub config_path: PathBuf,
    /// TCP port to serve (the address is `[port0] addr`).
    pub port: u16,
    /// `--listen`'s address when not the wildcard: must be `[port0] addr`.
    pub listen_ip: Option<IpAddr>,
    /// `--core`: must be the lcore of `lcore_mask` (F-Stack pins itself there).
    pub core: Option<usize>,
    /// Most connections open at once.
    pub max_connections: usize,
    /// `ff_listen`'s backlog.
    pub listen_backlog: u32,
    /// How long open connections are served after the stop signal.
    pub drain: Duration,
    /// Port counters are read at this interval (the publication interval).
    pub stats_interval: Duration,
}

impl FstackOptions {
    /// The options the engine's command line gives.
    #[must_use]
    pub fn from_args(args: &EngineArgs) -> Self {
        Self {
            config_path: args.dpdk_config.clone(),
            port: args.listen.port(),
            listen_ip: Some(args.listen.ip()).filter(|ip| !ip.is_unspecified()),
            core: args.core,
            max_connections: args.max_connections,
            listen_backlog: args.listen_backlog,
            drain: Duration::from_millis(args.drain_ms),
            stats_interval: Duration::from_millis(args.publish_interval_ms.max(1)),
        }
    }
}

/// The F-Stack backend.
#[derive(Debug)]
pub struct FstackBackend {
    options: FstackOptions,
    config: DpdkConfig,
    extra_eal_args: Vec<String>,
}

impl FstackBackend {
    /// Reads and checks the configuration.
    ///
    /// # Errors
    /// [`EngineError::DpdkConfig`] naming the file and the key at fault,
    /// [`EngineError::BadFlag`] for a `--listen` or `--core` F-Stack cannot
    /// serve with.
    pub fn new(options: FstackOptions) -> Result<Self, EngineError> {
        let config =
            DpdkConfig::load(&options.config_path).map_err(|source| EngineError::DpdkConfig {
                path: options.config_path.clone(),
                source,
            })?;
        if options.port == 0 {
            return Err(EngineError::BadFlag {
                flag: "--listen",
                problem: "the stack needs a port other than 0".to_owned(),
            });
        }
        if let Some(ip) = options.listen_ip {
            if ip != IpAddr::V4(config.port0.addr) {
                return Err(EngineError::BadFlag {
                    flag: "--listen",
                    problem: format!(
                        "names {ip}, but the stack's address is [port0] addr = {}",
                        config.port0.addr
                    ),
                });
            }
        }
        if let Some(core) = options.core {
            if core != config.main_lcore() {
                return Err(EngineError::BadFlag {
                    flag: "--core",
                    problem: format!(
                        "{core} differs from lcore_mask's lcore {} (F-Stack pins itself to \
                         lcore_mask)",
                        config.main_lcore()
                    ),
                });
            }
        }
        // What F-Stack 1.24's config cannot say: the vdev on a Linux
        // interface, --no-pci and the hugetlbfs mount, taken from the dpdk
        // engine's EAL args.
        let extra_eal_args = eal_args(&config, None)
            .into_iter()
            .filter(|a| {
                a == "--no-pci"
                    || a == "--no-telemetry"
                    || a.starts_with("--vdev=")
                    || a.starts_with("--huge-dir=")
            })
            .collect();
        Ok(Self {
            options,
            config,
            extra_eal_args,
        })
    }

    /// The address the stack serves.
    #[must_use]
    pub fn listen_addr(&self) -> SocketAddr {
        (self.config.port0.addr, self.options.port).into()
    }
}

impl Backend for FstackBackend {
    fn name(&self) -> &'static str {
        "fstack"
    }

    /// `ff_run` polls the port on every pass; it sleeps only when
    /// config.ini sets `[dpdk] idle_sleep`, which the supervisor's sets to 0.
    fn busy_polls(&self) -> bool {
        true
    }

    /// The port's own counters join once they could be read (`server`).
    fn measured(&self) -> Measured {
        SERVING
            .with(Counter::BusyLoops)
            .with(Counter::IdleLoops)
            .with(Counter::BusyNs)
            .with(Counter::Resets)
            .with(Counter::PortStatsFailures)
    }

    fn serve(&mut self, ctx: &mut ServeContext) -> Result<(), EngineError> {
        let mut stack = Stack::init(
            &self.options.config_path,
            self.config.file_prefix.as_deref(),
            &self.extra_eal_args,
        )
        .map_err(EngineError::FstackInit)?;
        let result = serve_on(&mut stack, &self.options, &self.config, ctx);
        // EAL's runtime files; this process was their only user.
        if let Some(prefix) = &self.config.file_prefix {
            let _ = std::fs::remove_dir_all(PathBuf::from("/var/run/dpdk").join(prefix));
        }
        result
    }
}

fn serve_on(
    stack: &mut Stack,
    options: &FstackOptions,
    config: &DpdkConfig,
    ctx: &mut ServeContext,
) -> Result<(), EngineError> {
    let addr = SocketAddrV4::new(config.port0.addr, options.port);
    let io_step = |step: &str| {
        let step = step.to_owned();
        move |source| EngineError::Io { step, source }
    };
    let listener = stack
        .listen(addr, options.listen_backlog)
        .map_err(io_step(&format!("listen on {addr}")))?;
    let epoll = stack.epoll().map_err(io_step("create an epoll instance"))?;
    let mut server = Server::new(
        listener,
        epoll,
        options.max_connections.max(1),
        options.drain,
        options.stats_interval,
    )
    .map_err(io_step("watch the listening socket"))?;
    eprintln!(
        "engine: fstack ready: {addr}/{} lcore {} EAL {:?}",
        config.port0.prefix_len,
        config.main_lcore(),
        stack.eal_args(),
    );
    ctx.mark_ready();
    stack.run(|stack| server.turn(stack, ctx));
    Ok(())
}
