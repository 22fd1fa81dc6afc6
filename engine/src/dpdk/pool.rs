//! The socket pool: smoltcp has no accept(), so a connection is a
//! listening socket that a SYN turned into a connected one. The pool keeps
//! enough sockets listening on the port, tracks which ones carry a
//! connection (and counts it once), and gives a finished socket back to
//! listening.
//!
//! Order matters. smoltcp hands a segment to the first socket of its set
//! that accepts it, and a listening socket accepts any SYN to its port. A
//! listener placed before a socket in SYN-RECEIVED would take that
//! connection's retransmitted SYN (its SYN-ACK was lost) and open a second
//! half-connection for the same 4-tuple; the client's ACK then meets the
//! wrong one and a reset, or the first is left half-open for good. So the
//! set is kept in two regions: positions `[0, taken)` carry connections
//! (SYN-RECEIVED onwards), `[taken, len)` listen. A SYN always lands on the
//! first listener, position `taken`, which then joins the first region; a
//! finished connection swaps places with the last one of its region and
//! listens there, at the region's new border. No listener ever precedes a
//! connection's socket, and the number of listeners is `len − taken`, kept
//! without counting.
//!
//! No connection holds a socket for ever: a peer that broke the protocol
//! is aborted (`app`), a connection half-closed for longer than
//! `half_close_timeout` (a FIN one way, never the other's) is aborted and
//! counted in `idle_timeouts`, and keep-alive with smoltcp's timeout ends
//! connections whose peer went silent. An aborted socket listens again only
//! once its reset has left.

use shm_layout::Counters;
use smoltcp::iface::{Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

use super::app::Exchange;

/// Sizes of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// TCP port to listen on.
    pub port: u16,
    /// Sockets kept in the listening state: this many connections can be
    /// opened at once before new SYNs meet a reset.
    pub listen_backlog: usize,
    /// Most sockets ever created (open connections + listening sockets).
    pub max_sockets: usize,
    /// Receive and send buffer of each socket, in bytes.
    pub socket_buffer: usize,
    /// Longest time a connection may stay half-closed (FIN-WAIT-1/2,
    /// CLOSING, LAST-ACK, CLOSE-WAIT) before it is aborted.
    pub half_close_timeout: Duration,
    /// Idle time after which a keep-alive probe is sent.
    pub keep_alive: Duration,
    /// A connection whose peer sends nothing for this long while we wait on
    /// it (data unacknowledged, or keep-alives unanswered) is aborted by
    /// smoltcp.
    pub peer_timeout: Duration,
    /// The smallest retransmission timeout (`None`: smoltcp's own, 10 ms).
    pub rto_min: Option<Duration>,
}

/// One position of the pool: its socket and the connection it carries.
struct Slot {
    handle: SocketHandle,
    exchange: Exchange,
    /// Counted in `connections_opened`, not yet in `connections_closed`.
    open: bool,
    /// The state the previous pass found (a connection that went from
    /// ESTABLISHED to CLOSED between two passes was reset or timed out).
    last_state: tcp::State,
    /// Since when the connection has been half-closed.
    half_closed_since: Option<Instant>,
    /// Aborted for staying half-closed too long.
    timed_out: bool,
}

/// The sockets and their connections.
pub(super) struct SocketPool {
    config: PoolConfig,
    sockets: SocketSet<'static>,
    /// `slots[i]` is the socket at position `i` of the set (smoltcp's
    /// dispatch order): sockets are only ever added at the end and removed
    /// from the end, so positions never have holes.
    slots: Vec<Slot>,
    /// Positions `[0, taken)` carry connections, the rest listen.
    taken: usize,
    /// Positions found finished in the current pass (kept to reuse).
    finished: Vec<usize>,
}

impl SocketPool {
    /// A pool with `listen_backlog` sockets listening.
    pub(super) fn new(config: PoolConfig) -> Self {
        let mut pool = Self {
            config,
            sockets: SocketSet::new(Vec::new()),
            slots: Vec::new(),
            taken: 0,
            finished: Vec::new(),
        };
        pool.balance_listeners();
        pool
    }

