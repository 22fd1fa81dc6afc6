//! The run: connections, pacing, reply checking, timeouts.
//!
//! One thread drives every connection. Each connection keeps a FIFO of its
//! requests in flight (length, latency origin, send time); replies come back
//! in order on a TCP connection, so each reply is checked against the front
//! of that FIFO. Two phases share the connections: the warm-up, then the
//! measured phase; each ends only when everything it issued is resolved
//! (answered, mismatched, timed out or lost), so no warm-up reply is ever
//! measured.
//!
//! Waiting: in blocking mode `epoll_wait` (through mio) sleeps until a
//! socket is ready, the next open-loop send is due, the oldest request
//! times out or the next publication is due; in busy-poll mode the loop
//! never sleeps and tries every socket with requests in flight.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use protocol::{encode_request, ReplyDecoder};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shm_layout::{Counters, LocalHistogram, ProducerState};

use crate::config::{Config, Pacing};
use crate::progress::Progress;
use crate::result::{RunResult, StoppedBy};
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

struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    out_pos: usize,
    inflight: VecDeque<InFlight>,
    /// Requests at the back of `inflight` none of whose bytes the socket
    /// has taken yet.
    unwritten: usize,
    decoder: ReplyDecoder,
    alive: bool,
    wants_write: bool,
}

impl Conn {
    /// Gives every request not yet written the send time `now`: the write
    /// about to happen carries its first byte (or, if the socket takes
    /// less, it is stamped again before the next write).
    fn stamp_unwritten(&mut self, now: Instant) {
        let first = self.inflight.len() - self.unwritten;
        for request in self.inflight.range_mut(first..) {
            request.sent_at = now;
        }
    }

    /// After a write: the requests whose first byte the socket took are
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
}

/// How a connection ended, for the counters.
enum Loss {
    /// The server reset or closed it.
    Reset,
    /// Its oldest request outlived the timeout.
    Timeout,
}

/// The load generator's state during a run.
pub struct Driver {
    cfg: Config,
    poll: Option<Poll>,
    events: Events,
    conns: Vec<Conn>,
    rng: SmallRng,
    tag: u64,
    phase: Tally,
    warm: Tally,
    measuring: bool,
    hist: LocalHistogram,
    interval_hist: LocalHistogram,
    telemetry: Box<dyn Telemetry>,
    progress: Progress,
    stop: Arc<AtomicBool>,
    buf: Box<[u8]>,
    replies: Vec<u32>,
    /// Sockets to read again next turn although epoll did not report them.
    again: Vec<usize>,
    opened: u64,
    closed: u64,
    busy_loops: u64,
    idle_loops: u64,
    started: Instant,
    next_tick: Instant,
    round_robin: usize,
}

