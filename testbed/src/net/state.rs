//! The record of what `net up` created, so `net down` removes exactly that,
//! even after a crash. Each object is recorded before it is created; `down`
//! removes the recorded objects that exist and ignores the others.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::host::process::ProcessId;

/// A process started by `net up`, identified by pid and start time so a
/// reused pid is never signalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// Its pid and start time.
    #[serde(flatten)]
    pub process: ProcessId,
    /// The arguments it was started with (a changed config restarts it).
    pub args: Vec<String>,
    pub stats_file: PathBuf,
}

/// A link created inside one of the testbed's namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub ns: String,
    pub name: String,
}

/// A root qdisc installed by `net up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QdiscRecord {
    pub ns: String,
    pub dev: String,
    pub kind: String,
}

/// Contents of `/run/bypasslab/<testbed>/net.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    pub testbed: String,
    pub namespaces: Vec<String>,
    pub links: Vec<LinkRecord>,
    pub qdiscs: Vec<QdiscRecord>,
    pub emulator: Option<ProcessRecord>,
    /// The backend in force and why it was chosen.
    pub backend: Option<String>,
    pub backend_reason: Option<String>,
}

impl NetState {
    /// Reads the state file; `Ok(None)` if there is none.
    pub fn load(path: &Path) -> std::io::Result<Option<NetState>> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the state file atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    }

    /// Whether `ns` is recorded as created by this testbed.
    pub fn owns_namespace(&self, ns: &str) -> bool {
        self.namespaces.iter().any(|n| n == ns)
    }

    /// Whether link `name` in `ns` is recorded.
    pub fn owns_link(&self, ns: &str, name: &str) -> bool {
        self.links.iter().any(|l| l.ns == ns && l.name == name)
    }
}

/// The state file of a testbed directory.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("net.json")
}
