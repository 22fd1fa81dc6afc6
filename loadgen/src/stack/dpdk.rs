//! DPDK + smoltcp as the load generator's TCP: client sockets opened
//! actively from distinct local ports over a [`BurstDevice`] (a DPDK port's
//! [`dpdk_stack::MbufDevice`], or memory in tests).
//!
//! - Handles are positions in a slot table; a handle is given out again only
//!   after [`Stack::close`] or [`Stack::abort`].
//! - Local ports come from an ephemeral range, in turn: a port is never
//!   reused while the socket that holds it exists, and the cursor goes round
//!   the whole range before coming back to a freed one, so a new
//!   connection's 4-tuple does not meet the server's memory of an old one.
//! - A closed connection's socket lingers outside the slot table until its
//!   FIN exchange ends (or its reset leaves), then it is dropped and its
//!   port freed. TIME-WAIT is not held (smoltcp would hold it 10 s, which
//!   at thousands of short connections a second exhausts the range); the
//!   turn-taking of ports stands in for it. A peer that never finishes the
//!   close is aborted after `half_close_timeout`, as the engine does.
//! - ARP is smoltcp's own: the first SYN waits for the gateway's (or the
//!   server's) reply, later ones use the neighbour cache.
//! - Socket buffers, keep-alive, peer timeout and the minimum RTO are set as
//!   the dpdk engine's pool sets them.
//! - No readiness is reported: after each poll the driver tries every
//!   connection with work. A poll that moved nothing may yield the core
//!   ([`IdlePolicy::Yield`]) when a link emulator shares it.

use std::net::SocketAddrV4;
use std::ops::RangeInclusive;
use std::time::Duration as StdDuration;

use dpdk_stack::config::PortAddr;
use dpdk_stack::{merge_link_counters, BurstDevice, StackClock};
use shm_layout::{Counter, Counters, Measured};
use smoltcp::iface::{Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpAddress;

use super::{Connecting, Handle, Stack, StackError, Transfer};

/// What a poll that moved nothing does with the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Spin on: the core is the client's alone.
    Spin,
    /// `sched_yield`: another process (the link emulator) shares the core
    /// and must not be starved.
    Yield,
}

/// Sizes, timings and addresses of the client stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkStackConfig {
    /// The stack's own address and gateway (`[port0]`).
    pub addr: PortAddr,
    /// The server connections go to.
    pub server: SocketAddrV4,
    /// Local ports connections are opened from.
    pub ports: RangeInclusive<u16>,
    /// Receive and send buffer of each socket, bytes (the engine's size).
    pub socket_buffer: usize,
    /// Idle time after which a keep-alive probe is sent.
    pub keep_alive: Duration,
    /// A connection whose peer sends nothing for this long while we wait
    /// on it is aborted by smoltcp; a handshake that takes longer failed.
    pub peer_timeout: Duration,
    /// Longest time a closed connection may wait for its peer's FIN.
    pub half_close_timeout: Duration,
    /// The smallest retransmission timeout (`None`: smoltcp's own).
    pub rto_min: Option<Duration>,
    /// What an idle poll does.
    pub idle: IdlePolicy,
    /// How often the port's counters are read.
    pub stats_interval: StdDuration,
    /// The port's driver family, as config.ini names it.
    pub pmd: Option<&'static str>,
    /// Start the port rotation at a place drawn from the seed (as the
    /// kernel picks its ephemeral ports), not at the range's first port.
    pub random_first_port: bool,
}

/// The IANA dynamic port range (RFC 6335).
pub const EPHEMERAL_PORTS: RangeInclusive<u16> = 49152..=65535;

impl DpdkStackConfig {
    /// Defaults (the engine's buffer sizes and timings) for a stack at
    /// `addr` connecting to `server`.
    #[must_use]
    pub fn new(addr: PortAddr, server: SocketAddrV4) -> Self {
        Self {
            addr,
            server,
            ports: EPHEMERAL_PORTS,
            socket_buffer: 32 * 1024,
            keep_alive: Duration::from_secs(10),
            peer_timeout: Duration::from_secs(30),
            half_close_timeout: Duration::from_secs(10),
            rto_min: None,
            idle: IdlePolicy::Spin,
            stats_interval: StdDuration::from_millis(100),
            pmd: None,
            random_first_port: true,
        }
    }
}

/// Local ports in use, handed out in turn.
struct PortRange {
    first: u16,
    in_use: Vec<bool>,
    cursor: usize,
}

