//! The one JSON line the engine prints on stdout when it exits.
//!
//! ```text
//! {"kind":"kernel","listen":"0.0.0.0:7000","core":1,"busy_poll":false,
//!  "shm":true,"counters":{"messages_sent":10000,"messages_received":10000,...},
//!  "refused_connections":0}
//! ```
//!
//! `counters` has the fields of [`shm_layout::Counters`]; fields after it
//! are backend-specific extras.

use serde::Serialize;
use serde_json::{Map, Value};
use shm_layout::Counters;

use contract::engine::EngineArgs;

/// The engine's final result.
#[derive(Debug, Clone, Serialize)]
pub struct FinalReport {
    /// Backend name (`kernel`, `dpdk`, `fstack`).
    pub kind: &'static str,
    /// The address served (the bound one: a port 0 is resolved).
    pub listen: String,
    /// Core the loop was pinned to.
    pub core: Option<usize>,
    /// Whether the loop spun instead of sleeping.
    pub busy_poll: bool,
    /// Whether counters were published into a shared-memory segment.
    pub shm: bool,
    /// Final cumulative counters.
    pub counters: Counters,
    /// Backend-specific extras.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl FinalReport {
    /// A report of `counters` for the engine started with `args`.
    #[must_use]
    pub fn new(kind: &'static str, args: &EngineArgs, listen: String, counters: Counters) -> Self {
        Self {
            kind,
            listen,
            core: args.core,
            busy_poll: args.busy_poll,
            shm: args.shm.is_some(),
            counters,
            extra: Map::new(),
        }
    }

    /// Adds a backend-specific field.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The report as one JSON line (no trailing newline).
    #[must_use]
    pub fn to_json_line(&self) -> String {
        // Serializing plain numbers and strings cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
