//! What a bind changed, so it can be undone exactly: a [`Binding`] says
//! which driver a function had before. `supervisor nic bind` keeps its
//! bindings in one host-level file under the state root (`nic.json`,
//! beside `hugepages.json`); a run keeps its own in its run state. Both
//! are written *before* the bind, so a crash half-way still leaves the
//! original driver on record.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use contract::PciAddress;
use serde::{Deserialize, Serialize};

use super::{Driver, NicError};

/// One function handed to a userspace I/O driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The function.
    pub address: PciAddress,
    /// The driver it was bound to.
    pub driver: Driver,
    /// Its driver before, given back on unbind (`None`: it had none).
    pub original_driver: Option<String>,
    /// Its interfaces before (gone while the userspace driver has it), so
    /// `nic unbind eth1` still finds it.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Its `driver_override` before (normally none), put back too.
    #[serde(default)]
    pub original_override: Option<String>,
    /// Whether the bind loaded the driver's module: unloaded again when
    /// this binding ends and the driver drives nothing else.
    #[serde(default)]
    pub loaded_module: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecordFile {
    bindings: Vec<Binding>,
}

/// The host-level record of `supervisor nic bind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// The host's, under the state root.
    #[must_use]
    pub fn host() -> Self {
        Self::at(crate::state::STATE_ROOT)
    }

    /// One in directory `dir` (a test's own).
    #[must_use]
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The record file.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        self.dir.join("nic.json")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("nic.lock")
    }

    /// The bindings on record, without taking the lock (for reports).
    ///
    /// # Errors
    /// The file cannot be read or does not parse.
    pub fn read(&self) -> Result<Vec<Binding>, NicError> {
        read_file(&self.path())
    }

    /// Takes the record's lock (held by every bind and unbind, of
    /// `nic bind` and of runs alike, for its whole read-modify-write and
    /// the sysfs writes between) and reads it.
    ///
    /// # Errors
    /// The lock or the file cannot be had.
    pub fn lock(&self) -> Result<Locked, NicError> {
        let path = self.lock_path();
        let err = |source| NicError::Record {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| err(io::Error::from(e)))?;
        Ok(Locked {
            path: self.path(),
            bindings: read_file(&self.path())?,
            _flock: flock,
        })
    }
}

fn read_file(path: &Path) -> Result<Vec<Binding>, NicError> {
    crate::state::read_json::<RecordFile>(path)
        .map(|f| f.map(|f| f.bindings).unwrap_or_default())
        .map_err(|source| NicError::Record {
            path: path.to_owned(),
            source,
        })
}

/// The record, locked.
pub struct Locked {
    path: PathBuf,
    /// The bindings on record.
    pub bindings: Vec<Binding>,
    _flock: nix::fcntl::Flock<fs::File>,
}

impl Locked {
    /// The binding of `addr`, if recorded.
    #[must_use]
    pub fn find(&self, addr: &PciAddress) -> Option<&Binding> {
        self.bindings.iter().find(|b| &b.address == addr)
    }

    /// Drops the binding of `addr` (saved by [`Locked::save`]).
    pub fn remove(&mut self, addr: &PciAddress) {
        self.bindings.retain(|b| &b.address != addr);
    }

    /// Writes the record atomically; with nothing left, removes it.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn save(&self) -> Result<(), NicError> {
        let err = |source| NicError::Record {
            path: self.path.clone(),
            source,
        };
        if self.bindings.is_empty() {
            return match fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(err(e)),
                _ => Ok(()),
            };
        }
        let file = RecordFile {
            bindings: self.bindings.clone(),
        };
        crate::state::write_json(&self.path, &file).map_err(err)
    }
}
