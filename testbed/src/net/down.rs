//! `net down`: removes everything `up` recorded and nothing else.

use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use super::links::{link_info, ns_exists};
use super::state::NetState;
use super::{is_root, lock, NetError};
use crate::config::TestbedConfig;
use crate::host::command;
use crate::host::process::Stopped;
use crate::state::StateFile;

/// What `down` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownReport {
    /// The testbed.
    pub testbed: String,
    /// Objects removed, e.g. `namespace bl-ns1`, `process 4242 (emulator)`.
    pub removed: Vec<String>,
    /// Recorded objects that were already gone.
    pub already_absent: Vec<String>,
    /// Whether a state file existed at all.
    pub had_state: bool,
}

/// Removes everything `up` recorded and nothing else.
///
/// # Errors
/// A removal failed (the state file stays, so a second `down` retries).
pub fn down(cfg: &TestbedConfig) -> Result<DownReport, NetError> {
    if !is_root() {
        return Err(NetError::NotRoot);
    }
    let dir = cfg.state_dir();
    let path = dir.file(StateFile::Net);
    if !path.exists() {
        // Nothing recorded; at most a lock file from an `up` that failed
        // before its first step.
        dir.remove(StateFile::Lock);
        dir.remove_if_empty();
        return Ok(DownReport {
            testbed: cfg.name().to_string(),
            ..DownReport::default()
        });
    }
    let lock = lock(cfg)?;
    let mut report = DownReport {
        testbed: cfg.name().to_string(),
        ..DownReport::default()
    };
    let Some(st) = NetState::load(&path).map_err(|source| NetError::State {
        path: path.clone(),
        source,
    })?
    else {
        // Another `down` finished while we waited for the lock.
        return Ok(report);
    };
    report.had_state = true;
    let step = |step: String, mut c: Command| {
        command::run(&mut c, "").map_err(|source| NetError::Step { step, source })
    };

    // 1. The emulator, verified by pid and start time.
    if let Some(p) = &st.emulator {
        let pid = p.process.pid;
        match p.process.stop(Duration::from_secs(2)) {
            Ok(Stopped::NotRunning) => report
                .already_absent
                .push(format!("process {pid} (emulator)")),
            Ok(_) => report.removed.push(format!("process {pid} (emulator)")),
            Err(e) => return Err(NetError::StopEmulator(e)),
        }
    }
    // 2. Links, newest first: deleting them explicitly is synchronous,
    //    unlike the teardown of a deleted namespace.
    for l in st.links.iter().rev() {
        if st.owns_namespace(&l.ns) && link_info(&l.ns, &l.name).is_some() {
            step(
                format!("remove {} in {}", l.name, l.ns),
                command::cmd("ip", ["-n", &l.ns, "link", "del", &l.name]),
            )?;
            report.removed.push(format!("link {} ({})", l.name, l.ns));
        }
    }
    // 3. Namespaces (with their qdiscs and anything left inside).
    for ns in st.namespaces.iter().rev() {
        if ns_exists(ns) {
            step(
                format!("remove network namespace {ns}"),
                command::cmd("ip", ["netns", "del", ns]),
            )?;
            report.removed.push(format!("namespace {ns}"));
        } else {
            report.already_absent.push(format!("namespace {ns}"));
        }
    }
    // 4. The state directory: only the files this module writes.
    for file in [
        StateFile::Net,
        StateFile::EmulatorStats,
        StateFile::EmulatorLog,
        StateFile::Lock,
    ] {
        dir.remove(file);
    }
    drop(lock);
    // Other components may keep files here; remove the directory only empty.
    dir.remove_if_empty();
    Ok(report)
}
