//! The run state file: what a running (or crashed) testbed run owns, so that
//! `attach`, `stats` and `stop` from other invocations find it, and so that
//! leftovers of a crash can be removed exactly.
//!
//! It lives beside the network's own state, under `/run/bypasslab/<testbed>/`,
//! and is created with `create_new`: two runs of one testbed cannot both own it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::host::hugepages::HugepageGrant;
use crate::host::process::ProcessId;

/// Root of every testbed's runtime state.
pub use crate::net::STATE_ROOT as RUN_ROOT;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Resources are being created.
    Starting,
    /// The engine is serving; load generators may attach.
    Ready,
    /// Resources are being removed.
    Stopping,
}

/// Everything one run owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Testbed name.
    pub testbed: String,
    /// Where the run is.
    pub phase: Phase,
    /// The supervisor that owns the run.
    pub supervisor: ProcessId,
    /// Engine kind (`kernel`, `dpdk`, `fstack`).
    pub engine_kind: String,
    /// The engine process, once started.
    pub engine: Option<ProcessId>,
    /// Core the engine is pinned to.
    pub engine_core: usize,
    /// Core the load generator is pinned to.
    pub loadgen_core: usize,
    /// Address and port the engine answers on.
    pub server: std::net::SocketAddrV4,
    /// The shared-memory segment file, once created.
    pub segment: Option<PathBuf>,
    /// Hugepages and mounts taken for the run.
    pub hugepages: HugepageGrant,
    /// Whether this run brought the network up (and so takes it down).
    pub created_network: bool,
    /// Kernel address removed from NS3's interface for a bypass engine, to be
    /// restored on stop (`addr/prefix`).
    pub removed_server_address: Option<String>,
    /// PCI device bound to vfio-pci for the engine, with the kernel driver
    /// it had before (restored on stop).
    #[serde(default)]
    pub pci_device: Option<(String, Option<String>)>,
    /// Files the run wrote (per-run engine config) to remove on stop.
    pub files: Vec<PathBuf>,
    /// Unix time the run started, seconds.
    pub started_unix: u64,
}

/// Run-state file errors.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another run's state file exists.
    #[error("run state {path} already exists")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// No run state: nothing is running on this testbed.
    #[error("no run of testbed `{testbed}` is recorded ({path} does not exist): start one with `supervisor start`")]
    NotRunning {
        /// Testbed name.
        testbed: String,
        /// The file looked for.
        path: PathBuf,
    },
    /// The file exists but does not parse.
    #[error("run state {path} is corrupt ({reason}): remove it after checking nothing of that run is left")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Parse error.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("run state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The state directory of a testbed.
#[must_use]
pub fn testbed_dir(testbed: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(testbed)
}

/// The run state file of a testbed.
#[must_use]
pub fn state_path(testbed: &str) -> PathBuf {
    testbed_dir(testbed).join("run.json")
}

impl RunState {
    /// Creates the state file; fails if one exists.
    ///
    /// # Errors
    /// [`StateError::Exists`] or I/O.
    pub fn create(&self) -> Result<(), StateError> {
        let path = state_path(&self.testbed);
        let io_err = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(testbed_dir(&self.testbed)).map_err(io_err)?;
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path);
        let mut file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists { path })
            }
            Err(e) => return Err(io_err(e)),
        };
        file.write_all(&self.to_json()).map_err(io_err)?;
        file.sync_all().map_err(io_err)
    }

    /// Rewrites the state file atomically (write then rename).
    ///
    /// # Errors
    /// I/O.
    pub fn save(&self) -> Result<(), StateError> {
        let path = state_path(&self.testbed);
        let tmp = path.with_extension("json.tmp");
        let io_err = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        fs::write(&tmp, self.to_json()).map_err(io_err)?;
        fs::rename(&tmp, &path).map_err(io_err)
    }

    /// Loads a testbed's run state.
    ///
    /// # Errors
    /// [`StateError::NotRunning`] when there is none, [`StateError::Corrupt`].
    pub fn load(testbed: &str) -> Result<Self, StateError> {
        let path = state_path(testbed);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NotRunning {
                    testbed: testbed.to_owned(),
                    path,
                })
            }
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Removes the state file.
    pub fn remove(&self) {
        let _ = fs::remove_file(state_path(&self.testbed));
    }

    fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}
