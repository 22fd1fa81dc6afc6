//! The orchestrator's end of a session with a host's `serve`: the child
//! (`ssh … supervisor serve --stdio`, or `serve` itself for a role on this
//! host), one request at a time, every wait bounded, and the connection's
//! loss named with the host and SSH's own words.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contract::serve::{
    self, Call, Event, Hello, HostFacts, HostRole, Outcome, Refusal, Reply, Request,
};
use contract::CONTRACT_VERSION;

use crate::host::process::{self, Ending};
use crate::placement::Node;

/// How long `hello` may take (SSH's own connect timeout is shorter).
pub const HELLO_WITHIN: Duration = Duration::from_secs(30);

/// Most of a peer's stderr kept for messages.
const STDERR_KEPT: usize = 8 * 1024;

/// A session with a host failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The local `ssh` (or `serve`) could not be started.
    #[error("{host}: cannot start `{program}`: {source}")]
    Spawn {
        /// The host.
        host: String,
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The session ended before `hello` was answered: SSH could not connect
    /// or authenticate, or the remote supervisor is missing or failed.
    #[error("{host}: no session ({how}); ssh said: {stderr}")]
    Connect {
        /// The host.
        host: String,
        /// How the local end ended.
        how: String,
        /// SSH's (or the remote shell's) own message.
        stderr: String,
    },
    /// The session ended in the middle of the run.
    #[error("lost {host}: the connection ended ({how}){}", if stderr.is_empty() { String::new() } else { format!("; ssh said: {stderr}") })]
    Lost {
        /// The host.
        host: String,
        /// How the local end ended.
        how: String,
        /// SSH's own message.
        stderr: String,
    },
    /// The host speaks another contract version.
    #[error("{host}: contract version mismatch: this supervisor speaks {ours}, the host's {theirs}; install the same bypasslab on both")]
    Version {
        /// The host.
        host: String,
        /// This supervisor's version.
        ours: u32,
        /// The host's.
        theirs: u32,
    },
    /// The host refused or failed a request.
    #[error("{host}: `{request}` failed: {message}")]
    Refused {
        /// The host.
        host: String,
        /// The request.
        request: &'static str,
        /// The host's words.
        message: String,
    },
    /// The host sent something that is not the protocol.
    #[error("{host}: not the serve protocol: {message}")]
    Protocol {
        /// The host.
        host: String,
        /// What was wrong.
        message: String,
    },
    /// A request was not answered in time.
    #[error("{host}: `{request}` not answered within {seconds} s")]
    TimedOut {
        /// The host.
        host: String,
        /// The request.
        request: &'static str,
        /// The bound.
        seconds: u64,
    },
    /// The engine on the host ended.
    #[error("the engine on {host} (pid {pid}) {ending}")]
    EngineEnded {
        /// The host.
        host: String,
        /// Its pid there.
        pid: u32,
        /// How.
        ending: Ending,
    },
    /// A signal asked this supervisor to stop.
    #[error("interrupted by a signal")]
    Interrupted,
    /// An option a two-host run does not carry to its hosts.
    #[error("{option} is not supported over two hosts: {why}")]
    Unsupported {
        /// The option.
        option: &'static str,
        /// Why, and what to do instead.
        why: &'static str,
    },
}

enum Line {
    Reply(Box<Reply>),
    Garbage(String),
    End,
}

/// A running session with one host.
pub struct Peer {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    stderr: Arc<Mutex<String>>,
    next_id: u64,
    facts: HostFacts,
    /// The engine's end, once the host reported it.
    engine_ended: Option<(u32, Ending)>,
}

