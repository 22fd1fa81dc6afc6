//! `supervisor serve --stdio`: the remote end of a two-host run. It reads
//! requests (see [`contract::serve`]) on its input and answers on its
//! output, runs the engine or the load generator on this host through the
//! same steps as a local run (a run state in its own state directory,
//! hugepages, the segment, the bypass preparation, children named by pid
//! and start time), and removes everything when its input ends, a signal
//! comes, or its output breaks: a dropped SSH connection leaves nothing.

use std::io::{BufRead, Read, Write};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use contract::serve::{
    self, Call, Cleanup, EngineStarted, Event, Hello, HostFacts, HostRole, LoadgenFinished,
    Outcome, PeerServerStarted, Refusal, RefusalKind, Reply, Request, RunLoadgen, RunPeerClient,
    StartEngine, StartPeerServer, MAX_LINE, OUTPUT_CHUNK,
};
use contract::CONTRACT_VERSION;
use shm_layout::{CreateOptions, Role, Segment};

use super::facts;
use super::netem;
use super::tool::{self, Tool};
use crate::config::ServiceLimits;
use crate::host::hugepages;
use crate::host::process::ProcessId;
use crate::host::wait::{self, Check, Waited};
use crate::placement::Node;
use crate::run::attach::{self, settled_snapshot};
use crate::run::bypass::Port;
use crate::run::session::{Run, Site, StartOptions};
use crate::run::state::{Phase, RunState};
use crate::run::teardown::{teardown_record, TeardownReport};
use crate::run::LifecycleError;
use crate::state::StateFile;

/// How `serve` finds what it starts.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Directory of the `engine` and `loadgen` binaries (beside `serve`).
    pub bin_dir: PathBuf,
}

/// `serve` could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The output broke (the connection is gone); everything was removed.
    #[error("writing to the orchestrator: {0}")]
    Output(#[source] std::io::Error),
    /// The signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// What the input reader saw.
enum Input {
    Line(String),
    TooLong(usize),
    End,
}

/// How often the loop looks at the engine and the stop flag while idle.
const TICK: Duration = Duration::from_millis(50);

/// Reads lines of at most [`MAX_LINE`] bytes; a longer one is skipped to
/// its end and reported, never held in memory whole.
fn read_lines(mut input: impl BufRead, tx: &Sender<Input>, closed: &AtomicBool) {
    loop {
        let mut line = Vec::new();
        let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1;
        match (&mut input).take(limit).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            let text = String::from_utf8_lossy(&line).into_owned();
            if tx.send(Input::Line(text)).is_err() {
                return;
            }
            continue;
        }
        if line.len() <= MAX_LINE {
            // The last line, without its newline.
            let _ = tx.send(Input::Line(String::from_utf8_lossy(&line).into_owned()));
            break;
        }
        let mut len = line.len();
        loop {
            let mut rest = Vec::new();
            match (&mut input).take(limit).read_until(b'\n', &mut rest) {
                Ok(0) | Err(_) => break,
                Ok(n) => len += n,
            }
            if rest.last() == Some(&b'\n') {
                break;
            }
        }
        if tx.send(Input::TooLong(len)).is_err() {
            return;
        }
    }
    closed.store(true, Ordering::Relaxed);
    let _ = tx.send(Input::End);
}

/// The load generator's side of a client host: a run state with the
/// segment it publishes into.
struct ClientSite {
    state: RunState,
    segment: Option<Segment>,
}

/// One session of `serve`.
struct Session<W: Write> {
    out: W,
    options: ServeOptions,
    hello: Option<Hello>,
    engine: Option<Run>,
    engine_ended: bool,
    client: Option<ClientSite>,
    /// A peer tool's server (engine host).
    peer_server: Option<Tool>,
    stop: Arc<AtomicBool>,
}

/// What the loop does after a request.
#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    End,
}

