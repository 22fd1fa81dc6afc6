//! The connections, served from inside F-Stack's loop: each call to
//! [`Server::turn`] polls F-Stack's epoll once (never waits), accepts,
//! reads, answers and writes, then lets `ff_run` go back to the port.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use protocol::ServerSession;
use shm_layout::{Counter, Counters, Measured};

use super::api::{Epoll, Flow, InLoop, Socket};
use crate::context::ServeContext;
use crate::replies::Replies;

/// The listener's epoll token; connections use their descriptor.
const LISTENER: u64 = u64::MAX;
/// Events taken per turn.
const EVENTS: usize = 64;
/// Reads per connection per turn before others are served.
const READS_PER_TURN: usize = 32;
/// After the last connection is closed, turns keep running this long so
/// the FINs leave the port.
const LINGER: Duration = Duration::from_millis(50);

struct Conn {
    socket: Socket,
    session: ServerSession,
    replies: Replies,
    wants_write: bool,
}

/// What serving holds between turns.
pub(super) struct Server {
    listener: Option<Socket>,
    epoll: Epoll,
    conns: HashMap<u64, Conn>,
    events: Vec<libc::epoll_event>,
    buf: Vec<u8>,
    max_connections: usize,
    drain: Duration,
    drain_until: Option<Instant>,
    linger_until: Option<Instant>,
    stats_interval: Duration,
    next_stats: Instant,
    /// Times the turns: F-Stack's own work on the frames of a turn happens
    /// in `ff_run` just before it, so a turn that found events counts the
    /// time since the previous one as busy.
    passes: shm_layout::PassClock,
}

impl Server {
    pub(super) fn new(
        listener: Socket,
        epoll: Epoll,
        max_connections: usize,
        drain: Duration,
        stats_interval: Duration,
    ) -> io::Result<Self> {
        epoll.add(&listener, libc::EPOLLIN as u32, LISTENER)?;
        Ok(Self {
            listener: Some(listener),
            epoll,
            conns: HashMap::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
            buf: vec![0; 64 * 1024],
            max_connections,
            drain,
            drain_until: None,
            linger_until: None,
            stats_interval,
            next_stats: Instant::now(),
            passes: shm_layout::PassClock::start(),
        })
    }

    /// One pass over what is ready.
    pub(super) fn turn(&mut self, stack: InLoop<'_>, ctx: &mut ServeContext) -> Flow {
        let now = Instant::now();
        if now >= self.next_stats {
            // Port counters on the publication timer, not per packet.
            self.next_stats = now + self.stats_interval;
            merge_port_stats(stack, &mut ctx.counters, &mut ctx.measured);
        }
        if ctx.should_stop() && self.drain_until.is_none() {
            // No new connections; the open ones get `drain` to finish.
            if let Some(listener) = self.listener.take() {
                let _ = self.epoll.delete(&listener);
            }
            self.drain_until = Some(now + self.drain);
        }
        let mut events = std::mem::take(&mut self.events);
        let ready = self.epoll.poll(&mut events).map_or(0, <[_]>::len);
        for event in &events[..ready] {
            let token = event.u64;
            if token == LISTENER {
                self.accept_all(&mut ctx.counters);
            } else {
                self.drive(token, &mut ctx.counters);
            }
        }
        self.events = events;
        self.passes.end_pass(ready > 0, &mut ctx.counters);
        ctx.counters.connections_active = self.conns.len() as u64;
        ctx.maybe_publish();

        if let Some(deadline) = self.drain_until {
            if self.conns.is_empty() || now >= deadline {
                let tokens: Vec<u64> = self.conns.keys().copied().collect();
                for token in tokens {
                    self.close(token, &mut ctx.counters);
                }
                let linger = *self.linger_until.get_or_insert(now + LINGER);
                if now >= linger {
                    merge_port_stats(stack, &mut ctx.counters, &mut ctx.measured);
                    ctx.counters.connections_active = 0;
                    ctx.publish_now();
                    return Flow::Stop;
                }
            }
        }
        Flow::Continue
    }

