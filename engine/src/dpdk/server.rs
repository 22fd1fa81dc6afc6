//! The TCP server on smoltcp: a pool of listening sockets on one port, one
//! [`ServerSession`] per connection, and the busy-poll loop.
//!
//! One loop iteration: rx burst → `iface.poll` (ARP, TCP input, pending
//! output) → each connection: flush pending replies, read, answer →
//! `iface.poll` again (the new replies go out in the same iteration) → tx
//! burst. Counters are published on the context's timer; the port's
//! `rte_eth_stats` are merged into them at the same cadence, never per
//! packet.

use std::time::{Duration as StdDuration, Instant as StdInstant};

use protocol::{ServerSession, REPLY_LEN};
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};

use super::config::PortAddr;
use super::device::MbufDevice;
use crate::context::ServeContext;

/// Sizes and timings of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// The stack's address (`[port0]`).
    pub addr: PortAddr,
    /// TCP port to listen on.
    pub port: u16,
    /// Sockets kept in the listening state: this many connections can be
    /// opened at once before new SYNs meet a reset.
    pub listen_backlog: usize,
    /// Most sockets ever created (open connections + listening sockets).
    pub max_sockets: usize,
    /// Receive and send buffer of each socket, in bytes.
    pub socket_buffer: usize,
    /// After stop: how long to keep serving so that replies in flight
    /// leave.
    pub drain: StdDuration,
    /// How often the port's counters are read (each read may be a syscall
    /// for the af_* drivers).
    pub stats_interval: StdDuration,
}

impl ServerConfig {
    /// Defaults for `addr:port`.
    #[must_use]
    pub fn new(addr: PortAddr, port: u16) -> Self {
        Self {
            addr,
            port,
            listen_backlog: 64,
            max_sockets: 4096,
            socket_buffer: 32 * 1024,
            drain: StdDuration::from_millis(200),
            stats_interval: StdDuration::from_millis(100),
        }
    }
}

/// One socket of the pool and the protocol state of its connection.
struct Conn {
    handle: SocketHandle,
    session: ServerSession,
    /// Replies produced but not yet accepted by the socket's send buffer.
    pending: Vec<u8>,
    /// Reply bytes the socket accepted on this connection.
    reply_bytes: u64,
    /// Counted in `connections_opened`, not yet in `connections_closed`.
    open: bool,
    /// We decided to close (protocol error, or the peer finished).
    closing: bool,
}

/// The stack and its sockets over one device.
pub struct Server {
    config: ServerConfig,
    iface: Interface,
    sockets: SocketSet<'static>,
    conns: Vec<Conn>,
    epoch: StdInstant,
    /// When the stack next needs a poll without received frames.
    next_poll: Instant,
}

/// Longest time between two polls of the stack and sweeps of the sockets
/// when no frame arrives.
const SWEEP: Duration = Duration::from_millis(1);