/// Serves one session on `input`/`output` until the input ends, a signal
/// (SIGTERM, SIGINT, SIGHUP) comes, `teardown` is asked, or the output
/// breaks; everything the session created is removed before it returns.
///
/// # Errors
/// [`ServeError`]: the output broke, or signals could not be handled.
pub fn serve(
    input: impl BufRead + Send + 'static,
    output: impl Write,
    options: ServeOptions,
) -> Result<(), ServeError> {
    // `signalled` ends the loop; `stop` also ends a running load
    // generator, and is raised by the end of input too (the lines read
    // before it are still answered).
    let signalled = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        for flag in [&signalled, &stop] {
            signal_hook::flag::register(signal, Arc::clone(flag)).map_err(ServeError::Signals)?;
        }
    }
    let (tx, rx) = mpsc::channel();
    let closed = Arc::clone(&stop);
    std::thread::spawn(move || read_lines(input, &tx, &closed));
    let mut session = Session {
        out: output,
        options,
        hello: None,
        engine: None,
        engine_ended: false,
        client: None,
        peer_server: None,
        stop,
    };
    let outcome = session.serve(&rx, &signalled);
    session.teardown();
    outcome
}

impl<W: Write> Session<W> {
    fn serve(&mut self, rx: &Receiver<Input>, signalled: &AtomicBool) -> Result<(), ServeError> {
        loop {
            if signalled.load(Ordering::Relaxed) {
                return Ok(());
            }
            match rx.recv_timeout(TICK) {
                Ok(Input::Line(line)) if line.trim().is_empty() => {}
                Ok(Input::Line(line)) => {
                    if self.line(&line)? == Flow::End {
                        return Ok(());
                    }
                }
                Ok(Input::TooLong(len)) => self.refuse(
                    None,
                    RefusalKind::BadRequest,
                    serve::DecodeError::TooLong { len }.to_string(),
                )?,
                Ok(Input::End) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Err(RecvTimeoutError::Timeout) => self.watch_engine()?,
            }
        }
    }

    fn send(&mut self, reply: &Reply) -> Result<(), ServeError> {
        let line = serve::encode(reply).map_err(|e| ServeError::Output(e.into()))?;
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(ServeError::Output)
    }

    fn refuse(
        &mut self,
        id: Option<u64>,
        kind: RefusalKind,
        message: String,
    ) -> Result<(), ServeError> {
        self.send(&Reply::Error {
            id,
            error: Refusal { kind, message },
        })
    }

    /// Reports the engine's end once, unasked: the orchestrator may be
    /// waiting on the other host meanwhile.
    fn watch_engine(&mut self) -> Result<(), ServeError> {
        if self.engine_ended {
            return Ok(());
        }
        let Some(run) = self.engine.as_mut() else {
            return Ok(());
        };
        if let Ok(Some(ending)) = run.engine_ending() {
            self.engine_ended = true;
            let pid = run.state().engine.map_or(0, |p| p.pid);
            self.send(&Reply::Event {
                id: None,
                event: Event::EngineEnded { pid, ending },
            })?;
        }
        Ok(())
    }

    fn line(&mut self, line: &str) -> Result<Flow, ServeError> {
        let request = match serve::decode_request(line) {
            Ok(request) => request,
            Err(e) => {
                self.refuse(
                    serve::salvage_id(line),
                    RefusalKind::BadRequest,
                    e.to_string(),
                )?;
                return Ok(Flow::Go);
            }
        };
        let Request { id, call } = request;
        let hello = match (&self.hello, call) {
            (None, Call::Hello(hello)) => hello,
            (Some(_), Call::Hello(_)) => {
                self.refuse(Some(id), RefusalKind::OutOfOrder, "hello twice".into())?;
                return Ok(Flow::Go);
            }
            (None, other) => {
                self.refuse(
                    Some(id),
                    RefusalKind::OutOfOrder,
                    format!("`{}` before `hello`", other.name()),
                )?;
                return Ok(Flow::Go);
            }
            (Some(_), call) => return self.call(id, call),
        };
        if hello.contract_version != CONTRACT_VERSION {
            self.refuse(
                Some(id),
                RefusalKind::Version,
                format!(
                    "this host's supervisor speaks contract version {CONTRACT_VERSION}, the orchestrator's {}: install the same bypasslab on both",
                    hello.contract_version
                ),
            )?;
            return Ok(Flow::End);
        }
        self.hello = Some(hello);
        self.send(&Reply::Ok {
            id,
            result: Outcome::Hello {
                contract_version: CONTRACT_VERSION,
                host: HostFacts {
                    hostname: facts::hostname(),
                    kernel: facts::kernel(),
                    cores: crate::config::host_cores(),
                    pid: std::process::id(),
                },
            },
        })?;
        Ok(Flow::Go)
    }

