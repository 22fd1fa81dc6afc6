//! The host as the suites see it: the root gate, the lock for host-global
//! state, snapshots of namespaces and links, processes by pid, and the
//! check that a testbed left nothing behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{run_bounded, QUICK};

static SKIPPED: AtomicU32 = AtomicU32::new(0);

/// Whether the test can do what needs root (namespaces, hugepages). Without
/// root it prints a visible `skipped: not root` line (with a running count)
/// and the test returns early; where `CI=true` it fails instead, so CI can
/// never pass by skipping.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: needs root, and CI=true: CI must run as root"
    );
    let n = SKIPPED.fetch_add(1, Ordering::Relaxed) + 1;
    eprintln!("skipped: not root ({test}; {n} skipped so far in this suite)");
    false
}

/// A lock on state every testbed shares with the host (its 2 MB hugepage
/// pool): runs hold it shared, a test that measures the pool around a run
/// holds it exclusively, so no other test's run changes the pool in
/// between. A file lock, so it holds across test binaries and processes.
pub struct HostLock {
    _file: Option<nix::fcntl::Flock<File>>,
}

fn lock_path() -> PathBuf {
    Path::new(testbed::state::STATE_ROOT).join("test-host.lock")
}

impl HostLock {
    fn take(arg: nix::fcntl::FlockArg) -> Self {
        let path = lock_path();
        // Without root there is no testbed to protect (the tests skip).
        let file = std::fs::create_dir_all(testbed::state::STATE_ROOT)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
            })
            .ok();
        Self {
            _file: file.and_then(|f| nix::fcntl::Flock::lock(f, arg).ok()),
        }
    }

    /// Shared: this test's runs may go on beside other tests' runs.
    pub fn shared() -> Self {
        Self::take(nix::fcntl::FlockArg::LockShared)
    }

    /// Exclusive: no other test's run changes host-global state meanwhile.
    pub fn exclusive() -> Self {
        Self::take(nix::fcntl::FlockArg::LockExclusive)
    }
}

/// A command's stdout, bounded.
fn stdout(program: &str, args: &[&str]) -> String {
    run_bounded(Command::new(program).args(args), QUICK).stdout
}

/// What the host shows of namespaces, links, qdiscs and nft tables.
#[derive(Debug, PartialEq, Eq)]
pub struct HostSnapshot {
    /// Network namespaces.
    pub netns: Vec<String>,
    /// Links of the host's namespace.
    pub links: Vec<String>,
    /// Qdiscs.
    pub qdiscs: Vec<String>,
    /// nft tables.
    pub nft_tables: Vec<String>,
}

fn first_words(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
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
    let mut links: Vec<String> = stdout("ip", &["-o", "link", "show"])
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .filter(|n| n.contains(tag))
        .collect();
    links.sort();
    HostSnapshot {
        netns: keep(first_words(&stdout("ip", &["netns", "list"]))),
        links,
        qdiscs: stdout("tc", &["qdisc", "show"])
            .lines()
            .filter(|l| l.contains(tag))
            .map(String::from)
            .collect(),
        nft_tables: keep(
            stdout("nft", &["list", "tables"])
                .lines()
                .map(String::from)
                .collect(),
        ),
    }
}

/// Whether `pid` runs (zombies count as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Sends `signal` (e.g. "KILL") to `pid`, a process this test started.
pub fn kill(pid: u32, signal: &str) {
    let out = run_bounded(
        Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]),
        QUICK,
    );
    assert!(out.success(), "kill -{signal} {pid}: {}", out.stderr);
}

/// Processes (not zombies) whose command line names testbed `name`: its
/// namespaces, segment, config or state directory.
pub fn processes_naming(name: &str) -> Vec<String> {
    let marks = [
        format!("{name}-ns"),
        format!("bypasslab-{name}"),
        format!("/bypasslab/{name}/"),
        format!("{name}-e\0"),
    ];
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me || !alive(pid) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline);
        if marks.iter().any(|m| text.contains(m.as_str())) {
            found.push(format!("{pid}: {}", text.replace('\0', " ")));
        }
    }
    found
}

/// Asserts that nothing testbed `name`'s run created remains (see
/// [`super::Testbed::assert_nothing_left`]).
pub fn assert_nothing_left(name: &str, pids: &[u32]) {
    // Processes first: a teardown may still be reaping for a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        let named = processes_naming(name);
        if alive.is_empty() && named.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left: recorded {alive:?}, naming the testbed {named:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let netns = stdout("ip", &["netns", "list"]);
    assert!(
        !netns.lines().any(|l| l.starts_with(&format!("{name}-"))),
        "namespaces left: {netns}"
    );
    let links = stdout("ip", &["-o", "link"]);
    assert!(!links.contains(&format!(" {name}-")), "links left: {links}");
    let qdiscs = stdout("tc", &["qdisc", "show"]);
    assert!(
        !qdiscs.contains(&format!(" {name}-")),
        "qdiscs left: {qdiscs}"
    );
    let tables = stdout("nft", &["list", "tables"]);
    assert!(!tables.contains(name), "nft tables left: {tables}");
    let dir = testbed::state::StateDir::of(name);
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!dir.path().exists(), "run state directory left: {left:?}");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&format!("/bypasslab/{name}/")),
        "mount left: {mounts}"
    );
    let mut dirs = vec![PathBuf::from("/dev/shm"), PathBuf::from("/dev/hugepages")];
    dirs.extend(
        mounts
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
            .filter_map(|l| l.split_whitespace().nth(1).map(PathBuf::from)),
    );
    let prefix = format!("bypasslab-{name}");
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !file.starts_with(&prefix),
                "segment or hugepage file left: {}",
                entry.path().display()
            );
        }
    }
    assert!(
        !Path::new(&format!("/var/run/dpdk/{prefix}")).exists(),
        "DPDK runtime directory left"
    );
}
