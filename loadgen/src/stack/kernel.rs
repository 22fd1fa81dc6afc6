//! The kernel's TCP: non-blocking sockets, readiness from epoll (through
//! mio) in blocking mode, none in busy-poll mode (the driver tries every
//! connection with work, and `poll` returns at once).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{Connecting, Handle, Stack, StackError, Transfer};

struct Socket {
    stream: TcpStream,
    connected: bool,
    wants_write: bool,
}

/// The kernel stack: one socket per handle, handles reused once closed.
pub struct KernelStack {
    server: SocketAddr,
    poll: Option<Poll>,
    events: Events,
    sockets: Vec<Option<Socket>>,
    free: Vec<usize>,
}

impl KernelStack {
    /// A stack connecting to `server`; `busy_poll` spins instead of
    /// sleeping in epoll.
    ///
    /// # Errors
    /// [`StackError::Io`] when the epoll instance cannot be made.
    pub fn new(server: SocketAddr, busy_poll: bool) -> Result<Self, StackError> {
        let poll = if busy_poll {
            None
        } else {
            Some(Poll::new().map_err(|source| StackError::Io {
                step: "create epoll instance".into(),
                source,
            })?)
        };
        Ok(Self {
            server,
            poll,
            events: Events::with_capacity(1024),
            sockets: Vec::new(),
            free: Vec::new(),
        })
    }

    fn socket(&mut self, conn: Handle) -> Option<&mut Socket> {
        self.sockets.get_mut(conn.0).and_then(Option::as_mut)
    }

    fn forget(&mut self, conn: Handle, how: Shutdown) {
        if let Some(mut socket) = self.sockets.get_mut(conn.0).and_then(Option::take) {
            if let Some(poll) = &self.poll {
                let _ = poll.registry().deregister(&mut socket.stream);
            }
            let _ = socket.stream.shutdown(how);
            self.free.push(conn.0);
        }
    }

    fn interest(wants_write: bool) -> Interest {
        if wants_write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }
}

fn transfer(result: io::Result<usize>) -> Transfer {
    match result {
        Ok(0) => Transfer::Closed,
        Ok(n) => Transfer::Moved(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Transfer::WouldBlock
        }
        Err(_) => Transfer::Reset,
    }
}

impl Stack for KernelStack {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn reports_readiness(&self) -> bool {
        self.poll.is_some()
    }

    fn open(&mut self) -> Result<Handle, StackError> {
        let io_err = |step: &str| {
            let step = step.to_owned();
            move |source| StackError::Io { step, source }
        };
        let mut stream = TcpStream::connect(self.server).map_err(io_err("connect"))?;
        stream
            .set_nodelay(true)
            .map_err(io_err("set TCP_NODELAY"))?;
        let index = self.free.pop().unwrap_or(self.sockets.len());
        if let Some(poll) = &self.poll {
            // Writable readiness reports the end of the handshake.
            if let Err(source) =
                poll.registry()
                    .register(&mut stream, Token(index), Self::interest(true))
            {
                self.free.push(index);
                return Err(StackError::Io {
                    step: "register the socket with epoll".into(),
                    source,
                });
            }
        }
        let socket = Socket {
            stream,
            connected: false,
            wants_write: true,
        };
        if index == self.sockets.len() {
            self.sockets.push(Some(socket));
        } else {
            self.sockets[index] = Some(socket);
        }
        Ok(Handle(index))
    }

    fn connecting(&mut self, conn: Handle) -> Connecting {
        let Some(socket) = self.socket(conn) else {
            return Connecting::Failed;
        };
        if socket.connected {
            return Connecting::Established;
        }
        // A non-blocking connect has ended when the socket reports an
        // error or has a peer.
        match socket.stream.take_error() {
            Ok(Some(e)) | Err(e) => {
                return if e.kind() == io::ErrorKind::ConnectionRefused {
                    Connecting::Refused
                } else {
                    Connecting::Failed
                };
            }
            Ok(None) => {}
        }
        match socket.stream.peer_addr() {
            Ok(_) => {
                socket.connected = true;
                Connecting::Established
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Connecting::Pending,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Connecting::Refused,
            Err(_) => Connecting::Failed,
        }
    }

    fn send(&mut self, conn: Handle, bytes: &[u8]) -> Transfer {
        match self.socket(conn) {
            Some(socket) => match transfer(socket.stream.write(bytes)) {
                // A zero-byte write of a non-empty buffer: the socket is
                // shut for writing.
                Transfer::Closed => Transfer::Reset,
                other => other,
            },
            None => Transfer::Reset,
        }
    }

    fn recv(&mut self, conn: Handle, buf: &mut [u8]) -> Transfer {
        match self.socket(conn) {
            Some(socket) => transfer(socket.stream.read(buf)),
            None => Transfer::Reset,
        }
    }

    fn want_writable(&mut self, conn: Handle, want: bool) {
        let Some(poll) = &self.poll else {
            return;
        };
        let Some(socket) = self.sockets.get_mut(conn.0).and_then(Option::as_mut) else {
            return;
        };
        // Until the handshake ends, writable readiness is what reports it.
        let want = want || !socket.connected;
        if want != socket.wants_write
            && poll
                .registry()
                .reregister(&mut socket.stream, Token(conn.0), Self::interest(want))
                .is_ok()
        {
            socket.wants_write = want;
        }
    }

    fn close(&mut self, conn: Handle) {
        self.forget(conn, Shutdown::Write);
    }

    fn abort(&mut self, conn: Handle) {
        self.forget(conn, Shutdown::Both);
    }

    fn poll(&mut self, wait: Duration, ready: &mut Vec<Handle>) -> bool {
        let Some(poll) = self.poll.as_mut() else {
            return false;
        };
        match poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {
                ready.extend(self.events.iter().map(|e| Handle(e.token().0)));
                !self.events.is_empty()
            }
            // A signal: the driver looks at its stop flag next.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
            // epoll itself failing leaves nothing to wait with: report every
            // socket, so the driver tries them all this turn.
            Err(_) => {
                ready.extend(
                    self.sockets
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.is_some())
                        .map(|(i, _)| Handle(i)),
                );
                true
            }
        }
    }
}
