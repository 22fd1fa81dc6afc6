//! A spinning loop's busy time, for the share of its core it spends
//! working.
//!
//! Counting passes cannot give that share: an idle pass of a poll loop is a
//! few hundred nanoseconds, a pass that serves a burst many microseconds,
//! so a loop busy most of the time can still have found work in only a few
//! percent of its passes. [`PassClock`] times each pass instead, with one
//! clock read per pass: the time from the end of the previous pass to the
//! end of this one is added to [`Counters::busy_ns`] when this pass found
//! work. With the producer's `elapsed_ns` it gives the share of the core
//! the loop was working.

use std::time::Instant;

use crate::Counters;

/// Times a loop's passes into its counters (`busy_loops`, `idle_loops`,
/// `busy_ns`).
#[derive(Debug, Clone, Copy)]
pub struct PassClock {
    last: Instant,
}

impl PassClock {
    /// The clock, its first pass beginning now.
    #[must_use]
    pub fn start() -> Self {
        Self {
            last: Instant::now(),
        }
    }

    /// Ends a pass now: counts it, and its time when it `worked`.
    pub fn end_pass(&mut self, worked: bool, counters: &mut Counters) {
        self.end_pass_at(worked, Instant::now(), counters);
    }

    /// Ends a pass at `now` (a time the loop already read).
    pub fn end_pass_at(&mut self, worked: bool, now: Instant, counters: &mut Counters) {
        if worked {
            counters.busy_loops += 1;
            let ns = now.saturating_duration_since(self.last).as_nanos();
            counters.busy_ns = counters
                .busy_ns
                .saturating_add(u64::try_from(ns).unwrap_or(u64::MAX));
        } else {
            counters.idle_loops += 1;
        }
        self.last = now;
    }
}

/// The share (0..=1) of `elapsed_ns` that was busy; `None` over no time.
#[must_use]
pub fn busy_share(busy_ns: u64, elapsed_ns: u64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    (elapsed_ns > 0).then(|| (busy_ns as f64 / elapsed_ns as f64).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_the_passes_that_worked_count_their_time() {
        let t0 = Instant::now();
        let mut clock = PassClock { last: t0 };
        let mut c = Counters::default();
        clock.end_pass_at(false, t0 + Duration::from_nanos(200), &mut c);
        clock.end_pass_at(true, t0 + Duration::from_micros(10), &mut c);
        clock.end_pass_at(false, t0 + Duration::from_micros(11), &mut c);
        clock.end_pass_at(true, t0 + Duration::from_micros(15), &mut c);
        assert_eq!((c.busy_loops, c.idle_loops), (2, 2));
        assert_eq!(c.busy_ns, 9_800 + 4_000);
        // Half the passes worked, but nearly all the time was work.
        let share = busy_share(c.busy_ns, 15_000).unwrap();
        assert!((share - 0.92).abs() < 0.001, "{share}");
        assert_eq!(busy_share(5, 0), None);
        assert_eq!(busy_share(20, 10), Some(1.0), "clamped");
    }
}
