//! Two hosts over SSH (root: namespaces, sshd). The "hosts" are network
//! namespaces joined by a veth pair, each with its own sshd; the
//! orchestrating supervisor runs in a third namespace (see
//! `support::two_hosts`). Each test checks what the user sees and that
//! nothing is left on either host.

mod support;

use std::time::{Duration, Instant};

use support::two_hosts::{TwoHosts, A_MGMT, B_MGMT, SSH_PORT};
use support::{bin_dir, engines, kill, pid, require_root, SUPERVISOR};

const LIMIT: Duration = Duration::from_secs(240);

fn engine_url() -> String {
    format!("ssh://root@{B_MGMT}:{SSH_PORT}")
}

fn run_args(config: &std::path::Path, engine: &str, packets: &str) -> Vec<String> {
    [
        "run",
        "--config",
        config.to_str().unwrap(),
        "--engine",
        engine,
        "--packets",
        packets,
        "--json",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn two_hosts_run_kernel_and_dpdk_engine_on_b_loadgen_on_a() {
    if !require_root("two_hosts_run_kernel_and_dpdk_engine_on_b_loadgen_on_a") {
        return;
    }
    bin_dir();
    for engine in engines() {
        let hosts = TwoHosts::plain("th");
        let config = hosts.standard_config();
        let out = hosts.run(&args(&run_args(&config, engine.as_str(), "3000")), LIMIT);
        assert_eq!(out.code, Some(0), "{engine}: {}", out.stderr);
        let doc = out.json();
        let row = &doc["rows"][0];
        assert_eq!(row["answered"], 3000, "{row}");
        assert_eq!(row["failed"], 0);
        let warmup = row["warmup"].as_u64().unwrap();
        assert_eq!(
            row["engine_received"].as_u64().unwrap(),
            3000 + warmup,
            "the engine's counters come from B's segment"
        );
        assert!(row["rtt"]["p50_us"].as_f64().unwrap() > 0.0);
        assert_eq!(row["impairment"], "none");
        let recorded = doc["hosts"].as_array().unwrap();
        assert_eq!(recorded[0]["role"], "engine");
        assert_eq!(recorded[0]["reached"], engine_url());
        assert_eq!(recorded[0]["iface"], format!("{}-db", hosts.name));
        assert!(!recorded[0]["kernel"].as_str().unwrap().is_empty());
        assert_eq!(recorded[1]["role"], "client");
        if engine.is_bypass() {
            assert_eq!(recorded[0]["pmd"], "af_xdp");
        }
        hosts.assert_nothing_left(&[], Duration::from_secs(10));
    }
}

/// The ssh client of the engine host's session, a child of the
/// orchestrating supervisor `parent`.
fn ssh_child(parent: u32, host: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1));
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if ppid == Some(&parent.to_string()) && cmd.starts_with("ssh\0") && cmd.contains(host) {
            return Some(p);
        }
    }
    None
}

/// Starts a long run and waits (bounded) until the load generator on A
/// runs; returns the child and the engine's pid on B.
fn long_run(hosts: &TwoHosts, engine: &str) -> (support::Watched, u32) {
    let config = hosts.standard_config();
    let mut a = run_args(&config, engine, "50000000");
    a.extend(["--timeout-ms".into(), "1000".into()]);
    let child = hosts
        .command(&args(&a))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let engine_pid = loop {
        let engine = hosts
            .run_state("engine")
            .filter(|s| s["phase"] == "ready")
            .map(|s| pid(&s["engine"]["pid"]));
        let loadgen = hosts.state_dir("client").join("loadgen.pid.json").exists();
        if let (Some(p), true) = (engine, loadgen) {
            break p;
        }
        assert!(Instant::now() < deadline, "the two-host run did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    (support::Watched::new(child), engine_pid)
}

#[test]
fn two_hosts_lost_ssh_connection_and_killed_engine_are_named() {
    if !require_root("two_hosts_lost_ssh_connection_and_killed_engine_are_named") {
        return;
    }
    bin_dir();
    // The engine host's connection killed mid-run: B tears down, A says
    // which host was lost.
    let hosts = TwoHosts::plain("tf");
    let (run, engine_pid) = long_run(&hosts, "kernel");
    let ssh = ssh_child(run.child.id(), B_MGMT).expect("the ssh client of B's session");
    kill(ssh, "KILL");
    let out = run.wait(Duration::from_secs(90));
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("lost engine host {}", engine_url())),
        "{}",
        out.stderr
    );
    hosts.assert_nothing_left(&[engine_pid, ssh], Duration::from_secs(30));
    drop(hosts);

    // kill -9 of the engine on B: named on A, by host and pid.
    let hosts = TwoHosts::plain("tk");
    let (run, engine_pid) = long_run(&hosts, "kernel");
    kill(engine_pid, "KILL");
    let out = run.wait(Duration::from_secs(90));
    eprintln!("{}", out.stderr);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "the engine on engine host {} (pid {engine_pid}) was killed by SIGKILL",
            engine_url()
        )),
        "{}",
        out.stderr
    );
    hosts.assert_nothing_left(&[engine_pid], Duration::from_secs(30));
}

