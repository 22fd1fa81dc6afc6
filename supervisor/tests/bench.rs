//! `supervisor bench` end to end, small: 10 000 messages, one repetition,
//! no impairment, kernel and dpdk engines beside sockperf (root: it builds
//! namespaces and hugepages). Checks the report's structure and that every
//! figure is a real measurement, consistent with the loadgen's own counters.
//! A guard stops the bench and removes its testbed even if the test fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{require_root, HostLock, Watched, SUPERVISOR};

const PACKETS: u64 = 10_000;

/// A running bench; dropping it stops it (by pid) and removes its testbed.
struct BenchRun {
    run: Option<Watched>,
    pid: u32,
    out: PathBuf,
    _host: HostLock,
}

impl BenchRun {
    fn start(args: &[&str], out: PathBuf) -> Self {
        let _ = std::fs::remove_dir_all(&out);
        Self::start_in(args, out)
    }

    /// Starts a bench into `out` as it is (a report there may be resumed).
    fn start_in(args: &[&str], out: PathBuf) -> Self {
        let host = HostLock::shared();
        let child = Command::new(SUPERVISOR)
            .arg("bench")
            .args(args)
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self {
            pid: child.id(),
            run: Some(Watched::new(child)),
            out,
            _host: host,
        }
    }

    /// Whether it still runs.
    fn running(&mut self) -> bool {
        self.run
            .as_mut()
            .is_some_and(|r| r.child.try_wait().ok().flatten().is_none())
    }

    /// Waits at most `limit`; returns (success, stderr).
    fn wait(&mut self, limit: Duration) -> (bool, String) {
        let (code, err) = self.wait_code(limit);
        (code == Some(0), err)
    }

    /// Waits at most `limit`; returns (exit code, stderr).
    fn wait_code(&mut self, limit: Duration) -> (Option<i32>, String) {
        let ran = self.run.take().expect("waited once").wait(limit);
        (ran.code, ran.stderr)
    }
}

