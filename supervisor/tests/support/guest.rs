//! Test support: an emulated Debian guest (`scripts/guest`) that runs one
//! bash script with this host's root filesystem read-only under it, so the
//! binaries under test run inside it at the paths they have here.
//!
//! A [`Guest`] owns a host network namespace of its own that holds the
//! NICs' taps (QEMU creates them there; with two NICs they join a bridge),
//! an exchange folder shared read-write with the guest, and the QEMU
//! process. Dropping it kills QEMU by pid, deletes the namespace by name
//! (taking the taps and the bridge with it) and removes the folder, also
//! when the test failed (after printing the guest's logs).
//!
//! Guests take turns within a test binary: two emulated machines on two
//! host cores would only make each other's timeouts fire.
//!
//! Commands are bounded by the support tree's [`super::run_bounded`]; the
//! gate says "skipped" without root through [`super::require_root`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use testbed::host::command;

/// The script that prepares and boots guests.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/guest");
/// The host end of the guest network (the tap, or the bridge with two NICs).
pub const HOST_ADDR: &str = "10.250.0.1";
/// Prefix length of the guest network.
pub const PREFIX: u8 = 24;

/// The guest's address on NIC `i` (eth`i`).
pub fn guest_addr(i: usize) -> String {
    format!("10.250.0.{}", 2 + i)
}

/// The MAC of NIC `i`, fixed: the namespace is the test's own.
pub fn guest_mac(i: usize) -> String {
    format!("52:54:00:b1:00:{i:02x}")
}

/// The binary `name` of this workspace's build (beside the supervisor,
/// visible in the guest at the same path).
pub fn workspace_bin(name: &str) -> PathBuf {
    super::bin_dir().join(name)
}

/// Why a guest could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("{step}: {source}")]
    Io {
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{step} failed ({status}): {stderr}")]
    Failed {
        step: String,
        status: String,
        stderr: String,
    },
    #[error("{what}: not after {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("the guest ended before {what}")]
    Ended { what: String },
}

fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> GuestError {
    let step = step.into();
    move |source| GuestError::Io { step, source }
}

/// Whether this machine can run guests at all. It cannot without root
/// (taps, namespaces, 9p as root), /dev/net/tun, or on another
/// architecture; under CI (`CI=true`) each of these fails the test
/// instead, so a CI machine that lost the ability is noticed.
pub fn can_run_or_skip(test: &str) -> bool {
    if !super::require_root(test) {
        return false;
    }
    let why = if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        Some("guests are x86_64 Linux only")
    } else if !Path::new("/dev/net/tun").exists() {
        Some("no /dev/net/tun for the guest's NICs")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: cannot run a guest under CI: {why}")
        }
        Some(why) => {
            println!("{test}: skipped: {why}");
            eprintln!("{test}: skipped: {why}");
            false
        }
    }
}

/// Runs `scripts/guest prepare` once per test binary (downloads on a fresh
/// machine, a no-op with a complete cache), `--igb-uio` when asked.
pub fn prepare(igb_uio: bool) -> Result<(), GuestError> {
    static PLAIN: OnceLock<Result<(), String>> = OnceLock::new();
    static IGB: OnceLock<Result<(), String>> = OnceLock::new();
    let cell = if igb_uio { &IGB } else { &PLAIN };
    cell.get_or_init(|| {
        let mut c = Command::new(SCRIPT);
        c.arg("prepare");
        if igb_uio {
            c.arg("--igb-uio");
        }
        let t0 = Instant::now();
        let out = super::run_bounded(&mut c, Duration::from_secs(900));
        eprintln!(
            "guest: prepare{} took {:.1} s",
            if igb_uio { " --igb-uio" } else { "" },
            t0.elapsed().as_secs_f64()
        );
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/guest prepare failed ({:?}): {}",
                out.code, out.stderr
            ))
        }
    })
    .clone()
    .map_err(|stderr| GuestError::Failed {
        step: "prepare the guest cache".into(),
        status: "see message".into(),
        stderr,
    })
}

/// The machine QEMU emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// i440FX, no IOMMU: uio_pci_generic, igb_uio.
    Pc,
    /// q35 with an emulated Intel IOMMU in front of the NICs: vfio-pci.
    Q35Iommu,
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct GuestBuilder {
    test: String,
    nics: usize,
    /// NICs the guest's runner leaves without an address.
    unaddressed: Vec<usize>,
    machine: Machine,
    memory_mb: u32,
    cpus: u32,
    hugepages: u32,
    timeout: Duration,
    env: Vec<(String, String)>,
    files: Vec<(String, String)>,
}