#[test]
fn two_hosts_refusals_are_clear_and_create_nothing() {
    if !require_root("two_hosts_refusals_are_clear_and_create_nothing") {
        return;
    }
    bin_dir();
    let hosts = TwoHosts::plain("tr");
    let known = hosts.dir.join("known_hosts");
    // A wrong host key for B.
    let wrong = hosts.dir.join("wrong_known_hosts");
    let text = std::fs::read_to_string(&known).unwrap();
    let a_line = text.lines().next().unwrap().to_owned();
    let a_key = a_line.split_once(' ').unwrap().1;
    std::fs::write(&wrong, format!("{a_line}\n[{B_MGMT}]:{SSH_PORT} {a_key}\n")).unwrap();
    let a_url = format!("ssh://root@{A_MGMT}:{SSH_PORT}");
    let fake = hosts.dir.join("old-supervisor");
    std::fs::write(
        &fake,
        "#!/bin/sh\nread line\necho '{\"ok\":{\"id\":1,\"result\":{\"hello\":{\"contract_version\":999,\"host\":{\"hostname\":\"old\",\"kernel\":\"k\",\"cores\":1,\"pid\":1}}}}}'\nread line\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x", fake.to_str().unwrap()])
        .status()
        .unwrap();
    let unreachable = format!("ssh://root@10.99.3.2:{SSH_PORT}");
    let ours = format!("speaks {}", contract::CONTRACT_VERSION);
    let cases: [(&str, &str, &std::path::Path, Vec<&str>); 4] = [
        (
            &engine_url(),
            SUPERVISOR,
            &wrong,
            vec!["engine host", "Host key verification failed"],
        ),
        (
            &unreachable,
            SUPERVISOR,
            &known,
            vec![
                "engine host ssh://root@10.99.3.2",
                "no session",
                "unreachable",
            ],
        ),
        (
            &engine_url(),
            "/nonexistent/supervisor",
            &known,
            vec!["engine host", "/nonexistent/supervisor", "No such file"],
        ),
        (
            &engine_url(),
            fake.to_str().unwrap(),
            &known,
            vec!["contract version mismatch", &ours, "host's 999"],
        ),
    ];
    let _ = a_url;
    for (url, supervisor, known_hosts, needles) in cases {
        let config = hosts.config(url, supervisor, known_hosts);
        let out = hosts.run(&args(&run_args(&config, "kernel", "100")), LIMIT);
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        for needle in needles {
            assert!(
                out.stderr.contains(needle),
                "{needle:?} missing: {}",
                out.stderr
            );
        }
        hosts.assert_nothing_left(&[], Duration::from_secs(10));
    }

    // doctor --host reports B's capabilities through its serve.
    let config = hosts.standard_config();
    let out = hosts.run(
        &[
            "doctor",
            "--host",
            &engine_url(),
            "--config",
            config.to_str().unwrap(),
            "--json",
        ],
        LIMIT,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let doc = out.json();
    let names: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in ["root", "netem", "hugepages", "af_xdp"] {
        assert!(names.contains(&name), "{name}: {names:?}");
    }
}

