//! Errors of the safe API, each naming the DPDK call that failed.

/// A failed DPDK call.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// `rte_eal_init` may run once per process (DPDK cannot re-initialise
    /// after `rte_eal_cleanup`).
    #[error("EAL was already initialised in this process")]
    AlreadyInitialized,
    /// An EAL argument contained a NUL byte.
    #[error("EAL argument {0:?} contains a NUL byte")]
    NulInArgument(String),
    /// `rte_eal_init` failed.
    #[error("rte_eal_init failed: {message} (rte_errno {errno})")]
    EalInit {
        /// `rte_errno` after the call.
        errno: i32,
        /// `rte_strerror(errno)`.
        message: String,
    },
    /// `rte_pktmbuf_pool_create` failed.
    #[error("rte_pktmbuf_pool_create({name}) failed: {message} (rte_errno {errno})")]
    MempoolCreate {
        /// Pool name.
        name: String,
        /// `rte_errno` after the call.
        errno: i32,
        /// `rte_strerror(errno)`.
        message: String,
    },
    /// No Ethernet device has this name (a vdev not created, a driver not
    /// loaded, or a PCI device not bound).
    #[error("no DPDK port named {name:?} ({available} port(s) available)")]
    PortNotFound {
        /// The name looked up.
        name: String,
        /// How many ports EAL did find.
        available: u16,
    },
    /// A port id beyond what EAL found.
    #[error("DPDK port {port} does not exist ({available} port(s) available)")]
    NoSuchPort {
        /// The port id asked for.
        port: u16,
        /// How many ports EAL did find.
        available: u16,
    },
    /// The port is already started by a live [`crate::Port`] of this
    /// process.
    #[error("DPDK port {port} is already started by this process")]
    PortInUse {
        /// The port id.
        port: u16,
    },
    /// An `rte_eth_*` call on a port returned an error.
    #[error("{call} on port {port} failed: {message} ({code})")]
    Port {
        /// The DPDK function.
        call: &'static str,
        /// The port id.
        port: u16,
        /// Its (negative errno) return value.
        code: i32,
        /// `rte_strerror(-code)`.
        message: String,
    },
}

/// `rte_strerror` as an owned string (it also knows DPDK's own codes).
pub(crate) fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or per-lcore buffer
    // holding a NUL-terminated string, valid until the next call on this
    // thread; it is copied out at once.
    unsafe {
        let msg = crate::ffi::rte_strerror(errno);
        if msg.is_null() {
            return format!("error {errno}");
        }
        std::ffi::CStr::from_ptr(msg).to_string_lossy().into_owned()
    }
}

/// The calling thread's `rte_errno`.
pub(crate) fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local integer; no preconditions.
    unsafe { crate::ffi::shim_errno() }
}
