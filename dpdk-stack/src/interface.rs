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

/// How a stack's TCP sockets are set up, the same for the engine's
/// listening sockets and a client's connecting ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketSettings {
    /// Bytes of each of the socket's buffers.
    pub buffer: usize,
    /// Idle time after which a keep-alive probe is sent.
    pub keep_alive: smoltcp::time::Duration,
    /// A peer silent this long while it owes us something is given up.
    pub peer_timeout: smoltcp::time::Duration,
    /// The smallest retransmission timeout (`None`: smoltcp's own).
    pub rto_min: Option<smoltcp::time::Duration>,
}

/// A TCP socket with `settings` (each kept across `listen()`): Nagle off,
/// since requests and 4-byte replies must leave at once, not wait for the
/// previous one's acknowledgement; keep-alive and a peer timeout, so a
/// vanished peer is found out; the minimum RTO asked for; and TCP
/// timestamps (RFC 7323), offered in a SYN and answered when offered, as
/// Linux's stack does: a Linux client reuses a local port still in
/// TIME-WAIT only towards a peer that sent timestamps, so without them
/// short connections stall on TIME-WAIT's 60 s once its ports are used up.
#[must_use]
pub fn tcp_socket(settings: &SocketSettings) -> smoltcp::socket::tcp::Socket<'static> {
    use smoltcp::socket::tcp;
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; settings.buffer]),
        tcp::SocketBuffer::new(vec![0; settings.buffer]),
    );
    socket.set_nagle_enabled(false);
    socket.set_keep_alive(Some(settings.keep_alive));
    socket.set_timeout(Some(settings.peer_timeout));
    if let Some(rto_min) = settings.rto_min {
        socket.set_min_rto(rto_min);
    }
    socket.set_tsval_generator(Some(tcp_timestamp_ms));
    socket
}
