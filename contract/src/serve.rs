//! The protocol of `supervisor serve --stdio`: what an orchestrating
//! supervisor and the supervisor of a remote host say to each other.
//!
//! The transport is the standard input and output of `serve`, which SSH
//! carries (`ssh host supervisor serve --stdio`); there is no listening
//! port and no authentication of its own: whoever may run `serve` on a
//! host may drive it. Every message is one JSON document on one line.
//!
//! ```text
//! → {"id":1,"call":{"hello":{"contract_version":3,"testbed":"bl","role":"engine"}}}
//! ← {"ok":{"id":1,"result":{"hello":{"contract_version":3,"host":{...}}}}}
//! → {"id":2,"call":{"start_engine":{"kind":"kernel","port":7000,...}}}
//! ← {"event":{"id":2,"event":{"say":{"line":"stats segment ... on hugetlbfs"}}}}
//! ← {"ok":{"id":2,"result":{"engine_started":{"pid":4242,...}}}}
//! → {"id":3,"call":{"teardown":{}}}
//! ← {"ok":{"id":3,"result":{"torn_down":{"done":[...],"problems":[]}}}}
//! ```
//!
//! The bench's peers go the same way: `start_peer_server` and
//! `stop_peer_server` on the engine host, `run_peer_client` on the client
//! host, whose output comes back as `output` events of at most
//! [`OUTPUT_CHUNK`] bytes before the final answer:
//!
//! ```text
//! → {"id":4,"call":{"start_peer_server":{"server":{"iperf3":{"port":7002}},"core":1}}}
//! ← {"ok":{"id":4,"result":{"peer_server_started":{"pid":4250,"command":["taskset",...]}}}}
//! → {"id":5,"call":{"run_peer_client":{"client":{"iperf3":{"server":"10.0.0.2:7002","bytes":768000,"streams":4}},"core":0,"limit_s":120}}}
//! ← {"event":{"id":5,"event":{"output":{"text":"{\n  \"start\": ..."}}}}
//! ← {"ok":{"id":5,"result":{"peer_client_finished":{"process":{...},"ending":{"how":"exited","code":0},...}}}}
//! ```
//!
//! - One request at a time: every request gets exactly one final answer,
//!   `ok` or `error`, carrying its `id`; before it, a long request
//!   (`run_loadgen`) sends `event`s with the same `id` (progress).
//! - `hello` comes first, with [`crate::CONTRACT_VERSION`] both ways; a
//!   peer of another version is refused with both versions named.
//! - Events with no `id` are unsolicited: the engine on the remote host
//!   ended.
//! - Requests carry typed parameters only (engine kind, ports, cores, an
//!   interface name, addresses, load options, counts, a peer tool and its
//!   values from [`crate::peer_tool`]), never a path, a program or an
//!   argument: the remote host decides its binaries (beside itself), its
//!   state directory, segment and config files. Unknown fields are
//!   refused, so a request naming a `path` or a `program` is an error
//!   that names the field.
//! - A line that does not decode gets an `error` naming the problem (and
//!   the request's `id` when it could be read); it never ends the session.
//! - End of input ends the session: the remote host removes everything it
//!   created for it, so a dropped SSH connection leaves nothing behind.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::kinds::{EngineKind, Pmd};
use crate::loadgen::LoadOptions;
use crate::peer_tool::{PeerClient, PeerServer};
use crate::process::Ending;

/// Longest line either side accepts, bytes: the largest message (a stats
/// snapshot, a doctor report) is a few kilobytes.
pub const MAX_LINE: usize = 256 * 1024;

/// What the remote host is for in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostRole {
    /// It runs the engine.
    Engine,
    /// It runs the load generator.
    Client,
}

impl HostRole {
    /// Its name in configuration and messages.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Engine => "engine",
            Self::Client => "client",
        }
    }
}

