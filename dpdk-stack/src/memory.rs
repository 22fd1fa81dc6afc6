//! A [`BurstDevice`] over memory: two ends of a "wire" that carries whole
//! Ethernet frames, with an optional per-frame filter to lose some. Like a
//! link with a 1500-byte MTU (a veth, a NIC), it drops a frame longer than
//! [`MAX_FRAME`], counted as the sender's `tx_dropped`. The
//! engine's server and the load generator's client are tested over it
//! deterministically, without DPDK, hugepages or root.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::device::{BurstDevice, DeviceStats, LinkCounters, MAX_FRAME};

/// Decides, per frame a side sends, whether the wire delivers it.
pub type Filter = Box<dyn FnMut(&[u8]) -> bool>;

/// Frames in flight toward each side.
#[derive(Default)]
struct Wire {
    toward: [VecDeque<Vec<u8>>; 2],
}

/// One end of the wire.
pub struct MemDevice {
    wire: Rc<RefCell<Wire>>,
    side: usize,
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    /// Drops frames this side sends when it returns false.
    pub filter: Option<Filter>,
    stats: DeviceStats,
}

impl MemDevice {
    /// Both ends of a fresh wire.
    #[must_use]
    pub fn pair() -> (Self, Self) {
        let wire = Rc::new(RefCell::new(Wire::default()));
        let end = |side| Self {
            wire: Rc::clone(&wire),
            side,
            rx: VecDeque::new(),
            tx: Vec::new(),
            filter: None,
            stats: DeviceStats::default(),
        };
        (end(0), end(1))
    }
}

impl BurstDevice for MemDevice {
    fn rx_burst(&mut self) -> usize {
        let mut wire = self.wire.borrow_mut();
        let inbox = &mut wire.toward[self.side];
        let n = inbox.len();
        self.rx.extend(inbox.drain(..));
        n
    }

    fn tx_flush(&mut self) -> usize {
        let n = self.tx.len();
        let mut wire = self.wire.borrow_mut();
        for frame in self.tx.drain(..) {
            if frame.len() > MAX_FRAME {
                self.stats.tx_dropped += 1;
                continue;
            }
            if self.filter.as_mut().is_none_or(|keep| keep(&frame)) {
                wire.toward[1 - self.side].push_back(frame);
            }
        }
        self.stats.tx_frames += n as u64;
        n
    }

    fn tx_pending(&self) -> bool {
        !self.tx.is_empty()
    }

    fn link_counters(&self) -> LinkCounters {
        LinkCounters {
            device: self.stats,
            port: None,
        }
    }
}

/// A received frame.
pub struct MemRx(Vec<u8>);
/// Room for a frame to send.
pub struct MemTx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for MemRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for MemTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push(frame);
        r
    }
}

impl phy::Device for MemDevice {
    type RxToken<'a> = MemRx;
    type TxToken<'a> = MemTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(MemRx, MemTx<'_>)> {
        let frame = self.rx.pop_front()?;
        self.stats.rx_frames += 1;
        Some((MemRx(frame), MemTx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<MemTx<'_>> {
        Some(MemTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps
    }
}