impl Server {
    /// Sets up the interface (address, default route, `mac`) and the
    /// listening sockets.
    pub fn new(config: ServerConfig, device: &mut MbufDevice<'_>, mac: [u8; 6]) -> Self {
        let epoch = StdInstant::now();
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        // Seeds initial sequence numbers; need not be secret here.
        iface_config.random_seed = u64::from(std::process::id())
            ^ u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(0)
            ^ 0x5DEE_CE66_D1CE_4E5B;
        let mut iface = Interface::new(iface_config, device, Instant::from_micros(0));
        let addr = config.addr;
        iface.update_ip_addrs(|ips| {
            // One address only: the vector has room for it.
            let _ = ips.push(IpCidr::Ipv4(Ipv4Cidr::new(addr.addr, addr.prefix_len)));
        });
        if let Some(gateway) = addr.gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(gateway);
        }
        let mut server = Self {
            config,
            iface,
            sockets: SocketSet::new(Vec::new()),
            conns: Vec::new(),
            epoch,
            next_poll: Instant::from_micros(0),
        };
        server.top_up_listeners();
        server
    }

    fn now(&self) -> Instant {
        Instant::from_micros(i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX))
    }

    /// Serves until `ctx.should_stop()`, drains, and publishes the final
    /// counters.
    pub fn run(&mut self, device: &mut MbufDevice<'_>, ctx: &mut ServeContext) {
        let mut next_stats = StdInstant::now();
        while !ctx.should_stop() {
            let worked = self.iteration(device, ctx);
            if worked {
                ctx.counters.busy_loops += 1;
            } else {
                ctx.counters.idle_loops += 1;
            }
            let now = StdInstant::now();
            if now >= next_stats {
                next_stats = now + self.config.stats_interval;
                merge_port_stats(device, ctx);
            }
            ctx.maybe_publish();
        }

        // Drain: keep serving briefly so replies already decided leave, then
        // close every connection gracefully and push the FINs out.
        let deadline = StdInstant::now() + self.config.drain;
        while StdInstant::now() < deadline {
            self.iteration(device, ctx);
            let idle = self.conns.iter().all(|c| {
                c.pending.is_empty() && self.sockets.get::<tcp::Socket>(c.handle).send_queue() == 0
            });
            if idle && !device.tx_pending() {
                break;
            }
        }
        for conn in &self.conns {
            self.sockets.get_mut::<tcp::Socket>(conn.handle).close();
        }
        let now = self.now();
        self.iface.poll(now, device, &mut self.sockets);
        device.tx_flush();
        for conn in &mut self.conns {
            if conn.open {
                conn.open = false;
                ctx.counters.connections_closed += 1;
                if conn.session.mid_request() {
                    ctx.counters.half_messages += 1;
                }
            }
        }
        ctx.counters.connections_active = 0;
        merge_port_stats(device, ctx);
        ctx.publish_now();
    }

    /// One pass of the loop; whether it found any work.
    ///
    /// Without received frames the stack is only polled when one of its
    /// timers (retransmission, delayed ACK, …) is due or every [`SWEEP`],
    /// so an idle pass costs one rx burst and a clock read, whatever the
    /// number of sockets.
    fn iteration(&mut self, device: &mut MbufDevice<'_>, ctx: &mut ServeContext) -> bool {
        let received = device.rx_burst();
        let now = self.now();
        if received == 0 && now < self.next_poll {
            return device.tx_pending() && device.tx_flush() > 0;
        }
        let changed =
            self.iface.poll(now, device, &mut self.sockets) == PollResult::SocketStateChanged;
        let serviced = self.service(ctx);
        if serviced {
            // The replies just queued leave in this same pass.
            self.iface.poll(now, device, &mut self.sockets);
        }
        if changed || serviced {
            self.top_up_listeners();
        }
        let sweep = now + SWEEP;
        self.next_poll = self
            .iface
            .poll_at(now, &self.sockets)
            .map_or(sweep, |at| at.min(sweep));
        let sent = device.tx_flush();
        received > 0 || changed || serviced || sent > 0
    }

    /// Moves bytes between sockets and sessions; whether anything moved.
    fn service(&mut self, ctx: &mut ServeContext) -> bool {
        let mut worked = false;
        let c = &mut ctx.counters;
        for conn in &mut self.conns {
            let socket = self.sockets.get_mut::<tcp::Socket>(conn.handle);
            let state = socket.state();
            if !conn.open && is_connected(state) {
                conn.open = true;
                c.connections_opened += 1;
                worked = true;
            }
            if conn.open {
                worked |= serve_connection(conn, socket, c);
            }
            match socket.state() {
                tcp::State::Closed | tcp::State::TimeWait => {
                    if socket.state() == tcp::State::TimeWait {
                        // The peer has acknowledged our FIN; holding the
                        // socket for 2 MSL would only starve the pool.
                        socket.abort();
                    }
                    if conn.open {
                        c.connections_closed += 1;
                        if conn.session.mid_request() {
                            c.half_messages += 1;
                        }
                    }
                    conn.session = ServerSession::default();
                    conn.pending.clear();
                    conn.reply_bytes = 0;
                    conn.open = false;
                    conn.closing = false;
                    // Fails only when the socket is not closed, which it is.
                    let _ = socket.listen(self.config.port);
                    worked = true;
                }
                _ => {}
            }
        }
        c.connections_active = c.connections_opened - c.connections_closed;
        worked
    }

    /// Keeps `listen_backlog` sockets listening (up to `max_sockets`).
    fn top_up_listeners(&mut self) {
        let listening = self
            .conns
            .iter()
            .filter(|c| self.sockets.get::<tcp::Socket>(c.handle).state() == tcp::State::Listen)
            .count();
        for _ in listening..self.config.listen_backlog {
            if self.conns.len() >= self.config.max_sockets {
                break;
            }
            let size = self.config.socket_buffer;
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; size]),
                tcp::SocketBuffer::new(vec![0; size]),
            );
            // Replies are 4 bytes: Nagle would hold each one back until the
            // previous is acknowledged.
            socket.set_nagle_enabled(false);
            // Fails only for port 0, which the CLI cannot produce.
            let _ = socket.listen(self.config.port);
            let handle = self.sockets.add(socket);
            self.conns.push(Conn {
                handle,
                session: ServerSession::default(),
                pending: Vec::with_capacity(256),
                reply_bytes: 0,
                open: false,
                closing: false,
            });
        }
    }
}