impl PortRange {
    /// The range, its first port taken at `start` places in (modulo its
    /// length): a new run does not begin on the ports of the one before,
    /// whose connections the server may still be closing.
    fn new(range: &RangeInclusive<u16>, start: u64) -> Self {
        let len = usize::from(range.end().saturating_sub(*range.start())) + 1;
        let len = if range.is_empty() { 0 } else { len };
        Self {
            first: *range.start(),
            in_use: vec![false; len],
            cursor: usize::try_from(start % u64::try_from(len.max(1)).unwrap_or(1)).unwrap_or(0),
        }
    }

    /// The next free port after the last one given, if any is free.
    fn take(&mut self) -> Option<u16> {
        let len = self.in_use.len();
        for step in 0..len {
            let i = (self.cursor + step) % len;
            if !self.in_use[i] {
                self.in_use[i] = true;
                self.cursor = (i + 1) % len;
                return u16::try_from(i).ok().map(|i| self.first + i);
            }
        }
        None
    }

    fn release(&mut self, port: u16) {
        if let Some(used) = self.in_use.get_mut(usize::from(port - self.first)) {
            *used = false;
        }
    }

    fn free(&self) -> usize {
        self.in_use.iter().filter(|u| !**u).count()
    }
}

/// An open connection of the slot table.
struct Conn {
    socket: SocketHandle,
    port: u16,
    opened_at: Instant,
    established: bool,
}

/// A socket the driver is done with, finishing its close.
struct Lingering {
    socket: SocketHandle,
    port: u16,
    since: Instant,
}

/// A smoltcp client stack over `D`.
pub struct DpdkStack<D: BurstDevice> {
    config: DpdkStackConfig,
    device: D,
    iface: Interface,
    sockets: SocketSet<'static>,
    clock: StackClock,
    slots: Vec<Option<Conn>>,
    free_slots: Vec<usize>,
    lingering: Vec<Lingering>,
    ports: PortRange,
    /// The driver changed a socket since the last poll of the interface.
    dirty: bool,
    /// When the interface next needs a poll without received frames.
    next_poll: Instant,
    /// The port's counters, merged on the stats timer.
    link: Counters,
    link_measured: Measured,
    next_stats: std::time::Instant,
}

/// Longest time between two polls of the interface and sweeps of the
/// lingering sockets when nothing arrives.
const SWEEP: Duration = Duration::from_millis(1);

impl<D: BurstDevice> DpdkStack<D> {
    /// A stack on `device` (whose MAC is `mac`) with `config`'s address;
    /// `seed` seeds smoltcp's initial sequence numbers.
    pub fn new(mut device: D, mac: [u8; 6], config: DpdkStackConfig, seed: u64) -> Self {
        let clock = StackClock::new();
        let iface = dpdk_stack::interface(&mut device, mac, config.addr, seed, clock.now());
        let ports = PortRange::new(
            &config.ports,
            if config.random_first_port { seed } else { 0 },
        );
        Self {
            config,
            device,
            iface,
            sockets: SocketSet::new(Vec::new()),
            clock,
            slots: Vec::new(),
            free_slots: Vec::new(),
            lingering: Vec::new(),
            ports,
            dirty: false,
            next_poll: Instant::from_micros(0),
            link: Counters::default(),
            link_measured: Measured::NOTHING,
            next_stats: std::time::Instant::now(),
        }
    }

    /// The device underneath.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// Sockets that exist (open connections and lingering closes).
    #[must_use]
    pub fn sockets_alive(&self) -> usize {
        self.slots.iter().flatten().count() + self.lingering.len()
    }

    /// Local ports free to open connections from.
    #[must_use]
    pub fn ports_free(&self) -> usize {
        self.ports.free()
    }

    fn conn(&self, conn: Handle) -> Option<&Conn> {
        self.slots.get(conn.0).and_then(Option::as_ref)
    }

