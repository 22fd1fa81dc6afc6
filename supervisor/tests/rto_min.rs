//! `--rto-min-ms`: one minimum retransmission timeout for every stack of a
//! run. The kernel's routes in NS1 and NS3 carry it while the run lasts and
//! lose it after; the dpdk engine is given it on its command line (its
//! smoltcp sockets take it); a value out of range is refused before
//! anything is created.

mod support;

use std::process::Command;
use std::time::Duration;

use contract::EngineKind;
use serde_json::Value;
use support::{bin_dir, require_root, run_bounded, Testbed, QUICK};

const LIMIT: Duration = Duration::from_secs(180);

/// The testbed subnet's route in `ns`, as `ip` shows it.
fn route_in(ns: &str) -> String {
    let shown = run_bounded(Command::new("ip").args(["-n", ns, "route", "show"]), QUICK);
    assert!(shown.success(), "ip route show in {ns}: {}", shown.stderr);
    shown.stdout
}

/// The `rto_min` a route line shows (`rto_min [lock] 50ms`), if any.
fn rto_min_of(route: &str) -> Option<String> {
    let mut words = route
        .split_whitespace()
        .skip_while(|w| *w != "rto_min")
        .skip(1);
    words.find(|w| *w != "lock").map(str::to_owned)
}

fn words(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("engine_command is a list")
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_stack_of_a_run_gets_the_minimum_and_the_routes_lose_it_after() {
    if !require_root("every_stack_of_a_run_gets_the_minimum_and_the_routes_lose_it_after") {
        return;
    }
    let bins = bin_dir();
    let bins = bins.to_str().unwrap();
    for engine in [EngineKind::Kernel, EngineKind::Dpdk] {
        let testbed = Testbed::plain("rm");
        // The network is the user's, so it outlives the run and its routes
        // can be looked at after stop.
        testbed.up();
        let started = testbed.run(
            &[
                "start",
                "--engine",
                engine.as_str(),
                "--detach",
                "--rto-min-ms",
                "50",
                "--bin-dir",
                bins,
            ],
            LIMIT,
        );
        assert_eq!(started.code, Some(0), "{engine}: {}", started.stderr);
        let state = testbed.run_state().expect("run state");
        assert_eq!(state["rto_min_ms"], 50, "{state}");
        let command = words(&state["engine_command"]);
        let flag = command.iter().position(|w| w == "--rto-min-ms");
        match engine {
            EngineKind::Dpdk => {
                let at = flag.unwrap_or_else(|| panic!("dpdk engine not told: {command:?}"));
                assert_eq!(command[at + 1], "50", "{command:?}");
            }
            _ => assert!(
                flag.is_none(),
                "{engine} told on its command line: {command:?}"
            ),
        }
        let client_ns = testbed.cfg.client_ns();
        let route = route_in(&client_ns);
        assert_eq!(
            rto_min_of(&route).as_deref(),
            Some("50ms"),
            "{engine}: NS1's route: {route}"
        );
        if engine == EngineKind::Kernel {
            let server_ns = testbed.cfg.server_ns();
            let route = route_in(&server_ns);
            assert_eq!(
                rto_min_of(&route).as_deref(),
                Some("50ms"),
                "NS3's route: {route}"
            );
        }
        let attached = testbed.run(&["attach", "--packets", "2000", "--json"], LIMIT);
        assert_eq!(attached.code, Some(0), "{engine}: {}", attached.stderr);
        assert_eq!(attached.json()[0]["answered"], 2000);

        let stopped = testbed.run(&["stop"], LIMIT);
        assert_eq!(stopped.code, Some(0), "{engine}: {}", stopped.stderr);
        for ns in [testbed.cfg.client_ns(), testbed.cfg.server_ns()] {
            let route = route_in(&ns);
            assert_eq!(rto_min_of(&route), None, "{engine}: {ns} kept it: {route}");
            assert!(
                route.contains(&testbed.cfg.subnet().to_string()),
                "{ns}: {route}"
            );
        }
    }
}

#[test]
fn a_minimum_out_of_range_is_refused_before_anything_is_created() {
    if !require_root("a_minimum_out_of_range_is_refused_before_anything_is_created") {
        return;
    }
    let bins = bin_dir();
    for bad in ["0", "10001"] {
        let testbed = Testbed::plain("rx");
        let ran = testbed.run(
            &[
                "run",
                "--engine",
                "dpdk",
                "--packets",
                "100",
                "--rto-min-ms",
                bad,
                "--bin-dir",
                bins.to_str().unwrap(),
            ],
            QUICK,
        );
        assert_ne!(ran.code, Some(0), "{bad}");
        assert!(ran.stderr.contains("1..=10000"), "{bad}: {}", ran.stderr);
        assert!(testbed.run_state().is_none(), "{bad}: a run was recorded");
        assert!(testbed.net_state().is_none(), "{bad}: a network was built");
    }
}

/// F-Stack takes the minimum as `rexmit_min` with the least slop FreeBSD
/// accepts: a start whose engine refused any config.ini setting fails, so
/// a run that serves took every one. Skipped (with the reason) where the
/// engine is built without F-Stack.
#[test]
fn f_stack_takes_the_minimum_with_every_setting_accepted() {
    if !require_root("f_stack_takes_the_minimum") {
        return;
    }
    bin_dir();
    if !support::engines().contains(&EngineKind::Fstack) {
        eprintln!("skipped: f_stack_takes_the_minimum: this engine is built without F-Stack");
        return;
    }
    let testbed = Testbed::plain("rf");
    let started = testbed.run(
        &[
            "start",
            "--engine",
            "fstack",
            "--rto-min-ms",
            "10",
            "--detach",
        ],
        LIMIT,
    );
    assert_eq!(started.code, Some(0), "{}", started.stderr);
    let ini = std::fs::read_to_string(
        testbed::state::StateDir::of(&testbed.name).file(testbed::state::StateFile::EngineIni),
    )
    .expect("the engine's config.ini");
    assert!(
        ini.contains("net.inet.tcp.rexmit_min=10\nnet.inet.tcp.rexmit_slop=1\n"),
        "{ini}"
    );
    let attached = testbed.run(&["attach", "--packets", "500"], LIMIT);
    assert_eq!(attached.code, Some(0), "{}", attached.stderr);
    let stopped = testbed.run(&["stop"], LIMIT);
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
    testbed.assert_nothing_left(&[]);
}