impl Driver {
    /// Connects every connection (blocking, bounded by the timeout), then
    /// makes them non-blocking.
    ///
    /// # Errors
    /// [`LoadgenError::Connect`] when a connection cannot be made,
    /// [`LoadgenError::Io`] when epoll cannot be set up.
    pub fn connect(
        cfg: Config,
        telemetry: Box<dyn Telemetry>,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, LoadgenError> {
        let poll = if cfg.busy_poll {
            None
        } else {
            Some(Poll::new().map_err(|source| LoadgenError::Io {
                step: "create epoll instance".into(),
                source,
            })?)
        };
        let mut conns = Vec::with_capacity(cfg.connections);
        for index in 0..cfg.connections {
            let connect_err = |source| LoadgenError::Connect {
                addr: cfg.connect,
                index,
                source,
            };
            let std_stream = std::net::TcpStream::connect_timeout(&cfg.connect, cfg.timeout)
                .map_err(connect_err)?;
            std_stream.set_nodelay(true).map_err(connect_err)?;
            std_stream.set_nonblocking(true).map_err(connect_err)?;
            let mut stream = TcpStream::from_std(std_stream);
            if let Some(poll) = &poll {
                poll.registry()
                    .register(&mut stream, Token(index), Interest::READABLE)
                    .map_err(connect_err)?;
            }
            conns.push(Conn {
                stream,
                out: Vec::with_capacity(2048),
                out_pos: 0,
                inflight: VecDeque::new(),
                unwritten: 0,
                decoder: ReplyDecoder::default(),
                alive: true,
                wants_write: false,
            });
        }
        let progress = Progress::new(cfg.progress, cfg.packets);
        let now = Instant::now();
        Ok(Self {
            rng: SmallRng::seed_from_u64(cfg.seed),
            opened: conns.len() as u64,
            cfg,
            poll,
            events: Events::with_capacity(1024),
            conns,
            tag: 0,
            phase: Tally::default(),
            warm: Tally::default(),
            measuring: false,
            hist: LocalHistogram::new(),
            interval_hist: LocalHistogram::new(),
            telemetry,
            progress,
            stop,
            buf: vec![0; READ_BUF].into_boxed_slice(),
            replies: Vec::new(),
            again: Vec::new(),
            closed: 0,
            busy_loops: 0,
            idle_loops: 0,
            started: now,
            next_tick: now,
            round_robin: 0,
        })
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
            self.next_tick = self.started;
            self.hist = LocalHistogram::new();
            self.interval_hist = LocalHistogram::new();
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
            mode: self.cfg.pacing.mode().name(),
            rate: self.cfg.pacing.rate(),
            connections: self.cfg.connections,
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
            if self.cfg.busy_poll {
                if progressed {
                    self.busy_loops += 1;
                } else {
                    self.idle_loops += 1;
                }
            }
            self.expire(Instant::now());
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

    /// Queues one request on connection `index`; `intended` is the open
    /// loop's schedule. Its send time is taken when it is written.
    fn enqueue(&mut self, index: usize, intended: Option<Instant>, now: Instant) {
        let len = self.rng.gen_range(self.cfg.min_size..=self.cfg.max_size);
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
        self.phase.sent += 1;
    }

    /// Writes pending requests, waits (blocking mode) and reads replies.
    /// Returns whether any reply arrived.
    fn exchange(&mut self, t0: Instant, issued: u64, count: Option<u64>, issuing: bool) -> bool {
        for index in 0..self.conns.len() {
            if self.conns[index].alive && self.conns[index].out.len() > self.conns[index].out_pos {
                self.flush(index);
            }
        }
        let before = self.phase.answered + self.phase.mismatches + self.phase.unexpected_replies;
        if self.poll.is_some() {
            let timeout = if self.again.is_empty() {
                self.sleep_time(t0, issued, count, issuing)
            } else {
                Duration::ZERO
            };
            let mut ready = std::mem::take(&mut self.again);
            if let Some(poll) = self.poll.as_mut() {
                match poll.poll(&mut self.events, Some(timeout)) {
                    Ok(()) => ready.extend(self.events.iter().map(|e| e.token().0)),
                    // A signal: the loop looks at the stop flag next.
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // epoll itself failing leaves nothing to wait with:
                    // fall back to trying every socket this turn.
                    Err(_) => ready.extend(0..self.conns.len()),
                }
            }
            for index in ready {
                if index < self.conns.len() && self.conns[index].alive {
                    self.flush(index);
                    self.read(index);
                }
            }
        } else {
            for index in 0..self.conns.len() {
                if self.conns[index].alive && !self.conns[index].inflight.is_empty() {
                    self.read(index);
                }
            }
        }
        self.phase.answered + self.phase.mismatches + self.phase.unexpected_replies > before
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
        let conn = &mut self.conns[index];
        let mut failed = false;
        while conn.out_pos < conn.out.len() {
            conn.stamp_unwritten(Instant::now());
            match conn.stream.write(&conn.out[conn.out_pos..]) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => {
                    conn.out_pos += n;
                    conn.note_written();
                    self.phase.bytes_sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
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
        // Blocking mode: ask for writable readiness only while needed.
        let conn = &mut self.conns[index];
        let wants_write = conn.out_pos < conn.out.len();
        if wants_write != conn.wants_write {
            if let Some(poll) = &self.poll {
                let interest = if wants_write {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if poll
                    .registry()
                    .reregister(&mut conn.stream, Token(index), interest)
                    .is_ok()
                {
                    conn.wants_write = wants_write;
                }
            }
        }
    }

    fn read(&mut self, index: usize) {
        for _ in 0..READS_PER_TURN {
            let conn = &mut self.conns[index];
            match conn.stream.read(&mut self.buf) {
                Ok(0) => {
                    self.lose(index, &Loss::Reset);
                    return;
                }
                Ok(n) => {
                    let now = Instant::now();
                    self.phase.bytes_received += n as u64;
                    self.replies.clear();
                    let replies = &mut self.replies;
                    conn.decoder.feed(&self.buf[..n], |r| replies.push(r));
                    for i in 0..self.replies.len() {
                        let reply = self.replies[i];
                        self.check_reply(index, reply, now);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
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
    }

    /// Times out connections whose oldest request waited too long.
    fn expire(&mut self, now: Instant) {
        for index in 0..self.conns.len() {
            let conn = &self.conns[index];
            if !conn.alive {
                continue;
            }
            if let Some(front) = conn.inflight.front() {
                if now.saturating_duration_since(front.sent_at) >= self.cfg.timeout {
                    self.lose(index, &Loss::Timeout);
                }
            }
        }
    }

    /// Closes a connection and counts everything in flight on it as failed.
    /// Its requests cannot be retried elsewhere without hiding the loss,
    /// and a late reply on a reused connection would be matched to the
    /// wrong request.
    fn lose(&mut self, index: usize, loss: &Loss) {
        let conn = &mut self.conns[index];
        if !conn.alive {
            return;
        }
        conn.alive = false;
        let lost = conn.inflight.len() as u64;
        conn.inflight.clear();
        conn.unwritten = 0;
        conn.out.clear();
        conn.out_pos = 0;
        if let Some(poll) = &self.poll {
            let _ = poll.registry().deregister(&mut conn.stream);
        }
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        self.closed += 1;
        self.phase.failed += lost;
        match loss {
            Loss::Reset => {
                self.phase.resets += 1;
                self.phase.lost_in_flight += lost;
            }
            Loss::Timeout => self.phase.timeouts += lost,
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
        let counters = if self.measuring {
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
                busy_loops: self.busy_loops,
                idle_loops: self.idle_loops,
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

    fn config(addr: std::net::SocketAddr, connections: usize) -> Config {
        Config {
            connect: addr,
            packets: Some(connections as u64),
            duration: None,
            connections,
            busy_poll: false,
            pacing: Pacing::Closed,
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
        let mut d = Driver::connect(
            config(addr, 4),
            Box::new(NoTelemetry),
            Arc::new(AtomicBool::new(false)),
        )
        .expect("connect");
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
}