#[test]
fn two_hosts_work_with_a_key_restricted_to_serve() {
    if !require_root("two_hosts_work_with_a_key_restricted_to_serve") {
        return;
    }
    bin_dir();
    let hosts = TwoHosts::new("ts", |key| {
        format!("command=\"{SUPERVISOR} serve --stdio\",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding {key}")
    });
    let config = hosts.standard_config();
    let out = hosts.run(&args(&run_args(&config, "kernel", "2000")), LIMIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.json()["rows"][0]["answered"], 2000);
    hosts.assert_nothing_left(&[], Duration::from_secs(10));

    // The key runs nothing else: asking for a shell command gets serve,
    // which reads no request and ends.
    let mut ssh = std::process::Command::new("ip");
    ssh.args([
        "netns",
        "exec",
        &hosts.ns("o"),
        "ssh",
        "-T",
        "-p",
        &SSH_PORT.to_string(),
    ]);
    for o in hosts.ssh_options(&hosts.dir.join("known_hosts")) {
        ssh.args(["-o", &o]);
    }
    ssh.args([
        "-o",
        "BatchMode=yes",
        &format!("root@{B_MGMT}"),
        "id; touch /tmp/bl-escaped",
    ]);
    let out = support::run_bounded(&mut ssh, Duration::from_secs(30));
    assert!(!out.stdout.contains("uid="), "{}", out.stdout);
    assert!(!std::path::Path::new("/tmp/bl-escaped").exists());

    // A request naming a path is refused, naming the field.
    let mut ssh = std::process::Command::new("ip");
    ssh.args([
        "netns",
        "exec",
        &hosts.ns("o"),
        "ssh",
        "-T",
        "-p",
        &SSH_PORT.to_string(),
    ]);
    for o in hosts.ssh_options(&hosts.dir.join("known_hosts")) {
        ssh.args(["-o", &o]);
    }
    ssh.args(["-o", "BatchMode=yes", &format!("root@{B_MGMT}")]);
    let mut child = ssh
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, r#"{{"id":1,"call":{{"hello":{{"contract_version":{},"testbed":"{}","role":"engine"}}}}}}"#, contract::CONTRACT_VERSION, hosts.name).unwrap();
        writeln!(
            stdin,
            r#"{{"id":2,"call":{{"doctor":{{"program":"/bin/sh"}}}}}}"#
        )
        .unwrap();
        // A peer tool is named by its values only: an argv is an unknown
        // field, a client on the engine host out of its role; a server
        // from its values starts and the teardown stops it.
        writeln!(
            stdin,
            r#"{{"id":3,"call":{{"start_peer_server":{{"server":{{"iperf3":{{"port":7002,"argv":["--logfile","/tmp/bl-escaped"]}}}},"core":0}}}}}}"#
        )
        .unwrap();
        writeln!(
            stdin,
            r#"{{"id":4,"call":{{"run_peer_client":{{"client":{{"iperf3":{{"server":"10.77.0.3:7002","bytes":1000,"streams":1}}}},"core":0,"limit_s":10}}}}}}"#
        )
        .unwrap();
        writeln!(
            stdin,
            r#"{{"id":5,"call":{{"start_peer_server":{{"server":{{"iperf3":{{"port":7002}}}},"core":0,"iface":"lo","netem":{{"delay_us":100,"jitter_us":0,"loss_percent":1.0}}}}}}}}"#
        )
        .unwrap();
        writeln!(stdin, r#"{{"id":6,"call":{{"teardown":{{}}}}}}"#).unwrap();
    }
    let out = support::finish(child, Duration::from_secs(30));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "every message answered: {}", out.stdout);
    assert!(lines[1].contains("unknown field `program`"), "{}", lines[1]);
    assert!(lines[2].contains("unknown field `argv`"), "{}", lines[2]);
    assert!(
        lines[3].contains("`run_peer_client` on a host whose role is engine"),
        "{}",
        lines[3]
    );
    assert!(lines[4].contains("peer_server_started"), "{}", lines[4]);
    assert!(
        lines[4].contains("none: this host has no netem"),
        "netem asked of a host without it is said: {}",
        lines[4]
    );
    assert!(
        lines[5].contains("stopped `taskset -c 0 iperf3 -s -1 -p 7002`"),
        "{}",
        lines[5]
    );
    assert!(!std::path::Path::new("/tmp/bl-escaped").exists());
    hosts.assert_nothing_left(&[], Duration::from_secs(10));
}

