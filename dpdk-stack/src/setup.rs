//! Bringing a port up for a stack, in DPDK's order, and down again: EAL,
//! the mbuf pool, the port (found by name or id), its MAC, the device over
//! it. Everything borrows what it was made from, so the whole sequence runs
//! inside one function that hands the ready device to a closure and tears
//! everything down, EAL's runtime directory included, when it returns.

use dpdk_sys::{DpdkError, Eal, Mempool, Port, PortConfig, MBUF_DEFAULT_BUF_SIZE};

use crate::config::DpdkConfig;
use crate::device::MbufDevice;
use crate::eal_args::{eal_args, port_selector, PortSelector};

/// Mbufs in the pool: the receive ring (4096) and transmit ring (1024) plus what
/// sits in smoltcp's queues and the per-lcore cache, with room to spare.
pub const POOL_MBUFS: u32 = 16383;
/// Per-lcore mempool cache.
pub const POOL_CACHE: u32 = 256;

/// What to bring up: EAL's argv, the port and how to start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPlan {
    /// EAL's arguments, without the program name.
    pub eal_args: Vec<String>,
    /// The port, by vdev name or id.
    pub selector: PortSelector,
    /// Queue sizes and promiscuity.
    pub port_config: PortConfig,
    /// Whether EAL runs without hugepages (only changes an error's hint).
    pub no_huge: bool,
    /// Name of the mbuf pool (unique within the process).
    pub pool_name: String,
}

impl PortPlan {
    /// The plan `config` describes, serving on `core` when given (it wins
    /// over `lcore_mask`).
    #[must_use]
    pub fn from_config(config: &DpdkConfig, core: Option<usize>) -> Self {
        Self {
            eal_args: eal_args(config, core),
            selector: port_selector(config),
            port_config: PortConfig {
                promiscuous: config.promiscuous,
                ..PortConfig::default()
            },
            no_huge: config.no_huge,
            pool_name: "bypasslab_rx".to_owned(),
        }
    }
}

/// The port, ready: what the closure of [`attach`] works with.
pub struct Attached<'pool> {
    /// The port as a smoltcp device.
    pub device: MbufDevice<'pool>,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// How it was found (the vdev name, or `port N`).
    pub port_name: String,
    /// DPDK's port id.
    pub port_id: u16,
    /// The calling thread's lcore.
    pub lcore: u32,
}

impl Attached<'_> {
    /// The port as a ready line shows it:
    /// `net_af_xdp0 (port 0, 02:00:00:00:00:03) 10.0.0.3/24`.
    #[must_use]
    pub fn describe(&self, addr: std::net::Ipv4Addr, prefix_len: u8) -> String {
        let mac: Vec<String> = self.mac.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{} (port {}, {}) {addr}/{prefix_len}",
            self.port_name,
            self.port_id,
            mac.join(":")
        )
    }
}

/// The step of [`attach`] that failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `rte_eal_init` refused the arguments or the environment.
    #[error("initialise EAL with {args:?}{hint}: {source}")]
    Eal {
        /// The arguments given.
        args: Vec<String>,
        /// What the user may have to provide.
        hint: &'static str,
        /// DPDK's error.
        source: DpdkError,
    },
    /// The mbuf pool could not be created.
    #[error("create the mbuf pool: {source}")]
    Mempool {
        /// DPDK's error.
        source: DpdkError,
    },
    /// No port has the configured name.
    #[error(
        "find port {name}: its driver failed to probe (EAL's messages above say why; does \
         [dpdk] iface exist in this network namespace?) or is missing from {drivers}: {source}"
    )]
    PortNotFound {
        /// The vdev name.
        name: String,
        /// Where EAL looks for drivers.
        drivers: &'static str,
        /// DPDK's error.
        source: DpdkError,
    },
    /// Configuring or starting the port failed.
    #[error("start {port}: {source}")]
    PortStart {
        /// The port's name.
        port: String,
        /// DPDK's error.
        source: DpdkError,
    },
    /// The port's MAC address could not be read.
    #[error("read the MAC of {port}: {source}")]
    Mac {
        /// The port's name.
        port: String,
        /// DPDK's error.
        source: DpdkError,
    },
}

/// Brings up EAL, the pool and the port of `plan`, runs `body` with the
/// ready device, then tears everything down in reverse order and removes
/// EAL's runtime directory (this process was its only user).
///
/// # Errors
/// The [`SetupError`] of the step that failed; `body` has not run then.
pub fn attach<R>(
    plan: &PortPlan,
    body: impl for<'pool> FnOnce(Attached<'pool>) -> R,
) -> Result<R, SetupError> {
    let hint = if plan.no_huge {
        ""
    } else {
        " (without [dpdk] no_huge=1, EAL needs a mounted hugetlbfs with free 2 MB pages)"
    };
    // Declared first, dropped last: EAL outlives the pool and the port.
    let eal = Eal::init(&plan.eal_args).map_err(|source| SetupError::Eal {
        args: plan.eal_args.clone(),
        hint,
        source,
    })?;
    let runtime_dir = eal.runtime_dir();
    let result = attach_on(&eal, plan, body);
    drop(eal);
    // EAL leaves its runtime files (config, fbarrays) behind.
    if !runtime_dir.as_os_str().is_empty() {
        let _ = std::fs::remove_dir_all(&runtime_dir);
    }
    result
}

fn attach_on<R>(
    eal: &Eal,
    plan: &PortPlan,
    body: impl for<'pool> FnOnce(Attached<'pool>) -> R,
) -> Result<R, SetupError> {
    let data_room = u16::try_from(MBUF_DEFAULT_BUF_SIZE).unwrap_or(u16::MAX);
    let pool = Mempool::create(eal, &plan.pool_name, POOL_MBUFS, POOL_CACHE, data_room)
        .map_err(|source| SetupError::Mempool { source })?;
    let (port_name, port_id) = match &plan.selector {
        PortSelector::Name(name) => {
            let id = Port::id_by_name(eal, name).map_err(|source| SetupError::PortNotFound {
                name: (*name).to_owned(),
                drivers: if dpdk_sys::PMDS_DIR.is_empty() {
                    "EAL's driver directory"
                } else {
                    dpdk_sys::PMDS_DIR
                },
                source,
            })?;
            ((*name).to_owned(), id)
        }
        PortSelector::Id(id) => (format!("port {id}"), *id),
    };
    let port = Port::start(eal, &pool, port_id, &plan.port_config).map_err(|source| {
        SetupError::PortStart {
            port: port_name.clone(),
            source,
        }
    })?;
    let mac = port.mac_addr().map_err(|source| SetupError::Mac {
        port: port_name.clone(),
        source,
    })?;
    let device = MbufDevice::new(port, &pool);
    Ok(body(Attached {
        device,
        mac,
        port_name,
        port_id,
        lcore: eal.lcore_id(),
    }))
}