    fn role(&self) -> HostRole {
        self.hello.as_ref().map_or(HostRole::Engine, |h| h.role)
    }

    /// The name of this session's state on this host: the testbed and the
    /// role, so an engine host and a client host that are one machine do
    /// not share it.
    fn site_name(&self) -> String {
        let testbed = self.hello.as_ref().map_or("", |h| h.testbed.as_str());
        format!("{testbed}-{}", self.role())
    }

    fn call(&mut self, id: u64, call: Call) -> Result<Flow, ServeError> {
        let wrong_role = |role: HostRole, call: &Call| {
            format!("`{}` on a host whose role is {role}", call.name())
        };
        let result = match call {
            Call::Hello(_) => unreachable!("handled by line()"),
            Call::Doctor(_) => Ok(Outcome::Doctor(facts::report(&crate::doctor::run()))),
            Call::Teardown(_) => {
                let cleanup = self.teardown();
                self.send(&Reply::Ok {
                    id,
                    result: Outcome::TornDown(cleanup),
                })?;
                return Ok(Flow::End);
            }
            Call::Stats(stats) => match self.segment() {
                Some(segment) => Ok(Outcome::Stats(Box::new(if stats.settle {
                    settled_snapshot(segment)
                } else {
                    segment.snapshot()
                }))),
                None => Err((
                    RefusalKind::OutOfOrder,
                    "`stats` before anything runs here".to_owned(),
                )),
            },
            ref c @ Call::StartEngine(_) if self.role() != HostRole::Engine => {
                Err((RefusalKind::OutOfOrder, wrong_role(self.role(), c)))
            }
            ref c @ Call::RunLoadgen(_) if self.role() != HostRole::Client => {
                Err((RefusalKind::OutOfOrder, wrong_role(self.role(), c)))
            }
            ref c @ (Call::StartPeerServer(_) | Call::StopPeerServer(_))
                if self.role() != HostRole::Engine =>
            {
                Err((RefusalKind::OutOfOrder, wrong_role(self.role(), c)))
            }
            ref c @ Call::RunPeerClient(_) if self.role() != HostRole::Client => {
                Err((RefusalKind::OutOfOrder, wrong_role(self.role(), c)))
            }
            Call::StartPeerServer(start) => self.start_peer_server(&start),
            Call::StopPeerServer(stop) => match self.peer_server.take() {
                Some(mut server) => {
                    let (ending, stopped) =
                        server.finish(Duration::from_millis(stop.wait_ms), &|| false);
                    let mut removed = TeardownReport::default();
                    self.remove_peer_netem(&mut removed);
                    let mut output = server.output();
                    for problem in removed.problems {
                        output.push_str(&format!("\n[removing netem: {problem}]"));
                    }
                    let output = tool::tail(&output, OUTPUT_CHUNK).to_owned();
                    Ok(Outcome::PeerServerStopped(
                        server.ended(ending, stopped, output),
                    ))
                }
                None => Err((
                    RefusalKind::OutOfOrder,
                    "`stop_peer_server` with no peer server started".to_owned(),
                )),
            },
            Call::RunPeerClient(run) => self.run_peer_client(id, &run),
            Call::StartEngine(_) if self.engine.is_some() => Err((
                RefusalKind::OutOfOrder,
                "the engine is already started".to_owned(),
            )),
            Call::StartEngine(start) => self
                .start_engine(id, &start)
                .map(Outcome::EngineStarted)
                .map_err(|e| (RefusalKind::Failed, e.to_string())),
            Call::RunLoadgen(run) => self
                .run_loadgen(id, &run)
                .map(|f| Outcome::LoadgenFinished(Box::new(f)))
                .map_err(|e| (RefusalKind::Failed, e.to_string())),
        };
        match result {
            Ok(result) => self.send(&Reply::Ok { id, result })?,
            Err((kind, message)) => self.refuse(Some(id), kind, message)?,
        }
        Ok(Flow::Go)
    }

