//! Kernel modules: whether one is there or could be, loading it with
//! `modprobe` (its own error kept for the message), and unloading what a
//! bind loaded once nothing uses it.

use serde::Serialize;

use super::sysfs::Sysfs;
use crate::host::command::{self, CommandError};

/// How a kernel module stands on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "why")]
pub enum Availability {
    /// In /sys/module: loaded, or built into the kernel.
    Present,
    /// `modprobe -n` finds it (a dry run: nothing is loaded).
    Loadable,
    /// Neither; why.
    Absent(String),
}

impl Availability {
    /// Present or loadable.
    #[must_use]
    pub fn usable(&self) -> bool {
        !matches!(self, Self::Absent(_))
    }

    /// One word or two, for reports.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Present => "loaded".into(),
            Self::Loadable => "loadable".into(),
            Self::Absent(why) => format!("absent ({why})"),
        }
    }
}

/// Whether `module` is loaded, or could be, without loading it.
#[must_use]
pub fn availability(sysfs: &Sysfs, module: &str) -> Availability {
    if sysfs.module_present(module) {
        return Availability::Present;
    }
    match command::run(&mut command::cmd("modprobe", ["-n", "-q", module]), "") {
        Ok(_) => Availability::Loadable,
        Err(CommandError::Spawn { .. }) => Availability::Absent("no modprobe to ask".into()),
        Err(_) => Availability::Absent("no such module for this kernel".into()),
    }
}

/// `modprobe <module>`.
///
/// # Errors
/// modprobe's failure, its stderr included.
pub fn load(module: &str, hint: &str) -> Result<(), CommandError> {
    command::run(&mut command::cmd("modprobe", [module]), hint).map(|_| ())
}

/// `modprobe -r <module>` (and the modules only it needed).
///
/// # Errors
/// modprobe's failure (in use, say), its stderr included.
pub fn unload(module: &str) -> Result<(), CommandError> {
    command::run(&mut command::cmd("modprobe", ["-r", module]), "").map(|_| ())
}
