//! Replies a connection has decided but its socket has not yet taken, for
//! the backends that write through a socket call (kernel sockets, F-Stack's
//! `ff_write`): requests in, replies appended, written as far as the socket
//! allows, and the engine's counters kept exact — a reply counts as sent
//! once its last byte is written, however the writes split it.
//!
//! ```
//! use engine::replies::Replies;
//! use protocol::ServerSession;
//! use shm_layout::Counters;
//!
//! let mut session = ServerSession::default();
//! let mut replies = Replies::default();
//! let mut counters = Counters::default();
//! let mut request = 600u32.to_be_bytes().to_vec();
//! request.resize(600, 7);
//! replies.answer(&mut session, &request, &mut counters).unwrap();
//! // A socket that takes one byte per call.
//! let mut wire = Vec::new();
//! while replies.pending() > 0 {
//!     replies
//!         .flush(|b| { wire.push(b[0]); Ok(1) }, &mut counters)
//!         .unwrap();
//! }
//! assert_eq!(wire, 600u32.to_be_bytes());
//! assert_eq!((counters.messages_received, counters.messages_sent), (1, 1));
//! ```

use std::io;

use protocol::{ProtocolError, ServerSession, REPLY_LEN};
use shm_layout::Counters;

/// The pending replies of one connection.
#[derive(Debug, Default)]
pub struct Replies {
    out: Vec<u8>,
    /// Bytes of `out` already written.
    pos: usize,
    /// Reply bytes written over the connection's life, to count whole
    /// replies.
    written: u64,
}

impl Replies {
    /// Bytes decided but not yet written.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.out.len() - self.pos
    }

    /// Feeds `input` to the session and queues its replies, counting bytes
    /// and requests received.
    ///
    /// # Errors
    /// The session's protocol error: the replies to the well-formed prefix
    /// are queued all the same.
    pub fn answer(
        &mut self,
        session: &mut ServerSession,
        input: &[u8],
        counters: &mut Counters,
    ) -> Result<(), ProtocolError> {
        counters.bytes_received += input.len() as u64;
        let before = self.out.len();
        let result = session.on_bytes(input, &mut self.out);
        counters.messages_received += ((self.out.len() - before) / REPLY_LEN) as u64;
        result.map(|_| ())
    }

    /// Writes pending replies with `write` (one socket write call) until
    /// done or it would block. When a write leaves more than
    /// [`COMPACT_AFTER`] written bytes at the front, the rest moves down,
    /// so a connection that never drains stays bounded.
    ///
    /// # Errors
    /// The socket's error, or `WriteZero` when it took nothing.
    pub fn flush(
        &mut self,
        mut write: impl FnMut(&[u8]) -> io::Result<usize>,
        counters: &mut Counters,
    ) -> io::Result<()> {
        while self.pending() > 0 {
            match write(&self.out[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let n = n.min(self.pending());
                    self.pos += n;
                    counters.bytes_sent += n as u64;
                    let whole_before = self.written / REPLY_LEN as u64;
                    self.written += n as u64;
                    counters.messages_sent += self.written / REPLY_LEN as u64 - whole_before;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.pending() == 0 {
            self.out.clear();
            self.pos = 0;
        } else if self.pos >= COMPACT_AFTER {
            self.out.drain(..self.pos);
            self.pos = 0;
        }
        Ok(())
    }
}

/// Written bytes at the front of a partly written buffer beyond which the
/// rest is moved down (a peer slow to read must not grow it without bound).
pub const COMPACT_AFTER: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn request(len: u32) -> Vec<u8> {
        let mut r = len.to_be_bytes().to_vec();
        r.resize(len as usize, 0xAB);
        r
    }

    #[test]
    fn a_reply_counts_once_its_last_byte_is_written() {
        let mut session = ServerSession::default();
        let mut replies = Replies::default();
        let mut c = Counters::default();
        let input: Vec<u8> = [request(512), request(1024)].concat();
        replies.answer(&mut session, &input, &mut c).unwrap();
        assert_eq!(c.messages_received, 2);
        assert_eq!(c.bytes_received, 1536);
        // A socket that takes `budget` bytes, then would block.
        let mut wire = Vec::new();
        let mut write_up_to = |replies: &mut Replies, c: &mut Counters, mut budget: usize| {
            replies
                .flush(
                    |b| {
                        if budget == 0 {
                            return Err(io::ErrorKind::WouldBlock.into());
                        }
                        let n = b.len().min(budget);
                        budget -= n;
                        wire.extend_from_slice(&b[..n]);
                        Ok(n)
                    },
                    c,
                )
                .unwrap();
        };
        // 3 bytes: nothing whole yet.
        write_up_to(&mut replies, &mut c, 3);
        assert_eq!(
            (c.messages_sent, c.bytes_sent, replies.pending()),
            (0, 3, 5)
        );
        write_up_to(&mut replies, &mut c, 100);
        assert_eq!(
            (c.messages_sent, c.bytes_sent, replies.pending()),
            (2, 8, 0)
        );
        assert_eq!(wire, [512u32.to_be_bytes(), 1024u32.to_be_bytes()].concat());
    }

    #[test]
    fn errors_of_the_socket_and_the_protocol() {
        let mut session = ServerSession::default();
        let mut replies = Replies::default();
        let mut c = Counters::default();
        let mut bad = request(600);
        bad.extend_from_slice(&2000u32.to_be_bytes());
        assert!(replies.answer(&mut session, &bad, &mut c).is_err());
        assert_eq!(replies.pending(), 4, "the good prefix is still answered");
        let err = replies.flush(|_| Ok(0), &mut c).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        let err = replies
            .flush(|_| Err(io::ErrorKind::ConnectionReset.into()), &mut c)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        let mut calls = 0;
        replies
            .flush(
                |b| {
                    calls += 1;
                    if calls == 1 {
                        Err(io::ErrorKind::Interrupted.into())
                    } else {
                        Ok(b.len())
                    }
                },
                &mut c,
            )
            .unwrap();
        assert_eq!((replies.pending(), c.messages_sent), (0, 1));
    }

    #[test]
    fn a_slow_reader_does_not_grow_the_buffer_without_bound() {
        let mut session = ServerSession::default();
        let mut replies = Replies::default();
        let mut c = Counters::default();
        let batch: Vec<u8> = (0..1000).flat_map(|_| request(512)).collect();
        for _ in 0..100 {
            replies.answer(&mut session, &batch, &mut c).unwrap();
            // The socket takes a little under what arrives.
            let mut budget = 3000;
            replies
                .flush(
                    |b| {
                        let n = b.len().min(budget);
                        budget -= n;
                        if n == 0 {
                            Err(io::ErrorKind::WouldBlock.into())
                        } else {
                            Ok(n)
                        }
                    },
                    &mut c,
                )
                .unwrap();
            assert!(replies.out.len() <= replies.pending() + COMPACT_AFTER + 4000);
        }
        assert_eq!(c.messages_sent * 4 + replies.pending() as u64, 100_000 * 4);
    }
}
