//! The cumulative counters every producer publishes.
//!
//! One struct serves every role so that the JSON schema is one schema: a
//! field a role has no use for stays zero. The struct is plain data; the slot
//! publishes it as a whole through its seqlock, so a reader never sees half
//! of an update.

use serde::{Deserialize, Serialize};

/// Cumulative counters of one producer since it claimed its slot.
///
/// Every field is a `u64`; units are in the field docs.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Messages sent (loadgen: requests written; engine: replies written).
    pub messages_sent: u64,
    /// Messages received (loadgen: replies received and verified; engine:
    /// complete requests decoded).
    pub messages_received: u64,
    /// Loadgen: requests that did not get a correct reply (mismatch, timeout,
    /// reset, never answered). Zero on a clean run.
    pub messages_failed: u64,
    /// Loadgen: replies whose length differed from the request's.
    pub mismatches: u64,
    /// Loadgen: requests that waited longer than the reply timeout.
    pub timeouts: u64,
    /// Connections reset or closed by the peer while requests were pending.
    pub resets: u64,
    /// Payload bytes written to the peer (TCP payload, headers included in
    /// the protocol sense: the 4-byte length prefix counts).
    pub bytes_sent: u64,
    /// Payload bytes read from the peer.
    pub bytes_received: u64,
    /// Connections opened (engine: accepted; loadgen: connected).
    pub connections_opened: u64,
    /// Connections closed, for whatever reason.
    pub connections_closed: u64,
    /// Connections open at publication time.
    pub connections_active: u64,
    /// Engine: connections closed for a protocol violation (bad length).
    pub protocol_errors: u64,
    /// Engine: connections that closed in the middle of a request.
    pub half_messages: u64,
    /// Packets received by the poll-mode driver or the emulator (frames).
    pub rx_packets: u64,
    /// Packets transmitted by the poll-mode driver or the emulator (frames).
    pub tx_packets: u64,
    /// Packets dropped: NIC `imissed` for bypass engines, deliberate random
    /// drops for the link emulator.
    pub rx_dropped: u64,
    /// Receive errors reported by the driver (`ierrors`).
    pub rx_errors: u64,
    /// Poll-loop iterations that found work.
    pub busy_loops: u64,
    /// Poll-loop iterations that found nothing.
    pub idle_loops: u64,
    /// Loadgen: messages exchanged during warm-up, excluded from every other
    /// counter and from the histogram.
    pub warmup_messages: u64,
    /// Nanoseconds since the producer started measuring (after warm-up).
    pub elapsed_ns: u64,
}

/// Number of `u64` words in [`Counters`]; the seqlock copies them one by one.
pub const COUNTER_WORDS: usize = core::mem::size_of::<Counters>() / 8;

const _: () = assert!(core::mem::size_of::<Counters>() % 8 == 0);
const _: () = assert!(core::mem::align_of::<Counters>() == 8);
const _: () = assert!(COUNTER_WORDS == 21);

impl Counters {
    /// The counters as words, in declaration order.
    #[must_use]
    pub fn to_words(&self) -> [u64; COUNTER_WORDS] {
        let c = self;
        [
            c.messages_sent,
            c.messages_received,
            c.messages_failed,
            c.mismatches,
            c.timeouts,
            c.resets,
            c.bytes_sent,
            c.bytes_received,
            c.connections_opened,
            c.connections_closed,
            c.connections_active,
            c.protocol_errors,
            c.half_messages,
            c.rx_packets,
            c.tx_packets,
            c.rx_dropped,
            c.rx_errors,
            c.busy_loops,
            c.idle_loops,
            c.warmup_messages,
            c.elapsed_ns,
        ]
    }

    /// The inverse of [`Counters::to_words`].
    #[must_use]
    pub fn from_words(w: &[u64; COUNTER_WORDS]) -> Self {
        Self {
            messages_sent: w[0],
            messages_received: w[1],
            messages_failed: w[2],
            mismatches: w[3],
            timeouts: w[4],
            resets: w[5],
            bytes_sent: w[6],
            bytes_received: w[7],
            connections_opened: w[8],
            connections_closed: w[9],
            connections_active: w[10],
            protocol_errors: w[11],
            half_messages: w[12],
            rx_packets: w[13],
            tx_packets: w[14],
            rx_dropped: w[15],
            rx_errors: w[16],
            busy_loops: w[17],
            idle_loops: w[18],
            warmup_messages: w[19],
            elapsed_ns: w[20],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        let mut words = [0u64; COUNTER_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = (i as u64 + 1) * 1_000_003;
        }
        let counters = Counters::from_words(&words);
        assert_eq!(counters.to_words(), words);
        assert_eq!(counters.elapsed_ns, 21 * 1_000_003);
    }
}
