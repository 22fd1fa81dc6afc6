//! A run over two hosts, driven from here: a `serve` session per role
//! (opened in parallel), the engine started on its host, the load
//! generator run on its host once per count, each row built from the load
//! generator's slot on its host and the engine's counters fetched from
//! its own, and both sessions closed (each host removes what it created).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use contract::serve::{
    Call, Empty, Event, HostReport, HostRole, Netem, Outcome, RunLoadgen, StartEngine, Stats,
};
use contract::{EngineKind, Pmd};
use serde::Serialize;
use shm_layout::{Role, Snapshot};

use super::peer::{Peer, RemoteError};
use crate::config::{BackendChoice, Hosts, RoleHost, TestbedConfig};
use crate::placement::Node;
use crate::run::attach::{build_row, engine_received, slot, Attached, Busy, LoadOptions};

/// How to start the engine of a two-host run.
#[derive(Debug, Clone)]
pub struct TwoHostOptions {
    /// Which engine.
    pub engine: EngineKind,
    /// Kernel engine spins.
    pub busy_poll: bool,
    /// Poll-mode driver (the engine host's `pmd` wins when configured).
    pub pmd: Pmd,
    /// Bound on the engine serving.
    pub ready_timeout: Duration,
}

/// One host of the run, as results record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HostRecord {
    /// What it is for.
    pub role: HostRole,
    /// How it was reached (`ssh://…`, or `this host`).
    pub reached: String,
    /// Its host name.
    pub hostname: String,
    /// Its kernel release.
    pub kernel: String,
    /// Its cores online.
    pub cores: usize,
    /// The core the role's process was pinned to.
    pub core: usize,
    /// Its interface on the link.
    pub iface: Option<String>,
    /// The engine's poll-mode driver (engine host, bypass engine).
    pub pmd: Option<String>,
}

/// The sessions of a two-host run.
pub struct TwoHostRun {
    engine: Peer,
    client: Peer,
    kind: EngineKind,
    hosts: Vec<HostRecord>,
    impairment: String,
}

fn label(role: HostRole, host: &RoleHost) -> String {
    match &host.ssh {
        Some(target) => format!("{role} host {target}"),
        None => format!("{role} host (this host)"),
    }
}

fn open(config: &TestbedConfig, role: HostRole, host: &RoleHost) -> Result<Peer, RemoteError> {
    let (node, program) = match &host.ssh {
        Some(target) => (Node::over_ssh(target.clone()), host.supervisor.clone()),
        // This host: `serve` is this very binary.
        None => (
            Node::here(None),
            std::env::current_exe()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "supervisor".into()),
        ),
    };
    Peer::connect(label(role, host), &node, &program, config.name(), role)
}

/// Both sessions of `hosts`, opened in parallel; when one fails the other
/// is closed (its host removes what it made).
///
/// # Errors
/// The first failure, naming its host.
pub fn open_both(config: &TestbedConfig, hosts: &Hosts) -> Result<(Peer, Peer), RemoteError> {
    let (engine, client) = std::thread::scope(|s| {
        let engine = s.spawn(|| open(config, HostRole::Engine, &hosts.engine));
        let client = open(config, HostRole::Client, &hosts.client);
        let engine = engine.join().unwrap_or_else(|_| {
            Err(RemoteError::Protocol {
                host: label(HostRole::Engine, &hosts.engine),
                message: "the session thread panicked".into(),
            })
        });
        (engine, client)
    });
    match (engine, client) {
        (Ok(e), Ok(c)) => Ok((e, c)),
        (Err(e), other) => {
            drop(other);
            Err(e)
        }
        (Ok(e), Err(c)) => {
            drop(e);
            Err(c)
        }
    }
}

/// A `doctor` of the host reached as `host`.
///
/// # Errors
/// [`RemoteError`]: the host cannot be reached or refuses.
pub fn doctor(host: &RoleHost, testbed: &str) -> Result<(String, HostReport), RemoteError> {
    let node = match &host.ssh {
        Some(target) => Node::over_ssh(target.clone()),
        None => Node::here(None),
    };
    let mut peer = Peer::connect(
        label(HostRole::Engine, host),
        &node,
        &host.supervisor,
        testbed,
        HostRole::Engine,
    )?;
    let outcome = peer.call(
        Call::Doctor(Empty {}),
        Duration::from_secs(120),
        &mut |_| {},
    );
    let label = peer.label().to_owned();
    let _ = peer.close();
    match outcome? {
        Outcome::Doctor(report) => Ok((label, report)),
        _ => Err(RemoteError::Protocol {
            host: label,
            message: "`doctor` answered with something else".into(),
        }),
    }
}

