//! smoltcp's `phy::Device` over a DPDK port's bursts.
//!
//! Frames in: [`MbufDevice::rx_burst`] pulls a burst from the port into a
//! queue; each `receive` hands one mbuf to smoltcp as an [`MbufRxToken`],
//! which parses the frame **in place** in the mbuf (no copy) and frees it.
//! Frames out: an [`MbufTxToken`] allocates an mbuf and lets smoltcp
//! serialise the frame straight into it (no intermediate buffer); the mbuf
//! waits in a queue that [`MbufDevice::tx_flush`] hands to the driver.
//!
//! Where bytes are copied on the way through the engine:
//! - receive: the driver fills the mbuf (af_xdp in copy mode and af_packet
//!   copy from the kernel; a PCI NIC DMAs); smoltcp copies the TCP payload
//!   from the mbuf into the socket's receive ring (its one copy on receive);
//!   the protocol session then reads the ring in place.
//! - transmit: replies are built in a per-connection vector, copied into the
//!   socket's send ring by `send_slice`, and copied from there into the
//!   mbuf when smoltcp emits the segment (headers are written in place);
//!   af_packet then copies the mbuf into its kernel ring, af_xdp into its
//!   UMEM frame unless the mbuf already lives there.

use std::collections::VecDeque;

use dpdk_sys::{EthStats, Mbuf, Mempool, Port, MAX_BURST};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// A smoltcp device that moves frames in bursts: what a poll loop over a
/// DPDK port needs beyond `phy::Device`. The loop pulls a burst, lets the
/// stack consume it, and hands what the stack wrote to the driver once per
/// pass. Tests and benchmarks implement it over memory.
pub trait BurstDevice: phy::Device {
    /// Pulls one burst from the driver into the receive queue; how many
    /// frames arrived.
    fn rx_burst(&mut self) -> usize;
    /// Hands queued frames to the driver until it takes no more; how many it
    /// took.
    fn tx_flush(&mut self) -> usize;
    /// Whether frames still wait for the driver.
    fn tx_pending(&self) -> bool;
    /// What the device and, when it can be read, its port counted.
    fn link_counters(&self) -> LinkCounters;
}

/// The device's own counts and the port's, read together.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkCounters {
    /// What the device itself counted.
    pub device: DeviceStats,
    /// The port's `rte_eth_stats`; `None` when reading them failed (they are
    /// then unknown, never replaced by the device's own counts).
    pub port: Option<EthStats>,
}

/// Ethernet frame size smoltcp may emit: a 1500-byte MTU plus the 14-byte
/// header (no VLAN tag, no FCS).
pub const MAX_FRAME: usize = 1514;

/// Frames smoltcp produced but the driver has not taken yet, beyond which
/// `transmit` refuses (smoltcp then keeps the data in its socket buffers
/// and retries later: backpressure rather than loss).
const TX_BACKLOG: usize = 4 * 1024;

/// Counters of what the device itself did (the port's own counters come
/// from `rte_eth_stats`, see [`LinkCounters`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames handed to smoltcp.
    pub rx_frames: u64,
    /// Frames the driver accepted for transmission.
    pub tx_frames: u64,
    /// Frames smoltcp wrote that were dropped: no mbuf or no room in one.
    pub tx_dropped: u64,
}

/// A DPDK port (queue 0 each way) as a smoltcp device.
pub struct MbufDevice<'pool> {
    port: Port<'pool>,
    pool: &'pool Mempool<'pool>,
    rx: VecDeque<Mbuf<'pool>>,
    tx: Vec<Mbuf<'pool>>,
    rx_scratch: Vec<Mbuf<'pool>>,
    stats: DeviceStats,
}

impl<'pool> MbufDevice<'pool> {
    /// A device over a started `port` whose transmit mbufs come from `pool`.
    pub fn new(port: Port<'pool>, pool: &'pool Mempool<'pool>) -> Self {
        Self {
            port,
            pool,
            rx: VecDeque::with_capacity(MAX_BURST * 4),
            tx: Vec::with_capacity(MAX_BURST * 4),
            rx_scratch: Vec::with_capacity(MAX_BURST),
            stats: DeviceStats::default(),
        }
    }

    /// The port underneath (for its MAC and counters).
    pub fn port(&self) -> &Port<'pool> {
        &self.port
    }

    /// What the device counted.
    pub fn stats(&self) -> DeviceStats {
        self.stats
    }
}

impl BurstDevice for MbufDevice<'_> {
    fn rx_burst(&mut self) -> usize {
        let n = self.port.rx_burst(&mut self.rx_scratch, MAX_BURST);
        self.rx.extend(self.rx_scratch.drain(..));
        n
    }

    /// A full ring keeps the rest queued for the next call.
    fn tx_flush(&mut self) -> usize {
        let mut sent = 0;
        while !self.tx.is_empty() {
            let n = self.port.tx_burst(&mut self.tx);
            sent += n;
            if n == 0 {
                break;
            }
        }
        self.stats.tx_frames += sent as u64;
        sent
    }

    fn tx_pending(&self) -> bool {
        !self.tx.is_empty()
    }

    fn link_counters(&self) -> LinkCounters {
        LinkCounters {
            device: self.stats,
            port: self.port.stats().ok(),
        }
    }
}

impl<'pool> phy::Device for MbufDevice<'pool> {
    type RxToken<'a>
        = MbufRxToken<'pool>
    where
        Self: 'a;
    type TxToken<'a>
        = MbufTxToken<'a, 'pool>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let mbuf = self.rx.pop_front()?;
        self.stats.rx_frames += 1;
        Some((
            MbufRxToken { mbuf },
            MbufTxToken {
                pool: self.pool,
                tx: &mut self.tx,
                dropped: &mut self.stats.tx_dropped,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.tx.len() >= TX_BACKLOG {
            return None;
        }
        Some(MbufTxToken {
            pool: self.pool,
            tx: &mut self.tx,
            dropped: &mut self.stats.tx_dropped,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(MAX_BURST);
        // Checksums are computed and verified in software (the default): the
        // virtual PMDs offload nothing.
        caps
    }
}

/// One received frame, parsed in place and freed when consumed.
pub struct MbufRxToken<'pool> {
    mbuf: Mbuf<'pool>,
}

impl phy::RxToken for MbufRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        // Zero copy: smoltcp reads the frame where the driver put it. A
        // multi-segment mbuf (never produced at a 1500-byte MTU with the
        // default data room) would show its first segment only, which
        // smoltcp rejects as truncated.
        f(self.mbuf.data())
    }
}

/// Room for one frame to transmit, in a fresh mbuf.
pub struct MbufTxToken<'a, 'pool> {
    pool: &'pool Mempool<'pool>,
    tx: &'a mut Vec<Mbuf<'pool>>,
    dropped: &'a mut u64,
}

impl phy::TxToken for MbufTxToken<'_, '_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        if let (Some(mut mbuf), Ok(len16)) = (self.pool.alloc(), u16::try_from(len)) {
            if let Some(frame) = mbuf.append(len16) {
                let result = f(frame);
                self.tx.push(mbuf);
                return result;
            }
        }
        // No mbuf (pool exhausted) or a frame larger than its data room:
        // let smoltcp write into a throwaway buffer and count the loss; TCP
        // retransmits.
        *self.dropped += 1;
        let mut scratch = vec![0; len];
        f(&mut scratch)
    }
}