impl Drop for BenchRun {
    fn drop(&mut self) {
        let pid = self.pid;
        if let Some(mut run) = self.run.take() {
            if run.child.try_wait().ok().flatten().is_none() {
                // SIGTERM: the bench stops its runs and removes its testbeds.
                let _ = Command::new("kill").arg(pid.to_string()).status();
                let deadline = Instant::now() + Duration::from_secs(60);
                while run.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = run.child.kill();
                let _ = run.child.wait();
            }
        }
        // Whatever is left of its testbeds (named after its pid).
        for tag in ["o", "i"] {
            let name = format!("b{tag}{pid}");
            let config = std::env::temp_dir().join(format!("bypasslab-bench-{name}.toml"));
            if std::fs::write(&config, format!("[testbed]\nname = \"{name}\"\n")).is_ok() {
                for args in [&["stop"][..], &["net", "down"][..]] {
                    let _ = Command::new(SUPERVISOR)
                        .args(args)
                        .arg("--config")
                        .arg(&config)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
                let _ = std::fs::remove_file(&config);
            }
        }
        let _ = std::fs::remove_dir_all(&self.out);
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * a.abs().max(b.abs())
}

fn check_plot(out: &Path, rel: &str) {
    let bytes = std::fs::read(out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert!(bytes.len() > 1000, "{rel} is only {} bytes", bytes.len());
    if rel.ends_with(".png") {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{rel} is not a PNG");
    } else {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("<svg") && text.trim_end().ends_with("</svg>"),
            "{rel} is not an SVG"
        );
        assert!(
            text.contains("<polyline") || text.contains("<path"),
            "{rel} draws nothing"
        );
    }
}

/// Every engine figure is a measurement: non-zero, ordered percentiles, and
/// the same as the loadgen's own JSON result and the engine's counter.
fn check_engine_run(cell: &Value, run: &Value, packets: u64) {
    let what = format!("{} {} run", cell["subject"], cell["test"]);
    let fig = &run["figures"];
    assert_eq!(run["clean"], true, "{what}: not clean: {run}");
    assert_eq!(
        run["inconsistencies"].as_array().map(Vec::len),
        Some(0),
        "{what}: {run}"
    );
    assert_eq!(f(&fig["messages"]), packets as f64, "{what}");
    for key in [
        "elapsed_s",
        "messages_per_s",
        "bandwidth_kb_s",
        "rtt_mean_us",
        "rtt_p50_us",
        "rtt_p99_us",
        "rtt_p999_us",
        "rtt_max_us",
    ] {
        assert!(f(&fig[key]) > 0.0, "{what}: {key} is {}", fig[key]);
    }
    for share in ["engine_busy", "loadgen_busy"] {
        let v = f(&fig[share]);
        assert!(v > 0.0 && v <= 1.0, "{what}: {share} is {v}");
    }
    assert!(f(&fig["rtt_p50_us"]) <= f(&fig["rtt_p99_us"]));
    assert!(f(&fig["rtt_p99_us"]) <= f(&fig["rtt_p999_us"]));
    assert!(f(&fig["rtt_p999_us"]) <= f(&fig["rtt_max_us"]) * 1.001);
    // Rate and time agree; bandwidth is 512..=1024-byte messages at that rate.
    assert!(
        close(
            f(&fig["messages"]) / f(&fig["elapsed_s"]),
            f(&fig["messages_per_s"]),
            0.01
        ),
        "{what}"
    );
    let bytes_per_msg = f(&fig["bandwidth_kb_s"]) * 1000.0 / f(&fig["messages_per_s"]);
    assert!(
        (512.0..=1024.0).contains(&bytes_per_msg),
        "{what}: {bytes_per_msg} B/message"
    );
    // The loadgen's own counters.
    let own = &run["detail"]["loadgen_report"];
    assert_eq!(f(&own["answered"]), f(&fig["messages"]), "{what}: {own}");
    assert_eq!(f(&own["failed"]), 0.0, "{what}");
    assert!(
        close(f(&own["messages_per_s"]), f(&fig["messages_per_s"]), 0.02),
        "{what}: {own}"
    );
    assert!(
        close(f(&own["latency"]["p50_us"]), f(&fig["rtt_p50_us"]), 0.02),
        "{what}: {own}"
    );
    // The engine's own counter: every request, warm-up included.
    let row = &run["detail"]["row"];
    assert_eq!(
        f(&row["engine_received"]),
        f(&row["sent"]) + f(&row["warmup"]),
        "{what}: {row}"
    );
    assert_eq!(
        f(&run["detail"]["histogram_count"]),
        packets as f64,
        "{what}"
    );
    // The CDF rises from 0 to 1 and never falls.
    let cdf = run["cdf"].as_array().unwrap();
    assert!(cdf.len() > 50, "{what}: {} CDF points", cdf.len());
    let points: Vec<(f64, f64)> = cdf.iter().map(|p| (f(&p[0]), f(&p[1]))).collect();
    assert!(
        points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1),
        "{what}: CDF not monotone"
    );
    assert_eq!(points.last().map(|p| p.0), Some(1.0));
}

/// A short-connection run: one connection per message, its rate and
/// handshake time as the load generator counted them.
fn check_short_run(run: &Value, packets: u64) {
    let fig = &run["figures"];
    let own = &run["detail"]["loadgen_report"];
    assert_eq!(own["pattern"], "short", "{own}");
    assert_eq!(
        f(&own["connections_completed"]),
        packets as f64,
        "one connection per message: {own}"
    );
    assert_eq!(
        f(&own["connect_refused"]) + f(&own["connect_failed"]) + f(&own["connect_timeouts"]),
        0.0,
        "{own}"
    );
    assert!(
        close(
            f(&fig["connections_per_s"]),
            f(&own["connections_per_s"]),
            1e-9
        ),
        "{fig} {own}"
    );
    assert!(
        close(
            f(&fig["connections_per_s"]),
            f(&fig["messages_per_s"]),
            0.01
        ),
        "one request per connection: {fig}"
    );
    assert!(f(&fig["connect_p50_us"]) > 0.0, "{fig}");
    assert!(
        f(&fig["connect_p50_us"]) <= f(&fig["connect_p99_us"]),
        "{fig}"
    );
}

#[test]
fn bench_writes_a_real_report() {
    if !require_root("bench_writes_a_real_report") {
        return;
    }
    let out = std::env::temp_dir().join(format!("bypasslab-bench-test-{}", std::process::id()));
    let mut bench = BenchRun::start(
        &[
            "--packets",
            "10000",
            "--connections",
            "1,16",
            "--engines",
            "kernel,dpdk",
            "--clients",
            "kernel",
            "--peers",
            "sockperf",
            "--impairment",
            "off",
            "--repetitions",
            "1",
            "--warmup",
            "200",
        ],
        out.clone(),
    );
    let (ok, stderr) = bench.wait(Duration::from_secs(240));
    assert!(ok, "supervisor bench failed:\n{stderr}");

    let doc: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(doc["schema"], 3);
    assert_eq!(doc["sessions"].as_array().map(Vec::len), Some(1));
    assert!(doc["command"].as_str().unwrap().contains("bench"));
    assert!(!doc["git_revision"].as_str().unwrap().is_empty());
    assert!(
        doc["host"]["doctor"]["checks"].is_array(),
        "doctor facts missing"
    );
    assert!(doc["host"]["cores"].as_u64().unwrap() >= 1);
    assert_eq!(doc["configuration"]["repetitions"], 1);
    assert_eq!(doc["configuration"]["packets"], serde_json::json!([10000]));
    assert_eq!(doc["interrupted"], false);
    assert_eq!(doc["testbeds"].as_array().unwrap().len(), 1);

    // Engines: each measured, or listed with the reason.
    let mut measured = Vec::new();
    for e in doc["engines"].as_array().unwrap() {
        if e["available"] == true {
            measured.push(e["name"].as_str().unwrap().to_owned());
        } else {
            assert!(!e["reason"].as_str().unwrap_or("").is_empty(), "{e}");
        }
    }
    assert!(
        measured.contains(&"kernel".to_owned()),
        "{}",
        doc["engines"]
    );
    let sockperf = doc["peers"][0]["available"] == true;

    let cells = doc["cells"].as_array().unwrap();
    let with = |subject: &str, test: &str, connections: u64, client: &str| {
        cells
            .iter()
            .find(|c| {
                c["subject"] == subject
                    && c["test"] == test
                    && c["connections"] == connections
                    && c["client"] == client
            })
            .unwrap_or_else(|| {
                panic!("no {subject} {test} cell at {connections} connections, {client} client")
            })
    };
    let at =
        |subject: &str, test: &str, connections: u64| with(subject, test, connections, "kernel");
    for engine in &measured {
        for connections in [1, 16] {
            for test in ["closed", "open", "short"] {
                let cell = at(engine, test, connections);
                assert_eq!(cell["errors"].as_array().map(Vec::len), Some(0), "{cell}");
                let runs = cell["runs"].as_array().unwrap();
                assert_eq!(runs.len(), 1);
                check_engine_run(cell, &runs[0], PACKETS);
                // R = 1: the median is the run.
                assert_eq!(cell["aggregate"]["median"], runs[0]["figures"]);
                if test == "short" {
                    check_short_run(&runs[0], PACKETS);
                }
                if test == "open" {
                    let closed = at(engine, "closed", connections);
                    let expected = f(&closed["aggregate"]["median"]["messages_per_s"]) * 0.8;
                    assert!(close(f(&cell["target_rate"]), expected, 0.01), "{cell}");
                }
            }
        }
    }
    if sockperf {
        for test in ["ping-pong", "under-load"] {
            let cell = cells
                .iter()
                .find(|c| c["subject"] == "sockperf" && c["test"] == test)
                .unwrap_or_else(|| panic!("no sockperf {test} cell"));
            assert_eq!(cell["errors"].as_array().map(Vec::len), Some(0), "{cell}");
            let fig = &cell["runs"][0]["figures"];
            for key in [
                "messages",
                "messages_per_s",
                "bandwidth_kb_s",
                "rtt_mean_us",
                "rtt_p50_us",
                "rtt_p99_us",
            ] {
                assert!(f(&fig[key]) > 0.0, "sockperf {test}: {key} is {}", fig[key]);
            }
            assert!(cell["runs"][0]["command"]
                .as_str()
                .unwrap()
                .contains("sockperf"));
        }
        let kernel = cells
            .iter()
            .find(|c| c["subject"] == "kernel" && c["test"] == "closed")
            .unwrap();
        assert!(f(&kernel["ratios"]["messages_per_s_vs_sockperf"]) > 0.0);
        assert!(close(
            f(&kernel["ratios"]["messages_per_s_vs_kernel"]),
            1.0,
            1e-9
        ));
    } else {
        assert!(!doc["peers"][0]["reason"].as_str().unwrap().is_empty());
    }

    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| 10000 |"), "{md}");
    assert!(md.contains("### Every cell, one row each"), "{md}");
    assert!(
        md.contains("| 10000 | kernel | closed | 1 | kernel | own | 1 |"),
        "{md}"
    );
    assert!(
        md.contains("| 10000 | kernel | closed | 16 | kernel | own | 1 |"),
        "{md}"
    );
    assert!(
        md.contains("### Scaling with connections — closed loop"),
        "{md}"
    );
    assert!(
        md.contains("### Scaling with connections — short connections")
            && md.contains("kernel conns/s"),
        "{md}"
    );
    assert!(
        md.contains("kernel closed p50") && md.contains("Ratios"),
        "{md}"
    );
    for engine in &measured {
        assert!(md.contains(&format!("{engine} open msgs/s")), "{md}");
    }
    if sockperf {
        assert!(md.contains("sockperf ping-pong p99.9"), "{md}");
    }

    let plots: Vec<&str> = doc["plots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for stem in [
        "latency-cdf-off",
        "latency-per-count-off",
        "throughput-per-count-off",
        "rate-per-connections-closed-off",
        "p99-per-connections-closed-off",
        "rate-per-connections-short-off",
    ] {
        for ext in ["svg", "png"] {
            let rel = format!("plots/{stem}.{ext}");
            assert!(plots.contains(&rel.as_str()), "{rel} not listed: {plots:?}");
            check_plot(&out, &rel);
        }
    }
}

/// `--estimate` calibrates, prices the runs and measures nothing.
#[test]
fn bench_measures_each_engine_cell_with_each_client_stack() {
    if !require_root("bench_measures_each_engine_cell_with_each_client_stack") {
        return;
    }
    let out = std::env::temp_dir().join(format!("bypasslab-bench-clients-{}", std::process::id()));
    let mut bench = BenchRun::start(
        &[
            "--packets",
            "2000",
            "--connections",
            "1",
            "--tests",
            "closed,open",
            "--engines",
            "kernel,dpdk",
            "--clients",
            "kernel,dpdk",
            "--peers",
            "sockperf",
            "--impairment",
            "off",
            "--repetitions",
            "1",
            "--warmup",
            "100",
            "--no-estimate",
        ],
        out.clone(),
    );
    let (ok, stderr) = bench.wait(Duration::from_secs(240));
    assert!(ok, "supervisor bench failed:\n{stderr}");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        doc["configuration"]["halves"]["off"]["clients"],
        serde_json::json!(["kernel", "dpdk"])
    );
    let engine_cells: Vec<&Value> = doc["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "engine")
        .collect();
    // The open loop pipelines requests into full segments on one
    // connection: each must still fit the link.
    for engine in ["kernel", "dpdk"] {
        for client in ["kernel", "dpdk"] {
            for test in ["closed", "open"] {
                let what = format!("{client}→{engine} {test}");
                let cell = engine_cells
                    .iter()
                    .find(|c| c["subject"] == engine && c["client"] == client && c["test"] == test)
                    .unwrap_or_else(|| panic!("no {what} cell: {doc}"));
                let runs = cell["runs"].as_array().unwrap();
                assert_eq!(runs.len(), 1, "{what}: {cell}");
                assert_eq!(runs[0]["clean"], true, "{what}: {cell}");
                assert_eq!(runs[0]["figures"]["messages"], 2000.0, "{what}: {cell}");
            }
        }
    }
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("### Both ends"), "{md}");
    assert!(md.contains("dpdk→dpdk p50"), "{md}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `--pmd memif` measures the bypass engines with the DPDK client through
/// shared memory, and says so in the report.
#[test]
fn bench_on_the_memif_pair_measures_the_dpdk_client_against_the_bypass_engines() {
    if !require_root("bench_on_the_memif_pair") {
        return;
    }
    let out = std::env::temp_dir().join(format!("bypasslab-bench-memif-{}", std::process::id()));
    let mut bench = BenchRun::start(
        &[
            "--pmd",
            "memif",
            "--impairment",
            "off",
            "--packets",
            "2000",
            "--connections",
            "1",
            "--tests",
            "closed",
            "--peers",
            "sockperf",
            "--repetitions",
            "1",
            "--warmup",
            "100",
            "--no-estimate",
        ],
        out.clone(),
    );
    let (ok, stderr) = bench.wait(Duration::from_secs(240));
    assert!(ok, "supervisor bench failed:\n{stderr}");
    let doc = read_report(&out);
    let engine_cells: Vec<&Value> = doc["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "engine")
        .collect();
    assert!(
        engine_cells
            .iter()
            .all(|c| c["subject"] != "kernel" && c["client"] == "dpdk"),
        "{doc}"
    );
    let dpdk = engine_cells
        .iter()
        .find(|c| c["subject"] == "dpdk")
        .unwrap_or_else(|| panic!("no dpdk cell: {doc}"));
    let runs = dpdk["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{dpdk}");
    assert_eq!(runs[0]["clean"], true, "{dpdk}");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("**memif pair**"), "{md}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_estimate_prices_the_matrix_and_measures_nothing() {
    if !require_root("the_estimate_prices_the_matrix_and_measures_nothing") {
        return;
    }
    let out = std::env::temp_dir().join(format!("bypasslab-bench-estimate-{}", std::process::id()));
    let mut bench = BenchRun::start(
        &[
            "--estimate",
            "--packets",
            "5000",
            "--connections",
            "1,8",
            "--engines",
            "kernel",
            "--peers",
            "iperf3",
            "--impairment",
            "off",
            "--repetitions",
            "2",
        ],
        out.clone(),
    );
    let (ok, stderr) = bench.wait(Duration::from_secs(120));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("supervisor: estimated "), "{stderr}");
    assert!(stderr.contains("kernel off 1 conn."), "{stderr}");
    assert!(stderr.contains("kernel off 8 conn."), "{stderr}");
    assert!(
        !out.join("results.json").exists(),
        "an estimate measures nothing"
    );
}

#[test]
fn bad_options_fail_clearly_and_measure_nothing() {
    let out = support::run_bounded(
        Command::new(SUPERVISOR).args(["bench", "--engines", "kernel,bogus"]),
        support::QUICK,
    );
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.clone().contains("bogus"));

    let out = support::run_bounded(
        Command::new(SUPERVISOR)
            .args(["bench", "--repetitions", "0", "--out"])
            .arg(std::env::temp_dir().join("bypasslab-bench-never")),
        support::QUICK,
    );
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.clone().contains("--repetitions"));

