//! The run: connections, pacing, reply checking, timeouts, over any
//! [`Stack`].
//!
//! One thread drives every connection. Each connection keeps a FIFO of its
//! requests in flight (length, latency origin, send time); replies come back
//! in order on a TCP connection, so each reply is checked against the front
//! of that FIFO. Two phases share the connections: the warm-up, then the
//! measured phase; each ends only when everything it issued is resolved
//! (answered, mismatched, timed out or lost), so no warm-up reply is ever
//! measured.
//!
//! Persistent connections are all opened before the first request; a lost
//! one is never reopened. Short connections (`--pattern short`) open when a
//! slot has a request to send and close after their last reply; the slot's
//! next connection opens on the next turn. Their handshake is timed apart
//! from the request's round trip, which starts at the write of the
//! request's first byte as always.
//!
//! Waiting: a stack that reports readiness (the kernel's epoll) sleeps in
//! [`Stack::poll`] until a socket is ready, the next open-loop send is due,
//! the oldest request times out or the next publication is due; otherwise
//! the loop never sleeps and tries every connection with work.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{encode_request, ReplyDecoder};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shm_layout::{Counters, LatencySummary, LocalHistogram, PassClock, ProducerState};

use crate::config::{Config, Lifetime, Pacing};
use crate::progress::Progress;
use crate::result::{RunResult, ShortConnections, StoppedBy};
use crate::stack::{Connecting, Handle, Stack, Transfer};
use crate::telemetry::Telemetry;
use crate::LoadgenError;

/// Live numbers are published this often.
const TICK: Duration = Duration::from_millis(100);
/// Longest sleep in blocking mode.
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// Open loop: most requests issued in one turn when behind schedule.
const MAX_BURST: u64 = 1024;
const READ_BUF: usize = 64 * 1024;
/// Reads from one socket per turn before the others get theirs.
const READS_PER_TURN: usize = 64;
/// Longest wait, at the end, for the last connections' closes.
const FINISH: Duration = Duration::from_secs(2);
/// Longest wait in one poll while persistent connections are opened.
const CONNECT_POLL: Duration = Duration::from_millis(10);

struct InFlight {
    len: u32,
    /// Open loop: the intended send time, the latency's origin whatever
    /// happened since (no coordinated omission).
    intended: Option<Instant>,
    /// Taken just before the write call that carries the request's first
    /// byte (until then, when it was queued): the closed loop's latency
    /// origin, and where the timeout counts from. Never before: with N
    /// connections, request k's round trip must not include the k − 1
    /// writes of the others.
    sent_at: Instant,
    /// Where its bytes start in the connection's output buffer.
    start: usize,
}

impl InFlight {
    /// Where its latency counts from.
    fn origin(&self) -> Instant {
        self.intended.unwrap_or(self.sent_at)
    }
}

/// Where a slot's connection stands.
#[derive(Debug, Clone, Copy)]
enum Link {
    /// None open (short connections between two; a lost persistent one).
    Closed,
    /// Handshake under way since then.
    Opening(Instant),
    /// Established.
    Open,
}

/// One connection slot: persistent, one connection for the whole run;
/// short, one connection after another.
struct Conn {
    handle: Option<Handle>,
    link: Link,
    out: Vec<u8>,
    out_pos: usize,
    inflight: VecDeque<InFlight>,
    /// Requests at the back of `inflight` none of whose bytes the stack
    /// has taken yet.
    unwritten: usize,
    decoder: ReplyDecoder,
    /// Persistent: false once its connection was lost (never reopened).
    alive: bool,
    wants_write: bool,
    /// Requests issued on its current connection.
    carried: u32,
}

impl Conn {
    fn new() -> Self {
        Self {
            handle: None,
            link: Link::Closed,
            out: Vec::with_capacity(2048),
            out_pos: 0,
            inflight: VecDeque::new(),
            unwritten: 0,
            decoder: ReplyDecoder::default(),
            alive: true,
            wants_write: false,
            carried: 0,
        }
    }

    /// Gives every request not yet written the send time `now`: the write
    /// about to happen carries its first byte (or, if the stack takes
    /// less, it is stamped again before the next write).
    fn stamp_unwritten(&mut self, now: Instant) {
        let first = self.inflight.len() - self.unwritten;
        for request in self.inflight.range_mut(first..) {
            request.sent_at = now;
        }
    }

