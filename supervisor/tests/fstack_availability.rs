//! `supervisor start --engine fstack` with an engine built without F-Stack
//! fails at once, before any namespace exists, saying what is missing, how
//! to enable it and which F-Stack / DPDK versions work. With an engine that
//! has F-Stack the lifecycle suite runs against it instead (lifecycle.rs).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::SUPERVISOR;

mod support;

#[test]
fn start_fstack_without_the_feature_fails_at_once_and_says_how_to_enable_it() {
    let engine = Path::new(SUPERVISOR).with_file_name("engine");
    assert!(
        engine.is_file(),
        "engine binary missing beside the supervisor: run with `cargo test --workspace`"
    );
    let listing = support::run_bounded(Command::new(&engine).arg("--list-kinds"), support::QUICK);
    let doc: Value = serde_json::from_str(&listing.stdout).expect("--list-kinds prints JSON");
    let fstack = doc["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "fstack")
        .expect("fstack is listed")
        .clone();
    if fstack["available"] == true {
        let _ = writeln!(
            std::io::stderr(),
            "skipped the clear-error test: this engine has F-Stack {}",
            fstack["fstack_version"]
        );
        return;
    }

    let name = format!("fa{}", std::process::id() % 100_000);
    let config = std::env::temp_dir().join(format!("bypasslab-{name}.toml"));
    std::fs::write(&config, format!("[testbed]\nname = \"{name}\"\n")).unwrap();
    let started = Instant::now();
    let output = support::run_bounded(
        Command::new(SUPERVISOR)
            .args(["start", "--engine", "fstack", "--config"])
            .arg(&config)
            .stdin(Stdio::null()),
        support::QUICK,
    );
    let elapsed = started.elapsed();
    let _ = std::fs::remove_file(&config);
    let stderr = output.stderr.clone();
    eprintln!("{stderr}");

    assert!(!output.success(), "start must fail");
    assert!(
        elapsed < Duration::from_secs(5),
        "it fails at once, not after building the testbed ({elapsed:?})"
    );
    for needle in [
        "fstack",             // what is missing
        "--features",         // how to enable it
        "FF_PATH",            // where F-Stack is found
        "1.24",               // the F-Stack release that works
        "22.11",              // and its DPDK
        "github.com/F-Stack", // F-Stack's own install documentation
    ] {
        assert!(stderr.contains(needle), "`{needle}` missing from: {stderr}");
    }
    let netns = support::run_bounded(Command::new("ip").args(["netns", "list"]), support::QUICK);
    assert!(
        !netns
            .stdout
            .clone()
            .lines()
            .any(|l| l.starts_with(&format!("{name}-"))),
        "no namespace was created"
    );
    assert!(
        !Path::new("/run/bypasslab")
            .join(&name)
            .join("run.json")
            .exists(),
        "no run state was recorded"
    );
}
