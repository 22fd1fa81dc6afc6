//! Where the load generator's live numbers go: its slot of the
//! shared-memory segment, or nowhere.
//!
//! Periodic records of the load generator carry, in order:
//! `[messages_received, bytes_sent, p50_ns, failed, in_flight]`, where
//! `messages_received` counts correct replies, `p50_ns` is the median
//! latency of the replies received since the previous record (0 if none)
//! and `in_flight` the requests awaiting their reply; CLOCK_MONOTONIC
//! timestamp.

use std::path::Path;

use shm_layout::{
    Counter, Counters, Measured, PeriodicRecord, Producer, ProducerInfo, ProducerState, Role,
};

use crate::LoadgenError;

/// What the load generator measures: its messages, bytes (the answered
/// requests' too), failures, connections, warm-up, time and latencies; its
/// loops only when it spins. No port, no frames, nothing of the engine's.
#[must_use]
pub fn measured(busy_poll: bool) -> Measured {
    let measured = Measured::counters(&[
        Counter::MessagesSent,
        Counter::MessagesReceived,
        Counter::MessagesFailed,
        Counter::Mismatches,
        Counter::Timeouts,
        Counter::Resets,
        Counter::BytesSent,
        Counter::BytesReceived,
        Counter::AnsweredBytes,
        Counter::ConnectionsOpened,
        Counter::ConnectionsClosed,
        Counter::ConnectionsActive,
        Counter::WarmupMessages,
        Counter::ElapsedNs,
    ])
    .with_latency();
    if busy_poll {
        measured
            .with(Counter::BusyLoops)
            .with(Counter::IdleLoops)
            .with(Counter::BusyNs)
    } else {
        measured
    }
}

/// Sink of the load generator's counters, latencies and records.
pub trait Telemetry {
    /// Publishes the slot's lifecycle state.
    fn set_state(&mut self, state: ProducerState);
    /// One measured round-trip, nanoseconds.
    fn record_latency_ns(&mut self, ns: u64);
    /// Cumulative counters and one periodic record.
    fn publish(&mut self, counters: &Counters, record: [u64; 5]);
}

/// No segment: numbers only go to the final JSON.
pub struct NoTelemetry;

impl Telemetry for NoTelemetry {
    fn set_state(&mut self, _state: ProducerState) {}
    fn record_latency_ns(&mut self, _ns: u64) {}
    fn publish(&mut self, _counters: &Counters, _record: [u64; 5]) {}
}

/// The loadgen slot of a segment. The segment is leaked for the life of the
/// process: the producer token borrows it, and the mapping has to outlive
/// every write anyway.
pub struct ShmTelemetry {
    producer: Producer<'static>,
    seq: u64,
}

impl ShmTelemetry {
    /// Opens the segment and claims the loadgen slot (state `Starting`),
    /// publishing `measured` as what it measures.
    ///
    /// # Errors
    /// [`LoadgenError::Shm`] when the segment cannot be opened or its
    /// loadgen slot is held by a live process.
    pub fn claim(
        path: &Path,
        kind: &str,
        core: Option<usize>,
        measured: Measured,
    ) -> Result<Self, LoadgenError> {
        let info = ProducerInfo::starting(kind, core);
        let mut producer =
            Producer::claim_for_process(path, Role::Loadgen, &info).map_err(|source| {
                LoadgenError::Shm {
                    step: format!("open segment {} and claim its loadgen slot", path.display()),
                    source,
                }
            })?;
        producer.set_measured(measured);
        Ok(Self { producer, seq: 0 })
    }
}

impl Telemetry for ShmTelemetry {
    fn set_state(&mut self, state: ProducerState) {
        self.producer.set_state(state);
    }

    fn record_latency_ns(&mut self, ns: u64) {
        self.producer.record_latency_ns(ns);
    }

    fn publish(&mut self, counters: &Counters, record: [u64; 5]) {
        self.producer.publish(counters);
        // A full ring drops the record; the gap in `seq` tells the reader.
        let _ = self
            .producer
            .push_record(&PeriodicRecord::new(self.seq, monotonic_ns(), record));
        self.seq += 1;
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0)
    })
}