impl fmt::Display for HostRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request, orchestrator to remote host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Chosen by the orchestrator; echoed by every answer and event.
    pub id: u64,
    /// What to do.
    pub call: Call,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Call {
    /// Opens the session: versions, the testbed and this host's role.
    Hello(Hello),
    /// This host's capabilities (`supervisor doctor` on it).
    Doctor(Empty),
    /// Starts the engine on this host and waits until it serves.
    StartEngine(StartEngine),
    /// Runs the load generator on this host once, to its end.
    RunLoadgen(RunLoadgen),
    /// A snapshot of this host's statistics segment.
    Stats(Stats),
    /// Starts a peer tool's server on this host (engine role) and waits
    /// until it listens.
    StartPeerServer(StartPeerServer),
    /// Stops the peer tool's server, letting a one-off server finish first.
    StopPeerServer(StopPeerServer),
    /// Runs a peer tool's client on this host to its end (client role).
    RunPeerClient(RunPeerClient),
    /// Stops everything of the session and removes what it created.
    Teardown(Empty),
}

impl Call {
    /// The request's name, as it is spelled on the wire.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Hello(_) => "hello",
            Self::Doctor(_) => "doctor",
            Self::StartEngine(_) => "start_engine",
            Self::RunLoadgen(_) => "run_loadgen",
            Self::Stats(_) => "stats",
            Self::StartPeerServer(_) => "start_peer_server",
            Self::StopPeerServer(_) => "stop_peer_server",
            Self::RunPeerClient(_) => "run_peer_client",
            Self::Teardown(_) => "teardown",
        }
    }
}

/// A request without parameters (`{}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `hello`: the first request of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// The orchestrator's [`crate::CONTRACT_VERSION`].
    pub contract_version: u32,
    /// The testbed's name (names this host's state of the session).
    pub testbed: String,
    /// This host's role.
    pub role: HostRole,
}

/// Netem on the engine host's egress.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Netem {
    /// One-way delay, µs.
    pub delay_us: u32,
    /// Uniform jitter, µs.
    pub jitter_us: u32,
    /// Frames dropped, percent.
    pub loss_percent: f64,
}

/// `start_engine`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartEngine {
    /// Which engine.
    pub kind: EngineKind,
    /// TCP port it serves.
    pub port: u16,
    /// Core it is pinned to.
    pub core: usize,
    /// Kernel engine spins instead of sleeping.
    pub busy_poll: bool,
    /// A bypass engine's poll-mode driver.
    pub pmd: Pmd,
    /// The host's interface on the link to the client: the kernel engine
    /// serves on its address, a bypass engine takes it over (af_xdp,
    /// af_packet).
    pub iface: String,
    /// The server's address on that link.
    pub address: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The client's address (a bypass stack's gateway).
    pub gateway: Ipv4Addr,
    /// Bound on the engine reaching its serving state, seconds.
    pub ready_timeout_s: u64,
    /// Netem on `iface`'s egress, if the run is impaired.
    pub netem: Option<Netem>,
}

/// `run_loadgen`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunLoadgen {
    /// The engine it loads (recorded in this host's run state).
    pub engine: EngineKind,
    /// The engine's address.
    pub connect: SocketAddrV4,
    /// Messages of the measured phase.
    pub packets: u64,
    /// Core the load generator is pinned to.
    pub core: usize,
    /// How it loads.
    pub load: LoadOptions,
    /// How often a progress event is sent, milliseconds.
    pub progress_interval_ms: u64,
}

/// `stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    /// Wait (at most 2 s) until the engine has published twice more, so
    /// replies sent just before are counted.
    pub settle: bool,
}

/// `start_peer_server`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartPeerServer {
    /// Which tool, with its values.
    pub server: PeerServer,
    /// Core it is pinned to.
    pub core: usize,
    /// The host's interface on the link, where `netem` goes.
    pub iface: Option<String>,
    /// Netem on `iface`'s egress while the server runs, if the run is
    /// impaired.
    pub netem: Option<Netem>,
}

/// `stop_peer_server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopPeerServer {
    /// How long a server that ends by itself (iperf3's one-off) may take
    /// before it is stopped, milliseconds (at most [`MAX_PEER_WAIT_MS`]).
    pub wait_ms: u64,
}

/// Longest `stop_peer_server` waits for a server to end by itself.
pub const MAX_PEER_WAIT_MS: u64 = 60_000;

