//! One run of the experiment: the ordered side effects of `start` and the
//! teardown that undoes them, whether called by `stop`, by a signal, by a
//! child's death or after a crash of an earlier supervisor.
//!
//! Every resource is recorded in the run state file *before* the next step,
//! so teardown from the file alone removes exactly what exists.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shm_layout::{CreateOptions, ProducerState, Role, Segment};

use super::error::LifecycleError;
use super::netview;
use super::state::{self, Phase, RunState, StateError};
use crate::config::TestbedConfig;
use crate::host::hugepages;
use crate::host::process::{self, Ending, ProcessId};
use crate::net;

/// Engine kinds the supervisor can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// Kernel TCP sockets (Case 1).
    Kernel,
    /// DPDK + smoltcp (Case 2).
    Dpdk,
    /// DPDK + F-Stack (Case 2, as in the original experiment).
    Fstack,
}

impl EngineKind {
    /// The engine's `--kind` value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Dpdk => "dpdk",
            Self::Fstack => "fstack",
        }
    }
}

/// How to start a run.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Which engine serves.
    pub engine: EngineKind,
    /// Engine spins instead of sleeping (kernel engine).
    pub busy_poll: bool,
    /// Directory holding the `engine` and `loadgen` binaries.
    pub bin_dir: PathBuf,
    /// Remove a crashed run's leftovers instead of refusing.
    pub clean_leftovers: bool,
    /// Bound on the engine reaching its serving state.
    pub ready_timeout: Duration,
    /// Poll-mode driver of a bypass engine.
    pub pmd: super::bypass::Pmd,
}

/// Hugepages a run needs: one for the segment, more for DPDK's memory.
fn pages_needed(engine: EngineKind) -> u64 {
    match engine {
        EngineKind::Kernel => 4,
        EngineKind::Dpdk | EngineKind::Fstack => 4 + 256,
    }
}

/// The directory of the running supervisor binary, where cargo puts its
/// siblings.
#[must_use]
pub fn default_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Path of a sibling binary, checked to exist.
///
/// # Errors
/// [`LifecycleError::MissingBinary`].
pub fn binary(bin_dir: &Path, name: &'static str) -> Result<PathBuf, LifecycleError> {
    let path = bin_dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(LifecycleError::MissingBinary { name, path })
    }
}

/// A run in progress, owned by this process. Dropping it tears it down.
pub struct Run {
    config: TestbedConfig,
    state: RunState,
    segment: Option<Segment>,
    engine: Option<Child>,
    torn_down: bool,
}

/// What teardown did, for the user.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TeardownReport {
    /// One line per resource removed or process stopped.
    pub done: Vec<String>,
    /// Problems met (teardown goes on past them).
    pub problems: Vec<String>,
}

