//! Driving the matrix on one testbed: each engine (started once, every
//! count closed then open loop), then each peer, each cell for the
//! repetitions it still lacks. The report is saved after every repetition
//! (see [`bench_report::resume`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bench_report::model::{Cell, CellKey, Results, RunRecord};
use bench_report::resume;
use bench_report::stats::Figures;
use contract::loadgen::{Mode, Pattern};
use contract::{EngineKind, Pmd};
use indicatif::ProgressBar;
use serde::Serialize;
use testbed::config::TestbedConfig;
use testbed::run::attach::{LoadOptions, REPLY_TIMEOUT_MS};
use testbed::run::session::{StartOptions, DEFAULT_READY_TIMEOUT};

use crate::engine_run::{EngineRun, Failure};
use crate::host;
use crate::peers::{self, Cells, Hosts, Peer, Placement};
use crate::record;
use crate::Setting;
use testbed::remote::peer_tools::PeerHosts;

/// The tests every engine runs: one cell per test and count (`short`: a
/// new connection per request, closed loop).
pub const ENGINE_TESTS: &[&str] = &["closed", "open", "short"];

/// The tests of a subject: an engine kind's, or a peer's.
#[must_use]
pub fn tests_of(subject: &str) -> &'static [&'static str] {
    if EngineKind::from_name(subject).is_some() {
        return ENGINE_TESTS;
    }
    peers::by_name(subject).map_or(&[], |p| p.tests())
}

/// The axes of one half of the matrix (one testbed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Half {
    /// Message counts.
    pub packets: Vec<u64>,
    /// Connection counts of the engines' cells (the peers run one).
    pub connections: Vec<u32>,
    /// The engines' tests.
    pub tests: Vec<&'static str>,
    /// Minimum RTOs of the engines' cells (`None`: each stack's own).
    pub rto_min_ms: Vec<Option<u32>>,
    /// The load generator's stacks of the engines' cells (the peers run
    /// their own clients).
    pub clients: Vec<contract::ClientStack>,
    /// Runs per cell.
    pub repetitions: u32,
}

impl Half {
    /// Every engine cell of `subject` this half asks for.
    #[must_use]
    pub fn engine_keys(&self, subject: &str, setting: Setting) -> Vec<CellKey> {
        let mut keys = Vec::new();
        for &rto in &self.rto_min_ms {
            for &packets in &self.packets {
                for &connections in &self.connections {
                    for &client in &self.clients {
                        for test in &self.tests {
                            keys.push(
                                CellKey::new(subject, test, setting.as_str(), packets)
                                    .with_connections(connections)
                                    .with_client(client.name())
                                    .with_rto_min(rto),
                            );
                        }
                    }
                }
            }
        }
        keys
    }

    /// The connection counts `peer` runs at: the half's up to the most it
    /// can run (one for a one-connection peer), each once.
    #[must_use]
    pub fn peer_connections(&self, peer: &dyn Peer) -> Vec<u32> {
        let mut counts: Vec<u32> = self
            .connections
            .iter()
            .map(|&n| n.min(peer.max_connections()))
            .collect();
        counts.sort_unstable();
        counts.dedup();
        counts
    }

    /// Every cell of the peer `subject` this half asks for: at each of
    /// its connection counts, each stack's own RTO.
    #[must_use]
    pub fn peer_keys(&self, subject: &str, setting: Setting) -> Vec<CellKey> {
        let counts = peers::by_name(subject).map_or_else(|_| vec![1], |p| self.peer_connections(p));
        let mut keys = Vec::new();
        for &packets in &self.packets {
            for &connections in &counts {
                for test in tests_of(subject) {
                    keys.push(
                        CellKey::new(subject, test, setting.as_str(), packets)
                            .with_connections(connections),
                    );
                }
            }
        }
        keys
    }
}

/// How the matrix runs: what `BenchArgs` says, resolved.
pub struct Plan {
    /// The plain bridge's half.
    pub off: Half,
    /// The impaired link's half.
    pub on: Half,
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
    /// Each half's `<engine>: <impairment>` as its engine host said (two
    /// hosts only).
    remote_impairments: Vec<(Setting, String)>,
}