fn say_events<'a>(say: &'a mut dyn FnMut(&str), peer: &str) -> impl FnMut(&Event) + 'a {
    let peer = peer.to_owned();
    move |event| {
        if let Event::Say { line } = event {
            say(&format!("{peer}: {line}"));
        }
    }
}

impl TwoHostRun {
    /// Opens both sessions (in parallel), then starts the engine on its
    /// host. `say` gets progress lines.
    ///
    /// # Errors
    /// [`RemoteError`] naming the host; what was created is removed (each
    /// session's end removes its host's part).
    pub fn start(
        config: &TestbedConfig,
        options: &TwoHostOptions,
        say: &mut dyn FnMut(&str),
    ) -> Result<Self, RemoteError> {
        let Some(hosts) = config.hosts() else {
            return Err(RemoteError::Protocol {
                host: "this host".into(),
                message: "the configuration names no [hosts]".into(),
            });
        };
        let (mut engine, client) = open_both(config, hosts)?;
        let pmd = hosts
            .engine
            .pmd
            .clone()
            .unwrap_or_else(|| options.pmd.clone());
        let (netem, unimpaired) = impairment_wanted(config, &mut engine)?;
        if let Some(why) = &unimpaired {
            say(why);
        }
        say(&format!(
            "starting the {} engine on {} ({}, kernel {})",
            options.engine,
            engine.label(),
            engine.facts().hostname,
            engine.facts().kernel
        ));
        let start = StartEngine {
            kind: options.engine,
            port: config.port(),
            core: hosts.engine.core,
            busy_poll: options.busy_poll,
            pmd: pmd.clone(),
            iface: hosts.engine.iface.clone().unwrap_or_default(),
            address: config.server_addr(),
            prefix_len: config.prefix_len(),
            gateway: config.client_addr(),
            ready_timeout_s: options.ready_timeout.as_secs(),
            netem,
        };
        let limit = options.ready_timeout + Duration::from_secs(120);
        let label_e = engine.label().to_owned();
        let started = engine.call(
            Call::StartEngine(start),
            limit,
            &mut say_events(say, &label_e),
        )?;
        let Outcome::EngineStarted(started) = started else {
            return Err(RemoteError::Protocol {
                host: label_e,
                message: "`start_engine` answered with something else".into(),
            });
        };
        say(&format!(
            "engine `{}` serving on {}:{} on {} (pid {} there, core {})",
            options.engine,
            config.server_addr(),
            config.port(),
            engine.label(),
            started.pid,
            started.core
        ));
        // An impairment asked for and not possible says why it is none.
        let impairment = unimpaired.map_or(started.impairment, |why| format!("none: {why}"));
        say(&format!("impairment: {impairment}"));
        let record = |peer: &Peer, role, host: &RoleHost, pmd: Option<String>| HostRecord {
            role,
            reached: host
                .ssh
                .as_ref()
                .map_or_else(|| "this host".to_owned(), ToString::to_string),
            hostname: peer.facts().hostname.clone(),
            kernel: peer.facts().kernel.clone(),
            cores: peer.facts().cores,
            core: host.core,
            iface: host.iface.clone(),
            pmd,
        };
        let hosts = vec![
            record(
                &engine,
                HostRole::Engine,
                &hosts.engine,
                options.engine.is_bypass().then(|| pmd.to_string()),
            ),
            record(&client, HostRole::Client, &hosts.client, None),
        ];
        Ok(Self {
            engine,
            client,
            kind: options.engine,
            hosts,
            impairment,
        })
    }

    /// The hosts, as results record them.
    #[must_use]
    pub fn hosts(&self) -> &[HostRecord] {
        &self.hosts
    }

    /// The local `ssh` client's pid of each session (engine, client).
    #[must_use]
    pub fn local_pids(&self) -> (u32, u32) {
        (self.engine.local_pid(), self.client.local_pid())
    }

