//! The report's data: `results.json`'s model, its cells' medians and
//! ratios, and what the matrix still lacks.

use serde::{Deserialize, Serialize};

use crate::stats::{self, Aggregate, Figures};

/// Version of the `results.json` layout. 2 added `sessions` and each run's
/// start time and load average; 3 each cell's connections, client stack
/// and minimum RTO, the configuration's `halves`, and the new figures
/// (connections/s, connect time, busy shares). An older file is read with
/// those at their defaults: one connection, the kernel client, each stack's
/// own RTO.
pub const SCHEMA: u32 = 3;

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

/// Ratios of a cell's medians to the kernel engine's (same testbed, count,
/// test, connections, client stack and minimum RTO) and to sockperf's (same
/// testbed and count, one connection; closed ↔ ping-pong, open ↔
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
    /// Short connections: connections/s ÷ the kernel engine's.
    #[serde(default)]
    pub connections_per_s_vs_kernel: Option<f64>,
}

/// The load generator's stack when none is recorded (reports from before
/// the client axis): the kernel's.
pub const DEFAULT_CLIENT: &str = "kernel";

fn one() -> u32 {
    1
}

fn default_client() -> String {
    DEFAULT_CLIENT.to_owned()
}

/// Where a cell sits in the matrix: everything its runs' figures depend
/// on besides the repetition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CellKey {
    /// The engine or peer.
    pub subject: String,
    /// Its test.
    pub test: String,
    /// `off` or `on`.
    pub impairment: String,
    /// Messages requested.
    pub packets: u64,
    /// Concurrent connections of the load generator.
    pub connections: u32,
    /// The load generator's TCP stack (`kernel` for the peers' clients).
    pub client: String,
    /// The minimum RTO every stack was set to, ms; `None`: each stack's own.
    pub rto_min_ms: Option<u32>,
}

impl CellKey {
    /// A key with one connection, the kernel client and each stack's own
    /// minimum RTO: the original experiment's shape.
    #[must_use]
    pub fn new(subject: &str, test: &str, impairment: &str, packets: u64) -> Self {
        Self {
            subject: subject.to_owned(),
            test: test.to_owned(),
            impairment: impairment.to_owned(),
            packets,
            connections: 1,
            client: DEFAULT_CLIENT.to_owned(),
            rto_min_ms: None,
        }
    }

    /// The same key at `connections` connections.
    #[must_use]
    pub fn with_connections(mut self, connections: u32) -> Self {
        self.connections = connections;
        self
    }

    /// The same key with the load generator on `client`.
    #[must_use]
    pub fn with_client(mut self, client: &str) -> Self {
        client.clone_into(&mut self.client);
        self
    }

    /// The same key with every stack's minimum RTO at `rto_min_ms`.
    #[must_use]
    pub fn with_rto_min(mut self, rto_min_ms: Option<u32>) -> Self {
        self.rto_min_ms = rto_min_ms;
        self
    }

    /// The same key for another subject and test.
    #[must_use]
    pub fn of(&self, subject: &str, test: &str) -> Self {
        Self {
            subject: subject.to_owned(),
            test: test.to_owned(),
            ..self.clone()
        }
    }

    /// Whether this is the original experiment's shape (one connection,
    /// the kernel client, each stack's own RTO).
    #[must_use]
    pub fn is_original_shape(&self) -> bool {
        self.connections == 1 && self.client == DEFAULT_CLIENT && self.rto_min_ms.is_none()
    }
}

impl std::fmt::Display for CellKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.subject, self.test)?;
        if self.client != DEFAULT_CLIENT {
            write!(f, " ({} client)", self.client)?;
        }
        write!(f, " ({}, {}", self.impairment, self.packets)?;
        if self.connections != 1 {
            write!(f, ", {} connections", self.connections)?;
        }
        if let Some(rto) = self.rto_min_ms {
            write!(f, ", RTO ≥ {rto} ms")?;
        }
        f.write_str(")")
    }
}

