//! Where the testbed keeps what it owns: one directory per testbed under
//! [`STATE_ROOT`], every file in it named once in [`StateFile`], and the one
//! way a state file is written (atomically: a reader sees the old file or
//! the new one, never half of it).
//!
//! ```text
//! /run/bypasslab/
//! ├── hugepages.json            what `supervisor hugepages reserve` took
//! ├── nic.json, nic.lock        what `supervisor nic bind` bound (nic::record)
//! └── <testbed>/
//!     ├── lock                  serialises `net up` / `net down`
//!     ├── net.json              what `net up` created (net::state)
//!     ├── run.json              what a run owns (run::state)
//!     ├── emulator-stats.json   the link emulator's counters
//!     ├── emulator.log, engine.log, supervisor.log
//!     ├── loadgen.pid.json      the load generator while it runs
//!     ├── engine-config.ini     a bypass engine's per-run config
//!     ├── client-config.ini     a DPDK load generator's per-run config
//!     ├── client-port.json      what a DPDK load generator's run changed on NS1
//!     ├── memif.sock            the engine's memif socket (`--pmd memif`)
//!     ├── two-hosts.json        the owner of a two-host run (remote::control)
//!     ├── control.sock          where `attach`, `stats`, `stop` reach that owner
//!     ├── netem.json            an engine host's interface netem was added to
//!     └── hugepages/            the run's own hugetlbfs mount
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Parent of every testbed's state directory.
pub const STATE_ROOT: &str = "/run/bypasslab";

/// A file (or directory) of a testbed's state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFile {
    /// Serialises `net up` and `net down` of one testbed.
    Lock,
    /// The network's record.
    Net,
    /// The run's record.
    Run,
    /// The link emulator's counters.
    EmulatorStats,
    /// The link emulator's output.
    EmulatorLog,
    /// The engine's output.
    EngineLog,
    /// The background supervisor's output (`start --detach`).
    SupervisorLog,
    /// The running load generator's identity.
    LoadgenPid,
    /// A bypass engine's per-run config.ini.
    EngineIni,
    /// The interface whose root qdisc an engine host's run replaced
    /// with netem.
    Netem,
    /// The run's hugetlbfs mount point.
    Hugepages,
    /// What a DPDK load generator's run changed on NS1 (to undo after a
    /// crash).
    ClientPort,
    /// A DPDK load generator's per-run config.ini.
    ClientIni,
    /// The Unix socket of a memif pair, created by the engine.
    MemifSocket,
    /// The supervisor owning a two-host run, and the run.
    TwoHostRun,
    /// That supervisor's Unix socket.
    Control,
}

impl StateFile {
    /// Every file, in the order of the directory's description above.
    pub const ALL: [StateFile; 16] = [
        Self::Lock,
        Self::Net,
        Self::Run,
        Self::EmulatorStats,
        Self::EmulatorLog,
        Self::EngineLog,
        Self::SupervisorLog,
        Self::LoadgenPid,
        Self::EngineIni,
        Self::Netem,
        Self::Hugepages,
        Self::ClientPort,
        Self::ClientIni,
        Self::MemifSocket,
        Self::TwoHostRun,
        Self::Control,
    ];

    /// Its name in the state directory.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::Net => "net.json",
            Self::Run => "run.json",
            Self::EmulatorStats => "emulator-stats.json",
            Self::EmulatorLog => "emulator.log",
            Self::EngineLog => "engine.log",
            Self::SupervisorLog => "supervisor.log",
            Self::LoadgenPid => "loadgen.pid.json",
            Self::EngineIni => "engine-config.ini",
            Self::Netem => "netem.json",
            Self::Hugepages => "hugepages",
            Self::ClientPort => "client-port.json",
            Self::ClientIni => "client-config.ini",
            Self::MemifSocket => "memif.sock",
            Self::TwoHostRun => "two-hosts.json",
            Self::Control => "control.sock",
        }
    }
}

/// One testbed's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// The directory of testbed `name`.
    #[must_use]
    pub fn of(name: &str) -> Self {
        Self {
            path: Path::new(STATE_ROOT).join(name),
        }
    }

    /// The directory itself.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `file` in it.
    #[must_use]
    pub fn file(&self, file: StateFile) -> PathBuf {
        self.path.join(file.name())
    }

    /// Creates the directory if needed.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn create(&self) -> io::Result<()> {
        fs::create_dir_all(&self.path)
    }

    /// Removes `file` if it exists (its absence is the goal).
    pub fn remove(&self, file: StateFile) {
        let path = self.file(file);
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(temporary(&path));
    }

    /// Removes the directory if nothing is left in it: another component
    /// (the network, a run) may still keep files here.
    pub fn remove_if_empty(&self) {
        let _ = fs::remove_dir(&self.path);
    }
}

/// The temporary sibling an atomic write goes through.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically: a temporary sibling, fsync, rename.
///
/// # Errors
/// Creating, writing, syncing or renaming fails.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = temporary(path);
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)
}

/// Writes `value` as pretty JSON (with a final newline) to `path`
/// atomically.
///
/// # Errors
/// As [`write_atomically`]; serialisation errors as `InvalidData`.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    write_atomically(path, &json_bytes(value)?)
}

/// `value` as pretty JSON with a final newline.
///
/// # Errors
/// Serialisation fails (`InvalidData`).
pub fn json_bytes<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Reads a JSON state file; `Ok(None)` when there is none.
///
/// # Errors
/// It cannot be read, or does not parse (`InvalidData`, with the parser's
/// message).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_absence_is_none() {
        let dir = std::env::temp_dir().join(format!("bl-state-{}", std::process::id()));
        let path = dir.join("x.json");
        write_json(&path, &vec![1, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&path).unwrap(), Some(vec![1, 2, 3]));
        assert!(!temporary(&path).exists());
        fs::write(&path, b"{ not json").unwrap();
        let err = read_json::<Vec<u32>>(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&path).unwrap(), None);
    }

    #[test]
    fn every_file_has_its_own_name() {
        let mut names: Vec<&str> = StateFile::ALL.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), StateFile::ALL.len());
        assert_eq!(
            StateDir::of("bl").file(StateFile::Net),
            Path::new("/run/bypasslab/bl/net.json")
        );
    }
}
