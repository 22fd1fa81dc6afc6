//! The testbed network as data: its three namespaces and the links between
//! them, derived from the configuration and the impairment backend. `net
//! up` builds exactly this list, `net status` checks it, and `net down`
//! removes what `up` recorded of it.
//!
//! ```text
//!  NS1                NS2                                   NS3
//!  <n>-c ──── <n>-c-br ─┐
//!                       <n>-br (bridge)
//!  plain / netem:       └─ <n>-s-br ───────────────────── <n>-s
//!  emulator:            └─ <n>-e-br ── <n>-e ⇄ [emulator] ⇄ <n>-s-br ── <n>-s
//! ```

use std::net::Ipv4Addr;

use crate::config::TestbedConfig;

pub use crate::config::NsRole;

/// An interface in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// Its namespace.
    pub ns: String,
    /// Its name.
    pub name: String,
}

/// How one end of a veth pair is wired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wiring {
    /// An endpoint holding this address (NS1's and NS3's ends).
    Address(Ipv4Addr),
    /// A port of the NS2 bridge.
    BridgePort,
    /// In NS2 but off the bridge: one side of the link emulator.
    Detached,
}

/// One end of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// The interface.
    pub iface: Iface,
    /// Its wiring.
    pub wiring: Wiring,
}

/// A veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veth {
    /// The end created first.
    pub a: End,
    /// Its peer.
    pub b: End,
}

/// The whole network of one testbed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The namespaces, NS1, NS2, NS3.
    pub namespaces: [(NsRole, String); 3],
    /// The bridge in NS2.
    pub bridge: Iface,
    /// The veth pairs, in creation order.
    pub veths: Vec<Veth>,
    /// Links of the other wiring (emulated or not) that must not exist.
    pub absent: Vec<Iface>,
}

impl Topology {
    /// The network of `cfg`, with the link emulator between the bridge and
    /// NS3 when `emulated`.
    #[must_use]
    pub fn of(cfg: &TestbedConfig, emulated: bool) -> Self {
        let (ns1, ns2, ns3) = (cfg.client_ns(), cfg.bridge_ns(), cfg.server_ns());
        let iface = |ns: &str, name: String| Iface {
            ns: ns.to_owned(),
            name,
        };
        let end = |ns: &str, name: String, wiring| End {
            iface: iface(ns, name),
            wiring,
        };
        let client = Veth {
            a: end(&ns1, cfg.client_iface(), Wiring::Address(cfg.client_addr())),
            b: end(&ns2, cfg.client_peer_iface(), Wiring::BridgePort),
        };
        let server_side = if emulated {
            Wiring::Detached
        } else {
            Wiring::BridgePort
        };
        let server = Veth {
            a: end(&ns3, cfg.server_iface(), Wiring::Address(cfg.server_addr())),
            b: end(&ns2, cfg.server_peer_iface(), server_side),
        };
        let emulator = Veth {
            a: end(&ns2, cfg.emulator_iface(), Wiring::Detached),
            b: end(&ns2, cfg.emulator_peer_iface(), Wiring::BridgePort),
        };
        let (veths, absent) = if emulated {
            (vec![client, server, emulator], Vec::new())
        } else {
            (vec![client, server], vec![emulator.a.iface])
        };
        Self {
            namespaces: [
                (NsRole::Client, ns1),
                (NsRole::Bridge, ns2.clone()),
                (NsRole::Server, ns3),
            ],
            bridge: iface(&ns2, cfg.bridge_iface()),
            veths,
            absent,
        }
    }

    /// Every link that must exist: the bridge, then both ends of each pair.
    #[must_use]
    pub fn links(&self) -> Vec<&Iface> {
        std::iter::once(&self.bridge)
            .chain(self.veths.iter().flat_map(|v| [&v.a.iface, &v.b.iface]))
            .collect()
    }

    /// Every interface end, with its wiring.
    pub fn ends(&self) -> impl Iterator<Item = &End> {
        self.veths.iter().flat_map(|v| [&v.a, &v.b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emulator_adds_one_pair_and_takes_ns3_off_the_bridge() {
        let cfg = TestbedConfig::default();
        let plain = Topology::of(&cfg, false);
        let emulated = Topology::of(&cfg, true);
        assert_eq!(plain.links().len(), 5);
        assert_eq!(emulated.links().len(), 7);
        assert_eq!(plain.absent[0].name, cfg.emulator_iface());
        let ns3_side = |t: &Topology| {
            t.ends()
                .find(|e| e.iface.name == cfg.server_peer_iface())
                .map(|e| e.wiring.clone())
        };
        assert_eq!(ns3_side(&plain), Some(Wiring::BridgePort));
        assert_eq!(ns3_side(&emulated), Some(Wiring::Detached));
        let addressed: Vec<_> = emulated
            .ends()
            .filter(|e| matches!(e.wiring, Wiring::Address(_)))
            .map(|e| e.iface.ns.clone())
            .collect();
        assert_eq!(addressed, [cfg.client_ns(), cfg.server_ns()]);
    }
}
