//! The testbed network: three namespaces, two veth pairs, a bridge in NS2
//! and the impairment, built by [`up`], removed by [`down`], shown by
//! [`status`].
//!
//! ```text
//!  NS1                NS2                                   NS3
//!  <n>-c ──── <n>-c-br ─┐
//!                       <n>-br (bridge)
//!  plain / netem:       └─ <n>-s-br ───────────────────── <n>-s
//!  emulator:            └─ <n>-e-br ── <n>-e ⇄ [emulator] ⇄ <n>-s-br ── <n>-s
//! ```
//!
//! Every object `up` creates is recorded in `/run/bypasslab/<n>/net.json`
//! before it is created, so `down` after a crash at any step removes exactly
//! what exists. Objects `up` finds but did not record are never touched.

pub mod probe;
pub mod state;

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Impairment, TestbedConfig};
use crate::host::command::{self, CommandError};
use crate::host::process::{ProcessId, StopError, Stopped};
use crate::impairment::emulator::{DirStats, EmulatorStats};
use crate::impairment::{self, Backend, ChooseError};
use state::{LinkRecord, NetState, ProcessRecord, QdiscRecord};

/// Parent of every testbed's state directory.
pub const STATE_ROOT: &str = "/run/bypasslab";
/// Environment variable naming the supervisor binary to start the emulator
/// with, for callers that are not the supervisor binary (tests).
pub const SUPERVISOR_EXE_ENV: &str = "BYPASSLAB_SUPERVISOR";

/// A failed step of `net up`, `down` or `status`.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Namespaces need CAP_SYS_ADMIN.
    #[error("the testbed network needs root (it creates network namespaces); run as root")]
    NotRoot,
    /// Something with a testbed name exists but is not in the state file.
    #[error("{kind} {name} exists but was not created by testbed {testbed}; remove it yourself ({remove}) or choose another [testbed] name")]
    NotOurs {
        kind: &'static str,
        name: String,
        testbed: String,
        remove: String,
    },
    /// An iproute2 / tc / ethtool step failed.
    #[error("{step}: {source}")]
    Step {
        step: String,
        #[source]
        source: CommandError,
    },
    /// No usable impairment backend.
    #[error(transparent)]
    Backend(#[from] ChooseError),
    /// The state file could not be read or written.
    #[error("state file {path}: {source}; if it is corrupt, remove the testbed's namespaces with `ip netns del` and delete the file")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The emulator did not come up.
    #[error("start link emulator in {ns}: {detail}; its log is {log}")]
    StartEmulator {
        ns: String,
        detail: String,
        log: PathBuf,
    },
    /// The emulator would not stop.
    #[error("stop the link emulator: {0}")]
    StopEmulator(#[source] StopError),
}

/// Holds the testbed's lock file: concurrent `up`/`down` of one testbed
/// take turns instead of interleaving their steps.
fn lock(cfg: &TestbedConfig) -> Result<nix::fcntl::Flock<File>, NetError> {
    let dir = cfg.state_dir();
    let path = dir.join("lock");
    let err = |source| NetError::State {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| err(std::io::Error::from(e)))
}

/// A [`Command`] that runs `program` inside network namespace `ns`
/// (`ip netns exec`, which execs: the spawned pid is the program's own).
pub fn in_namespace(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn ns_exists(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
}

/// Links of a namespace, by name, from `ip -j link show`.
#[derive(Debug, Clone, Default)]
struct LinkInfo {
    up: bool,
    mtu: u32,
    master: Option<String>,
}

fn links_in(ns: &str) -> Vec<(String, LinkInfo)> {
    if !ns_exists(ns) {
        return Vec::new();
    }
    let mut c = command::cmd("ip", ["-n", ns, "-j", "link", "show"]);
    let Ok(out) = command::run(&mut c, "") else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(&out)
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|l| {
            let name = l.get("ifname")?.as_str()?.to_string();
            let up = l
                .get("flags")
                .and_then(|f| f.as_array())
                .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("UP")));
            let mtu = l
                .get("mtu")
                .and_then(serde_json::Value::as_u64)
                .and_then(|m| u32::try_from(m).ok())
                .unwrap_or(0);
            let master = l.get("master").and_then(|m| m.as_str()).map(String::from);
            Some((name, LinkInfo { up, mtu, master }))
        })
        .collect()
}

