//! Which engine kinds the `engine` binary beside the supervisor was built
//! with. `kernel` and `dpdk` always are; `fstack` only with the engine's
//! cargo feature (F-Stack is installed by the user, never vendored). The
//! supervisor asks `engine --list-kinds` before touching the network, so
//! `start --engine fstack` on a build without it fails at once, saying what
//! is missing and how to enable it.

use std::path::Path;
use std::process::Command;

use super::error::LifecycleError;
use super::session::EngineKind;

/// What to do when the engine cannot say why (an engine binary older than
/// `--list-kinds`): the same advice the engine gives.
const FSTACK_HOW_TO: &str = "build the engine with the cargo feature `fstack` against F-Stack \
     1.24 (which targets DPDK 22.11; later F-Stack releases target DPDK 23.11): install \
     F-Stack as its documentation describes (https://github.com/F-Stack/f-stack), then \
     `FF_PATH=<F-Stack prefix> cargo build --release --features engine/fstack`";

/// One kind as `engine --list-kinds` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedKind {
    /// `kernel`, `dpdk`, `fstack`.
    pub kind: String,
    /// `None` when the binary has it; otherwise the engine's own reason.
    pub unavailable: Option<String>,
}

/// Asks `engine_bin --list-kinds` which kinds it was built with.
///
/// # Errors
/// The binary cannot be run or does not answer with the `--list-kinds`
/// document (an engine older than that option): the message says so and
/// how to get an engine with F-Stack.
pub fn list(engine_bin: &Path) -> Result<Vec<ListedKind>, String> {
    let output = Command::new(engine_bin)
        .arg("--list-kinds")
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "{} cannot be run ({e}); {FSTACK_HOW_TO}",
                engine_bin.display()
            )
        })?;
    let listing = output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
        .and_then(|doc| parse_listing(&doc));
    listing.ok_or_else(|| {
        format!(
            "{} cannot list its kinds (`--list-kinds`); {FSTACK_HOW_TO}",
            engine_bin.display()
        )
    })
}

/// The kinds of a binary that cannot list them (an engine older than
/// `--list-kinds`): kernel and dpdk are always built in, fstack is not,
/// for the reason `why` ([`list`]'s error).
#[must_use]
pub fn assumed_without_listing(why: &str) -> Vec<ListedKind> {
    vec![
        ListedKind {
            kind: "kernel".into(),
            unavailable: None,
        },
        ListedKind {
            kind: "dpdk".into(),
            unavailable: None,
        },
        ListedKind {
            kind: "fstack".into(),
            unavailable: Some(why.to_owned()),
        },
    ]
}

/// Checks that `engine_bin` can serve `kind`.
///
/// # Errors
/// [`LifecycleError::Unsupported`] naming what is missing and how to get it.
pub fn require(engine_bin: &Path, kind: EngineKind) -> Result<(), LifecycleError> {
    if kind != EngineKind::Fstack {
        return Ok(());
    }
    let unsupported = |reason: String| {
        LifecycleError::Unsupported(format!("engine `fstack` is not available: {reason}"))
    };
    let kinds = list(engine_bin).map_err(unsupported)?;
    match kinds.into_iter().find(|k| k.kind == kind.as_str()) {
        Some(ListedKind {
            unavailable: None, ..
        }) => Ok(()),
        Some(ListedKind {
            unavailable: Some(reason),
            ..
        }) => Err(unsupported(format!(
            "{} says: {reason}",
            engine_bin.display()
        ))),
        None => Err(unsupported(format!(
            "{} has no kind `{}`; {FSTACK_HOW_TO}",
            engine_bin.display(),
            kind.as_str()
        ))),
    }
}

/// Reads `engine --list-kinds`'s JSON (`{"kinds":[{"kind":..,
/// "available":bool,"reason":..}]}`); `None` when the document does not
/// say, for some kind, whether it is available.
fn parse_listing(doc: &str) -> Option<Vec<ListedKind>> {
    let doc: serde_json::Value = serde_json::from_str(doc).ok()?;
    doc.get("kinds")?
        .as_array()?
        .iter()
        .map(|entry| {
            let kind = entry.get("kind")?.as_str()?.to_owned();
            let available = entry.get("available")?.as_bool()?;
            let unavailable = (!available).then(|| {
                entry
                    .get("reason")
                    .and_then(serde_json::Value::as_str)
                    .map_or_else(|| FSTACK_HOW_TO.to_owned(), str::to_owned)
            });
            Some(ListedKind { kind, unavailable })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn available(kinds: &[ListedKind], kind: &str) -> Option<Option<String>> {
        kinds
            .iter()
            .find(|k| k.kind == kind)
            .map(|k| k.unavailable.clone())
    }

    #[test]
    fn reads_the_engines_answer() {
        let without = parse_listing(
            r#"{"kinds":[{"kind":"kernel","available":true},
            {"kind":"fstack","available":false,"reason":"built without `fstack`"}]}"#,
        )
        .unwrap();
        assert_eq!(available(&without, "kernel"), Some(None));
        assert_eq!(
            available(&without, "fstack"),
            Some(Some("built without `fstack`".to_owned()))
        );
        let with = parse_listing(
            r#"{"kinds":[{"kind":"fstack","available":true,"fstack_version":"1.24"}]}"#,
        )
        .unwrap();
        assert_eq!(available(&with, "fstack"), Some(None));
        let silent = parse_listing(r#"{"kinds":[{"kind":"fstack","available":false}]}"#).unwrap();
        let reason = available(&silent, "fstack").unwrap().unwrap();
        assert!(reason.contains("FF_PATH") && reason.contains("1.24"));
        assert_eq!(
            available(&parse_listing(r#"{"kinds":[]}"#).unwrap(), "fstack"),
            None
        );
        for garbage in [
            "not json",
            "{}",
            r#"{"kinds":[{"kind":"fstack"}]}"#,
            r#"{"kinds":3}"#,
        ] {
            assert!(parse_listing(garbage).is_none(), "{garbage}");
        }
    }

    #[test]
    fn a_binary_that_cannot_list_gets_the_full_advice() {
        let err = require(Path::new("/bin/false"), EngineKind::Fstack).unwrap_err();
        let LifecycleError::Unsupported(message) = err else {
            panic!("expected Unsupported, got {err:?}");
        };
        for needle in ["fstack", "--features", "FF_PATH", "1.24", "22.11"] {
            assert!(message.contains(needle), "{needle} missing from: {message}");
        }
        assert!(require(Path::new("/bin/false"), EngineKind::Kernel).is_ok());
    }
}
