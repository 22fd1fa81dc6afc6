//! Processes the testbed starts, identified by pid and start time.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// Start time of `pid` (field 22 of `/proc/<pid>/stat`) and its state letter.
pub fn stat(pid: i32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // rest starts at field 3, so field 22 is index 19.
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// Whether `pid` is the process that started at `start_time` and has not
/// exited (a zombie counts as exited).
pub fn alive(pid: i32, start_time: u64) -> bool {
    matches!(stat(pid), Some((s, st)) if s == start_time && st != 'Z' && st != 'X')
}

fn reap(pid: i32) {
    // Only succeeds when the process is our child; harmless otherwise.
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

fn wait_gone(pid: i32, start_time: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    // Bounded by the deadline; 10 ms steps.
    while Instant::now() < deadline {
        reap(pid);
        if !alive(pid, start_time) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    reap(pid);
    !alive(pid, start_time)
}

/// Outcome of [`stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It was not running (or the pid now belongs to another process).
    NotRunning,
    /// It exited after SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
}

/// Stops the process `pid` if it is still the one that started at
/// `start_time`: SIGTERM, then SIGKILL after `grace`.
pub fn stop(pid: i32, start_time: u64, grace: Duration) -> Result<Stopped, String> {
    if pid <= 0 || !alive(pid, start_time) {
        reap(pid.max(1));
        return Ok(Stopped::NotRunning);
    }
    let p = Pid::from_raw(pid);
    kill(p, Signal::SIGTERM).map_err(|e| format!("SIGTERM: {e}"))?;
    if wait_gone(pid, start_time, grace) {
        return Ok(Stopped::Terminated);
    }
    if alive(pid, start_time) {
        kill(p, Signal::SIGKILL).map_err(|e| format!("SIGKILL: {e}"))?;
    }
    if wait_gone(pid, start_time, Duration::from_secs(2)) {
        Ok(Stopped::Killed)
    } else {
        Err("still running 2 s after SIGKILL".into())
    }
}