    /// Polls `iface` over the pool's sockets, then moves the listeners a
    /// SYN turned into connections out of the listening region. Every poll
    /// goes through here, so the regions are right after each one.
    pub(super) fn poll(
        &mut self,
        iface: &mut Interface,
        now: Instant,
        device: &mut impl Device,
    ) -> bool {
        let changed = iface.poll(now, device, &mut self.sockets) == PollResult::SocketStateChanged;
        // smoltcp gives a SYN to the first listener, so new connections
        // are at the front of the listening region.
        while self.taken < self.slots.len() && self.state(self.taken) != tcp::State::Listen {
            self.taken += 1;
        }
        changed
    }

    /// When the stack next needs a poll without received frames.
    pub(super) fn poll_at(&self, iface: &mut Interface, now: Instant) -> Option<Instant> {
        iface.poll_at(now, &self.sockets)
    }

    fn state(&self, position: usize) -> tcp::State {
        self.sockets
            .get::<tcp::Socket>(self.slots[position].handle)
            .state()
    }

    /// Sockets listening.
    pub(super) fn listeners(&self) -> usize {
        self.slots.len() - self.taken
    }

    /// Moves bytes between the connections' sockets and sessions, ends
    /// connections half-closed for too long, and gives finished sockets back
    /// to listening; whether anything moved. Only connections are visited,
    /// never the listeners.
    pub(super) fn serve(&mut self, c: &mut Counters, now: Instant) -> bool {
        let mut worked = false;
        self.finished.clear();
        let half_close_timeout = self.config.half_close_timeout;
        for (position, slot) in self.slots[..self.taken].iter_mut().enumerate() {
            let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
            if !slot.open && is_connected(socket.state()) {
                slot.open = true;
                c.connections_opened += 1;
                worked = true;
            }
            if slot.open {
                worked |= slot.exchange.serve(socket, c);
            }
            if is_half_closed(socket.state()) {
                let since = *slot.half_closed_since.get_or_insert(now);
                if now - since >= half_close_timeout {
                    socket.abort();
                    slot.timed_out = true;
                    c.idle_timeouts += 1;
                    worked = true;
                }
            }
            match socket.state() {
                // The peer has acknowledged our FIN; holding the socket for
                // 2 MSL would only starve the pool.
                tcp::State::TimeWait => self.finished.push(position),
                // Reset, timed out, or aborted with its reset sent (an
                // aborted socket keeps its peer until the reset leaves).
                tcp::State::Closed if socket.remote_endpoint().is_none() => {
                    self.finished.push(position);
                }
                // A reset in SYN-RECEIVED sends smoltcp's socket back to
                // listening, inside the connections' region.
                tcp::State::Listen => self.finished.push(position),
                state => slot.last_state = state,
            }
        }
        worked |= !self.finished.is_empty();
        // From the back, so that every position still to recycle is below
        // the ones already moved.
        while let Some(position) = self.finished.pop() {
            self.recycle(position, c);
        }
        c.connections_active = c.connections_opened - c.connections_closed;
        worked
    }

    /// Counts the connection at `position` closed and makes its socket the
    /// first listener: it swaps places with the last connection, and the
    /// border moves down over it.
    fn recycle(&mut self, position: usize, c: &mut Counters) {
        let slot = &mut self.slots[position];
        if slot.open {
            c.connections_closed += 1;
            if slot.exchange.mid_request() {
                c.half_messages += 1;
            }
            // Straight from ESTABLISHED to CLOSED, and not by us: the peer
            // reset it, or it went silent and smoltcp gave up on it.
            if slot.last_state == tcp::State::Established
                && !slot.exchange.aborted()
                && !slot.timed_out
            {
                c.resets += 1;
            }
        }
        slot.exchange.reset();
        slot.open = false;
        slot.last_state = tcp::State::Listen;
        slot.half_closed_since = None;
        slot.timed_out = false;
        let last = self.taken - 1;
        self.swap(position, last);
        self.taken = last;
        let socket = self.sockets.get_mut::<tcp::Socket>(self.slots[last].handle);
        if socket.state() != tcp::State::Listen {
            // Closed or TIME-WAIT: listen() forgets the old connection
            // (no segment is sent for it). Fails only for port 0, which
            // the CLI cannot produce.
            let _ = socket.listen(self.config.port);
        }
    }