impl Plan {
    /// The half of `setting`.
    #[must_use]
    pub fn half(&self, setting: Setting) -> &Half {
        match setting {
            Setting::Off => &self.off,
            Setting::On => &self.on,
        }
    }
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
            remote_impairments: Vec::new(),
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

    fn find(&self, key: &CellKey) -> Option<usize> {
        self.results.cells.iter().position(|c| c.is_at(key))
    }

    /// The index of the cell at `key`, created empty when the report has none.
    fn cell(&mut self, kind: &str, key: &CellKey) -> usize {
        self.find(key).unwrap_or_else(|| {
            self.results.cells.push(Cell::new(kind, key));
            self.results.cells.len() - 1
        })
    }

    /// Runs per cell on the testbed of `impairment`.
    fn repetitions(&self, impairment: &str) -> u32 {
        match impairment {
            "on" => self.plan.on.repetitions,
            _ => self.plan.off.repetitions,
        }
    }

    /// Repetitions the cell at `key` still lacks (all of them for a cell
    /// not yet in the report).
    fn missing(&self, key: &CellKey) -> u32 {
        let have = self
            .find(key)
            .map_or(0, |i| self.results.cells[i].runs.len());
        self.repetitions(&key.impairment)
            .saturating_sub(u32::try_from(have).unwrap_or(u32::MAX))
    }

    fn missing_at(&self, index: usize) -> u32 {
        let cell = &self.results.cells[index];
        self.repetitions(&cell.impairment)
            .saturating_sub(u32::try_from(cell.runs.len()).unwrap_or(u32::MAX))
    }

    /// The cells `subject` has on one testbed.
    fn keys(&self, subject: &str, setting: Setting) -> Vec<CellKey> {
        let half = self.plan.half(setting);
        if EngineKind::from_name(subject).is_some() {
            half.engine_keys(subject, setting)
        } else {
            half.peer_keys(subject, setting)
        }
    }

    /// The cells of `subject` on one testbed that lack runs, with how many.
    #[must_use]
    pub fn missing_keys(&self, subject: &str, setting: Setting) -> Vec<(CellKey, u32)> {
        self.keys(subject, setting)
            .into_iter()
            .map(|key| {
                let missing = self.missing(&key);
                (key, missing)
            })
            .filter(|(_, missing)| *missing > 0)
            .collect()
    }

