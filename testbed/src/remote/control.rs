//! A two-host run owned by one supervisor (`start` over `[hosts]`, in the
//! foreground or `--detach`ed): it holds both SSH sessions, so `attach`,
//! `stats` and `stop` from other invocations on this host reach it, not
//! the hosts. It records itself in the testbed's state directory
//! (`two-hosts.json`) and listens on a Unix socket there (`control.sock`,
//! mode 0600 in root's `/run/bypasslab`; nothing listens on the network).
//!
//! The protocol: one JSON line per connection from the caller, one JSON
//! line back.
//!
//! ```text
//! → {"attach":{"packets":10000,"load":{…LoadOptions…}}}
//! ← {"row":{"row":{…ResultRow…},"clean":true,"table":"  packets  client …"}}
//! → {"stats":{}}
//! ← {"stats":{"record":{…OwnerRecord…},"segment":{…engine host's snapshot…}}}
//! ← {"error":{"message":"…"}}
//! ```
//!
//! While a load generator runs, the owner keeps answering `stats` (the
//! engine's host is idle then) and refuses a second `attach`; a caller that
//! goes away mid-`attach` (Ctrl-C) stops that load generator. `stop` is
//! SIGTERM to the owner, as for a single-host run: it ends both sessions,
//! and each host removes what it created.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddrV4;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use contract::EngineKind;
use serde::{Deserialize, Serialize};
use shm_layout::Snapshot;

use super::peer::{Peer, RemoteError};
use super::run::{HostRecord, TwoHostRun};
use crate::config::TestbedConfig;
use crate::host::process::ProcessId;
use crate::run::attach::{format_table, LoadOptions};
use crate::state::{read_json, write_json, StateDir, StateFile};

/// The longest request or reply line read.
pub const MAX_LINE: usize = 4 << 20;
/// How long a caller waits to be heard, and for a `stats` answer.
const QUICK: Duration = Duration::from_secs(30);

/// What `two-hosts.json` says of the run and its owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerRecord {
    /// The testbed.
    pub testbed: String,
    /// The supervisor holding the sessions.
    pub owner: ProcessId,
    /// The engine kind.
    pub engine: EngineKind,
    /// Where the engine answers.
    pub server: SocketAddrV4,
    /// Each host.
    pub hosts: Vec<HostRecord>,
    /// The impairment in force.
    pub impairment: String,
    /// Unix time the run started, seconds.
    pub started_unix: u64,
}

impl OwnerRecord {
    /// The record of testbed `testbed`, if one is written.
    ///
    /// # Errors
    /// [`ControlError::Record`]: it exists but cannot be read.
    pub fn load(testbed: &str) -> Result<Option<Self>, ControlError> {
        let path = StateDir::of(testbed).file(StateFile::TwoHostRun);
        read_json(&path).map_err(|e| ControlError::Record {
            path,
            reason: e.to_string(),
        })
    }
}

/// A request to the owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// Run the load generator once on its host.
    Attach {
        /// Messages.
        packets: u64,
        /// How.
        load: LoadOptions,
    },
    /// The engine host's segment.
    Stats {},
}

/// A row as `attach` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteRow {
    /// The row, as `--json` prints it.
    pub row: serde_json::Value,
    /// Every message answered.
    pub clean: bool,
    /// The row as the table prints it.
    pub table: String,
}

/// What `stats` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteStats {
    /// The run.
    pub record: OwnerRecord,
    /// The engine host's segment.
    pub segment: Snapshot,
}

/// A reply of the owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlReply {
    /// `attach`'s row.
    Row(RemoteRow),
    /// `stats`' snapshot.
    Stats(Box<RemoteStats>),
    /// The request failed or was refused.
    Error {
        /// Why.
        message: String,
    },
}

/// What went wrong between a caller and the owner.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No two-host run is recorded.
    #[error("no two-host run of testbed `{0}` is recorded: start one with `supervisor start` (with [hosts])")]
    NotRunning(String),
    /// The record exists but its owner is gone.
    #[error("the supervisor (pid {pid}) that owned the two-host run of `{testbed}` is gone; its hosts removed their part when its SSH sessions closed, and `supervisor stop` removes the record")]
    OwnerGone {
        /// Testbed.
        testbed: String,
        /// The dead owner.
        pid: u32,
    },
    /// The record cannot be read.
    #[error("{path}: {reason}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The socket failed.
    #[error("talking to the run's supervisor through {path}: {source}")]
    Socket {
        /// The socket.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The owner answered with something that is not the protocol.
    #[error("the run's supervisor answered {0}")]
    Garbage(String),
    /// The owner refused or the request failed.
    #[error("{0}")]
    Failed(String),
}

