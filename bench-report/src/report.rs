//! The report's data (`results.json`) and its human form (`results.md`).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stats::{self, Aggregate, Figures};

/// Version of the `results.json` layout. 2 added `sessions` and each run's
/// start time and load average; a version-1 file is read with those empty.
pub const SCHEMA: u32 = 2;

/// The oldest layout `--resume` continues.
pub const OLDEST_RESUMABLE_SCHEMA: u32 = 1;

/// One repetition of one cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The exact command(s) that produced the figures.
    pub command: String,
    /// The figures.
    pub figures: Figures,
    /// Every message answered correctly and the tool succeeded.
    pub clean: bool,
    /// Disagreements between the row and the tool's own counters (empty:
    /// consistent).
    pub inconsistencies: Vec<String>,
    /// The latency CDF as (quantile, µs) points: the engines' full
    /// histogram; sockperf's printed percentiles.
    pub cdf: Vec<(f64, f64)>,
    /// Raw material: the engine's result row and the loadgen's own JSON
    /// result, or the peer's parsed output.
    pub detail: serde_json::Value,
    /// When the run started, UTC (empty in files older than schema 2).
    #[serde(default)]
    pub started_utc: String,
    /// `/proc/loadavg` when it ended: what else shared the cores.
    #[serde(default)]
    pub loadavg: String,
}

/// Ratios of a cell's medians to the kernel engine's and to sockperf's on
/// the same testbed, count and loop (closed ↔ ping-pong, open ↔
/// under-load). Above 1 means more messages/s, more kB/s or a longer RTT.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ratios {
    /// messages/s ÷ the kernel engine's.
    pub messages_per_s_vs_kernel: Option<f64>,
    /// kB/s ÷ the kernel engine's.
    pub bandwidth_vs_kernel: Option<f64>,
    /// RTT p50 ÷ the kernel engine's.
    pub rtt_p50_vs_kernel: Option<f64>,
    /// messages/s ÷ sockperf's.
    pub messages_per_s_vs_sockperf: Option<f64>,
    /// kB/s ÷ sockperf's.
    pub bandwidth_vs_sockperf: Option<f64>,
    /// RTT p50 ÷ sockperf's.
    pub rtt_p50_vs_sockperf: Option<f64>,
}

/// One cell of the matrix: a subject (engine or peer) in one test, on one
/// testbed, at one count, with its repetitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    /// `kernel`, `dpdk`, `fstack`, `sockperf`, `iperf3`, `netperf`.
    pub subject: String,
    /// `engine` or `peer`.
    pub kind: String,
    /// `closed`, `open` (engines); `ping-pong`, `under-load` (sockperf);
    /// `bulk` (iperf3); `tcp_rr` (netperf).
    pub test: String,
    /// `off` or `on`.
    pub impairment: String,
    /// Messages requested (the row of the table).
    pub packets: u64,
    /// Open loop / under-load: the rate asked for, messages/s.
    pub target_rate: Option<u64>,
    /// The repetitions that produced figures.
    pub runs: Vec<RunRecord>,
    /// Repetitions that failed, and why.
    pub errors: Vec<String>,
    /// Median and spread over `runs`.
    pub aggregate: Aggregate,
    /// Ratios of the medians.
    pub ratios: Ratios,
}

impl Cell {
    /// An empty cell.
    #[must_use]
    pub fn new(subject: &str, kind: &str, test: &str, impairment: &str, packets: u64) -> Self {
        Self {
            subject: subject.to_owned(),
            kind: kind.to_owned(),
            test: test.to_owned(),
            impairment: impairment.to_owned(),
            packets,
            target_rate: None,
            runs: Vec::new(),
            errors: Vec::new(),
            aggregate: Aggregate::default(),
            ratios: Ratios::default(),
        }
    }

    /// Recomputes the median and spread from the runs.
    pub fn aggregate(&mut self) {
        let figures: Vec<&Figures> = self.runs.iter().map(|r| &r.figures).collect();
        self.aggregate = stats::aggregate(&figures);
    }

