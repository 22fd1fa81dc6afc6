//! The sibling binaries the supervisor starts (the engine and the load
//! generator, beside it where cargo puts them), and what the engine binary
//! says it can serve: `kernel` and `dpdk` always, `fstack` only with the
//! engine's cargo feature (F-Stack is installed by the user, never
//! vendored). Asking the binary, before touching the network, is what lets
//! `start --engine fstack` on a build without it fail at once, saying what
//! is missing and how to enable it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use contract::{EngineKind, KindList, KindListing};

use crate::host::command::drain;
use crate::host::process::{terminate, wait_timeout};

/// What to do when the engine cannot say why (an engine binary older than
/// `--list-kinds`): the same advice the engine gives.
pub const FSTACK_HOW_TO: &str = "build the engine with the cargo feature `fstack` against \
     F-Stack 1.24 (which targets DPDK 22.11; later F-Stack releases target DPDK 23.11): \
     `scripts/fstack --source <your F-Stack 1.24 tree>` (or `scripts/fstack --clone`) builds \
     it and the engine in one step; or install F-Stack as its documentation describes \
     (https://github.com/F-Stack/f-stack), then `FF_PATH=<F-Stack prefix> cargo build \
     --release --features engine/fstack`";

/// How long `engine --list-kinds` may take.
const LIST_WITHIN: Duration = Duration::from_secs(10);

/// A binary the supervisor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// The server engine.
    Engine,
    /// The load generator.
    Loadgen,
}

impl Binary {
    /// Its file name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Engine => "engine",
            Self::Loadgen => "loadgen",
        }
    }
}

/// A binary that is missing or cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinError {
    /// Not where it should be.
    #[error("cannot find the `{name}` binary at {path}: build the workspace first (`cargo build --release`) or pass --bin-dir")]
    Missing {
        /// Its name.
        name: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The engine cannot list its kinds.
    #[error("{path} cannot list its kinds (`--list-kinds`: {why}); {FSTACK_HOW_TO}")]
    CannotList {
        /// The engine binary.
        path: PathBuf,
        /// What happened.
        why: String,
    },
    /// The engine lacks a kind.
    #[error("engine `{kind}` is not available: {path} says: {reason}")]
    KindUnavailable {
        /// The kind asked for.
        kind: EngineKind,
        /// The engine binary.
        path: PathBuf,
        /// The engine's own reason.
        reason: String,
    },
}

/// The directory of the running binary, where cargo puts its siblings.
#[must_use]
pub fn default_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Path of `binary` in `dir`, checked to exist.
///
/// # Errors
/// [`BinError::Missing`].
pub fn path(dir: &Path, binary: Binary) -> Result<PathBuf, BinError> {
    let path = dir.join(binary.name());
    if path.is_file() {
        Ok(path)
    } else {
        Err(BinError::Missing {
            name: binary.name(),
            path,
        })
    }
}

/// Asks `engine --list-kinds` which kinds it was built with.
///
/// # Errors
/// [`BinError::CannotList`] when it cannot be run, does not finish in time
/// or does not answer with the document (an engine older than the option).
pub fn kinds(engine: &Path) -> Result<KindList, BinError> {
    let cannot = |why: String| BinError::CannotList {
        path: engine.to_owned(),
        why,
    };
    let mut child = Command::new(engine)
        .arg("--list-kinds")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| cannot(format!("cannot be run: {e}")))?;
    // Read while it runs, so a large answer cannot block it on a full pipe.
    let reader = drain(child.stdout.take());
    let status = match wait_timeout(&mut child, LIST_WITHIN) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = terminate(&mut child, Duration::from_secs(1));
            return Err(cannot(format!(
                "no answer within {} s",
                LIST_WITHIN.as_secs()
            )));
        }
        Err(e) => return Err(cannot(format!("waiting for it: {e}"))),
    };
    let text = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    if !status.success() {
        return Err(cannot(format!("it exited with {status}")));
    }
    serde_json::from_str(&text).map_err(|e| cannot(format!("not the document: {e}")))
}

/// The kinds of an engine that cannot be asked: kernel and dpdk are always
/// built in, fstack is not, for the reason `why`.
#[must_use]
pub fn assumed_without_listing(why: &BinError) -> KindList {
    let listing = |kind, reason: Option<String>| KindListing {
        kind,
        available: reason.is_none(),
        reason,
        fstack_version: None,
        dpdk_version: None,
        fstack_prefix: None,
    };
    KindList {
        kinds: EngineKind::ALL
            .into_iter()
            .map(|kind| match kind {
                EngineKind::Fstack => listing(kind, Some(why.to_string())),
                other => listing(other, None),
            })
            .collect(),
    }
}

/// Checks that `engine` can serve `kind`.
///
/// # Errors
/// [`BinError`] naming what is missing and how to get it.
pub fn require(engine: &Path, kind: EngineKind) -> Result<(), BinError> {
    if !matches!(kind, EngineKind::Fstack) {
        return Ok(());
    }
    let listing = kinds(engine)?;
    match listing.get(kind) {
        Some(KindListing {
            available: true, ..
        }) => Ok(()),
        Some(entry) => Err(BinError::KindUnavailable {
            kind,
            path: engine.to_owned(),
            reason: entry
                .reason
                .clone()
                .unwrap_or_else(|| FSTACK_HOW_TO.to_owned()),
        }),
        None => Err(BinError::KindUnavailable {
            kind,
            path: engine.to_owned(),
            reason: format!("it has no kind `{kind}`; {FSTACK_HOW_TO}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_that_cannot_list_gets_the_full_advice() {
        let err = require(Path::new("/bin/false"), EngineKind::Fstack).unwrap_err();
        assert!(matches!(err, BinError::CannotList { .. }), "{err:?}");
        let message = err.to_string();
        for needle in ["fstack", "--features", "FF_PATH", "1.24", "22.11"] {
            assert!(message.contains(needle), "{needle} missing from: {message}");
        }
        assert!(require(Path::new("/bin/false"), EngineKind::Kernel).is_ok());
        let assumed = assumed_without_listing(&err);
        assert!(assumed.get(EngineKind::Dpdk).is_some_and(|k| k.available));
        assert!(assumed
            .get(EngineKind::Fstack)
            .is_some_and(|k| !k.available));
    }

    #[test]
    fn a_missing_binary_is_named() {
        let err = path(Path::new("/nonexistent"), Binary::Loadgen).unwrap_err();
        assert!(matches!(
            err,
            BinError::Missing {
                name: "loadgen",
                ..
            }
        ));
    }
}
