//! One accepted connection: its socket, its protocol session and its
//! pending replies.

use std::io::{self, Read, Write};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use protocol::ServerSession;
use shm_layout::Counters;

use crate::replies::Replies;

/// Pending reply bytes beyond which the connection's input is left unread
/// until the peer has taken its replies.
const HIGH_WATER: usize = 256 * 1024;
/// Reads per turn before other connections are served.
const READS_PER_TURN: usize = 32;

/// What the loop must do with a connection after serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Keep it; `again` means it may hold more work that epoll will not
    /// report again (its turn ended before the socket was drained).
    Keep { again: bool },
    /// Close it (the peer left, reset, or broke the protocol).
    Close,
}

pub(super) struct Conn {
    stream: TcpStream,
    session: ServerSession,
    replies: Replies,
    wants_write: bool,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            session: ServerSession::default(),
            replies: Replies::default(),
            wants_write: false,
        }
    }

    fn pending(&self) -> usize {
        self.replies.pending()
    }

    /// Flushes what it can, reads what is there, answers it, flushes again.
    ///
    /// `spinning`: the caller drives this connection again on its next
    /// spin whatever epoll says (busy-poll with few connections).
    pub(super) fn drive(
        &mut self,
        buf: &mut [u8],
        counters: &mut Counters,
        spinning: bool,
    ) -> Outcome {
        if self.flush(counters).is_err() {
            return self.closed_by_peer(counters, true);
        }
        let mut again = false;
        let mut paused = false;
        let mut reads = 0;
        loop {
            if self.pending() >= HIGH_WATER {
                paused = true;
                break;
            }
            if reads == READS_PER_TURN {
                again = true;
                break;
            }
            reads += 1;
            match self.stream.read(buf) {
                Ok(0) => {
                    // Orderly close: answer what was complete, then go.
                    let _ = self.flush(counters);
                    return self.closed_by_peer(counters, false);
                }
                Ok(n) => {
                    let result = self.replies.answer(&mut self.session, &buf[..n], counters);
                    if result.is_err() {
                        // The replies to the well-formed prefix still go out
                        // if the socket takes them now; then the door closes.
                        counters.protocol_errors += 1;
                        let _ = self.flush(counters);
                        return Outcome::Close;
                    }
                    // A short read drained the data: reading again would
                    // mostly return WouldBlock, one more syscall between the
                    // request and its reply. Only when the caller reads this
                    // socket again on its next spin anyway: under
                    // edge-triggered epoll an end-of-stream queued behind
                    // the data would raise no new edge.
                    if n < buf.len() && spinning {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.closed_by_peer(counters, true),
            }
        }
        if self.flush(counters).is_err() {
            return self.closed_by_peer(counters, true);
        }
        // A paused connection resumes on the writable event that drains its
        // replies; if they drained already, no such event will come.
        if paused && self.pending() < HIGH_WATER {
            again = true;
        }
        Outcome::Keep { again }
    }

    /// Counts how the peer left and asks for the connection to be closed.
    fn closed_by_peer(&self, counters: &mut Counters, reset: bool) -> Outcome {
        if self.session.mid_request() {
            counters.half_messages += 1;
        }
        if reset {
            counters.resets += 1;
        }
        Outcome::Close
    }

    /// Writes pending replies until done or the socket is full.
    fn flush(&mut self, counters: &mut Counters) -> io::Result<()> {
        let stream = &mut self.stream;
        self.replies.flush(|b| stream.write(b), counters)
    }

    /// Asks epoll for writable readiness exactly while replies are pending.
    pub(super) fn update_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let wants_write = self.pending() > 0;
        if wants_write != self.wants_write {
            let interest = if wants_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry.reregister(&mut self.stream, token, interest)?;
            self.wants_write = wants_write;
        }
        Ok(())
    }

    pub(super) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        registry.deregister(&mut self.stream)
    }
}
