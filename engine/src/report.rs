//! The one JSON line the engine prints on stdout when it exits.
//!
//! ```text
//! {"kind":"kernel","listen":"0.0.0.0:7000","core":1,"busy_poll":false,
//!  "shm":true,"counters":{"messages_sent":10000,"messages_received":10000,...},
//!  "refused_connections":0}
//! ```
//!
//! `counters` has the fields of [`shm_layout::Counters`], `null` for those
//! the backend does not measure (as in the segment); fields after it are
//! backend-specific extras.

use serde::Serialize;
use serde_json::{Map, Value};
use shm_layout::{Counter, CounterReadings, Counters, Measured};

use contract::engine::EngineArgs;

/// Counters of frames lost or failed inside the engine.
const LOSSES: [Counter; 6] = [
    Counter::RxMissed,
    Counter::RxNombuf,
    Counter::RxErrors,
    Counter::TxErrors,
    Counter::TxDropped,
    Counter::PortStatsFailures,
];

/// The engine's final result.
#[derive(Debug, Clone, Serialize)]
pub struct FinalReport {
    /// Backend name (`kernel`, `dpdk`, `fstack`).
    pub kind: &'static str,
    /// The address served (the bound one: a port 0 is resolved).
    pub listen: String,
    /// Core the loop was pinned to.
    pub core: Option<usize>,
    /// Whether the loop spun instead of sleeping (what it did: the bypass
    /// engines always spin).
    pub busy_poll: bool,
    /// Whether counters were published into a shared-memory segment.
    pub shm: bool,
    /// Final cumulative counters (`null`: not measured).
    pub counters: CounterReadings,
    /// Backend-specific extras.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl FinalReport {
    /// A report of `counters`, of which `measured` are measurements, for
    /// the engine started with `args`, whose loop spun if `busy_poll`.
    #[must_use]
    pub fn new(
        kind: &'static str,
        args: &EngineArgs,
        listen: String,
        counters: &Counters,
        measured: Measured,
        busy_poll: bool,
    ) -> Self {
        Self {
            kind,
            listen,
            core: args.core,
            busy_poll,
            shm: args.shm.is_some(),
            counters: CounterReadings::new(counters, measured),
            extra: Map::new(),
        }
    }

    /// Adds a backend-specific field.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The losses inside the engine (its port's and its stack's), when any
    /// counted: a line for stderr, so a run that lost frames before they
    /// reached the protocol says so however its link behaved.
    #[must_use]
    pub fn loss_warning(&self) -> Option<String> {
        let lost: Vec<String> = LOSSES
            .iter()
            .filter_map(|&k| {
                let n = self.counters.get(k).filter(|&n| n > 0)?;
                Some(format!("{} {n}", k.name()))
            })
            .collect();
        (!lost.is_empty()).then(|| {
            format!(
                "engine: {} lost or failed frames itself (not the link): {}",
                self.kind,
                lost.join(", ")
            )
        })
    }

    /// The report as one JSON line (no trailing newline).
    #[must_use]
    pub fn to_json_line(&self) -> String {
        // Serializing plain numbers and strings cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_inside_the_engine_are_said_and_absent_ones_are_not() {
        let args = EngineArgs::default();
        let measured = Measured::ALL.without(Counter::TxDropped);
        let clean = FinalReport::new(
            "dpdk",
            &args,
            "x".into(),
            &Counters::default(),
            measured,
            true,
        );
        assert_eq!(clean.loss_warning(), None);
        let lossy = Counters {
            rx_missed: 3,
            tx_errors: 1,
            tx_dropped: 9, // not measured: not said
            ..Counters::default()
        };
        let report = FinalReport::new("dpdk", &args, "x".into(), &lossy, measured, true);
        let line = report.loss_warning().expect("a warning");
        assert!(
            line.contains("rx_missed 3") && line.contains("tx_errors 1"),
            "{line}"
        );
        assert!(!line.contains("tx_dropped"), "{line}");
        let json: serde_json::Value = serde_json::from_str(&report.to_json_line()).unwrap();
        assert!(json["counters"]["tx_dropped"].is_null(), "{json}");
        assert_eq!(json["counters"]["rx_missed"], 3);
    }
}
