//! What varies between engines: how bytes get in and out.
//!
//! Each backend (kernel sockets, DPDK + smoltcp, F-Stack) owns its I/O and
//! its loop; the protocol itself is [`protocol::ServerSession`], identical
//! for all. Like smoltcp's `phy::Device`: one trait, one module per
//! implementation.

use crate::context::ServeContext;
use crate::EngineError;

/// A server engine backend.
pub trait Backend {
    /// Short name shown in stats (`kernel`, `dpdk`, `fstack`).
    fn name(&self) -> &'static str;

    /// Serves until `ctx.should_stop()`; then finishes what is in flight,
    /// publishes final counters with `ctx.publish_now()` and returns.
    ///
    /// # Errors
    /// Setup or I/O failures that end the engine.
    fn serve(&mut self, ctx: &mut ServeContext) -> Result<(), EngineError>;
}
