//! One run of the experiment: the ordered side effects of `start`, each
//! recorded in the run state file *before* the next step, so teardown from
//! the file alone (by `stop`, a signal, a child's death, or after a crash
//! of an earlier supervisor) removes exactly what exists.

use std::fs;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use contract::argv::to_argv;
use contract::engine::EngineArgs;
use contract::{EngineKind, PciAddress, Pmd};
use shm_layout::{CreateOptions, ProducerState, Role, Segment};

use super::error::LifecycleError;
use super::rto::{self, TunedRoute};
use super::state::{Phase, RunState, StateError};
use super::teardown::{describe_leftovers, teardown_record, TeardownReport};
use super::{bypass, netview};
use crate::bins::{self, Binary};
use crate::config::{ServiceLimits, TestbedConfig};
use crate::host::process::{self, Ending, ProcessId};
use crate::host::wait::{self, Check, Waited};
use crate::host::{command, hugepages};
use crate::net;
use crate::placement::Node;
use crate::state::{StateDir, StateFile};
use crate::topology::NsRole;

/// How long `start` waits for the engine to serve, unless told otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

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
    pub pmd: Pmd,
    /// One minimum RTO for every stack of the run, ms (`None`: each
    /// stack's own).
    pub rto_min_ms: Option<u32>,
    /// The load generator's stack the run expects (a DPDK client's
    /// hugepages are reserved with the engine's).
    pub client: contract::ClientStack,
}

/// The PCI NIC a bypass engine serves on, if `--pmd pci:` names one: such
/// a run has no testbed network (its link is the NIC's cable, its load
/// generator at the other end), and its engine runs in the supervisor's own
/// namespace.
fn pci_nic(options: &StartOptions) -> Option<&PciAddress> {
    options.pmd.pci().filter(|_| options.engine.is_bypass())
}

/// What F-Stack printed of a `[freebsd.*]` setting it refused (its
/// `ff_freebsd_init` goes on without it: `kernel_sysctlbyname failed:
/// <name>=<value>, error:<errno>`).
fn refused_settings(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("kernel_sysctlbyname failed"))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// Hugepages a run needs: a few for the segment, more for each DPDK
/// process's memory (the engine's, a DPDK load generator's).
pub(super) fn pages_needed(engine: EngineKind, client: contract::ClientStack) -> u64 {
    let engine_pages = if engine.is_bypass() { 256 } else { 0 };
    let client_pages = if client.is_bypass() {
        super::client::CLIENT_PAGES
    } else {
        0
    };
    4 + engine_pages + client_pages
}

/// Where a run's pieces live on this host: what names its state (the state
/// directory, the segment, EAL's file prefix), where the engine runs, and
/// the interface a bypass engine takes over.
#[derive(Debug, Clone)]
pub struct Site {
    /// Names the run's state directory, segment and EAL file prefix.
    pub name: String,
    /// Where the engine runs, and its core.
    pub engine: Node,
    /// The interface a bypass engine owns.
    pub port: bypass::Port,
    /// Address and port the engine answers on.
    pub server: SocketAddrV4,
    /// The load generator's core (recorded for `attach`).
    pub loadgen_core: usize,
    /// How many connections the engine takes.
    pub limits: ServiceLimits,
}

impl Site {
    /// The single-host testbed: the engine in NS3 on its veth.
    #[must_use]
    pub fn of_testbed(config: &TestbedConfig) -> Self {
        Self {
            name: config.name().to_owned(),
            engine: config.node(NsRole::Server),
            port: bypass::Port::server_of(config),
            server: SocketAddrV4::new(config.server_addr(), config.port()),
            loadgen_core: config.cores().loadgen,
            limits: config.service_limits(),
        }
    }
}

