//! The peers measured beside the engines on the same testbed: tools users
//! already trust, each in a file of its own behind the [`Peer`] trait.
//! Servers run in NS3 on the engine's core, clients in NS1 on the load
//! generator's core, both pinned with `taskset` ([`Node::pinned_command`]).
//!
//! Adding a peer is one new file implementing [`Peer`] (its tests, its
//! programs, how it measures a testbed, how its output parses) and one line
//! in [`ALL`]. A peer must say which tests it runs: one that does not
//! cannot be compiled, so it can never inherit the engines' tests.
//!
//! ```compile_fail
//! use bench::peers::{Parsed, ParseError, Peer, Placement};
//! use bench::{matrix::Bench, Setting};
//!
//! struct Untested;
//!
//! impl Peer for Untested {
//!     fn name(&self) -> &'static str { "untested" }
//!     fn programs(&self) -> &'static [&'static str] { &["true"] }
//!     fn measure(&self, _: &mut Bench<'_>, _: &Placement, _: Setting) {}
//!     fn parse(&self, _: &str) -> Result<Parsed, ParseError> {
//!         Err(ParseError::new("untested", "nothing"))
//!     }
//!     // no `tests`: E0046, not all trait items implemented
//! }
//! ```
//!
//! Parsing is kept apart from running: each peer's `parse` turns a tool's
//! output into [`Figures`] and never panics on odd text.

pub mod iperf3;
pub mod netperf;
pub mod sockperf;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bench_report::stats::Figures;
use testbed::config::TestbedConfig;
use testbed::host::command::{log_streams, words};
use testbed::host::process::{self, Ending};
use testbed::host::wait::{self, Check, Waited};
use testbed::placement::Node;
use testbed::topology::NsRole;

use crate::Setting;

/// The message size given to the peers: the mean of the loadgen's uniform
/// 512..=1024 sizes.
pub const PEER_MESSAGE_SIZE: u64 = 768;

/// Every peer, in the order the bench measures them.
pub const ALL: &[&dyn Peer] = &[&sockperf::Sockperf, &iperf3::Iperf3, &netperf::Netperf];

/// A peer tool.
pub trait Peer: Sync {
    /// Its name on the command line and in the report.
    fn name(&self) -> &'static str;

    /// The tests it runs: one cell per test and count.
    fn tests(&self) -> &'static [&'static str];

    /// The programs it needs.
    fn programs(&self) -> &'static [&'static str];

    /// Most connections it runs a cell at: its cells follow the matrix's
    /// connection counts up to this (1: one connection, whatever the axis).
    fn max_connections(&self) -> u32 {
        1
    }

    /// Why it is skipped when `missing` of its programs are not installed.
    fn missing(&self, missing: &[&str]) -> Unavailable {
        Unavailable(format!(
            "{} not installed (Debian package `{}`; scripts/setup and scripts/bench install it)",
            missing.join(", "),
            self.name()
        ))
    }

    /// Measures every cell of it on one testbed that still lacks runs.
    fn measure(&self, cells: &mut dyn Cells, place: &Placement, setting: Setting);

    /// Its figures (and CDF points, where it prints percentiles) from what
    /// a client run printed.
    ///
    /// # Errors
    /// The output lacks what the figures need.
    fn parse(&self, output: &str) -> Result<Parsed, ParseError>;

    /// Whether every program is installed; otherwise why it is skipped.
    ///
    /// # Errors
    /// The reason, for the report.
    fn detect(&self) -> Result<(), Unavailable> {
        let missing: Vec<&str> = self
            .programs()
            .iter()
            .copied()
            .filter(|p| find_program(p).is_none())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(self.missing(&missing))
        }
    }
}

impl fmt::Debug for dyn Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq for dyn Peer {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

/// Why a peer cannot be measured on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// A name that is no peer's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no peer `{0}`: choose from {names}", names = names())]
pub struct UnknownPeer(pub String);

/// The peers' names, for messages.
fn names() -> String {
    ALL.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
}

/// The peer named `name`.
///
/// # Errors
/// No peer has that name (the message lists them).
pub fn by_name(name: &str) -> Result<&'static dyn Peer, UnknownPeer> {
    ALL.iter()
        .copied()
        .find(|p| p.name() == name)
        .ok_or_else(|| UnknownPeer(name.to_owned()))
}