    /// The loop family: `open` for open loop and under-load, else `closed`.
    #[must_use]
    pub fn family(&self) -> &'static str {
        family(&self.test)
    }

    /// The run whose messages/s (or kB/s) is the median one, for plots.
    #[must_use]
    pub fn median_run(&self) -> Option<&RunRecord> {
        let key = |r: &RunRecord| {
            r.figures
                .messages_per_s
                .or(r.figures.bandwidth_kb_s)
                .unwrap_or(0.0)
        };
        let mut runs: Vec<&RunRecord> = self.runs.iter().collect();
        runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
        runs.get(runs.len() / 2).copied()
    }
}

/// The list under `key` in a recorded configuration (empty when absent).
#[must_use]
pub fn configured(configuration: &serde_json::Value, key: &str) -> Vec<serde_json::Value> {
    configuration
        .get(key)
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The loop family of a test name.
#[must_use]
pub fn family(test: &str) -> &'static str {
    match test {
        "open" | "under-load" => "open",
        _ => "closed",
    }
}

/// Fills every cell's ratios from the kernel engine's and sockperf's cells.
pub fn compute_ratios(cells: &mut [Cell]) {
    let medians: Vec<(String, String, &'static str, u64, String, Figures)> = cells
        .iter()
        .map(|c| {
            (
                c.subject.clone(),
                c.impairment.clone(),
                c.family(),
                c.packets,
                c.test.clone(),
                c.aggregate.median.clone(),
            )
        })
        .collect();
    let find = |subject: &str, test: &str, imp: &str, packets: u64| {
        medians
            .iter()
            .find(|m| m.0 == subject && m.4 == test && m.1 == imp && m.3 == packets)
            .map(|m| m.5.clone())
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    for cell in cells.iter_mut() {
        let (kernel_test, sockperf_test) = match cell.family() {
            "open" => ("open", "under-load"),
            _ => ("closed", "ping-pong"),
        };
        let me = &cell.aggregate.median;
        let mut r = Ratios::default();
        if let Some(k) = find("kernel", kernel_test, &cell.impairment, cell.packets) {
            r.messages_per_s_vs_kernel = ratio(me.messages_per_s, k.messages_per_s);
            r.bandwidth_vs_kernel = ratio(me.bandwidth_kb_s, k.bandwidth_kb_s);
            r.rtt_p50_vs_kernel = ratio(me.rtt_p50_us, k.rtt_p50_us);
        }
        if let Some(s) = find("sockperf", sockperf_test, &cell.impairment, cell.packets) {
            r.messages_per_s_vs_sockperf = ratio(me.messages_per_s, s.messages_per_s);
            r.bandwidth_vs_sockperf = ratio(me.bandwidth_kb_s, s.bandwidth_kb_s);
            r.rtt_p50_vs_sockperf = ratio(me.rtt_p50_us, s.rtt_p50_us);
        }
        cell.ratios = r;
    }
}

/// An engine or peer, and whether this build and host can measure it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Availability {
    /// Its name.
    pub name: String,
    /// Whether it was measured.
    pub available: bool,
    /// Why not.
    pub reason: Option<String>,
}

/// One testbed of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestbedRecord {
    /// `off` or `on`.
    pub impairment: String,
    /// Testbed name.
    pub name: String,
    /// The impairment in force, as the network reports it.
    pub described: String,
    /// Loss observed on the impaired direction at the end, percent.
    pub observed_loss_percent: Option<f64>,
    /// The validated configuration.
    pub config: serde_json::Value,
}

/// Host facts beside `doctor`'s report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostFacts {
    /// `uname -r`.
    pub kernel: String,
    /// CPU model.
    pub cpu: String,
    /// Online cores.
    pub cores: usize,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// /proc/loadavg when the run started (other work shares the cores).
    pub loadavg_start: String,
    /// /proc/loadavg when it ended.
    pub loadavg_end: String,
    /// `supervisor doctor --json`.
    pub doctor: serde_json::Value,
}