/// The orchestrating supervisor's own state directory (the owner's record
/// and control socket).
fn orchestrator_dir(hosts: &TwoHosts) -> std::path::PathBuf {
    std::path::Path::new(testbed::state::STATE_ROOT).join(&hosts.name)
}

/// The owner recorded for the run, if any.
fn owner_pid(hosts: &TwoHosts) -> Option<u32> {
    testbed::state::read_json::<serde_json::Value>(&orchestrator_dir(hosts).join("two-hosts.json"))
        .ok()
        .flatten()
        .map(|r| pid(&r["owner"]["pid"]))
}

/// Waits (bounded) until `done` holds.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_hosts_start_detach_attach_stats_stop() {
    if !require_root("two_hosts_start_detach_attach_stats_stop") {
        return;
    }
    bin_dir();
    for engine in ["kernel", "dpdk"] {
        let hosts = TwoHosts::plain("td");
        let config = hosts.standard_config();
        let c = config.to_str().unwrap();
        let started = hosts.run(
            &["start", "--config", c, "--engine", engine, "--detach"],
            LIMIT,
        );
        assert_eq!(started.code, Some(0), "{engine}: {}", started.stderr);
        assert!(started.stdout.contains("(two hosts)"), "{}", started.stdout);
        let owner = owner_pid(&hosts).expect("the owner is recorded");

        let stats = hosts.run(&["stats", "--config", c, "--json"], LIMIT);
        assert_eq!(stats.code, Some(0), "{}", stats.stderr);
        let doc = stats.json();
        assert_eq!(doc["record"]["engine"], engine, "{doc}");
        assert_eq!(doc["record"]["hosts"][0]["reached"], engine_url(), "{doc}");
        assert!(
            doc["segment"]["slots"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["role"] == "engine"),
            "the engine's slot comes from B's segment: {doc}"
        );

        let attached = hosts.run(
            &["attach", "--config", c, "--packets", "2000,1000", "--json"],
            LIMIT,
        );
        assert_eq!(attached.code, Some(0), "{}", attached.stderr);
        let rows = attached.json();
        for (row, packets) in rows.as_array().unwrap().iter().zip([2000, 1000]) {
            assert_eq!(row["answered"], packets, "{row}");
            assert_eq!(row["failed"], 0, "{row}");
            assert_eq!(
                row["engine_received"].as_u64().unwrap(),
                packets + row["warmup"].as_u64().unwrap(),
                "{row}"
            );
        }

        // A long attach: `stats` is answered while it runs, a second
        // attach is refused, and the caller's end stops its load generator.
        let long = hosts
            .command(&[
                "attach",
                "--config",
                c,
                "--packets",
                "50000000",
                "--timeout-ms",
                "1000",
            ])
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let long = support::Watched::new(long);
        let loadgen_running = || hosts.state_dir("client").join("loadgen.pid.json").exists();
        wait_until(
            "the long attach's load generator runs",
            LIMIT,
            loadgen_running,
        );
        std::thread::sleep(Duration::from_millis(500));
        let during = hosts.run(&["stats", "--config", c, "--json"], LIMIT);
        assert_eq!(during.code, Some(0), "{}", during.stderr);
        let engine_slot = during.json()["segment"]["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["role"] == "engine")
            .cloned()
            .unwrap();
        assert!(
            engine_slot["counters"]["messages_received"].as_u64() > Some(3000),
            "the engine's counters move during the attach: {engine_slot}"
        );
        let second = hosts.run(&["attach", "--config", c, "--packets", "10"], LIMIT);
        assert_eq!(second.code, Some(1), "{}", second.stderr);
        assert!(
            second.stderr.contains("already running"),
            "{}",
            second.stderr
        );
        kill(long.child.id(), "KILL");
        let _ = long.wait(Duration::from_secs(10));
        wait_until(
            "the load generator of the caller that left stops",
            Duration::from_secs(60),
            || !loadgen_running(),
        );
        let again = hosts.run(&["attach", "--config", c, "--packets", "500"], LIMIT);
        assert_eq!(again.code, Some(0), "{}", again.stderr);

        let stopped = hosts.run(&["stop", "--config", c], LIMIT);
        assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
        assert!(!support::alive(owner), "the owner is gone after stop");
        assert!(
            !orchestrator_dir(&hosts).exists(),
            "the orchestrator's record and socket are removed"
        );
        hosts.assert_nothing_left(&[owner], Duration::from_secs(30));
    }
}

