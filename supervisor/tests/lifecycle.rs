//! End-to-end tests of the run lifecycle (root: they build namespaces,
//! hugepages and processes). Each test has its own testbed name and a guard
//! that stops the run and removes the network even when the test fails.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{alive, bin_dir, engines, kill, pid, require_root, wait_exit, HostLock, Testbed};

/// Bound of one `supervisor` command in these tests (a 10 000-message run
/// over the impaired link takes about 25 s).
const LIMIT: Duration = Duration::from_secs(300);

fn hugepages_total() -> String {
    std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
        .unwrap_or_default()
}

/// The 2 MB pool is back to `before` pages, within 3 s: pages a process
/// had mapped leave the pool as it exits, which may trail its reaping.
fn assert_pool_restored(before: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while hugepages_total() != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(hugepages_total(), before, "hugepage pool restored");
}

#[test]
fn run_with_impairment_answers_every_message_and_leaves_nothing() {
    if !require_root("run_with_impairment_answers_every_message_and_leaves_nothing") {
        return;
    }
    bin_dir();
    for engine in engines() {
        // The pool is compared around the run: no other test's run may
        // change it meanwhile.
        let testbed = Testbed::with_lock(
            "lr",
            "[impairment]\ndelay_us = 100\nloss_percent = 1.0",
            HostLock::exclusive(),
        );
        let huge_before = hugepages_total();
        let output = testbed.run(
            &[
                "run",
                "--engine",
                engine.as_str(),
                "--packets",
                "10000",
                "--json",
            ],
            LIMIT,
        );
        assert_eq!(output.code, Some(0), "run must succeed");
        let doc: Value = serde_json::from_str(&output.stdout).expect("run --json prints JSON");
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
        assert_pool_restored(&huge_before);
    }
}

