//! Helpers shared by the `net_*` integration tests: a testbed with a unique
//! name whose `Drop` runs `supervisor net down`, and host snapshots.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use testbed::config::TestbedConfig;

/// The supervisor binary under test.
pub const SUPERVISOR: &str = env!("CARGO_BIN_EXE_supervisor");

/// Whether the tests can build namespaces; they skip (with a message) if not.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("{test}: skipped, needs root");
    false
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique testbed name: `t<pid><n>`, at most 10 characters.
pub fn unique_name() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("t{}{}", std::process::id() % 10_000_000, n % 100)
}

/// Runs the supervisor with `args`.
pub fn supervisor(args: &[&str]) -> Output {
    Command::new(SUPERVISOR)
        .args(args)
        .output()
        .expect("run the supervisor binary")
}

/// A testbed config file; `net down` and file removal on drop, even when
/// the test fails.
pub struct Testbed {
    pub name: String,
    pub path: PathBuf,
    pub cfg: TestbedConfig,
}

impl Testbed {
    /// A testbed named uniquely with `extra` TOML appended to its file.
    pub fn new(extra: &str) -> Testbed {
        let name = unique_name();
        let text = format!("[testbed]\nname = \"{name}\"\n{extra}");
        let path = std::env::temp_dir().join(format!("bypasslab-{name}.toml"));
        std::fs::write(&path, &text).expect("write test config");
        let cfg = TestbedConfig::load(Some(&path)).expect("test config is valid");
        Testbed { name, path, cfg }
    }

    /// `supervisor net <action> --config <file> [more]`.
    pub fn net(&self, action: &str, more: &[&str]) -> Output {
        let path = self.path.to_string_lossy().into_owned();
        let mut args = vec!["net", action, "--config", &path];
        args.extend_from_slice(more);
        supervisor(&args)
    }

    /// `net up`, asserting success.
    pub fn up(&self) -> serde_json::Value {
        let out = self.net("up", &["--json"]);
        assert!(
            out.status.success(),
            "net up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("net up --json parses")
    }

    /// `net status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = self.net("status", &["--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("net status --json parses")
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let out = self.net("down", &[]);
        if !out.status.success() {
            eprintln!(
                "cleanup of testbed {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the host shows of namespaces, links, qdiscs and nft tables.
#[derive(Debug, PartialEq, Eq)]
pub struct HostSnapshot {
    pub netns: Vec<String>,
    pub links: Vec<String>,
    pub qdiscs: Vec<String>,
    pub nft_tables: Vec<String>,
}

fn lines(program: &str, args: &[&str]) -> Vec<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("run host tool");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// Only the objects whose name contains `tag` (other testbeds may come and
/// go concurrently).
pub fn snapshot(tag: &str) -> HostSnapshot {
    let keep = |v: Vec<String>| v.into_iter().filter(|l| l.contains(tag)).collect();
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    let mut link_names: Vec<String> = String::from_utf8_lossy(&links.stdout)
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .filter(|n| n.contains(tag))
        .collect();
    link_names.sort();
    let qdiscs = Command::new("tc")
        .args(["qdisc", "show"])
        .output()
        .expect("tc qdisc");
    HostSnapshot {
        netns: keep(lines("ip", &["netns", "list"])),
        links: link_names,
        qdiscs: String::from_utf8_lossy(&qdiscs.stdout)
            .lines()
            .filter(|l| l.contains(tag))
            .map(String::from)
            .collect(),
        nft_tables: keep(
            String::from_utf8_lossy(
                &Command::new("nft")
                    .args(["list", "tables"])
                    .output()
                    .expect("nft")
                    .stdout,
            )
            .lines()
            .map(String::from)
            .collect(),
        ),
    }
}