    fn engine_stats(engine: &mut Peer, settle: bool) -> Result<Snapshot, RemoteError> {
        match engine.call(
            Call::Stats(Stats { settle }),
            Duration::from_secs(30),
            &mut |_| {},
        )? {
            Outcome::Stats(snapshot) => Ok(*snapshot),
            _ => Err(RemoteError::Protocol {
                host: engine.label().to_owned(),
                message: "`stats` answered with something else".into(),
            }),
        }
    }

    /// The engine host's segment, now.
    ///
    /// # Errors
    /// [`RemoteError`]: the host is lost or refuses.
    pub fn engine_snapshot(&mut self) -> Result<Snapshot, RemoteError> {
        Self::engine_stats(&mut self.engine, false)
    }

    /// The segment of the engine host reached through `engine` (a run's
    /// engine session, lent out while its load generator runs).
    ///
    /// # Errors
    /// [`RemoteError`]: the host is lost or refuses.
    pub fn snapshot_of(engine: &mut Peer) -> Result<Snapshot, RemoteError> {
        Self::engine_stats(engine, false)
    }

    /// Checks both sessions and the engine.
    ///
    /// # Errors
    /// [`RemoteError`]: a host was lost or the engine ended.
    pub fn check(&mut self) -> Result<(), RemoteError> {
        self.engine.check()?;
        self.client.check()
    }

    /// The impairment in force, as the engine host said.
    #[must_use]
    pub fn impairment(&self) -> &str {
        &self.impairment
    }

    /// Runs the load generator on its host once with `packets` messages
    /// and builds the row; returns it with the load generator's stdout and
    /// command line (as it ran on its host).
    ///
    /// # Errors
    /// [`RemoteError`]: a host was lost, the engine ended, a request
    /// failed, or `interrupted` was raised.
    pub fn attach(
        &mut self,
        config: &TestbedConfig,
        packets: u64,
        load: &LoadOptions,
        interrupted: &AtomicBool,
    ) -> Result<Attached, RemoteError> {
        self.attach_serving(
            config,
            packets,
            load,
            interrupted,
            &mut || false,
            &mut |_| Ok(()),
        )
    }

