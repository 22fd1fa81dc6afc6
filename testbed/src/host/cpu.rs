//! How busy a process kept its core: the CPU time it used over a wall
//! interval (for processes that sleep when idle), and the share of its
//! poll loop's passes that found work (for processes that spin, whose CPU
//! time is always the whole interval).

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat`'s times.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// User plus system CPU time `pid` has used so far (fields 14 and 15 of
/// `/proc/<pid>/stat`); `None` when it does not exist.
#[must_use]
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3: utime (14) and stime (15) are indexes 11, 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = ticks_per_second();
    let total = utime.saturating_add(stime);
    Some(
        Duration::from_secs(total / ticks)
            + Duration::from_nanos((total % ticks) * 1_000_000_000 / ticks),
    )
}

/// CPU time of every child this process has reaped so far.
#[must_use]
pub fn reaped_children_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(Duration::ZERO, |u| {
        let to = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
        };
        to(u.user_time()) + to(u.system_time())
    })
}

/// `cpu` as a share of one core over `wall` (0..=1; `None` for an empty
/// interval).
#[must_use]
pub fn share(cpu: Duration, wall: Duration) -> Option<f64> {
    (!wall.is_zero()).then(|| (cpu.as_secs_f64() / wall.as_secs_f64()).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_cpu_and_shares_are_bounded() {
        let start = process_cpu(std::process::id()).unwrap();
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(process_cpu(std::process::id()).unwrap() >= start);
        assert_eq!(
            share(Duration::from_secs(3), Duration::from_secs(2)),
            Some(1.0)
        );
        assert_eq!(share(Duration::ZERO, Duration::ZERO), None);
        assert!(process_cpu(u32::MAX).is_none());
    }
}
