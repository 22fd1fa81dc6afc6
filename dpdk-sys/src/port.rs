//! One Ethernet device with one receive and one transmit queue.

use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::strerror;
use crate::{ffi, DpdkError, Eal, Mbuf, Mempool};

/// The largest burst [`Port::rx_burst`] and [`Port::tx_burst`] move in one
/// driver call.
pub const MAX_BURST: usize = 32;

/// How a [`Port`] is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    /// Receive descriptors (adjusted to what the driver supports).
    pub rx_desc: u16,
    /// Transmit descriptors (adjusted to what the driver supports).
    pub tx_desc: u16,
    /// Accept frames for any MAC address.
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        Self {
            // A closed loop over 1024 connections has up to 1024 requests
            // and their ACKs arriving in one burst while a pass over the
            // sockets runs: a 1024-entry AF_XDP ring overflowed there (the
            // client then waits out its 200 ms retransmission timer).
            rx_desc: 4096,
            tx_desc: 1024,
            promiscuous: false,
        }
    }
}

/// The device counters (`rte_eth_stats`), cumulative since the port started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EthStats {
    /// Frames received.
    pub ipackets: u64,
    /// Frames transmitted.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes transmitted.
    pub obytes: u64,
    /// Frames the device dropped because the receive queue was full.
    pub imissed: u64,
    /// Erroneous received frames.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receive buffer allocation failures.
    pub rx_nombuf: u64,
}

/// Port ids a live [`Port`] holds in this process. A port is started by
/// one `Port` at a time: a second `Port::start` on a running port would
/// fail half-way, and its guard's `Drop` would stop and close the live
/// port under its owner. Like `EAL_USED`, the claim is taken before any
/// DPDK call and released only after the port is closed.
static PORTS_IN_USE: [AtomicBool; MAX_PORTS] = [const { AtomicBool::new(false) }; MAX_PORTS];

/// `RTE_MAX_ETHPORTS`: port ids are below it.
const MAX_PORTS: usize = ffi::RTE_MAX_ETHPORTS as usize;

/// This process's claim on one port id; released on drop.
#[derive(Debug)]
struct PortClaim(u16);

impl PortClaim {
    /// Claims `id`, or `None` when a live `Port` (or claim) holds it.
    fn take(id: u16) -> Option<Self> {
        let slot = PORTS_IN_USE.get(usize::from(id))?;
        // SeqCst: a plain flag with no data published through it; the
        // strongest order costs nothing here (once per port start).
        (!slot.swap(true, Ordering::SeqCst)).then_some(Self(id))
    }
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        if let Some(slot) = PORTS_IN_USE.get(usize::from(self.0)) {
            slot.store(false, Ordering::SeqCst);
        }
    }
}

/// A started Ethernet port using queue 0 in each direction; stopped and
/// closed on drop. Every mbuf it receives comes from the pool it was started
/// with, hence the shared lifetime.
#[derive(Debug)]
pub struct Port<'pool> {
    id: u16,
    /// Declared after `id` and dropped after `Drop::drop` ran: the id is
    /// free again only once the port is closed.
    _claim: PortClaim,
    _pool: PhantomData<&'pool ()>,
    /// Queue 0 belongs to one thread.
    _single_thread: PhantomData<*const ()>,
}

fn check(call: &'static str, port: u16, code: i32) -> Result<(), DpdkError> {
    if code < 0 {
        Err(DpdkError::Port {
            call,
            port,
            code,
            message: strerror(-code),
        })
    } else {
        Ok(())
    }
}

