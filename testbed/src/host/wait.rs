//! The one bounded wait: check something every interval until it is ready,
//! has failed, or the time is up. Starting a child and waiting for it to be
//! ready (the emulator, the engine, a background supervisor, a peer's
//! server) and waiting for one to finish all go through [`until`], so every
//! wait of the testbed has a bound.

use std::time::{Duration, Instant};

/// What one look found.
#[derive(Debug)]
pub enum Check<T, E> {
    /// Done, with this value.
    Ready(T),
    /// It will never be ready, for this reason.
    Failed(E),
    /// Not yet: look again.
    Pending,
}

/// How a wait that did not succeed ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited<E> {
    /// The check failed.
    Failed(E),
    /// The limit passed with the check still pending.
    TimedOut,
}

/// Calls `check` every `every` until it is ready or failed, at most for
/// `limit` (the check runs once more at the deadline, so a limit of zero
/// still looks once).
///
/// # Errors
/// [`Waited::Failed`] with the check's reason, or [`Waited::TimedOut`].
pub fn until<T, E>(
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Check<T, E>,
) -> Result<T, Waited<E>> {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Check::Ready(value) => return Ok(value),
            Check::Failed(reason) => return Err(Waited::Failed(reason)),
            Check::Pending => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Waited::TimedOut);
        }
        std::thread::sleep(every.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_failed_and_timed_out() {
        let mut n = 0;
        let got: Result<u32, Waited<()>> = until(Duration::from_secs(5), Duration::ZERO, || {
            n += 1;
            if n == 3 {
                Check::Ready(n)
            } else {
                Check::Pending
            }
        });
        assert_eq!(got, Ok(3));
        let failed: Result<(), _> = until(Duration::from_secs(5), Duration::ZERO, || {
            Check::Failed("gone")
        });
        assert_eq!(failed, Err(Waited::Failed("gone")));
        let started = Instant::now();
        let timed_out: Result<(), Waited<()>> =
            until(Duration::from_millis(30), Duration::from_millis(5), || {
                Check::Pending
            });
        assert_eq!(timed_out, Err(Waited::TimedOut));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
