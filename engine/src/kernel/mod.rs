//! Case 1: the protocol over ordinary Linux TCP sockets.
//!
//! One thread, one epoll instance (through mio), every socket non-blocking.
//! Two ways to wait:
//!
//! - blocking (default): `epoll_wait` sleeps until a socket is ready. Cheap
//!   on the CPU, but every wake-up of a sleeping thread from another core
//!   costs tens of microseconds on the machines this runs on.
//! - busy-poll: `epoll_wait` with a zero timeout in a spin, so the serving
//!   core never sleeps; accepted sockets also get `SO_BUSY_POLL`, which lets
//!   drivers with NAPI busy polling spin in the kernel as well. With at most
//!   a few connections the spin reads each socket directly and asks epoll
//!   only every few spins, so a request is answered with one `read` and one
//!   `write`, as a non-blocking ping-pong server (sockperf's) does.
//!
//! Replies never block the loop: each connection keeps its own output
//! buffer and asks for writable readiness only while that buffer is
//! non-empty. A client that stops reading its replies is paused (its input
//! is left in the kernel) once its buffer passes a high-water mark, so its
//! memory stays bounded.

mod conn;
pub mod listener;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use shm_layout::{Counter, Measured};

use crate::backend::{Backend, SERVING};
use crate::context::ServeContext;
use crate::EngineError;
use conn::{Conn, Outcome};

/// How the kernel backend listens and serves.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// Address to bind; port 0 picks a free port (see
    /// [`KernelBackend::local_addr`]).
    pub listen: SocketAddr,
    /// Spin instead of sleeping in `epoll_wait`.
    pub busy_poll: bool,
    /// `SO_BUSY_POLL` value in microseconds set on accepted sockets in
    /// busy-poll mode (0: leave the socket option alone).
    pub so_busy_poll_us: u32,
    /// Connections served at once; further ones are accepted and closed at
    /// once, and counted in [`KernelBackend::refused`].
    pub max_connections: usize,
    /// After the stop signal: how long existing connections may still be
    /// served before they are closed.
    pub drain: Duration,
    /// Connections the kernel queues before `accept` (`listen(2)`).
    pub listen_backlog: u32,
}

impl KernelConfig {
    /// Defaults for everything but the address and the wait mode.
    #[must_use]
    pub fn new(listen: SocketAddr, busy_poll: bool) -> Self {
        Self {
            listen,
            busy_poll,
            so_busy_poll_us: 50,
            max_connections: 4096,
            drain: Duration::from_secs(2),
            listen_backlog: 1024,
        }
    }
}

const LISTENER: Token = Token(usize::MAX);
/// Longest sleep in blocking mode, so the stop flag and the publication
/// timer are looked at even when no socket is ready.
const MAX_SLEEP: Duration = Duration::from_millis(20);
/// In busy-poll mode with at most this many connections, the loop reads
/// every connection directly on each spin instead of asking epoll first:
/// a request is then answered one `epoll_wait` sooner.
const DIRECT_SPIN_MAX: usize = 4;
/// With direct spinning, epoll is still asked every this many spins (for
/// new connections and writable sockets).
const EPOLL_EVERY: u64 = 16;
/// Accepts per readiness event before other sockets get their turn.
const ACCEPTS_PER_TURN: usize = 64;
/// Size of the one receive buffer all connections share.
const READ_BUF: usize = 64 * 1024;

/// The kernel-socket backend.
pub struct KernelBackend {
    config: KernelConfig,
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Sockets that may still hold work although epoll (edge-triggered)
    /// will not report them again: served again on the next turn.
    again: Vec<Token>,
    buf: Box<[u8]>,
    refused: u64,
    busy_poll_failures: u64,
    events: Events,
    /// The tokens served in the current turn (kept to reuse).
    turn: Vec<Token>,
    /// Turns so far.
    spins: u64,
    /// Times the spinning loop's passes (busy poll only).
    passes: shm_layout::PassClock,
    /// Whether the last turn read every connection directly.
    was_direct: bool,
}