/// Encodes a request line (newline included).
///
/// # Errors
/// Never for these types, in practice.
pub fn encode<T: Serialize>(value: &T) -> serde_json::Result<String> {
    let mut line = serde_json::to_string(value)?;
    line.push('\n');
    Ok(line)
}

/// Decodes a request line, naming what is wrong with it.
///
/// # Errors
/// A message for the caller.
pub fn decode_request(line: &str) -> Result<ControlRequest, String> {
    if line.len() > MAX_LINE {
        return Err(format!(
            "a request of {} bytes (at most {MAX_LINE})",
            line.len()
        ));
    }
    serde_json::from_str(line).map_err(|e| format!("not a control request ({e})"))
}

/// The owner's live record for `testbed`.
///
/// # Errors
/// [`ControlError`]: none recorded, or its owner is gone.
pub fn live(testbed: &str) -> Result<OwnerRecord, ControlError> {
    let record =
        OwnerRecord::load(testbed)?.ok_or_else(|| ControlError::NotRunning(testbed.into()))?;
    if record.owner.is_alive() {
        Ok(record)
    } else {
        Err(ControlError::OwnerGone {
            testbed: testbed.into(),
            pid: record.owner.pid,
        })
    }
}

/// Sends `request` to the owner of `testbed`'s run and waits for its reply
/// at most `limit`.
///
/// # Errors
/// [`ControlError`].
pub fn request(
    testbed: &str,
    request: &ControlRequest,
    limit: Duration,
) -> Result<ControlReply, ControlError> {
    live(testbed)?;
    let path = StateDir::of(testbed).file(StateFile::Control);
    let socket = |source| ControlError::Socket {
        path: path.clone(),
        source,
    };
    let mut stream = UnixStream::connect(&path).map_err(socket)?;
    stream.set_read_timeout(Some(limit)).map_err(socket)?;
    let line = encode(request).map_err(|e| ControlError::Garbage(e.to_string()))?;
    stream.write_all(line.as_bytes()).map_err(socket)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .take(MAX_LINE as u64)
        .read_line(&mut reply)
        .map_err(socket)?;
    if reply.is_empty() {
        return Err(ControlError::Failed(
            "the run's supervisor closed the connection without answering (it is ending the run)"
                .into(),
        ));
    }
    let reply: ControlReply = serde_json::from_str(reply.trim_end()).map_err(|e| {
        ControlError::Garbage(format!(
            "{e}: {:?}",
            reply.chars().take(200).collect::<String>()
        ))
    })?;
    match reply {
        ControlReply::Error { message } => Err(ControlError::Failed(message)),
        other => Ok(other),
    }
}

/// The owner's end: the record and the socket, removed when dropped.
pub struct Owner {
    record: OwnerRecord,
    listener: UnixListener,
    dir: StateDir,
}

impl Owner {
    /// Writes the record and listens.
    ///
    /// # Errors
    /// The state directory, the record or the socket cannot be made.
    pub fn open(record: OwnerRecord) -> Result<Self, ControlError> {
        let dir = StateDir::of(&record.testbed);
        let path = dir.file(StateFile::Control);
        let socket = |source| ControlError::Socket {
            path: path.clone(),
            source,
        };
        dir.create().map_err(socket)?;
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(socket)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(socket)?;
        listener.set_nonblocking(true).map_err(socket)?;
        let record_path = dir.file(StateFile::TwoHostRun);
        write_json(&record_path, &record).map_err(|e| ControlError::Record {
            path: record_path,
            reason: e.to_string(),
        })?;
        Ok(Self {
            record,
            listener,
            dir,
        })
    }

