//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How the peer ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// An orderly close: end of stream.
    Eof,
    /// An abort: the read failed with a reset (or an abort).
    Reset,
}

/// Reads `stream` until the peer closes it (EOF or reset) or `limit`
/// passes; `None` when it stayed open. Data on the way (replies to a good
/// prefix) is skipped. Each read waits at most 50 ms, far below `limit`,
/// so a read timeout can never pass for a close.
pub fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Closed> {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(Closed::Eof),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return Some(Closed::Reset)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("reading a connection the peer should close: {e}"),
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}
