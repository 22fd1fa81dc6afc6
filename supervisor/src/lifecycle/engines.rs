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

/// Checks that `engine_bin` can serve `kind`.
///
/// # Errors
/// [`LifecycleError::Unsupported`] naming what is missing and how to get it.
pub fn require(engine_bin: &Path, kind: EngineKind) -> Result<(), LifecycleError> {
    if kind != EngineKind::Fstack {
        return Ok(());
    }
    let listing = Command::new(engine_bin)
        .arg("--list-kinds")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    match listing
        .as_deref()
        .map(|doc| unavailable_reason(doc, kind.as_str()))
    {
        Some(Ok(None)) => Ok(()),
        Some(Ok(Some(reason))) => Err(LifecycleError::Unsupported(format!(
            "engine `fstack` is not available: {} says: {reason}",
            engine_bin.display()
        ))),
        Some(Err(())) | None => Err(LifecycleError::Unsupported(format!(
            "engine `fstack` is not available: {} cannot list its kinds (`--list-kinds`); \
             {FSTACK_HOW_TO}",
            engine_bin.display()
        ))),
    }
}

/// From `engine --list-kinds`'s JSON: `Ok(None)` when `kind` is available,
/// `Ok(Some(reason))` when not, `Err` when the document does not say.
fn unavailable_reason(doc: &str, kind: &str) -> Result<Option<String>, ()> {
    let doc: serde_json::Value = serde_json::from_str(doc).map_err(|_| ())?;
    let entry = doc["kinds"]
        .as_array()
        .and_then(|kinds| kinds.iter().find(|k| k["kind"] == kind));
    let Some(entry) = entry else {
        return Ok(Some(format!(
            "this engine has no kind `{kind}`; {FSTACK_HOW_TO}"
        )));
    };
    match entry["available"].as_bool() {
        Some(true) => Ok(None),
        Some(false) => Ok(Some(
            entry["reason"]
                .as_str()
                .map_or_else(|| FSTACK_HOW_TO.to_owned(), str::to_owned),
        )),
        None => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_engines_answer() {
        let without = r#"{"kinds":[{"kind":"kernel","available":true},
            {"kind":"fstack","available":false,"reason":"built without `fstack`"}]}"#;
        assert_eq!(unavailable_reason(without, "kernel"), Ok(None));
        assert_eq!(
            unavailable_reason(without, "fstack"),
            Ok(Some("built without `fstack`".to_owned()))
        );
        let with = r#"{"kinds":[{"kind":"fstack","available":true,"fstack_version":"1.24"}]}"#;
        assert_eq!(unavailable_reason(with, "fstack"), Ok(None));
        assert!(unavailable_reason("not json", "fstack").is_err());
        let missing = unavailable_reason(r#"{"kinds":[]}"#, "fstack")
            .unwrap()
            .unwrap();
        assert!(missing.contains("FF_PATH") && missing.contains("1.24"));
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