/// `run_peer_client`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPeerClient {
    /// Which tool, with its values.
    pub client: PeerClient,
    /// Core it is pinned to.
    pub core: usize,
    /// Bound on its run, seconds: it is stopped past it.
    pub limit_s: u64,
}

/// Most of a peer tool's output one [`Event::Output`] carries, bytes:
/// escaped as JSON it stays within [`MAX_LINE`].
pub const OUTPUT_CHUNK: usize = 32 * 1024;

/// Most of a peer tool's output kept, bytes (iperf3's JSON over 128
/// streams is the largest).
pub const MAX_PEER_OUTPUT: usize = 16 * 1024 * 1024;

/// One line from the remote host, remote host to orchestrator.
// An answer is built once and written at once; its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// A request succeeded.
    Ok {
        /// The request's id.
        id: u64,
        /// What it produced.
        result: Outcome,
    },
    /// A request (or a line that was not one) failed.
    Error {
        /// The request's id, when the line held one.
        id: Option<u64>,
        /// Why.
        error: Refusal,
    },
    /// Progress of a request, or (without id) something that happened.
    Event {
        /// The request it belongs to; `None`: unsolicited.
        id: Option<u64>,
        /// What happened.
        event: Event,
    },
}

/// The result of a successful request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// `hello`.
    Hello {
        /// The remote host's [`crate::CONTRACT_VERSION`].
        contract_version: u32,
        /// What it is.
        host: HostFacts,
    },
    /// `doctor`.
    Doctor(HostReport),
    /// `start_engine`.
    EngineStarted(EngineStarted),
    /// `run_loadgen`.
    LoadgenFinished(Box<LoadgenFinished>),
    /// `stats`.
    Stats(Box<shm_layout::Snapshot>),
    /// `start_peer_server`.
    PeerServerStarted(PeerServerStarted),
    /// `stop_peer_server`: how it ended and the end of its output.
    PeerServerStopped(PeerEnded),
    /// `run_peer_client`: how it ended; its output came as
    /// [`Event::Output`]s.
    PeerClientFinished(PeerEnded),
    /// `teardown`.
    TornDown(Cleanup),
}

/// `start_peer_server`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerServerStarted {
    /// The server.
    pub process: PeerProcess,
    /// The impairment in force on the host's egress.
    pub impairment: String,
}

/// A peer tool's process on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerProcess {
    /// Its pid there.
    pub pid: u32,
    /// Its command line, as it ran.
    pub command: Vec<String>,
}

/// A peer tool's process that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEnded {
    /// Which, and its command line.
    pub process: PeerProcess,
    /// How it ended.
    pub ending: Ending,
    /// Whether it was stopped (its bound passed, or it was asked to).
    pub stopped: bool,
    /// A server's output (its last [`OUTPUT_CHUNK`] bytes); empty for a
    /// client, whose output came as events.
    pub output: String,
}

/// A remote host, as a result records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFacts {
    /// Its host name.
    pub hostname: String,
    /// Its kernel release (`uname -r`).
    pub kernel: String,
    /// Cores online.
    pub cores: usize,
    /// The supervisor's process id there.
    pub pid: u32,
}

/// One capability of a remote host (a line of its `doctor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCheck {
    /// Short name: `root`, `netem`, `hugepages`, ...
    pub name: String,
    /// Whether it is there.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What it means for a run.
    pub consequence: String,
}

/// A remote host's `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostReport {
    /// Every check.
    pub checks: Vec<HostCheck>,
    /// Engines it can run.
    pub engines: Vec<EngineKind>,
}

impl HostReport {
    /// The check called `name`.
    #[must_use]
    pub fn check(&self, name: &str) -> Option<&HostCheck> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// `start_engine`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineStarted {
    /// The engine's pid on its host.
    pub pid: u32,
    /// Its core.
    pub core: usize,
    /// Its command line, as it ran.
    pub command: Vec<String>,
    /// Where its counters live (hugetlbfs, or /dev/shm and why).
    pub segment: String,
    /// The impairment in force on the host's egress.
    pub impairment: String,
}

