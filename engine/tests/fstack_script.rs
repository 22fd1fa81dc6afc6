//! `scripts/fstack`'s command line and its refusal of trees that are not
//! F-Stack 1.24, and `scripts/demo --engine fstack`'s refusal when nothing
//! is built: each answers at once, with the documented exit code and a
//! message naming the problem, before installing or building anything.
//!
//! CI has no F-Stack source, so the build itself is never run here. To make
//! sure of that, every script runs with a PATH whose first directory holds
//! stand-ins for apt-get, dpkg-query, make, git and cargo that record being
//! called and fail; each test asserts that none was.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Every refusal is a few shell tests: far below this.
const DEADLINE: Duration = Duration::from_secs(20);
/// Programs a refusal must never reach.
const FORBIDDEN: &[&str] = &["apt-get", "dpkg-query", "make", "git", "cargo"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the engine crate is inside the workspace")
        .to_owned()
}

/// A directory of this test's own (name: prefix, pid and the test's tag),
/// removed even when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "bypasslab-fstack-script-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the test's directory");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, relative: &str, contents: &str) {
        let file = self.0.join(relative);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, contents).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The stand-ins of [`FORBIDDEN`]: each leaves `called-<name>` in its
/// directory and exits 97.
struct Tripwires(TempDir);

impl Tripwires {
    fn new(tag: &str) -> Self {
        let dir = TempDir::new(&format!("{tag}-bin"));
        for name in FORBIDDEN {
            let file = dir.path().join(name);
            fs::write(
                &file,
                format!(
                    "#!/bin/sh\ntouch '{}/called-{name}'\nexit 97\n",
                    dir.path().display()
                ),
            )
            .unwrap();
            fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self(dir)
    }

    fn path_var(&self) -> String {
        let rest = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        format!("{}:{rest}", self.0.path().display())
    }

    fn assert_untouched(&self) {
        let called: Vec<&str> = FORBIDDEN
            .iter()
            .copied()
            .filter(|name| self.0.path().join(format!("called-{name}")).exists())
            .collect();
        assert!(called.is_empty(), "the script ran {called:?}");
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `script` with `args` from `cwd`, FF_PATH unset, behind tripwires;
/// kills it if it outlives [`DEADLINE`].
fn run_in(cwd: &Path, script: &Path, args: &[&str], tag: &str) -> Outcome {
    let tripwires = Tripwires::new(tag);
    let mut child = Command::new(script)
        .args(args)
        .current_dir(cwd)
        .env("PATH", tripwires.path_var())
        .env_remove("FF_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let started = Instant::now();
    while child.try_wait().expect("wait for the script").is_none() {
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} still runs after {DEADLINE:?}",
                script.display()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("collect the output");
    tripwires.assert_untouched();
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn fstack(args: &[&str], tag: &str) -> Outcome {
    run_in(&repo(), &repo().join("scripts/fstack"), args, tag)
}

/// Asserts exit code `code` and that stderr holds every one of `needles`.
fn assert_refused(outcome: &Outcome, code: i32, needles: &[&str]) {
    assert_eq!(outcome.code, Some(code), "stderr: {}", outcome.stderr);
    for needle in needles {
        assert!(
            outcome.stderr.contains(needle),
            "`{needle}` missing from: {}",
            outcome.stderr
        );
    }
    assert!(
        !outcome.stderr.contains("step \""),
        "no step may start: {}",
        outcome.stderr
    );
}

/// A tree with F-Stack's landmarks, stating release `version`.
fn fake_fstack_tree(tag: &str, version: &str) -> TempDir {
    let tree = TempDir::new(tag);
    tree.write("VERSION", &format!("{version}\n"));
    tree.write(
        "lib/Makefile",
        &format!("PREFIX=/usr/local\nF-STACK_VERSION={version}\nall:\n\tfalse\n"),
    );
    tree.write("lib/ff_api.h", "");
    tree.write("freebsd/README", "");
    tree
}

#[test]
fn help_describes_both_ways_and_where_things_go() {
    let out = fstack(&["--help"], "help");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    for needle in [
        "--source DIR",
        "--clone",
        "--prefix DIR",
        "https://github.com/F-Stack/f-stack.git",
        "1.24",
        "target/f-stack/prefix",
        "PREFIX/etc/f-stack.conf",
        "Exit codes",
    ] {
        assert!(
            out.stdout.contains(needle),
            "`{needle}` missing from: {}",
            out.stdout
        );
    }
}

#[test]
fn without_arguments_it_asks_which_f_stack() {
    let out = fstack(&[], "none");
    assert_refused(&out, 2, &["--source DIR", "--clone", "1.24"]);
}

#[test]
fn source_and_clone_exclude_each_other() {
    let tree = fake_fstack_tree("both", "1.24");
    let dir = tree.path().to_str().unwrap();
    let out = fstack(&["--source", dir, "--clone"], "both");
    assert_refused(&out, 2, &["--source and --clone exclude each other"]);
    // Nothing is cloned: the URL is printed only when a clone starts.
    assert!(!out.stderr.contains("cloning"), "{}", out.stderr);
}

#[test]
fn bad_arguments_are_named() {
    let out = fstack(&["--frobnicate"], "unknown");
    assert_refused(&out, 2, &["unknown argument `--frobnicate`"]);
    let out = fstack(&["--source"], "novalue");
    assert_refused(&out, 2, &["--source needs a directory"]);
    let out = fstack(&["--clone", "--prefix"], "noprefix");
    assert_refused(&out, 2, &["--prefix needs a directory"]);
}

#[test]
fn a_missing_source_directory_is_named() {
    let gone = TempDir::new("missing");
    let missing = gone.path().join("no-such-tree");
    let out = fstack(&["--source", missing.to_str().unwrap()], "missing");
    assert_refused(&out, 2, &[missing.to_str().unwrap(), "no such directory"]);
}

#[test]
fn a_tree_that_is_not_f_stack_is_refused() {
    let tree = TempDir::new("notfstack");
    tree.write("README.md", "some other project\n");
    tree.write("lib/Makefile", "all:\n\ttrue\n");
    let dir = tree.path().to_str().unwrap();
    let out = fstack(&["--source", dir], "notfstack");
    assert_refused(
        &out,
        2,
        &[
            dir,
            "is not an F-Stack source tree",
            "lib/ff_api.h",
            "--clone",
        ],
    );
}

#[test]
fn another_f_stack_release_is_refused() {
    let tree = fake_fstack_tree("release", "1.25");
    let dir = tree.path().to_str().unwrap();
    let out = fstack(&["--source", dir], "release");
    assert_refused(
        &out,
        2,
        &[
            dir,
            "F-Stack release 1.25",
            "supports F-Stack 1.24 only",
            "checkout 1.24",
        ],
    );
}

#[test]
fn a_tree_whose_release_files_disagree_is_refused() {
    let tree = fake_fstack_tree("disagree", "1.24");
    tree.write("VERSION", "1.23\n");
    let dir = tree.path().to_str().unwrap();
    let out = fstack(&["--source", dir], "disagree");
    assert_refused(
        &out,
        2,
        &["F-STACK_VERSION=1.24", "VERSION says 1.23", "1.24 only"],
    );
}

/// `scripts/demo` in a directory of its own, so that what this checkout
/// may have built (its target/f-stack) cannot answer for it.
fn lone_demo(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    fs::create_dir_all(dir.path().join("scripts")).unwrap();
    let demo = dir.path().join("scripts/demo");
    fs::copy(repo().join("scripts/demo"), &demo).unwrap();
    fs::set_permissions(&demo, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn demo_without_an_f_stack_build_says_what_to_run_before_building() {
    let dir = lone_demo("demo-none");
    let demo = dir.path().join("scripts/demo");
    for args in [
        &["--engine", "fstack"][..],
        &["--packets", "10", "--engine=fstack"],
    ] {
        let out = run_in(dir.path(), &demo, args, "demo-none");
        assert_refused(
            &out,
            1,
            &[
                "none is built yet",
                "scripts/fstack --source <your F-Stack 1.24 tree>",
                "scripts/fstack --clone",
            ],
        );
    }
}

#[test]
fn demo_with_a_recorded_prefix_that_is_gone_says_so() {
    let dir = lone_demo("demo-gone");
    let gone = dir.path().join("no-prefix");
    let record = dir.path().join("target/f-stack/FF_PATH");
    fs::create_dir_all(record.parent().unwrap()).unwrap();
    fs::write(&record, format!("{}\n", gone.display())).unwrap();
    let out = run_in(
        dir.path(),
        &dir.path().join("scripts/demo"),
        &["--engine", "fstack"],
        "demo-gone",
    );
    assert_refused(
        &out,
        1,
        &[
            gone.to_str().unwrap(),
            "has no lib/libfstack.a",
            "scripts/fstack --source <your F-Stack 1.24 tree>",
        ],
    );
}
