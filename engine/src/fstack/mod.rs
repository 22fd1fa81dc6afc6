//! The `fstack` backend: F-Stack (FreeBSD's TCP/IP stack over DPDK) answers
//! the protocol, driven from inside F-Stack's own `ff_run` loop.
//!
//! F-Stack is linked only with the cargo feature `fstack` (see `build.rs`):
//! this module always says whether it is in this build and, if not, what to
//! do about it (`engine --list-kinds`, and the error of `--kind fstack`).
//! With the feature, layers bottom-up: `ffi` declares the ~15 C functions
//! used (epoll flavour); `api` wraps them in a safe, single-thread
//! interface; `server` holds the connections; `FstackBackend` performs
//! F-Stack's initialisation itself (to give EAL the vdev on NS3's veth that
//! F-Stack 1.24's config.ini cannot express) and runs the loop.

#[cfg(feature = "fstack")]
pub mod api;
#[cfg(feature = "fstack")]
mod backend;
#[cfg(feature = "fstack")]
pub mod ffi;
#[cfg(feature = "fstack")]
mod server;

#[cfg(feature = "fstack")]
pub use backend::{FstackBackend, FstackOptions};

/// The F-Stack release the declarations in this module were written for.
pub const SUPPORTED_FSTACK: &str = "1.24";
/// The DPDK series F-Stack 1.24 targets (Debian 12's libdpdk-dev).
pub const SUPPORTED_DPDK: &str = "22.11";

/// What a user must do to get the fstack engine into a build that lacks it.
pub const HOW_TO_ENABLE: &str = "this engine binary was built without the cargo feature \
     `fstack`. `scripts/fstack --source <F-Stack 1.24 source tree>` (or `--clone`) builds \
     F-Stack 1.24 and this engine with it in one step; or install F-Stack 1.24 (built against \
     DPDK 22.11; later F-Stack releases target DPDK 23.11 and are not supported) as F-Stack's \
     documentation describes (https://github.com/F-Stack/f-stack), then rebuild with \
     `FF_PATH=<F-Stack prefix> cargo build --release --features engine/fstack`";

/// Whether `--kind fstack` works in this binary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Availability {
    /// True when F-Stack is linked in.
    pub available: bool,
    /// Why not, and how to enable it (unavailable builds only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The linked F-Stack release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fstack_version: Option<&'static str>,
    /// The DPDK it was linked with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpdk_version: Option<&'static str>,
    /// The F-Stack prefix it was linked against (`FF_PATH` at build time),
    /// so that `supervisor doctor` can say which F-Stack a binary holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fstack_prefix: Option<&'static str>,
}

/// This build's answer.
#[must_use]
pub fn availability() -> Availability {
    #[cfg(feature = "fstack")]
    {
        Availability {
            available: true,
            reason: None,
            fstack_version: Some(env!("BYPASSLAB_FSTACK_VERSION")),
            dpdk_version: Some(env!("BYPASSLAB_FSTACK_DPDK_VERSION")),
            fstack_prefix: Some(env!("BYPASSLAB_FSTACK_PREFIX")),
        }
    }
    #[cfg(not(feature = "fstack"))]
    {
        Availability {
            available: false,
            reason: Some(HOW_TO_ENABLE),
            fstack_version: None,
            dpdk_version: None,
            fstack_prefix: None,
        }
    }
}

/// `engine --list-kinds`: one JSON document naming every kind and whether
/// this binary has it (see [`contract::KindList`]).
#[must_use]
pub fn list_kinds_json() -> String {
    let fstack = availability();
    let kinds = contract::EngineKind::ALL
        .into_iter()
        .map(|kind| match kind {
            contract::EngineKind::Fstack => contract::KindListing {
                kind,
                available: fstack.available,
                reason: fstack.reason.map(str::to_owned),
                fstack_version: fstack.fstack_version.map(str::to_owned),
                dpdk_version: fstack.dpdk_version.map(str::to_owned),
                fstack_prefix: fstack.fstack_prefix.map(str::to_owned),
            },
            _ => contract::KindListing {
                kind,
                available: true,
                reason: None,
                fstack_version: None,
                dpdk_version: None,
                fstack_prefix: None,
            },
        })
        .collect();
    // Strings and booleans only: serialisation cannot fail.
    serde_json::to_string(&contract::KindList { kinds }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_kinds_names_every_kind_and_explains_a_missing_one() {
        let doc: serde_json::Value = serde_json::from_str(&list_kinds_json()).unwrap();
        let kinds = doc["kinds"].as_array().unwrap();
        let names: Vec<&str> = kinds.iter().map(|k| k["kind"].as_str().unwrap()).collect();
        assert_eq!(names, ["kernel", "dpdk", "fstack"]);
        let fstack = &kinds[2];
        assert_eq!(fstack["available"], cfg!(feature = "fstack"));
        if cfg!(feature = "fstack") {
            assert_eq!(fstack["fstack_version"], SUPPORTED_FSTACK);
            assert!(fstack["fstack_prefix"]
                .as_str()
                .is_some_and(|p| !p.is_empty()));
        } else {
            let reason = fstack["reason"].as_str().unwrap();
            assert!(reason.contains("--features engine/fstack") && reason.contains("FF_PATH"));
            assert!(reason.contains("scripts/fstack --source"));
            assert!(fstack.get("fstack_prefix").is_none());
            assert!(reason.contains("1.24") && reason.contains("22.11"));
        }
    }
}