    let out = support::run_bounded(
        Command::new(SUPERVISOR).args([
            "bench",
            "--packets",
            "10",
            "--out",
            "/proc/bypasslab-no/such",
        ]),
        support::QUICK,
    );
    assert_eq!(out.code, Some(1));
    let err = out.stderr.clone();
    assert!(
        err.contains("cannot write the report to /proc/bypasslab-no"),
        "{err}"
    );

    // memif has no link to impair, and only the DPDK client reaches it.
    for (args, want) in [
        (&["bench", "--pmd", "memif"][..], "--impairment"),
        (
            &[
                "bench",
                "--pmd",
                "memif",
                "--impairment",
                "off",
                "--clients",
                "kernel",
            ][..],
            "--clients",
        ),
        (
            &[
                "bench",
                "--pmd",
                "memif",
                "--impairment",
                "off",
                "--engines",
                "kernel",
            ][..],
            "--engines",
        ),
    ] {
        let out = support::run_bounded(Command::new(SUPERVISOR).args(args), support::QUICK);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(want) && out.stderr.contains("memif"),
            "{args:?}: {}",
            out.stderr
        );
    }

    // Over two hosts, what only this host's testbed has is refused by
    // name before any host is reached (engine.invalid never resolves).
    let config =
        std::env::temp_dir().join(format!("bypasslab-bench-hosts-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[hosts]\nengine = \"ssh://root@engine.invalid\"\n[engine_host]\niface = \"eth1\"\n",
    )
    .unwrap();
    let out_dir = std::env::temp_dir().join("bypasslab-bench-hosts-never");
    for (extra, option, why) in [
        (&["--clients", "dpdk"][..], "--clients", "two-host run"),
        (&["--rto-min", "10"][..], "--rto-min", "own minimum RTO"),
        (
            &["--pmd", "memif", "--impairment", "off"][..],
            "--pmd",
            "memif",
        ),
        (&["--estimate"][..], "--estimate", "calibration"),
    ] {
        let out = support::run_bounded(
            Command::new(SUPERVISOR)
                .args(["bench", "--config"])
                .arg(&config)
                .arg("--out")
                .arg(&out_dir)
                .args(extra),
            support::QUICK,
        );
        assert_eq!(out.code, Some(2), "{extra:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(option) && out.stderr.contains(why),
            "{extra:?}: {}",
            out.stderr
        );
        assert!(!out_dir.exists(), "{extra:?} created {}", out_dir.display());
    }
    let _ = std::fs::remove_file(&config);
}