/// One invocation of `supervisor bench` that added runs to the report
/// (several when the matrix was filled with `--resume`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Session {
    /// The command as typed.
    pub command: String,
    /// UTC start.
    pub started_utc: String,
    /// UTC end (empty while it runs).
    pub finished_utc: String,
    /// `git rev-parse HEAD` of the binaries' checkout.
    pub git_revision: String,
    /// `/proc/loadavg` at its start and end.
    pub loadavg_start: String,
    /// At its end.
    pub loadavg_end: String,
    /// Stopped by SIGINT/SIGTERM.
    pub interrupted: bool,
}

/// The whole `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// Layout version.
    pub schema: u32,
    /// The command as typed.
    pub command: String,
    /// UTC start and end.
    pub started_utc: String,
    /// UTC end.
    pub finished_utc: String,
    /// `git rev-parse HEAD` (with `-dirty` when the tree had changes).
    pub git_revision: String,
    /// The matrix's configuration.
    pub configuration: serde_json::Value,
    /// Host facts.
    pub host: HostFacts,
    /// Engines asked for.
    pub engines: Vec<Availability>,
    /// Peers asked for.
    pub peers: Vec<Availability>,
    /// The testbeds used.
    pub testbeds: Vec<TestbedRecord>,
    /// Every cell.
    pub cells: Vec<Cell>,
    /// Plots written, relative to the output directory.
    pub plots: Vec<String>,
    /// Problems that did not stop the run (a plot that failed, a cleanup).
    pub problems: Vec<String>,
    /// Stopped by SIGINT/SIGTERM before the matrix was complete.
    pub interrupted: bool,
    /// Every invocation that measured part of this report, oldest first
    /// (the fields above describe the latest).
    #[serde(default)]
    pub sessions: Vec<Session>,
}

