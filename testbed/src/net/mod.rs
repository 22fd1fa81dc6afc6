//! The testbed network: the three namespaces, two (or three) veth pairs and
//! the bridge of the [`Topology`](crate::topology::Topology), and the
//! impairment, built by [`up`], removed by [`down`], shown by [`status`].
//!
//! Every object `up` creates is recorded in the testbed's `net.json`
//! ([`state`]) before it is created, so `down` after a crash at any step
//! removes exactly what exists. Objects `up` finds but did not record are
//! never touched.

mod down;
pub mod links;
pub mod probe;
pub mod rx_drops;
pub mod state;
mod status;
mod up;

use std::fs::File;
use std::path::PathBuf;

pub use down::{down, DownReport};
pub use status::{
    status, EmulatorStatus, ImpairmentStatus, LinkStatus, NamespaceStatus, NetStatus, ObservedLoss,
};
pub use up::up;

use crate::config::TestbedConfig;
use crate::host::command::CommandError;
use crate::host::process::StopError;
use crate::impairment::launch::LaunchError;
use crate::impairment::ChooseError;
use crate::state::StateFile;

/// A failed step of `net up`, `down` or `status`.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Namespaces need CAP_SYS_ADMIN.
    #[error("the testbed network needs root (it creates network namespaces); run as root")]
    NotRoot,
    /// Something with a testbed name exists but is not in the state file.
    #[error("{kind} {name} exists but was not created by testbed {testbed}; remove it yourself ({remove}) or choose another [testbed] name")]
    NotOurs {
        /// What it is.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The testbed.
        testbed: String,
        /// The command that removes it.
        remove: String,
    },
    /// An iproute2 / tc / ethtool step failed.
    #[error("{step}: {source}")]
    Step {
        /// The step.
        step: String,
        /// The command's failure.
        #[source]
        source: CommandError,
    },
    /// No usable impairment backend.
    #[error(transparent)]
    Backend(#[from] ChooseError),
    /// The state file could not be read or written.
    #[error("state file {path}: {source}; if it is corrupt, remove the testbed's namespaces with `ip netns del` and delete the file")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The emulator did not come up.
    #[error("start link emulator in {ns}: {source}; its log is {log}")]
    StartEmulator {
        /// NS2.
        ns: String,
        /// Its log.
        log: PathBuf,
        /// What went wrong.
        #[source]
        source: LaunchError,
    },
    /// The emulator would not stop.
    #[error("stop the link emulator: {0}")]
    StopEmulator(#[source] StopError),
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Holds the testbed's lock file: concurrent `up`/`down` of one testbed
/// take turns instead of interleaving their steps.
fn lock(cfg: &TestbedConfig) -> Result<nix::fcntl::Flock<File>, NetError> {
    let dir = cfg.state_dir();
    let path = dir.file(StateFile::Lock);
    let err = |source| NetError::State {
        path: path.clone(),
        source,
    };
    dir.create().map_err(err)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| err(std::io::Error::from(e)))
}
