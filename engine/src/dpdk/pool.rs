//! The socket pool: smoltcp has no accept(), so a connection is a
//! listening socket that a SYN turned into a connected one. The pool keeps
//! enough sockets listening on the port, tracks which ones carry a
//! connection (and count it once), and gives a finished socket back to
//! listening.

use shm_layout::Counters;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

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
}

/// One socket of the pool and the connection it carries.
struct Slot {
    handle: SocketHandle,
    exchange: Exchange,
    /// Counted in `connections_opened`, not yet in `connections_closed`.
    open: bool,
}

/// The sockets and their connections.
pub(super) struct SocketPool {
    config: PoolConfig,
    sockets: SocketSet<'static>,
    slots: Vec<Slot>,
}

impl SocketPool {
    /// A pool with `listen_backlog` sockets listening.
    pub(super) fn new(config: PoolConfig) -> Self {
        let mut pool = Self {
            config,
            sockets: SocketSet::new(Vec::new()),
            slots: Vec::new(),
        };
        pool.top_up();
        pool
    }

    /// The socket set, for the interface to poll.
    pub(super) fn sockets_mut(&mut self) -> &mut SocketSet<'static> {
        &mut self.sockets
    }

    /// The socket set, for the interface's timers.
    pub(super) fn sockets(&self) -> &SocketSet<'static> {
        &self.sockets
    }

    /// Moves bytes between sockets and sessions and recycles finished
    /// sockets; whether anything moved.
    pub(super) fn serve(&mut self, c: &mut Counters) -> bool {
        let mut worked = false;
        for slot in &mut self.slots {
            let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
            let state = socket.state();
            if !slot.open && is_connected(state) {
                slot.open = true;
                c.connections_opened += 1;
                worked = true;
            }
            if slot.open {
                worked |= slot.exchange.serve(socket, c);
            }
            match socket.state() {
                tcp::State::Closed | tcp::State::TimeWait => {
                    if socket.state() == tcp::State::TimeWait {
                        // The peer has acknowledged our FIN; holding the
                        // socket for 2 MSL would only starve the pool.
                        socket.abort();
                    }
                    if slot.open {
                        c.connections_closed += 1;
                        if slot.exchange.mid_request() {
                            c.half_messages += 1;
                        }
                    }
                    slot.exchange.reset();
                    slot.open = false;
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
    pub(super) fn top_up(&mut self) {
        let listening = self
            .slots
            .iter()
            .filter(|s| self.sockets.get::<tcp::Socket>(s.handle).state() == tcp::State::Listen)
            .count();
        for _ in listening..self.config.listen_backlog {
            if self.slots.len() >= self.config.max_sockets {
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
            self.slots.push(Slot {
                handle,
                exchange: Exchange::default(),
                open: false,
            });
        }
    }

    /// Whether every connection has handed its replies to its socket and
    /// every socket has sent them.
    pub(super) fn all_sent(&self) -> bool {
        self.slots.iter().all(|s| {
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
}

/// Whether a socket in `state` carries an accepted connection.
fn is_connected(state: tcp::State) -> bool {
    !matches!(
        state,
        tcp::State::Closed | tcp::State::Listen | tcp::State::SynReceived | tcp::State::SynSent
    )
}