/// What a peer's measurement needs of the matrix that records it: the
/// counts, its cells, and the runs of its client recorded into them. The
/// matrix implements it; a peer knows nothing else of the matrix.
pub trait Cells {
    /// The message counts of the matrix on the testbed of `setting`.
    fn packets(&self, setting: Setting) -> Vec<u64>;
    /// Whether SIGINT/SIGTERM arrived.
    fn stopped(&self) -> bool;
    /// The flag SIGINT/SIGTERM raise.
    fn interrupted(&self) -> &AtomicBool;
    /// A line for the user, above any progress bar.
    fn say(&self, line: &str);
    /// The index of `peer`'s cell, created empty when the report has none.
    fn peer_cell(
        &mut self,
        peer: &dyn Peer,
        test: &str,
        setting: Setting,
        packets: u64,
        connections: u32,
    ) -> usize;
    /// The connection counts `peer` runs at on the testbed of `setting`.
    fn peer_connections(&self, peer: &dyn Peer, setting: Setting) -> Vec<u32>;
    /// Repetitions the cell still lacks.
    fn missing_at(&self, index: usize) -> u32;
    /// The number of the cell's next repetition (for log names).
    fn next_rep(&self, index: usize) -> usize;
    /// The open-loop rate of `open` derived from the closed-loop `closed`.
    fn open_rate(&mut self, closed: usize, open: usize) -> Option<u64>;
    /// Records the rate an open-loop cell runs at.
    fn set_target_rate(&mut self, index: usize, rate: u64);
    /// Records that `missing` repetitions of a cell cannot run, and why.
    fn fail(&mut self, index: usize, missing: u32, why: &str);
    /// Every cell of `subject` still lacking runs on this testbed gets `why`.
    fn fail_subject(&mut self, subject: &str, setting: Setting, why: &str);
    /// `count` attempts at a peer cell's repetitions; `client(rep)` gives
    /// the command and its log, `server` the server's command when each
    /// attempt has its own. A failed one is recorded and the next tried.
    fn run_peer_attempts(
        &mut self,
        peer: &dyn Peer,
        index: usize,
        count: u32,
        limit_s: u64,
        server: Option<&str>,
        client: &dyn Fn(usize) -> (Command, PathBuf),
    );

    /// Runs a peer cell's missing repetitions.
    fn run_peer_cell(
        &mut self,
        peer: &dyn Peer,
        index: usize,
        limit_s: u64,
        client: &dyn Fn(usize) -> (Command, PathBuf),
    ) {
        let missing = self.missing_at(index);
        self.run_peer_attempts(peer, index, missing, limit_s, None, client);
    }

    /// Starts a peer's server in NS3 on `port` for the whole testbed; when
    /// it cannot start, every cell of the peer still lacking runs gets the
    /// reason.
    fn peer_server(
        &mut self,
        peer: &dyn Peer,
        command: Command,
        log: &Path,
        place: &Placement,
        port: u16,
        setting: Setting,
    ) -> Option<Server> {
        match Server::start(command, log, &place.config, port) {
            Ok(server) => Some(server),
            Err(e) => {
                let why = e.to_string();
                self.say(&why);
                self.fail_subject(peer.name(), setting, &why);
                None
            }
        }
    }
}

/// A peer's figures, with CDF points as (quantile, µs) when it has them.
pub type Parsed = (Figures, Vec<(f64, f64)>);

/// A peer's output that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{tool}: {reason}")]
pub struct ParseError {
    /// The tool.
    pub tool: &'static str,
    /// What was missing or wrong.
    pub reason: String,
}

impl ParseError {
    /// An error of `tool`.
    #[must_use]
    pub fn new(tool: &'static str, reason: impl Into<String>) -> Self {
        Self {
            tool,
            reason: reason.into(),
        }
    }
}