/// One cell of the matrix: a subject (engine or peer) in one test, on one
/// testbed, at one count, connection count, client stack and minimum RTO,
/// with its repetitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    /// `kernel`, `dpdk`, `fstack`, `sockperf`, `iperf3`, `netperf`.
    pub subject: String,
    /// `engine` or `peer`.
    pub kind: String,
    /// `closed`, `open`, `short` (engines); `ping-pong`, `under-load`
    /// (sockperf); `bulk` (iperf3); `tcp_rr` (netperf).
    pub test: String,
    /// `off` or `on`.
    pub impairment: String,
    /// Messages requested (the row of the table).
    pub packets: u64,
    /// Concurrent connections (1 in reports before this axis).
    #[serde(default = "one")]
    pub connections: u32,
    /// The load generator's TCP stack (`kernel` in reports before this axis).
    #[serde(default = "default_client")]
    pub client: String,
    /// The minimum RTO every stack was set to, ms (absent: each stack's own).
    #[serde(default)]
    pub rto_min_ms: Option<u32>,
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
    /// An empty cell at `key`; `kind` is `engine` or `peer`.
    #[must_use]
    pub fn new(kind: &str, key: &CellKey) -> Self {
        Self {
            subject: key.subject.clone(),
            kind: kind.to_owned(),
            test: key.test.clone(),
            impairment: key.impairment.clone(),
            packets: key.packets,
            connections: key.connections,
            client: key.client.clone(),
            rto_min_ms: key.rto_min_ms,
            target_rate: None,
            runs: Vec::new(),
            errors: Vec::new(),
            aggregate: Aggregate::default(),
            ratios: Ratios::default(),
        }
    }

    /// Where it sits in the matrix.
    #[must_use]
    pub fn key(&self) -> CellKey {
        CellKey {
            subject: self.subject.clone(),
            test: self.test.clone(),
            impairment: self.impairment.clone(),
            packets: self.packets,
            connections: self.connections,
            client: self.client.clone(),
            rto_min_ms: self.rto_min_ms,
        }
    }

    /// Whether the load generator's core was saturated in its median run
    /// (busy at least [`stats::CLIENT_BOUND_SHARE`] of the time): then the
    /// client, not the engine, was the limit.
    #[must_use]
    pub fn client_bound(&self) -> bool {
        self.aggregate
            .median
            .loadgen_busy
            .is_some_and(|b| b >= stats::CLIENT_BOUND_SHARE)
    }

    /// Whether it sits at `key`.
    #[must_use]
    pub fn is_at(&self, key: &CellKey) -> bool {
        self.subject == key.subject
            && self.test == key.test
            && self.impairment == key.impairment
            && self.packets == key.packets
            && self.connections == key.connections
            && self.client == key.client
            && self.rto_min_ms == key.rto_min_ms
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

/// The axes of one half of the matrix (one testbed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Axes {
    /// Message counts.
    pub packets: Vec<u64>,
    /// Connection counts of the engines' cells.
    pub connections: Vec<u32>,
    /// Client stacks of the engines' cells.
    pub clients: Vec<String>,
    /// Minimum RTOs of the engines' cells (`None`: each stack's own).
    pub rto_min_ms: Vec<Option<u32>>,
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

/// The loop family of a test name: `open` (a fixed rate), `short` (a
/// connection per request) or `closed` (one message in flight).
#[must_use]
pub fn family(test: &str) -> &'static str {
    match test {
        "open" | "under-load" => "open",
        "short" => "short",
        _ => "closed",
    }
}