    /// After a write: the requests whose first byte the stack took are
    /// written, their send time final.
    fn note_written(&mut self) {
        while self.unwritten > 0 {
            let first = self.inflight.len() - self.unwritten;
            if self.inflight[first].start >= self.out_pos {
                break;
            }
            self.unwritten -= 1;
        }
    }

    /// Forgets the connection: what it had in flight and unsent.
    fn clear(&mut self) -> u64 {
        let lost = self.inflight.len() as u64;
        self.inflight.clear();
        self.unwritten = 0;
        self.out.clear();
        self.out_pos = 0;
        self.decoder = ReplyDecoder::default();
        self.handle = None;
        self.link = Link::Closed;
        self.wants_write = false;
        self.carried = 0;
        lost
    }
}

/// Counts of one phase.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    sent: u64,
    answered: u64,
    answered_bytes: u64,
    failed: u64,
    mismatches: u64,
    timeouts: u64,
    resets: u64,
    lost_in_flight: u64,
    unsent: u64,
    unexpected_replies: u64,
    bytes_sent: u64,
    bytes_received: u64,
    /// Short connections that carried all their requests and closed.
    completed: u64,
    connect_refused: u64,
    connect_failed: u64,
    connect_timeouts: u64,
}

/// How a connection ended, for the counters.
enum Loss {
    /// The server reset or closed it.
    Reset,
    /// Its oldest request outlived the timeout.
    Timeout,
    /// Its handshake was refused.
    Refused,
    /// Its handshake failed another way, or could not start.
    ConnectFailed,
    /// Its handshake outlived the timeout.
    ConnectTimeout,
}

/// The load generator's state during a run.
pub struct Driver<S: Stack> {
    cfg: Config,
    stack: S,
    conns: Vec<Conn>,
    /// The slot of each open handle (`usize::MAX`: none).
    owner: Vec<usize>,
    ready: Vec<Handle>,
    rng: SmallRng,
    tag: u64,
    phase: Tally,
    warm: Tally,
    measuring: bool,
    hist: LocalHistogram,
    interval_hist: LocalHistogram,
    connect_hist: LocalHistogram,
    telemetry: Box<dyn Telemetry>,
    progress: Progress,
    stop: Arc<AtomicBool>,
    buf: Box<[u8]>,
    replies: Vec<u32>,
    /// Connections to read again next turn although the stack did not
    /// report them.
    again: Vec<usize>,
    opened: u64,
    closed: u64,
    /// The spinning loop's passes and busy time (measured phase only).
    passes: Counters,
    pass_clock: PassClock,
    started: Instant,
    next_tick: Instant,
    round_robin: usize,
}

