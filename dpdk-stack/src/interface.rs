//! The smoltcp interface over a device: the `[port0]` address, the default
//! route, the MAC, and the clock smoltcp's timers run on.

use std::time::Instant as StdInstant;

use smoltcp::iface::{Config, Interface};
use smoltcp::phy::Device;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};

use crate::config::PortAddr;

/// smoltcp's time: microseconds since the stack was made.
#[derive(Debug, Clone, Copy)]
pub struct StackClock {
    epoch: StdInstant,
}

impl Default for StackClock {
    fn default() -> Self {
        Self::new()
    }
}

impl StackClock {
    /// A clock starting at zero now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            epoch: StdInstant::now(),
        }
    }

    /// Now, in smoltcp's time.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.at(StdInstant::now())
    }

    /// `at`, in smoltcp's time.
    #[must_use]
    pub fn at(&self, at: StdInstant) -> Instant {
        Instant::from_micros(
            i64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX),
        )
    }
}

/// An interface on `device` with `mac`, the one address of `addr` and its
/// gateway as the default route. `seed` seeds initial sequence numbers
/// (they need not be secret here, only differ between runs).
pub fn interface(
    device: &mut impl Device,
    mac: [u8; 6],
    addr: PortAddr,
    seed: u64,
    now: Instant,
) -> Interface {
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    config.random_seed = seed;
    let mut iface = Interface::new(config, device, now);
    iface.update_ip_addrs(|ips| {
        // One address only: the vector has room for it.
        let _ = ips.push(IpCidr::Ipv4(Ipv4Cidr::new(addr.addr, addr.prefix_len)));
    });
    if let Some(gateway) = addr.gateway {
        // The route table has room for one default route.
        let _ = iface.routes_mut().add_default_ipv4_route(gateway);
    }
    iface
}

/// A seed that differs between runs and processes.
#[must_use]
pub fn run_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    u64::from(std::process::id()) ^ nanos ^ 0x5DEE_CE66_D1CE_4E5B
}

/// A stack's TCP timestamp clock (RFC 7323): milliseconds since the first
/// call, monotonic, wrapping at 2³² ms as the RFC allows. Linux reuses a
/// local port still in TIME-WAIT only towards a peer that sent timestamps.
#[must_use]
pub fn tcp_timestamp_ms() -> u32 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = START.get_or_init(std::time::Instant::now).elapsed();
    // Wraps by design: only differences of timestamps mean anything.
    #[allow(clippy::cast_possible_truncation)]
    let ms = elapsed.as_millis() as u32;
    ms
}
