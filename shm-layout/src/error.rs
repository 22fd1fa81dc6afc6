//! Errors of creating, opening and claiming a segment. Every message names
//! the segment file and says what is wrong with it.

use std::io;
use std::path::PathBuf;

use crate::Role;

/// Why a segment could not be created, opened or claimed.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// The options are unusable (bad name, ring capacity not a power of two).
    #[error("shared-memory segment {path}: invalid options: {reason}")]
    InvalidOptions {
        /// The file the options would have created.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `create` found the file already there (a running or crashed run); the
    /// caller decides whether to remove it.
    #[error(
        "shared-memory segment {path} already exists (another run, or leftovers of a crashed one)"
    )]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// Creating or sizing the file failed.
    #[error("shared-memory segment {path}: cannot create: {source}")]
    Create {
        /// The file.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// Mapping the file failed.
    #[error("shared-memory segment {path}: cannot map: {source}")]
    Map {
        /// The file.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// Opening, inspecting or removing the file failed.
    #[error("shared-memory segment {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// No hugepage-backed file could be made and the fallback is disabled.
    #[error("shared-memory segment {path}: no hugepages ({reason}) and the /dev/shm fallback is disabled")]
    NoHugepages {
        /// The file that would have been created on hugetlbfs.
        path: PathBuf,
        /// Why hugetlbfs could not be used.
        reason: String,
    },
    /// The file does not start with [`crate::MAGIC`]: not a bypasslab segment.
    #[error("shared-memory segment {path}: bad magic {found:#018x} (expected {expected:#018x}): not a bypasslab segment")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first 8 bytes found.
        found: u64,
        /// [`crate::MAGIC`].
        expected: u64,
    },
    /// The segment was written by another layout version of this crate.
    #[error("shared-memory segment {path}: layout version {found}, this program understands version {expected}: rebuild the programs from one tree or recreate the segment")]
    VersionMismatch {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// [`crate::LAYOUT_VERSION`].
        expected: u32,
    },
    /// A size in the header disagrees with the layout this build computes,
    /// or the file is larger than the header says.
    #[error("shared-memory segment {path}: {what} is {found} bytes, the layout needs {expected}")]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Which size ("file size", "slot size", ...).
        what: &'static str,
        /// Value found.
        found: u64,
        /// Value expected.
        expected: u64,
    },
    /// The file is shorter than its header (or a header) says.
    #[error("shared-memory segment {path} is truncated: {len} bytes, expected {expected}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The length it must have.
        expected: u64,
    },
    /// A header field has an impossible value.
    #[error("shared-memory segment {path}: corrupt header: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The process that created the segment is gone (or its pid now belongs
    /// to another process): the data is stale.
    #[error("shared-memory segment {path}: its owner, process {pid}, is dead (or the pid was reused): stale segment, remove it")]
    OwnerDead {
        /// The file.
        path: PathBuf,
        /// The owner's pid in the header.
        pid: u32,
    },
    /// The creator never published the magic within the wait.
    #[error("shared-memory segment {path}: not initialised after {waited_ms} ms (creator still starting, or crashed while creating)")]
    NotInitialized {
        /// The file.
        path: PathBuf,
        /// How long `open` waited.
        waited_ms: u64,
    },
    /// The producer slot is held by a live process.
    #[error("shared-memory segment {path}: the {role:?} slot is held by live process {pid}")]
    SlotBusy {
        /// The file.
        path: PathBuf,
        /// The slot.
        role: Role,
        /// The holder.
        pid: u32,
    },
    /// The consumer side of the slot's ring is held by a live process.
    #[error("shared-memory segment {path}: the {role:?} ring's consumer side is held by live process {pid}")]
    ConsumerBusy {
        /// The file.
        path: PathBuf,
        /// The slot.
        role: Role,
        /// The holder.
        pid: u32,
    },
    /// [`crate::ProducerInfo::kind`] is longer than 31 bytes.
    #[error("shared-memory segment {path}: producer kind {kind:?} is longer than 31 bytes")]
    KindTooLong {
        /// The file.
        path: PathBuf,
        /// The kind given.
        kind: String,
    },
}
