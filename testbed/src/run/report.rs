//! What a teardown did, for the user: the one report every teardown step
//! (the run's own, the bypass preparation's, a crashed run's leftovers)
//! writes into.

use std::time::Duration;

use crate::host::process::{ProcessId, Stopped};

/// How long a recorded child gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// What teardown did, for the user.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TeardownReport {
    /// One line per resource removed or process stopped.
    pub done: Vec<String>,
    /// Problems met (teardown goes on past them).
    pub problems: Vec<String>,
}

impl TeardownReport {
    /// Stops a recorded process, saying so when it was still running.
    pub(super) fn stop(&mut self, what: &str, process: &ProcessId) {
        match process.stop(GRACE) {
            Ok(Stopped::NotRunning) => {}
            Ok(_) => self
                .done
                .push(format!("{what} (pid {}) stopped", process.pid)),
            Err(e) => self.problems.push(format!("stopping the {what}: {e}")),
        }
    }
}