impl<S: Stack> Driver<S> {
    /// A driver over `stack`. Persistent connections are all opened here
    /// (bounded by the timeout); short ones open as the run needs them.
    ///
    /// # Errors
    /// [`LoadgenError::Connect`] when a persistent connection cannot be made.
    pub fn new(
        cfg: Config,
        stack: S,
        telemetry: Box<dyn Telemetry>,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, LoadgenError> {
        let progress = Progress::new(cfg.progress, cfg.packets);
        let now = Instant::now();
        let mut driver = Self {
            rng: SmallRng::seed_from_u64(cfg.seed),
            conns: (0..cfg.connections).map(|_| Conn::new()).collect(),
            cfg,
            stack,
            owner: Vec::new(),
            ready: Vec::new(),
            tag: 0,
            phase: Tally::default(),
            warm: Tally::default(),
            measuring: false,
            hist: LocalHistogram::new(),
            interval_hist: LocalHistogram::new(),
            connect_hist: LocalHistogram::new(),
            telemetry,
            progress,
            stop,
            buf: vec![0; READ_BUF].into_boxed_slice(),
            replies: Vec::new(),
            again: Vec::new(),
            opened: 0,
            closed: 0,
            passes: Counters::default(),
            pass_clock: PassClock::start(),
            started: now,
            next_tick: now,
            round_robin: 0,
        };
        if driver.cfg.lifetime == Lifetime::Persistent {
            driver.open_all()?;
        }
        Ok(driver)
    }

    /// Opens every persistent connection and waits for their handshakes.
    fn open_all(&mut self) -> Result<(), LoadgenError> {
        let addr = self.cfg.connect;
        let connect_err = |index, source| LoadgenError::Connect {
            addr,
            index,
            source,
        };
        for index in 0..self.conns.len() {
            let handle = self
                .stack
                .open()
                .map_err(|e| connect_err(index, io::Error::other(e.to_string())))?;
            self.attach(index, handle, Instant::now());
        }
        let deadline = Instant::now() + self.cfg.timeout;
        let mut pending: Vec<usize> = (0..self.conns.len()).collect();
        while !pending.is_empty() {
            let mut still = Vec::with_capacity(pending.len());
            for index in pending {
                let Some(handle) = self.conns[index].handle else {
                    continue;
                };
                match self.stack.connecting(handle) {
                    Connecting::Established => self.conns[index].link = Link::Open,
                    Connecting::Pending => still.push(index),
                    Connecting::Refused => {
                        return Err(connect_err(index, io::ErrorKind::ConnectionRefused.into()))
                    }
                    Connecting::Failed => {
                        return Err(connect_err(index, io::Error::other("the handshake failed")))
                    }
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(connect_err(pending[0], io::ErrorKind::TimedOut.into()));
            }
            self.ready.clear();
            self.stack
                .poll(CONNECT_POLL.min(deadline - now), &mut self.ready);
        }
        for index in 0..self.conns.len() {
            self.want_writable(index, false);
        }
        Ok(())
    }

    /// Gives slot `index` the new connection `handle`, opened at `now`.
    fn attach(&mut self, index: usize, handle: Handle, now: Instant) {
        if self.owner.len() <= handle.0 {
            self.owner.resize(handle.0 + 1, usize::MAX);
        }
        self.owner[handle.0] = index;
        let conn = &mut self.conns[index];
        conn.handle = Some(handle);
        conn.link = Link::Opening(now);
        conn.wants_write = true;
        self.opened += 1;
    }

    /// Ends slot `index`'s connection: in order after its last reply
    /// (`orderly`), at once otherwise; returns what it had in flight.
    fn detach(&mut self, index: usize, orderly: bool) -> u64 {
        if let Some(handle) = self.conns[index].handle {
            if orderly {
                self.stack.close(handle);
            } else {
                self.stack.abort(handle);
            }
            if let Some(owner) = self.owner.get_mut(handle.0) {
                *owner = usize::MAX;
            }
            self.closed += 1;
        }
        self.conns[index].clear()
    }

    fn want_writable(&mut self, index: usize, want: bool) {
        let conn = &mut self.conns[index];
        if let Some(handle) = conn.handle {
            if want != conn.wants_write {
                self.stack.want_writable(handle, want);
                conn.wants_write = want;
            }
        }
    }

    /// Runs the warm-up, then the measured phase; returns the result.
    pub fn run(mut self) -> RunResult {
        let mut stopped_by = StoppedBy::Packets;
        if self.cfg.warmup > 0 {
            self.telemetry.set_state(ProducerState::Starting);
            self.progress.phase("warm-up", Some(self.cfg.warmup));
            stopped_by = self.run_phase(Some(self.cfg.warmup), None);
            self.warm = std::mem::take(&mut self.phase);
        }
        let mut elapsed = Duration::ZERO;
        if matches!(stopped_by, StoppedBy::Packets) {
            self.measuring = true;
            self.started = Instant::now();
            // Busy time is over the measured phase, as `elapsed_ns` is.
            self.passes = Counters::default();
            self.pass_clock = PassClock::start();
            self.next_tick = self.started;
            self.hist = LocalHistogram::new();
            self.interval_hist = LocalHistogram::new();
            self.connect_hist = LocalHistogram::new();
            self.telemetry.set_state(ProducerState::Running);
            self.progress.phase("run", self.cfg.packets);
            stopped_by = self.run_phase(self.cfg.packets, self.cfg.duration);
            elapsed = self.started.elapsed();
        } else if let Some(packets) = self.cfg.packets {
            // The warm-up already failed: nothing of the run was sent.
            self.phase.unsent = packets;
            self.phase.failed += packets;
        }
        self.publish();
        self.progress.finish();
        let result = self.result(elapsed, stopped_by);
        // Every connection ends in order (a userspace stack's would
        // otherwise linger on the server until its idle timeout).
        for index in 0..self.conns.len() {
            self.detach(index, true);
        }
        self.stack.finish(FINISH);
        self.telemetry.set_state(if result.success() {
            ProducerState::Finished
        } else {
            ProducerState::Failed
        });
        result
    }

    fn result(&self, elapsed: Duration, stopped_by: StoppedBy) -> RunResult {
        let t = &self.phase;
        let w = &self.warm;
        let secs = elapsed.as_secs_f64();
        let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let short = match self.cfg.lifetime {
            Lifetime::Persistent => None,
            Lifetime::Short { requests } => Some(ShortConnections {
                requests_per_connection: requests,
                connections_completed: t.completed,
                connections_per_s: per_s(t.completed),
                connect: self.connect_summary(),
                connect_refused: t.connect_refused + w.connect_refused,
                connect_failed: t.connect_failed + w.connect_failed,
                connect_timeouts: t.connect_timeouts + w.connect_timeouts,
            }),
        };
        RunResult {
            packets_requested: self.cfg.packets,
            sent: t.sent,
            answered: t.answered,
            failed: t.failed + w.failed,
            mismatches: t.mismatches + w.mismatches,
            timeouts: t.timeouts + w.timeouts,
            resets: t.resets + w.resets,
            lost_in_flight: t.lost_in_flight + w.lost_in_flight,
            unsent: t.unsent + w.unsent,
            unexpected_replies: t.unexpected_replies + w.unexpected_replies,
            bytes_sent: t.bytes_sent,
            bytes_received: t.bytes_received,
            elapsed_s: secs,
            messages_per_s: per_s(t.answered),
            goodput_kb_per_s: per_s(t.answered_bytes) / 1000.0,
            latency: self.hist.summary(),
            stack: self.stack.name(),
            pmd: self.stack.pmd(),
            mode: self.cfg.pacing.mode().name(),
            rate: self.cfg.pacing.rate(),
            pattern: self.cfg.lifetime.pattern().name(),
            connections: self.cfg.connections,
            short,
            busy_poll: self.cfg.busy_poll,
            seed: self.cfg.seed,
            core: self.cfg.core,
            warmup: self.cfg.warmup,
            warmup_answered: w.answered,
            min_size: self.cfg.min_size,
            max_size: self.cfg.max_size,
            timeout_ms: u64::try_from(self.cfg.timeout.as_millis()).unwrap_or(u64::MAX),
            stopped_by,
        }
    }

    fn connect_summary(&self) -> LatencySummary {
        self.connect_hist.summary()
    }

    /// Issues up to `count` requests (or until `limit` passes), and returns
    /// once every issued request is resolved.
    fn run_phase(&mut self, count: Option<u64>, limit: Option<Duration>) -> StoppedBy {
        let t0 = Instant::now();
        let deadline = limit.map(|d| t0 + d);
        let mut issued = 0u64;
        let mut stopped_by = StoppedBy::Packets;
        let mut issuing = true;
        loop {
            let now = Instant::now();
            if issuing {
                if count.is_some_and(|n| issued >= n) {
                    issuing = false;
                } else if deadline.is_some_and(|d| now >= d) {
                    issuing = false;
                    stopped_by = StoppedBy::Duration;
                } else if self.stop.load(Ordering::Relaxed) {
                    issuing = false;
                    stopped_by = StoppedBy::Signal;
                } else if !self.conns.iter().any(|c| c.alive) {
                    issuing = false;
                    stopped_by = StoppedBy::Failure;
                }
            }
            if issuing {
                issued += self.issue(t0, now, issued, count);
            }
            let in_flight = self.in_flight();
            if !issuing && in_flight == 0 {
                break;
            }
            if !self.conns.iter().any(|c| c.alive) {
                // Everything in flight was counted lost when its connection
                // went; nothing can be sent any more.
                if count.is_some_and(|n| issued < n) || issuing {
                    stopped_by = StoppedBy::Failure;
                }
                break;
            }
            let progressed = self.exchange(t0, issued, count, issuing);
            // One clock read ends the pass and expires what waited too long.
            let after = Instant::now();
            if !self.stack.reports_readiness() {
                self.pass_clock
                    .end_pass_at(progressed, after, &mut self.passes);
            }
            self.expire(after);
            self.maybe_tick();
        }
        if matches!(stopped_by, StoppedBy::Signal | StoppedBy::Failure) {
            if let Some(n) = count {
                let unsent = n.saturating_sub(issued);
                self.phase.unsent += unsent;
                self.phase.failed += unsent;
            }
        }
        stopped_by
    }

    fn in_flight(&self) -> u64 {
        self.conns.iter().map(|c| c.inflight.len() as u64).sum()
    }

    /// Issues what is due now; returns how many requests it issued.
    fn issue(&mut self, t0: Instant, now: Instant, issued: u64, count: Option<u64>) -> u64 {
        let left = count.map_or(u64::MAX, |n| n - issued);
        let mut new = 0u64;
        match self.cfg.pacing {
            Pacing::Closed => {
                for index in 0..self.conns.len() {
                    if new == left {
                        break;
                    }
                    let conn = &self.conns[index];
                    if conn.alive && conn.inflight.is_empty() {
                        self.enqueue(index, None, now);
                        new += 1;
                    }
                }
            }
            Pacing::Open { rate } => {
                while new < left.min(MAX_BURST) {
                    let due = t0 + Duration::from_secs_f64((issued + new) as f64 / rate);
                    if due > now {
                        break;
                    }
                    let Some(index) = self.next_alive() else {
                        break;
                    };
                    self.enqueue(index, Some(due), now);
                    new += 1;
                }
            }
        }
        new
    }

    /// When the next open-loop request is due.
    fn next_due(&self, t0: Instant, issued: u64) -> Option<Instant> {
        match self.cfg.pacing {
            Pacing::Closed => None,
            Pacing::Open { rate } => Some(t0 + Duration::from_secs_f64(issued as f64 / rate)),
        }
    }

    fn next_alive(&mut self) -> Option<usize> {
        let n = self.conns.len();
        for step in 0..n {
            let index = (self.round_robin + step) % n;
            if self.conns[index].alive {
                self.round_robin = (index + 1) % n;
                return Some(index);
            }
        }
        None
    }

    /// Queues one request on slot `index` (opening a short connection
    /// first when it has none); `intended` is the open loop's schedule. Its
    /// send time is taken when it is written.
    fn enqueue(&mut self, index: usize, intended: Option<Instant>, now: Instant) {
        let len = self.rng.gen_range(self.cfg.min_size..=self.cfg.max_size);
        if self.conns[index].handle.is_none() {
            match self.stack.open() {
                Ok(handle) => self.attach(index, handle, now),
                Err(_) => {
                    // Counted as a failed connect carrying this request.
                    self.phase.connect_failed += 1;
                    self.phase.failed += 1;
                    return;
                }
            }
        }
        let conn = &mut self.conns[index];
        let start = conn.out.len();
        // The sizes were validated against the protocol's range.
        if encode_request(len, self.tag, &mut conn.out).is_err() {
            return;
        }
        self.tag += 1;
        conn.inflight.push_back(InFlight {
            len,
            intended,
            sent_at: now,
            start,
        });
        conn.unwritten += 1;
        conn.carried += 1;
        self.phase.sent += 1;
    }

    /// Writes pending requests, moves the stack (waiting on readiness
    /// when it reports it), finishes handshakes and reads replies. Returns
    /// whether anything arrived.
    fn exchange(&mut self, t0: Instant, issued: u64, count: Option<u64>, issuing: bool) -> bool {
        for index in 0..self.conns.len() {
            let conn = &self.conns[index];
            if matches!(conn.link, Link::Open) && conn.out.len() > conn.out_pos {
                self.flush(index);
            }
        }
        let before = self.phase.answered + self.phase.mismatches + self.phase.unexpected_replies;
        let timeout = if self.again.is_empty() && self.stack.reports_readiness() {
            self.sleep_time(t0, issued, count, issuing)
        } else {
            Duration::ZERO
        };
        self.ready.clear();
        let moved = self.stack.poll(timeout, &mut self.ready);
        let mut touched = std::mem::take(&mut self.again);
        if self.stack.reports_readiness() {
            touched.extend(
                self.ready
                    .iter()
                    .filter_map(|h| self.owner.get(h.0).copied())
                    .filter(|&i| i != usize::MAX),
            );
        } else {
            touched.extend((0..self.conns.len()).filter(|&i| {
                let c = &self.conns[i];
                matches!(c.link, Link::Opening(_)) || !c.inflight.is_empty()
            }));
        }
        let mut established = 0;
        for index in touched {
            if index >= self.conns.len() || self.conns[index].handle.is_none() {
                continue;
            }
            if matches!(self.conns[index].link, Link::Opening(_)) {
                if !self.finish_handshake(index) {
                    continue;
                }
                established += 1;
            }
            self.flush(index);
            if self.conns[index].handle.is_some() {
                self.read(index);
            }
        }
        moved
            || established > 0
            || self.phase.answered + self.phase.mismatches + self.phase.unexpected_replies > before
    }

    /// Looks at slot `index`'s handshake; returns whether it is now
    /// established.
    fn finish_handshake(&mut self, index: usize) -> bool {
        let (Some(handle), Link::Opening(since)) =
            (self.conns[index].handle, self.conns[index].link)
        else {
            return false;
        };
        match self.stack.connecting(handle) {
            Connecting::Pending => false,
            Connecting::Established => {
                self.conns[index].link = Link::Open;
                if self.measuring {
                    let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    self.connect_hist.record_ns(ns);
                }
                true
            }
            Connecting::Refused => {
                self.lose(index, &Loss::Refused);
                false
            }
            Connecting::Failed => {
                self.lose(index, &Loss::ConnectFailed);
                false
            }
        }
    }

    /// How long blocking mode may sleep: until the next due send, timeout
    /// or publication, at most [`MAX_SLEEP`].
    fn sleep_time(&self, t0: Instant, issued: u64, count: Option<u64>, issuing: bool) -> Duration {
        let now = Instant::now();
        let mut wake = (now + MAX_SLEEP).min(self.next_tick);
        if issuing && !matches!(count, Some(n) if issued >= n) {
            if let Some(due) = self.next_due(t0, issued) {
                wake = wake.min(due);
            }
        }
        for conn in &self.conns {
            if let Some(front) = conn.inflight.front() {
                wake = wake.min(front.sent_at + self.cfg.timeout);
            }
        }
        let sleep = wake.saturating_duration_since(now);
        // epoll_wait counts in whole milliseconds, rounding up: a sleep
        // shorter than that would release open-loop sends up to 1 ms late,
        // in bursts. Spin through the last millisecond instead.
        if sleep < Duration::from_millis(1) {
            Duration::ZERO
        } else {
            sleep - Duration::from_millis(1)
        }
    }

    fn flush(&mut self, index: usize) {
        let Some(handle) = self.conns[index].handle else {
            return;
        };
        if !matches!(self.conns[index].link, Link::Open) {
            return;
        }
        let mut failed = false;
        let conn = &mut self.conns[index];
        while conn.out_pos < conn.out.len() {
            conn.stamp_unwritten(Instant::now());
            match self.stack.send(handle, &conn.out[conn.out_pos..]) {
                Transfer::Moved(n) => {
                    conn.out_pos += n;
                    conn.note_written();
                    self.phase.bytes_sent += n as u64;
                }
                Transfer::WouldBlock => break,
                Transfer::Closed | Transfer::Reset => {
                    failed = true;
                    break;
                }
            }
        }
        if conn.out_pos == conn.out.len() {
            conn.out.clear();
            conn.out_pos = 0;
        }
        if failed {
            self.lose(index, &Loss::Reset);
            return;
        }
        // Ask for writable readiness only while needed.
        let conn = &self.conns[index];
        let wants_write = conn.out_pos < conn.out.len();
        self.want_writable(index, wants_write);
    }

    fn read(&mut self, index: usize) {
        for _ in 0..READS_PER_TURN {
            let Some(handle) = self.conns[index].handle else {
                return;
            };
            match self.stack.recv(handle, &mut self.buf) {
                Transfer::Moved(n) => {
                    let now = Instant::now();
                    self.phase.bytes_received += n as u64;
                    self.replies.clear();
                    let replies = &mut self.replies;
                    self.conns[index]
                        .decoder
                        .feed(&self.buf[..n], |r| replies.push(r));
                    for i in 0..self.replies.len() {
                        let reply = self.replies[i];
                        self.check_reply(index, reply, now);
                    }
                }
                Transfer::WouldBlock => return,
                Transfer::Closed | Transfer::Reset => {
                    self.lose(index, &Loss::Reset);
                    return;
                }
            }
        }
        // Not drained: epoll (edge-triggered) will not report it again.
        self.again.push(index);
    }

    fn check_reply(&mut self, index: usize, reply: u32, now: Instant) {
        let Some(request) = self.conns[index].inflight.pop_front() else {
            self.phase.unexpected_replies += 1;
            self.phase.mismatches += 1;
            return;
        };
        if reply != request.len {
            self.phase.mismatches += 1;
            self.phase.failed += 1;
            return;
        }
        self.phase.answered += 1;
        self.phase.answered_bytes += u64::from(request.len);
        if self.measuring {
            let ns = u64::try_from(now.saturating_duration_since(request.origin()).as_nanos())
                .unwrap_or(u64::MAX);
            self.hist.record_ns(ns);
            self.interval_hist.record_ns(ns);
            self.telemetry.record_latency_ns(ns);
        }
        if let Lifetime::Short { requests } = self.cfg.lifetime {
            let conn = &self.conns[index];
            if conn.carried >= requests && conn.inflight.is_empty() {
                self.detach(index, true);
                self.phase.completed += 1;
            }
        }
    }

    /// Times out connections whose oldest request (or handshake) waited
    /// too long.
    fn expire(&mut self, now: Instant) {
        for index in 0..self.conns.len() {
            let conn = &self.conns[index];
            if conn.handle.is_none() {
                continue;
            }
            if let Some(front) = conn.inflight.front() {
                if now.saturating_duration_since(front.sent_at) >= self.cfg.timeout {
                    let loss = if matches!(conn.link, Link::Opening(_)) {
                        Loss::ConnectTimeout
                    } else {
                        Loss::Timeout
                    };
                    self.lose(index, &loss);
                }
            }
        }
    }

    /// Ends a connection and counts everything in flight on it as failed.
    /// Its requests cannot be retried elsewhere without hiding the loss,
    /// and a late reply on a reused connection would be matched to the
    /// wrong request. A persistent slot is dead from then on; a short one
    /// opens its next connection when it next has a request.
    fn lose(&mut self, index: usize, loss: &Loss) {
        if self.conns[index].handle.is_none() {
            return;
        }
        let lost = self.detach(index, false);
        if self.cfg.lifetime == Lifetime::Persistent {
            self.conns[index].alive = false;
        }
        self.phase.failed += lost;
        match loss {
            Loss::Reset => {
                self.phase.resets += 1;
                self.phase.lost_in_flight += lost;
            }
            Loss::Timeout => self.phase.timeouts += lost,
            Loss::Refused => self.phase.connect_refused += 1,
            Loss::ConnectFailed => self.phase.connect_failed += 1,
            Loss::ConnectTimeout => {
                self.phase.connect_timeouts += 1;
                self.phase.timeouts += lost;
            }
        }
    }

    fn maybe_tick(&mut self) {
        let now = Instant::now();
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.publish();
            let t = &self.phase;
            self.progress.update(t.answered + t.failed, t.failed);
        }
    }

    /// Publishes counters and one periodic record.
    fn publish(&mut self) {
        let t = &self.phase;
        let w = &self.warm;
        let active = self.opened - self.closed;
        let in_flight = self.in_flight();
        let mut counters = if self.measuring {
            Counters {
                messages_sent: t.sent,
                messages_received: t.answered,
                messages_failed: t.failed + w.failed,
                mismatches: t.mismatches + w.mismatches,
                timeouts: t.timeouts + w.timeouts,
                resets: t.resets + w.resets,
                bytes_sent: t.bytes_sent,
                bytes_received: t.bytes_received,
                answered_bytes: t.answered_bytes,
                connections_opened: self.opened,
                connections_closed: self.closed,
                connections_active: active,
                busy_loops: self.passes.busy_loops,
                idle_loops: self.passes.idle_loops,
                busy_ns: self.passes.busy_ns,
                warmup_messages: w.answered,
                elapsed_ns: u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
                ..Counters::default()
            }
        } else {
            Counters {
                messages_failed: t.failed,
                mismatches: t.mismatches,
                timeouts: t.timeouts,
                resets: t.resets,
                connections_opened: self.opened,
                connections_closed: self.closed,
                connections_active: active,
                warmup_messages: t.answered,
                ..Counters::default()
            }
        };
        self.stack.add_counters(&mut counters);
        let p50_ns = if self.interval_hist.count() > 0 {
            self.interval_hist.value_at_quantile(0.5)
        } else {
            0
        };
        self.interval_hist = LocalHistogram::new();
        self.telemetry.publish(
            &counters,
            [
                counters.messages_received,
                counters.bytes_sent,
                p50_ns,
                counters.messages_failed,
                in_flight,
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;

    use protocol::ServerSession;

    use super::*;
    use crate::stack::kernel::KernelStack;
    use crate::telemetry::NoTelemetry;

    /// Answers every request on `conns` connections until they close (or
    /// 10 s pass).
    fn echo_server(conns: usize) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            for stream in listener.incoming().take(conns) {
                let Ok(mut stream) = stream else { return };
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = stream.set_nodelay(true);
                    let mut session = ServerSession::default();
                    let (mut buf, mut replies) = ([0u8; 4096], Vec::new());
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        replies.clear();
                        if session.on_bytes(&buf[..n], &mut replies).is_err()
                            || stream.write_all(&replies).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn driver(cfg: Config) -> Result<Driver<KernelStack>, LoadgenError> {
        let stack = KernelStack::new(cfg.connect, cfg.busy_poll).expect("stack");
        Driver::new(
            cfg,
            stack,
            Box::new(NoTelemetry),
            Arc::new(AtomicBool::new(false)),
        )
    }

    /// An address on loopback nothing listens on.
    fn closed_port() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    }

    fn config(addr: std::net::SocketAddr, connections: usize) -> Config {
        Config {
            connect: addr,
            packets: Some(connections as u64),
            duration: None,
            connections,
            busy_poll: false,
            stack: crate::config::StackChoice::Kernel,
            pacing: Pacing::Closed,
            lifetime: Lifetime::Persistent,
            seed: 1,
            min_size: 512,
            max_size: 1024,
            core: None,
            warmup: 0,
            timeout: Duration::from_secs(5),
            shm: None,
            progress: false,
        }
    }

    /// The closed loop's round trip counts from the write of the request,
    /// not from when the turn that issued it began: time spent before the
    /// write (here a stall between issuing and writing, standing for the
    /// writes of the other connections) is not the server's.
    #[test]
    fn closed_loop_latency_starts_at_the_write_of_the_request() {
        let addr = echo_server(4);
        let stall = Duration::from_millis(200);
        let mut d = driver(config(addr, 4)).expect("connect");
        d.measuring = true;
        let t0 = Instant::now();
        assert_eq!(d.issue(t0, t0, 0, Some(4)), 4);
        thread::sleep(stall);
        let deadline = Instant::now() + Duration::from_secs(10);
        while d.phase.answered < 4 {
            assert!(Instant::now() < deadline, "replies within 10 s");
            d.exchange(t0, 4, Some(4), false);
        }
        let s = d.hist.summary();
        assert_eq!(s.count, 4);
        assert!(
            s.max_us < stall.as_secs_f64() * 1e6 / 2.0,
            "the stall before the write was measured: {s:?}"
        );
    }

    /// Short connections: each carries its requests and closes; the
    /// handshakes are timed apart from the requests, every reply checked.
    #[test]
    fn short_connections_carry_their_requests_then_close() {
        // One slot: its connections follow each other, 20 requests make
        // exactly 10 of them.
        for busy_poll in [false, true] {
            let addr = echo_server(10);
            let cfg = Config {
                packets: Some(20),
                lifetime: Lifetime::Short { requests: 2 },
                busy_poll,
                ..config(addr, 1)
            };
            let result = driver(cfg).expect("driver").run();
            assert!(result.success(), "busy {busy_poll}: {result:?}");
            assert_eq!(result.answered, 20);
            assert_eq!(result.pattern, "short");
            let short = result.short.expect("short figures");
            assert_eq!(short.connections_completed, 10, "busy {busy_poll}");
            assert_eq!(short.connect.count, 10, "one handshake per connection");
            assert_eq!(result.latency.count, 20, "one round trip per request");
            assert_eq!(short.connect_refused + short.connect_failed, 0);
        }
        // Several slots: connections overlap, each still carries at most its
        // requests and every reply is checked.
        let addr = echo_server(64);
        let cfg = Config {
            packets: Some(60),
            lifetime: Lifetime::Short { requests: 3 },
            ..config(addr, 4)
        };
        let result = driver(cfg).expect("driver").run();
        assert!(result.success(), "{result:?}");
        let short = result.short.expect("short figures");
        assert!(
            (17..=20).contains(&short.connections_completed),
            "60 requests, 3 per connection, 4 at once: {short:?}"
        );
    }

    /// A server that refuses every connect fails every request, counted as
    /// refused connects, and the run still ends.
    #[test]
    fn refused_short_connections_are_counted_and_fail_their_requests() {
        let cfg = Config {
            packets: Some(5),
            lifetime: Lifetime::Short { requests: 1 },
            ..config(closed_port(), 1)
        };
        let result = driver(cfg).expect("driver").run();
        assert!(!result.success());
        assert_eq!(result.answered, 0);
        assert_eq!(result.failed, 5);
        let short = result.short.expect("short figures");
        assert_eq!(short.connect_refused, 5, "{short:?}");
        assert_eq!(short.connections_completed, 0);
    }

    /// A persistent connection that cannot be made stops the load
    /// generator before the run, naming the connection.
    #[test]
    fn a_refused_persistent_connection_is_an_error() {
        let err = driver(config(closed_port(), 2)).err().expect("refused");
        assert!(
            matches!(&err, LoadgenError::Connect { index: 0, source, .. }
                if source.kind() == io::ErrorKind::ConnectionRefused),
            "{err}"
        );
    }
}
