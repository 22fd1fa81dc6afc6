//! The DPDK load generator (root: each test builds its own namespaces):
//! `--client dpdk` against the dpdk and the kernel engine over the plain
//! bridge answers every message and gives NS1 back as it was (its address,
//! no XDP program, no EAL runtime directory or hugepage file of the
//! client's prefix); a kill -9 of the client mid-run is reported, never
//! clean, and cleaned up the same way; `stats --json` names the client's
//! stack and PMD while it runs.
//!
//! The network is brought up by the test before the run, so that NS1 still
//! exists after it and what the run gave back can be looked at.

mod support;

use std::process::Command;
use std::time::Duration;

use contract::EngineKind;
use support::{bin_dir, engines, kill, pid, require_root, run_bounded, Testbed, QUICK};
use testbed::run::client;
use testbed::state::{StateDir, StateFile};

/// Whether this build can run a DPDK client (the dpdk engine's kinds
/// listing says whether DPDK is there at all); says so when it cannot.
fn dpdk_available(test: &str) -> bool {
    let ok = engines().contains(&EngineKind::Dpdk);
    if !ok {
        eprintln!("skipped: {test}: this build has no DPDK");
    }
    ok
}

/// Asserts that NS1's veth is as the kernel client needs it: its address
/// back, no XDP program, nothing of the client's EAL prefix left.
fn assert_ns1_given_back(testbed: &Testbed) {
    let cfg = &testbed.cfg;
    let ns = cfg.client_ns();
    let iface = cfg.client_iface();
    let addr = run_bounded(
        Command::new("ip").args(["-n", &ns, "-o", "-4", "addr", "show", "dev", &iface]),
        QUICK,
    );
    assert!(
        addr.stdout
            .contains(&format!("{}/{}", cfg.client_addr(), cfg.prefix_len())),
        "NS1's address not given back: {}",
        addr.stdout
    );
    let link = run_bounded(
        Command::new("ip").args(["-n", &ns, "-d", "link", "show", "dev", &iface]),
        QUICK,
    );
    assert!(
        !link.stdout.contains("prog/xdp") && !link.stdout.contains(" xdp"),
        "an XDP program is left on NS1's veth: {}",
        link.stdout
    );
    let prefix = client::file_prefix(&testbed.name);
    assert!(
        !std::path::Path::new(&format!("/var/run/dpdk/{prefix}")).exists(),
        "the client's EAL runtime directory is left"
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    for dir in mounts
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        .filter_map(|l| l.split_whitespace().nth(1))
    {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(&prefix),
                "client hugepage file left: {}",
                entry.path().display()
            );
        }
    }
}