impl Results {
    /// The impairment settings measured, in the order first measured: the
    /// testbeds recorded, then any setting only cells know (a testbed is
    /// recorded when its half of the matrix ends, so a session stopped
    /// part-way leaves cells without one).
    #[must_use]
    pub fn impairments(&self) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let settings = self
            .testbeds
            .iter()
            .map(|tb| &tb.impairment)
            .chain(self.cells.iter().map(|c| &c.impairment));
        for setting in settings {
            if !seen.contains(setting) {
                seen.push(setting.clone());
            }
        }
        seen
    }

    /// The cells the recorded matrix asks for that have no run yet, as
    /// `subject test (impairment, packets)`: every testbed, count and test
    /// of every engine and peer in the configuration, except those listed
    /// as unavailable (the report gives their reason instead).
    #[must_use]
    pub fn unmeasured(&self) -> Vec<String> {
        let strings = |key: &str| -> Vec<String> {
            configured(&self.configuration, key)
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        let packets: Vec<u64> = configured(&self.configuration, "packets")
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .collect();
        let unavailable = |name: &str| {
            self.engines
                .iter()
                .chain(&self.peers)
                .any(|a| a.name == name && !a.available)
        };
        let subjects: Vec<String> = strings("engines")
            .into_iter()
            .chain(strings("peers"))
            .filter(|s| !unavailable(s))
            .collect();
        let mut missing = Vec::new();
        for impairment in strings("impairment") {
            for &count in &packets {
                for subject in &subjects {
                    for test in &self.tests_of(subject) {
                        let measured = cell(self, subject, test, &impairment, count)
                            .is_some_and(|c| !c.runs.is_empty());
                        if !measured {
                            missing.push(format!("{subject} {test} ({impairment}, {count})"));
                        }
                    }
                }
            }
        }
        missing
    }

    /// The tests `subject` runs, as the configuration records them (the
    /// bench writes them there); for a report from before it did, the
    /// tests its cells hold.
    #[must_use]
    pub fn tests_of(&self, subject: &str) -> Vec<String> {
        let recorded: Vec<String> = self
            .configuration
            .get("tests")
            .and_then(|t| t.get(subject))
            .and_then(serde_json::Value::as_array)
            .map(|tests| {
                tests
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if !recorded.is_empty() {
            return recorded;
        }
        let mut seen: Vec<String> = Vec::new();
        for cell in self.cells.iter().filter(|c| c.subject == subject) {
            if !seen.contains(&cell.test) {
                seen.push(cell.test.clone());
            }
        }
        seen
    }

    /// Recomputes every cell's median, spread and ratios.
    pub fn aggregate(&mut self) {
        for cell in &mut self.cells {
            cell.aggregate();
        }
        compute_ratios(&mut self.cells);
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

fn ratio_text(v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(x) if x >= 100.0 => format!("{x:.0}×"),
        Some(x) if x >= 0.1 => format!("{x:.2}×"),
        Some(x) => format!("{x:.4}×"),
    }
}

/// Column groups of one table: (subject, test) pairs in a fixed order.
fn groups(results: &Results, impairment: &str, family: &str) -> Vec<(String, String)> {
    let order = |s: &str| match s {
        "kernel" => 0,
        "dpdk" => 1,
        "fstack" => 2,
        "sockperf" => 3,
        "netperf" => 4,
        _ => 5,
    };
    let mut g: Vec<(String, String)> = results
        .cells
        .iter()
        .filter(|c| c.impairment == impairment && c.family() == family)
        .map(|c| (c.subject.clone(), c.test.clone()))
        .collect();
    g.sort_by_key(|(s, t)| (order(s), t.clone()));
    g.dedup();
    g
}

fn cell<'a>(
    results: &'a Results,
    subject: &str,
    test: &str,
    imp: &str,
    packets: u64,
) -> Option<&'a Cell> {
    results.cells.iter().find(|c| {
        c.subject == subject && c.test == test && c.impairment == imp && c.packets == packets
    })
}

fn counts(results: &Results) -> Vec<u64> {
    let mut p: Vec<u64> = results.cells.iter().map(|c| c.packets).collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// `results.md`: per testbed and loop, one row per count and one column
/// group per engine and peer; then the ratios.
#[must_use]
pub fn markdown(results: &Results) -> String {
    let mut md = String::new();
    let reps = results
        .configuration
        .get("repetitions")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1);
    let _ = writeln!(md, "# bypasslab benchmark matrix\n");
    if results.sessions.len() > 1 {
        let _ = writeln!(
            md,
            "Measured in {} sessions (`--resume`), each adding the runs the report lacked (times in UTC):\n",
            results.sessions.len()
        );
        for (i, session) in results.sessions.iter().enumerate() {
            let _ = writeln!(md, "{}. {}", i + 1, session_line(session));
        }
        md.push('\n');
    } else {
        let _ = writeln!(
            md,
            "Run {} → {} (UTC), git `{}`.\n\nCommand: `{}`\n",
            results.started_utc, results.finished_utc, results.git_revision, results.command
        );
    }
    let h = &results.host;
    let _ = writeln!(
        md,
        "Host: {} ({} cores, {} MiB), Linux {}; load average at start `{}`, at end `{}`.\n",
        h.cpu,
        h.cores,
        h.memory_mib,
        h.kernel,
        h.loadavg_start.trim(),
        h.loadavg_end.trim()
    );
    let _ = writeln!(
        md,
        "Every figure is the median of its cell's runs ({reps} asked for; a cell with fewer is listed under Flags); RTT in µs, rate in messages/s, bandwidth in kB/s (request bytes / 1000, as the original table). \
         ⚠ marks a cell whose messages/s, kB/s or RTT p50 spread more than {} % over its runs (spread = (max − min) / median). \
         — : not measured by that tool. sockperf echoes 768-byte messages (the engines answer 4 bytes) and is bounded by time, \
         so its row holds the messages it exchanged in the time a 1-second calibration gave for the count; \
         iperf3 moves the count's bytes (count × 768) in bulk, and its mean is the sender's smoothed TCP RTT, not a message's.\n",
        stats::SPREAD_FLAG_PERCENT
    );
    for a in results.engines.iter().chain(&results.peers) {
        if !a.available {
            let _ = writeln!(
                md,
                "- **{}** not measured: {}",
                a.name,
                a.reason.as_deref().unwrap_or("unavailable")
            );
        }
    }
    md.push('\n');
    let fraction = results
        .configuration
        .get("open_fraction")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    for impairment in results.impairments() {
        let testbeds: Vec<&TestbedRecord> = results
            .testbeds
            .iter()
            .filter(|tb| tb.impairment == impairment)
            .collect();
        let losses: Vec<String> = testbeds
            .iter()
            .map(|tb| {
                tb.observed_loss_percent
                    .map_or_else(|| "n/a".to_owned(), |l| format!("{l:.2} %"))
            })
            .collect();
        match testbeds.first() {
            Some(tb) => {
                let _ = writeln!(
                    md,
                    "## Impairment {impairment} — {} (observed loss {})\n",
                    tb.described,
                    losses.join(", ")
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "## Impairment {impairment} — testbed not recorded (the session stopped before this half ended; see results.json's configuration)\n"
                );
            }
        }

        for (family, title) in [
            (
                "closed",
                "Closed loop (one message in flight) beside sockperf ping-pong, netperf TCP_RR and iperf3 bulk".to_owned(),
            ),
            (
                "open",
                format!("Open loop at {fraction} × the closed-loop rate beside sockperf under-load at {fraction} × its ping-pong rate"),
            ),
        ] {
            let g = groups(results, &impairment, family);
            if g.is_empty() {
                continue;
            }
            let _ = writeln!(md, "### {title}\n");
            table(&mut md, results, &impairment, &g);
            md.push('\n');
        }
        let _ = writeln!(md, "### Every cell, one row each\n");
        cell_rows(&mut md, results, &impairment);
        md.push('\n');
        let _ = writeln!(
            md,
            "### Ratios (median ÷ median; closed ↔ ping-pong, open ↔ under-load)\n"
        );
        let _ = writeln!(
            md,
            "| packets | subject | test | msgs/s ÷ kernel | kB/s ÷ kernel | p50 ÷ kernel | msgs/s ÷ sockperf | kB/s ÷ sockperf | p50 ÷ sockperf |"
        );
        let _ = writeln!(md, "|---:|---|---|---:|---:|---:|---:|---:|---:|");
        for packets in counts(results) {
            for family in ["closed", "open"] {
                for (s, t) in groups(results, &impairment, family) {
                    if let Some(c) = cell(results, &s, &t, &impairment, packets) {
                        let r = &c.ratios;
                        let _ = writeln!(
                            md,
                            "| {packets} | {s} | {t} | {} | {} | {} | {} | {} | {} |",
                            ratio_text(r.messages_per_s_vs_kernel),
                            ratio_text(r.bandwidth_vs_kernel),
                            ratio_text(r.rtt_p50_vs_kernel),
                            ratio_text(r.messages_per_s_vs_sockperf),
                            ratio_text(r.bandwidth_vs_sockperf),
                            ratio_text(r.rtt_p50_vs_sockperf)
                        );
                    }
                }
            }
        }
        md.push('\n');
    }
    let problems: Vec<String> = results
        .cells
        .iter()
        .flat_map(|c| {
            c.errors
                .iter()
                .map(move |e| {
                    format!(
                        "{} {} ({}, {}): {e}",
                        c.subject, c.test, c.impairment, c.packets
                    )
                })
                .chain(c.aggregate.flag_reasons.iter().map(move |f| {
                    format!(
                        "⚠ {} {} ({}, {}): {f}",
                        c.subject, c.test, c.impairment, c.packets
                    )
                }))
                .chain(
                    (!c.runs.is_empty() && c.runs.len() as u64 != reps).then(|| {
                        format!(
                            "{} {} ({}, {}): median of {} run(s), not {reps}",
                            c.subject,
                            c.test,
                            c.impairment,
                            c.packets,
                            c.runs.len()
                        )
                    }),
                )
        })
        .chain(results.problems.iter().cloned())
        .collect();
    let unmeasured = results.unmeasured();
    if !unmeasured.is_empty() {
        let _ = writeln!(
            md,
            "## Not measured yet\n\n{} cell(s) of this matrix have no run; `supervisor bench --resume` with the report's options measures them:\n",
            unmeasured.len()
        );
        for u in unmeasured {
            let _ = writeln!(md, "- {u}");
        }
        md.push('\n');
    }
    if !problems.is_empty() {
        let _ = writeln!(md, "## Flags and failures\n");
        for p in problems {
            let _ = writeln!(md, "- {p}");
        }
        md.push('\n');
    }
    if !results.plots.is_empty() {
        let _ = writeln!(md, "## Plots\n");
        for p in results.plots.iter().filter(|p| p.ends_with(".svg")) {
            let _ = writeln!(md, "- [{p}]({p})");
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "The exact command of every run, each run's figures and the loadgen's own counters are in results.json."
    );
    md
}

/// One session of a resumed report: when, from which revision, under what
/// load, and how it ended. A session without an end time is running, or
/// stopped without closing the report (killed, or the machine went down);
/// its runs up to the last saved repetition are kept.
fn session_line(session: &Session) -> String {
    let ended = if session.finished_utc.is_empty() {
        "not finished (still running, or stopped without closing the report; its saved runs are kept)".to_owned()
    } else if session.interrupted {
        format!("{} (interrupted)", session.finished_utc)
    } else {
        session.finished_utc.clone()
    };
    let load_end = if session.loadavg_end.is_empty() {
        String::new()
    } else {
        format!(" → `{}`", session.loadavg_end.trim())
    };
    format!(
        "{} → {ended}, git `{}`, load average `{}`{load_end}: `{}`",
        session.started_utc,
        session.git_revision,
        session.loadavg_start.trim(),
        session.command
    )
}

fn spread_text(p: Option<f64>) -> String {
    p.map_or_else(|| "—".to_owned(), |p| format!("{p:.1} %"))
}

/// One row per cell of one testbed: count, subject, loop, runs, the
/// medians, the ratios and the spread of the headline figures.
fn cell_rows(md: &mut String, results: &Results, imp: &str) {
    let _ = writeln!(
        md,
        "| packets | subject | test | runs | RTT mean | p50 | p99 | p99.9 | max | msgs/s | kB/s | msgs/s ÷ kernel | p50 ÷ kernel | msgs/s ÷ sockperf | p50 ÷ sockperf | spread msgs/s, p50 |"
    );
    let _ = writeln!(
        md,
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for packets in counts(results) {
        for family in ["closed", "open"] {
            for (s, t) in groups(results, imp, family) {
                let Some(c) = cell(results, &s, &t, imp, packets) else {
                    continue;
                };
                let test = match c.target_rate {
                    Some(rate) => format!("{t} @{rate}/s"),
                    None => t.clone(),
                };
                if c.runs.is_empty() {
                    let _ = writeln!(
                        md,
                        "| {packets} | {s} | {test} | 0 | failed | | | | | | | | | | | |"
                    );
                    continue;
                }
                let m = &c.aggregate.median;
                let spread = &c.aggregate.spread_percent;
                let r = &c.ratios;
                let _ = writeln!(
                    md,
                    "| {packets} | {s} | {test} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}, {}{} |",
                    c.runs.len(),
                    num(m.rtt_mean_us),
                    num(m.rtt_p50_us),
                    num(m.rtt_p99_us),
                    num(m.rtt_p999_us),
                    num(m.rtt_max_us),
                    num(m.messages_per_s),
                    num(m.bandwidth_kb_s),
                    ratio_text(r.messages_per_s_vs_kernel),
                    ratio_text(r.rtt_p50_vs_kernel),
                    ratio_text(r.messages_per_s_vs_sockperf),
                    ratio_text(r.rtt_p50_vs_sockperf),
                    spread_text(spread.messages_per_s.or(spread.bandwidth_kb_s)),
                    spread_text(spread.rtt_p50_us),
                    if c.aggregate.flagged { " ⚠" } else { "" }
                );
            }
        }
    }
}

fn table(md: &mut String, results: &Results, imp: &str, groups: &[(String, String)]) {
    let mut header = String::from("| packets |");
    let mut rule = String::from("|---:|");
    for (s, t) in groups {
        for col in ["mean", "p50", "p99", "p99.9", "msgs/s", "kB/s"] {
            let _ = write!(header, " {s} {t} {col} |");
            rule.push_str("---:|");
        }
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for packets in counts(results) {
        let mut row = format!("| {packets} |");
        for (s, t) in groups {
            match cell(results, s, t, imp, packets) {
                None => row.push_str(" | | | | | |"),
                Some(c) if c.runs.is_empty() => {
                    row.push_str(" failed | | | | | |");
                }
                Some(c) => {
                    let m = &c.aggregate.median;
                    let warn = |figure: &str| {
                        let hit = c
                            .aggregate
                            .flag_reasons
                            .iter()
                            .any(|r| r.starts_with(figure));
                        if hit {
                            " ⚠"
                        } else {
                            ""
                        }
                    };
                    let _ = write!(
                        row,
                        " {} | {}{} | {} | {} | {}{} | {}{} |",
                        num(m.rtt_mean_us),
                        num(m.rtt_p50_us),
                        warn("rtt_p50_us"),
                        num(m.rtt_p99_us),
                        num(m.rtt_p999_us),
                        num(m.messages_per_s),
                        warn("messages_per_s"),
                        num(m.bandwidth_kb_s),
                        warn("bandwidth_kb_s")
                    );
                }
            }
        }
        let _ = writeln!(md, "{row}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rate: f64, p50: f64) -> RunRecord {
        RunRecord {
            command: "loadgen …".into(),
            figures: Figures {
                messages: Some(1000.0),
                elapsed_s: Some(1000.0 / rate),
                messages_per_s: Some(rate),
                bandwidth_kb_s: Some(rate * 0.768),
                rtt_mean_us: Some(p50 * 1.2),
                rtt_p50_us: Some(p50),
                rtt_p99_us: Some(p50 * 3.0),
                rtt_p999_us: Some(p50 * 5.0),
                rtt_max_us: Some(p50 * 9.0),
            },
            clean: true,
            inconsistencies: Vec::new(),
            cdf: Vec::new(),
            detail: serde_json::Value::Null,
            started_utc: String::new(),
            loadavg: String::new(),
        }
    }

    fn results(cells: Vec<Cell>, sessions: usize) -> Results {
        Results {
            schema: SCHEMA,
            command: "supervisor bench".into(),
            started_utc: String::new(),
            finished_utc: String::new(),
            git_revision: "abc".into(),
            configuration: serde_json::json!({
                "repetitions": 3, "open_fraction": 0.8, "engines": ["kernel", "dpdk"],
                "peers": ["sockperf"], "packets": [1000], "impairment": ["off", "on"],
                "tests": {"kernel": ["closed", "open"], "dpdk": ["closed", "open"],
                          "sockperf": ["ping-pong", "under-load"]}
            }),
            host: HostFacts::default(),
            engines: Vec::new(),
            peers: vec![Availability {
                name: "sockperf".into(),
                available: false,
                reason: Some("not installed".into()),
            }],
            testbeds: vec![TestbedRecord {
                impairment: "on".into(),
                name: "bi1".into(),
                described: "emulator: 100 µs delay, 1 % loss, from-ns3".into(),
                observed_loss_percent: Some(0.98),
                config: serde_json::Value::Null,
            }],
            cells,
            plots: Vec::new(),
            problems: Vec::new(),
            interrupted: false,
            sessions: (0..sessions)
                .map(|i| Session {
                    command: format!("supervisor bench --resume #{i}"),
                    // The first ended; the last was killed before closing.
                    finished_utc: if i == 0 {
                        "2026-01-01T01:00:00Z".into()
                    } else {
                        String::new()
                    },
                    ..Session::default()
                })
                .collect(),
        }
    }

    #[test]
    fn tests_come_from_the_configuration_else_from_the_cells() {
        let mut r = results(vec![Cell::new("iperf3", "peer", "bulk", "on", 10)], 1);
        assert_eq!(r.tests_of("dpdk"), ["closed", "open"]);
        assert_eq!(r.tests_of("iperf3"), ["bulk"], "from its cells");
        assert!(r.tests_of("netperf").is_empty(), "nothing is assumed");
        r.configuration = serde_json::json!({});
        assert!(r.tests_of("dpdk").is_empty());
    }

    #[test]
    fn markdown_has_every_cell_its_runs_and_its_sessions() {
        let mut kernel = Cell::new("kernel", "engine", "closed", "on", 1000);
        kernel.runs = vec![run(400.0, 150.0), run(420.0, 148.0), run(410.0, 151.0)];
        let mut dpdk = Cell::new("dpdk", "engine", "closed", "on", 1000);
        dpdk.runs = vec![run(1600.0, 125.0)];
        let mut open = Cell::new("kernel", "engine", "open", "on", 1000);
        open.target_rate = Some(328);
        open.errors.push("the kernel engine did not start".into());
        // A half whose session stopped before its testbed was recorded.
        let mut unrecorded = Cell::new("kernel", "engine", "closed", "off", 1000);
        unrecorded.runs = vec![run(20000.0, 40.0)];
        let mut r = results(vec![kernel, dpdk, open, unrecorded], 2);
        r.aggregate();
        let md = markdown(&r);
        assert!(md.contains("Measured in 2 sessions"), "{md}");
        assert!(md.contains("supervisor bench --resume #1"), "{md}");
        assert!(md.contains("→ 2026-01-01T01:00:00Z, git"), "{md}");
        assert_eq!(md.matches("not finished").count(), 1, "{md}");
        assert!(md.contains("### Every cell, one row each"), "{md}");
        assert!(
            md.contains("| 1000 | kernel | closed | 3 | 180 | 150 |"),
            "{md}"
        );
        // 1600 / 410 = 3.90 the kernel's rate; 125 / 150 of its median.
        assert!(md.contains("| 1000 | dpdk | closed | 1 |"), "{md}");
        assert!(md.contains("3.90×") && md.contains("0.83×"), "{md}");
        assert!(
            md.contains("| 1000 | kernel | open @328/s | 0 | failed |"),
            "{md}"
        );
        assert!(
            md.contains("dpdk closed (on, 1000): median of 1 run(s), not 3"),
            "{md}"
        );
        assert!(md.contains("kernel open (on, 1000): the kernel engine did not start"));
        assert!(md.contains("observed loss 0.98 %"), "{md}");
        assert!(
            md.contains("## Impairment off — testbed not recorded"),
            "{md}"
        );
        assert!(md.contains("| 1000 | kernel | closed | 1 | "), "{md}");
        // The configuration asks for kernel and dpdk at 1000 on and off,
        // and for sockperf, which is unavailable: dpdk open (on), the failed
        // kernel open (on) and the unimpaired dpdk and kernel open have no
        // run; sockperf is not listed.
        assert!(md.contains("## Not measured yet\n\n5 cell(s)"), "{md}");
        for missing in [
            "- dpdk open (on, 1000)",
            "- kernel open (on, 1000)",
            "- kernel open (off, 1000)",
            "- dpdk closed (off, 1000)",
            "- dpdk open (off, 1000)",
        ] {
            assert!(md.contains(missing), "{missing}: {md}");
        }
        assert!(!md.contains("- sockperf"), "{md}");
    }
}