/// The result of a guest's script.
#[derive(Debug, Clone)]
pub struct GuestOutput {
    /// The script's exit code (124: the guest ran out of time, 125: it
    /// reported none).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The guest's serial console (kernel messages, the runner's steps).
    pub console: String,
    /// scripts/guest's own stderr.
    pub host_log: String,
    /// From start to power-off.
    pub elapsed: Duration,
}

impl GuestOutput {
    /// Panics with everything the guest said unless its script exited 0.
    pub fn assert_success(&self) {
        assert_eq!(
            self.code,
            0,
            "guest script failed with {}\n--- stdout\n{}\n--- stderr\n{}\n--- console (tail)\n{}\n--- scripts/guest\n{}",
            self.code,
            self.stdout,
            self.stderr,
            tail(&self.console, 40),
            self.host_log
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

static NEXT: AtomicU32 = AtomicU32::new(0);
static TURN: Mutex<()> = Mutex::new(());

impl GuestBuilder {
    /// A guest for `test`: no NIC, machine `pc`, 1 GiB, 2 CPUs, 240 s.
    pub fn new(test: &str) -> Self {
        Self {
            test: test.to_string(),
            nics: 0,
            unaddressed: Vec::new(),
            machine: Machine::Pc,
            memory_mb: 1024,
            cpus: 2,
            hugepages: 0,
            timeout: Duration::from_secs(240),
            env: Vec::new(),
            files: Vec::new(),
        }
    }

    /// `n` (1 or 2) virtio-net NICs in the host namespace.
    pub fn nics(mut self, n: usize) -> Self {
        assert!((1..=2).contains(&n), "a guest has 1 or 2 NICs");
        self.nics = n;
        self
    }

    /// Leave the guest's NIC `i` (eth`i`) without an address: a test
    /// binds it to DPDK.
    pub fn unaddressed(mut self, i: usize) -> Self {
        self.unaddressed.push(i);
        self
    }

    pub fn machine(mut self, m: Machine) -> Self {
        self.machine = m;
        self
    }

    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    pub fn hugepages(mut self, n: u32) -> Self {
        self.hugepages = n;
        self
    }

    /// The whole guest's time limit (boot to power-off).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// An environment variable for the guest's script.
    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.to_string(), v.into()));
        self
    }

    /// A file placed in the exchange folder before boot.
    pub fn file(mut self, name: &str, contents: impl Into<String>) -> Self {
        self.files.push((name.to_string(), contents.into()));
        self
    }

