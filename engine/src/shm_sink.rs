//! Publishing the engine's counters into its slot of the shared-memory
//! segment.
//!
//! The segment is opened once and kept for the life of the process (it is
//! leaked on purpose: the producer token borrows it, and the mapping must
//! outlive every publication anyway). The token is shared between `main`,
//! which moves the slot through its states, and the [`ShmSink`] the serving
//! loop publishes through.
//!
//! Periodic records of the engine carry, in order: `[messages_received,
//! bytes_received, bytes_sent, connections_active, protocol_errors]`, with
//! a CLOCK_MONOTONIC timestamp.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use shm_layout::{Counters, Measured, PeriodicRecord, Producer, ProducerInfo, Role};

pub use shm_layout::ProducerState;

use crate::context::StatsSink;
use crate::EngineError;

/// The engine's claimed slot.
#[derive(Clone)]
pub struct ShmSlot {
    inner: Rc<RefCell<SlotInner>>,
}

struct SlotInner {
    producer: Producer<'static>,
    seq: u64,
}

impl ShmSlot {
    /// Opens the segment at `path` and claims the engine slot (state
    /// `Starting`).
    ///
    /// # Errors
    /// [`EngineError::Shm`] when the segment cannot be opened or the slot
    /// is held by a live process.
    pub fn claim(path: &Path, kind: &str, core: Option<usize>) -> Result<Self, EngineError> {
        let info = ProducerInfo::starting(kind, core);
        let producer =
            Producer::claim_for_process(path, Role::Engine, &info).map_err(|source| {
                EngineError::Shm {
                    step: format!("open segment {} and claim its engine slot", path.display()),
                    source,
                }
            })?;
        Ok(Self {
            inner: Rc::new(RefCell::new(SlotInner { producer, seq: 0 })),
        })
    }

    /// Moves the slot to `state` (Running once listening, Finished or
    /// Failed at exit).
    pub fn set_state(&self, state: ProducerState) {
        self.inner.borrow_mut().producer.set_state(state);
    }

    /// A sink for the serving loop.
    #[must_use]
    pub fn sink(&self) -> ShmSink {
        ShmSink { slot: self.clone() }
    }
}

/// [`StatsSink`] writing into the engine slot.
pub struct ShmSink {
    slot: ShmSlot,
}

impl StatsSink for ShmSink {
    fn ready(&mut self) {
        self.slot.set_state(ProducerState::Running);
    }

    fn publish(&mut self, c: &Counters, measured: Measured) {
        let mut inner = self.slot.inner.borrow_mut();
        inner.producer.set_measured(measured);
        inner.producer.publish(c);
        let record = PeriodicRecord::new(
            inner.seq,
            monotonic_ns(),
            [
                c.messages_received,
                c.bytes_received,
                c.bytes_sent,
                c.connections_active,
                c.protocol_errors,
            ],
        );
        // A full ring drops the record; the gap in `seq` tells the reader.
        let _ = inner.producer.push_record(&record);
        inner.seq += 1;
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0)
    })
}