/// `run_loadgen`'s result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadgenFinished {
    /// The load generator's pid on its host.
    pub pid: u32,
    /// How it ended.
    pub ending: Ending,
    /// Its counters and latency, from its host's segment.
    pub slot: Option<shm_layout::SlotSnapshot>,
    /// Its stdout (its own final JSON result).
    pub stdout: String,
    /// Its command line, as it ran.
    pub command: Vec<String>,
}

/// What a teardown did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cleanup {
    /// One line per resource removed or process stopped.
    pub done: Vec<String>,
    /// Problems met.
    pub problems: Vec<String>,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// Its class.
    pub kind: RefusalKind,
    /// What went wrong, for a person.
    pub message: String,
}

/// Classes of [`Refusal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The line is not a request (see [`DecodeError`]).
    BadRequest,
    /// The peer speaks another contract version.
    Version,
    /// The request does not fit the session's state (no hello yet, an
    /// engine already started, ...).
    OutOfOrder,
    /// The request was understood and its work failed.
    Failed,
}

/// Something that happened on the remote host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A progress line for the user.
    Say {
        /// The line.
        line: String,
    },
    /// Replies the load generator has received so far.
    Progress {
        /// Messages answered in the measured phase.
        answered: u64,
    },
    /// A piece of a peer tool's output (stdout and stderr as they came).
    Output {
        /// The text.
        text: String,
    },
    /// The engine ended without being asked to.
    EngineEnded {
        /// Its pid on its host.
        pid: u32,
        /// How.
        ending: Ending,
    },
}

/// Why a line is not a message of this protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_LINE`].
    #[error("line of {len} bytes is longer than the protocol's {MAX_LINE}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Not JSON, or not a message (the parser's words: they name an
    /// unknown field or request and where it is).
    #[error("not a request: {message}")]
    Malformed {
        /// The parser's message.
        message: String,
    },
    /// A message whose values are outside what the protocol allows.
    #[error("{field} = {value:?}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: &'static str,
    },
}

