//! The port's and the device's counters into a producer's (the engine's or
//! a DPDK client's), read on a stats timer (each read of the port may be a
//! syscall for the af_* drivers), never per packet.
//!
//! Every loss has its own counter: the port's receive misses (`imissed`),
//! receive mbuf shortages (`rx_nombuf`), receive and transmit errors, and
//! the frames the stack wrote that never reached the driver. None of them
//! is folded into another, so a loss inside the stack never reads as link
//! loss. A failed read of the port's counters never puts the device's own
//! counts under the port's names: the port counters keep the last good
//! read, the failure is counted, and until one read works they are not
//! measured at all.

use crate::device::LinkCounters;
use shm_layout::{Counter, Counters, Measured};

/// Counters that come from the port's `rte_eth_stats`.
pub const PORT_COUNTERS: [Counter; 6] = [
    Counter::RxPackets,
    Counter::TxPackets,
    Counter::RxErrors,
    Counter::RxMissed,
    Counter::RxNombuf,
    Counter::TxErrors,
];

/// `link` into `c`; a port read that worked adds the port counters to
/// `measured`.
pub fn merge_link_counters(link: &LinkCounters, c: &mut Counters, measured: &mut Measured) {
    c.tx_dropped = link.device.tx_dropped;
    let Some(port) = link.port else {
        c.port_stats_failures += 1;
        return;
    };
    c.rx_packets = port.ipackets;
    c.tx_packets = port.opackets;
    c.rx_errors = port.ierrors;
    c.rx_missed = port.imissed;
    c.rx_nombuf = port.rx_nombuf;
    c.tx_errors = port.oerrors;
    for counter in PORT_COUNTERS {
        *measured = measured.with(counter);
    }
}

#[cfg(test)]
mod tests {
    use crate::device::DeviceStats;
    use dpdk_sys::EthStats;

    use super::*;

    fn link(port: Option<EthStats>) -> LinkCounters {
        LinkCounters {
            device: DeviceStats {
                rx_frames: 1000,
                tx_frames: 900,
                tx_dropped: 4,
            },
            port,
        }
    }

    #[test]
    fn every_port_loss_is_its_own_counter() {
        let port = EthStats {
            ipackets: 1010,
            opackets: 905,
            imissed: 3,
            rx_nombuf: 2,
            oerrors: 1,
            ierrors: 5,
            ..EthStats::default()
        };
        let (mut c, mut measured) = (Counters::default(), Measured::NOTHING);
        merge_link_counters(&link(Some(port)), &mut c, &mut measured);
        assert_eq!((c.rx_packets, c.tx_packets), (1010, 905));
        assert_eq!(
            (
                c.rx_missed,
                c.rx_nombuf,
                c.tx_errors,
                c.rx_errors,
                c.tx_dropped
            ),
            (3, 2, 1, 5, 4)
        );
        assert_eq!(c.rx_dropped, 0, "link loss is the emulator's counter");
        assert!(PORT_COUNTERS.iter().all(|&k| measured.has(k)));
        assert_eq!(c.port_stats_failures, 0);
    }

    #[test]
    fn a_failed_port_read_is_counted_and_never_replaced_by_the_device_counts() {
        let (mut c, mut measured) = (Counters::default(), Measured::NOTHING);
        merge_link_counters(&link(None), &mut c, &mut measured);
        assert_eq!(c.port_stats_failures, 1);
        assert_eq!(
            (c.rx_packets, c.tx_packets),
            (0, 0),
            "not the device's 1000/900"
        );
        assert!(
            !measured.has(Counter::RxPackets),
            "never read: not measured"
        );
        assert_eq!(c.tx_dropped, 4, "the device's own loss still counts");

        let good = EthStats {
            ipackets: 7,
            imissed: 2,
            ..EthStats::default()
        };
        merge_link_counters(&link(Some(good)), &mut c, &mut measured);
        merge_link_counters(&link(None), &mut c, &mut measured);
        assert_eq!((c.rx_packets, c.rx_missed), (7, 2), "the last good read");
        assert_eq!(c.port_stats_failures, 2);
        assert!(measured.has(Counter::RxMissed));
    }
}