/// A run in progress, owned by this process. Dropping it tears it down.
pub struct Run {
    /// The testbed whose network the run uses (`None`: a remote host's
    /// run, which has none).
    config: Option<TestbedConfig>,
    site: Site,
    state: RunState,
    segment: Option<Segment>,
    engine: Option<Child>,
    torn_down: bool,
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
        let mut site = Site::of_testbed(&config);
        if pci_nic(options).is_some() {
            // A PCI NIC is in none of the testbed's namespaces: the engine
            // runs in the supervisor's own, on its core.
            site.engine = Node::here(site.engine.core());
        }
        Self::start_at(Some(config), site, options, say)
    }

    /// Performs `start` at `site`, with `config`'s network when given (a
    /// remote host's run has none: its interface is the host's own).
    ///
    /// # Errors
    /// The failed step; everything done before it has been undone.
    pub fn start_at(
        config: Option<TestbedConfig>,
        site: Site,
        options: &StartOptions,
        say: &mut dyn FnMut(&str),
    ) -> Result<Self, LifecycleError> {
        let engine_bin = bins::path(&options.bin_dir, Binary::Engine)?;
        bins::require(&engine_bin, options.engine)?;
        if let Some(ms) = options.rto_min_ms {
            rto::check(ms)?;
        }
        bins::path(&options.bin_dir, Binary::Loadgen)?;
        super::memif::check_start(
            config.as_ref(),
            &options.pmd,
            options.engine,
            options.client,
        )?;
        check_previous_run(config.as_ref(), &site.name, options.clean_leftovers, say)?;
        let nic = pci_nic(options);
        if let Some(addr) = nic {
            super::pci::preflight(addr, &site.name).map_err(bypass::BypassError::from)?;
        }

        let state = RunState {
            testbed: site.name.clone(),
            phase: Phase::Starting,
            supervisor: ProcessId::current(),
            engine_kind: options.engine,
            engine: None,
            engine_core: site.engine.core().unwrap_or(0),
            loadgen_core: site.loadgen_core,
            server: site.server,
            segment: None,
            hugepages: hugepages::HugepageGrant::default(),
            created_network: false,
            removed_server_address: None,
            pci_device: None,
            port: Some(site.port.clone()),
            pmd: options.engine.is_bypass().then(|| options.pmd.clone()),
            engine_command: Vec::new(),
            rto_min_ms: options.rto_min_ms,
            tuned_routes: Vec::new(),
            files: Vec::new(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        state.create()?;
        let mut run = Self {
            config,
            site,
            state,
            segment: None,
            engine: None,
            torn_down: false,
        };
        // From here on, an early return drops `run`, which tears down what
        // the state records.

        // Step 1: the network (left alone if the user brought it up).
        if let Some(addr) = nic {
            say(&format!(
                "the engine serves on PCI NIC {addr}: no testbed network (NS1-NS3, impairment); the load generator runs at the NIC's other end, against {}",
                run.state.server
            ));
        } else if let Some(config) = &run.config {
            if !netview::is_up(config) {
                say(&format!("bringing up testbed network `{}`", config.name()));
                run.state.created_network = true;
                run.state.save()?;
                net::up(config)?;
            }
            if let Ok(status) = net::status(config) {
                say(&format!(
                    "impairment: {}",
                    netview::describe_impairment(&status)
                ));
            }
        }

        // Step 1b: an equal minimum RTO on the kernel's routes of both ends
        // (a bypass engine's address goes with NS3's route in step 4).
        match (options.rto_min_ms, nic) {
            (Some(ms), None) => run.tune_routes(ms, say)?,
            (Some(_), Some(_)) => {
                say("minimum RTO: the kernel routes are the peer's, set rto_min there")
            }
            (None, _) => {}
        }

        // Step 2: hugepages (for the segment, and DPDK's memory) and their
        // hugetlbfs mount; a PCI NIC's run reserves as the original setup.
        let pages = match nic {
            None => pages_needed(options.engine, options.client),
            Some(_) => {
                let count = hugepages::case2_pages(
                    run.config.as_ref().and_then(TestbedConfig::dpdk_hugepages),
                    pages_needed(options.engine, options.client),
                    hugepages::pool().map_or(0, |p| p.available()),
                    hugepages::meminfo("MemAvailable"),
                );
                say(&format!("step hugepages: {}", count.why));
                count.pages
            }
        };
        let mount_point = run.state_dir().file(StateFile::Hugepages);
        run.state.hugepages = hugepages::acquire(pages, &mount_point)?;
        run.state.save()?;
        if let (Some(_), Some(dir)) = (nic, &run.state.hugepages.mounted_at) {
            say(&format!("step hugetlbfs mount: {}", dir.display()));
        }

        // Step 3: the shared-memory segment.
        let mut create = CreateOptions::new(&run.site.name);
        create.hugetlbfs_dir.clone_from(&run.state.hugepages.dir);
        for path in stale_segment_paths(&create) {
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

        // Step 4: the engine, in its node (NS3), on its core.
        run.spawn_engine(&engine_bin, options)?;
        run.wait_engine_ready(options.ready_timeout)?;
        if options.engine == EngineKind::Fstack {
            let log =
                fs::read_to_string(run.state_dir().file(StateFile::EngineLog)).unwrap_or_default();
            let lines = refused_settings(&log);
            if !lines.is_empty() {
                return Err(LifecycleError::SettingsRefused { lines });
            }
        }
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

    /// Sets `rto_min` on NS1's and NS3's routes to the testbed subnet, each
    /// recorded before it is changed.
    fn tune_routes(&mut self, ms: u32, say: &mut dyn FnMut(&str)) -> Result<(), LifecycleError> {
        let Some(cfg) = self.config.clone() else {
            return Err(rto::RtoError::NoTestbedRoutes(ms).into());
        };
        let cfg = &cfg;
        let routes = [
            TunedRoute {
                ns: cfg.client_ns(),
                iface: cfg.client_iface(),
                src: cfg.client_addr(),
            },
            TunedRoute {
                ns: cfg.server_ns(),
                iface: cfg.server_iface(),
                src: cfg.server_addr(),
            },
        ];
        for route in routes {
            self.state.tuned_routes.push(route.clone());
            self.state.save()?;
            rto::tune(cfg, &route, ms)?;
        }
        say(&format!(
            "minimum RTO {ms} ms for every stack (Linux: the routes in NS1 and NS3; F-Stack: rexmit_min; smoltcp: the sockets' minimum)"
        ));
        Ok(())
    }

    fn state_dir(&self) -> StateDir {
        StateDir::of(&self.site.name)
    }

    /// The engine's arguments for this run.
    fn engine_args(&self, options: &StartOptions, dpdk_config: Option<PathBuf>) -> EngineArgs {
        let defaults = EngineArgs::default();
        EngineArgs {
            kind: options.engine,
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], self.site.server.port())),
            core: Some(self.state.engine_core),
            busy_poll: options.busy_poll,
            shm: self.state.segment.clone(),
            dpdk_config: dpdk_config.unwrap_or(defaults.dpdk_config.clone()),
            rto_min_ms: rto::engine_flag(options.engine, options.rto_min_ms),
            max_connections: self.site.limits.max_connections,
            listen_backlog: self.site.limits.listen_backlog,
            ..defaults
        }
    }

    fn spawn_engine(&mut self, bin: &Path, options: &StartOptions) -> Result<(), LifecycleError> {
        let dpdk_config = if options.engine.is_bypass() {
            Some(bypass::prepare(
                &self.site.port,
                &mut self.state,
                &options.pmd,
                &mut |l| eprintln!("supervisor: {l}"),
            )?)
        } else {
            None
        };
        let log_path = self.state_dir().file(StateFile::EngineLog);
        let (log, log_err) = command::log_streams(&log_path).map_err(LifecycleError::io(
            format!("creating {}", log_path.display()),
        ))?;
        let argv = to_argv(&self.engine_args(options, dpdk_config))?;
        let mut command = self.site.engine.command(bin);
        command
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        self.state.engine_command = command::words(&command);
        let child = command.spawn().map_err(|source| LifecycleError::Spawn {
            role: "engine",
            source,
        })?;
        self.state.engine = Some(ProcessId::of_child(&child));
        self.engine = Some(child);
        self.state.save()?;
        Ok(())
    }

    fn wait_engine_ready(&mut self, limit: Duration) -> Result<(), LifecycleError> {
        let pid = self.state.engine.map_or(0, |p| p.pid);
        let waited = wait::until(limit, Duration::from_millis(20), || {
            match self.engine_ending() {
                Ok(Some(ending)) => return Check::Failed(Ok(ending)),
                Ok(None) => {}
                Err(e) => return Check::Failed(Err(e)),
            }
            let serving = self.segment.as_ref().is_some_and(|segment| {
                segment.snapshot().slots.iter().any(|slot| {
                    slot.role == Role::Engine && slot.info.state == ProducerState::Running
                })
            });
            if serving {
                Check::Ready(())
            } else {
                Check::Pending
            }
        });
        let log_tail = || log_tail(&self.state_dir().file(StateFile::EngineLog));
        match waited {
            Ok(()) => Ok(()),
            Err(Waited::Failed(Ok(ending))) => Err(LifecycleError::DiedStarting {
                role: "engine",
                pid,
                ending,
                log_tail: log_tail(),
            }),
            Err(Waited::Failed(Err(e))) => Err(e),
            Err(Waited::TimedOut) => Err(LifecycleError::StartTimeout {
                role: "engine",
                pid,
                seconds: limit.as_secs(),
                log_tail: log_tail(),
            }),
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

    /// The testbed configuration (`None` for a remote host's run).
    #[must_use]
    pub fn config(&self) -> Option<&TestbedConfig> {
        self.config.as_ref()
    }

    /// The run's segment (until teardown).
    #[must_use]
    pub fn segment(&self) -> Option<&Segment> {
        self.segment.as_ref()
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
        teardown_record(self.config.as_ref(), &self.state, &mut report);
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

/// Refuses to start over a live run of `name`; over a dead one, cleans or
/// refuses.
fn check_previous_run(
    config: Option<&TestbedConfig>,
    name: &str,
    clean: bool,
    say: &mut dyn FnMut(&str),
) -> Result<(), LifecycleError> {
    let previous = match RunState::load(name) {
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
    teardown_record(config, &previous, &mut report);
    for line in &report.done {
        say(line);
    }
    Ok(())
}

/// The last lines of a log file, for error messages.
#[must_use]
pub fn log_tail(path: &Path) -> String {
    tail_of(&fs::read_to_string(path).unwrap_or_default(), path)
}

/// The last lines of `text`, the log at `path`, for error messages.
#[must_use]
pub fn tail_of(text: &str, path: &Path) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(15);
    if lines.is_empty() {
        format!("(nothing in {})", path.display())
    } else {
        lines[start..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f_stacks_refused_settings_are_found_in_its_log() {
        let log = "EAL: Detected CPU lcores: 2\n\
                   kernel_sysctlbyname failed: net.inet.tcp.rexmit_slop=0, error:22\n\
                   f-stack-0: Ethernet address: 02:00:00:00:00:03\n";
        assert_eq!(
            refused_settings(log),
            ["kernel_sysctlbyname failed: net.inet.tcp.rexmit_slop=0, error:22"]
        );
        assert!(refused_settings("EAL: ok\n").is_empty());
    }
}