/// The `id` of a line that does not decode, when one can be read: the
/// refusal then answers that request.
#[must_use]
pub fn salvage_id(line: &str) -> Option<u64> {
    if line.len() > MAX_LINE {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("id")?
        .as_u64()
}

/// Decodes one request line (without its newline) and checks its values.
///
/// # Errors
/// [`DecodeError`] naming what is wrong.
pub fn decode_request(line: &str) -> Result<Request, DecodeError> {
    let request: Request = decode(line)?;
    validate(&request.call)?;
    Ok(request)
}

/// Decodes one reply line.
///
/// # Errors
/// [`DecodeError`] naming what is wrong.
pub fn decode_reply(line: &str) -> Result<Reply, DecodeError> {
    decode(line)
}

fn decode<T: serde::de::DeserializeOwned>(line: &str) -> Result<T, DecodeError> {
    if line.len() > MAX_LINE {
        return Err(DecodeError::TooLong { len: line.len() });
    }
    serde_json::from_str(line).map_err(|e| DecodeError::Malformed {
        message: e.to_string(),
    })
}

/// One message as a line (with its newline).
///
/// # Errors
/// Serialisation fails (a non-finite float).
pub fn encode<T: Serialize>(message: &T) -> Result<String, serde_json::Error> {
    let mut line = serde_json::to_string(message)?;
    line.push('\n');
    Ok(line)
}

/// Longest testbed name a hello may carry (as testbed.toml's).
pub const MAX_TESTBED_NAME: usize = 10;

/// Whether `name` is a testbed name: 1..=10 of a-z then a-z/0-9, so it
/// can name a directory and a file and nothing else.
#[must_use]
pub fn is_testbed_name(name: &str) -> bool {
    (1..=MAX_TESTBED_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Whether `name` is a Linux interface name (1..=15 bytes of letters,
/// digits, `-`, `_`, `.`): never a path.
#[must_use]
pub fn is_iface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_netem(field: &'static str, netem: Option<&Netem>) -> Result<(), DecodeError> {
    match netem {
        Some(n) if !n.loss_percent.is_finite() || !(0.0..=100.0).contains(&n.loss_percent) => {
            Err(DecodeError::Invalid {
                field,
                value: format!("{:?}", n.loss_percent),
                reason: "must be within 0..=100",
            })
        }
        _ => Ok(()),
    }
}

fn validate(call: &Call) -> Result<(), DecodeError> {
    let invalid = |field, value: &dyn fmt::Debug, reason| DecodeError::Invalid {
        field,
        value: format!("{value:?}"),
        reason,
    };
    match call {
        Call::Hello(h) if !is_testbed_name(&h.testbed) => Err(invalid(
            "hello.testbed",
            &h.testbed,
            "must be 1..=10 characters, a-z then a-z and 0-9",
        )),
        Call::StartEngine(s) => {
            if !is_iface_name(&s.iface) {
                return Err(invalid(
                    "start_engine.iface",
                    &s.iface,
                    "must be an interface name: 1..=15 of letters, digits, - _ .",
                ));
            }
            if !(8..=30).contains(&s.prefix_len) {
                return Err(invalid(
                    "start_engine.prefix_len",
                    &s.prefix_len,
                    "must be within 8..=30",
                ));
            }
            if s.port == 0 {
                return Err(invalid("start_engine.port", &s.port, "must not be 0"));
            }
            check_netem("start_engine.netem.loss_percent", s.netem.as_ref())
        }
        Call::RunLoadgen(r) => {
            if r.load.min_size > r.load.max_size
                || r.load.min_size < protocol::MIN_MESSAGE_LEN
                || r.load.max_size > protocol::MAX_MESSAGE_LEN
            {
                return Err(invalid(
                    "run_loadgen.load.min_size",
                    &(r.load.min_size, r.load.max_size),
                    "sizes must satisfy 512 <= min_size <= max_size <= 1024",
                ));
            }
            if r.load.connections == 0 {
                return Err(invalid(
                    "run_loadgen.load.connections",
                    &r.load.connections,
                    "must be at least 1",
                ));
            }
            Ok(())
        }
        Call::StartPeerServer(s) => {
            if let Some(iface) = s.iface.as_ref().filter(|i| !is_iface_name(i)) {
                return Err(invalid(
                    "start_peer_server.iface",
                    iface,
                    "must be an interface name: 1..=15 of letters, digits, - _ .",
                ));
            }
            check_netem("start_peer_server.netem.loss_percent", s.netem.as_ref())?;
            s.server
                .check()
                .map_err(|(field, reason)| invalid(field, &s.server, reason))
        }
        Call::StopPeerServer(s) if s.wait_ms > MAX_PEER_WAIT_MS => Err(invalid(
            "stop_peer_server.wait_ms",
            &s.wait_ms,
            "must be at most 60000",
        )),
        Call::RunPeerClient(r) => {
            if !(1..=crate::peer_tool::MAX_PEER_SECONDS).contains(&r.limit_s) {
                return Err(invalid(
                    "run_peer_client.limit_s",
                    &r.limit_s,
                    "must be within 1..=86400",
                ));
            }
            r.client
                .check()
                .map_err(|(field, reason)| invalid(field, &r.client, reason))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Request {
        Request {
            id: 1,
            call: Call::Hello(Hello {
                contract_version: crate::CONTRACT_VERSION,
                testbed: "bl".into(),
                role: HostRole::Engine,
            }),
        }
    }

    #[test]
    fn a_request_round_trips_through_its_line() {
        let line = encode(&hello()).unwrap();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(decode_request(line.trim_end()).unwrap(), hello());
        let stats = r#"{"id":7,"call":{"stats":{"settle":true}}}"#;
        assert_eq!(
            decode_request(stats).unwrap().call,
            Call::Stats(Stats { settle: true })
        );
    }

    #[test]
    fn paths_and_programs_are_unknown_fields_named_in_the_error() {
        for (line, field) in [
            (r#"{"id":2,"call":{"teardown":{"path":"/etc"}}}"#, "path"),
            (
                r#"{"id":3,"call":{"hello":{"contract_version":3,"testbed":"bl","role":"engine","program":"/bin/sh"}}}"#,
                "program",
            ),
            (r#"{"id":4,"call":{"exec":{}}}"#, "exec"),
            (r#"{"id":5,"call":{"doctor":{}},"shell":"id"}"#, "shell"),
        ] {
            let err = decode_request(line).unwrap_err();
            assert!(
                matches!(&err, DecodeError::Malformed { message } if message.contains(field)),
                "{line}: {err}"
            );
        }
        assert_eq!(
            salvage_id(r#"{"id":2,"call":{"teardown":{"path":"/etc"}}}"#),
            Some(2)
        );
    }

    #[test]
    fn values_that_could_name_a_path_are_refused() {
        let mut h = hello();
        if let Call::Hello(ref mut inner) = h.call {
            inner.testbed = "../etc".into();
        }
        let line = encode(&h).unwrap();
        assert!(matches!(
            decode_request(line.trim_end()),
            Err(DecodeError::Invalid {
                field: "hello.testbed",
                ..
            })
        ));
        assert!(!is_iface_name("../x") && !is_iface_name("a/b") && !is_iface_name(""));
        assert!(is_iface_name("enp3s0") && is_iface_name("th1-b0"));
    }

    #[test]
    fn a_peer_tool_is_named_by_its_values_never_by_a_program_or_argv() {
        let run = r#"{"id":5,"call":{"run_peer_client":{"client":{"iperf3":{"server":"10.0.0.2:7002","bytes":768000,"streams":4}},"core":0,"limit_s":120}}}"#;
        let Call::RunPeerClient(run) = decode_request(run).unwrap().call else {
            panic!("not run_peer_client");
        };
        assert_eq!(run.client.program(), "iperf3");
        for (line, wanted) in [
            (
                r#"{"id":6,"call":{"start_peer_server":{"server":{"iperf3":{"port":7002,"argv":["-s","--logfile","/etc/x"]}},"core":1}}}"#,
                "argv",
            ),
            (
                r#"{"id":7,"call":{"start_peer_server":{"server":{"bash":{"port":7002}},"core":1}}}"#,
                "bash",
            ),
            (
                r#"{"id":8,"call":{"run_peer_client":{"client":{"iperf3":{"server":"10.0.0.2:7002","bytes":1,"streams":4000}},"core":0,"limit_s":120}}}"#,
                "streams",
            ),
            (
                r#"{"id":9,"call":{"stop_peer_server":{"wait_ms":3600000}}}"#,
                "wait_ms",
            ),
        ] {
            let err = decode_request(line).unwrap_err();
            assert!(err.to_string().contains(wanted), "{line}: {err}");
        }
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for line in [
            "",
            "{",
            "null",
            "[]",
            "{\"id\":-1}",
            "\u{0}",
            "{\"id\":1,\"call\":7}",
        ] {
            assert!(decode_request(line).is_err(), "{line:?}");
        }
        let long = "x".repeat(MAX_LINE + 1);
        assert_eq!(
            decode_request(&long),
            Err(DecodeError::TooLong { len: MAX_LINE + 1 })
        );
    }

    #[test]
    fn replies_round_trip() {
        let reply = Reply::Event {
            id: None,
            event: Event::EngineEnded {
                pid: 9,
                ending: Ending::Signaled {
                    signal: 9,
                    name: "SIGKILL".into(),
                },
            },
        };
        let line = encode(&reply).unwrap();
        let back = decode_reply(line.trim_end()).unwrap();
        assert_eq!(encode(&back).unwrap(), line);
    }

    #[test]
    fn the_fuzz_corpus_replays_through_the_decoder() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/serve_request");
        let mut decoded = 0;
        let mut refused = 0;
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            match decode_request(text.trim_end()) {
                Ok(request) => {
                    let line = encode(&request).unwrap();
                    assert_eq!(decode_request(line.trim_end()).unwrap(), request);
                    decoded += 1;
                }
                Err(_) => refused += 1,
            }
        }
        assert!(
            decoded >= 4 && refused >= 4,
            "{decoded} decoded, {refused} refused"
        );
    }
}