impl Run {
    /// Performs `start`: network, hugepages, segment, engine, in that order,
    /// each recorded before the next. `say` receives progress lines.
    ///
    /// # Errors
    /// The failed step; everything done before it has been undone.
    pub fn start(
        config: TestbedConfig,
        options: &StartOptions,
        say: &mut dyn FnMut(&str),
    ) -> Result<Self, LifecycleError> {
        let engine_bin = binary(&options.bin_dir, "engine")?;
        super::engines::require(&engine_bin, options.engine)?;
        binary(&options.bin_dir, "loadgen")?;
        check_previous_run(&config, options.clean_leftovers, say)?;

        let cores = config.cores();
        let state = RunState {
            testbed: config.name().to_owned(),
            phase: Phase::Starting,
            supervisor: ProcessId::current(),
            engine_kind: options.engine.as_str().to_owned(),
            engine: None,
            engine_core: cores.engine,
            loadgen_core: cores.loadgen,
            server: std::net::SocketAddrV4::new(config.server_addr(), config.port()),
            segment: None,
            hugepages: hugepages::HugepageGrant::default(),
            created_network: false,
            removed_server_address: None,
            pci_device: None,
            files: Vec::new(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        state.create()?;
        let mut run = Self {
            config,
            state,
            segment: None,
            engine: None,
            torn_down: false,
        };
        // From here on, an early return drops `run`, which tears down what
        // the state records.

        // Step 1: the network (left alone if the user brought it up).
        if !netview::is_up(&run.config) {
            say(&format!(
                "bringing up testbed network `{}`",
                run.config.name()
            ));
            run.state.created_network = true;
            run.state.save()?;
            net::up(&run.config).map_err(|e| LifecycleError::Network(e.to_string()))?;
        }
        if let Ok(status) = net::status(&run.config) {
            say(&format!(
                "impairment: {}",
                netview::describe_impairment(&status)
            ));
        }

        // Step 2: hugepages (for the segment, and DPDK's memory).
        let mount_point = state::testbed_dir(run.config.name()).join("hugepages");
        run.state.hugepages = hugepages::acquire(pages_needed(options.engine), &mount_point)?;
        run.state.save()?;

        // Step 3: the shared-memory segment.
        let mut create = CreateOptions::new(run.config.name());
        create.hugetlbfs_dir.clone_from(&run.state.hugepages.dir);
        let stale = stale_segment_paths(&create);
        for path in &stale {
            let _ = fs::remove_file(path);
        }
        let segment = Segment::create(&create)?;
        run.state.segment = Some(segment.path().to_owned());
        run.state.save()?;
        match segment.fallback_reason() {
            None => say(&format!(
                "stats segment {} on hugetlbfs",
                segment.path().display()
            )),
            Some(why) => say(&format!(
                "stats segment {} on /dev/shm, not hugepages: {why}",
                segment.path().display()
            )),
        }
        run.segment = Some(segment);

        // Step 4: the engine, in NS3, on its core.
        run.spawn_engine(&engine_bin, options)?;
        run.wait_engine_ready(options.ready_timeout)?;
        run.state.phase = Phase::Ready;
        run.state.save()?;
        say(&format!(
            "engine `{}` serving on {} (pid {}, core {})",
            run.state.engine_kind,
            run.state.server,
            run.state.engine.map_or(0, |p| p.pid),
            run.state.engine_core
        ));
        Ok(run)
    }

    fn spawn_engine(&mut self, bin: &Path, options: &StartOptions) -> Result<(), LifecycleError> {
        let bypass_config = match options.engine {
            EngineKind::Kernel => None,
            EngineKind::Dpdk | EngineKind::Fstack => Some(super::bypass::prepare(
                &self.config,
                &mut self.state,
                &options.pmd,
                &mut |l| eprintln!("supervisor: {l}"),
            )?),
        };
        let log_path = self.log_path("engine");
        let log = fs::File::create(&log_path).map_err(LifecycleError::io(format!(
            "creating {}",
            log_path.display()
        )))?;
        let log_err = log
            .try_clone()
            .map_err(LifecycleError::io("duplicating the engine log"))?;
        let segment = self.state.segment.clone().unwrap_or_default();
        let mut command = net::in_namespace(&self.config.server_ns(), bin);
        command
            .arg("--kind")
            .arg(options.engine.as_str())
            .arg("--listen")
            .arg(format!("0.0.0.0:{}", self.config.port()))
            .arg("--core")
            .arg(self.state.engine_core.to_string())
            .arg("--shm")
            .arg(&segment)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if options.busy_poll {
            command.arg("--busy-poll");
        }
        if let Some(ini) = &bypass_config {
            command.arg("--dpdk-config").arg(ini);
        }
        let child = command.spawn().map_err(|source| LifecycleError::Spawn {
            role: "engine",
            source,
        })?;
        self.state.engine = Some(ProcessId::of(child.id()).unwrap_or(ProcessId {
            pid: child.id(),
            start_time: 0,
        }));
        self.engine = Some(child);
        self.state.save()?;
        Ok(())
    }

    fn wait_engine_ready(&mut self, limit: Duration) -> Result<(), LifecycleError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(ending) = self.engine_ending()? {
                return Err(LifecycleError::DiedStarting {
                    role: "engine",
                    pid: self.state.engine.map_or(0, |p| p.pid),
                    ending,
                    log_tail: log_tail(&self.log_path("engine")),
                });
            }
            if let Some(segment) = &self.segment {
                let ready = segment.snapshot().slots.iter().any(|slot| {
                    slot.role == Role::Engine && slot.info.state == ProducerState::Running
                });
                if ready {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(LifecycleError::StartTimeout {
                    role: "engine",
                    pid: self.state.engine.map_or(0, |p| p.pid),
                    seconds: limit.as_secs(),
                    log_tail: log_tail(&self.log_path("engine")),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How the engine ended, if it has.
    ///
    /// # Errors
    /// When waiting on the child fails.
    pub fn engine_ending(&mut self) -> Result<Option<Ending>, LifecycleError> {
        match self.engine.as_mut() {
            None => Ok(None),
            Some(child) => Ok(child
                .try_wait()
                .map_err(LifecycleError::io("checking on the engine"))?
                .map(Ending::from_status)),
        }
    }

    /// The run's recorded state.
    #[must_use]
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// The testbed configuration.
    #[must_use]
    pub fn config(&self) -> &TestbedConfig {
        &self.config
    }

    fn log_path(&self, role: &str) -> PathBuf {
        state::testbed_dir(self.config.name()).join(format!("{role}.log"))
    }

    /// Stops the engine and removes everything the run created.
    pub fn stop(mut self) -> TeardownReport {
        self.teardown()
    }

    fn teardown(&mut self) -> TeardownReport {
        self.torn_down = true;
        self.state.phase = Phase::Stopping;
        let _ = self.state.save();
        let mut report = TeardownReport::default();
        if let Some(mut child) = self.engine.take() {
            match process::terminate(&mut child, Duration::from_secs(5)) {
                Ok(ending) => report
                    .done
                    .push(format!("engine (pid {}) stopped: {ending}", child.id())),
                Err(e) => report.problems.push(format!("stopping the engine: {e}")),
            }
            self.state.engine = None;
        }
        // Unmap before the file goes (and before its hugepages are released).
        self.segment = None;
        teardown_recorded(&self.config, &self.state, &mut report);
        report
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.torn_down {
            let report = self.teardown();
            for line in report.problems {
                eprintln!("supervisor: cleanup problem: {line}");
            }
        }
    }
}

/// Segment files a crashed run may have left under this name.
fn stale_segment_paths(create: &CreateOptions) -> Vec<PathBuf> {
    let file = format!("bypasslab-{}", create.name);
    let mut paths = vec![create.fallback_dir.join(&file)];
    if let Some(dir) = &create.hugetlbfs_dir {
        paths.push(dir.join(&file));
    }
    paths.into_iter().filter(|p| p.exists()).collect()
}

/// Refuses to start over a live run; over a dead one, cleans or refuses.
fn check_previous_run(
    config: &TestbedConfig,
    clean: bool,
    say: &mut dyn FnMut(&str),
) -> Result<(), LifecycleError> {
    let previous = match RunState::load(config.name()) {
        Ok(previous) => previous,
        Err(StateError::NotRunning { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if previous.supervisor.is_alive() {
        return Err(LifecycleError::AlreadyRunning {
            testbed: previous.testbed,
            pid: previous.supervisor.pid,
            engine: previous.engine_kind,
        });
    }
    if !clean {
        return Err(LifecycleError::Leftovers {
            testbed: previous.testbed.clone(),
            pid: previous.supervisor.pid,
            what: describe_leftovers(&previous),
        });
    }
    say(&format!(
        "cleaning leftovers of a crashed run (supervisor pid {})",
        previous.supervisor.pid
    ));
    let mut report = TeardownReport::default();
    teardown_recorded(config, &previous, &mut report);
    for line in &report.done {
        say(line);
    }
    Ok(())
}

/// A one-line list of what a dead run recorded.
#[must_use]
pub fn describe_leftovers(state: &RunState) -> String {
    let mut parts = Vec::new();
    if let Some(engine) = state.engine.filter(ProcessId::is_alive) {
        parts.push(format!("engine pid {} still running", engine.pid));
    }
    if let Some(seg) = state.segment.as_ref().filter(|p| p.exists()) {
        parts.push(format!("segment {}", seg.display()));
    }
    if state.created_network {
        parts.push("testbed network".to_owned());
    }
    if state.hugepages.added_pages > 0 || state.hugepages.mounted_at.is_some() {
        parts.push("hugepage reservation".to_owned());
    }
    if parts.is_empty() {
        parts.push("only the run state file".to_owned());
    }
    parts.join(", ")
}

/// Stops a recorded process; whether it was still running.
fn stopped(process: &ProcessId) -> bool {
    !matches!(
        process.stop(Duration::from_secs(5)),
        Ok(crate::host::process::Stopped::NotRunning)
    )
}

/// Removes everything `state` records, in reverse order of creation. Used
/// by a live run's teardown and for a crashed run's leftovers alike.
pub fn teardown_recorded(config: &TestbedConfig, state: &RunState, report: &mut TeardownReport) {
    // The load generator first (it was started last): stopping the engine
    // first would make it exit on its own, and its end go unreported.
    for loadgen in super::attach::recorded_loadgens(config.name()) {
        if stopped(&loadgen) {
            report
                .done
                .push(format!("load generator (pid {}) stopped", loadgen.pid));
        }
    }
    // Its record too, or the state directory outlives the run.
    let _ = fs::remove_file(state::testbed_dir(config.name()).join("loadgen.pid.json"));
    if let Some(engine) = state.engine {
        if stopped(&engine) {
            report
                .done
                .push(format!("engine (pid {}) stopped", engine.pid));
        }
    }
    super::bypass::teardown(config, state, report);
    if let Some(path) = &state.segment {
        match fs::remove_file(path) {
            Ok(()) => report
                .done
                .push(format!("removed segment {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report
                .problems
                .push(format!("removing segment {}: {e}", path.display())),
        }
    }
    for file in &state.files {
        let _ = fs::remove_file(file);
    }
    let problems = hugepages::release(&state.hugepages);
    if state.hugepages.added_pages > 0 || state.hugepages.mounted_at.is_some() {
        report.done.push("released hugepages".to_owned());
    }
    report.problems.extend(problems);
    if state.created_network {
        match net::down(config) {
            Ok(_) => report
                .done
                .push(format!("testbed network `{}` removed", config.name())),
            Err(e) => report.problems.push(format!("network down: {e}")),
        }
    }
    for role in ["engine", "loadgen", "supervisor"] {
        let _ = fs::remove_file(state::testbed_dir(config.name()).join(format!("{role}.log")));
    }
    state.remove();
    // The directory goes only when nothing else (network state) is in it.
    let _ = fs::remove_dir(state::testbed_dir(config.name()));
}

/// The last lines of a log file, for error messages.
#[must_use]
pub fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(15);
    if lines.is_empty() {
        format!("(nothing in {})", path.display())
    } else {
        lines[start..].join("\n")
    }
}