    fn socket(&mut self, conn: Handle) -> Option<&mut tcp::Socket<'static>> {
        let handle = self.conn(conn)?.socket;
        Some(self.sockets.get_mut::<tcp::Socket>(handle))
    }

    fn new_socket(&self) -> tcp::Socket<'static> {
        dpdk_stack::tcp_socket(&dpdk_stack::SocketSettings {
            buffer: self.config.socket_buffer,
            keep_alive: self.config.keep_alive,
            peer_timeout: self.config.peer_timeout,
            rto_min: self.config.rto_min,
        })
    }

    /// Takes `conn` out of the slot table; its socket lingers until its
    /// close ends.
    fn forget(&mut self, conn: Handle, abort: bool) {
        let Some(c) = self.slots.get_mut(conn.0).and_then(Option::take) else {
            return;
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(c.socket);
        if abort {
            socket.abort();
        } else {
            socket.close();
        }
        self.lingering.push(Lingering {
            socket: c.socket,
            port: c.port,
            since: self.clock.now(),
        });
        self.free_slots.push(conn.0);
        self.dirty = true;
    }

    /// Drops the lingering sockets whose close ended, freeing their ports;
    /// aborts those that waited too long.
    fn sweep(&mut self, now: Instant) {
        let timeout = self.config.half_close_timeout;
        let mut i = 0;
        while i < self.lingering.len() {
            let l = &self.lingering[i];
            let socket = self.sockets.get_mut::<tcp::Socket>(l.socket);
            let done = match socket.state() {
                tcp::State::TimeWait => true,
                // Reset, refused, or aborted with its reset sent.
                tcp::State::Closed => socket.remote_endpoint().is_none(),
                _ => {
                    if now - l.since >= timeout {
                        socket.abort();
                        self.dirty = true;
                    }
                    false
                }
            };
            if done {
                let l = self.lingering.swap_remove(i);
                drop(self.sockets.remove(l.socket));
                self.ports.release(l.port);
            } else {
                i += 1;
            }
        }
    }
}

