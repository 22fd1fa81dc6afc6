//! The shape every fault test shares: a `run` that keeps the load generator
//! busy far longer than any test waits, started and watched until both the
//! engine and the load generator run, so the test can then break one piece
//! and check what the supervisor says.

use std::process::Child;
use std::time::Duration;

use contract::EngineKind;

use super::{finish, pid, Ran, Testbed};

/// `run` arguments that keep the load generator busy far longer than any
/// test waits, with a short reply timeout so failures resolve quickly.
pub fn long_run_args(engine: EngineKind) -> Vec<String> {
    [
        "run",
        "--engine",
        engine.as_str(),
        "--packets",
        "50000000",
        "--connections",
        "2",
        "--timeout-ms",
        "1000",
        "--json",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// A long `run` whose engine serves and whose load generator is busy.
pub struct LongRun {
    /// The `supervisor run` process.
    pub child: Child,
    /// The run state when it became ready.
    pub state: serde_json::Value,
    /// The engine.
    pub engine_pid: u32,
    /// The load generator.
    pub loadgen_pid: u32,
}

impl LongRun {
    /// Starts it on `testbed` and waits (bounded) until the load generator
    /// has exchanged messages.
    pub fn start(testbed: &Testbed, engine: EngineKind) -> Self {
        let args = long_run_args(engine);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = testbed.spawn(&args);
        let state = testbed.wait_ready(&mut child);
        let engine_pid = pid(&state["engine"]["pid"]);
        let loadgen_pid = testbed.wait_loadgen(&mut child);
        Self {
            child,
            state,
            engine_pid,
            loadgen_pid,
        }
    }

    /// The supervisor's pid.
    pub fn supervisor_pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `run` to end, at most `limit`.
    pub fn finish(self, limit: Duration) -> Ran {
        finish(self.child, limit)
    }
}

/// Asserts that a `run --json` document holds exactly `rows` rows and that
/// none claims a clean run.
pub fn assert_not_clean(doc: &serde_json::Value, rows: usize) {
    let got = doc["rows"].as_array().expect("rows");
    assert_eq!(got.len(), rows, "expected {rows} row(s): {doc}");
    for row in got {
        let packets = row["packets"].as_u64().unwrap();
        let answered = row["answered"].as_u64().unwrap();
        let clean = row["failed"] == 0
            && answered == packets
            && row["loadgen_exit"]["how"] == "exited"
            && row["loadgen_exit"]["code"] == 0;
        assert!(!clean, "a broken run reported clean: {row}");
    }
}
