//! The atomics every shared structure uses, from one place.
//!
//! Under `cfg(loom)` they come from loom, so the model in the loom tests
//! exercises the same seqlock and ring code the binaries run; otherwise from
//! `std`. Only the primitives that loom can model (the latch and the ring
//! indices) are compiled under loom; the mapping code needs the real types
//! because it views zeroed file memory as atomics.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Busy-wait hint; a loom yield under the model so spins terminate.
#[cfg(loom)]
#[allow(dead_code)]
pub(crate) fn spin_hint() {
    loom::thread::yield_now();
}

/// Busy-wait hint.
#[cfg(not(loom))]
pub(crate) fn spin_hint() {
    core::hint::spin_loop();
}
