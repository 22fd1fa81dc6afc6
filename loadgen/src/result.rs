//! The final result, printed as one JSON object on stdout.
//!
//! ```text
//! {"packets_requested":10000,"sent":10000,"answered":10000,"failed":0,
//!  "mismatches":0,"timeouts":0,"resets":0,"lost_in_flight":0,"unsent":0,
//!  "unexpected_replies":0,"bytes_sent":7675031,"bytes_received":40000,
//!  "elapsed_s":1.21,"messages_per_s":8264.4,"goodput_kB_per_s":6343.0,
//!  "latency":{"count":10000,"clamped":0,"percentiles_are_lower_bounds":false,
//!             "min_us":88.2,"mean_us":120.9,"p50_us":118.0,
//!             "p90_us":131.0,"p99_us":170.1,"p999_us":260.3,"max_us":911.0},
//!  "mode":"closed","rate":null,"connections":1,"busy_poll":false,"seed":1,
//!  "core":null,"warmup":1000,"warmup_answered":1000,"min_size":512,
//!  "max_size":1024,"timeout_ms":5000,"stopped_by":"packets"}
//! ```
//!
//! Everything but `warmup*` counts the measured phase only (the warm-up is
//! excluded), except the failure counters, which count failures of both
//! phases: a lost warm-up message is still a lost message.

pub use contract::loadgen::ShortConnections;
use serde::Serialize;
use shm_layout::LatencySummary;

/// Why the measured phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoppedBy {
    /// All `--packets` were issued and resolved.
    Packets,
    /// `--duration` passed; everything issued before was resolved.
    Duration,
    /// SIGINT or SIGTERM.
    Signal,
    /// Every connection was lost (reset, closed or timed out).
    Failure,
}

/// The load generator's final result.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// `--packets` (`null` when only `--duration` bounded the run).
    pub packets_requested: Option<u64>,
    /// Requests handed to the sockets.
    pub sent: u64,
    /// Requests answered with their own length.
    pub answered: u64,
    /// Requests without a correct reply: mismatched, timed out, lost on a
    /// reset connection, or never sent because every connection was lost.
    pub failed: u64,
    /// Replies whose length differed from the request's, plus replies that
    /// answered no request.
    pub mismatches: u64,
    /// Requests without a reply after `--timeout-ms` (their connection is
    /// then closed, and the other requests in flight on it count here too).
    pub timeouts: u64,
    /// Connections reset or closed by the server before the run ended.
    pub resets: u64,
    /// Requests in flight on connections that were reset or closed.
    pub lost_in_flight: u64,
    /// Requested messages never sent because no connection was left (or
    /// the run was interrupted).
    pub unsent: u64,
    /// Replies that arrived with no request in flight.
    pub unexpected_replies: u64,
    /// Request bytes written (headers included).
    pub bytes_sent: u64,
    /// Reply bytes read.
    pub bytes_received: u64,
    /// Measured time, seconds: first request to last resolved reply.
    pub elapsed_s: f64,
    /// Correct replies per second.
    pub messages_per_s: f64,
    /// Request bytes answered correctly per second, divided by 1000 (the
    /// "kB/s" of the original experiment's table).
    #[serde(rename = "goodput_kB_per_s")]
    pub goodput_kb_per_s: f64,
    /// Round-trip latency of correct replies (closed loop: from the send;
    /// open loop: from the intended send time), with the samples beyond the
    /// histogram's ~17 s range (`clamped`) and whether the percentiles are
    /// therefore lower bounds.
    pub latency: LatencySummary,
    /// The client's TCP stack: `kernel` or `dpdk`.
    pub stack: &'static str,
    /// A bypass stack's poll-mode driver (`af_xdp`, `af_packet`, `pci`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pmd: Option<&'static str>,
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Open loop: messages per second requested.
    pub rate: Option<f64>,
    /// `persistent` or `short`.
    pub pattern: &'static str,
    /// Connections open at once (persistent: opened).
    pub connections: usize,
    /// `--pattern short`: the connections' own figures.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub short: Option<ShortConnections>,
    /// Whether the loop spun.
    pub busy_poll: bool,
    /// Size generator seed.
    pub seed: u64,
    /// Core pinned to.
    pub core: Option<usize>,
    /// Warm-up messages requested.
    pub warmup: u64,
    /// Warm-up messages answered correctly.
    pub warmup_answered: u64,
    /// Smallest message size.
    pub min_size: u32,
    /// Largest message size.
    pub max_size: u32,
    /// Reply timeout, milliseconds.
    pub timeout_ms: u64,
    /// Why the run ended.
    pub stopped_by: StoppedBy,
}

impl RunResult {
    /// Whether the run was clean: every request answered correctly and the
    /// run ended because its bound was reached.
    #[must_use]
    pub fn success(&self) -> bool {
        self.failed == 0
            && self.mismatches == 0
            && self.answered == self.sent
            && match self.stopped_by {
                StoppedBy::Packets => Some(self.answered) == self.packets_requested,
                StoppedBy::Duration => true,
                StoppedBy::Signal | StoppedBy::Failure => false,
            }
    }

    /// The result as one JSON line.
    #[must_use]
    pub fn to_json_line(&self) -> String {
        // Numbers and strings only: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