impl Peer {
    /// Starts `program serve --stdio` at `node` (over SSH, or here) and
    /// opens the session with `hello`; `label` names the host in every
    /// message.
    ///
    /// # Errors
    /// [`RemoteError`]: SSH's or the remote supervisor's failure, or a
    /// version mismatch (the session is closed then).
    pub fn connect(
        label: String,
        node: &Node,
        program: &str,
        testbed: &str,
        role: HostRole,
    ) -> Result<Self, RemoteError> {
        let mut command = node.command(program);
        command
            .args(["serve", "--stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| RemoteError::Spawn {
            host: label.clone(),
            program: command.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                loop {
                    let mut line = String::new();
                    match (&mut reader)
                        .take(u64::try_from(serve::MAX_LINE).unwrap_or(u64::MAX))
                        .read_line(&mut line)
                    {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let parsed = match serve::decode_reply(line.trim_end()) {
                        Ok(reply) => Line::Reply(Box::new(reply)),
                        Err(e) => Line::Garbage(format!(
                            "{e}: {:?}",
                            line.chars().take(200).collect::<String>()
                        )),
                    };
                    if tx.send(parsed).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Line::End);
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let kept = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut text) = kept.lock() {
                        if text.len() < STDERR_KEPT {
                            if !text.is_empty() {
                                text.push_str("; ");
                            }
                            text.push_str(line.trim());
                        }
                    }
                }
            });
        }
        let mut peer = Self {
            label,
            child,
            stdin,
            lines,
            stderr,
            next_id: 1,
            facts: HostFacts {
                hostname: String::new(),
                kernel: String::new(),
                cores: 0,
                pid: 0,
            },
            engine_ended: None,
        };
        let hello = Call::Hello(Hello {
            contract_version: CONTRACT_VERSION,
            testbed: testbed.to_owned(),
            role,
        });
        match peer.call(hello, HELLO_WITHIN, &mut |_| {}) {
            Ok(Outcome::Hello {
                contract_version,
                host,
            }) => {
                if contract_version != CONTRACT_VERSION {
                    let theirs = contract_version;
                    peer.close_quietly();
                    return Err(RemoteError::Version {
                        host: peer.label.clone(),
                        ours: CONTRACT_VERSION,
                        theirs,
                    });
                }
                peer.facts = host;
                Ok(peer)
            }
            Ok(_) => {
                peer.close_quietly();
                Err(RemoteError::Protocol {
                    host: peer.label.clone(),
                    message: "`hello` answered with something else".into(),
                })
            }
            Err(RemoteError::Lost { host, how, stderr }) => {
                Err(RemoteError::Connect { host, how, stderr })
            }
            Err(e) => {
                peer.close_quietly();
                Err(e)
            }
        }
    }

    /// The host, as messages name it.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }

    /// What the host said of itself in `hello`.
    #[must_use]
    pub fn facts(&self) -> &HostFacts {
        &self.facts
    }

    /// The local process (the `ssh` client): its pid.
    #[must_use]
    pub fn local_pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr_text(&self) -> String {
        // The stderr reader may trail the process's end by a moment.
        std::thread::sleep(Duration::from_millis(100));
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn lost(&mut self) -> RemoteError {
        let how = match process::wait_timeout(&mut self.child, Duration::from_secs(5)) {
            Ok(Some(status)) => format!("its ssh {}", Ending::from_status(status)),
            _ => "its output closed".to_owned(),
        };
        RemoteError::Lost {
            host: self.label.clone(),
            how,
            stderr: self.stderr_text(),
        }
    }

    fn handle_unsolicited(&mut self, event: Event) {
        if let Event::EngineEnded { pid, ending } = event {
            self.engine_ended = Some((pid, ending));
        }
    }

    /// Sends `call` and waits for its answer at most `limit`, giving each
    /// of its events to `on_event`.
    ///
    /// # Errors
    /// [`RemoteError`]: refused, lost, timed out, or not the protocol.
    pub fn call(
        &mut self,
        call: Call,
        limit: Duration,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Outcome, RemoteError> {
        self.call_with(call, limit, on_event, &mut || Ok(()), None)
    }

    /// As [`Peer::call`], checking `other` (the run's other host) and
    /// `also` while it waits: a long request on one host must not hide the
    /// loss of the other, or its engine's end.
    ///
    /// # Errors
    /// As [`Peer::call`], and `other`'s or `also`'s failure.
    pub fn call_watching(
        &mut self,
        call: Call,
        limit: Duration,
        on_event: &mut dyn FnMut(&Event),
        also: &mut dyn FnMut() -> Result<(), RemoteError>,
        other: &mut Peer,
    ) -> Result<Outcome, RemoteError> {
        self.call_with(call, limit, on_event, also, Some(other))
    }

    /// As [`Peer::call`], calling `also` while it waits (its failure ends
    /// the wait).
    ///
    /// # Errors
    /// As [`Peer::call`], and `also`'s failure.
    pub fn call_checking(
        &mut self,
        call: Call,
        limit: Duration,
        on_event: &mut dyn FnMut(&Event),
        also: &mut dyn FnMut() -> Result<(), RemoteError>,
    ) -> Result<Outcome, RemoteError> {
        self.call_with(call, limit, on_event, also, None)
    }

    fn call_with(
        &mut self,
        call: Call,
        limit: Duration,
        on_event: &mut dyn FnMut(&Event),
        also: &mut dyn FnMut() -> Result<(), RemoteError>,
        mut other: Option<&mut Peer>,
    ) -> Result<Outcome, RemoteError> {
        let id = self.next_id;
        self.next_id += 1;
        let name = call.name();
        let line = serve::encode(&Request { id, call }).map_err(|e| RemoteError::Protocol {
            host: self.label.clone(),
            message: e.to_string(),
        })?;
        let sent = self
            .stdin
            .as_mut()
            .map(|s| s.write_all(line.as_bytes()).and_then(|()| s.flush()));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.lost());
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(Line::Reply(reply)) => match *reply {
                    Reply::Ok { id: got, result } if got == id => return Ok(result),
                    Reply::Error {
                        id: Some(got),
                        error: Refusal { message, .. },
                    } if got == id => {
                        return Err(RemoteError::Refused {
                            host: self.label.clone(),
                            request: name,
                            message,
                        })
                    }
                    Reply::Event {
                        id: Some(got),
                        event,
                    } if got == id => on_event(&event),
                    Reply::Event { id: None, event } => self.handle_unsolicited(event),
                    other => {
                        return Err(RemoteError::Protocol {
                            host: self.label.clone(),
                            message: format!("an answer to no pending request: {other:?}"),
                        })
                    }
                },
                Ok(Line::Garbage(message)) => {
                    return Err(RemoteError::Protocol {
                        host: self.label.clone(),
                        message,
                    })
                }
                Ok(Line::End) | Err(RecvTimeoutError::Disconnected) => return Err(self.lost()),
                Err(RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                    return Err(RemoteError::TimedOut {
                        host: self.label.clone(),
                        request: name,
                        seconds: limit.as_secs(),
                    })
                }
                Err(RecvTimeoutError::Timeout) => {
                    also()?;
                    if let Some(other) = other.as_deref_mut() {
                        other.check()?;
                    }
                }
            }
        }
    }

    /// Takes what the host said unasked (without waiting), and checks the
    /// connection and the engine.
    ///
    /// # Errors
    /// [`RemoteError::Lost`], or [`RemoteError::EngineEnded`] once the host
    /// reported the engine's end.
    pub fn check(&mut self) -> Result<(), RemoteError> {
        loop {
            match self.lines.try_recv() {
                Ok(Line::Reply(reply)) => {
                    if let Reply::Event { id: None, event } = *reply {
                        self.handle_unsolicited(event);
                    }
                }
                Ok(Line::Garbage(message)) => {
                    return Err(RemoteError::Protocol {
                        host: self.label.clone(),
                        message,
                    })
                }
                Ok(Line::End) | Err(mpsc::TryRecvError::Disconnected) => return Err(self.lost()),
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        match &self.engine_ended {
            Some((pid, ending)) => Err(RemoteError::EngineEnded {
                host: self.label.clone(),
                pid: *pid,
                ending: ending.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Ends the session: `teardown` (bounded), then the input is closed
    /// and the local process waited for (bounded, then stopped).
    pub fn close(mut self) -> Result<serve::Cleanup, RemoteError> {
        let outcome = self.call(
            Call::Teardown(serve::Empty {}),
            Duration::from_secs(120),
            &mut |_| {},
        );
        self.close_quietly();
        match outcome? {
            Outcome::TornDown(cleanup) => Ok(cleanup),
            _ => Err(RemoteError::Protocol {
                host: self.label.clone(),
                message: "`teardown` answered with something else".into(),
            }),
        }
    }

    /// Closes the input (the host removes everything on end of input) and
    /// reaps the local process, stopping it after a bound.
    fn close_quietly(&mut self) {
        self.stdin = None;
        if !matches!(
            process::wait_timeout(&mut self.child, Duration::from_secs(60)),
            Ok(Some(_))
        ) {
            let _ = process::terminate(&mut self.child, Duration::from_secs(5));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            self.close_quietly();
        }
    }
}