#[test]
fn two_hosts_a_killed_owner_leaves_nothing_on_the_hosts_and_stop_clears_its_record() {
    if !require_root("two_hosts_killed_owner") {
        return;
    }
    bin_dir();
    let hosts = TwoHosts::plain("to");
    let config = hosts.standard_config();
    let c = config.to_str().unwrap();
    let started = hosts.run(
        &["start", "--config", c, "--engine", "kernel", "--detach"],
        LIMIT,
    );
    assert_eq!(started.code, Some(0), "{}", started.stderr);
    let owner = owner_pid(&hosts).expect("the owner is recorded");
    let engine_pid = hosts
        .run_state("engine")
        .map(|s| pid(&s["engine"]["pid"]))
        .expect("B records its engine");
    kill(owner, "KILL");
    // Its SSH sessions' input ended with it: each host tears down.
    wait_until(
        "B's engine stops once the owner's session ends",
        Duration::from_secs(30),
        || !support::alive(engine_pid),
    );
    let stats = hosts.run(&["stats", "--config", c], LIMIT);
    assert_eq!(stats.code, Some(1), "{}", stats.stderr);
    assert!(
        stats.stderr.contains(&format!("(pid {owner})")) && stats.stderr.contains("is gone"),
        "{}",
        stats.stderr
    );
    let stopped = hosts.run(&["stop", "--config", c], LIMIT);
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
    assert!(!orchestrator_dir(&hosts).exists());
    hosts.assert_nothing_left(&[owner, engine_pid], Duration::from_secs(30));
}

/// Removes a bench's output directory however the test ends.
struct OutDir(std::path::PathBuf);