impl<'pool> Port<'pool> {
    /// The id of the port named `name` (a vdev's name, e.g. `net_af_xdp0`,
    /// or a PCI address).
    ///
    /// # Errors
    /// [`DpdkError::PortNotFound`].
    pub fn id_by_name(eal: &Eal, name: &str) -> Result<u16, DpdkError> {
        let not_found = || DpdkError::PortNotFound {
            name: name.to_owned(),
            available: eal.port_count(),
        };
        let c_name = CString::new(name).map_err(|_| not_found())?;
        let mut id = 0u16;
        // SAFETY: EAL is initialised; the name is NUL-terminated and `id` a
        // valid place for the result.
        let rc = unsafe { ffi::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut id) };
        if rc == 0 {
            Ok(id)
        } else {
            Err(not_found())
        }
    }

    /// Configures port `id` with one receive queue filled from `pool` and
    /// one transmit queue, and starts it.
    ///
    /// # Errors
    /// [`DpdkError::NoSuchPort`], [`DpdkError::PortInUse`] when a live
    /// `Port` of this process holds `id` (that port is left untouched), or
    /// the [`DpdkError::Port`] step that failed.
    pub fn start(
        eal: &Eal,
        pool: &'pool Mempool<'_>,
        id: u16,
        config: &PortConfig,
    ) -> Result<Self, DpdkError> {
        let available = eal.port_count();
        if id >= available {
            return Err(DpdkError::NoSuchPort {
                port: id,
                available,
            });
        }
        let claim = PortClaim::take(id).ok_or(DpdkError::PortInUse { port: id })?;
        // From here on, a failure closes the port again through Drop: the
        // claim makes sure it is ours to close.
        let port = Self {
            id,
            _claim: claim,
            _pool: PhantomData,
            _single_thread: PhantomData,
        };
        let conf = ffi::rte_eth_conf::default();
        // SAFETY: the port exists; `conf` is a zeroed rte_eth_conf (no
        // offloads, no RSS, default MTU), read only during the call.
        check("rte_eth_dev_configure", id, unsafe {
            ffi::rte_eth_dev_configure(id, 1, 1, &conf)
        })?;
        let (mut rx_desc, mut tx_desc) = (config.rx_desc, config.tx_desc);
        // SAFETY: the port is configured; both pointers are valid u16s.
        check("rte_eth_dev_adjust_nb_rx_tx_desc", id, unsafe {
            ffi::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rx_desc, &mut tx_desc)
        })?;
        // SAFETY: reads the device's NUMA node; no preconditions.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id) };
        let socket = u32::try_from(socket).unwrap_or(eal.socket_id());
        // SAFETY: the port is configured with one rx queue; a NULL rxconf
        // asks for the driver defaults; the pool outlives the port ('pool).
        check("rte_eth_rx_queue_setup", id, unsafe {
            ffi::rte_eth_rx_queue_setup(id, 0, rx_desc, socket, std::ptr::null(), pool.as_ptr())
        })?;
        // SAFETY: as above for the single tx queue.
        check("rte_eth_tx_queue_setup", id, unsafe {
            ffi::rte_eth_tx_queue_setup(id, 0, tx_desc, socket, std::ptr::null())
        })?;
        // SAFETY: the port is configured and its queues set up.
        check("rte_eth_dev_start", id, unsafe {
            ffi::rte_eth_dev_start(id)
        })?;
        if config.promiscuous {
            // SAFETY: the port is started. Drivers without the feature
            // refuse; that only matters for frames to other MACs.
            let _ = unsafe { ffi::rte_eth_promiscuous_enable(id) };
        }
        Ok(port)
    }

    /// The port id.
    #[must_use]
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The port's MAC address.
    ///
    /// # Errors
    /// [`DpdkError::Port`].
    pub fn mac_addr(&self) -> Result<[u8; 6], DpdkError> {
        let mut addr = ffi::rte_ether_addr::default();
        // SAFETY: the port exists; `addr` is a valid rte_ether_addr.
        check("rte_eth_macaddr_get", self.id, unsafe {
            ffi::rte_eth_macaddr_get(self.id, &mut addr)
        })?;
        Ok(addr.addr_bytes)
    }

    /// Receives up to `max` (at most [`MAX_BURST`]) frames, appended to
    /// `out`. Returns how many arrived.
    pub fn rx_burst(&mut self, out: &mut Vec<Mbuf<'pool>>, max: usize) -> usize {
        let mut raw = [std::ptr::null_mut::<ffi::rte_mbuf>(); MAX_BURST];
        let max = u16::try_from(max.min(MAX_BURST)).unwrap_or(0);
        // SAFETY: the port is started with queue 0 and &mut self makes this
        // the only caller on it; `raw` has room for `max` pointers.
        let n = unsafe { ffi::shim_rx_burst(self.id, 0, raw.as_mut_ptr(), max) };
        for &m in &raw[..usize::from(n)] {
            if let Some(m) = NonNull::new(m) {
                // SAFETY: the driver handed over these mbufs; they come from
                // the queue's pool, which lives for 'pool.
                out.push(unsafe { Mbuf::from_raw(m) });
            }
        }
        usize::from(n)
    }

    /// Transmits frames from the front of `pkts` (up to [`MAX_BURST`]) and
    /// removes those the driver took; the rest stay in `pkts`, in order, for
    /// the caller to retry or drop. Returns how many were taken.
    pub fn tx_burst(&mut self, pkts: &mut Vec<Mbuf<'pool>>) -> usize {
        let count = pkts.len().min(MAX_BURST);
        let mut raw = [std::ptr::null_mut::<ffi::rte_mbuf>(); MAX_BURST];
        for (slot, m) in raw.iter_mut().zip(pkts.iter()) {
            *slot = m.as_ptr();
        }
        let len = u16::try_from(count).unwrap_or(0);
        // SAFETY: the port is started with queue 0, &mut self makes this the
        // only caller on it; `raw` holds `count` valid mbufs we own.
        let sent = usize::from(unsafe { ffi::shim_tx_burst(self.id, 0, raw.as_mut_ptr(), len) });
        // The driver owns (and will free) the first `sent` mbufs now.
        for m in pkts.drain(..sent) {
            m.into_raw();
        }
        sent
    }

    /// The device counters.
    ///
    /// # Errors
    /// [`DpdkError::Port`].
    pub fn stats(&self) -> Result<EthStats, DpdkError> {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: the port exists; `s` is a valid rte_eth_stats.
        check("rte_eth_stats_get", self.id, unsafe {
            ffi::rte_eth_stats_get(self.id, &mut s)
        })?;
        Ok(EthStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }
}

impl Drop for Port<'_> {
    fn drop(&mut self) {
        // SAFETY: the port exists; stopping a port that is not started and
        // closing a stopped one are both allowed. Failures leave nothing to
        // undo here.
        unsafe {
            let _ = ffi::rte_eth_dev_stop(self.id);
            let _ = ffi::rte_eth_dev_close(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_id_is_claimed_once_until_released() {
        // The highest id: no other test of this crate starts it.
        let id = u16::try_from(MAX_PORTS - 1).unwrap();
        let first = PortClaim::take(id).expect("free");
        assert!(PortClaim::take(id).is_none(), "claimed twice");
        drop(first);
        assert!(PortClaim::take(id).is_some(), "released on drop");
        let beyond = u16::try_from(MAX_PORTS).unwrap();
        assert!(PortClaim::take(beyond).is_none(), "no such id");
    }
}