/// A peer's process that did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Its log cannot be created.
    #[error("creating {path}: {source}")]
    Log {
        /// The log.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It cannot be started.
    #[error("starting `{command}`: {source}")]
    Start {
        /// Its command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A server ended before it served.
    #[error("`{command}` exited at start ({ending}): {log_tail}")]
    ExitedAtStart {
        /// Its command line.
        command: String,
        /// How it ended.
        ending: Ending,
        /// The end of its log.
        log_tail: String,
    },
    /// A server did not listen in time.
    #[error("`{command}` did not listen on port {port} within {} s: {log_tail}", SERVER_READY.as_secs())]
    NotListening {
        /// Its command line.
        command: String,
        /// The port.
        port: u16,
        /// The end of its log.
        log_tail: String,
    },
    /// A client failed.
    #[error("`{command}` failed ({ending}): {log_tail}")]
    Failed {
        /// Its command line.
        command: String,
        /// How it ended.
        ending: Ending,
        /// The end of its log.
        log_tail: String,
    },
    /// A client did not finish in time (it was stopped).
    #[error("`{command}` did not finish within {seconds} s")]
    Overran {
        /// Its command line.
        command: String,
        /// The bound.
        seconds: u64,
    },
    /// Waiting on it failed.
    #[error("waiting for `{command}`: {source}")]
    Wait {
        /// Its command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// SIGINT/SIGTERM arrived.
    #[error("interrupted")]
    Interrupted,
    /// Its output does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A calibration run gave no rate to derive durations from.
    #[error("{tool} calibration gave no rate")]
    NoRate {
        /// The tool.
        tool: &'static str,
    },
}

/// The full path of `program` in PATH.
#[must_use]
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Where a peer runs: the testbed's nodes, the server's address and the
/// logs directory.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The testbed.
    pub config: TestbedConfig,
    /// Server address (NS3).
    pub server: String,
    /// Directory for the tools' raw output.
    pub log_dir: PathBuf,
    /// Spin on non-blocking sockets (sockperf `--nonblocked`).
    pub busy_poll: bool,
}

impl Placement {
    /// `program` in NS3, pinned to the engine's core.
    #[must_use]
    pub fn server_cmd(&self, program: &str) -> Command {
        self.config.node(NsRole::Server).pinned_command(program)
    }

    /// `program` in NS1, pinned to the load generator's core.
    #[must_use]
    pub fn client_cmd(&self, program: &str) -> Command {
        self.config.node(NsRole::Client).pinned_command(program)
    }

    /// The log file `name` of this testbed's peers.
    #[must_use]
    pub fn log(&self, name: &str) -> PathBuf {
        self.log_dir.join(name)
    }
}

/// The command line of `c`, for the report.
#[must_use]
pub fn describe(c: &Command) -> String {
    words(c).join(" ")
}

/// How long a peer's server may take to listen.
const SERVER_READY: Duration = Duration::from_secs(10);

/// Starts `command` with both streams into `log`.
fn spawn_logged(mut command: Command, log: &Path) -> Result<(Child, String), PeerError> {
    let text = describe(&command);
    let (out, err) = log_streams(log).map_err(|source| PeerError::Log {
        path: log.to_owned(),
        source,
    })?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|source| PeerError::Start {
            command: text.clone(),
            source,
        })?;
    Ok((child, text))
}

/// A server process in NS3, stopped (by its pid) when dropped.
pub struct Server {
    child: Option<Child>,
    /// Its command line.
    pub command: String,
}

