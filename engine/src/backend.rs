//! What varies between engines: how bytes get in and out.
//!
//! Each backend (kernel sockets, DPDK + smoltcp, F-Stack) owns its I/O and
//! its loop; the protocol itself is [`protocol::ServerSession`], identical
//! for all. Like smoltcp's `phy::Device`: one trait, one module per
//! implementation.

use shm_layout::{Counter, Measured};

use crate::context::ServeContext;
use crate::EngineError;

/// What every backend measures: the protocol's messages and bytes, the
/// connections, and time. Each backend adds what else it counts; the rest
/// is published as "not measured", never as a zero.
pub const SERVING: Measured = Measured::counters(&[
    Counter::MessagesSent,
    Counter::MessagesReceived,
    Counter::BytesSent,
    Counter::BytesReceived,
    Counter::ConnectionsOpened,
    Counter::ConnectionsClosed,
    Counter::ConnectionsActive,
    Counter::ProtocolErrors,
    Counter::HalfMessages,
    Counter::ElapsedNs,
]);

/// A server engine backend.
pub trait Backend {
    /// Short name shown in stats (`kernel`, `dpdk`, `fstack`).
    fn name(&self) -> &'static str;

    /// The counters it measures from the start (a backend may add some
    /// while serving, e.g. the port's once they could be read).
    fn measured(&self) -> Measured;

    /// Whether its loop spins instead of sleeping.
    fn busy_polls(&self) -> bool;

    /// Serves until `ctx.should_stop()`; then finishes what is in flight,
    /// publishes final counters with `ctx.publish_now()` and returns.
    ///
    /// # Errors
    /// Setup or I/O failures that end the engine.
    fn serve(&mut self, ctx: &mut ServeContext) -> Result<(), EngineError>;
}
