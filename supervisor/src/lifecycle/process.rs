//! Child processes the supervisor starts: identity that survives pid reuse,
//! graceful termination, and a human account of how a child ended.

use std::fmt;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::net::process as net_process;

/// A process named by pid and kernel start time, so a recorded pid is never
/// mistaken for an unrelated process that reused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
}

impl ProcessId {
    /// The identity of a running process, or `None` if it does not exist.
    #[must_use]
    pub fn of(pid: u32) -> Option<Self> {
        start_time(pid).map(|start_time| Self { pid, start_time })
    }

    /// The identity of this process.
    #[must_use]
    pub fn current() -> Self {
        Self::of(std::process::id()).unwrap_or(Self {
            pid: std::process::id(),
            start_time: 0,
        })
    }

    /// Whether this very process still exists (and is not a zombie).
    #[must_use]
    pub fn is_alive(&self) -> bool {
        net_process::alive(raw_pid(self.pid), self.start_time)
    }

    /// Sends `signal` if the process is still the one recorded.
    pub fn signal(&self, signal: Signal) -> bool {
        self.is_alive() && kill(nix_pid(self.pid), signal).is_ok()
    }
}

fn raw_pid(pid: u32) -> i32 {
    i32::try_from(pid).unwrap_or(-1)
}

fn nix_pid(pid: u32) -> Pid {
    Pid::from_raw(raw_pid(pid))
}

/// Start time of `pid` in clock ticks since boot.
#[must_use]
pub fn start_time(pid: u32) -> Option<u64> {
    net_process::stat(raw_pid(pid)).map(|(start, _state)| start)
}

/// How a child process ended, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "how")]
pub enum Ending {
    /// Exited with this code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// Killed by this signal.
    Signaled {
        /// Signal number.
        signal: i32,
        /// Signal name, e.g. `SIGKILL`.
        name: String,
    },
}

impl Ending {
    /// Classifies an exit status.
    #[must_use]
    pub fn from_status(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Exited { code },
            (None, Some(signal)) => Self::Signaled {
                signal,
                name: Signal::try_from(signal)
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_else(|_| format!("signal {signal}")),
            },
            (None, None) => Self::Exited { code: -1 },
        }
    }

    /// Whether the process ended cleanly (exit code 0).
    #[must_use]
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Exited { code: 0 })
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited { code } => write!(f, "exited with code {code}"),
            Self::Signaled { name, .. } => write!(f, "was killed by {name}"),
        }
    }
}

/// Asks `child` to stop with SIGTERM, waits up to `grace`, then SIGKILLs it.
/// Always reaps it. Returns how it ended.
///
/// # Errors
/// Only when waiting on the child fails.
pub fn terminate(child: &mut Child, grace: Duration) -> std::io::Result<Ending> {
    if let Some(status) = child.try_wait()? {
        return Ok(Ending::from_status(status));
    }
    let _ = kill(nix_pid(child.id()), Signal::SIGTERM);
    if let Some(status) = wait_timeout(child, grace)? {
        return Ok(Ending::from_status(status));
    }
    let _ = child.kill();
    child.wait().map(Ending::from_status)
}

/// Waits for `child` at most `limit`.
///
/// # Errors
/// When waiting on the child fails.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops a recorded process that is not our child (left by a crashed
/// supervisor): SIGTERM, wait up to `grace`, SIGKILL. Returns whether it was
/// still running.
pub fn terminate_recorded(process: &ProcessId, grace: Duration) -> bool {
    !matches!(
        net_process::stop(raw_pid(process.pid), process.start_time, grace),
        Ok(net_process::Stopped::NotRunning)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn identity_of_self_is_alive() {
        let me = ProcessId::current();
        assert!(me.start_time > 0);
        assert!(me.is_alive());
        let impostor = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive(), "a reused pid must not look alive");
    }

    #[test]
    fn terminate_reports_sigterm() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let ending = terminate(&mut child, Duration::from_secs(5)).unwrap();
        assert!(matches!(ending, Ending::Signaled { signal: 15, .. }));
        assert_eq!(ending.to_string(), "was killed by SIGTERM");
    }

    #[test]
    fn exit_codes_are_reported() {
        let status = Command::new("sh").args(["-c", "exit 3"]).status().unwrap();
        let ending = Ending::from_status(status);
        assert_eq!(ending, Ending::Exited { code: 3 });
        assert!(!ending.is_success());
    }

    #[test]
    fn recorded_process_is_terminated() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let id = ProcessId::of(child.id()).unwrap();
        assert!(terminate_recorded(&id, Duration::from_secs(5)));
        assert!(!id.is_alive());
        // Reaped already when it is our child, as here.
        let _ = child.try_wait();
        assert!(
            !terminate_recorded(&id, Duration::from_secs(1)),
            "gone is gone"
        );
    }
}
