//! What every integration suite of the supervisor shares: one [`Testbed`]
//! guard (a uniquely named testbed whose `Drop` stops any run and removes
//! the network, even when the test fails), the [`guest::Guest`] guard (an
//! emulated machine, see `docs/GUEST.md`), bounded runs of the supervisor
//! binary, the root gate, the lock for tests that read host-global state,
//! and the check that nothing a run created remains.
//!
//! Every wait here is bounded; every name is unique to the test process
//! and the call; nothing relies on `--test-threads=1`.
#![allow(dead_code)]

pub mod guest;
pub mod host;
pub mod long_run;
pub mod two_hosts;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use contract::{EngineKind, KindList};
use serde_json::Value;
use testbed::config::TestbedConfig;
use testbed::state::{StateDir, StateFile};

#[allow(unused_imports)]
pub use host::{alive, kill, require_root, snapshot, HostLock, HostSnapshot};

/// The supervisor binary under test.
pub const SUPERVISOR: &str = env!("CARGO_BIN_EXE_supervisor");

/// How long a quick supervisor command (net, stats, stop, doctor) may take.
pub const QUICK: Duration = Duration::from_secs(60);

/// The directory holding the engine and loadgen binaries beside the
/// supervisor.
pub fn bin_dir() -> PathBuf {
    let dir = Path::new(SUPERVISOR).parent().unwrap().to_path_buf();
    for name in ["engine", "loadgen"] {
        assert!(
            dir.join(name).is_file(),
            "{name} binary missing beside the supervisor in {}: run the suite with `cargo test --workspace`",
            dir.display()
        );
    }
    dir
}

/// Engine kinds every suite runs against: those this engine binary can
/// serve (`engine --list-kinds`), so a bypass engine joins the suites as
/// soon as it is built; a skipped one is said on stderr.
pub fn engines() -> Vec<EngineKind> {
    let listing = run_bounded(
        Command::new(bin_dir().join("engine")).arg("--list-kinds"),
        QUICK,
    );
    let kinds: KindList = serde_json::from_str(&listing.stdout).expect("--list-kinds prints JSON");
    let mut engines = Vec::new();
    for kind in &kinds.kinds {
        if kind.available {
            engines.push(kind.kind);
        } else {
            eprintln!(
                "skipped {}: {}",
                kind.kind,
                kind.reason.as_deref().unwrap_or("")
            );
        }
    }
    assert!(engines.contains(&EngineKind::Kernel) && engines.contains(&EngineKind::Dpdk));
    engines
}

/// A process's output, with its exit code and both streams as text.
#[derive(Debug)]
pub struct Ran {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

impl Ran {
    /// The JSON document on stdout.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Whether it exited with 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `command` to completion with both streams piped, bounded by
/// `limit` (killed and failed after that).
pub fn run_bounded(command: &mut Command, limit: Duration) -> Ran {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
    finish(child, limit)
}

/// `supervisor <args>`, bounded by [`QUICK`].
pub fn supervisor(args: &[&str]) -> Ran {
    run_bounded(Command::new(SUPERVISOR).args(args), QUICK)
}

/// A child whose pipes are read from the start, so a chatty child never
/// blocks on a full pipe however long the test waits for it.
pub struct Watched {
    /// The child.
    pub child: Child,
    stdout: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::mpsc::Receiver<String>,
}

fn drain(pipe: Option<Box<dyn std::io::Read + Send>>) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        let _ = tx.send(s);
    });
    rx
}

impl Watched {
    /// Starts draining `child`'s piped streams.
    pub fn new(mut child: Child) -> Self {
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for it at most `limit` (killing it and failing after that)
    /// and collects its output; a pipe an orphaned grandchild still holds
    /// is given up after a bound.
    pub fn wait(mut self, limit: Duration) -> Ran {
        let status = wait_exit(&mut self.child, limit);
        let collect = |rx: &std::sync::mpsc::Receiver<String>| {
            rx.recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| "<stream held open by another process>".into())
        };
        Ran {
            code: status.code(),
            stdout: collect(&self.stdout),
            stderr: collect(&self.stderr),
        }
    }
}