impl Server {
    /// Starts `command` with output to `log`, and waits (bounded) until
    /// something listens on TCP `port` in NS3.
    ///
    /// # Errors
    /// It cannot start, dies, or does not listen in time.
    pub fn start(
        command: Command,
        log: &Path,
        config: &TestbedConfig,
        port: u16,
    ) -> Result<Self, PeerError> {
        let (child, text) = spawn_logged(command, log)?;
        let mut server = Self {
            child: Some(child),
            command: text,
        };
        let node = config.node(NsRole::Server);
        let waited = wait::until(SERVER_READY, Duration::from_millis(50), || {
            if let Some(Ok(Some(status))) = server.child.as_mut().map(Child::try_wait) {
                return Check::Failed(Ending::from_status(status));
            }
            if listening(&node, port) {
                Check::Ready(())
            } else {
                Check::Pending
            }
        });
        let log_tail = || testbed::run::session::log_tail(log);
        match waited {
            Ok(()) => Ok(server),
            Err(Waited::Failed(ending)) => {
                server.child = None;
                Err(PeerError::ExitedAtStart {
                    command: server.command.clone(),
                    ending,
                    log_tail: log_tail(),
                })
            }
            Err(Waited::TimedOut) => Err(PeerError::NotListening {
                command: server.command.clone(),
                port,
                log_tail: log_tail(),
            }),
        }
    }

    /// Waits for a one-off server (iperf3 -1) to finish, at most `limit`.
    pub fn finish(mut self, limit: Duration) {
        if let Some(child) = self.child.as_mut() {
            let _ = process::wait_timeout(child, limit);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = process::terminate(&mut child, Duration::from_secs(3));
        }
    }
}

fn listening(node: &Node, port: u16) -> bool {
    let mut ss = node.command("ss");
    ss.args(["-Hltn", &format!("sport = :{port}")]);
    testbed::host::command::run(&mut ss, "").is_ok_and(|out| !out.trim().is_empty())
}

/// What a client run printed, with its command line.
#[derive(Debug, Clone)]
pub struct ClientOutput {
    /// The command line.
    pub command: String,
    /// stdout and stderr, concatenated.
    pub text: String,
}

/// Runs a client to completion, at most `limit`; stops it (by its pid) on
/// timeout or when `interrupted` is raised.
///
/// # Errors
/// It cannot start, fails, times out or is interrupted.
pub fn run_client(
    command: Command,
    log: &Path,
    limit: Duration,
    interrupted: &AtomicBool,
) -> Result<ClientOutput, PeerError> {
    let (mut child, text) = spawn_logged(command, log)?;
    let waited = wait::until(limit, Duration::from_millis(20), || {
        if interrupted.load(Ordering::Relaxed) {
            return Check::Failed(None);
        }
        match child.try_wait() {
            Ok(Some(status)) => Check::Ready(status),
            Ok(None) => Check::Pending,
            Err(e) => Check::Failed(Some(e)),
        }
    });
    let status = match waited {
        Ok(status) => status,
        Err(stopped) => {
            let _ = process::terminate(&mut child, Duration::from_secs(3));
            return Err(match stopped {
                Waited::Failed(None) => PeerError::Interrupted,
                Waited::Failed(Some(source)) => PeerError::Wait {
                    command: text,
                    source,
                },
                Waited::TimedOut => PeerError::Overran {
                    command: text,
                    seconds: limit.as_secs(),
                },
            });
        }
    };
    let output = std::fs::read_to_string(log).unwrap_or_default();
    if !status.success() {
        return Err(PeerError::Failed {
            command: text,
            ending: Ending::from_status(status),
            log_tail: testbed::run::session::log_tail(log),
        });
    }
    Ok(ClientOutput {
        command: text,
        text: output,
    })
}

/// Whole seconds for a time-bounded tool to exchange about `packets`
/// messages at `rate`, plus sockperf's warm-up and cool-down (≈ 0.45 s).
#[must_use]
pub fn seconds_for(packets: u64, rate: f64) -> u64 {
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
    fn every_peer_has_a_unique_name_and_its_own_tests() {
        let mut names: Vec<&str> = ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for peer in ALL {
            assert!(!peer.tests().is_empty(), "{} has no tests", peer.name());
            for engine_test in crate::matrix::ENGINE_TESTS {
                assert!(
                    !peer.tests().contains(engine_test),
                    "{} claims the engines' test {engine_test}",
                    peer.name()
                );
            }
            assert_eq!(by_name(peer.name()).map(|p| p.name()), Ok(peer.name()));
        }
        assert!(by_name("bogus")
            .unwrap_err()
            .to_string()
            .contains("sockperf"));
    }
}
