//! The request/reply application on one smoltcp socket: read what arrived,
//! answer it with [`ServerSession`], hand the replies to the socket, and
//! close once the peer is done. Nothing here knows about other sockets,
//! the pool or the device.

use protocol::{ServerSession, REPLY_LEN};
use shm_layout::Counters;
use smoltcp::socket::tcp;

/// The protocol state of one connection.
#[derive(Debug, Default)]
pub(super) struct Exchange {
    session: ServerSession,
    /// Replies produced but not yet accepted by the socket's send buffer.
    pending: Vec<u8>,
    /// Reply bytes the socket accepted on this connection (to count whole
    /// replies however the socket splits them).
    reply_bytes: u64,
    /// We decided to close (the peer finished).
    closing: bool,
    /// The peer broke the protocol and was aborted.
    aborted: bool,
}

impl Exchange {
    /// A fresh exchange for a new connection on a reused socket.
    pub(super) fn reset(&mut self) {
        self.session = ServerSession::default();
        self.pending.clear();
        self.reply_bytes = 0;
        self.closing = false;
        self.aborted = false;
    }

    /// Whether the connection was aborted for a protocol error.
    pub(super) fn aborted(&self) -> bool {
        self.aborted
    }

    /// Whether every decided reply is in the socket's send buffer.
    pub(super) fn all_handed_over(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether the connection ended in the middle of a request.
    pub(super) fn mid_request(&self) -> bool {
        self.session.mid_request()
    }

    /// Flushes, reads and answers; whether anything moved.
    pub(super) fn serve(&mut self, socket: &mut tcp::Socket<'_>, c: &mut Counters) -> bool {
        if self.aborted {
            return false;
        }
        let mut worked = self.flush(socket, c);
        // Read only once every earlier reply is in the send buffer: a peer
        // that does not read its replies sees its window close instead of
        // the engine buffering without bound. Two rounds cover a wrapped
        // receive ring.
        for _ in 0..2 {
            if self.closing || !self.pending.is_empty() || !socket.can_recv() {
                break;
            }
            let session = &mut self.session;
            let pending = &mut self.pending;
            let Ok(result) = socket.recv(|data| (data.len(), session.on_bytes(data, pending)))
            else {
                break;
            };
            worked = true;
            match result {
                Ok(stats) => {
                    c.messages_received += stats.requests;
                    c.bytes_received += stats.bytes_in;
                }
                Err(_) => {
                    // A reset, not a FIN: a peer that breaks the protocol
                    // may never close its side, and a closed socket waiting
                    // in FIN-WAIT-2 for it would be lost to the pool. Replies
                    // to a good prefix not yet sent go with it.
                    c.protocol_errors += 1;
                    socket.abort();
                    self.aborted = true;
                    return true;
                }
            }
            self.flush(socket, c);
        }
        // The peer finished sending (or we gave up on it): close once every
        // reply is handed to the socket; smoltcp sends them before the FIN.
        let peer_done = !socket.may_recv() && socket.state() == tcp::State::CloseWait;
        if (self.closing || peer_done) && self.pending.is_empty() && socket.is_open() {
            if socket.state() != tcp::State::FinWait1 && socket.state() != tcp::State::LastAck {
                socket.close();
                worked = true;
            }
            self.closing = true;
        }
        worked
    }

    /// Hands pending replies to the socket as far as its send buffer allows.
    fn flush(&mut self, socket: &mut tcp::Socket<'_>, c: &mut Counters) -> bool {
        if self.pending.is_empty() || !socket.can_send() {
            return false;
        }
        let Ok(n) = socket.send_slice(&self.pending) else {
            return false;
        };
        if n == 0 {
            return false;
        }
        self.pending.drain(..n);
        let before = self.reply_bytes / REPLY_LEN as u64;
        self.reply_bytes += n as u64;
        c.bytes_sent += n as u64;
        c.messages_sent += self.reply_bytes / REPLY_LEN as u64 - before;
        true
    }
}
