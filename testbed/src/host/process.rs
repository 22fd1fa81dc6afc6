//! Processes the testbed starts: an identity that survives pid reuse (pid
//! plus kernel start time), stopping one (SIGTERM, then SIGKILL), and a
//! human account of how a child ended.

use std::process::{Child, ExitStatus};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::wait::{until, Check, Waited};

/// A process named by pid and kernel start time, so a recorded pid is never
/// mistaken for an unrelated process that reused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
}

/// Field 22 (start time) and field 3 (state letter) of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Clock ticks since boot at which the process started.
    pub start_time: u64,
    /// `R`, `S`, `Z`, ...
    pub state: char,
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
#[must_use]
pub fn stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // rest starts at field 3, so field 22 is index 19.
    let start_time = fields.get(19)?.parse().ok()?;
    Some(ProcStat { start_time, state })
}

/// Outcome of [`ProcessId::stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It was not running (or the pid now belongs to another process).
    NotRunning,
    /// It exited after SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
}

/// A process that could not be stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The signal could not be sent.
    #[error("sending {signal} to pid {pid}: {source}")]
    Signal {
        /// The process.
        pid: u32,
        /// Which signal.
        signal: &'static str,
        /// Why.
        source: nix::Error,
    },
    /// It outlived SIGKILL (stuck in the kernel).
    #[error("pid {0} still runs 2 s after SIGKILL")]
    Unkillable(u32),
}

impl ProcessId {
    /// The identity of a running process, or `None` if it does not exist.
    #[must_use]
    pub fn of(pid: u32) -> Option<Self> {
        stat(pid).map(|s| Self {
            pid,
            start_time: s.start_time,
        })
    }

    /// The identity of a child just spawned (start time 0 if it already
    /// vanished, which no live process matches).
    #[must_use]
    pub fn of_child(child: &Child) -> Self {
        Self::of(child.id()).unwrap_or(Self {
            pid: child.id(),
            start_time: 0,
        })
    }

    /// The identity of this process.
    #[must_use]
    pub fn current() -> Self {
        Self::of(std::process::id()).unwrap_or(Self {
            pid: std::process::id(),
            start_time: 0,
        })
    }

    /// Whether this very process still exists (a zombie counts as exited).
    #[must_use]
    pub fn is_alive(&self) -> bool {
        matches!(
            stat(self.pid),
            Some(s) if s.start_time == self.start_time && s.state != 'Z' && s.state != 'X'
        )
    }

    /// Sends `signal` if the process is still the one recorded.
    pub fn signal(&self, signal: Signal) -> bool {
        self.is_alive() && kill(nix_pid(self.pid), signal).is_ok()
    }

    /// Stops it if it is still the process recorded: SIGTERM, then SIGKILL
    /// after `grace`. Works for processes that are not our children (left
    /// by a crashed supervisor) and reaps those that are.
    ///
    /// # Errors
    /// A signal cannot be sent, or the process outlives SIGKILL.
    pub fn stop(&self, grace: Duration) -> Result<Stopped, StopError> {
        if self.pid == 0 || !self.is_alive() {
            reap(self.pid);
            return Ok(Stopped::NotRunning);
        }
        let signal = |signal: Signal| {
            kill(nix_pid(self.pid), signal).map_err(|source| StopError::Signal {
                pid: self.pid,
                signal: signal.as_str(),
                source,
            })
        };
        signal(Signal::SIGTERM)?;
        if self.wait_gone(grace) {
            return Ok(Stopped::Terminated);
        }
        if self.is_alive() {
            signal(Signal::SIGKILL)?;
        }
        if self.wait_gone(Duration::from_secs(2)) {
            Ok(Stopped::Killed)
        } else {
            Err(StopError::Unkillable(self.pid))
        }
    }

    fn wait_gone(&self, timeout: Duration) -> bool {
        let gone = until(timeout, Duration::from_millis(10), || {
            reap(self.pid);
            if self.is_alive() {
                Check::<(), ()>::Pending
            } else {
                Check::Ready(())
            }
        });
        gone.is_ok()
    }
}

fn nix_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(-1))
}

fn reap(pid: u32) {
    // Only succeeds when the process is our child; harmless otherwise.
    if pid > 0 {
        let _ = waitpid(nix_pid(pid), Some(WaitPidFlag::WNOHANG));
    }
}

pub use contract::process::Ending;

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
    let waited = until(limit, Duration::from_millis(10), || {
        match child.try_wait() {
            Ok(Some(status)) => Check::Ready(status),
            Ok(None) => Check::Pending,
            Err(e) => Check::Failed(e),
        }
    });
    match waited {
        Ok(status) => Ok(Some(status)),
        Err(Waited::TimedOut) => Ok(None),
        Err(Waited::Failed(e)) => Err(e),
    }
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
    fn a_recorded_process_is_stopped_once() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let id = ProcessId::of(child.id()).unwrap();
        assert_eq!(
            id.stop(Duration::from_secs(5)).unwrap(),
            Stopped::Terminated
        );
        assert!(!id.is_alive());
        // Reaped already when it is our child, as here.
        let _ = child.try_wait();
        assert_eq!(
            id.stop(Duration::from_secs(1)).unwrap(),
            Stopped::NotRunning,
            "gone is gone"
        );
    }

    #[test]
    fn stat_reads_this_process() {
        let me = stat(std::process::id()).unwrap();
        assert!(me.start_time > 0 && me.state.is_ascii_uppercase());
        assert!(stat(u32::MAX).is_none());
    }
}
