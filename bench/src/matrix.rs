//! Driving the matrix on one testbed: each engine (started once, every
//! count closed then open loop), then each peer, each cell for the
//! repetitions it still lacks. The report is saved after every repetition
//! (see [`bench_report::resume`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use shm_layout::{Role, Segment};

use crate::host;
use crate::peers::{self, Peer, Placement, Server, PEER_MESSAGE_SIZE};
use crate::record;
use crate::Setting;
use bench_report::report::{tests_of, Cell, Results, RunRecord};
use bench_report::resume;
use bench_report::stats::Figures;
use testbed::config::TestbedConfig;
use testbed::run::attach::{self, LoadOptions};
use testbed::run::bypass::Pmd;
use testbed::run::session::{EngineKind, Run, StartOptions};
use testbed::run::LifecycleError;

/// The load generator's reply timeout in the bench: the same generous
/// default as `attach`, because over the impaired link consecutive losses
/// of one segment back off for seconds without losing the message, and a
/// 1 000 000-message cell must not fail on one such stall.
pub const REPLY_TIMEOUT_MS: u64 = 30_000;

/// How the matrix runs: what `BenchArgs` says, resolved.
pub struct Plan {
    /// Message counts.
    pub packets: Vec<u64>,
    /// Runs per cell.
    pub repetitions: u32,
    /// Open-loop rate as a fraction of the closed-loop one.
    pub open_fraction: f64,
    /// Kernel engine, loadgen and sockperf spin.
    pub busy_poll: bool,
    /// Bypass engines' PMD.
    pub pmd: Pmd,
    /// Loadgen warm-up messages.
    pub warmup: u64,
    /// Where `engine` and `loadgen` are.
    pub bin_dir: PathBuf,
    /// The output directory (the report, `logs/`).
    pub out: PathBuf,
}

/// The matrix in progress: the report being filled, saved as it grows.
pub struct Bench<'a> {
    plan: &'a Plan,
    progress: ProgressBar,
    interrupted: Arc<AtomicBool>,
    /// The report: cells carried over from a resumed one and new ones.
    pub results: Results,
}

impl<'a> Bench<'a> {
    /// A matrix that adds to `results`, its progress bar hidden until
    /// [`Bench::show_progress`].
    pub fn new(plan: &'a Plan, results: Results, interrupted: Arc<AtomicBool>) -> Self {
        Self {
            plan,
            progress: ProgressBar::hidden(),
            interrupted,
            results,
        }
    }

    /// Shows `progress`, whose length is the messages still to exchange
    /// ([`Bench::remaining`] over the matrix).
    pub fn show_progress(&mut self, progress: ProgressBar) {
        self.progress = progress;
    }

    /// A line above the progress bar.
    pub fn say(&self, line: &str) {
        if self.progress.is_hidden() {
            eprintln!("supervisor: {line}");
        } else {
            self.progress.println(format!("supervisor: {line}"));
        }
    }

