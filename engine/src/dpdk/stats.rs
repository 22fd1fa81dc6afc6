//! The port's and the device's counters into the engine's, read on the
//! stats timer (each read of the port may be a syscall for the af_*
//! drivers), never per packet.

use dpdk_stack::LinkCounters;
use shm_layout::Counters;

/// Frames in/out, misses and errors of `link` into `c`.
pub(super) fn merge_link_counters(link: &LinkCounters, c: &mut Counters) {
    if let Some(s) = link.port {
        c.rx_packets = s.ipackets;
        c.tx_packets = s.opackets;
        c.rx_dropped = s.imissed;
        c.rx_errors = s.ierrors;
    } else {
        c.rx_packets = link.device.rx_frames;
        c.tx_packets = link.device.tx_frames;
    }
}
