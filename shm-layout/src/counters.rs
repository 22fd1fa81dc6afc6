//! The cumulative counters every producer publishes, and which of them it
//! measures.
//!
//! One struct serves every role so that the JSON schema is one schema. A
//! field a role has no use for is not a zero: each publication carries a
//! [`Measured`] set beside the values, and readers see the counters as
//! [`CounterReadings`], where a counter the producer does not measure is
//! `None` (`null` in JSON). A measured zero and "not measured" never look
//! alike.
//!
//! Every counter is declared once, in the `counters!` list below: the
//! struct, its word order, the [`Counter`] names and the readings all come
//! from it, so a new counter is one more line (and a layout version bump).
//! The slot publishes values and set as a whole through its seqlock, so a
//! reader never sees half of an update.

use serde::{Deserialize, Serialize};

macro_rules! counters {
    ($( $(#[$doc:meta])* $variant:ident => $field:ident, )*) => {
        /// Cumulative counters of one producer since it claimed its slot.
        ///
        /// Every field is a `u64`; units are in the field docs. Which fields a
        /// producer measures is published beside them ([`Measured`]).
        #[repr(C)]
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Counters {
            $( $(#[$doc])* pub $field: u64, )*
        }

        /// One field of [`Counters`], in declaration (word) order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Counter {
            $( $(#[$doc])* $variant, )*
        }

        /// [`Counters`] as a reader sees them: `None` for a counter the
        /// producer does not measure.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub struct CounterReadings {
            $( $(#[$doc])* pub $field: Option<u64>, )*
        }

        impl Counter {
            /// Every counter, in word order.
            pub const ALL: [Counter; COUNTER_WORDS] = [ $( Counter::$variant, )* ];

            /// The field's name (its JSON key).
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $( Counter::$variant => stringify!($field), )*
                }
            }
        }

        impl Counters {
            /// The counters as words, in declaration order.
            #[must_use]
            pub fn to_words(&self) -> [u64; COUNTER_WORDS] {
                [ $( self.$field, )* ]
            }

            /// The inverse of [`Counters::to_words`].
            #[must_use]
            pub fn from_words(w: &[u64; COUNTER_WORDS]) -> Self {
                let mut words = w.iter().copied();
                Self {
                    // Exactly COUNTER_WORDS fields take exactly COUNTER_WORDS words.
                    $( $field: words.next().unwrap_or(0), )*
                }
            }

            /// The value of `counter`.
            #[must_use]
            pub fn get(&self, counter: Counter) -> u64 {
                match counter {
                    $( Counter::$variant => self.$field, )*
                }
            }
        }

        impl CounterReadings {
            /// `values` with every counter outside `measured` left out.
            #[must_use]
            pub fn new(values: &Counters, measured: Measured) -> Self {
                Self {
                    $( $field: measured.has(Counter::$variant).then_some(values.$field), )*
                }
            }

            /// Every value, a counter not measured as 0: what layout 1
            /// showed, for a caller that has yet to tell the two apart.
            #[must_use]
            pub fn or_zero(&self) -> Counters {
                Counters {
                    $( $field: self.$field.unwrap_or(0), )*
                }
            }

            /// The reading of `counter`.
            #[must_use]
            pub fn get(&self, counter: Counter) -> Option<u64> {
                match counter {
                    $( Counter::$variant => self.$field, )*
                }
            }
        }
    };
}

counters! {
    /// Messages sent (loadgen: requests written; engine: replies written).
    MessagesSent => messages_sent,
    /// Messages received (loadgen: replies received and verified; engine:
    /// complete requests decoded).
    MessagesReceived => messages_received,
    /// Loadgen: requests that did not get a correct reply (mismatch, timeout,
    /// reset, never answered). Zero on a clean run.
    MessagesFailed => messages_failed,
    /// Loadgen: replies whose length differed from the request's.
    Mismatches => mismatches,
    /// Loadgen: requests that waited longer than the reply timeout.
    Timeouts => timeouts,
    /// Connections reset or closed by the peer while requests were pending
    /// (dpdk engine: connections its stack ended without a FIN exchange).
    Resets => resets,
    /// Payload bytes written to the peer (TCP payload, headers included in
    /// the protocol sense: the 4-byte length prefix counts).
    BytesSent => bytes_sent,
    /// Payload bytes read from the peer.
    BytesReceived => bytes_received,
    /// Connections opened (engine: accepted; loadgen: connected).
    ConnectionsOpened => connections_opened,
    /// Connections closed, for whatever reason.
    ConnectionsClosed => connections_closed,
    /// Connections open at publication time.
    ConnectionsActive => connections_active,
    /// Engine: connections closed for a protocol violation (bad length;
    /// the dpdk engine aborts them with a reset).
    ProtocolErrors => protocol_errors,
    /// Engine: connections that closed in the middle of a request.
    HalfMessages => half_messages,
    /// Frames received: the port's `ipackets` for bypass engines, the
    /// emulator's frames in.
    RxPackets => rx_packets,
    /// Frames transmitted: the port's `opackets` for bypass engines, the
    /// emulator's frames out.
    TxPackets => tx_packets,
    /// Link emulator: frames dropped on purpose (the impairment). A bypass
    /// engine's own receive losses are `rx_missed` and `rx_nombuf`.
    RxDropped => rx_dropped,
    /// Receive errors reported by the driver (`ierrors`).
    RxErrors => rx_errors,
    /// Poll-loop iterations that found work.
    BusyLoops => busy_loops,
    /// Poll-loop iterations that found nothing.
    IdleLoops => idle_loops,
    /// Loadgen: messages exchanged during warm-up, excluded from every other
    /// counter and from the histogram.
    WarmupMessages => warmup_messages,
    /// Nanoseconds since the producer started measuring (after warm-up).
    ElapsedNs => elapsed_ns,
    /// Bypass engines: frames the port dropped because its receive queue
    /// was full (`imissed`): loss inside the engine, not on the link.
    RxMissed => rx_missed,
    /// Bypass engines: frames the port dropped for want of a receive mbuf
    /// (`rx_nombuf`).
    RxNombuf => rx_nombuf,
    /// Bypass engines: transmissions the port failed (`oerrors`).
    TxErrors => tx_errors,
    /// dpdk engine: frames its stack wrote that never reached the driver (no
    /// free mbuf, or a frame larger than one).
    TxDropped => tx_dropped,
    /// Bypass engines: reads of the port's counters that failed. While any
    /// failed, the port counters are those of the last read that worked.
    PortStatsFailures => port_stats_failures,
    /// Loadgen: request bytes (length prefix included) of the requests
    /// answered correctly in the measured phase.
    AnsweredBytes => answered_bytes,
    /// Engine: connections aborted after staying half-closed (one side's FIN
    /// sent, the other's never came) longer than the engine allows.
    IdleTimeouts => idle_timeouts,
    /// Engine: accepted connections closed at once because setting them up
    /// failed (TCP_NODELAY, epoll registration); serving went on.
    SetupFailures => setup_failures,
    /// Spinning loops: nanoseconds spent in passes that found work (see
    /// [`crate::PassClock`]); over `elapsed_ns`, the share of the core the
    /// loop was busy.
    BusyNs => busy_ns,
}

/// Number of `u64` words in [`Counters`]; the seqlock copies them one by one.
pub const COUNTER_WORDS: usize = core::mem::size_of::<Counters>() / 8;

const _: () = assert!(core::mem::size_of::<Counters>() % 8 == 0);
const _: () = assert!(core::mem::align_of::<Counters>() == 8);
const _: () = assert!(COUNTER_WORDS == 30);
// One bit per counter and the latency bit fit the mask word.
const _: () = assert!(COUNTER_WORDS < Measured::LATENCY_BIT as usize);

/// Which of its values a producer measures: one bit per [`Counter`] (bit
/// = word index) and one for its latency histogram. Published with every
/// update of the counters, as the first word of the slot's seqlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Measured(u64);

impl Measured {
    /// Bit of the latency histogram.
    const LATENCY_BIT: u32 = 63;
    const COUNTER_BITS: u64 = (1 << COUNTER_WORDS) - 1;

    /// Nothing measured (what a slot holds before its first publication).
    pub const NOTHING: Self = Self(0);
    /// Every counter and the latency histogram.
    pub const ALL: Self = Self(Self::COUNTER_BITS | 1 << Self::LATENCY_BIT);

    /// The given counters, no latency.
    #[must_use]
    pub const fn counters(list: &[Counter]) -> Self {
        let mut set = Self::NOTHING;
        let mut i = 0;
        while i < list.len() {
            set = set.with(list[i]);
            i += 1;
        }
        set
    }

    /// This set and `counter`.
    #[must_use]
    pub const fn with(self, counter: Counter) -> Self {
        Self(self.0 | 1 << counter as u32)
    }

    /// This set without `counter`.
    #[must_use]
    pub const fn without(self, counter: Counter) -> Self {
        Self(self.0 & !(1 << counter as u32))
    }

    /// This set and the latency histogram.
    #[must_use]
    pub const fn with_latency(self) -> Self {
        Self(self.0 | 1 << Self::LATENCY_BIT)
    }

    /// Whether `counter` is measured.
    #[must_use]
    pub const fn has(self, counter: Counter) -> bool {
        self.0 & 1 << counter as u32 != 0
    }

    /// Whether latencies are recorded.
    #[must_use]
    pub const fn latency(self) -> bool {
        self.0 & 1 << Self::LATENCY_BIT != 0
    }

    /// The mask word as published.
    #[must_use]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// A published mask word; bits this layout does not know are ignored.
    #[must_use]
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits & Self::ALL.0)
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
        for (i, counter) in Counter::ALL.into_iter().enumerate() {
            assert_eq!(counters.get(counter), words[i], "{}", counter.name());
        }
    }

    #[test]
    fn a_counter_not_measured_reads_as_none_and_a_measured_zero_as_zero() {
        let values = Counters {
            messages_received: 5,
            rx_packets: 0,
            ..Counters::default()
        };
        let measured = Measured::counters(&[Counter::MessagesReceived, Counter::RxPackets]);
        let r = CounterReadings::new(&values, measured);
        assert_eq!(r.messages_received, Some(5));
        assert_eq!(r.rx_packets, Some(0), "measured zero");
        assert_eq!(r.busy_loops, None, "not measured");
        assert_eq!(r.or_zero(), values);
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["rx_packets"], 0);
        assert!(json["busy_loops"].is_null());
        assert_eq!(json.as_object().unwrap().len(), COUNTER_WORDS);
    }

    #[test]
    fn sets_round_trip_through_their_word() {
        let set = Measured::ALL.without(Counter::BusyLoops);
        assert!(!set.has(Counter::BusyLoops) && set.has(Counter::IdleLoops) && set.latency());
        assert_eq!(Measured::from_bits(set.bits()), set);
        assert_eq!(Measured::from_bits(u64::MAX), Measured::ALL);
        assert!(!Measured::counters(&Counter::ALL).latency());
        assert_eq!(
            Measured::counters(&Counter::ALL).with_latency(),
            Measured::ALL
        );
        assert_eq!(Measured::NOTHING.with(Counter::TxDropped).bits(), 1 << 24);
    }
}