fn read_report(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap()
}

fn runs_of(doc: &Value, subject: &str, test: &str) -> Vec<Value> {
    doc["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"] == subject && c["test"] == test)
        .and_then(|c| c["runs"].as_array().cloned())
        .unwrap_or_default()
}

/// A bench stopped by SIGINT keeps every repetition it finished, says how
/// to go on, and `--resume` adds only what is missing; a report is never
/// replaced or mixed with other settings by accident.
#[test]
fn an_interrupted_bench_resumes_where_it_stopped() {
    if !require_root("an_interrupted_bench_resumes_where_it_stopped") {
        return;
    }
    let out = std::env::temp_dir().join(format!("bypasslab-bench-resume-{}", std::process::id()));
    let args = [
        "--packets",
        "2000",
        "--connections",
        "1",
        "--no-estimate",
        "--engines",
        "kernel",
        "--peers",
        "iperf3",
        "--impairment",
        "off",
        "--repetitions",
        "3",
        "--warmup",
        "100",
    ];
    let mut bench = BenchRun::start(&args, out.clone());
    // Interrupt once the first repetition is saved.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let saved = std::fs::read(out.join("results.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|d| !runs_of(&d, "kernel", "closed").is_empty());
        if saved {
            break;
        }
        assert!(Instant::now() < deadline, "no repetition saved within 90 s");
        assert!(bench.running(), "bench ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-INT", &bench.pid.to_string()])
        .status();
    let (code, stderr) = bench.wait_code(Duration::from_secs(60));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let first = read_report(&out);
    assert_eq!(first["interrupted"], true);
    let kept = runs_of(&first, "kernel", "closed");
    assert!(!kept.is_empty() && kept.len() < 4, "{kept:?}");
    for cell in first["cells"].as_array().unwrap() {
        assert_eq!(
            cell["errors"].as_array().map(Vec::len),
            Some(0),
            "an interruption is not a failure: {cell}"
        );
    }
    let first_bytes = std::fs::read(out.join("results.json")).unwrap();

    // Without --resume the report is not replaced; with other settings it
    // is not mixed.
    let refused = support::run_bounded(
        Command::new(SUPERVISOR)
            .arg("bench")
            .args(args)
            .arg("--out")
            .arg(&out),
        support::QUICK,
    );
    assert_eq!(refused.code, Some(2));
    assert!(refused.stderr.clone().contains("--resume"));
    let mismatched = support::run_bounded(
        Command::new(SUPERVISOR)
            .arg("bench")
            .args(args)
            .args(["--open-fraction", "0.5", "--resume", "--out"])
            .arg(&out),
        support::QUICK,
    );
    assert_eq!(mismatched.code, Some(2));
    assert!(mismatched.stderr.clone().contains("open_fraction"));
    assert_eq!(
        std::fs::read(out.join("results.json")).unwrap(),
        first_bytes
    );

    // --resume measures what is missing and keeps what was measured.
    let mut resumed = BenchRun::start_in(&[&args[..], &["--resume"]].concat(), out.clone());
    let (ok, stderr) = resumed.wait(Duration::from_secs(170));
    assert!(ok, "resumed bench failed:\n{stderr}");
    let doc = read_report(&out);
    assert_eq!(doc["interrupted"], false);
    assert_eq!(doc["sessions"].as_array().map(Vec::len), Some(2));
    assert_eq!(doc["sessions"][0]["interrupted"], true);
    let resumed_at = doc["sessions"][1]["started_utc"].as_str().unwrap();
    for (subject, test) in [("kernel", "closed"), ("kernel", "open"), ("iperf3", "bulk")] {
        let runs = runs_of(&doc, subject, test);
        assert_eq!(runs.len(), 3, "{subject} {test}: {runs:?}");
        let before = runs_of(&first, subject, test).len();
        for run in &runs[before..] {
            let started = run["started_utc"].as_str().unwrap();
            assert!(
                started >= resumed_at,
                "{subject} {test}: {started} < {resumed_at}"
            );
        }
    }
    let closed = runs_of(&doc, "kernel", "closed");
    for (before, after) in kept.iter().zip(&closed) {
        assert_eq!(before, after, "a kept run changed");
    }
    for run in &closed {
        check_engine_run(&Value::Null, run, 2000);
    }
    let open = doc["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"] == "kernel" && c["test"] == "open")
        .unwrap();
    let closed_median = f(&doc["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"] == "kernel" && c["test"] == "closed")
        .unwrap()["aggregate"]["median"]["messages_per_s"]);
    assert!(f(&open["target_rate"]) > 0.0 && f(&open["target_rate"]) <= closed_median);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("Measured in 2 sessions"), "{md}");

    // A file that is not a report is named, and left alone.
    std::fs::write(out.join("results.json"), b"{\"schema\": 2, \"cells\": [").unwrap();
    let corrupt = support::run_bounded(
        Command::new(SUPERVISOR)
            .arg("bench")
            .args(args)
            .arg("--resume")
            .arg("--out")
            .arg(&out),
        support::QUICK,
    );
    assert_eq!(corrupt.code, Some(2));
    assert!(corrupt.stderr.clone().contains("is not a bench report"));
    assert_eq!(
        std::fs::read(out.join("results.json")).unwrap(),
        b"{\"schema\": 2, \"cells\": ["
    );
}