impl KernelBackend {
    /// Binds the listening socket; serving starts with [`Backend::serve`].
    ///
    /// # Errors
    /// [`EngineError::Io`] when the address cannot be bound or epoll cannot
    /// be set up.
    pub fn bind(config: KernelConfig) -> Result<Self, EngineError> {
        let io_err = |step: String| move |source| EngineError::Io { step, source };
        let poll = Poll::new().map_err(io_err("create epoll instance".into()))?;
        let mut listener = listener::bind_listener(config.listen, config.listen_backlog).map_err(
            io_err(format!(
                "bind {} (listen backlog {})",
                config.listen, config.listen_backlog
            )),
        )?;
        let local_addr = listener
            .local_addr()
            .map_err(io_err("read the bound address".into()))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_err("register the listener".into()))?;
        Ok(Self {
            config,
            poll,
            listener: Some(listener),
            local_addr,
            conns: Vec::new(),
            free: Vec::new(),
            again: Vec::new(),
            buf: vec![0; READ_BUF].into_boxed_slice(),
            refused: 0,
            busy_poll_failures: 0,
            events: Events::with_capacity(1024),
            turn: Vec::new(),
            spins: 0,
            passes: shm_layout::PassClock::start(),
            was_direct: false,
        })
    }

    /// The address actually bound (the port is known even when 0 was asked).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections refused because the cap was reached.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Accepted sockets on which `SO_BUSY_POLL` could not be set.
    #[must_use]
    pub fn busy_poll_failures(&self) -> u64 {
        self.busy_poll_failures
    }

    fn active(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    fn accept_some(&mut self, ctx: &mut ServeContext) -> Result<(), EngineError> {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = self.listener.as_ref() else {
                return Ok(());
            };
            let stream = match listener.accept() {
                Ok((stream, _peer)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The peer gave up before we accepted it, or we are out of
                // descriptors for now: not fatal, try again next turn.
                Err(e) if is_transient_accept_error(&e) => {
                    self.again.push(LISTENER);
                    return Ok(());
                }
                Err(source) => {
                    return Err(EngineError::Io {
                        step: "accept a connection".into(),
                        source,
                    })
                }
            };
            if self.active() >= self.config.max_connections {
                self.refused += 1;
                drop(stream);
                continue;
            }
            self.add_conn(stream, ctx);
        }
        // More may be waiting; epoll will not say so again.
        self.again.push(LISTENER);
        Ok(())
    }

    /// Sets up and registers an accepted connection. One that cannot be
    /// set up is closed at once and counted in `setup_failures`: it is
    /// that connection's problem, not the engine's, and the others go on.
    fn add_conn(&mut self, mut stream: mio::net::TcpStream, ctx: &mut ServeContext) {
        // Replies are 4 bytes: without TCP_NODELAY Nagle holds them back
        // until the previous one is acknowledged, and the connection's
        // latencies would be Nagle's, not the engine's.
        if stream.set_nodelay(true).is_err() {
            ctx.counters.setup_failures += 1;
            return;
        }
        if self.config.busy_poll
            && self.config.so_busy_poll_us > 0
            && set_so_busy_poll(&stream, self.config.so_busy_poll_us).is_err()
        {
            self.busy_poll_failures += 1;
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        if self
            .poll
            .registry()
            .register(&mut stream, Token(index), Interest::READABLE)
            .is_err()
        {
            self.free.push(index);
            ctx.counters.setup_failures += 1;
            return;
        }
        self.conns[index] = Some(Conn::new(stream));
        ctx.counters.connections_opened += 1;
        ctx.counters.connections_active += 1;
    }

    fn serve_conn(&mut self, index: usize, ctx: &mut ServeContext, spinning: bool) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        match conn.drive(&mut self.buf, &mut ctx.counters, spinning) {
            Outcome::Keep { again } => {
                if again {
                    self.again.push(Token(index));
                }
                if conn
                    .update_interest(self.poll.registry(), Token(index))
                    .is_err()
                {
                    self.close(index, ctx);
                }
            }
            Outcome::Close => self.close(index, ctx),
        }
    }

    fn close(&mut self, index: usize, ctx: &mut ServeContext) {
        if let Some(mut conn) = self.conns.get_mut(index).and_then(Option::take) {
            // Dropping the socket removes it from epoll as well; deregister
            // first anyway so a stale event cannot name a reused index.
            let _ = conn.deregister(self.poll.registry());
            self.free.push(index);
            ctx.counters.connections_closed += 1;
            ctx.counters.connections_active = ctx.counters.connections_active.saturating_sub(1);
        }
    }

    fn close_all(&mut self, ctx: &mut ServeContext) {
        for index in 0..self.conns.len() {
            self.close(index, ctx);
        }
    }
}