    /// Whether SIGINT/SIGTERM arrived.
    pub fn stopped(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    /// The progress bar (finished by the caller).
    pub fn progress(&self) -> &ProgressBar {
        &self.progress
    }

    fn find(&self, subject: &str, test: &str, setting: Setting, packets: u64) -> Option<usize> {
        self.results.cells.iter().position(|c| {
            c.subject == subject
                && c.test == test
                && c.impairment == setting.as_str()
                && c.packets == packets
        })
    }

    /// The index of a cell, created empty when the report has none.
    fn cell(
        &mut self,
        subject: &str,
        kind: &str,
        test: &str,
        setting: Setting,
        packets: u64,
    ) -> usize {
        self.find(subject, test, setting, packets)
            .unwrap_or_else(|| {
                self.results
                    .cells
                    .push(Cell::new(subject, kind, test, setting.as_str(), packets));
                self.results.cells.len() - 1
            })
    }

    /// Repetitions a cell still lacks (all of them for a cell not yet in
    /// the report).
    fn missing(&self, subject: &str, test: &str, setting: Setting, packets: u64) -> u32 {
        let have = self
            .find(subject, test, setting, packets)
            .map_or(0, |i| self.results.cells[i].runs.len());
        self.plan
            .repetitions
            .saturating_sub(u32::try_from(have).unwrap_or(u32::MAX))
    }

    fn missing_at(&self, index: usize) -> u32 {
        let have = self.results.cells[index].runs.len();
        self.plan
            .repetitions
            .saturating_sub(u32::try_from(have).unwrap_or(u32::MAX))
    }

    /// Messages still to exchange for `subject` on one testbed: the weight
    /// of its work on the progress bar, zero when the report has it all.
    pub fn remaining(&self, subject: &str, setting: Setting) -> u64 {
        self.plan
            .packets
            .iter()
            .map(|&packets| {
                tests_of(subject)
                    .iter()
                    .map(|test| u64::from(self.missing(subject, test, setting, packets)) * packets)
                    .sum::<u64>()
            })
            .sum()
    }

    /// Records that `missing` repetitions of a cell cannot run, and why.
    fn fail(&mut self, index: usize, missing: u32, why: &str) {
        let cell = &mut self.results.cells[index];
        cell.errors.push(why.to_owned());
        self.progress.inc(cell.packets * u64::from(missing));
    }

    /// Saves the report as it stands; a failure to save is reported once
    /// per call and the measurement goes on (the end writes it again).
    pub fn save(&mut self) {
        self.results.aggregate();
        if let Err((path, e)) = resume::save(&self.plan.out, &self.results) {
            self.say(&format!("could not save {}: {e}", path.display()));
        }
    }

    fn load(&self, mode: &str, rate: Option<u64>) -> LoadOptions {
        LoadOptions {
            connections: 1,
            loadgen_busy_poll: self.plan.busy_poll,
            mode: mode.to_owned(),
            rate,
            seed: 1,
            min_size: 512,
            max_size: 1024,
            warmup: self.plan.warmup,
            timeout_ms: REPLY_TIMEOUT_MS,
        }
    }

    /// Every engine on one testbed: start, each count closed then open, stop.
    pub fn engines(&mut self, config: &TestbedConfig, setting: Setting, engines: &[EngineKind]) {
        for &engine in engines {
            if self.stopped() {
                return;
            }
            if self.remaining(engine.as_str(), setting) == 0 {
                continue;
            }
            self.engine(config, setting, engine);
        }
    }

    fn engine(&mut self, config: &TestbedConfig, setting: Setting, engine: EngineKind) {
        let name = engine.as_str();
        let options = StartOptions {
            engine,
            busy_poll: self.plan.busy_poll,
            bin_dir: self.plan.bin_dir.clone(),
            clean_leftovers: true,
            ready_timeout: Duration::from_secs(30),
            pmd: self.plan.pmd.clone(),
        };
        self.progress
            .set_message(format!("{} engine {name}: starting", setting.as_str()));
        let progress = self.progress.clone();
        let started = Run::start(config.clone(), &options, &mut |l| {
            if progress.is_hidden() {
                eprintln!("supervisor: {l}");
            } else {
                progress.println(format!("supervisor: {l}"));
            }
        });
        let mut run = match started {
            Ok(run) => run,
            Err(e) => {
                let why = format!("the {name} engine did not start: {e}");
                self.say(&why);
                self.fail_subject(name, "engine", setting, &why);
                return;
            }
        };
        for &packets in &self.plan.packets {
            if self.stopped() {
                break;
            }
            if let Ok(Some(ending)) = run.engine_ending() {
                let why = format!("the {name} engine {ending}");
                self.say(&why);
                self.fail_subject(name, "engine", setting, &why);
                break;
            }
            let closed = self.cell(name, "engine", "closed", setting, packets);
            let load = self.load("closed", None);
            self.engine_cell(config, &mut run, closed, &load);
            let open = self.cell(name, "engine", "open", setting, packets);
            let missing = self.missing(name, "open", setting, packets);
            if missing == 0 || self.stopped() {
                continue;
            }
            match self.open_rate(closed, open) {
                Some(target) => {
                    self.results.cells[open].target_rate = Some(target);
                    let load = self.load("open", Some(target));
                    self.engine_cell(config, &mut run, open, &load);
                }
                None => self.fail(
                    open,
                    missing,
                    "no closed-loop rate to derive the open-loop rate from",
                ),
            }
        }
        for line in run.stop().problems {
            self.results
                .problems
                .push(format!("{name} teardown: {line}"));
        }
        self.save();
    }

    /// The open loop's rate: the one its earlier runs used, else the
    /// fraction of the closed loop's median rate.
    fn open_rate(&mut self, closed: usize, open: usize) -> Option<u64> {
        let open_cell = &self.results.cells[open];
        if let (Some(rate), false) = (open_cell.target_rate, open_cell.runs.is_empty()) {
            return Some(rate);
        }
        self.results.cells[closed].aggregate();
        match self.results.cells[closed].aggregate.median.messages_per_s {
            Some(rate) if rate >= 1.0 => {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let target = (rate * self.plan.open_fraction).round().max(1.0) as u64;
                Some(target)
            }
            _ => None,
        }
    }

    /// Every cell of `subject` on this testbed that lacks repetitions gets
    /// `why` instead.
    fn fail_subject(&mut self, subject: &str, kind: &str, setting: Setting, why: &str) {
        for &packets in &self.plan.packets {
            for test in tests_of(subject) {
                let missing = self.missing(subject, test, setting, packets);
                if missing > 0 {
                    let index = self.cell(subject, kind, test, setting, packets);
                    self.fail(index, missing, why);
                }
            }
        }
        self.save();
    }

    fn status(&self, index: usize) {
        let cell = &self.results.cells[index];
        let rep = self.next_rep(index);
        self.progress.set_message(format!(
            "{} {} {} {} ({rep}/{})",
            cell.impairment, cell.subject, cell.test, cell.packets, self.plan.repetitions
        ));
    }

    /// The number of the next repetition of a cell, for its status line
    /// and log names: one past every run and failed attempt it has.
    fn next_rep(&self, index: usize) -> usize {
        let cell = &self.results.cells[index];
        cell.runs.len() + cell.errors.len() + 1
    }

    /// Runs an engine cell's missing repetitions. A failed one is recorded
    /// in the cell and the next is tried; `--resume` tries again later.
    fn engine_cell(
        &mut self,
        config: &TestbedConfig,
        run: &mut Run,
        index: usize,
        load: &LoadOptions,
    ) {
        let packets = self.results.cells[index].packets;
        let missing = self.missing_at(index);
        for attempt in 0..missing {
            if self.stopped() {
                return;
            }
            self.status(index);
            if let Ok(Some(ending)) = run.engine_ending() {
                self.fail(index, missing - attempt, &format!("the engine {ending}"));
                return;
            }
            let state = run.state().clone();
            let started_utc = host::utc_now();
            let base = self.progress.position();
            let mut watch = RunWatch::new(&self.progress, &self.results.cells[index], base);
            let outcome = attach::attach_once_with_output(
                config,
                &state,
                &self.plan.bin_dir,
                packets,
                load,
                &self.interrupted,
                Some(&mut |answered| watch.update(answered)),
            );
            self.progress.set_position(base + packets);
            match outcome {
                Ok((row, stdout)) => {
                    let histogram = state
                        .segment
                        .as_deref()
                        .and_then(|p| Segment::open(p).ok())
                        .map(|s| s.histogram(Role::Loadgen));
                    let command =
                        record::loadgen_command(config, &state, &self.plan.bin_dir, packets, load);
                    self.results.cells[index].runs.push(record::engine_record(
                        &row,
                        &stdout,
                        histogram.as_ref(),
                        command,
                        started_utc,
                    ));
                }
                Err(LifecycleError::Interrupted) => return,
                Err(e) => {
                    self.results.cells[index].errors.push(e.to_string());
                    self.after_attempt(index, true);
                    continue;
                }
            }
            self.after_attempt(index, false);
        }
    }

    /// After each attempt: save the report and, where no progress bar is
    /// drawn (output not a terminal, as under nohup), say what it gave.
    fn after_attempt(&mut self, index: usize, failed: bool) {
        self.save();
        if !self.progress.is_hidden() {
            return;
        }
        let cell = &self.results.cells[index];
        let outcome = if failed {
            format!("failed: {}", cell.errors.last().map_or("", String::as_str))
        } else {
            cell.runs
                .last()
                .map_or_else(String::new, |r| summary(&r.figures))
        };
        let length = self.progress.length().unwrap_or(0).max(1);
        #[allow(clippy::cast_precision_loss)]
        let percent = self.progress.position() as f64 * 100.0 / length as f64;
        eprintln!(
            "supervisor: [{percent:.1} % of the matrix's messages, {:.0} s] {} {} {} {}: {outcome}",
            self.progress.elapsed().as_secs_f64(),
            cell.impairment,
            cell.subject,
            cell.test,
            cell.packets,
        );
    }

    /// Every selected peer on one testbed.
    pub fn peers(&mut self, config: &TestbedConfig, setting: Setting, peers: &[Peer]) {
        let placement = Placement {
            config: config.clone(),
            server: config.server_addr().to_string(),
            log_dir: self.plan.out.join("logs").join(setting.as_str()),
            busy_poll: self.plan.busy_poll,
        };
        if let Err(e) = std::fs::create_dir_all(&placement.log_dir) {
            self.results
                .problems
                .push(format!("creating {}: {e}", placement.log_dir.display()));
        }
        for &peer in peers {
            if self.stopped() {
                return;
            }
            if self.remaining(peer.as_str(), setting) == 0 {
                continue;
            }
            match peer {
                Peer::Sockperf => self.sockperf(&placement, setting),
                Peer::Iperf3 => self.iperf3(&placement, setting),
                Peer::Netperf => self.netperf(&placement, setting),
            }
        }
    }

    /// Starts a peer's server in NS3 on `port` for the whole testbed; when
    /// it cannot start, every cell of the peer still lacking runs gets the
    /// reason.
    fn peer_server(
        &mut self,
        subject: &str,
        command: std::process::Command,
        log: &str,
        p: &Placement,
        port: u16,
        setting: Setting,
    ) -> Option<Server> {
        match Server::start(command, p.log_dir.join(log), &p.config, port) {
            Ok(server) => Some(server),
            Err(e) => {
                self.say(&e);
                self.fail_subject(subject, "peer", setting, &e);
                None
            }
        }
    }

    fn sockperf(&mut self, p: &Placement, setting: Setting) {
        let port = p.config.port().wrapping_add(1);
        let server = self.peer_server(
            "sockperf",
            peers::sockperf_server(p, port),
            "sockperf-server.log",
            p,
            port,
            setting,
        );
        let Some(server) = server else {
            return;
        };
        let rate = match self.sockperf_calibration(p, port) {
            Ok(rate) => rate,
            Err(_) if self.stopped() => return,
            Err(why) => {
                drop(server);
                self.say(&why);
                return self.fail_subject("sockperf", "peer", setting, &why);
            }
        };
        for &packets in &self.plan.packets {
            let pp = self.cell("sockperf", "peer", "ping-pong", setting, packets);
            let seconds = seconds_for(packets, rate);
            self.peer_cell(pp, seconds + 60, |rep| {
                let log = p.log_dir.join(format!("sockperf-pp-{packets}-{rep}.log"));
                (peers::sockperf_client(p, port, seconds, None), log)
            });
            let ul = self.cell("sockperf", "peer", "under-load", setting, packets);
            let missing = self.missing("sockperf", "under-load", setting, packets);
            if missing == 0 || self.stopped() {
                continue;
            }
            match self.open_rate(pp, ul) {
                Some(mps) => {
                    self.results.cells[ul].target_rate = Some(mps);
                    #[allow(clippy::cast_precision_loss)]
                    let seconds = seconds_for(packets, mps as f64);
                    self.peer_cell(ul, seconds + 60, |rep| {
                        let log = p.log_dir.join(format!("sockperf-ul-{packets}-{rep}.log"));
                        (peers::sockperf_client(p, port, seconds, Some(mps)), log)
                    });
                }
                None => self.fail(
                    ul,
                    missing,
                    "no ping-pong rate to derive the under-load rate from",
                ),
            }
        }
        drop(server);
    }

    /// sockperf is bounded by time, not count: a 1-second ping-pong gives
    /// the rate that turns each count into a duration. Under loss a
    /// 1-second sample holds a handful of retransmission stalls at most, so
    /// a slow link is measured again over 5 seconds.
    fn sockperf_calibration(&self, p: &Placement, port: u16) -> Result<f64, String> {
        let measure = |seconds: u64, log: &str| {
            peers::run_client(
                peers::sockperf_client(p, port, seconds, None),
                &p.log_dir.join(log),
                Duration::from_secs(60),
                &self.interrupted,
            )
            .and_then(|o| peers::parse_sockperf(&o.text))
        };
        let calibration = match measure(1, "sockperf-calibration.log") {
            Ok(f) if f.messages_per_s.is_some_and(|r| r < 2000.0) => {
                measure(5, "sockperf-calibration-5s.log")
            }
            other => other,
        };
        match calibration {
            Ok(Figures {
                messages_per_s: Some(rate),
                ..
            }) if rate > 0.0 => Ok(rate),
            Ok(_) => Err("sockperf calibration failed: no rate".into()),
            Err(e) => Err(format!("sockperf calibration failed: {e}")),
        }
    }

    fn iperf3(&mut self, p: &Placement, setting: Setting) {
        let port = p.config.port().wrapping_add(2);
        for &packets in &self.plan.packets {
            let index = self.cell("iperf3", "peer", "bulk", setting, packets);
            let bytes = packets.saturating_mul(PEER_MESSAGE_SIZE);
            // One server per repetition: an iperf3 server serves one test
            // and its log is the repetition's.
            for _ in 0..self.missing_at(index) {
                if self.stopped() {
                    return;
                }
                let rep = self.next_rep(index);
                let server = match Server::start(
                    peers::iperf3_server(p, port),
                    p.log_dir.join(format!("iperf3-server-{packets}-{rep}.log")),
                    &p.config,
                    port,
                ) {
                    Ok(s) => s,
                    Err(e) => {
                        self.fail(index, 1, &e);
                        continue;
                    }
                };
                let before = self.results.cells[index].runs.len();
                self.peer_runs(index, 1, 120 + bytes / 1_000_000, |rep| {
                    let log = p.log_dir.join(format!("iperf3-{packets}-{rep}.json"));
                    (peers::iperf3_client(p, port, bytes), log)
                });
                if let Some(run) = self.results.cells[index].runs.get_mut(before) {
                    run.command = format!("{} ; server: {}", run.command, server.command);
                }
                server.finish(Duration::from_secs(5));
            }
        }
    }

    fn netperf(&mut self, p: &Placement, setting: Setting) {
        let port = p.config.port().wrapping_add(3);
        let server = self.peer_server(
            "netperf",
            peers::netperf_server(p, port),
            "netserver.log",
            p,
            port,
            setting,
        );
        let Some(server) = server else {
            return;
        };
        for &packets in &self.plan.packets {
            let index = self.cell("netperf", "peer", "tcp_rr", setting, packets);
            // Bounded as if no slower than 100 transactions/s.
            self.peer_cell(index, 60 + packets / 100, |rep| {
                let log = p.log_dir.join(format!("netperf-{packets}-{rep}.log"));
                (peers::netperf_client(p, port, packets), log)
            });
        }
        drop(server);
    }

    /// Runs a peer cell's missing repetitions; `client(rep)` gives the
    /// command and its log file.
    fn peer_cell(
        &mut self,
        index: usize,
        limit_s: u64,
        client: impl Fn(usize) -> (std::process::Command, PathBuf),
    ) {
        let missing = self.missing_at(index);
        self.peer_runs(index, missing, limit_s, client);
    }

    /// `count` attempts at a peer cell's repetitions. A failed one is
    /// recorded in the cell and the next is tried.
    fn peer_runs(
        &mut self,
        index: usize,
        count: u32,
        limit_s: u64,
        client: impl Fn(usize) -> (std::process::Command, PathBuf),
    ) {
        for _ in 0..count {
            if self.stopped() {
                return;
            }
            self.status(index);
            let rep = self.next_rep(index);
            let subject = self.results.cells[index].subject.clone();
            let packets = self.results.cells[index].packets;
            let (command, log) = client(rep);
            let started_utc = host::utc_now();
            let outcome = peers::run_client(
                command,
                &log,
                Duration::from_secs(limit_s),
                &self.interrupted,
            )
            .and_then(|o| parse_peer(&subject, &o.text).map(|(f, cdf)| (o, f, cdf)));
            self.progress.inc(packets);
            match outcome {
                Ok((output, figures, cdf)) => {
                    self.results.cells[index].runs.push(RunRecord {
                        command: output.command,
                        clean: true,
                        inconsistencies: Vec::new(),
                        detail: serde_json::json!({ "log": relative_log(&self.plan.out, &log) }),
                        figures,
                        cdf,
                        started_utc,
                        loadavg: host::loadavg(),
                    });
                }
                Err(_) if self.stopped() => return,
                Err(e) => {
                    self.results.cells[index].errors.push(e);
                    self.after_attempt(index, true);
                    continue;
                }
            }
            self.after_attempt(index, false);
        }
    }
}

/// Progress within one long load-generator run: the bar moves with the
/// messages answered, and where no bar is drawn a line is printed every
/// [`RunWatch::LINE_EVERY`].
struct RunWatch {
    progress: ProgressBar,
    base: u64,
    packets: u64,
    what: String,
    started: std::time::Instant,
    next_line: std::time::Instant,
}

impl RunWatch {
    const LINE_EVERY: Duration = Duration::from_secs(300);