/// Fills every cell's ratios from the kernel engine's and sockperf's cells.
pub fn compute_ratios(cells: &mut [Cell]) {
    let medians: Vec<(CellKey, Figures)> = cells
        .iter()
        .map(|c| (c.key(), c.aggregate.median.clone()))
        .collect();
    let find = |key: &CellKey| {
        medians
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, figures)| figures.clone())
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    for cell in cells.iter_mut() {
        let key = cell.key();
        let (kernel_test, sockperf_test) = match cell.family() {
            "open" => ("open", Some("under-load")),
            "short" => ("short", None),
            _ => ("closed", Some("ping-pong")),
        };
        let me = &cell.aggregate.median;
        let mut r = Ratios::default();
        // The kernel engine with the same client, connections and RTO.
        if let Some(k) = find(&key.of("kernel", kernel_test)) {
            r.messages_per_s_vs_kernel = ratio(me.messages_per_s, k.messages_per_s);
            r.bandwidth_vs_kernel = ratio(me.bandwidth_kb_s, k.bandwidth_kb_s);
            r.rtt_p50_vs_kernel = ratio(me.rtt_p50_us, k.rtt_p50_us);
            r.connections_per_s_vs_kernel = ratio(me.connections_per_s, k.connections_per_s);
        }
        // sockperf runs one connection with the kernel's stack and its own RTO.
        let sockperf = sockperf_test
            .filter(|_| key.is_original_shape())
            .and_then(|t| find(&CellKey::new("sockperf", t, &key.impairment, key.packets)));
        if let Some(s) = sockperf {
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
    /// The hosts of a two-host bench (role, how reached, name, kernel,
    /// cores, core, interface, PMD); empty for this host's testbed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<serde_json::Value>,
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

    /// The cell at `key`, if the report has one.
    #[must_use]
    pub fn find(&self, key: &CellKey) -> Option<&Cell> {
        self.cells.iter().find(|c| c.is_at(key))
    }

    /// The axes the matrix spans on the testbed `impairment`: from the
    /// configuration's `halves` where the bench recorded them, else (a
    /// report from before the connection, client and RTO axes) its counts
    /// at one connection, the kernel client and each stack's own RTO.
    #[must_use]
    pub fn axes(&self, impairment: &str) -> Axes {
        let half = self
            .configuration
            .get("halves")
            .and_then(|h| h.get(impairment));
        let list = |key: &str| -> Vec<serde_json::Value> {
            half.and_then(|h| h.get(key))
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_else(|| configured(&self.configuration, key))
        };
        let packets = list("packets")
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .collect();
        let connections: Vec<u32> = list("connections")
            .iter()
            .filter_map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect();
        let clients: Vec<String> = list("clients")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let rto_min_ms: Vec<Option<u32>> = list("rto_min_ms")
            .iter()
            .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect();
        Axes {
            packets,
            connections: if connections.is_empty() {
                vec![1]
            } else {
                connections
            },
            clients: if clients.is_empty() {
                vec![DEFAULT_CLIENT.to_owned()]
            } else {
                clients
            },
            rto_min_ms: if rto_min_ms.is_empty() {
                vec![None]
            } else {
                rto_min_ms
            },
        }
    }

    /// The cells the recorded matrix asks for that have no run yet: every
    /// testbed, count and test of every engine (at each connection count,
    /// client and minimum RTO of its half) and peer (one connection, the
    /// kernel's stack) in the configuration, except those listed as
    /// unavailable (the report gives their reason instead).
    #[must_use]
    pub fn unmeasured(&self) -> Vec<CellKey> {
        let strings = |key: &str| -> Vec<String> {
            configured(&self.configuration, key)
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        let unavailable = |name: &str| {
            self.engines
                .iter()
                .chain(&self.peers)
                .any(|a| a.name == name && !a.available)
        };
        let available = |list: Vec<String>| -> Vec<String> {
            list.into_iter().filter(|s| !unavailable(s)).collect()
        };
        let engines = available(strings("engines"));
        let peers = available(strings("peers"));
        let mut missing = Vec::new();
        for impairment in strings("impairment") {
            let axes = self.axes(&impairment);
            let mut wanted = Vec::new();
            for &count in &axes.packets {
                for subject in &engines {
                    for test in &self.tests_of(subject) {
                        for &connections in &axes.connections {
                            for client in &axes.clients {
                                for &rto in &axes.rto_min_ms {
                                    wanted.push(
                                        CellKey::new(subject, test, &impairment, count)
                                            .with_connections(connections)
                                            .with_client(client)
                                            .with_rto_min(rto),
                                    );
                                }
                            }
                        }
                    }
                }
                for subject in &peers {
                    for test in &self.tests_of(subject) {
                        wanted.push(CellKey::new(subject, test, &impairment, count));
                    }
                }
            }
            missing.extend(
                wanted
                    .into_iter()
                    .filter(|key| self.find(key).is_none_or(|c| c.runs.is_empty())),
            );
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

/// Reports for tests of this crate.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn run(rate: f64, p50: f64) -> RunRecord {
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
                ..Figures::default()
            },
            clean: true,
            inconsistencies: Vec::new(),
            cdf: Vec::new(),
            detail: serde_json::Value::Null,
            started_utc: String::new(),
            loadavg: String::new(),
        }
    }

    pub fn results(cells: Vec<Cell>, sessions: usize) -> Results {
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
            hosts: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::results;
    use super::*;

    #[test]
    fn tests_come_from_the_configuration_else_from_the_cells() {
        let mut r = results(
            vec![Cell::new("peer", &CellKey::new("iperf3", "bulk", "on", 10))],
            1,
        );
        assert_eq!(r.tests_of("dpdk"), ["closed", "open"]);
        assert_eq!(r.tests_of("iperf3"), ["bulk"], "from its cells");
        assert!(r.tests_of("netperf").is_empty(), "nothing is assumed");
        r.configuration = serde_json::json!({});
        assert!(r.tests_of("dpdk").is_empty());
    }
}