    /// Boots the guest with `script` (bash) and returns while it runs.
    pub fn start(self, script: &str) -> Result<Guest, GuestError> {
        prepare(false)?;
        let turn = take_turn(Duration::from_secs(1200))?;
        static SWEPT: OnceLock<()> = OnceLock::new();
        SWEPT.get_or_init(sweep_leftovers);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // gst<pid>x<n>: at most 13 characters, so <name>t0 and <name>br
        // fit an interface name's 15.
        let name = format!("gst{}x{}", std::process::id() % 10_000_000, n % 100);
        let exchange = std::env::temp_dir().join(format!("bypasslab-{name}"));
        let mut guest = Guest {
            name: name.clone(),
            test: self.test.clone(),
            netns: None,
            exchange: exchange.clone(),
            child: None,
            qemu_pid: None,
            started: Instant::now(),
            timeout: self.timeout,
            _turn: turn,
        };
        // From here on, Drop removes whatever exists.
        if exchange.exists() {
            std::fs::remove_dir_all(&exchange).map_err(io("clear a stale exchange folder"))?;
        }
        std::fs::create_dir_all(&exchange).map_err(io("create the exchange folder"))?;
        for (f, text) in &self.files {
            std::fs::write(exchange.join(f), text).map_err(io(format!("write {f}")))?;
        }
        std::fs::write(exchange.join("test.sh"), script).map_err(io("write the script"))?;

        let mut c = Command::new(SCRIPT);
        c.arg("run")
            .arg("--exchange")
            .arg(&exchange)
            .arg("--script")
            .arg(exchange.join("test.sh"))
            .args([
                "--machine",
                match self.machine {
                    Machine::Pc => "pc",
                    Machine::Q35Iommu => "q35-iommu",
                },
            ])
            .args(["--memory", &self.memory_mb.to_string()])
            .args(["--cpus", &self.cpus.to_string()])
            .args(["--hugepages", &self.hugepages.to_string()])
            .args(["--timeout", &self.timeout.as_secs().to_string()]);
        if self.nics > 0 {
            guest.netns = Some(name.clone());
            host(["netns", "add", &name])?;
            host(["-n", &name, "link", "set", "lo", "up"])?;
            let host_side = if self.nics == 2 {
                let br = format!("{name}br");
                host(["-n", &name, "link", "add", &br, "type", "bridge"])?;
                host([
                    "-n",
                    &name,
                    "addr",
                    "add",
                    &format!("{HOST_ADDR}/{PREFIX}"),
                    "dev",
                    &br,
                ])?;
                host(["-n", &name, "link", "set", &br, "up"])?;
                format!("bridge={br}")
            } else {
                format!("addr={HOST_ADDR}/{PREFIX}")
            };
            c.args(["--netns", &name]);
            for i in 0..self.nics {
                let mut spec = format!("{name}t{i},{host_side},mac={}", guest_mac(i));
                if !self.unaddressed.contains(&i) {
                    spec.push_str(&format!(",guest={}/{PREFIX}", guest_addr(i)));
                }
                c.args(["--nic", &spec]);
            }
        }
        for (k, v) in &self.env {
            c.args(["--env", &format!("{k}={v}")]);
        }
        let log =
            std::fs::File::create(exchange.join("host.log")).map_err(io("create the host log"))?;
        let log2 = log.try_clone().map_err(io("create the host log"))?;
        c.stdin(Stdio::null()).stdout(log).stderr(log2);
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls prctl(2), which is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                // If the test process dies without running Drop (SIGKILL,
                // abort), scripts/guest gets SIGTERM and kills QEMU. The
                // signal follows the spawning thread: start guests on the
                // test's own thread.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        guest.started = Instant::now();
        guest.child = Some(c.spawn().map_err(io("start scripts/guest run"))?);
        // QEMU's pid, for Drop, once the script has written it (bounded).
        let deadline = Instant::now() + Duration::from_secs(30);
        while guest.qemu_pid.is_none() {
            guest.qemu_pid = std::fs::read_to_string(exchange.join("qemu.pid"))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if guest.qemu_pid.is_some() {
                break;
            }
            if guest.exited() {
                return Err(GuestError::Ended {
                    what: "QEMU started".into(),
                });
            }
            if Instant::now() > deadline {
                return Err(GuestError::Timeout {
                    what: "QEMU's pid file".into(),
                    secs: 30,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(guest)
    }

    /// Boots, runs `script`, waits for power-off; the guest (its exchange
    /// folder still there to read) and what it printed.
    pub fn run(self, script: &str) -> Result<(Guest, GuestOutput), GuestError> {
        let mut g = self.start(script)?;
        let out = g.finish()?;
        Ok((g, out))
    }
}

/// The pid a guest name `gst<pid>x<n>` was made by.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("gst")?;
    let (pid, n) = rest.split_once('x')?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Removes the namespaces and exchange folders of guests whose test
/// process was killed before its Drop could run (scripts/guest killed the
/// QEMU, but nothing else remains to remove these). Only names this
/// fixture makes, and only when their process is gone.
fn sweep_leftovers() {
    let gone = |name: &str| {
        owner_pid(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    let listed = command::run(&mut command::cmd("ip", ["netns", "list"]), "");
    for ns in listed
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        if gone(ns) {
            eprintln!("guest: removing namespace {ns} left by a killed test");
            let _ = host(["netns", "del", ns]);
        }
    }
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let file = entry.file_name();
        let Some(name) = file.to_str().and_then(|f| f.strip_prefix("bypasslab-")) else {
            continue;
        };
        if gone(name) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn take_turn(limit: Duration) -> Result<MutexGuard<'static, ()>, GuestError> {
    let deadline = Instant::now() + limit;
    loop {
        match TURN.try_lock() {
            Ok(g) => return Ok(g),
            // A test that panicked while holding it left nothing behind
            // (its Guest's Drop ran): the turn is free.
            Err(std::sync::TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(GuestError::Timeout {
                    what: "another guest of this test binary to finish".into(),
                    secs: limit.as_secs(),
                })
            }
        }
    }
}

/// `ip <args>` on the host, bounded; never panics (Drop uses it).
fn host<const N: usize>(args: [&str; N]) -> Result<(), GuestError> {
    command::run(&mut command::cmd("ip", args), "")
        .map(|_| ())
        .map_err(|e| GuestError::Failed {
            step: format!("ip {}", args.join(" ")),
            status: "see message".into(),
            stderr: e.to_string(),
        })
}

/// A running (or finished) guest; see the module documentation.
pub struct Guest {
    pub name: String,
    test: String,
    netns: Option<String>,
    exchange: PathBuf,
    child: Option<Child>,
    qemu_pid: Option<i32>,
    started: Instant,
    timeout: Duration,
    _turn: MutexGuard<'static, ()>,
}

impl Guest {
    /// The exchange folder (the same path inside the guest).
    pub fn exchange(&self) -> &Path {
        &self.exchange
    }

    /// The host namespace holding the taps.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(c) => c.try_wait().ok().flatten().is_some(),
        }
    }

    /// Waits (bounded) until the guest's script creates `name` in the
    /// exchange folder; returns its contents.
    pub fn wait_for_file(&mut self, name: &str, limit: Duration) -> Result<String, GuestError> {
        let path = self.exchange.join(name);
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return Ok(text);
            }
            if self.exited() {
                return Err(GuestError::Ended {
                    what: format!("it wrote {name}"),
                });
            }
            if Instant::now() > deadline {
                return Err(GuestError::Timeout {
                    what: format!("{name} from the guest"),
                    secs: limit.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes `name` into the exchange folder (atomically: the guest never
    /// sees half a file).
    pub fn write_file(&self, name: &str, text: &str) -> Result<(), GuestError> {
        let tmp = self.exchange.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).map_err(io(format!("write {name}")))?;
        std::fs::rename(&tmp, self.exchange.join(name)).map_err(io(format!("write {name}")))
    }

    /// Reads `name` from the exchange folder.
    pub fn read_file(&self, name: &str) -> Result<String, GuestError> {
        std::fs::read_to_string(self.exchange.join(name)).map_err(io(format!("read {name}")))
    }

    /// A command for the host namespace holding the taps.
    pub fn host_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.netns.as_deref().unwrap_or("")])
            .arg(program);
        c
    }

    /// Waits (bounded by the guest's timeout, plus a margin for
    /// scripts/guest's own cleanup) for power-off and collects the output.
    pub fn finish(&mut self) -> Result<GuestOutput, GuestError> {
        let limit = self.timeout + Duration::from_secs(30);
        let deadline = self.started + limit;
        let code = loop {
            let status = self
                .child
                .as_mut()
                .map(Child::try_wait)
                .transpose()
                .map_err(io("wait for scripts/guest run"))?
                .flatten();
            if let Some(s) = status {
                break s.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                return Err(GuestError::Timeout {
                    what: "the guest to power off".into(),
                    secs: limit.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        self.child = None;
        let read = |f: &str| std::fs::read_to_string(self.exchange.join(f)).unwrap_or_default();
        Ok(GuestOutput {
            code,
            stdout: read("stdout"),
            stderr: read("stderr"),
            console: read("console.log"),
            host_log: read("host.log"),
            elapsed: self.started.elapsed(),
        })
    }

    /// Kills QEMU, verified by its command line naming our exchange folder
    /// (a recycled pid is left alone), and waits (bounded) until it is gone.
    fn kill_qemu(&self) {
        let Some(pid) = self.qemu_pid else { return };
        let ours = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let needle = self.exchange.to_string_lossy();
            String::from_utf8_lossy(&c).contains(needle.as_ref())
        });
        if !ours {
            return;
        }
        let p = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let read = |f: &str| std::fs::read_to_string(self.exchange.join(f)).unwrap_or_default();
            eprintln!(
                "--- guest {} of {}: console (tail)\n{}\n--- stdout\n{}\n--- stderr\n{}\n--- scripts/guest\n{}",
                self.name,
                self.test,
                tail(&read("console.log"), 40),
                tail(&read("stdout"), 40),
                tail(&read("stderr"), 40),
                read("host.log")
            );
        }
        // QEMU first: scripts/guest would kill it on its way out, but not
        // after a SIGKILL of its own.
        self.kill_qemu();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(ns) = &self.netns {
            // Deleting the namespace deletes the taps and the bridge in it.
            if let Err(e) = host(["netns", "del", ns]) {
                eprintln!("guest cleanup: {e}");
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.exchange) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("guest cleanup: remove {}: {e}", self.exchange.display());
            }
        }
    }
}
