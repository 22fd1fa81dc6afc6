//! The `dpdk` backend: DPDK's poll-mode driver moves frames, smoltcp runs
//! ARP, IPv4 and TCP in userspace, [`protocol::ServerSession`] answers.
//!
//! Layers, bottom-up: [`config`] reads F-Stack's `config.ini`;
//! [`eal_args`] turns it into EAL's argv (a vdev on a Linux interface, or
//! a PCI device); `dpdk_sys` brings up EAL, the mbuf pool and the port;
//! [`device`] presents the port as a smoltcp `phy::Device`; [`server`]
//! holds the sockets and runs the busy-poll loop.
//!
//! The engine's readiness is announced on stderr once the port is started
//! and the sockets listen:
//!
//! ```text
//! engine: dpdk ready: net_af_xdp0 (port 0, 02:00:00:00:00:03) 10.0.0.3/24 port 7000 lcore 1
//! ```

pub mod config;
pub mod device;
pub mod eal_args;
pub mod server;

use std::path::PathBuf;
use std::time::Duration;

use dpdk_sys::{Eal, Mempool, Port, PortConfig, MBUF_DEFAULT_BUF_SIZE};

use crate::backend::Backend;
use crate::context::ServeContext;
use crate::EngineError;
use config::DpdkConfig;
use contract::engine::EngineArgs;
use device::MbufDevice;
use eal_args::{eal_args, port_selector, PortSelector};
use server::{Server, ServerConfig};

/// Mbufs in the pool: the receive and transmit rings (1024 each) plus what
/// sits in smoltcp's queues and the per-lcore cache, with room to spare.
const POOL_MBUFS: u32 = 8191;
/// Per-lcore mempool cache.
const POOL_CACHE: u32 = 256;

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
    eal_args: Vec<String>,
}

fn step_error(
    step: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> EngineError {
    EngineError::Io {
        step: step.into(),
        source: std::io::Error::other(e),
    }
}

impl DpdkBackend {
    /// Reads `options.config_path` and prepares EAL's arguments.
    ///
    /// # Errors
    /// [`EngineError::Io`] naming the config file and the key at fault.
    pub fn new(options: DpdkOptions) -> Result<Self, EngineError> {
        let config = DpdkConfig::load(&options.config_path).map_err(|e| EngineError::Io {
            step: format!(
                "read the DPDK configuration {}",
                options.config_path.display()
            ),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        if !config.ignored.is_empty() {
            eprintln!(
                "engine: dpdk: keys not used by this engine: {}",
                config.ignored.join(", ")
            );
        }
        if options.port == 0 {
            return Err(EngineError::Io {
                step: "choose the TCP port".to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "--listen must name a port other than 0",
                ),
            });
        }
        if let Some(ip) = options.listen_ip {
            if ip != std::net::IpAddr::V4(config.port0.addr) {
                return Err(EngineError::Io {
                    step: "choose the listening address".to_owned(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "--listen names {ip}, but the stack's address is [port0] addr = {} \
                             (pass 0.0.0.0:PORT or that address)",
                            config.port0.addr
                        ),
                    ),
                });
            }
        }
        let eal_args = eal_args(&config, options.core);
        Ok(Self {
            options,
            config,
            eal_args,
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
        &self.eal_args
    }
}

impl Backend for DpdkBackend {
    fn name(&self) -> &'static str {
        "dpdk"
    }

    fn serve(&mut self, ctx: &mut ServeContext) -> Result<(), EngineError> {
        // Declared first, dropped last: EAL outlives the pool and the port.
        let hint = if self.config.no_huge {
            ""
        } else {
            " (without [dpdk] no_huge=1, EAL needs a mounted hugetlbfs with free 2 MB pages)"
        };
        let eal = Eal::init(&self.eal_args)
            .map_err(|e| step_error(format!("initialise EAL with {:?}{hint}", self.eal_args), e))?;
        let runtime_dir = eal.runtime_dir();
        let result = serve_on(&eal, &self.options, &self.config, ctx);
        drop(eal);
        // EAL leaves its runtime files (config, fbarrays) behind; this
        // process was their only user.
        if !runtime_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&runtime_dir);
        }
        result
    }
}

fn serve_on(
    eal: &Eal,
    options: &DpdkOptions,
    config: &DpdkConfig,
    ctx: &mut ServeContext,
) -> Result<(), EngineError> {
    let data_room = u16::try_from(MBUF_DEFAULT_BUF_SIZE).unwrap_or(u16::MAX);
    let pool = Mempool::create(eal, "bypasslab_rx", POOL_MBUFS, POOL_CACHE, data_room)
        .map_err(|e| step_error("create the mbuf pool", e))?;
    let (port_name, port_id) = match port_selector(config) {
        PortSelector::Name(name) => {
            let id = Port::id_by_name(eal, name).map_err(|e| {
                let drivers = if dpdk_sys::PMDS_DIR.is_empty() {
                    "EAL's driver directory"
                } else {
                    dpdk_sys::PMDS_DIR
                };
                step_error(
                    format!(
                        "find port {name}: its driver failed to probe (EAL's messages above \
                         say why; does [dpdk] iface exist in this network namespace?) or is \
                         missing from {drivers}"
                    ),
                    e,
                )
            })?;
            (name.to_owned(), id)
        }
        PortSelector::Id(id) => (format!("port {id}"), id),
    };
    let port_config = PortConfig {
        promiscuous: config.promiscuous,
        ..PortConfig::default()
    };
    let port = Port::start(eal, &pool, port_id, &port_config)
        .map_err(|e| step_error(format!("start {port_name}"), e))?;
    let mac = port
        .mac_addr()
        .map_err(|e| step_error(format!("read the MAC of {port_name}"), e))?;
    let mut device = MbufDevice::new(port, &pool);

    let mut server_config = ServerConfig::new(config.port0, options.port);
    server_config.max_sockets = options.max_connections.max(1) + server_config.listen_backlog;
    server_config.drain = options.drain;
    server_config.stats_interval = options.stats_interval;
    let mut server = Server::new(server_config, &mut device, mac);
    eprintln!(
        "engine: dpdk ready: {port_name} (port {port_id}, {}) {}/{} port {} lcore {}",
        mac.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        config.port0.addr,
        config.port0.prefix_len,
        options.port,
        eal.lcore_id(),
    );
    ctx.mark_ready();
    server.run(&mut device, ctx);
    Ok(())
}