/// Waits for `child` at most `limit` (killing it and failing after that)
/// and collects its output, its pipes read while it runs.
pub fn finish(child: Child, limit: Duration) -> Ran {
    Watched::new(child).wait(limit)
}

/// Waits for `child` at most `limit`; kills it and fails after that.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pid from a JSON number.
pub fn pid(v: &Value) -> u32 {
    u32::try_from(v.as_u64().expect("pid is a number")).unwrap()
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A testbed name unique to this process and call: `tag` (two letters) +
/// pid + a counter, at most 10 characters.
pub fn unique_name(tag: &str) -> String {
    assert!(tag.len() == 2, "tags are two letters");
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 100;
    format!("{tag}{}{n:02}", std::process::id() % 100_000)
}

/// A uniquely named testbed; dropping it stops any run and removes the
/// network, even when the test fails. It holds the host lock shared, so a
/// test that measures the host's hugepage pool can take it exclusively.
pub struct Testbed {
    /// Its name.
    pub name: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its configuration, parsed.
    pub cfg: TestbedConfig,
    _host: HostLock,
}

impl Testbed {
    /// A testbed named `tag` + pid + counter; `body` is the TOML after
    /// `[testbed] name`.
    pub fn new(tag: &str, body: &str) -> Self {
        Self::with_lock(tag, body, HostLock::shared())
    }

    /// As [`Testbed::new`], holding `lock` (e.g. exclusive) for its life.
    pub fn with_lock(tag: &str, body: &str, lock: HostLock) -> Self {
        let name = unique_name(tag);
        let config = std::env::temp_dir().join(format!("bypasslab-{name}.toml"));
        std::fs::write(&config, format!("[testbed]\nname = \"{name}\"\n{body}\n")).unwrap();
        let cfg = TestbedConfig::load(Some(&config)).expect("test config is valid");
        let testbed = Self {
            name,
            config,
            cfg,
            _host: lock,
        };
        // A leftover of an earlier aborted run of this test must not interfere.
        testbed.cleanup();
        testbed
    }

    /// With the impairment the experiment uses (emulator, 100 µs, 1 %).
    pub fn impaired(tag: &str) -> Self {
        Self::new(tag, "[impairment]\ndelay_us = 100\nloss_percent = 1.0")
    }

    /// A plain bridge: the quickest network to build.
    pub fn plain(tag: &str) -> Self {
        Self::new(tag, "[impairment]\nbackend = \"none\"")
    }

    /// `supervisor <args> --config <file>`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(SUPERVISOR);
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null());
        command
    }

    /// Runs `supervisor <args>` to completion, bounded by `limit`.
    pub fn run(&self, args: &[&str], limit: Duration) -> Ran {
        let ran = run_bounded(&mut self.command(args), limit);
        eprintln!(
            "$ supervisor {} -> {:?}\n{}",
            args.join(" "),
            ran.code,
            ran.stderr
        );
        ran
    }

    /// `supervisor net <action> --config <file> [more]`, bounded.
    pub fn net(&self, action: &str, more: &[&str]) -> Ran {
        let mut args = vec!["net", action];
        args.extend_from_slice(more);
        run_bounded(&mut self.command(&args), QUICK)
    }

    /// `net up --json`, asserting success.
    pub fn up(&self) -> Value {
        let out = self.net("up", &["--json"]);
        assert!(out.success(), "net up failed: {}", out.stderr);
        out.json()
    }

    /// `net status --json`.
    pub fn status(&self) -> Value {
        let out = self.net("status", &["--json"]);
        assert!(out.success(), "{}", out.stderr);
        out.json()
    }

    /// `start --engine <engine> --detach` with the binaries beside the
    /// supervisor; asserts it succeeded and returns the run state.
    pub fn start_detached(&self, engine: EngineKind) -> Value {
        let bins = bin_dir();
        let bins = bins.to_str().expect("binary directory is UTF-8");
        let started = self.run(
            &[
                "start",
                "--engine",
                engine.as_str(),
                "--detach",
                "--bin-dir",
                bins,
            ],
            Duration::from_secs(120),
        );
        assert_eq!(started.code, Some(0), "start --detach: {}", started.stderr);
        self.run_state().expect("run state recorded")
    }

    /// Starts `supervisor <args>` with both streams piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn state_dir(&self) -> StateDir {
        StateDir::of(&self.name)
    }

    fn read(&self, file: StateFile) -> Option<Value> {
        testbed::state::read_json(&self.state_dir().file(file))
            .ok()
            .flatten()
    }

    /// The run state (`run.json`), if recorded.
    pub fn run_state(&self) -> Option<Value> {
        self.read(StateFile::Run)
    }

    /// The network state (`net.json`), if recorded.
    pub fn net_state(&self) -> Option<Value> {
        self.read(StateFile::Net)
    }

    /// The pid of the running load generator, once it runs.
    pub fn loadgen_pid(&self) -> Option<u32> {
        self.read(StateFile::LoadgenPid).map(|v| pid(&v["pid"]))
    }

    /// The emulator's pid, if `net up` started one.
    pub fn emulator_pid(&self) -> Option<u32> {
        self.net_state()
            .filter(|s| s["emulator"].is_object())
            .map(|s| pid(&s["emulator"]["pid"]))
    }

    /// Waits (bounded) until `probe` on the testbed gives a value; panics
    /// with `what` if `child` exits first or the time runs out. The
    /// child's stderr is drained while it runs, so it cannot block on it.
    pub fn wait_for<T>(
        &self,
        child: &mut Child,
        what: &str,
        limit: Duration,
        mut probe: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = probe(self) {
                return value;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let (tx, rx) = std::sync::mpsc::channel();
                let pipe = child.stderr.take();
                std::thread::spawn(move || {
                    let mut text = String::new();
                    if let Some(mut p) = pipe {
                        let _ = std::io::Read::read_to_string(&mut p, &mut text);
                    }
                    let _ = tx.send(text);
                });
                let stderr = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
                panic!("supervisor exited ({status}) before {what}; its stderr:\n{stderr}");
            }
            assert!(Instant::now() < deadline, "no {what} within {limit:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for phase `ready` and returns the run state.
    pub fn wait_ready(&self, child: &mut Child) -> Value {
        self.wait_for(child, "ready run", Duration::from_secs(60), |t| {
            t.run_state().filter(|s| s["phase"] == "ready")
        })
    }

    /// Waits until the load generator runs and has exchanged some messages.
    pub fn wait_loadgen(&self, child: &mut Child) -> u32 {
        let pid = self.wait_for(child, "load generator", Duration::from_secs(90), |t| {
            t.loadgen_pid()
        });
        std::thread::sleep(Duration::from_millis(500));
        pid
    }

    /// `stats --json` once the load generator's slot is in the segment
    /// (a DPDK client claims it once EAL and its port are up), bounded.
    pub fn wait_client_slot(&self, child: &mut Child) -> Value {
        self.wait_for(child, "the client's slot", Duration::from_secs(60), |t| {
            let stats = run_bounded(&mut t.command(&["stats", "--json"]), QUICK);
            serde_json::from_str::<Value>(&stats.stdout)
                .ok()
                .filter(|d| !d["client"].is_null())
        })
    }

    /// `stop` and `net down`, bounded, output ignored.
    pub fn cleanup(&self) {
        for args in [&["stop"][..], &["net", "down"][..]] {
            let mut command = self.command(args);
            let _ = run_bounded(&mut command, QUICK);
        }
    }

    /// Asserts that nothing the run created remains: namespaces, links,
    /// qdiscs, nft tables, mounts, run state, segment and hugepage files,
    /// DPDK's runtime directory, and processes (the `pids` given, and any
    /// process whose command line names this testbed).
    pub fn assert_nothing_left(&self, pids: &[u32]) {
        host::assert_nothing_left(&self.name, pids);
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.cleanup();
        let _ = std::fs::remove_file(&self.config);
    }
}
