//! The memif pair (root: each test builds its own namespaces): `--pmd
//! memif` joins each bypass engine this build has to the DPDK load
//! generator through DPDK's `net_memif`, answers every message, leaves NS1's
//! kernel address where it was (its veth is not on the path) and leaves no
//! socket, EAL directory or hugepage file; a kill -9 of the engine mid-run
//! is reported and its socket removed; what cannot take a memif is refused
//! before anything is set up. Its runs go on side by side: each run's
//! hugetlbfs mount holds the pages it needs (two DPDK processes each).

mod support;

use std::process::Command;
use std::time::Duration;

use contract::EngineKind;
use support::{bin_dir, engines, kill, pid, require_root, run_bounded, Testbed, QUICK};
use testbed::run::bypass::memif_socket;

/// NS1's veth still has its kernel address.
fn assert_ns1_address_kept(testbed: &Testbed) {
    let cfg = &testbed.cfg;
    let addr = run_bounded(
        Command::new("ip").args([
            "-n",
            &cfg.client_ns(),
            "-o",
            "-4",
            "addr",
            "show",
            "dev",
            &cfg.client_iface(),
        ]),
        QUICK,
    );
    assert!(
        addr.stdout
            .contains(&format!("{}/{}", cfg.client_addr(), cfg.prefix_len())),
        "NS1's address was touched: {}",
        addr.stdout
    );
}

#[test]
fn the_memif_pair_answers_every_message_and_leaves_nothing() {
    if !require_root("memif_pair") {
        return;
    }
    let bins = bin_dir();
    let bins = bins.to_str().unwrap();
    for engine in engines().into_iter().filter(|e| e.is_bypass()) {
        let testbed = Testbed::plain("mp");
        testbed.up();
        let out = testbed.run(
            &[
                "run",
                "--engine",
                engine.as_str(),
                "--client",
                "dpdk",
                "--pmd",
                "memif",
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
        let row = &out.json()["rows"][0];
        assert_eq!(row["client_pmd"], "memif", "{row}");
        assert_eq!(row["impairment"], "none", "{row}");
        assert_eq!(
            (row["answered"].as_u64(), row["failed"].as_u64()),
            (Some(2000), Some(0)),
            "{engine}: {row}"
        );
        assert!(
            out.stderr.contains("joins the engine's memif"),
            "{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("userspace stack answers for it"),
            "no kernel address is taken for memif: {}",
            out.stderr
        );
        assert_ns1_address_kept(&testbed);
        assert!(!memif_socket(&testbed.name).exists(), "the socket is left");
        let down = testbed.net("down", &[]);
        assert!(down.success(), "{}", down.stderr);
        testbed.assert_nothing_left(&[]);
    }
}

#[test]
fn a_killed_memif_engine_is_reported_and_its_socket_removed() {
    if !require_root("killed_memif_engine") {
        return;
    }
    bin_dir();
    let testbed = Testbed::plain("mk");
    testbed.up();
    let mut child = testbed.spawn(&[
        "run",
        "--engine",
        "dpdk",
        "--client",
        "dpdk",
        "--pmd",
        "memif",
        "--packets",
        "50000000",
        "--timeout-ms",
        "1000",
        "--json",
    ]);
    let state = testbed.wait_ready(&mut child);
    let engine_pid = pid(&state["engine"]["pid"]);
    let loadgen_pid = testbed.wait_loadgen(&mut child);
    // Killed once the client is connected and serving (its slot appears
    // once EAL and the port are up).
    let doc = testbed.wait_client_slot(&mut child);
    assert_eq!(doc["client"]["pmd"], "memif", "{doc}");
    let socket = memif_socket(&testbed.name);
    assert!(
        socket.exists(),
        "the engine's socket is there while it runs"
    );
    kill(engine_pid, "KILL");
    let out = support::finish(child, Duration::from_secs(90));
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("engine (pid {engine_pid}) was killed by SIGKILL")),
        "{}",
        out.stderr
    );
    assert!(
        !socket.exists(),
        "a killed engine's socket goes with the run"
    );
    assert_ns1_address_kept(&testbed);
    let down = testbed.net("down", &[]);
    assert!(down.success(), "{}", down.stderr);
    testbed.assert_nothing_left(&[engine_pid, loadgen_pid]);
}

#[test]
fn what_cannot_take_a_memif_is_refused_before_anything_is_set_up() {
    if !require_root("memif_refused") {
        return;
    }
    bin_dir();
    let plain = Testbed::plain("mr");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--engine", "kernel", "--client", "dpdk", "--pmd", "memif"],
            "the kernel engine has no DPDK port",
        ),
        (
            &["--engine", "dpdk", "--client", "kernel", "--pmd", "memif"],
            "only the dpdk load generator reaches it",
        ),
        (
            &[
                "--engine",
                "dpdk",
                "--client",
                "dpdk",
                "--pmd",
                "memif",
                "--client-pmd",
                "af_packet",
            ],
            "takes its other end",
        ),
        (
            &[
                "--engine",
                "dpdk",
                "--client",
                "dpdk",
                "--client-pmd",
                "memif",
            ],
            "this run's engine serves on af_xdp",
        ),
    ];
    for (args, want) in cases {
        let mut argv = vec!["run", "--packets", "10"];
        argv.extend_from_slice(args);
        let out = plain.run(&argv, QUICK);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
        plain.assert_nothing_left(&[]);
    }
    // The configured impairment would be claimed, never applied.
    let impaired = Testbed::impaired("mi");
    let out = impaired.run(
        &[
            "run",
            "--engine",
            EngineKind::Dpdk.as_str(),
            "--client",
            "dpdk",
            "--pmd",
            "memif",
            "--packets",
            "10",
        ],
        QUICK,
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("has no link to impair"),
        "{}",
        out.stderr
    );
    impaired.assert_nothing_left(&[]);
}