    /// Exchanges the sockets, and the connections they carry, at positions
    /// `a` and `b`: the smoltcp sockets move between the set's slots (a
    /// socket holds no reference to its slot), the handles stay with the
    /// positions.
    fn swap(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        let (ha, hb) = (self.slots[a].handle, self.slots[b].handle);
        let sa = std::mem::replace(self.sockets.get_mut::<tcp::Socket>(ha), placeholder());
        let sb = std::mem::replace(self.sockets.get_mut::<tcp::Socket>(hb), sa);
        *self.sockets.get_mut::<tcp::Socket>(ha) = sb;
        self.slots.swap(a, b);
        self.slots[a].handle = ha;
        self.slots[b].handle = hb;
    }

    /// Keeps exactly `listen_backlog` sockets listening (fewer only at
    /// `max_sockets`): new ones are added at the end, and the listeners a
    /// burst of connections left behind are removed from the end, so the
    /// pool shrinks back after a peak and positions keep no holes.
    pub(super) fn balance_listeners(&mut self) {
        while self.listeners() > self.config.listen_backlog {
            if let Some(slot) = self.slots.pop() {
                // Frees its buffers; the set's slot stays empty until the
                // next socket is added, at this position.
                drop(self.sockets.remove(slot.handle));
            }
        }
        while self.listeners() < self.config.listen_backlog
            && self.slots.len() < self.config.max_sockets
        {
            let mut socket = dpdk_stack::tcp_socket(&dpdk_stack::SocketSettings {
                buffer: self.config.socket_buffer,
                keep_alive: self.config.keep_alive,
                peer_timeout: self.config.peer_timeout,
                rto_min: self.config.rto_min,
            });
            // Fails only for port 0, which the CLI cannot produce.
            let _ = socket.listen(self.config.port);
            // No holes below the end: the set puts it at position len.
            let handle = self.sockets.add(socket);
            self.slots.push(Slot {
                handle,
                exchange: Exchange::default(),
                open: false,
                last_state: tcp::State::Listen,
                half_closed_since: None,
                timed_out: false,
            });
        }
    }

    /// Whether every connection has handed its replies to its socket and
    /// every socket has sent them.
    pub(super) fn all_sent(&self) -> bool {
        self.slots[..self.taken].iter().all(|s| {
            s.exchange.all_handed_over()
                && self.sockets.get::<tcp::Socket>(s.handle).send_queue() == 0
        })
    }

    /// Closes every socket (FIN) and counts every open connection closed.
    pub(super) fn close_all(&mut self, c: &mut Counters) {
        for slot in &mut self.slots {
            self.sockets.get_mut::<tcp::Socket>(slot.handle).close();
            if slot.open {
                slot.open = false;
                c.connections_closed += 1;
                if slot.exchange.mid_request() {
                    c.half_messages += 1;
                }
            }
        }
        c.connections_active = 0;
    }

    /// Sockets in the pool.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The state of every socket, in dispatch order (tests check the
    /// regions with it).
    #[cfg(test)]
    pub(super) fn states(&self) -> Vec<tcp::State> {
        (0..self.slots.len()).map(|p| self.state(p)).collect()
    }

    /// The remote endpoint of every socket, in dispatch order.
    #[cfg(test)]
    pub(super) fn remotes(&self) -> Vec<Option<smoltcp::wire::IpEndpoint>> {
        self.slots
            .iter()
            .map(|s| self.sockets.get::<tcp::Socket>(s.handle).remote_endpoint())
            .collect()
    }
}

/// What stands in a slot for the instant a socket is moved out of it: no
/// buffers, so nothing is allocated.
fn placeholder() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(Vec::new()),
        tcp::SocketBuffer::new(Vec::new()),
    )
}

/// Whether a socket in `state` has one direction closed and waits for the
/// other.
fn is_half_closed(state: tcp::State) -> bool {
    matches!(
        state,
        tcp::State::FinWait1
            | tcp::State::FinWait2
            | tcp::State::Closing
            | tcp::State::LastAck
            | tcp::State::CloseWait
    )
}

/// Whether a socket in `state` carries an accepted connection.
fn is_connected(state: tcp::State) -> bool {
    !matches!(
        state,
        tcp::State::Closed | tcp::State::Listen | tcp::State::SynReceived | tcp::State::SynSent
    )
}