impl Backend for KernelBackend {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn busy_polls(&self) -> bool {
        self.config.busy_poll
    }

    /// No port and no frames: the kernel's are not the engine's to count.
    /// Loops are counted only when it spins (blocking, a loop is a wake-up).
    fn measured(&self) -> Measured {
        let measured = SERVING.with(Counter::Resets).with(Counter::SetupFailures);
        if self.config.busy_poll {
            measured
                .with(Counter::BusyLoops)
                .with(Counter::IdleLoops)
                .with(Counter::BusyNs)
        } else {
            measured
        }
    }

    fn serve(&mut self, ctx: &mut ServeContext) -> Result<(), EngineError> {
        let mut draining_since: Option<Instant> = None;
        // The listener was bound in `bind`: connections are accepted from now.
        ctx.mark_ready();
        loop {
            if draining_since.is_none() && ctx.should_stop() {
                // Stop accepting: closing the listener makes new connection
                // attempts fail fast instead of waiting in the backlog.
                if let Some(mut listener) = self.listener.take() {
                    let _ = self.poll.registry().deregister(&mut listener);
                }
                draining_since = Some(Instant::now());
            }
            if let Some(since) = draining_since {
                if self.active() == 0 || since.elapsed() >= self.config.drain {
                    break;
                }
            }
            if let Err(e) = self.spin(ctx) {
                self.close_all(ctx);
                ctx.publish_now();
                return Err(e);
            }
            ctx.maybe_publish();
        }
        self.close_all(ctx);
        ctx.publish_now();
        Ok(())
    }
}

impl KernelBackend {
    /// One turn of the loop: wait (or not) for readiness, then serve what
    /// is ready.
    fn spin(&mut self, ctx: &mut ServeContext) -> Result<(), EngineError> {
        self.spins = self.spins.wrapping_add(1);
        let timeout = if self.config.busy_poll || !self.again.is_empty() {
            Duration::ZERO
        } else {
            MAX_SLEEP
        };
        let direct = self.config.busy_poll && self.active() <= DIRECT_SPIN_MAX;
        if self.was_direct && !direct {
            // Handing over to epoll: a direct read stops at a short read, so
            // an end-of-stream (or more data) that arrived with the last
            // data may still wait in any socket, and its edge is used up:
            // epoll will not report it. Every connection gets one more turn.
            for (index, conn) in self.conns.iter().enumerate() {
                if conn.is_some() && !self.again.contains(&Token(index)) {
                    self.again.push(Token(index));
                }
            }
        }
        self.was_direct = direct;
        let ask_epoll = !direct || self.spins.is_multiple_of(EPOLL_EVERY);
        if ask_epoll {
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(EngineError::Io {
                        step: "wait for socket readiness".into(),
                        source,
                    });
                }
            }
        }

        let mut turn = std::mem::take(&mut self.turn);
        turn.clear();
        turn.append(&mut self.again);
        if ask_epoll {
            turn.extend(self.events.iter().map(mio::event::Event::token));
        }
        let work_before = ctx.counters.bytes_received + ctx.counters.connections_opened;
        let reported = !turn.is_empty();
        if direct {
            for (index, conn) in self.conns.iter().enumerate() {
                if conn.is_some() && !turn.contains(&Token(index)) {
                    turn.push(Token(index));
                }
            }
        }
        let mut result = Ok(());
        for &token in &turn {
            if token == LISTENER {
                if let Err(e) = self.accept_some(ctx) {
                    result = Err(e);
                    break;
                }
            } else {
                self.serve_conn(token.0, ctx, direct);
            }
        }
        self.turn = turn;
        if self.config.busy_poll {
            let found = reported
                || ctx.counters.bytes_received + ctx.counters.connections_opened != work_before;
            self.passes.end_pass(found, &mut ctx.counters);
        }
        result
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) || e.kind() == io::ErrorKind::ConnectionAborted
}

