//! The record of what `net up` created, so `net down` removes exactly that,
//! even after a crash. Each object is recorded before it is created; `down`
//! removes the recorded objects that exist and ignores the others.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::impairment::launch::EmulatorRecord;
use crate::impairment::Backend;

/// A link created inside one of the testbed's namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// Its namespace.
    pub ns: String,
    /// Its name.
    pub name: String,
}

/// The kinds of root qdisc `net up` installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QdiscKind {
    /// The kernel's netem.
    Netem,
}

/// A root qdisc installed by `net up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QdiscRecord {
    /// The namespace of its device.
    pub ns: String,
    /// The device.
    pub dev: String,
    /// What it is.
    pub kind: QdiscKind,
}

/// Contents of the testbed's `net.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    /// The testbed's name.
    pub testbed: String,
    /// Namespaces created, in order.
    pub namespaces: Vec<String>,
    /// Links created, in order.
    pub links: Vec<LinkRecord>,
    /// Qdiscs installed.
    pub qdiscs: Vec<QdiscRecord>,
    /// The link emulator, while it runs.
    pub emulator: Option<EmulatorRecord>,
    /// The backend in force and why it was chosen.
    pub backend: Option<Backend>,
    /// Why that backend.
    pub backend_reason: Option<String>,
}

impl NetState {
    /// Reads the state file; `Ok(None)` if there is none.
    ///
    /// # Errors
    /// It cannot be read or does not parse.
    pub fn load(path: &Path) -> std::io::Result<Option<NetState>> {
        crate::state::read_json(path)
    }

    /// Writes the state file atomically.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::state::write_json(path, self)
    }

    /// Whether `ns` is recorded as created by this testbed.
    #[must_use]
    pub fn owns_namespace(&self, ns: &str) -> bool {
        self.namespaces.iter().any(|n| n == ns)
    }

    /// Whether link `name` in `ns` is recorded.
    #[must_use]
    pub fn owns_link(&self, ns: &str, name: &str) -> bool {
        self.links.iter().any(|l| l.ns == ns && l.name == name)
    }
}