/// Whether a socket in `state` carries an accepted connection.
fn is_connected(state: tcp::State) -> bool {
    !matches!(
        state,
        tcp::State::Closed | tcp::State::Listen | tcp::State::SynReceived | tcp::State::SynSent
    )
}

/// Flushes, reads and answers one connection; whether anything moved.
fn serve_connection(
    conn: &mut Conn,
    socket: &mut tcp::Socket<'_>,
    c: &mut shm_layout::Counters,
) -> bool {
    let mut worked = flush(conn, socket, c);
    // Read only once every earlier reply is in the send buffer: a peer that
    // does not read its replies sees its window close instead of the engine
    // buffering without bound. Two rounds cover a wrapped receive ring.
    for _ in 0..2 {
        if conn.closing || !conn.pending.is_empty() || !socket.can_recv() {
            break;
        }
        let session = &mut conn.session;
        let pending = &mut conn.pending;
        let Ok(result) = socket.recv(|data| (data.len(), session.on_bytes(data, pending))) else {
            break;
        };
        worked = true;
        match result {
            Ok(stats) => {
                c.messages_received += stats.requests;
                c.bytes_received += stats.bytes_in;
            }
            Err(_) => {
                // Answer the good prefix, then close; others keep going.
                c.protocol_errors += 1;
                conn.closing = true;
            }
        }
        flush(conn, socket, c);
    }
    // The peer finished sending (or we gave up on it): close once every
    // reply is handed to the socket; smoltcp sends them before the FIN.
    let peer_done = !socket.may_recv() && socket.state() == tcp::State::CloseWait;
    if (conn.closing || peer_done) && conn.pending.is_empty() && socket.is_open() {
        if socket.state() != tcp::State::FinWait1 && socket.state() != tcp::State::LastAck {
            socket.close();
            worked = true;
        }
        conn.closing = true;
    }
    worked
}

/// Hands pending replies to the socket as far as its send buffer allows.
fn flush(conn: &mut Conn, socket: &mut tcp::Socket<'_>, c: &mut shm_layout::Counters) -> bool {
    if conn.pending.is_empty() || !socket.can_send() {
        return false;
    }
    let Ok(n) = socket.send_slice(&conn.pending) else {
        return false;
    };
    if n == 0 {
        return false;
    }
    conn.pending.drain(..n);
    let before = conn.reply_bytes / REPLY_LEN as u64;
    conn.reply_bytes += n as u64;
    c.bytes_sent += n as u64;
    c.messages_sent += conn.reply_bytes / REPLY_LEN as u64 - before;
    true
}

/// The port's counters into the engine's: frames in/out, misses, errors.
fn merge_port_stats(device: &MbufDevice<'_>, ctx: &mut ServeContext) {
    if let Ok(s) = device.port().stats() {
        ctx.counters.rx_packets = s.ipackets;
        ctx.counters.tx_packets = s.opackets;
        ctx.counters.rx_dropped = s.imissed;
        ctx.counters.rx_errors = s.ierrors;
    } else {
        let d = device.stats();
        ctx.counters.rx_packets = d.rx_frames;
        ctx.counters.tx_packets = d.tx_frames;
    }
}