impl Drop for OutDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `bench` over two hosts: every engine this build has measured on B with
/// the load generator on A, the peers' servers on B and clients on A
/// through the same sessions (netperf, not installed, failing with the
/// host's words), the hosts recorded, and the impaired half (B has no
/// netem) not measured, with the reason, rather than reported as impaired.
#[test]
fn two_hosts_bench_measures_each_engine_on_b() {
    if !require_root("two_hosts_bench_measures_each_engine_on_b") {
        return;
    }
    bin_dir();
    let hosts = TwoHosts::plain("tn");
    let config = hosts.standard_config();
    let out = OutDir(hosts.dir.join("bench-out"));
    let engines: Vec<&str> = engines().iter().map(|e| e.as_str()).collect();
    let engines = engines.join(",");
    let ran = hosts.run(
        &[
            "bench",
            "--config",
            config.to_str().unwrap(),
            "--engines",
            &engines,
            "--impairment",
            "off,on",
            "--tests",
            "closed",
            "--connections",
            "1",
            "--packets",
            "2000",
            "--repetitions",
            "1",
            "--out",
            out.0.to_str().unwrap(),
        ],
        LIMIT,
    );
    // Exit 1: the report is complete but for the impaired half's cells.
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.0.join("results.json")).unwrap()).unwrap();

    let recorded = doc["hosts"].as_array().expect("hosts recorded");
    assert_eq!(recorded[0]["role"], "engine", "{recorded:?}");
    assert_eq!(recorded[0]["reached"], engine_url());
    assert_eq!(recorded[1]["role"], "client");
    let peer_cell = |subject: &str, test: &str, impairment: &str| {
        doc["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["kind"] == "peer"
                    && c["subject"] == subject
                    && c["test"] == test
                    && c["impairment"] == impairment
            })
            .unwrap_or_else(|| panic!("no {subject} {test} {impairment} cell: {}", doc["cells"]))
            .clone()
    };
    for (subject, test) in [
        ("sockperf", "ping-pong"),
        ("sockperf", "under-load"),
        ("iperf3", "bulk"),
    ] {
        let off = peer_cell(subject, test, "off");
        let runs = off["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{off}");
        let command = runs[0]["command"].as_str().unwrap();
        assert!(
            command.starts_with("taskset -c ") && command.contains("(on client host ssh://"),
            "the client ran on A: {command}"
        );
        if subject == "sockperf" {
            let log = out.0.join("logs/off/sockperf-server.log");
            let text = std::fs::read_to_string(&log).unwrap();
            assert!(
                text.contains("[the server "),
                "B's server log came back: {text}"
            );
        }
        assert!(
            runs[0]["figures"]["messages_per_s"].as_f64().unwrap_or(0.0) > 0.0
                || runs[0]["figures"]["bandwidth_kb_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{off}"
        );
        let log = out.0.join(runs[0]["detail"]["log"].as_str().unwrap());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.len() > 100, "{}: {text}", log.display());
        let on = peer_cell(subject, test, "on");
        let errors = on["errors"].to_string();
        assert!(on["runs"].as_array().unwrap().is_empty(), "{on}");
        assert!(
            errors.contains("not impaired over two hosts") && errors.contains("has no netem"),
            "{on}"
        );
    }
    let bulk = peer_cell("iperf3", "bulk", "off");
    assert!(
        bulk["runs"][0]["command"]
            .as_str()
            .unwrap()
            .contains(" iperf3 -s -1 -p "),
        "{bulk}"
    );
    assert!(
        bulk["runs"][0]["command"]
            .as_str()
            .unwrap()
            .contains("(on engine host ssh://"),
        "{bulk}"
    );
    assert!(
        bulk["runs"][0]["command"]
            .as_str()
            .unwrap()
            .contains("impairment: none)"),
        "{bulk}"
    );
    let netperf = peer_cell("netperf", "tcp_rr", "off");
    assert!(netperf["runs"].as_array().unwrap().is_empty(), "{netperf}");
    assert!(
        netperf["errors"].to_string().contains("netserver"),
        "B's words on the missing tool: {netperf}"
    );
    for engine in engines.split(',') {
        let cell = |impairment: &str| {
            doc["cells"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["subject"] == engine && c["impairment"] == impairment)
                .unwrap_or_else(|| panic!("no {engine} {impairment} cell: {}", doc["cells"]))
                .clone()
        };
        let off = cell("off");
        let runs = off["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{off}");
        assert_eq!(runs[0]["figures"]["messages"], 2000.0, "{off}");
        assert_eq!(runs[0]["clean"], true, "{off}");
        assert!(runs[0]["figures"]["rtt_p50_us"].as_f64().unwrap() > 0.0);
        let own = &runs[0]["detail"]["loadgen_report"];
        assert_eq!(
            own["answered"], 2000,
            "A's load generator's own report: {own}"
        );
        assert_eq!(off["client"], "kernel");

        let on = cell("on");
        assert!(on["runs"].as_array().unwrap().is_empty(), "{on}");
        let errors = on["errors"].to_string();
        assert!(
            errors.contains("not impaired over two hosts") && errors.contains("has no netem"),
            "{on}"
        );
    }
    let described: Vec<String> = doc["testbeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["described"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        described.iter().all(|d| d.starts_with("two hosts: ")),
        "{described:?}"
    );
    let markdown = std::fs::read_to_string(out.0.join("results.md")).unwrap();
    assert!(markdown.contains("**Two hosts**"), "{markdown}");
    hosts.assert_nothing_left(&[], Duration::from_secs(10));
}