fn link_info(ns: &str, name: &str) -> Option<LinkInfo> {
    links_in(ns)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, i)| i)
}

/// The ordered side effects of `up`, with the state saved after each record.
struct Builder<'a> {
    cfg: &'a TestbedConfig,
    st: NetState,
    path: PathBuf,
}

impl Builder<'_> {
    fn save(&self) -> Result<(), NetError> {
        self.st.save(&self.path).map_err(|source| NetError::State {
            path: self.path.clone(),
            source,
        })
    }

    fn run(&self, step: impl Into<String>, mut c: Command, hint: &str) -> Result<String, NetError> {
        command::run(&mut c, hint).map_err(|source| NetError::Step {
            step: step.into(),
            source,
        })
    }

    fn not_ours_link(&self, ns: &str, name: &str) -> NetError {
        NetError::NotOurs {
            kind: "interface",
            name: format!("{name} (in namespace {ns})"),
            testbed: self.cfg.name().to_string(),
            remove: format!("ip -n {ns} link del {name}"),
        }
    }

    /// Creates namespace `ns` unless this testbed already owns it.
    fn namespace(&mut self, ns: &str) -> Result<(), NetError> {
        if ns_exists(ns) {
            if self.st.owns_namespace(ns) {
                return Ok(());
            }
            return Err(NetError::NotOurs {
                kind: "network namespace",
                name: ns.to_string(),
                testbed: self.cfg.name().to_string(),
                remove: format!("ip netns del {ns}"),
            });
        }
        if !self.st.owns_namespace(ns) {
            self.st.namespaces.push(ns.to_string());
            self.save()?;
        }
        self.run(
            format!("create network namespace {ns}"),
            command::cmd("ip", ["netns", "add", ns]),
            "check that /run/netns is writable and that namespaces are enabled (supervisor doctor)",
        )?;
        Ok(())
    }

    /// Brings up loopback and turns IPv6 off, so no router solicitation or
    /// DAD frame disturbs the counts.
    fn namespace_basics(&self, ns: &str) -> Result<(), NetError> {
        self.run(
            format!("bring up loopback in {ns}"),
            command::cmd("ip", ["-n", ns, "link", "set", "lo", "up"]),
            "",
        )?;
        if Path::new("/proc/sys/net/ipv6").exists() {
            let mut c = in_namespace(ns, "sysctl");
            c.args([
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
            self.run(format!("disable IPv6 in {ns}"), c, "")?;
        }
        Ok(())
    }

    fn record_link(&mut self, ns: &str, name: &str) -> Result<(), NetError> {
        if !self.st.owns_link(ns, name) {
            self.st.links.push(LinkRecord {
                ns: ns.to_string(),
                name: name.to_string(),
            });
            self.save()?;
        }
        Ok(())
    }

    fn bridge(&mut self) -> Result<(), NetError> {
        let ns = self.cfg.bridge_ns();
        let br = self.cfg.bridge_iface();
        if link_info(&ns, &br).is_some() {
            return if self.st.owns_link(&ns, &br) {
                Ok(())
            } else {
                Err(self.not_ours_link(&ns, &br))
            };
        }
        self.record_link(&ns, &br)?;
        self.run(
            format!("create bridge {br} in {ns}"),
            command::cmd(
                "ip",
                [
                    "-n",
                    &ns,
                    "link",
                    "add",
                    &br,
                    "type",
                    "bridge",
                    "stp_state",
                    "0",
                ],
            ),
            "check that the kernel has bridge support (supervisor doctor)",
        )?;
        Ok(())
    }

    /// Creates veth `a` in `ns_a` with peer `b` in `ns_b`.
    fn veth(&mut self, ns_a: &str, a: &str, ns_b: &str, b: &str) -> Result<(), NetError> {
        let have_a = link_info(ns_a, a).is_some();
        let have_b = link_info(ns_b, b).is_some();
        for (ns, name, have) in [(ns_a, a, have_a), (ns_b, b, have_b)] {
            if have && !self.st.owns_link(ns, name) {
                return Err(self.not_ours_link(ns, name));
            }
        }
        if have_a && have_b {
            return Ok(());
        }
        // Half a pair cannot be completed: remove the remaining half.
        for (ns, name, have) in [(ns_a, a, have_a), (ns_b, b, have_b)] {
            if have {
                self.run(
                    format!("remove half veth pair {name} in {ns}"),
                    command::cmd("ip", ["-n", ns, "link", "del", name]),
                    "",
                )?;
            }
        }
        self.record_link(ns_a, a)?;
        self.record_link(ns_b, b)?;
        let mtu = self.cfg.mtu().to_string();
        let mut args = vec![
            "-n", ns_a, "link", "add", a, "mtu", &mtu, "type", "veth", "peer", "name", b, "mtu",
            &mtu,
        ];
        if ns_a != ns_b {
            args.extend(["netns", ns_b]);
        }
        self.run(
            format!("create veth pair {a} ({ns_a}) - {b} ({ns_b})"),
            command::cmd("ip", args),
            "check that the kernel has veth support (supervisor doctor)",
        )?;
        Ok(())
    }

    /// Removes a recorded link if it exists (a backend switch).
    fn remove_link(&mut self, ns: &str, name: &str) -> Result<(), NetError> {
        if self.st.owns_link(ns, name) && link_info(ns, name).is_some() {
            self.run(
                format!("remove {name} in {ns}"),
                command::cmd("ip", ["-n", ns, "link", "del", name]),
                "",
            )?;
        }
        Ok(())
    }

    /// MTU, offloads off, up; `master` sets or clears the bridge.
    fn configure(&self, ns: &str, dev: &str, master: Option<Option<&str>>) -> Result<(), NetError> {
        let mtu = self.cfg.mtu().to_string();
        self.run(
            format!("set MTU of {dev} in {ns}"),
            command::cmd("ip", ["-n", ns, "link", "set", dev, "mtu", &mtu]),
            "",
        )?;
        // Checksums and segmentation left to "hardware" would reach a
        // userspace stack or the emulator as incomplete frames.
        let mut c = in_namespace(ns, "ethtool");
        c.args([
            "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
        ]);
        self.run(
            format!("turn off offloads on {dev} in {ns}"),
            c,
            "check that ethtool is installed (scripts/setup)",
        )?;
        match master {
            Some(Some(br)) => {
                self.run(
                    format!("attach {dev} to bridge {br} in {ns}"),
                    command::cmd("ip", ["-n", ns, "link", "set", dev, "master", br]),
                    "",
                )?;
            }
            Some(None) if link_info(ns, dev).is_some_and(|l| l.master.is_some()) => {
                self.run(
                    format!("detach {dev} from the bridge in {ns}"),
                    command::cmd("ip", ["-n", ns, "link", "set", dev, "nomaster"]),
                    "",
                )?;
            }
            Some(None) | None => {}
        }
        self.run(
            format!("bring up {dev} in {ns}"),
            command::cmd("ip", ["-n", ns, "link", "set", dev, "up"]),
            "",
        )?;
        Ok(())
    }

    fn address(&self, ns: &str, dev: &str, addr: std::net::Ipv4Addr) -> Result<(), NetError> {
        let a = format!("{addr}/{}", self.cfg.prefix_len());
        self.run(
            format!("assign {a} to {dev} in {ns}"),
            command::cmd("ip", ["-n", ns, "addr", "replace", &a, "dev", dev]),
            "",
        )?;
        Ok(())
    }

    /// Removes every recorded netem qdisc not in `keep`.
    fn clear_qdiscs(&mut self, keep: &[String]) -> Result<(), NetError> {
        let mut kept = Vec::new();
        for q in std::mem::take(&mut self.st.qdiscs) {
            if keep.contains(&q.dev) {
                kept.push(q);
                continue;
            }
            if link_info(&q.ns, &q.dev).is_some() {
                // The qdisc may already be gone; its absence is the goal.
                let mut c =
                    command::cmd("tc", ["-n", &q.ns, "qdisc", "del", "dev", &q.dev, "root"]);
                let _ = command::run(&mut c, "");
            }
        }
        self.st.qdiscs = kept;
        self.save()
    }

    fn netem(&mut self, devs: &[String]) -> Result<(), NetError> {
        let ns = self.cfg.bridge_ns();
        for dev in devs {
            if !self.st.qdiscs.iter().any(|q| &q.dev == dev) {
                self.st.qdiscs.push(QdiscRecord {
                    ns: ns.clone(),
                    dev: dev.clone(),
                    kind: "netem".into(),
                });
                self.save()?;
            }
            self.run(
                format!("install netem on {dev} in {ns}"),
                impairment::netem_command(&ns, dev, self.cfg.impairment()),
                "set impairment.backend = \"emulator\" if this kernel lacks netem",
            )?;
        }
        Ok(())
    }

    fn stop_emulator(&mut self) -> Result<(), NetError> {
        if let Some(p) = self.st.emulator.clone() {
            p.process
                .stop(Duration::from_secs(2))
                .map_err(NetError::StopEmulator)?;
            self.st.emulator = None;
            self.save()?;
        }
        Ok(())
    }

    fn emulator_args(&self) -> Vec<String> {
        let c = self.cfg;
        let i: &Impairment = c.impairment();
        let stats = emulator_stats_file(c);
        vec![
            "emulator".into(),
            "--a".into(),
            c.emulator_iface(),
            "--b".into(),
            c.server_peer_iface(),
            "--delay-us".into(),
            i.delay_us.to_string(),
            "--jitter-us".into(),
            i.jitter_us.to_string(),
            "--loss-percent".into(),
            i.loss_percent.to_string(),
            "--direction".into(),
            i.direction.as_str().into(),
            "--core".into(),
            c.cores().emulator.to_string(),
            "--mode".into(),
            i.emulator_mode.as_str().into(),
            "--mtu".into(),
            c.mtu().to_string(),
            "--seed".into(),
            i.seed.to_string(),
            "--stats-file".into(),
            stats.display().to_string(),
        ]
    }

    fn start_emulator(&mut self) -> Result<(), NetError> {
        let args = self.emulator_args();
        if let Some(p) = &self.st.emulator {
            if p.args == args && p.process.is_alive() {
                return Ok(());
            }
            self.stop_emulator()?;
        }
        let ns = self.cfg.bridge_ns();
        let dir = self.cfg.state_dir();
        let log = dir.join("emulator.log");
        let stats = emulator_stats_file(self.cfg);
        let fail = |detail: String| NetError::StartEmulator {
            ns: ns.clone(),
            detail,
            log: log.clone(),
        };
        let _ = std::fs::remove_file(&stats);
        let exe = match std::env::var_os(SUPERVISOR_EXE_ENV) {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe().map_err(|e| fail(format!("locate own binary: {e}")))?,
        };
        let logf = File::create(&log).map_err(|e| fail(format!("create log: {e}")))?;
        let logf2 = logf
            .try_clone()
            .map_err(|e| fail(format!("create log: {e}")))?;
        let mut c = in_namespace(&ns, &exe);
        c.args(&args)
            .stdin(Stdio::null())
            .stdout(logf)
            .stderr(logf2);
        // Its own process group: a Ctrl-C aimed at `net up` must not stop it.
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let mut child = c
            .spawn()
            .map_err(|e| fail(format!("spawn {}: {e}", exe.display())))?;
        let process = ProcessId::of_child(&child);
        let pid = process.pid;
        self.st.emulator = Some(ProcessRecord {
            process,
            args,
            stats_file: stats.clone(),
        });
        self.save()?;
        // Ready when it has published its first counters (rings bound).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(s) = EmulatorStats::read(&stats) {
                if s.pid == pid {
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                self.st.emulator = None;
                self.save()?;
                return Err(fail(format!("exited with {status}: {}", tail.trim())));
            }
            if Instant::now() > deadline {
                return Err(fail("not ready after 5 s".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Where the emulator publishes its counters.
pub fn emulator_stats_file(cfg: &TestbedConfig) -> PathBuf {
    cfg.state_dir().join("emulator-stats.json")
}

/// Builds (or completes) the testbed. Idempotent: a second call with the
/// same config changes nothing; with a changed impairment it re-applies it.
pub fn up(cfg: &TestbedConfig) -> Result<NetStatus, NetError> {
    if !is_root() {
        return Err(NetError::NotRoot);
    }
    let _lock = lock(cfg)?;
    let path = state::state_file(&cfg.state_dir());
    let st = NetState::load(&path)
        .map_err(|source| NetError::State {
            path: path.clone(),
            source,
        })?
        .unwrap_or_default();
    // Decide the backend before the first side effect.
    let choice = impairment::choose(cfg.impairment())?;
    let mut b = Builder { cfg, st, path };
    b.st.testbed = cfg.name().to_string();

    let (ns1, ns2, ns3) = (cfg.client_ns(), cfg.bridge_ns(), cfg.server_ns());
    let br = cfg.bridge_iface();
    let (c, cbr) = (cfg.client_iface(), cfg.client_peer_iface());
    let (s, sbr) = (cfg.server_iface(), cfg.server_peer_iface());
    let (e, ebr) = (cfg.emulator_iface(), cfg.emulator_peer_iface());
    let emulated = choice.backend == Backend::Emulator;

    // 1. Namespaces, loopback up, IPv6 off.
    for ns in [&ns1, &ns2, &ns3] {
        b.namespace(ns)?;
    }
    for ns in [&ns1, &ns2, &ns3] {
        b.namespace_basics(ns)?;
    }
    // 2. A backend switch away from the emulator stops it first.
    if !emulated {
        b.stop_emulator()?;
    }
    // 3. The bridge and the veth pairs.
    b.bridge()?;
    b.veth(&ns1, &c, &ns2, &cbr)?;
    b.veth(&ns3, &s, &ns2, &sbr)?;
    if emulated {
        b.veth(&ns2, &e, &ns2, &ebr)?;
    } else {
        b.remove_link(&ns2, &e)?;
    }
    // 4. Wiring: every veth end without offloads, the NS2 ends on the
    //    bridge, except NS3's when the emulator sits between them.
    b.configure(&ns2, &br, None)?;
    b.configure(&ns1, &c, None)?;
    b.configure(&ns3, &s, None)?;
    b.configure(&ns2, &cbr, Some(Some(&br)))?;
    if emulated {
        b.configure(&ns2, &sbr, Some(None))?;
        b.configure(&ns2, &ebr, Some(Some(&br)))?;
        b.configure(&ns2, &e, None)?;
    } else {
        b.configure(&ns2, &sbr, Some(Some(&br)))?;
    }
    // 5. Addresses.
    b.address(&ns1, &c, cfg.client_addr())?;
    b.address(&ns3, &s, cfg.server_addr())?;
    // 6. Impairment.
    let dir = cfg.impairment().direction;
    let mut netem_devs = Vec::new();
    if choice.backend == Backend::Netem {
        if dir.impairs_from_ns3() {
            netem_devs.push(cbr.clone());
        }
        if dir.impairs_to_ns3() {
            netem_devs.push(sbr.clone());
        }
    }
    b.clear_qdiscs(&netem_devs)?;
    b.netem(&netem_devs)?;
    if emulated {
        b.start_emulator()?;
    }
    b.st.backend = Some(choice.backend.as_str().into());
    b.st.backend_reason = Some(choice.reason);
    b.save()?;
    status(cfg)
}

/// What `down` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownReport {
    pub testbed: String,
    /// Objects removed, e.g. `namespace bl-ns1`, `process 4242 (emulator)`.
    pub removed: Vec<String>,
    /// Recorded objects that were already gone.
    pub already_absent: Vec<String>,
    /// Whether a state file existed at all.
    pub had_state: bool,
}

/// Removes everything `up` recorded and nothing else.
pub fn down(cfg: &TestbedConfig) -> Result<DownReport, NetError> {
    if !is_root() {
        return Err(NetError::NotRoot);
    }
    let dir = cfg.state_dir();
    let path = state::state_file(&dir);
    if !path.exists() {
        // Nothing recorded; at most a lock file from an `up` that failed
        // before its first step.
        let _ = std::fs::remove_file(dir.join("lock"));
        let _ = std::fs::remove_dir(&dir);
        return Ok(DownReport {
            testbed: cfg.name().to_string(),
            ..DownReport::default()
        });
    }
    let lock = lock(cfg)?;
    let mut report = DownReport {
        testbed: cfg.name().to_string(),
        ..DownReport::default()
    };
    let Some(st) = NetState::load(&path).map_err(|source| NetError::State {
        path: path.clone(),
        source,
    })?
    else {
        // Another `down` finished while we waited for the lock.
        return Ok(report);
    };
    report.had_state = true;
    let step = |step: String, mut c: Command| {
        command::run(&mut c, "").map_err(|source| NetError::Step { step, source })
    };

    // 1. The emulator, verified by pid and start time.
    if let Some(p) = &st.emulator {
        let pid = p.process.pid;
        match p.process.stop(Duration::from_secs(2)) {
            Ok(Stopped::NotRunning) => report
                .already_absent
                .push(format!("process {pid} (emulator)")),
            Ok(_) => report.removed.push(format!("process {pid} (emulator)")),
            Err(e) => return Err(NetError::StopEmulator(e)),
        }
    }
    // 2. Links, newest first: deleting them explicitly is synchronous,
    //    unlike the teardown of a deleted namespace.
    for l in st.links.iter().rev() {
        if st.owns_namespace(&l.ns) && link_info(&l.ns, &l.name).is_some() {
            step(
                format!("remove {} in {}", l.name, l.ns),
                command::cmd("ip", ["-n", &l.ns, "link", "del", &l.name]),
            )?;
            report.removed.push(format!("link {} ({})", l.name, l.ns));
        }
    }
    // 3. Namespaces (with their qdiscs and anything left inside).
    for ns in st.namespaces.iter().rev() {
        if ns_exists(ns) {
            step(
                format!("remove network namespace {ns}"),
                command::cmd("ip", ["netns", "del", ns]),
            )?;
            report.removed.push(format!("namespace {ns}"));
        } else {
            report.already_absent.push(format!("namespace {ns}"));
        }
    }
    // 4. The state directory: only the files this module writes.
    for f in [
        path.clone(),
        path.with_extension("json.tmp"),
        emulator_stats_file(cfg),
        emulator_stats_file(cfg).with_extension("json.tmp"),
        dir.join("emulator.log"),
        dir.join("lock"),
    ] {
        let _ = std::fs::remove_file(f);
    }
    drop(lock);
    // Other components may keep files here; remove the directory only empty.
    let _ = std::fs::remove_dir(&dir);
    Ok(report)
}

/// One namespace of the testbed.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceStatus {
    pub role: &'static str,
    pub name: String,
    pub exists: bool,
    /// Recorded as created by this testbed.
    pub ours: bool,
}

/// One link of the testbed.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    pub ns: String,
    pub name: String,
    pub exists: bool,
    pub up: bool,
    pub mtu: u32,
    pub master: Option<String>,
}

/// Loss observed in the impaired direction(s).
#[derive(Debug, Clone, Serialize)]
pub struct ObservedLoss {
    /// Where the counts come from.
    pub source: String,
    pub frames_seen: u64,
    pub frames_dropped: u64,
    /// `frames_dropped / frames_seen` in percent; None before any frame.
    pub loss_percent: Option<f64>,
}

/// The emulator process.
#[derive(Debug, Clone, Serialize)]
pub struct EmulatorStatus {
    pub pid: u32,
    pub running: bool,
    pub stats: Option<EmulatorStats>,
}

/// The impairment in force.
#[derive(Debug, Clone, Serialize)]
pub struct ImpairmentStatus {
    /// netem, emulator or none; None while the testbed is not up.
    pub backend: Option<String>,
    pub reason: Option<String>,
    pub configured: Impairment,
    pub emulator: Option<EmulatorStatus>,
    pub observed: Option<ObservedLoss>,
}

/// What exists of the testbed.
#[derive(Debug, Clone, Serialize)]
pub struct NetStatus {
    pub testbed: String,
    pub state_file: PathBuf,
    /// Every namespace and link exists (and the emulator runs if in force).
    pub up: bool,
    pub namespaces: Vec<NamespaceStatus>,
    pub links: Vec<LinkStatus>,
    pub client_addr: std::net::Ipv4Addr,
    pub server_addr: std::net::Ipv4Addr,
    pub prefix_len: u8,
    pub mtu: u32,
    pub impairment: ImpairmentStatus,
}

fn add(a: &DirStats, sum: &mut (u64, u64)) {
    sum.0 += a.frames_in;
    sum.1 += a.dropped;
}

/// Shows what exists, the impairment in force and the observed loss.
pub fn status(cfg: &TestbedConfig) -> Result<NetStatus, NetError> {
    let path = state::state_file(&cfg.state_dir());
    let st = NetState::load(&path).map_err(|source| NetError::State {
        path: path.clone(),
        source,
    })?;
    let st = st.unwrap_or_default();
    let namespaces: Vec<NamespaceStatus> = [
        ("client (NS1)", cfg.client_ns()),
        ("bridge (NS2)", cfg.bridge_ns()),
        ("server (NS3)", cfg.server_ns()),
    ]
    .into_iter()
    .map(|(role, name)| NamespaceStatus {
        role,
        exists: ns_exists(&name),
        ours: st.owns_namespace(&name),
        name,
    })
    .collect();
    let backend = st.backend.clone();
    let emulated = backend.as_deref() == Some("emulator");
    let mut expected = vec![
        (cfg.client_ns(), cfg.client_iface()),
        (cfg.bridge_ns(), cfg.client_peer_iface()),
        (cfg.bridge_ns(), cfg.bridge_iface()),
        (cfg.bridge_ns(), cfg.server_peer_iface()),
        (cfg.server_ns(), cfg.server_iface()),
    ];
    if emulated {
        expected.push((cfg.bridge_ns(), cfg.emulator_peer_iface()));
        expected.push((cfg.bridge_ns(), cfg.emulator_iface()));
    }
    let links: Vec<LinkStatus> = expected
        .into_iter()
        .map(|(ns, name)| {
            let info = link_info(&ns, &name);
            LinkStatus {
                exists: info.is_some(),
                up: info.as_ref().is_some_and(|i| i.up),
                mtu: info.as_ref().map_or(0, |i| i.mtu),
                master: info.and_then(|i| i.master),
                ns,
                name,
            }
        })
        .collect();
    let emulator = st.emulator.as_ref().map(|p| EmulatorStatus {
        pid: p.process.pid,
        running: p.process.is_alive(),
        stats: EmulatorStats::read(&p.stats_file).ok(),
    });
    let dir = cfg.impairment().direction;
    let observed = match backend.as_deref() {
        Some("emulator") => emulator.as_ref().and_then(|e| e.stats.as_ref()).map(|s| {
            let mut sum = (0, 0);
            if dir.impairs_to_ns3() {
                add(&s.to_ns3, &mut sum);
            }
            if dir.impairs_from_ns3() {
                add(&s.from_ns3, &mut sum);
            }
            observed(format!("emulator counters ({dir})"), sum)
        }),
        Some("netem") => {
            let mut sum = (0, 0);
            for q in &st.qdiscs {
                if let Some((sent, dropped)) = impairment::qdisc_counters(&q.ns, &q.dev) {
                    sum.0 += sent + dropped;
                    sum.1 += dropped;
                }
            }
            Some(observed(format!("tc -s netem counters ({dir})"), sum))
        }
        _ => None,
    };
    let up = namespaces.iter().all(|n| n.exists && n.ours)
        && links.iter().all(|l| l.exists && l.up)
        && (!emulated || emulator.as_ref().is_some_and(|e| e.running));
    Ok(NetStatus {
        testbed: cfg.name().to_string(),
        state_file: path,
        up,
        namespaces,
        links,
        client_addr: cfg.client_addr(),
        server_addr: cfg.server_addr(),
        prefix_len: cfg.prefix_len(),
        mtu: cfg.mtu(),
        impairment: ImpairmentStatus {
            backend,
            reason: st.backend_reason.clone(),
            configured: cfg.impairment().clone(),
            emulator,
            observed,
        },
    })
}

#[allow(clippy::cast_precision_loss)]
fn observed(source: String, (seen, dropped): (u64, u64)) -> ObservedLoss {
    ObservedLoss {
        source,
        frames_seen: seen,
        frames_dropped: dropped,
        loss_percent: (seen > 0).then(|| dropped as f64 * 100.0 / seen as f64),
    }
}

impl std::fmt::Display for NetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "testbed {}: {}",
            self.testbed,
            if self.up { "up" } else { "not (fully) up" }
        )?;
        for n in &self.namespaces {
            let what = match (n.exists, n.ours) {
                (true, true) => "exists",
                (true, false) => "exists, NOT created by this testbed",
                (false, _) => "absent",
            };
            writeln!(f, "  namespace {:<14} {:<12} {what}", n.name, n.role)?;
        }
        for l in &self.links {
            if l.exists {
                writeln!(
                    f,
                    "  link {:<14} in {:<12} {} mtu {}{}",
                    l.name,
                    l.ns,
                    if l.up { "up" } else { "down" },
                    l.mtu,
                    l.master
                        .as_deref()
                        .map(|m| format!(" master {m}"))
                        .unwrap_or_default()
                )?;
            } else {
                writeln!(f, "  link {:<14} in {:<12} absent", l.name, l.ns)?;
            }
        }
        writeln!(
            f,
            "  addresses client {}/{} server {}/{}",
            self.client_addr, self.prefix_len, self.server_addr, self.prefix_len
        )?;
        let i = &self.impairment;
        let c = &i.configured;
        writeln!(
            f,
            "  impairment backend {} ({}), configured delay {} us jitter {} us loss {} % direction {}",
            i.backend.as_deref().unwrap_or("none in force"),
            i.reason.as_deref().unwrap_or("testbed not up"),
            c.delay_us,
            c.jitter_us,
            c.loss_percent,
            c.direction
        )?;
        if let Some(e) = &i.emulator {
            writeln!(
                f,
                "  emulator pid {} {} mode {}",
                e.pid,
                if e.running { "running" } else { "NOT running" },
                c.emulator_mode.as_str()
            )?;
        }
        if let Some(o) = &i.observed {
            match o.loss_percent {
                Some(p) => writeln!(
                    f,
                    "  observed loss {p:.3} % ({} of {} frames, {})",
                    o.frames_dropped, o.frames_seen, o.source
                )?,
                None => writeln!(f, "  observed loss: no frames yet ({})", o.source)?,
            }
        }
        Ok(())
    }
}