    /// As [`TwoHostRun::attach`], giving the idle engine session to
    /// `engine_idle` while the load generator runs, and stopping that load
    /// generator when `caller_gone` says so (its host's session is then
    /// closed, which stops it there, and a new one opened).
    ///
    /// # Errors
    /// As [`TwoHostRun::attach`]; [`RemoteError::Interrupted`] when the
    /// caller went away.
    pub fn attach_serving(
        &mut self,
        config: &TestbedConfig,
        packets: u64,
        load: &LoadOptions,
        interrupted: &AtomicBool,
        caller_gone: &mut dyn FnMut() -> bool,
        engine_idle: &mut dyn FnMut(&mut Peer) -> Result<(), RemoteError>,
    ) -> Result<Attached, RemoteError> {
        self.engine.check()?;
        let before = Self::engine_stats(&mut self.engine, false)?;
        let Some(hosts) = config.hosts() else {
            return Err(RemoteError::Interrupted);
        };
        let request = RunLoadgen {
            engine: self.kind,
            connect: std::net::SocketAddrV4::new(config.server_addr(), config.port()),
            packets,
            core: hosts.client.core,
            load: load.clone(),
            progress_interval_ms: 1000,
        };
        let limit = load.bound(packets) + Duration::from_secs(60);
        let engine = &mut self.engine;
        let mut left = false;
        let finished =
            self.client
                .call_checking(Call::RunLoadgen(request), limit, &mut |_| {}, &mut || {
                    if interrupted.load(Ordering::Relaxed) {
                        return Err(RemoteError::Interrupted);
                    }
                    if caller_gone() {
                        left = true;
                        return Err(RemoteError::Interrupted);
                    }
                    engine.check()?;
                    engine_idle(engine)
                });
        if left {
            self.reopen_client(config)?;
        }
        let finished = finished?;
        let Outcome::LoadgenFinished(finished) = finished else {
            return Err(RemoteError::Protocol {
                host: self.client.label().to_owned(),
                message: "`run_loadgen` answered with something else".into(),
            });
        };
        if !finished.ending.is_success() {
            eprintln!(
                "supervisor: the load generator on {} (pid {} there) {}",
                self.client.label(),
                finished.pid,
                finished.ending
            );
            // A failed load generator may be the first to see the engine's
            // end: give its host a moment (it looks every 50 ms) to say so.
            for _ in 0..10 {
                self.engine.check()?;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // The engine's end (or the engine host's loss) explains the row.
        self.engine.check()?;
        let after = Self::engine_stats(&mut self.engine, true)?;
        let Some(loadgen) = finished.slot else {
            return Err(RemoteError::Refused {
                host: self.client.label().to_owned(),
                request: "run_loadgen",
                message: "the load generator never claimed its slot (its output above says why)"
                    .into(),
            });
        };
        let engine_before = slot(&before, Role::Engine).and_then(|s| s.counters);
        let engine_after = slot(&after, Role::Engine).and_then(|s| s.counters);
        // The processes' CPU time and the engine host's interface counters
        // are that host's; over two hosts the engine's own loop counters
        // and port losses (from its segment) are what is known.
        let busy = Busy::of(
            (engine_before.as_ref(), engine_after.as_ref()),
            &loadgen,
            (None, None),
            (None, None),
        );
        let row = build_row(
            packets,
            self.kind,
            load,
            &loadgen,
            engine_received(engine_before.as_ref(), engine_after.as_ref()),
            finished.ending,
            self.impairment.clone(),
            None,
            busy,
            contract::loadgen::ShortConnections::from_result(&finished.stdout),
        );
        Ok(Attached {
            row,
            stdout: finished.stdout,
            command: finished.command,
        })
    }

    /// Closes the client host's session (its host stops what runs there)
    /// and opens a new one.
    fn reopen_client(&mut self, config: &TestbedConfig) -> Result<(), RemoteError> {
        let Some(hosts) = config.hosts() else {
            return Ok(());
        };
        let fresh = open(config, HostRole::Client, &hosts.client)?;
        let old = std::mem::replace(&mut self.client, fresh);
        let _ = old.close();
        Ok(())
    }

    /// Ends both sessions; each host removes what it created. Returns what
    /// each did, by host.
    #[must_use]
    pub fn stop(self) -> Vec<(String, Result<contract::serve::Cleanup, RemoteError>)> {
        let Self { engine, client, .. } = self;
        close_both(engine, client)
    }
}

/// Ends both sessions in parallel; each host removes what it created.
/// Returns what each did, by host (client first).
#[must_use]
pub fn close_both(
    engine: Peer,
    client: Peer,
) -> Vec<(String, Result<contract::serve::Cleanup, RemoteError>)> {
    let client_label = client.label().to_owned();
    let engine_label = engine.label().to_owned();
    let (c, e) = std::thread::scope(|s| {
        let c = s.spawn(|| client.close());
        let e = engine.close();
        (c.join(), e)
    });
    let c = c.unwrap_or_else(|_| {
        Err(RemoteError::Protocol {
            host: client_label.clone(),
            message: "the closing thread panicked".into(),
        })
    });
    vec![(client_label, c), (engine_label, e)]
}

/// Netem for the engine host when the run is impaired and the host has
/// netem; otherwise none, with why when an impairment was asked for.
pub(crate) fn impairment_wanted(
    config: &TestbedConfig,
    engine: &mut Peer,
) -> Result<(Option<Netem>, Option<String>), RemoteError> {
    let imp = config.impairment();
    if imp.is_noop() || imp.backend == BackendChoice::None {
        return Ok((None, None));
    }
    let report = match engine.call(
        Call::Doctor(Empty {}),
        Duration::from_secs(120),
        &mut |_| {},
    )? {
        Outcome::Doctor(report) => report,
        _ => {
            return Err(RemoteError::Protocol {
                host: engine.label().to_owned(),
                message: "`doctor` answered with something else".into(),
            })
        }
    };
    if report.check("netem").is_some_and(|c| c.ok) {
        Ok((
            Some(Netem {
                delay_us: imp.delay_us,
                jitter_us: imp.jitter_us,
                loss_percent: imp.loss_percent,
            }),
            None,
        ))
    } else {
        Ok((
            None,
            Some(format!(
                "{} has no netem: the link is not impaired (the userspace emulator is the single-host testbed's)",
                engine.label()
            )),
        ))
    }
}
