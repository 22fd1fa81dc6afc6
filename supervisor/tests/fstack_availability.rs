//! `supervisor start --engine fstack` with an engine built without F-Stack
//! fails at once, before any namespace exists, saying what is missing, how
//! to enable it and which F-Stack / DPDK versions work. With an engine that
//! has F-Stack the lifecycle suite runs against it instead (lifecycle.rs).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SUPERVISOR: &str = env!("CARGO_BIN_EXE_supervisor");

#[test]
fn start_fstack_without_the_feature_fails_at_once_and_says_how_to_enable_it() {
    let engine = Path::new(SUPERVISOR).with_file_name("engine");
    assert!(
        engine.is_file(),
        "engine binary missing beside the supervisor: run with `cargo test --workspace`"
    );
    let listing = Command::new(&engine).arg("--list-kinds").output().unwrap();
    let doc: Value = serde_json::from_slice(&listing.stdout).expect("--list-kinds prints JSON");
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
    let output = Command::new(SUPERVISOR)
        .args(["start", "--engine", "fstack", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let _ = std::fs::remove_file(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");

    assert!(!output.status.success(), "start must fail");
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
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout)
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
