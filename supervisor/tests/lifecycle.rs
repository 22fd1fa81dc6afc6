//! End-to-end tests of the run lifecycle (root: they build namespaces,
//! hugepages and processes). Each test has its own testbed name and a guard
//! that stops the run and removes the network even when the test fails.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SUPERVISOR: &str = env!("CARGO_BIN_EXE_supervisor");

/// Engine kinds the suite runs against (every engine passes the same
/// suite): kernel and dpdk always, fstack when the engine binary was built
/// with F-Stack (`engine --list-kinds`). A skipped fstack is said on the
/// test's real stderr, past libtest's capture, so CI logs show it.
fn engines() -> Vec<&'static str> {
    let mut engines = vec!["kernel", "dpdk"];
    let engine = bin_dir().join("engine");
    let listing = Command::new(&engine).arg("--list-kinds").output().unwrap();
    let doc: Value = serde_json::from_slice(&listing.stdout).unwrap_or(Value::Null);
    let fstack = doc["kinds"]
        .as_array()
        .and_then(|kinds| kinds.iter().find(|k| k["kind"] == "fstack"))
        .cloned()
        .unwrap_or(Value::Null);
    if fstack["available"] == true {
        engines.push("fstack");
    } else {
        let reason = fstack["reason"]
            .as_str()
            .unwrap_or("the engine binary cannot list its kinds");
        let _ = writeln!(std::io::stderr(), "skipped fstack: {reason}");
    }
    engines
}