    /// Serves requests until `interrupted` is raised or the run fails (a
    /// host lost, the engine ended), which is returned.
    pub fn serve(
        &self,
        run: &mut TwoHostRun,
        config: &TestbedConfig,
        interrupted: &AtomicBool,
    ) -> Option<RemoteError> {
        loop {
            if interrupted.load(Ordering::Relaxed) {
                return None;
            }
            if let Err(e) = run.check() {
                return Some(e);
            }
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = self.answer(stream, run, config, interrupted) {
                        return Some(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Answers one connection. A failure of the run itself (a host lost,
    /// the engine ended) is returned after the caller was told.
    fn answer(
        &self,
        stream: UnixStream,
        run: &mut TwoHostRun,
        config: &TestbedConfig,
        interrupted: &AtomicBool,
    ) -> Result<(), RemoteError> {
        let request = read_request(&stream);
        let (reply, fatal) = match request {
            Err(message) => (ControlReply::Error { message }, None),
            Ok(ControlRequest::Stats {}) => match self.stats(run) {
                Ok(stats) => (stats, None),
                Err(e) => (error_reply(&e), fatal_of(e)),
            },
            Ok(ControlRequest::Attach { packets, load }) => {
                let _ = stream.set_nonblocking(true);
                let mut caller_gone = || caller_left(&stream);
                let outcome = run.attach_serving(
                    config,
                    packets,
                    &load,
                    interrupted,
                    &mut caller_gone,
                    &mut |engine| self.answer_pending_stats(engine),
                );
                let _ = stream.set_nonblocking(false);
                match outcome.map(|attached| attached.row) {
                    Ok(row) => (
                        ControlReply::Row(RemoteRow {
                            clean: row.is_clean(),
                            table: format_table(std::slice::from_ref(&row)),
                            row: serde_json::to_value(&row).unwrap_or_default(),
                        }),
                        None,
                    ),
                    Err(e) => (error_reply(&e), fatal_of(e)),
                }
            }
        };
        write_reply(stream, &reply);
        fatal.map_or(Ok(()), Err)
    }

    fn stats(&self, run: &mut TwoHostRun) -> Result<ControlReply, RemoteError> {
        let segment = run.engine_snapshot()?;
        Ok(ControlReply::Stats(Box::new(RemoteStats {
            record: self.record.clone(),
            segment,
        })))
    }

    /// During an `attach`: answers `stats` with the engine host's segment
    /// (that session is idle) and refuses another `attach`.
    fn answer_pending_stats(&self, engine: &mut Peer) -> Result<(), RemoteError> {
        let Ok((stream, _)) = self.listener.accept() else {
            return Ok(());
        };
        let reply = match read_request(&stream) {
            Err(message) => ControlReply::Error { message },
            Ok(ControlRequest::Attach { .. }) => ControlReply::Error {
                message: "a load generator is already running in this run; wait for it (or stop its `attach`)".into(),
            },
            Ok(ControlRequest::Stats {}) => match TwoHostRun::snapshot_of(engine) {
                Ok(segment) => ControlReply::Stats(Box::new(RemoteStats {
                    record: self.record.clone(),
                    segment,
                })),
                Err(e) => {
                    let reply = error_reply(&e);
                    write_reply(stream, &reply);
                    return Err(e);
                }
            },
        };
        write_reply(stream, &reply);
        Ok(())
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.dir.remove(StateFile::Control);
        self.dir.remove(StateFile::TwoHostRun);
        self.dir.remove(StateFile::SupervisorLog);
        self.dir.remove_if_empty();
    }
}

fn write_reply(mut stream: UnixStream, reply: &ControlReply) {
    if let Ok(line) = encode(reply) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(QUICK));
        let _ = stream.write_all(line.as_bytes());
    }
}

fn error_reply(e: &RemoteError) -> ControlReply {
    ControlReply::Error {
        message: e.to_string(),
    }
}

/// Errors after which the run cannot go on.
fn fatal_of(e: RemoteError) -> Option<RemoteError> {
    matches!(
        e,
        RemoteError::Lost { .. } | RemoteError::EngineEnded { .. } | RemoteError::Protocol { .. }
    )
    .then_some(e)
}

/// One request line, bounded in size and time.
fn read_request(stream: &UnixStream) -> Result<ControlRequest, String> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let read = BufReader::new(stream)
        .take(MAX_LINE as u64 + 1)
        .read_line(&mut line);
    match read {
        Ok(0) => Err("an empty request".into()),
        Ok(_) => decode_request(line.trim_end()),
        Err(e) => Err(format!("reading the request: {e}")),
    }
}

/// Whether the caller of a running `attach` went away (its end closed).
fn caller_left(stream: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    matches!((&*stream).read(&mut byte), Ok(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_named() {
        let stats = ControlRequest::Stats {};
        let line = encode(&stats).unwrap();
        assert_eq!(line, "{\"stats\":{}}\n");
        assert_eq!(decode_request(line.trim_end()), Ok(stats));
        for bad in [
            "",
            "{",
            "{\"attach\":{}}",
            "{\"stop\":{}}",
            "[1]",
            "{\"stats\":{\"x\":1}}",
        ] {
            let err = decode_request(bad).unwrap_err();
            assert!(err.contains("not a control request"), "{bad}: {err}");
        }
        let huge = "x".repeat(MAX_LINE + 1);
        assert!(decode_request(&huge).unwrap_err().contains("at most"));
    }

    #[test]
    fn replies_round_trip() {
        let reply = ControlReply::Error {
            message: "no".into(),
        };
        let line = encode(&reply).unwrap();
        assert_eq!(line, "{\"error\":{\"message\":\"no\"}}\n");
        assert!(matches!(
            serde_json::from_str::<ControlReply>(line.trim_end()),
            Ok(ControlReply::Error { message }) if message == "no"
        ));
    }
}
