//! The peers measured beside the engines on the same testbed: tools users
//! already trust, each in a file of its own behind the [`Peer`] trait.
//! Servers run in NS3 on the engine's core, clients in NS1 on the load
//! generator's core, both pinned with `taskset` ([`testbed::placement::Node::pinned_command`]);
//! over two hosts, servers on the engine host and clients on the client
//! host, through their hosts' `serve` sessions ([`PeerHosts`]). A peer
//! names its tool's runs by typed specs ([`PeerServer`], [`PeerClient`]),
//! so both places run the same command lines.
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
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bench_report::stats::Figures;
pub use contract::peer_tool::{PeerClient, PeerServer};
use testbed::config::TestbedConfig;
use testbed::host::command::{log_streams, words};
use testbed::host::process::{self, Ending};
use testbed::host::wait::{self, Check, Waited};
use testbed::remote::peer::RemoteError;
use testbed::remote::peer_tools::PeerHosts;
use testbed::remote::tool::{listening, SERVER_READY};
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
    /// `count` attempts at a peer cell's repetitions at `place`;
    /// `client(rep)` gives the client run and its log, `server` the
    /// server's command when each attempt has its own. A failed one is
    /// recorded and the next tried.
    #[allow(clippy::too_many_arguments)]
    fn run_peer_attempts(
        &mut self,
        peer: &dyn Peer,
        place: &Placement,
        index: usize,
        count: u32,
        limit_s: u64,
        server: Option<&str>,
        client: &dyn Fn(usize) -> (PeerClient, PathBuf),
    );

    /// Runs a peer cell's missing repetitions at `place`.
    fn run_peer_cell(
        &mut self,
        peer: &dyn Peer,
        place: &Placement,
        index: usize,
        limit_s: u64,
        client: &dyn Fn(usize) -> (PeerClient, PathBuf),
    ) {
        let missing = self.missing_at(index);
        self.run_peer_attempts(peer, place, index, missing, limit_s, None, client);
    }

    /// Starts a peer's server at `place` for the whole testbed; when it
    /// cannot start, every cell of the peer still lacking runs gets the
    /// reason.
    fn peer_server(
        &mut self,
        peer: &dyn Peer,
        server: &PeerServer,
        log: &Path,
        place: &Placement,
        setting: Setting,
    ) -> Option<Server> {
        match Server::start(server, log, place) {
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
    /// A host of a two-host bench failed the request, or was lost.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Over two hosts, the impaired testbed's server ran unimpaired.
    #[error("{}", not_impaired(.0))]
    NotImpaired(String),
    /// A calibration run gave no rate to derive durations from.
    #[error("{tool} calibration gave no rate")]
    NoRate {
        /// The tool.
        tool: &'static str,
    },
}

/// Why a cell of the impaired half over two hosts is not measured, given
/// the impairment the engine host put in force (`none: …`).
#[must_use]
pub fn not_impaired(impairment: &str) -> String {
    format!("not impaired over two hosts, so not measured on the impaired half: {impairment}")
}

/// The full path of `program` in PATH.
#[must_use]
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The sessions of a two-host bench's peers, shared by a peer's server
/// and its clients.
#[derive(Clone)]
pub struct Hosts(pub Arc<Mutex<PeerHosts>>);

impl fmt::Debug for Hosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("two hosts")
    }
}

impl Hosts {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut PeerHosts) -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        match self.0.lock() {
            Ok(mut hosts) => f(&mut hosts),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// Where a peer runs: the testbed's nodes (or, over two hosts, the hosts'
/// sessions), the server's address and the logs directory.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The testbed.
    pub config: TestbedConfig,
    /// Server address (NS3, or the engine host's).
    pub server: Ipv4Addr,
    /// Directory for the tools' raw output.
    pub log_dir: PathBuf,
    /// Spin on non-blocking sockets (sockperf `--nonblocked`).
    pub busy_poll: bool,
    /// Over two hosts: the hosts' sessions; `None`: this host's testbed.
    pub hosts: Option<Hosts>,
    /// The testbed is impaired: over two hosts a server the engine host
    /// could not put netem in force for is not measured.
    pub impaired: bool,
}

impl Placement {
    /// `server` in NS3, pinned to the engine's core.
    #[must_use]
    pub fn server_command(&self, server: &PeerServer) -> Command {
        self.pinned(NsRole::Server, server.program(), server.args())
    }

    /// `client` in NS1, pinned to the load generator's core.
    #[must_use]
    pub fn client_command(&self, client: &PeerClient) -> Command {
        self.pinned(NsRole::Client, client.program(), client.args())
    }

    fn pinned(&self, role: NsRole, program: &str, args: Vec<String>) -> Command {
        let mut c = self.config.node(role).pinned_command(program);
        c.args(args);
        c
    }