/// The kernel stack in NS1 works again: a kernel client's run against the
/// kernel engine answers every message.
fn assert_ns1_kernel_reaches_the_server(testbed: &Testbed) {
    let out = testbed.run(
        &[
            "run",
            "--engine",
            "kernel",
            "--client",
            "kernel",
            "--packets",
            "200",
            "--warmup",
            "10",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(
        out.code,
        Some(0),
        "NS1's kernel stack does not reach the server after the dpdk client: {}",
        out.stderr
    );
}

#[test]
fn dpdk_client_answers_every_message_against_both_engines_and_gives_ns1_back() {
    if !require_root("dpdk_client_against_both_engines") || !dpdk_available("dpdk_client") {
        return;
    }
    let bins = bin_dir();
    let bins = bins.to_str().unwrap();
    for engine in [EngineKind::Dpdk, EngineKind::Kernel] {
        let testbed = Testbed::plain("dc");
        testbed.up();
        let out = testbed.run(
            &[
                "run",
                "--engine",
                engine.as_str(),
                "--client",
                "dpdk",
                "--packets",
                "2000",
                "--warmup",
                "200",
                "--json",
                "--bin-dir",
                bins,
            ],
            Duration::from_secs(180),
        );
        assert_eq!(out.code, Some(0), "{engine}: {}", out.stderr);
        let doc = out.json();
        let row = &doc["rows"][0];
        assert_eq!(row["client"], "dpdk", "{row}");
        assert_eq!(row["client_pmd"], "af_xdp", "{row}");
        assert_eq!(row["client_core"], "spins", "{row}");
        assert_eq!(row["engine"], engine.as_str());
        assert_eq!(
            (row["answered"].as_u64(), row["failed"].as_u64()),
            (Some(2000), Some(0))
        );
        assert!(
            out.stderr.contains(&format!(
                "restored {}/{}",
                testbed.cfg.client_addr(),
                testbed.cfg.prefix_len()
            )),
            "{}",
            out.stderr
        );
        assert_ns1_given_back(&testbed);
        assert_ns1_kernel_reaches_the_server(&testbed);
        let down = testbed.net("down", &[]);
        assert!(down.success(), "{}", down.stderr);
        testbed.assert_nothing_left(&[]);
    }
}

#[test]
fn a_killed_dpdk_client_is_reported_and_ns1_cleaned_and_stats_named_its_stack() {
    if !require_root("killed_dpdk_client") || !dpdk_available("killed_dpdk_client") {
        return;
    }
    bin_dir();
    let testbed = Testbed::plain("dk");
    testbed.up();
    let mut child = testbed.spawn(&[
        "run",
        "--engine",
        "kernel",
        "--client",
        "dpdk",
        "--packets",
        "50000000",
        "--timeout-ms",
        "1000",
        "--json",
    ]);
    let state = testbed.wait_ready(&mut child);
    let engine_pid = pid(&state["engine"]["pid"]);
    let loadgen_pid = testbed.wait_loadgen(&mut child);

    // While it runs, `stats` names the client's stack and PMD (its slot
    // appears once EAL and the port are up).
    let doc = testbed.wait_client_slot(&mut child);
    assert_eq!(doc["client"]["stack"], "dpdk", "{doc}");
    assert_eq!(doc["client"]["pmd"], "af_xdp", "{doc}");
    let slots = doc["segment"]["slots"].as_array().expect("slots");
    assert!(
        slots
            .iter()
            .any(|s| s["role"] == "loadgen" && s["info"]["kind"] == "closed-loop dpdk af_xdp"),
        "{doc}"
    );

    kill(loadgen_pid, "KILL");
    let out = support::finish(child, Duration::from_secs(60));
    assert_eq!(out.code, Some(1), "lost messages end the run with code 1");
    assert!(
        out.stderr.contains(&format!(
            "the load generator (pid {loadgen_pid}) was killed by SIGKILL"
        )),
        "{}",
        out.stderr
    );
    let doc = out.json();
    let row = &doc["rows"][0];
    assert_eq!(row["loadgen_exit"]["name"], "SIGKILL");
    assert_eq!(row["client"], "dpdk");
    support::long_run::assert_not_clean(&doc, 1);
    assert_ns1_given_back(&testbed);
    assert_ns1_kernel_reaches_the_server(&testbed);
    let down = testbed.net("down", &[]);
    assert!(down.success(), "{}", down.stderr);
    testbed.assert_nothing_left(&[engine_pid, loadgen_pid]);
}

#[test]
fn a_dpdk_client_on_a_pci_pmd_or_two_hosts_is_refused_before_anything_is_set_up() {
    if !require_root("dpdk_client_pci_refused") {
        return;
    }
    let testbed = Testbed::plain("dr");
    let out = testbed.run(
        &[
            "run",
            "--client",
            "dpdk",
            "--client-pmd",
            "pci:0000:00:04.0",
            "--packets",
            "10",
        ],
        QUICK,
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("af_xdp or af_packet"), "{}", out.stderr);
    testbed.assert_nothing_left(&[]);

    // Two hosts have no NS1 veth to take over.
    let two_hosts = Testbed::new(
        "dh",
        "[hosts]\nclient = \"ssh://root@client.invalid\"\n[engine_host]\niface = \"lo\"",
    );
    let out = two_hosts.run(&["run", "--client", "dpdk", "--packets", "10"], QUICK);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("two-host run"), "{}", out.stderr);
    two_hosts.assert_nothing_left(&[]);
}

#[test]
fn after_a_crashed_supervisor_and_client_stop_gives_ns1_back_from_the_record() {
    if !require_root("crashed_supervisor_and_dpdk_client") || !dpdk_available("crashed_dpdk_client")
    {
        return;
    }
    bin_dir();
    let testbed = Testbed::plain("dx");
    testbed.up();
    let mut child = testbed.spawn(&[
        "run",
        "--engine",
        "kernel",
        "--client",
        "dpdk",
        "--packets",
        "50000000",
        "--timeout-ms",
        "1000",
        "--json",
    ]);
    let state = testbed.wait_ready(&mut child);
    let engine_pid = pid(&state["engine"]["pid"]);
    let loadgen_pid = testbed.wait_loadgen(&mut child);
    // Both die without a chance to clean: only the record is left.
    let supervisor_pid = child.id();
    kill(supervisor_pid, "KILL");
    let _ = support::wait_exit(&mut child, Duration::from_secs(10));
    kill(loadgen_pid, "KILL");
    let record = StateDir::of(&testbed.name).file(StateFile::ClientPort);
    assert!(record.exists(), "the client's hold on NS1 is recorded");

    let stopped = testbed.run(&["stop"], Duration::from_secs(60));
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains(&format!(
            "restored {}/{}",
            testbed.cfg.client_addr(),
            testbed.cfg.prefix_len()
        )),
        "{}",
        stopped.stderr
    );
    assert!(!record.exists(), "the record goes with what it recorded");
    assert_ns1_given_back(&testbed);
    assert_ns1_kernel_reaches_the_server(&testbed);
    let down = testbed.net("down", &[]);
    assert!(down.success(), "{}", down.stderr);
    testbed.assert_nothing_left(&[engine_pid, loadgen_pid, supervisor_pid]);
}

#[test]
fn over_the_impaired_link_the_dpdk_client_yields_to_the_emulator_on_its_core_and_says_so() {
    if !require_root("dpdk_client_impaired") || !dpdk_available("dpdk_client_impaired") {
        return;
    }
    let bins = bin_dir();
    let bins = bins.to_str().unwrap();
    // The default cores: the emulator on the load generator's core.
    let testbed = Testbed::impaired("di");
    let cores = testbed.cfg.cores();
    assert_eq!(cores.emulator, cores.loadgen, "the shared-core case");
    let out = testbed.run(
        &[
            "run",
            "--engine",
            "dpdk",
            "--client",
            "dpdk",
            "--packets",
            "2000",
            "--warmup",
            "100",
            "--json",
            "--bin-dir",
            bins,
        ],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "yields core {} to the link emulator",
            cores.loadgen
        )),
        "{}",
        out.stderr
    );
    let doc = out.json();
    let row = &doc["rows"][0];
    assert_eq!(row["client_core"], "yields_to_emulator", "{row}");
    assert!(
        row["impairment"]
            .as_str()
            .is_some_and(|i| i.starts_with("emulator")),
        "{row}"
    );
    assert_eq!(
        (row["answered"].as_u64(), row["failed"].as_u64()),
        (Some(2000), Some(0))
    );
    testbed.assert_nothing_left(&[]);
}