    fn new(progress: &ProgressBar, cell: &Cell, base: u64) -> Self {
        let now = std::time::Instant::now();
        Self {
            progress: progress.clone(),
            base,
            packets: cell.packets,
            what: format!(
                "{} {} {} {}",
                cell.impairment, cell.subject, cell.test, cell.packets
            ),
            started: now,
            next_line: now + Self::LINE_EVERY,
        }
    }

    fn update(&mut self, answered: u64) {
        let answered = answered.min(self.packets);
        self.progress.set_position(self.base + answered);
        let now = std::time::Instant::now();
        if self.progress.is_hidden() && now >= self.next_line {
            self.next_line = now + Self::LINE_EVERY;
            eprintln!(
                "supervisor: {}: {answered} of {} answered after {:.0} s",
                self.what,
                self.packets,
                (now - self.started).as_secs_f64()
            );
        }
    }
}

/// One run's headline figures, for a progress line.
fn summary(f: &Figures) -> String {
    let part = |name: &str, v: Option<f64>, unit: &str| v.map(|v| format!("{name}{v:.1}{unit}"));
    [
        part("", f.messages_per_s, " msgs/s"),
        part("", f.bandwidth_kb_s, " kB/s"),
        part("p50 ", f.rtt_p50_us, " µs"),
        part("p99 ", f.rtt_p99_us, " µs"),
        part("", f.elapsed_s, " s"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ")
}

/// A peer's figures (and CDF points, where it prints percentiles).
fn parse_peer(subject: &str, text: &str) -> Result<(Figures, Vec<(f64, f64)>), String> {
    match subject {
        "sockperf" => Ok((
            peers::parse_sockperf(text)?,
            peers::sockperf_percentiles(text),
        )),
        "iperf3" => Ok((peers::parse_iperf3(text)?, Vec::new())),
        "netperf" => Ok((peers::parse_netperf(text)?, Vec::new())),
        other => Err(format!("no parser for the peer `{other}`")),
    }
}

/// A log's path relative to the output directory (as the report names it).
fn relative_log(out: &Path, log: &Path) -> String {
    log.strip_prefix(out)
        .unwrap_or(log)
        .to_string_lossy()
        .into_owned()
}

/// Whole seconds for a time-bounded tool to exchange about `packets`
/// messages at `rate`, plus sockperf's warm-up and cool-down (≈ 0.45 s).
fn seconds_for(packets: u64, rate: f64) -> u64 {
    #[allow(clippy::cast_precision_loss)]
    let s = packets as f64 / rate + 0.5;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = s.ceil().max(1.0) as u64;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_cover_the_count() {
        assert_eq!(seconds_for(10_000, 20_000.0), 1);
        assert_eq!(seconds_for(10_000, 430.0), 24);
    }

    #[test]
    fn every_subject_has_its_tests() {
        assert_eq!(tests_of("kernel"), ["closed", "open"]);
        assert_eq!(tests_of("fstack"), ["closed", "open"]);
        assert_eq!(tests_of("sockperf"), ["ping-pong", "under-load"]);
        assert_eq!(tests_of("iperf3"), ["bulk"]);
        assert!(parse_peer("bogus", "").is_err());
    }
}