    /// The server's address with `port`.
    #[must_use]
    pub fn server_at(&self, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(self.server, port)
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

/// Where a server runs.
enum Serving {
    /// In NS3 (`None` once it ended).
    Here(Option<Child>),
    /// On the engine host, until stopped (`None` once it was).
    Remote(Option<Hosts>),
}

/// A peer's server, stopped (by its pid, on its host) when dropped.
pub struct Server {
    serving: Serving,
    log: PathBuf,
    /// Its command line.
    pub command: String,
}

impl Server {
    /// Starts `server` at `place` with output to `log`, and waits (bounded)
    /// until something listens on its TCP port.
    ///
    /// # Errors
    /// It cannot start, dies, or does not listen in time.
    pub fn start(server: &PeerServer, log: &Path, place: &Placement) -> Result<Self, PeerError> {
        match &place.hosts {
            None => Self::start_here(
                place.server_command(server),
                log,
                &place.config,
                server.port(),
            ),
            Some(hosts) => {
                let started = hosts.with(|h| h.start_server(server))?;
                let host = hosts.with(|h| Ok(h.labels().0.to_owned()))?;
                let impairment = started.impairment;
                let server = Self {
                    serving: Serving::Remote(Some(hosts.clone())),
                    log: log.to_owned(),
                    command: format!(
                        "{} (on {host}; impairment: {impairment})",
                        started.process.command.join(" ")
                    ),
                };
                if place.impaired && impairment.starts_with("none") {
                    // Dropping it stops it.
                    return Err(PeerError::NotImpaired(impairment));
                }
                Ok(server)
            }
        }
    }

    fn start_here(
        command: Command,
        log: &Path,
        config: &TestbedConfig,
        port: u16,
    ) -> Result<Self, PeerError> {
        let (child, text) = spawn_logged(command, log)?;
        let mut server = Self {
            serving: Serving::Here(Some(child)),
            log: log.to_owned(),
            command: text,
        };
        let node = config.node(NsRole::Server);
        let waited = wait::until(SERVER_READY, Duration::from_millis(50), || {
            if let Some(Ok(Some(status))) = server.child().map(Child::try_wait) {
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
                server.serving = Serving::Here(None);
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

    fn child(&mut self) -> Option<&mut Child> {
        match &mut self.serving {
            Serving::Here(child) => child.as_mut(),
            Serving::Remote(_) => None,
        }
    }

    /// Waits for a one-off server (iperf3 -1) to finish, at most `limit`.
    pub fn finish(mut self, limit: Duration) {
        if let Some(child) = self.child() {
            let _ = process::wait_timeout(child, limit);
        }
        self.stop_remote(limit);
    }

    /// Stops a server on the engine host (letting it take at most `wait`
    /// to end by itself) and keeps its output in its log.
    fn stop_remote(&mut self, wait: Duration) {
        let Serving::Remote(hosts) = &mut self.serving else {
            return;
        };
        let Some(hosts) = hosts.take() else {
            return;
        };
        let text = match hosts.with(|h| h.stop_server(wait)) {
            Ok(ended) => format!("{}\n[the server {}]\n", ended.output, ended.ending),
            Err(e) => format!("[stopping the server: {e}]\n"),
        };
        let _ = std::fs::write(&self.log, text);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Serving::Here(child) = &mut self.serving {
            if let Some(mut child) = child.take() {
                let _ = process::terminate(&mut child, Duration::from_secs(3));
            }
        }
        self.stop_remote(Duration::ZERO);
    }
}

/// What a client run printed, with its command line.
#[derive(Debug, Clone)]
pub struct ClientOutput {
    /// The command line.
    pub command: String,
    /// stdout and stderr, concatenated.
    pub text: String,
}

/// Runs `client` at `place` to completion, at most `limit`, its output
/// into `log`; stops it (by its pid, on its host) on timeout or when
/// `interrupted` is raised.
///
/// # Errors
/// It cannot start, fails, times out or is interrupted.
pub fn run_client(
    place: &Placement,
    client: &PeerClient,
    log: &Path,
    limit: Duration,
    interrupted: &AtomicBool,
) -> Result<ClientOutput, PeerError> {
    match &place.hosts {
        None => run_client_here(place.client_command(client), log, limit, interrupted),
        Some(hosts) => run_client_remote(hosts, client, log, limit, interrupted),
    }
}

fn run_client_remote(
    hosts: &Hosts,
    client: &PeerClient,
    log: &Path,
    limit: Duration,
    interrupted: &AtomicBool,
) -> Result<ClientOutput, PeerError> {
    let ran = match hosts.with(|h| h.run_client(client, limit, interrupted)) {
        Ok(ran) => ran,
        Err(RemoteError::Interrupted) => return Err(PeerError::Interrupted),
        Err(e) => return Err(e.into()),
    };
    let host = hosts.with(|h| Ok(h.labels().1.to_owned()))?;
    let command = format!("{} (on {host})", ran.ended.process.command.join(" "));
    std::fs::write(log, &ran.output).map_err(|source| PeerError::Log {
        path: log.to_owned(),
        source,
    })?;
    if ran.ended.stopped {
        return Err(PeerError::Overran {
            command,
            seconds: limit.as_secs(),
        });
    }
    if !ran.ended.ending.is_success() {
        return Err(PeerError::Failed {
            command,
            ending: ran.ended.ending,
            log_tail: testbed::run::session::log_tail(log),
        });
    }
    Ok(ClientOutput {
        command,
        text: ran.output,
    })
}

fn run_client_here(
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