    fn accept_all(&mut self, counters: &mut Counters) {
        let Some(listener) = &self.listener else {
            return;
        };
        while let Ok(Some(socket)) = listener.accept() {
            counters.connections_opened += 1;
            if self.conns.len() >= self.max_connections {
                counters.connections_closed += 1;
                continue; // dropped: closed at once
            }
            let _ = socket.set_nodelay();
            let token = u64::try_from(socket.fd()).unwrap_or(0);
            if self
                .epoll
                .add(&socket, libc::EPOLLIN as u32, token)
                .is_err()
            {
                counters.connections_closed += 1;
                continue;
            }
            self.conns.insert(
                token,
                Conn {
                    socket,
                    session: ServerSession::default(),
                    replies: Replies::default(),
                    wants_write: false,
                },
            );
        }
    }

    fn drive(&mut self, token: u64, counters: &mut Counters) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let keep = conn.serve(&mut self.buf, counters);
        if keep {
            let wants_write = conn.replies.pending() > 0;
            if wants_write != conn.wants_write {
                let events = if wants_write {
                    (libc::EPOLLIN | libc::EPOLLOUT) as u32
                } else {
                    libc::EPOLLIN as u32
                };
                if self.epoll.modify(&conn.socket, events, token).is_ok() {
                    conn.wants_write = wants_write;
                }
            }
        } else {
            self.close(token, counters);
        }
    }

    fn close(&mut self, token: u64, counters: &mut Counters) {
        if let Some(conn) = self.conns.remove(&token) {
            let _ = self.epoll.delete(&conn.socket);
            counters.connections_closed += 1;
        }
    }
}

/// Counters that come from the port's `rte_eth_stats`.
const PORT_COUNTERS: [Counter; 6] = [
    Counter::RxPackets,
    Counter::TxPackets,
    Counter::RxErrors,
    Counter::RxMissed,
    Counter::RxNombuf,
    Counter::TxErrors,
];

/// The port's counters into the engine's, each loss under its own name
/// (never the link emulator's `rx_dropped`). F-Stack serves DPDK port 0
/// (`port_list=0`). A failed read is counted and keeps the last good
/// values; until one read works the port counters are not measured.
fn merge_port_stats(stack: InLoop<'_>, counters: &mut Counters, measured: &mut Measured) {
    let Some(port) = stack.port_stats(0) else {
        counters.port_stats_failures += 1;
        return;
    };
    counters.rx_packets = port.rx_packets;
    counters.tx_packets = port.tx_packets;
    counters.rx_errors = port.rx_errors;
    counters.rx_missed = port.rx_missed;
    counters.rx_nombuf = port.rx_nombuf;
    counters.tx_errors = port.tx_errors;
    for counter in PORT_COUNTERS {
        *measured = measured.with(counter);
    }
}

impl Conn {
    /// Reads what is there, answers it, writes; false when it must close.
    fn serve(&mut self, buf: &mut [u8], counters: &mut Counters) -> bool {
        if self.flush(counters).is_err() {
            counters.resets += 1;
            return false;
        }
        for _ in 0..READS_PER_TURN {
            match self.socket.read(buf) {
                Ok(0) => {
                    let _ = self.flush(counters);
                    if self.session.mid_request() {
                        counters.half_messages += 1;
                    }
                    return false;
                }
                Ok(n) => {
                    let result = self.replies.answer(&mut self.session, &buf[..n], counters);
                    if result.is_err() {
                        counters.protocol_errors += 1;
                        let _ = self.flush(counters);
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    counters.resets += 1;
                    return false;
                }
            }
        }
        if self.flush(counters).is_err() {
            counters.resets += 1;
            return false;
        }
        true
    }

    fn flush(&mut self, counters: &mut Counters) -> io::Result<()> {
        let socket = &self.socket;
        self.replies.flush(|b| socket.write(b), counters)
    }
}
