//! Helpers of the fault and bad-input suites: a uniquely named testbed whose
//! `Drop` stops any run and removes the network, bounded waits, and a check
//! that nothing a run created remains anywhere on the host.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The supervisor binary under test.
pub const SUPERVISOR: &str = env!("CARGO_BIN_EXE_supervisor");

/// Engine kinds every fault test runs against: those this engine binary
/// can serve with (`engine --list-kinds`), so a bypass engine joins the
/// suites as soon as it is built; a skipped one is said on stderr.
pub fn engines() -> Vec<&'static str> {
    let engine = bin_dir().join("engine");
    let listing = Command::new(&engine)
        .arg("--list-kinds")
        .output()
        .expect("engine --list-kinds");
    let doc: Value = serde_json::from_slice(&listing.stdout).expect("--list-kinds prints JSON");
    let mut engines = Vec::new();
    for kind in doc["kinds"].as_array().expect("kinds") {
        let name = match kind["kind"].as_str() {
            Some("kernel") => "kernel",
            Some("dpdk") => "dpdk",
            Some("fstack") => "fstack",
            other => panic!("unknown engine kind {other:?}"),
        };
        if kind["available"] == true {
            engines.push(name);
        } else {
            eprintln!("skipped {name}: {}", kind["reason"]);
        }
    }
    assert!(engines.contains(&"kernel") && engines.contains(&"dpdk"));
    engines
}

/// Whether the tests can build namespaces; they skip (with a message) if not.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("{test}: skipped, needs root");
    false
}

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

/// A process's output, with its exit code and both streams as text.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from_output(out: &Output) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The JSON document on stdout.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// A uniquely named testbed; dropping it stops any run and removes the
/// network, even when the test fails.
pub struct Testbed {
    pub name: String,
    pub config: PathBuf,
}

impl Testbed {
    /// `tag` (2 letters) + pid; `body` is the TOML after `[testbed] name`.
    pub fn new(tag: &str, body: &str) -> Self {
        let name = format!("{tag}{}", std::process::id() % 100_000);
        assert!(name.len() <= 10);
        let config = std::env::temp_dir().join(format!("bypasslab-{name}.toml"));
        std::fs::write(&config, format!("[testbed]\nname = \"{name}\"\n{body}\n")).unwrap();
        let testbed = Self { name, config };
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
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let ran = finish(child, limit);
        eprintln!(
            "$ supervisor {} -> {:?}\n{}",
            args.join(" "),
            ran.code,
            ran.stderr
        );
        ran
    }

