//! The run state file: what a running (or crashed) testbed run owns, so that
//! `attach`, `stats` and `stop` from other invocations find it, and so that
//! leftovers of a crash can be removed exactly.
//!
//! It lives beside the network's own state, in the testbed's state
//! directory, and is created with `create_new`: two runs of one testbed
//! cannot both own it.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use contract::EngineKind;
use serde::{Deserialize, Serialize};

use crate::host::hugepages::HugepageGrant;
use crate::host::process::ProcessId;
use crate::nic::Binding;
use crate::state::{json_bytes, read_json, write_json, StateDir, StateFile};

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

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Stopping => "stopping",
        })
    }
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
    /// Engine kind.
    pub engine_kind: EngineKind,
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
    /// The PCI NIC the engine serves on (`--pmd pci:`), its userspace I/O
    /// driver and the driver it had before (given back on stop).
    #[serde(default)]
    pub pci_device: Option<Binding>,
    /// The interface a bypass engine owns (its address is restored there
    /// on stop); a record without it is of NS3's veth.
    #[serde(default)]
    pub port: Option<super::bypass::Port>,
    /// A bypass engine's poll-mode driver (a load generator attached to a
    /// memif engine takes the other end).
    #[serde(default)]
    pub pmd: Option<contract::Pmd>,
    /// The engine's command line, as it was started.
    #[serde(default)]
    pub engine_command: Vec<String>,
    /// The minimum RTO every stack of the run was set to, ms.
    #[serde(default)]
    pub rto_min_ms: Option<u32>,
    /// Routes whose `rto_min` the run changed (put back on stop).
    #[serde(default)]
    pub tuned_routes: Vec<super::rto::TunedRoute>,
    /// Files the run wrote (per-run engine config) to remove on stop.
    pub files: Vec<PathBuf>,
    /// Unix time the run started, seconds.
    pub started_unix: u64,
}

/// A run without its statistics segment yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("testbed `{testbed}` has no statistics segment yet (still starting); wait for `supervisor start` to finish")]
pub struct NoSegment {
    /// Testbed name.
    pub testbed: String,
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

/// The run state file of a testbed.
#[must_use]
pub fn state_path(testbed: &str) -> PathBuf {
    StateDir::of(testbed).file(StateFile::Run)
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
        StateDir::of(&self.testbed).create().map_err(io_err)?;
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
        file.write_all(&json_bytes(self).map_err(io_err)?)
            .map_err(io_err)?;
        file.sync_all().map_err(io_err)
    }

    /// Rewrites the state file atomically (write then rename).
    ///
    /// # Errors
    /// I/O.
    pub fn save(&self) -> Result<(), StateError> {
        let path = state_path(&self.testbed);
        write_json(&path, self).map_err(|source| StateError::Io { path, source })
    }

    /// Loads a testbed's run state.
    ///
    /// # Errors
    /// [`StateError::NotRunning`] when there is none, [`StateError::Corrupt`].
    pub fn load(testbed: &str) -> Result<Self, StateError> {
        let path = state_path(testbed);
        match read_json(&path) {
            Ok(Some(state)) => Ok(state),
            Ok(None) => Err(StateError::NotRunning {
                testbed: testbed.to_owned(),
                path,
            }),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(StateError::Corrupt {
                path,
                reason: e.to_string(),
            }),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// The segment, once the run has one.
    ///
    /// # Errors
    /// [`NoSegment`] while it is still starting.
    pub fn segment_path(&self) -> Result<&std::path::Path, NoSegment> {
        self.segment.as_deref().ok_or_else(|| NoSegment {
            testbed: self.testbed.clone(),
        })
    }

    /// Removes the state file.
    pub fn remove(&self) {
        StateDir::of(&self.testbed).remove(StateFile::Run);
    }
}
