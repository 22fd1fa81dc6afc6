//! Helpers shared by the integration tests: scratch directories and child
//! processes that re-run the test binary in a given role.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use shm_layout::CreateOptions;

/// Environment variable that turns a test-binary run into a child role.
pub const ROLE_ENV: &str = "SHM_LAYOUT_TEST_ROLE";

/// A scratch directory on tmpfs, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "shm-layout-test-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Options that never touch hugetlbfs: the scratch directory is given as
/// the "hugetlbfs" directory (it is not one) and as the fallback.
pub fn scratch_opts(dir: &Path, name: &str) -> CreateOptions {
    let mut o = CreateOptions::new(name);
    o.hugetlbfs_dir = Some(dir.to_owned());
    o.fallback_dir = dir.to_owned();
    o
}

/// The role this run of the test binary plays, if it is a child.
pub fn child_role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// A child process running one test of this binary in a role, with its
/// stdout lines forwarded through a channel.
pub struct ChildProc {
    child: Child,
    lines: Receiver<String>,
    name: String,
}

/// Re-runs this test binary, only `test_name`, with `role` and `envs` set.
pub fn spawn_self(test_name: &str, role: &str, envs: &[(&str, String)]) -> ChildProc {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    ChildProc {
        child,
        lines: rx,
        name: role.to_owned(),
    }
}

impl ChildProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first line holding `prefix`, from `prefix` on, within `timeout`
    /// (the test harness may print `test name ... ` before it).
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(prefix) => {
                    let at = line.find(prefix).unwrap_or(0);
                    return line[at..].to_owned();
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("child {} gave no {prefix:?} line: {e}", self.name);
                }
            }
        }
    }

    /// Waits for exit within `timeout`; kills the child and fails otherwise.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("child {} did not finish within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `key=value` fields of a result line.
pub fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .unwrap()
}