    /// `start --engine <engine> --detach` with the binaries beside the
    /// supervisor; asserts it succeeded and returns the run state.
    pub fn start_detached(&self, engine: &str) -> Value {
        let bins = bin_dir();
        let bins = bins.to_str().expect("binary directory is UTF-8");
        let started = self.run(
            &["start", "--engine", engine, "--detach", "--bin-dir", bins],
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

    fn dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/bypasslab/{}", self.name))
    }

    /// The run state (`run.json`), if recorded.
    pub fn run_state(&self) -> Option<Value> {
        read_json(&self.dir().join("run.json"))
    }

    /// The network state (`net.json`), if recorded.
    pub fn net_state(&self) -> Option<Value> {
        read_json(&self.dir().join("net.json"))
    }

    /// The pid of the running load generator, once it runs.
    pub fn loadgen_pid(&self) -> Option<u32> {
        read_json(&self.dir().join("loadgen.pid.json")).map(|v| pid(&v["pid"]))
    }

    /// The emulator's pid, if `net up` started one.
    pub fn emulator_pid(&self) -> Option<u32> {
        self.net_state()
            .filter(|s| s["emulator"].is_object())
            .map(|s| pid(&s["emulator"]["pid"]))
    }

    /// Waits (bounded) until `probe` on the run state gives a value; panics
    /// with `what` if `child` exits first or the time runs out.
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

    /// `stop` and `net down`, output ignored.
    pub fn cleanup(&self) {
        let _ = self
            .command(&["stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self
            .command(&["net", "down"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Asserts that nothing the run created remains: namespaces, links,
    /// qdiscs, nft tables, mounts, run state, segment and hugepage files,
    /// DPDK's runtime directory, and processes (the `pids` given, and any
    /// process whose command line names this testbed).
    pub fn assert_nothing_left(&self, pids: &[u32]) {
        let name = &self.name;
        // Processes first: a teardown may still be reaping for a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let alive: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
            let named = processes_naming(name);
            if alive.is_empty() && named.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes left: recorded {alive:?}, naming the testbed {named:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let netns = stdout("ip", &["netns", "list"]);
        assert!(
            !netns.lines().any(|l| l.starts_with(&format!("{name}-"))),
            "namespaces left: {netns}"
        );
        let links = stdout("ip", &["-o", "link"]);
        assert!(!links.contains(&format!(" {name}-")), "links left: {links}");
        let qdiscs = stdout("tc", &["qdisc", "show"]);
        assert!(
            !qdiscs.contains(&format!(" {name}-")),
            "qdiscs left: {qdiscs}"
        );
        let tables = stdout("nft", &["list", "tables"]);
        assert!(!tables.contains(name.as_str()), "nft tables left: {tables}");
        let left: Vec<String> = std::fs::read_dir(self.dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!self.dir().exists(), "run state directory left: {left:?}");
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        assert!(
            !mounts.contains(&format!("/bypasslab/{name}/")),
            "mount left: {mounts}"
        );
        let mut dirs = vec![PathBuf::from("/dev/shm"), PathBuf::from("/dev/hugepages")];
        dirs.extend(
            mounts
                .lines()
                .filter(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
                .filter_map(|l| l.split_whitespace().nth(1).map(PathBuf::from)),
        );
        let prefix = format!("bypasslab-{name}");
        for dir in dirs {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                assert!(
                    !file.starts_with(&prefix),
                    "segment or hugepage file left: {}",
                    entry.path().display()
                );
            }
        }
        assert!(
            !Path::new(&format!("/var/run/dpdk/{prefix}")).exists(),
            "DPDK runtime directory left"
        );
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.cleanup();
        let _ = std::fs::remove_file(&self.config);
    }
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// A pid from a JSON number.
pub fn pid(v: &Value) -> u32 {
    u32::try_from(v.as_u64().expect("pid is a number")).unwrap()
}

fn stdout(program: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&Command::new(program).args(args).output().unwrap().stdout).into_owned()
}

/// Whether `pid` runs (zombies count as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Processes (not zombies) whose command line names testbed `name`: its
/// namespaces, segment, config or state directory.
pub fn processes_naming(name: &str) -> Vec<String> {
    let marks = [
        format!("{name}-ns"),
        format!("bypasslab-{name}"),
        format!("/bypasslab/{name}/"),
        format!("{name}-e\0"),
    ];
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me || !alive(pid) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline);
        if marks.iter().any(|m| text.contains(m.as_str())) {
            found.push(format!("{pid}: {}", text.replace('\0', " ")));
        }
    }
    found
}

/// Sends `signal` (e.g. "KILL") to `pid`.
pub fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Waits for `child` at most `limit` (killing it and failing after that)
/// and collects its output.
pub fn finish(mut child: Child, limit: Duration) -> Ran {
    // Drain both pipes on threads so a chatty child never blocks; a pipe
    // an orphaned grandchild still holds is given up after a bound.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            let _ = tx.send(s);
        });
        rx
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = wait_exit(&mut child, limit);
    let collect = |rx: std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| "<stream held open by another process>".into())
    };
    Ran {
        code: status.code(),
        stdout: collect(out),
        stderr: collect(err),
    }
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

/// Output of a command, as [`Ran`].
pub fn ran(out: &Output) -> Ran {
    Ran::from_output(out)
}