    fn segment(&self) -> Option<&Segment> {
        match (&self.engine, &self.client) {
            (Some(run), _) => run.segment(),
            (None, Some(client)) => client.segment.as_ref(),
            (None, None) => None,
        }
    }

    fn start_engine(
        &mut self,
        id: u64,
        start: &StartEngine,
    ) -> Result<EngineStarted, LifecycleError> {
        if !std::path::Path::new("/sys/class/net")
            .join(&start.iface)
            .exists()
        {
            return Err(LifecycleError::Io {
                step: format!("checking interface {}", start.iface),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "this host has no such interface (see `ip link`)",
                ),
            });
        }
        let site = Site {
            name: self.site_name(),
            engine: Node::here(Some(start.core)),
            port: Port {
                namespace: None,
                iface: start.iface.clone(),
                address: start.address,
                prefix_len: start.prefix_len,
                gateway: start.gateway,
            },
            server: SocketAddrV4::new(start.address, start.port),
            loadgen_core: 0,
            // The serve protocol carries no limits yet: the engine's own.
            limits: ServiceLimits::default(),
        };
        let options = StartOptions {
            engine: start.kind,
            busy_poll: start.busy_poll,
            bin_dir: self.options.bin_dir.clone(),
            // A dead serve's leftovers are this session's to clean: the
            // connection that owned them is gone.
            clean_leftovers: true,
            ready_timeout: Duration::from_secs(start.ready_timeout_s),
            pmd: start.pmd.clone(),
            // The serve protocol carries no minimum RTO: a two-host run
            // refuses --rto-min-ms before it starts anything.
            rto_min_ms: None,
            client: contract::ClientStack::Kernel,
        };
        let mut lines = Vec::new();
        let started = Run::start_at(None, site, &options, &mut |l| lines.push(l.to_owned()));
        for line in lines {
            let _ = self.send(&Reply::Event {
                id: Some(id),
                event: Event::Say { line },
            });
        }
        let run = started?;
        let state = run.state().clone();
        let segment = run
            .segment()
            .map(|s| match s.fallback_reason() {
                None => format!("{} on hugetlbfs", s.path().display()),
                Some(why) => format!("{} on /dev/shm: {why}", s.path().display()),
            })
            .unwrap_or_default();
        self.engine = Some(run);
        let impairment = netem::apply(&self.state_dir(), start);
        Ok(EngineStarted {
            pid: state.engine.map_or(0, |p| p.pid),
            core: state.engine_core,
            command: state.engine_command,
            segment,
            impairment,
        })
    }

    /// The client host's run state and segment, made on the first
    /// `run_loadgen` and recorded like a run's.
    fn client_site(&mut self, run: &RunLoadgen) -> Result<&mut ClientSite, LifecycleError> {
        if self.client.is_none() {
            let name = self.site_name();
            let previous = RunState::load(&name).ok();
            if let Some(previous) = previous.filter(|p| !p.supervisor.is_alive()) {
                let mut report = TeardownReport::default();
                teardown_record(None, &previous, &mut report);
            }
            let state = RunState {
                testbed: name,
                phase: Phase::Starting,
                supervisor: ProcessId::current(),
                engine_kind: run.engine,
                engine: None,
                engine_core: 0,
                loadgen_core: run.core,
                server: run.connect,
                segment: None,
                hugepages: hugepages::HugepageGrant::default(),
                created_network: false,
                removed_server_address: None,
                pci_device: None,
                port: None,
                pmd: None,
                engine_command: Vec::new(),
                rto_min_ms: None,
                tuned_routes: Vec::new(),
                files: Vec::new(),
                started_unix: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            };
            state.create()?;
            let mut site = ClientSite {
                state,
                segment: None,
            };
            let dir = crate::state::StateDir::of(&site.state.testbed);
            let made = (|| -> Result<Segment, LifecycleError> {
                site.state.hugepages = hugepages::acquire(4, &dir.file(StateFile::Hugepages))?;
                site.state.save()?;
                let mut create = CreateOptions::new(&site.state.testbed);
                create.hugetlbfs_dir.clone_from(&site.state.hugepages.dir);
                let segment = Segment::create(&create)?;
                site.state.segment = Some(segment.path().to_owned());
                site.state.phase = Phase::Ready;
                site.state.save()?;
                Ok(segment)
            })();
            match made {
                Ok(segment) => site.segment = Some(segment),
                Err(e) => {
                    let mut report = TeardownReport::default();
                    teardown_record(None, &site.state, &mut report);
                    return Err(e);
                }
            }
            self.client = Some(site);
        }
        let site = self
            .client
            .as_mut()
            .unwrap_or_else(|| unreachable!("made above"));
        site.state.server = run.connect;
        site.state.loadgen_core = run.core;
        site.state.save()?;
        Ok(site)
    }

    fn run_loadgen(
        &mut self,
        id: u64,
        run: &RunLoadgen,
    ) -> Result<LoadgenFinished, LifecycleError> {
        let bin_dir = self.options.bin_dir.clone();
        let stop = Arc::clone(&self.stop);
        let interval = Duration::from_millis(run.progress_interval_ms.max(100));
        // The site is taken out while the load generator runs, so progress
        // events can be written meanwhile.
        self.client_site(run)?;
        let site = self
            .client
            .take()
            .unwrap_or_else(|| unreachable!("made above"));
        let mut last = std::time::Instant::now();
        let out = &mut self.out;
        let mut progress = |answered: u64| {
            if last.elapsed() >= interval {
                last = std::time::Instant::now();
                if let Ok(line) = serve::encode(&Reply::Event {
                    id: Some(id),
                    event: Event::Progress { answered },
                }) {
                    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
                }
            }
        };
        let outcome = match site.segment.as_ref() {
            // A client host runs the kernel's stack: NS1's veth, which a
            // DPDK client takes over, is this testbed's only.
            Some(_) if run.load.client == Some(contract::ClientStack::Dpdk) => Err(
                LifecycleError::Client(crate::run::client::ClientRefusal::RemoteClient),
            ),
            Some(segment) => attach::run_loadgen(
                &Node::here(Some(run.core)),
                &site.state,
                segment,
                &bin_dir,
                run.packets,
                &run.load,
                None,
                &stop,
                Some(&mut progress),
            )
            .map(|ran| {
                let snapshot = segment.snapshot();
                LoadgenFinished {
                    pid: ran.pid,
                    ending: ran.ending,
                    slot: attach::slot(&snapshot, Role::Loadgen).cloned(),
                    stdout: ran.stdout,
                    command: ran.command,
                }
            }),
            None => Err(LifecycleError::NoSegment(crate::run::state::NoSegment {
                testbed: site.state.testbed.clone(),
            })),
        };
        self.client = Some(site);
        outcome
    }

    /// Starts a peer tool's server (one at a time; one that ended by
    /// itself, as iperf3's one-off does, is replaced) and waits until it
    /// listens.
    fn start_peer_server(
        &mut self,
        start: &StartPeerServer,
    ) -> Result<Outcome, (RefusalKind, String)> {
        if let Some(running) = self.peer_server.as_mut() {
            if running.ending().is_none() {
                return Err((
                    RefusalKind::OutOfOrder,
                    format!(
                        "a peer server is already running here (`{}`, pid {})",
                        running.command().join(" "),
                        running.pid()
                    ),
                ));
            }
        }
        self.peer_server = None;
        let failed = |message: String| (RefusalKind::Failed, message);
        let mut server = Tool::spawn(start.server.program(), &start.server.args(), start.core)
            .map_err(|e| failed(e.to_string()))?;
        let port = start.server.port();
        let here = Node::here(None);
        // Bounded by its own deadline: a request read before the end of
        // input is still answered, as every other is.
        let waited = wait::until(
            tool::SERVER_READY,
            Duration::from_millis(50),
            || match server.ending() {
                Some(ending) => Check::Failed(ending),
                None if tool::listening(&here, port) => Check::Ready(()),
                None => Check::Pending,
            },
        );
        if let Err(waited) = waited {
            let why = match waited {
                Waited::Failed(ending) => format!("{ending} at start"),
                Waited::TimedOut => {
                    server.stop();
                    format!(
                        "did not listen on port {port} within {} s",
                        tool::SERVER_READY.as_secs()
                    )
                }
            };
            let output = server.output();
            return Err(failed(format!(
                "`{}` {why}: {}",
                server.command().join(" "),
                tool::tail(output.trim(), 2048)
            )));
        }
        let process = server.process();
        self.peer_server = Some(server);
        let impairment = match &start.iface {
            Some(iface) => netem::apply_on(&self.state_dir(), iface, start.netem.as_ref()),
            None if start.netem.is_some() => {
                "none: no interface named for netem ([engine_host] iface)".to_owned()
            }
            None => "none".to_owned(),
        };
        Ok(Outcome::PeerServerStarted(PeerServerStarted {
            process,
            impairment,
        }))
    }

    /// This session's state directory on this host.
    fn state_dir(&self) -> crate::state::StateDir {
        crate::state::StateDir::of(&self.site_name())
    }

    /// Removes the netem a peer server's start added (an engine's is its
    /// run's to remove).
    fn remove_peer_netem(&self, report: &mut TeardownReport) {
        if self.engine.is_none() {
            let dir = self.state_dir();
            netem::remove_recorded(&dir, report);
            dir.remove_if_empty();
        }
    }

    /// Runs a peer tool's client to its end (stopped past its bound, or
    /// when the session ends), sending its output as events first.
    fn run_peer_client(
        &mut self,
        id: u64,
        run: &RunPeerClient,
    ) -> Result<Outcome, (RefusalKind, String)> {
        let mut client = Tool::spawn(run.client.program(), &run.client.args(), run.core)
            .map_err(|e| (RefusalKind::Failed, e.to_string()))?;
        let stop = Arc::clone(&self.stop);
        let (ending, stopped) = client.finish(Duration::from_secs(run.limit_s), &|| {
            stop.load(Ordering::Relaxed)
        });
        let output = client.output();
        for text in tool::chunks(&output, OUTPUT_CHUNK) {
            if self
                .send(&Reply::Event {
                    id: Some(id),
                    event: Event::Output {
                        text: text.to_owned(),
                    },
                })
                .is_err()
            {
                break;
            }
        }
        Ok(Outcome::PeerClientFinished(client.ended(
            ending,
            stopped,
            String::new(),
        )))
    }

    /// Removes everything of the session; harmless twice.
    fn teardown(&mut self) -> Cleanup {
        let mut report = TeardownReport::default();
        if let Some(mut server) = self.peer_server.take() {
            let ending = server.stop();
            report.done.push(format!(
                "stopped `{}` (pid {}): it {ending}",
                server.command().join(" "),
                server.pid()
            ));
            self.remove_peer_netem(&mut report);
        }
        if let Some(run) = self.engine.take() {
            let done = run.stop();
            report.done.extend(done.done);
            report.problems.extend(done.problems);
        }
        if let Some(mut site) = self.client.take() {
            site.segment = None;
            teardown_record(None, &site.state, &mut report);
        }
        Cleanup {
            done: report.done,
            problems: report.problems,
        }
    }
}