/// Sets `SO_BUSY_POLL` (microseconds the kernel may spin on the device queue
/// in a blocking receive or poll on this socket).
fn set_so_busy_poll(stream: &mio::net::TcpStream, micros: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(micros).unwrap_or(libc::c_int::MAX);
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the descriptor is a live socket owned by `stream`; the option
    // value points at a c_int on our stack that outlives the call, and `len`
    // is its exact size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BUSY_POLL,
            std::ptr::from_ref(&value).cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use shm_layout::Counters;

    use super::*;
    use crate::context::StatsSink;

    struct NullSink;

    impl StatsSink for NullSink {
        fn publish(&mut self, _: &Counters, _: Measured) {}
    }

    fn context() -> ServeContext {
        ServeContext::new(
            Arc::new(AtomicBool::new(false)),
            Box::new(NullSink),
            Duration::from_secs(3600),
        )
    }

    fn backend(busy_poll: bool) -> KernelBackend {
        KernelBackend::bind(KernelConfig::new("127.0.0.1:0".parse().unwrap(), busy_poll))
            .expect("bind")
    }

    /// Spins until `done`, at most 20 000 turns and 10 s.
    fn spin_until(
        b: &mut KernelBackend,
        ctx: &mut ServeContext,
        mut done: impl FnMut(&KernelBackend, &ServeContext) -> bool,
    ) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        for _ in 0..20_000 {
            if done(b, ctx) || Instant::now() > deadline {
                break;
            }
            b.spin(ctx).expect("spin");
        }
        done(b, ctx)
    }

    fn request(len: u32) -> Vec<u8> {
        let mut wire = Vec::new();
        protocol::encode_request(len, 0, &mut wire).expect("legal length");
        wire
    }

    /// A connection whose setup fails (here TCP_NODELAY, on a socket that
    /// is not TCP) is closed and counted; the engine goes on serving.
    #[test]
    fn a_connection_that_cannot_be_set_up_is_dropped_and_counted() {
        let mut b = backend(false);
        let mut ctx = context();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let not_tcp = std::net::TcpStream::from(std::os::fd::OwnedFd::from(udp));
        b.add_conn(mio::net::TcpStream::from_std(not_tcp), &mut ctx);
        assert_eq!(ctx.counters.setup_failures, 1);
        assert_eq!((b.active(), ctx.counters.connections_opened), (0, 0));

        let mut client = TcpStream::connect(b.local_addr()).expect("connect");
        client.write_all(&request(600)).expect("write");
        assert!(spin_until(&mut b, &mut ctx, |_, c| c
            .counters
            .messages_sent
            == 1));
        let mut reply = [0u8; 4];
        client.read_exact(&mut reply).expect("reply");
        assert_eq!(u32::from_be_bytes(reply), 600);
    }

    /// Busy-poll with few connections reads each socket directly and stops
    /// at a short read. A request and its FIN arrive together, and in the
    /// same turn a fifth connection makes the loop hand over to epoll: the
    /// FIN, whose edge that turn used up, must still be seen.
    #[test]
    fn the_handover_to_epoll_sees_an_end_of_stream_left_behind_a_short_read() {
        let mut b = backend(true);
        let mut ctx = context();
        let mut clients: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(b.local_addr()).expect("connect"))
            .collect();
        assert!(spin_until(&mut b, &mut ctx, |b, _| b.active() == 4));

        let half = &mut clients[2];
        half.write_all(&request(700)).expect("write");
        half.shutdown(Shutdown::Write).expect("FIN");
        let _fifth = TcpStream::connect(b.local_addr()).expect("connect");
        std::thread::sleep(Duration::from_millis(50));
        // The next turn asks epoll: it accepts the fifth connection and
        // reads the request, its FIN still unread behind the short read.
        b.spins = EPOLL_EVERY - 1;
        b.spin(&mut ctx).expect("spin");
        assert_eq!(b.active(), 5);
        assert_eq!(ctx.counters.messages_received, 1);
        assert!(
            spin_until(&mut b, &mut ctx, |_, c| c.counters.connections_closed == 1),
            "the half-closed connection was never seen again"
        );
        let mut reply = Vec::new();
        clients[2].read_to_end(&mut reply).expect("reply, then EOF");
        assert_eq!(reply, 700u32.to_be_bytes());
    }
}
