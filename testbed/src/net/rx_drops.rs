//! Frames an interface dropped on receive before any stack saw them, from
//! its driver's own counters (`ethtool -S`). On a veth owned by an AF_XDP
//! port these are the redirects into a full AF_XDP ring, which DPDK's
//! af_xdp driver does not count in `imissed`: without this reading a burst
//! of requests larger than the ring is lost silently and shows only as the
//! client's 200 ms retransmissions.

use crate::host::command;
use crate::placement::Node;

/// The receive drops `iface` in `node` has counted since it was created:
/// the sum of its per-queue `rx_queue_N_drops` and `rx_queue_N_xdp_drops`.
/// `None` when the driver has no such counters (or `ethtool` failed), so
/// an unmeasured figure is never shown as zero.
#[must_use]
pub fn rx_drops(node: &Node, iface: &str) -> Option<u64> {
    let mut ethtool = node.command("ethtool");
    ethtool.args(["-S", iface]);
    command::run(&mut ethtool, "")
        .ok()
        .and_then(|text| parse(&text))
}

/// The drop counters of `ethtool -S`'s output, summed.
fn parse(text: &str) -> Option<u64> {
    let mut found = false;
    let mut total = 0u64;
    for line in text.lines() {
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        let is_drop = name.starts_with("rx_queue_")
            && (name.ends_with("_xdp_drops") || name.ends_with("_drops"));
        if !is_drop {
            continue;
        }
        if let Ok(n) = value.trim().parse::<u64>() {
            found = true;
            total = total.saturating_add(n);
        }
    }
    found.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_veths_queue_drops_are_summed_and_nothing_else() {
        let text = "NIC statistics:\n     peer_ifindex: 7\n     rx_queue_0_xdp_packets: 30016\n     rx_queue_0_drops: 1434\n     rx_queue_0_xdp_redirect: 28582\n     rx_queue_0_xdp_drops: 2\n     tx_queue_0_xdp_xmit_errors: 9\n";
        assert_eq!(parse(text), Some(1436));
    }

    #[test]
    fn a_driver_without_drop_counters_is_unmeasured_not_zero() {
        assert_eq!(parse("NIC statistics:\n     peer_ifindex: 7\n"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("no stats available\n"), None);
    }
}