#[test]
fn detached_start_attach_stats_stop() {
    if !require_root("detached_start_attach_stats_stop") {
        return;
    }
    bin_dir();
    for engine in engines() {
        let testbed = Testbed::plain("ld");
        let state = testbed.start_detached(engine);
        let supervisor_pid = pid(&state["supervisor"]["pid"]);
        let engine_pid = pid(&state["engine"]["pid"]);
        assert!(alive(supervisor_pid) && alive(engine_pid));

        let again = testbed.run(&["start", "--engine", engine.as_str()], LIMIT);
        assert_eq!(again.code, Some(1));
        assert!(again.stderr.contains("already running"));

        let attached = testbed.run(&["attach", "--packets", "2000,3000", "--json"], LIMIT);
        assert_eq!(attached.code, Some(0));
        let rows: Value = serde_json::from_str(&attached.stdout).unwrap();
        assert_eq!(rows[0]["answered"], 2000);
        assert_eq!(rows[1]["answered"], 3000);

        let stats = testbed.run(&["stats", "--json"], LIMIT);
        assert_eq!(stats.code, Some(0));
        let doc: Value = serde_json::from_str(&stats.stdout).unwrap();
        assert_eq!(doc["engine_kind"], engine.as_str());
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
        if engine == contract::EngineKind::Dpdk {
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

        let stopped = testbed.run(&["stop"], LIMIT);
        assert_eq!(stopped.code, Some(0));
        testbed.assert_nothing_left(&[supervisor_pid, engine_pid]);

        let idle = testbed.run(&["stop"], LIMIT);
        assert_eq!(idle.code, Some(0), "stop with nothing running is harmless");
        assert!(idle.stderr.contains("nothing to stop"));
    }
}

#[test]
fn engine_killed_mid_run_is_reported_and_cleaned() {
    if !require_root("engine_killed_mid_run_is_reported_and_cleaned") {
        return;
    }
    bin_dir();
    for engine in engines() {
        let testbed = Testbed::plain("lk");
        let mut supervisor = testbed
            .command(&["start", "--engine", engine.as_str()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let state = testbed.wait_ready(&mut supervisor);
        let engine_pid = pid(&state["engine"]["pid"]);
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
    if !require_root("sigint_during_attach_stops_everything") {
        return;
    }
    bin_dir();
    let testbed = Testbed::impaired("li");
    let mut supervisor = testbed
        .command(&["run", "--engine", "kernel", "--packets", "5000000"])
        .spawn()
        .unwrap();
    let state = testbed.wait_ready(&mut supervisor);
    let engine_pid = pid(&state["engine"]["pid"]);
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
    if !require_root("crashed_supervisor_leaves_leftovers_that_stop_removes") {
        return;
    }
    bin_dir();
    let testbed = Testbed::impaired("lc");
    let mut supervisor = testbed
        .command(&["start", "--engine", "kernel"])
        .spawn()
        .unwrap();
    let state = testbed.wait_ready(&mut supervisor);
    let engine_pid = pid(&state["engine"]["pid"]);
    kill(supervisor.id(), "KILL");
    let _ = wait_exit(&mut supervisor, Duration::from_secs(10));

    let refused = testbed.run(&["start", "--engine", "kernel"], LIMIT);
    assert_eq!(refused.code, Some(1));
    let message = &refused.stderr;
    assert!(message.contains("leftovers of a crashed run"), "{message}");
    assert!(
        message.contains(&format!("engine pid {engine_pid} still running")),
        "{message}"
    );

    let stopped = testbed.run(&["stop"], LIMIT);
    assert_eq!(stopped.code, Some(0));
    testbed.assert_nothing_left(&[engine_pid]);
}

#[test]
fn start_cleans_leftovers_when_asked() {
    if !require_root("start_cleans_leftovers_when_asked") {
        return;
    }
    bin_dir();
    let testbed = Testbed::plain("lo");
    let mut supervisor = testbed
        .command(&["start", "--engine", "kernel"])
        .spawn()
        .unwrap();
    let state = testbed.wait_ready(&mut supervisor);
    let old_engine = pid(&state["engine"]["pid"]);
    kill(supervisor.id(), "KILL");
    let _ = wait_exit(&mut supervisor, Duration::from_secs(10));

    let output = testbed.run(
        &[
            "run",
            "--engine",
            "kernel",
            "--packets",
            "1000",
            "--clean-leftovers",
            "--json",
        ],
        LIMIT,
    );
    assert_eq!(output.code, Some(0));
    assert!(output.stderr.contains("cleaning leftovers"));
    assert!(!alive(old_engine));
    testbed.assert_nothing_left(&[old_engine]);
}

#[test]
fn hugepages_reserve_then_release_restores_the_host() {
    if !require_root("hugepages_reserve_then_release_restores_the_host") {
        return;
    }
    let _pool = HostLock::exclusive();
    let before = hugepages_total();
    let mounts_before = std::fs::read_to_string("/proc/mounts").unwrap();
    let run = |args: &[&str]| support::supervisor(args);
    let reserved = run(&[
        "hugepages",
        "reserve",
        "--pages",
        "4",
        "--mount",
        "/run/bypasslab/test-hugepages",
    ]);
    assert_eq!(reserved.code, Some(0), "{}", reserved.stderr);
    let twice = run(&["hugepages", "reserve", "--pages", "4"]);
    assert_eq!(twice.code, Some(1), "a second reservation is refused");
    assert!(twice.stderr.contains("already recorded"));
    let status: Value = run(&["hugepages", "status", "--json"]).json();
    assert!(status["pool"]["free"].as_u64().unwrap() >= 4);
    assert!(status["reserved_by_bypasslab"].is_object());
    let released = run(&["hugepages", "release"]);
    assert_eq!(released.code, Some(0));
    assert_pool_restored(&before);
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
        idle.code,
        Some(0),
        "release with nothing reserved is harmless"
    );
}

/// `[service] max_connections` and `listen_backlog` reach every engine's
/// command line (the defaults are left out of it, as every default is).
#[test]
fn service_limits_from_the_config_reach_the_engine() {
    if !require_root("service_limits_from_the_config_reach_the_engine") {
        return;
    }
    bin_dir();
    for engine in engines() {
        let testbed = Testbed::new(
            "sl",
            "[impairment]\nbackend = \"none\"\n[service]\nmax_connections = 300\nlisten_backlog = 77",
        );
        let state = testbed.start_detached(engine);
        let command: Vec<&str> = state["engine_command"]
            .as_array()
            .expect("engine_command")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for (flag, value) in [("--max-connections", "300"), ("--listen-backlog", "77")] {
            let at = command
                .iter()
                .position(|w| *w == flag)
                .unwrap_or_else(|| panic!("{engine}: no {flag} in {command:?}"));
            assert_eq!(command[at + 1], value, "{engine}: {command:?}");
        }
        let attached = testbed.run(
            &[
                "attach",
                "--connections",
                "200",
                "--packets",
                "2000",
                "--json",
            ],
            LIMIT,
        );
        assert_eq!(attached.code, Some(0), "{engine}: {}", attached.stderr);
        let stopped = testbed.run(&["stop"], LIMIT);
        assert_eq!(stopped.code, Some(0), "{engine}: {}", stopped.stderr);
        testbed.assert_nothing_left(&[]);
    }
}

/// A background supervisor that fails to start tears its run down, its log
/// file with it: `start --detach` still says why (it reads the log through
/// its own handle), and nothing is left.
#[test]
fn a_detached_start_that_fails_says_why() {
    if !require_root("a_detached_start_that_fails_says_why") {
        return;
    }
    let bins = bin_dir();
    let testbed = Testbed::plain("lf");
    let started = testbed.run(
        &[
            "start",
            "--engine",
            "dpdk",
            "--pmd",
            "pci:0000:ff:1f.7",
            "--detach",
            "--bin-dir",
            bins.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert_ne!(started.code, Some(0));
    assert!(
        started.stderr.contains("0000:ff:1f.7 does not exist"),
        "{}",
        started.stderr
    );
    assert!(testbed.run_state().is_none(), "a run was left recorded");
    testbed.assert_nothing_left(&[]);
}