fn bin_dir() -> PathBuf {
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

/// A uniquely named testbed; dropping it stops any run and removes the network.
struct Testbed {
    name: String,
    config: PathBuf,
}

impl Testbed {
    fn new(tag: &str, impairment: &str) -> Self {
        let name = format!("{tag}{}", std::process::id() % 100_000);
        let config = std::env::temp_dir().join(format!("bypasslab-{name}.toml"));
        let text = format!("[testbed]\nname = \"{name}\"\n\n[impairment]\n{impairment}\n");
        std::fs::write(&config, text).unwrap();
        let testbed = Self { name, config };
        // A leftover of an earlier aborted run of this test must not interfere.
        testbed.cleanup();
        testbed
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(SUPERVISOR);
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null());
        command
    }

    fn output(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().unwrap();
        eprintln!(
            "$ supervisor {} -> {:?}\n{}",
            args.join(" "),
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn run_state(&self) -> Option<Value> {
        let text =
            std::fs::read_to_string(format!("/run/bypasslab/{}/run.json", self.name)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits (bounded) for the run to report `ready`, returning its state.
    fn wait_ready(&self, child: &mut Child) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(state) = self.run_state() {
                if state["phase"] == "ready" {
                    return state;
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("supervisor exited before ready: {status}");
            }
            assert!(Instant::now() < deadline, "run not ready within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn cleanup(&self) {
        let _ = self.command(&["stop"]).stderr(Stdio::null()).status();
        let _ = self
            .command(&["net", "down"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Asserts nothing the run created remains.
    fn assert_nothing_left(&self, pids: &[u32]) {
        let netns = String::from_utf8(
            Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(
            !netns
                .lines()
                .any(|l| l.starts_with(&format!("{}-", self.name))),
            "namespaces left: {netns}"
        );
        let links = String::from_utf8(
            Command::new("ip")
                .args(["-o", "link"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(
            !links.contains(&format!(" {}-", self.name)),
            "links left: {links}"
        );
        assert!(
            !Path::new(&format!("/run/bypasslab/{}", self.name)).exists(),
            "run state directory left"
        );
        assert!(
            !Path::new(&format!("/dev/shm/bypasslab-{}", self.name)).exists(),
            "shm segment left"
        );
        assert!(
            !Path::new(&format!("/var/run/dpdk/bypasslab-{}", self.name)).exists(),
            "DPDK runtime directory left"
        );
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        assert!(
            !mounts.contains(&format!("/run/bypasslab/{}/", self.name)),
            "mount left"
        );
        for pid in pids {
            assert!(!process_alive(*pid), "process {pid} left running");
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.cleanup();
        let _ = std::fs::remove_file(&self.config);
    }
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn pid_of(state: &Value, key: &str) -> u32 {
    u32::try_from(state[key]["pid"].as_u64().unwrap()).unwrap()
}

fn hugepages_total() -> String {
    std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
        .unwrap_or_default()
}

fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_with_impairment_answers_every_message_and_leaves_nothing() {
    bin_dir();
    for engine in &engines() {
        let testbed = Testbed::new("lr", "delay_us = 100\nloss_percent = 1.0");
        let huge_before = hugepages_total();
        let output = testbed.output(&["run", "--engine", engine, "--packets", "10000", "--json"]);
        assert_eq!(output.status.code(), Some(0), "run must succeed");
        let doc: Value = serde_json::from_slice(&output.stdout).expect("run --json prints JSON");
        let row = &doc["rows"][0];
        eprintln!("{engine}: {}", serde_json::to_string(row).unwrap());
        assert_eq!(row["packets"], 10000);
        assert_eq!(row["sent"], 10000);
        assert_eq!(row["answered"], 10000);
        assert_eq!(row["failed"], 0);
        let warmup = row["warmup"].as_u64().unwrap();
        assert_eq!(
            row["engine_received"].as_u64().unwrap(),
            10000 + warmup,
            "engine saw every request"
        );
        assert!(row["messages_per_s"].as_f64().unwrap() > 0.0);
        assert!(row["bandwidth_kb_s"].as_f64().unwrap() > 0.0);
        for key in ["mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
            assert!(row["rtt"][key].as_f64().unwrap() > 0.0, "rtt.{key}");
        }
        assert_eq!(row["rtt"]["count"], 10000);
        assert!(row["impairment"].as_str().unwrap().contains("1 % loss"));
        let loss = row["observed_loss_percent"]
            .as_f64()
            .expect("observed loss is measured");
        assert!((0.0..5.0).contains(&loss), "observed loss {loss}");
        assert!(doc["engine_died"].is_null());
        testbed.assert_nothing_left(&[]);
        assert_eq!(hugepages_total(), huge_before, "hugepage pool restored");
    }
}

#[test]
fn detached_start_attach_stats_stop() {
    let bins = bin_dir();
    for engine in &engines() {
        let testbed = Testbed::new("ld", "backend = \"none\"");
        let started = testbed.output(&[
            "start",
            "--engine",
            engine,
            "--detach",
            "--bin-dir",
            bins.to_str().unwrap(),
        ]);
        assert_eq!(started.status.code(), Some(0));
        let state = testbed.run_state().expect("run state recorded");
        let supervisor_pid = pid_of(&state, "supervisor");
        let engine_pid = pid_of(&state, "engine");
        assert!(process_alive(supervisor_pid) && process_alive(engine_pid));

        let again = testbed.output(&["start", "--engine", engine]);
        assert_eq!(again.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));

        let attached = testbed.output(&["attach", "--packets", "2000,3000", "--json"]);
        assert_eq!(attached.status.code(), Some(0));
        let rows: Value = serde_json::from_slice(&attached.stdout).unwrap();
        assert_eq!(rows[0]["answered"], 2000);
        assert_eq!(rows[1]["answered"], 3000);

        let stats = testbed.output(&["stats", "--json"]);
        assert_eq!(stats.status.code(), Some(0));
        let doc: Value = serde_json::from_slice(&stats.stdout).unwrap();
        assert_eq!(doc["engine_kind"], *engine);
        assert_eq!(doc["phase"], "ready");
        assert!(
            doc["segment"]["segment"].is_object(),
            "segment header present"
        );
        let slots = doc["segment"]["slots"].as_array().unwrap();
        let engine_slot = slots
            .iter()
            .find(|s| s["role"] == "engine")
            .expect("engine slot");
        let loadgen_slot = slots
            .iter()
            .find(|s| s["role"] == "loadgen")
            .expect("loadgen slot");
        assert_eq!(engine_slot["info"]["state"], "running");
        assert_eq!(loadgen_slot["counters"]["messages_received"], 3000);
        let warmups = 2 * loadgen_slot["counters"]["warmup_messages"]
            .as_u64()
            .unwrap();
        assert_eq!(
            engine_slot["counters"]["messages_received"]
                .as_u64()
                .unwrap(),
            5000 + warmups,
            "engine counted both runs"
        );
        for key in [
            "messages_sent",
            "messages_received",
            "bytes_sent",
            "bytes_received",
            "connections_opened",
            "protocol_errors",
            "elapsed_ns",
        ] {
            assert!(engine_slot["counters"][key].is_u64(), "counters.{key}");
        }
        assert!(loadgen_slot["latency"]["p99_us"].as_f64().unwrap() > 0.0);
        if *engine == "dpdk" {
            // The port's own counters: every request arrived in at least one
            // frame, and every reply left in one.
            let port = &engine_slot["counters"];
            let received = port["messages_received"].as_u64().unwrap();
            assert!(
                port["rx_packets"].as_u64().unwrap() >= received,
                "port rx < requests: {port}"
            );
            assert!(
                port["tx_packets"].as_u64().unwrap() >= received,
                "port tx < replies: {port}"
            );
        }

        let follow = testbed
            .command(&["stats", "--json", "--follow", "--interval-ms", "100"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(450));
        kill(follow.id(), "INT");
        let out = follow.wait_with_output().unwrap();
        let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        assert!(lines.len() >= 2, "one JSON line per interval: {lines:?}");
        for line in lines {
            let _: Value = serde_json::from_str(line).expect("each --follow line is JSON");
        }

        let stopped = testbed.output(&["stop"]);
        assert_eq!(stopped.status.code(), Some(0));
        testbed.assert_nothing_left(&[supervisor_pid, engine_pid]);

        let idle = testbed.output(&["stop"]);
        assert_eq!(
            idle.status.code(),
            Some(0),
            "stop with nothing running is harmless"
        );
        assert!(String::from_utf8_lossy(&idle.stderr).contains("nothing to stop"));
    }
}

#[test]
fn engine_killed_mid_run_is_reported_and_cleaned() {
    bin_dir();
    for engine in &engines() {
        let testbed = Testbed::new("lk", "backend = \"none\"");
        let mut supervisor = testbed
            .command(&["start", "--engine", engine])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let state = testbed.wait_ready(&mut supervisor);
        let engine_pid = pid_of(&state, "engine");
        kill(engine_pid, "KILL");
        let status = wait_exit(&mut supervisor, Duration::from_secs(30));
        let mut stderr = String::new();
        std::io::Read::read_to_string(supervisor.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        eprintln!("{stderr}");
        assert_eq!(
            status.code(),
            Some(3),
            "a dead engine ends the run with code 3"
        );
        assert!(stderr.contains(&format!(
            "the engine (pid {engine_pid}) was killed by SIGKILL"
        )));
        testbed.assert_nothing_left(&[engine_pid]);
    }
}

#[test]
fn sigint_during_attach_stops_everything() {
    bin_dir();
    let testbed = Testbed::new("li", "delay_us = 100\nloss_percent = 1.0");
    let mut supervisor = testbed
        .command(&["run", "--engine", "kernel", "--packets", "5000000"])
        .spawn()
        .unwrap();
    let state = testbed.wait_ready(&mut supervisor);
    let engine_pid = pid_of(&state, "engine");
    // Wait until the load generator runs, then interrupt.
    let pid_file = format!("/run/bypasslab/{}/loadgen.pid.json", testbed.name);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Path::new(&pid_file).exists() {
        assert!(Instant::now() < deadline, "load generator never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let loadgen: Value =
        serde_json::from_str(&std::fs::read_to_string(&pid_file).unwrap()).unwrap();
    let loadgen_pid = u32::try_from(loadgen["pid"].as_u64().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    kill(supervisor.id(), "INT");
    let status = wait_exit(&mut supervisor, Duration::from_secs(60));
    assert_eq!(status.code(), Some(130));
    testbed.assert_nothing_left(&[engine_pid, loadgen_pid]);
}

#[test]
fn crashed_supervisor_leaves_leftovers_that_stop_removes() {
    bin_dir();
    let testbed = Testbed::new("lc", "delay_us = 100\nloss_percent = 1.0");
    let mut supervisor = testbed
        .command(&["start", "--engine", "kernel"])
        .spawn()
        .unwrap();
    let state = testbed.wait_ready(&mut supervisor);
    let engine_pid = pid_of(&state, "engine");
    kill(supervisor.id(), "KILL");
    let _ = wait_exit(&mut supervisor, Duration::from_secs(10));

    let refused = testbed.output(&["start", "--engine", "kernel"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("leftovers of a crashed run"), "{message}");
    assert!(
        message.contains(&format!("engine pid {engine_pid} still running")),
        "{message}"
    );

    let stopped = testbed.output(&["stop"]);
    assert_eq!(stopped.status.code(), Some(0));
    testbed.assert_nothing_left(&[engine_pid]);
}

#[test]
fn start_cleans_leftovers_when_asked() {
    bin_dir();
    let testbed = Testbed::new("lo", "backend = \"none\"");
    let mut supervisor = testbed
        .command(&["start", "--engine", "kernel"])
        .spawn()
        .unwrap();
    let state = testbed.wait_ready(&mut supervisor);
    let old_engine = pid_of(&state, "engine");
    kill(supervisor.id(), "KILL");
    let _ = wait_exit(&mut supervisor, Duration::from_secs(10));

    let output = testbed.output(&[
        "run",
        "--engine",
        "kernel",
        "--packets",
        "1000",
        "--clean-leftovers",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cleaning leftovers"));
    assert!(!process_alive(old_engine));
    testbed.assert_nothing_left(&[old_engine]);
}

#[test]
fn hugepages_reserve_then_release_restores_the_host() {
    let before = hugepages_total();
    let mounts_before = std::fs::read_to_string("/proc/mounts").unwrap();
    let run = |args: &[&str]| Command::new(SUPERVISOR).args(args).output().unwrap();
    let reserved = run(&[
        "hugepages",
        "reserve",
        "--pages",
        "4",
        "--mount",
        "/run/bypasslab/test-hugepages",
    ]);
    assert_eq!(
        reserved.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&reserved.stderr)
    );
    let twice = run(&["hugepages", "reserve", "--pages", "4"]);
    assert_eq!(
        twice.status.code(),
        Some(1),
        "a second reservation is refused"
    );
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already recorded"));
    let status: Value =
        serde_json::from_slice(&run(&["hugepages", "status", "--json"]).stdout).unwrap();
    assert!(status["pool"]["free"].as_u64().unwrap() >= 4);
    assert!(status["reserved_by_bypasslab"].is_object());
    let released = run(&["hugepages", "release"]);
    assert_eq!(released.status.code(), Some(0));
    assert_eq!(hugepages_total(), before);
    let mounts_after = std::fs::read_to_string("/proc/mounts").unwrap();
    assert_eq!(
        mounts_before
            .lines()
            .filter(|l| l.contains("hugetlbfs"))
            .count(),
        mounts_after
            .lines()
            .filter(|l| l.contains("hugetlbfs"))
            .count()
    );
    let idle = run(&["hugepages", "release"]);
    assert_eq!(
        idle.status.code(),
        Some(0),
        "release with nothing reserved is harmless"
    );
}
