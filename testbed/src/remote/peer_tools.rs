//! The bench's peers over two hosts, driven from here: a peer tool's
//! server on the engine host and its client on the client host, each
//! through its host's `serve` session (the same SSH path as the engines),
//! named by its typed spec ([`contract::peer_tool`]) only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use contract::peer_tool::{PeerClient, PeerServer};
use contract::serve::{
    Call, Cleanup, Event, Netem, Outcome, PeerEnded, PeerServerStarted, RunPeerClient,
    StartPeerServer, StopPeerServer, MAX_PEER_OUTPUT, MAX_PEER_WAIT_MS,
};

use super::peer::{Peer, RemoteError};
use super::run::{close_both, impairment_wanted, open_both};
use crate::config::TestbedConfig;

/// Beyond a request's own bound, how long its answer may take.
const ANSWER_SLACK: Duration = Duration::from_secs(30);

/// The sessions the peers run through.
pub struct PeerHosts {
    engine: Peer,
    client: Peer,
    engine_core: usize,
    client_core: usize,
    /// The engine host's interface on the link (netem's place).
    iface: Option<String>,
    /// Netem for each server, when the testbed is impaired and the engine
    /// host has it.
    netem: Option<Netem>,
    /// Why an impaired testbed is not impaired over these hosts.
    unimpaired: Option<String>,
}

/// A peer client's run on the client host.
#[derive(Debug, Clone)]
pub struct ClientRun {
    /// Everything it printed.
    pub output: String,
    /// Its pid and command line there, how it ended, and whether it was
    /// stopped past its bound.
    pub ended: PeerEnded,
}

impl PeerHosts {
    /// Opens a session with each host of `config`'s `[hosts]`; when the
    /// testbed is impaired, asks the engine host whether it has netem.
    ///
    /// # Errors
    /// [`RemoteError`] naming the host.
    pub fn open(config: &TestbedConfig) -> Result<Self, RemoteError> {
        let Some(hosts) = config.hosts() else {
            return Err(RemoteError::Protocol {
                host: "this host".into(),
                message: "the configuration names no [hosts]".into(),
            });
        };
        let (mut engine, client) = open_both(config, hosts)?;
        let (netem, unimpaired) = impairment_wanted(config, &mut engine)?;
        Ok(Self {
            engine,
            client,
            engine_core: hosts.engine.core,
            client_core: hosts.client.core,
            iface: hosts.engine.iface.clone(),
            netem,
            unimpaired,
        })
    }

    /// Why the testbed's impairment cannot be put in force on the engine
    /// host (it has no netem), if it cannot.
    #[must_use]
    pub fn unimpaired(&self) -> Option<&str> {
        self.unimpaired.as_deref()
    }

    /// The engine host and the client host, as messages name them.
    #[must_use]
    pub fn labels(&self) -> (&str, &str) {
        (self.engine.label(), self.client.label())
    }

    /// Starts `server` on the engine host, on its core, with the testbed's
    /// netem on the host's egress where it has it, and waits until it
    /// listens (the host bounds that).
    ///
    /// # Errors
    /// [`RemoteError`]: the host's words (not installed, exited, not
    /// listening), or the session's loss.
    pub fn start_server(&mut self, server: &PeerServer) -> Result<PeerServerStarted, RemoteError> {
        let call = Call::StartPeerServer(StartPeerServer {
            server: server.clone(),
            core: self.engine_core,
            iface: self.iface.clone(),
            netem: self.netem,
        });
        match self.engine.call(call, ANSWER_SLACK, &mut |_| {})? {
            Outcome::PeerServerStarted(started) => Ok(started),
            _ => Err(self.unexpected("start_peer_server", true)),
        }
    }

    /// Stops the engine host's peer server, letting one that ends by itself
    /// take at most `wait`.
    ///
    /// # Errors
    /// [`RemoteError`].
    pub fn stop_server(&mut self, wait: Duration) -> Result<PeerEnded, RemoteError> {
        let wait_ms = u64::try_from(wait.as_millis())
            .unwrap_or(u64::MAX)
            .min(MAX_PEER_WAIT_MS);
        let call = Call::StopPeerServer(StopPeerServer { wait_ms });
        let limit = Duration::from_millis(wait_ms) + ANSWER_SLACK;
        match self.engine.call(call, limit, &mut |_| {})? {
            Outcome::PeerServerStopped(ended) => Ok(ended),
            _ => Err(self.unexpected("stop_peer_server", true)),
        }
    }

    /// Runs `client` on the client host, on its core, bounded by `limit`
    /// there; gives up here when `interrupted` is raised (the session's end
    /// then stops the client there). The engine host's session is watched
    /// meanwhile.
    ///
    /// # Errors
    /// [`RemoteError`]: the host's words, the loss of either session, or
    /// [`RemoteError::Interrupted`].
    pub fn run_client(
        &mut self,
        client: &PeerClient,
        limit: Duration,
        interrupted: &AtomicBool,
    ) -> Result<ClientRun, RemoteError> {
        let call = Call::RunPeerClient(RunPeerClient {
            client: client.clone(),
            core: self.client_core,
            limit_s: limit.as_secs().max(1),
        });
        let mut output = String::new();
        let mut on_event = |event: &Event| {
            if let Event::Output { text } = event {
                if output.len() + text.len() <= MAX_PEER_OUTPUT {
                    output.push_str(text);
                }
            }
        };
        let mut also = || {
            if interrupted.load(Ordering::Relaxed) {
                Err(RemoteError::Interrupted)
            } else {
                Ok(())
            }
        };
        let answer = self.client.call_watching(
            call,
            limit + ANSWER_SLACK,
            &mut on_event,
            &mut also,
            &mut self.engine,
        )?;
        match answer {
            Outcome::PeerClientFinished(ended) => Ok(ClientRun { output, ended }),
            _ => Err(self.unexpected("run_peer_client", false)),
        }
    }

    fn unexpected(&self, request: &str, engine: bool) -> RemoteError {
        let peer = if engine { &self.engine } else { &self.client };
        RemoteError::Protocol {
            host: peer.label().to_owned(),
            message: format!("`{request}` answered with something else"),
        }
    }

    /// Ends both sessions; each host removes what it created (a server
    /// still running is stopped). Returns what each did, by host.
    #[must_use]
    pub fn close(self) -> Vec<(String, Result<Cleanup, RemoteError>)> {
        close_both(self.engine, self.client)
    }
}
