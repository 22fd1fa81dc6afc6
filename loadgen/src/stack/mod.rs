//! The transport under the driver: the kernel's TCP through sockets, or a
//! userspace stack. The driver's request/reply logic (pacing, FIFO of
//! requests in flight, reply checks, timeouts, short connections) is one
//! implementation over this trait, as the engine's request handling is one
//! over its backends.
//!
//! Every call is non-blocking except [`Stack::poll`], which may wait up to
//! the time it is given when the stack can sleep on readiness (the kernel
//! stack in blocking mode); a stack that spins returns at once.

pub mod dpdk;
#[cfg(test)]
mod dpdk_tests;
pub mod kernel;

use std::time::Duration;

use shm_layout::{Counters, Measured};

/// One connection of a stack. A handle is never reused while the
/// connection it names is open; after [`Stack::close`] or [`Stack::abort`]
/// the stack may give it out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub usize);

/// Where an opening connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connecting {
    /// The handshake is still under way.
    Pending,
    /// Established: requests may be sent.
    Established,
    /// The server refused it (a reset in answer to the SYN).
    Refused,
    /// It failed another way (reset later in the handshake, no route, the
    /// stack gave up retransmitting the SYN).
    Failed,
}

/// The outcome of a send or receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// This many bytes moved (at least one).
    Moved(usize),
    /// Nothing can move now; try again after the next poll.
    WouldBlock,
    /// The peer closed its side (a FIN: nothing more will arrive).
    Closed,
    /// The connection is gone (reset, or an error from the stack).
    Reset,
}

/// Why a stack could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// No connection can be opened now (the stack's sockets or local ports
    /// are all in use).
    #[error("no connection can be opened: {0}")]
    Exhausted(String),
    /// An operating-system call failed.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A TCP client stack the driver runs its connections on.
pub trait Stack {
    /// Its name in the result JSON and the segment: `kernel`, `dpdk`.
    fn name(&self) -> &'static str;

    /// A bypass stack's poll-mode driver (config.ini's `pmd`: `af_xdp`,
    /// `af_packet`, `pci`), for the result JSON and the segment.
    fn pmd(&self) -> Option<&'static str> {
        None
    }

    /// Whether [`Stack::poll`] reports which connections became ready (the
    /// kernel's epoll). When it does not, the driver tries every
    /// connection with work after each poll.
    fn reports_readiness(&self) -> bool;

    /// Starts opening a connection to the server; it is
    /// [`Connecting::Pending`] until the handshake ends.
    ///
    /// # Errors
    /// [`StackError`] when no connection can be started now.
    fn open(&mut self) -> Result<Handle, StackError>;

    /// Where the handshake of `conn` stands.
    fn connecting(&mut self, conn: Handle) -> Connecting;

    /// Hands bytes to the connection's send side.
    fn send(&mut self, conn: Handle, bytes: &[u8]) -> Transfer;

    /// Takes bytes that arrived on the connection.
    fn recv(&mut self, conn: Handle, buf: &mut [u8]) -> Transfer;

    /// Whether the driver wants to hear when `conn` can take more bytes
    /// (only meaningful when [`Stack::reports_readiness`]).
    fn want_writable(&mut self, conn: Handle, want: bool);

    /// Ends the connection in order (a FIN; what was sent still goes out)
    /// and forgets the handle.
    fn close(&mut self, conn: Handle);

    /// Ends the connection at once (a reset where the stack can) and forgets
    /// the handle.
    fn abort(&mut self, conn: Handle);

    /// Moves the stack forward: frames in and out for a userspace stack, a
    /// wait of at most `wait` on readiness for the kernel's. Handles that
    /// may have become ready are appended to `ready` (by a stack that
    /// [`reports_readiness`](Stack::reports_readiness)). Returns whether
    /// anything moved (a userspace stack's busy/idle accounting).
    fn poll(&mut self, wait: Duration, ready: &mut Vec<Handle>) -> bool;

    /// Lets the connections closed last end in order before the process
    /// exits, for at most `within` (the kernel does this itself).
    fn finish(&mut self, _within: Duration) {}

    /// Adds the counters only this stack has (a port's frames and drops)
    /// to what the driver publishes.
    fn add_counters(&mut self, _counters: &mut Counters) {}

    /// The counters [`Stack::add_counters`] fills, added to `measured`.
    fn measured(&self, measured: Measured) -> Measured {
        measured
    }
}