impl<D: BurstDevice> Stack for DpdkStack<D> {
    fn name(&self) -> &'static str {
        "dpdk"
    }

    fn pmd(&self) -> Option<&'static str> {
        self.config.pmd
    }

    fn reports_readiness(&self) -> bool {
        false
    }

    fn open(&mut self) -> Result<Handle, StackError> {
        let Some(port) = self.ports.take() else {
            return Err(StackError::Exhausted(format!(
                "every local port of {}..={} is held by an open or closing connection",
                self.config.ports.start(),
                self.config.ports.end()
            )));
        };
        let mut socket = self.new_socket();
        let local = (IpAddress::Ipv4(self.config.addr.addr), port);
        let remote = (
            IpAddress::Ipv4(*self.config.server.ip()),
            self.config.server.port(),
        );
        if let Err(e) = socket.connect(self.iface.context(), remote, local) {
            self.ports.release(port);
            return Err(StackError::Exhausted(format!(
                "smoltcp refused to connect {}:{port} to {}: {e}",
                self.config.addr.addr, self.config.server
            )));
        }
        let conn = Conn {
            socket: self.sockets.add(socket),
            port,
            opened_at: self.clock.now(),
            established: false,
        };
        let index = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i] = Some(conn);
                i
            }
            None => {
                self.slots.push(Some(conn));
                self.slots.len() - 1
            }
        };
        self.dirty = true;
        Ok(Handle(index))
    }

    fn connecting(&mut self, conn: Handle) -> Connecting {
        let now = self.clock.now();
        let peer_timeout = self.config.peer_timeout;
        let Some(c) = self.slots.get_mut(conn.0).and_then(Option::as_mut) else {
            return Connecting::Failed;
        };
        if c.established {
            return Connecting::Established;
        }
        let state = self.sockets.get::<tcp::Socket>(c.socket).state();
        match state {
            tcp::State::SynSent | tcp::State::SynReceived => Connecting::Pending,
            // From SYN-SENT, smoltcp closes a socket on a reset in answer
            // to its SYN, or when its timeout ends the handshake.
            tcp::State::Closed | tcp::State::Listen => {
                if now - c.opened_at >= peer_timeout {
                    Connecting::Failed
                } else {
                    Connecting::Refused
                }
            }
            // Established, or already past it (the server closed at once).
            _ => {
                c.established = true;
                Connecting::Established
            }
        }
    }

    fn send(&mut self, conn: Handle, bytes: &[u8]) -> Transfer {
        let Some(socket) = self.socket(conn) else {
            return Transfer::Reset;
        };
        let state = socket.state();
        let result = match socket.send_slice(bytes) {
            Ok(0) => Transfer::WouldBlock,
            Ok(n) => Transfer::Moved(n),
            Err(_) if matches!(state, tcp::State::SynSent | tcp::State::SynReceived) => {
                Transfer::WouldBlock
            }
            Err(_) => Transfer::Reset,
        };
        if matches!(result, Transfer::Moved(_)) {
            self.dirty = true;
        }
        result
    }

    fn recv(&mut self, conn: Handle, buf: &mut [u8]) -> Transfer {
        let Some(socket) = self.socket(conn) else {
            return Transfer::Reset;
        };
        let state = socket.state();
        let result = match socket.recv_slice(buf) {
            Ok(0) => Transfer::WouldBlock,
            Ok(n) => Transfer::Moved(n),
            Err(tcp::RecvError::Finished) => Transfer::Closed,
            Err(tcp::RecvError::InvalidState) => match state {
                tcp::State::SynSent | tcp::State::SynReceived => Transfer::WouldBlock,
                _ => Transfer::Reset,
            },
        };
        if matches!(result, Transfer::Moved(_)) {
            // The window opened: smoltcp may owe the server an update.
            self.dirty = true;
        }
        result
    }

    fn want_writable(&mut self, _conn: Handle, _want: bool) {}

    fn close(&mut self, conn: Handle) {
        self.forget(conn, false);
    }

    fn abort(&mut self, conn: Handle) {
        self.forget(conn, true);
    }

    /// Polls until every closed connection's FIN exchange has ended (or
    /// `within` passes): the process must not exit while the server still
    /// waits for our FIN or our last ACK.
    fn finish(&mut self, within: StdDuration) {
        let deadline = std::time::Instant::now() + within;
        let mut ready = Vec::new();
        while !self.lingering.is_empty() && std::time::Instant::now() < deadline {
            self.poll(StdDuration::ZERO, &mut ready);
            ready.clear();
        }
    }

    fn poll(&mut self, _wait: StdDuration, _ready: &mut Vec<Handle>) -> bool {
        let now = self.clock.now();
        let received = self.device.rx_burst();
        let mut moved = received > 0;
        if received > 0 || self.dirty || now >= self.next_poll {
            self.dirty = false;
            moved |= self.iface.poll(now, &mut self.device, &mut self.sockets)
                == PollResult::SocketStateChanged;
            if !self.lingering.is_empty() {
                self.sweep(now);
            }
            let sweep = now + SWEEP;
            self.next_poll = self
                .iface
                .poll_at(now, &self.sockets)
                .map_or(sweep, |at| at.min(sweep));
        }
        moved |= self.device.tx_flush() > 0;
        if !moved && self.config.idle == IdlePolicy::Yield {
            std::thread::yield_now();
        }
        moved
    }

    fn add_counters(&mut self, counters: &mut Counters) {
        let now = std::time::Instant::now();
        if now >= self.next_stats {
            self.next_stats = now + self.config.stats_interval;
            merge_link_counters(
                &self.device.link_counters(),
                &mut self.link,
                &mut self.link_measured,
            );
        }
        let l = &self.link;
        counters.rx_packets = l.rx_packets;
        counters.tx_packets = l.tx_packets;
        counters.rx_errors = l.rx_errors;
        counters.rx_missed = l.rx_missed;
        counters.rx_nombuf = l.rx_nombuf;
        counters.tx_errors = l.tx_errors;
        counters.tx_dropped = l.tx_dropped;
        counters.port_stats_failures = l.port_stats_failures;
    }

    fn measured(&self, measured: Measured) -> Measured {
        Measured::from_bits(measured.bits() | self.link_measured.bits())
            .with(Counter::TxDropped)
            .with(Counter::PortStatsFailures)
    }
}

#[cfg(test)]
mod port_range_tests {
    use super::PortRange;

    /// Two runs with different seeds begin on different ports, each then
    /// taking the range in turn and wrapping at its end.
    #[test]
    fn the_rotation_starts_where_the_seed_says() {
        let mut a = PortRange::new(&(1000..=1007), 3);
        let mut b = PortRange::new(&(1000..=1007), 13);
        assert_eq!(a.take(), Some(1003));
        assert_eq!(b.take(), Some(1005), "13 mod 8");
        let rest: Vec<u16> = (0..7).filter_map(|_| a.take()).collect();
        assert_eq!(rest, [1004, 1005, 1006, 1007, 1000, 1001, 1002]);
        assert_eq!(a.take(), None, "every port in use");
        assert_eq!(PortRange::new(&(1000..=1007), 0).take(), Some(1000));
    }
}