    /// Messages still to exchange for `subject` on one testbed: the weight
    /// of its work on the progress bar, zero when the report has it all.
    pub fn remaining(&self, subject: &str, setting: Setting) -> u64 {
        self.keys(subject, setting)
            .iter()
            .map(|key| u64::from(self.missing(key)) * key.packets)
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

    fn load(&self, key: &CellKey, rate: Option<u64>) -> LoadOptions {
        let mode = if key.test == "open" {
            Mode::Open
        } else {
            Mode::Closed
        };
        let pattern = if key.test == "short" {
            Pattern::Short
        } else {
            Pattern::Persistent
        };
        LoadOptions {
            connections: key.connections,
            loadgen_busy_poll: self.plan.busy_poll,
            mode,
            rate,
            pattern,
            requests_per_connection: 1,
            seed: 1,
            min_size: 512,
            max_size: 1024,
            warmup: self.plan.warmup,
            timeout_ms: REPLY_TIMEOUT_MS,
            client: contract::ClientStack::from_name(&key.client),
            client_pmd: contract::Pmd::AfXdp,
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
        let half = self.plan.half(setting).clone();
        for rto in half.rto_min_ms.clone() {
            if self.stopped() {
                return;
            }
            let keys: Vec<CellKey> = half
                .engine_keys(engine.as_str(), setting)
                .into_iter()
                .filter(|k| k.rto_min_ms == rto)
                .collect();
            if keys.iter().all(|k| self.missing(k) == 0) {
                continue;
            }
            self.engine_at(config, setting, engine, rto, &keys);
        }
    }

    /// Starts `engine` with every stack's minimum RTO at `rto`, runs the
    /// cells of `keys` (each closed loop before the open loop that takes its
    /// rate from it), stops it.
    fn engine_at(
        &mut self,
        config: &TestbedConfig,
        setting: Setting,
        engine: EngineKind,
        rto: Option<u32>,
        keys: &[CellKey],
    ) {
        let name = engine.as_str();
        let options = StartOptions {
            engine,
            busy_poll: self.plan.busy_poll,
            bin_dir: self.plan.bin_dir.clone(),
            clean_leftovers: true,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            pmd: self.plan.pmd.clone(),
            rto_min_ms: rto,
            // A DPDK client's hugepages are reserved with the engine's.
            client: if keys
                .iter()
                .any(|k| k.client == contract::ClientStack::Dpdk.name())
            {
                contract::ClientStack::Dpdk
            } else {
                contract::ClientStack::Kernel
            },
        };
        self.progress
            .set_message(format!("{} engine {name}: starting", setting.as_str()));
        let progress = self.progress.clone();
        let started = EngineRun::start(config, &options, &mut |l| {
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
                self.fail_keys(keys, &why);
                return;
            }
        };
        self.record_hosts(&run, setting, name);
        if let Some(why) = unimpaired_over_two_hosts(&run, setting) {
            self.say(&why);
            self.fail_keys(keys, &why);
            self.stop_engine(run, name);
            return;
        }
        for key in keys {
            if self.stopped() {
                break;
            }
            if let Some(ending) = run.ending() {
                self.say(&ending);
                self.fail_keys(keys, &ending);
                break;
            }
            let index = self.cell("engine", key);
            let missing = self.missing_at(index);
            if missing == 0 {
                continue;
            }
            let rate = if key.test == "open" {
                let closed = self.cell("engine", &key.of(name, "closed"));
                match self.open_rate(closed, index) {
                    Some(target) => {
                        self.results.cells[index].target_rate = Some(target);
                        Some(target)
                    }
                    None => {
                        self.fail(
                            index,
                            missing,
                            "no closed-loop rate to derive the open-loop rate from",
                        );
                        continue;
                    }
                }
            } else {
                None
            };
            let load = self.load(key, rate);
            self.engine_cell(config, &mut run, index, &load);
        }
        self.stop_engine(run, name);
    }

    /// Stops an engine; its teardown's problems join the report's.
    fn stop_engine(&mut self, run: EngineRun, name: &str) {
        for line in run.stop() {
            self.results
                .problems
                .push(format!("{name} teardown: {line}"));
        }
        self.save();
    }

    /// Records the hosts of a two-host run (once) and the impairment its
    /// engine host put in force for `engine`.
    fn record_hosts(&mut self, run: &EngineRun, setting: Setting, engine: &str) {
        if self.results.hosts.is_empty() && !run.hosts().is_empty() {
            self.results.hosts = run
                .hosts()
                .iter()
                .filter_map(|h| serde_json::to_value(h).ok())
                .collect();
        }
        if let Some(impairment) = run.remote_impairment() {
            let said = (setting, format!("{engine}: {impairment}"));
            if !self.remote_impairments.contains(&said) {
                self.remote_impairments.push(said);
            }
        }
    }

    /// What the engine hosts put in force on `setting`'s half, one line per
    /// engine (two hosts only).
    #[must_use]
    pub fn remote_impairments(&self, setting: Setting) -> Vec<String> {
        self.remote_impairments
            .iter()
            .filter(|(s, _)| *s == setting)
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// Every cell of `keys` that lacks repetitions gets `why` instead.
    fn fail_keys(&mut self, keys: &[CellKey], why: &str) {
        for key in keys {
            let missing = self.missing(key);
            if missing > 0 {
                let kind = if EngineKind::from_name(&key.subject).is_some() {
                    "engine"
                } else {
                    "peer"
                };
                let index = self.cell(kind, key);
                self.fail(index, missing, why);
            }
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
    fn fail_subject(&mut self, subject: &str, setting: Setting, why: &str) {
        let keys = self.keys(subject, setting);
        self.fail_keys(&keys, why);
    }

    fn status(&self, index: usize) {
        let cell = &self.results.cells[index];
        let rep = self.next_rep(index);
        self.progress.set_message(format!(
            "{} ({rep}/{})",
            cell.key(),
            self.repetitions(&cell.impairment)
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
        run: &mut EngineRun,
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
            if let Some(ending) = run.ending() {
                self.fail(index, missing - attempt, &ending);
                return;
            }
            let started_utc = host::utc_now();
            let base = self.progress.position();
            let mut watch = RunWatch::new(&self.progress, &self.results.cells[index], base);
            let outcome = run.measure(
                config,
                &self.plan.bin_dir,
                packets,
                load,
                &self.interrupted,
                &mut |answered| watch.update(answered),
            );
            self.progress.set_position(base + packets);
            match outcome {
                Ok(measured) => {
                    let command =
                        record::command_line(&measured.attached.command, &measured.engine_command);
                    self.results.cells[index].runs.push(record::engine_record(
                        &measured.attached.row,
                        &measured.attached.stdout,
                        measured.histogram.as_ref(),
                        command,
                        started_utc,
                    ));
                }
                Err(Failure::Interrupted) => return,
                Err(Failure::Failed(e)) => {
                    self.results.cells[index].errors.push(e);
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

    /// Every selected peer on one testbed: in its namespaces, or over two
    /// hosts through a session with each (impaired only where the engine
    /// host has netem).
    pub fn peers(&mut self, config: &TestbedConfig, setting: Setting, peers: &[&dyn Peer]) {
        let hosts = if config.hosts().is_none() {
            None
        } else {
            let pending: Vec<&dyn Peer> = peers
                .iter()
                .copied()
                .filter(|p| self.remaining(p.name(), setting) > 0)
                .collect();
            if pending.is_empty() || self.stopped() {
                return;
            }
            match PeerHosts::open(config) {
                Ok(hosts) if hosts.unimpaired().is_some() => {
                    let why = peers::not_impaired(&format!(
                        "none: {}",
                        hosts.unimpaired().unwrap_or_default()
                    ));
                    self.say(&why);
                    for peer in pending {
                        self.fail_subject(peer.name(), setting, &why);
                    }
                    self.close_peer_hosts(hosts);
                    return;
                }
                Ok(hosts) => Some(Hosts(Arc::new(Mutex::new(hosts)))),
                Err(e) => {
                    let why = format!("peers over two hosts: {e}");
                    self.say(&why);
                    for peer in pending {
                        self.fail_subject(peer.name(), setting, &why);
                    }
                    return;
                }
            }
        };
        let placement = Placement {
            config: config.clone(),
            server: config.server_addr(),
            log_dir: self.plan.out.join("logs").join(setting.as_str()),
            busy_poll: self.plan.busy_poll,
            hosts,
            impaired: setting == Setting::On && !config.impairment().is_noop(),
        };
        if let Err(e) = std::fs::create_dir_all(&placement.log_dir) {
            self.results
                .problems
                .push(format!("creating {}: {e}", placement.log_dir.display()));
        }
        for peer in peers {
            if self.stopped() {
                return;
            }
            if self.remaining(peer.name(), setting) == 0 {
                continue;
            }
            peer.measure(self, &placement, setting);
        }
        if let Some(hosts) = placement
            .hosts
            .and_then(|Hosts(hosts)| Arc::try_unwrap(hosts).ok())
            .and_then(|hosts| hosts.into_inner().ok())
        {
            self.close_peer_hosts(hosts);
        }
    }

    /// Ends the peers' sessions; what a host could not remove is a problem
    /// of the report.
    fn close_peer_hosts(&mut self, hosts: PeerHosts) {
        for (host, cleanup) in hosts.close() {
            match cleanup {
                Ok(cleanup) => self
                    .results
                    .problems
                    .extend(cleanup.problems.into_iter().map(|p| format!("{host}: {p}"))),
                Err(e) => self.results.problems.push(format!("closing {host}: {e}")),
            }
        }
    }
}

/// What the peers need of the matrix.
impl Cells for Bench<'_> {
    fn packets(&self, setting: Setting) -> Vec<u64> {
        self.plan.half(setting).packets.clone()
    }

    fn stopped(&self) -> bool {
        Bench::stopped(self)
    }

    fn interrupted(&self) -> &AtomicBool {
        &self.interrupted
    }

    fn say(&self, line: &str) {
        Bench::say(self, line);
    }

    fn peer_cell(
        &mut self,
        peer: &dyn Peer,
        test: &str,
        setting: Setting,
        packets: u64,
        connections: u32,
    ) -> usize {
        self.cell(
            "peer",
            &CellKey::new(peer.name(), test, setting.as_str(), packets)
                .with_connections(connections),
        )
    }

    fn peer_connections(&self, peer: &dyn Peer, setting: Setting) -> Vec<u32> {
        self.plan.half(setting).peer_connections(peer)
    }

    fn missing_at(&self, index: usize) -> u32 {
        Bench::missing_at(self, index)
    }

    fn next_rep(&self, index: usize) -> usize {
        Bench::next_rep(self, index)
    }

    fn open_rate(&mut self, closed: usize, open: usize) -> Option<u64> {
        Bench::open_rate(self, closed, open)
    }

    fn set_target_rate(&mut self, index: usize, rate: u64) {
        self.results.cells[index].target_rate = Some(rate);
    }

    fn fail(&mut self, index: usize, missing: u32, why: &str) {
        Bench::fail(self, index, missing, why);
    }

    fn fail_subject(&mut self, subject: &str, setting: Setting, why: &str) {
        Bench::fail_subject(self, subject, setting, why);
    }

    fn run_peer_attempts(
        &mut self,
        peer: &dyn Peer,
        place: &Placement,
        index: usize,
        count: u32,
        limit_s: u64,
        server: Option<&str>,
        client: &dyn Fn(usize) -> (peers::PeerClient, PathBuf),
    ) {
        for _ in 0..count {
            if self.stopped() {
                return;
            }
            self.status(index);
            let rep = self.next_rep(index);
            let packets = self.results.cells[index].packets;
            let (run, log) = client(rep);
            let started_utc = host::utc_now();
            let outcome = peers::run_client(
                place,
                &run,
                &log,
                Duration::from_secs(limit_s),
                &self.interrupted,
            )
            .and_then(|o| {
                let parsed = peer.parse(&o.text)?;
                Ok((o, parsed))
            });
            self.progress.inc(packets);
            match outcome {
                Ok((output, (figures, cdf))) => {
                    let command = match server {
                        Some(server) => format!("{} ; server: {server}", output.command),
                        None => output.command,
                    };
                    self.results.cells[index].runs.push(RunRecord {
                        command,
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
                    self.results.cells[index].errors.push(e.to_string());
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

/// Why a two-host run on the impaired half is not impaired (its engine
/// host put no netem in force for this engine), if it is not.
fn unimpaired_over_two_hosts(run: &EngineRun, setting: Setting) -> Option<String> {
    let impairment = run.remote_impairment()?;
    (setting == Setting::On && impairment.starts_with("none"))
        .then(|| peers::not_impaired(impairment))
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

/// A log's path relative to the output directory (as the report names it).
fn relative_log(out: &Path, log: &Path) -> String {
    log.strip_prefix(out)
        .unwrap_or(log)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subject_has_its_tests() {
        assert_eq!(tests_of("kernel"), ENGINE_TESTS);
        assert_eq!(tests_of("fstack"), ENGINE_TESTS);
        assert_eq!(tests_of("sockperf"), ["ping-pong", "under-load"]);
        assert_eq!(tests_of("iperf3"), ["bulk"]);
        assert!(
            tests_of("bogus").is_empty(),
            "an unknown subject inherits nothing"
        );
    }

    /// iperf3 follows the connection axis up to its 128 streams; the
    /// one-connection peers stay at one.
    #[test]
    fn peers_run_at_the_connection_counts_they_can() {
        let half = Half {
            packets: vec![1000],
            connections: vec![1, 16, 256, 1024],
            tests: ENGINE_TESTS.to_vec(),
            rto_min_ms: vec![None],
            clients: vec![contract::ClientStack::Kernel],
            repetitions: 1,
        };
        let counts = |peer: &str| -> Vec<u32> {
            half.peer_keys(peer, Setting::Off)
                .iter()
                .map(|k| k.connections)
                .collect()
        };
        assert_eq!(counts("iperf3"), [1, 16, 128]);
        assert_eq!(counts("sockperf"), [1, 1], "ping-pong and under-load");
        assert_eq!(counts("netperf"), [1]);
    }
}
