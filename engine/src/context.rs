//! State every backend's loop shares: the stop flag, the cumulative
//! counters, and their publication on a timer (never per packet).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_layout::{Counters, Measured};

/// Where counters go when published (the engine's shm slot in production, a
/// vector in tests).
pub trait StatsSink {
    /// Publishes a consistent copy of `counters`, of which only `measured`
    /// are measurements.
    fn publish(&mut self, counters: &Counters, measured: Measured);

    /// The backend accepts connections from now on (the supervisor waits for
    /// this before attaching a load generator).
    fn ready(&mut self) {}
}

/// The loop's view of the world outside its sockets.
pub struct ServeContext {
    stop: Arc<AtomicBool>,
    /// Cumulative counters, owned by the loop; published on a timer.
    pub counters: Counters,
    /// Which of them the backend measures (the others are published as
    /// not measured).
    pub measured: Measured,
    sink: Box<dyn StatsSink>,
    interval: Duration,
    started: Instant,
    next_publish: Instant,
}

impl ServeContext {
    /// A context publishing to `sink` every `interval`, stopping when `stop`
    /// becomes true (set by the SIGTERM handler).
    #[must_use]
    pub fn new(stop: Arc<AtomicBool>, sink: Box<dyn StatsSink>, interval: Duration) -> Self {
        let now = Instant::now();
        Self {
            stop,
            counters: Counters::default(),
            measured: Measured::NOTHING,
            sink,
            interval,
            started: now,
            next_publish: now,
        }
    }

    /// Whether the engine was asked to stop.
    #[must_use]
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Publishes if the interval has passed. Cheap enough for every loop
    /// iteration: one clock read.
    pub fn maybe_publish(&mut self) {
        let now = Instant::now();
        if now >= self.next_publish {
            self.next_publish = now + self.interval;
            self.publish_at(now);
        }
    }

    /// Tells whoever watches that the backend now accepts connections. Each
    /// backend calls it once its port or socket is really up, not before.
    pub fn mark_ready(&mut self) {
        self.publish_now();
        self.sink.ready();
    }

    /// Publishes now (final stats, or after a notable event).
    pub fn publish_now(&mut self) {
        self.publish_at(Instant::now());
    }

    fn publish_at(&mut self, now: Instant) {
        self.counters.elapsed_ns =
            u64::try_from(now.duration_since(self.started).as_nanos()).unwrap_or(u64::MAX);
        self.sink.publish(&self.counters, self.measured);
    }
}
