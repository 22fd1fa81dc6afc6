//! Which of the requested engines and peers this build and host can
//! measure, and for each one that cannot, why: the report lists them with
//! the reason instead of dropping them silently.
//!
//! An engine needs two things: its kind compiled into the `engine` binary
//! (`engine --list-kinds`; F-Stack is linked in at build time, so the
//! binary, not `FF_PATH`, decides) and the host facilities it runs on
//! (`doctor`: DPDK's PMDs for dpdk and fstack alike).

use std::path::Path;

use bench_report::model::Availability;
use contract::{EngineKind, KindList};
use testbed::bins::{self, Binary};

use crate::peers::Peer;

/// Kinds compiled into the engine binary in `bin_dir`. A binary that cannot
/// be asked is taken to have kernel and dpdk only, with the reason.
fn compiled_kinds(bin_dir: &Path) -> KindList {
    let engine = bin_dir.join(Binary::Engine.name());
    bins::kinds(&engine).unwrap_or_else(|why| bins::assumed_without_listing(&why))
}

/// The doctor's engine that stands for `kind`'s host needs: F-Stack is a
/// TCP stack over the same DPDK ports, so it runs wherever dpdk runs.
fn host_needs(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Fstack => EngineKind::Dpdk.as_str(),
        other => other.as_str(),
    }
}

/// Why `doctor` says this host cannot run `needs`.
fn doctor_reason(doctor: &serde_json::Value, needs: &str) -> String {
    let check = doctor
        .get("checks")
        .and_then(serde_json::Value::as_array)
        .and_then(|checks| {
            checks
                .iter()
                .find(|c| c.get("name").and_then(serde_json::Value::as_str) == Some(needs))
        });
    let text = |c: &serde_json::Value, key: &str| {
        c.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    check.map_or_else(
        || "this host cannot run it (see `supervisor doctor`)".to_owned(),
        |c| {
            format!(
                "this host cannot run it (doctor, {needs}: {}; {})",
                text(c, "detail"),
                text(c, "consequence")
            )
        },
    )
}

/// Each requested engine once, in the order asked, with its availability.
#[must_use]
pub fn engines(
    requested: &[EngineKind],
    bin_dir: &Path,
    doctor: &serde_json::Value,
) -> Vec<(EngineKind, Availability)> {
    let compiled = compiled_kinds(bin_dir);
    let host_engines: Vec<&str> = doctor
        .get("engines")
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    let mut out: Vec<(EngineKind, Availability)> = Vec::new();
    for &kind in requested {
        if out.iter().any(|(k, _)| *k == kind) {
            continue;
        }
        let name = kind.as_str();
        let needs = host_needs(kind);
        let reason = match compiled.get(kind) {
            None => Some(format!("the engine binary does not list the kind `{name}`")),
            Some(listing) if !listing.available => Some(
                listing
                    .reason
                    .clone()
                    .unwrap_or_else(|| bins::FSTACK_HOW_TO.to_owned()),
            ),
            Some(_) if !host_engines.contains(&needs) => Some(doctor_reason(doctor, needs)),
            Some(_) => None,
        };
        out.push((
            kind,
            Availability {
                name: name.to_owned(),
                available: reason.is_none(),
                reason,
            },
        ));
    }
    out
}

/// Each requested peer once, with whether its tools are installed.
#[must_use]
pub fn peers(requested: &[&'static dyn Peer]) -> Vec<(&'static dyn Peer, Availability)> {
    let mut out: Vec<(&'static dyn Peer, Availability)> = Vec::new();
    for &peer in requested {
        if out.iter().any(|(p, _)| p.name() == peer.name()) {
            continue;
        }
        let detected = peer.detect();
        out.push((
            peer,
            Availability {
                name: peer.name().to_owned(),
                available: detected.is_ok(),
                reason: detected.err().map(|e| e.0),
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doctor(engines: &[&str]) -> serde_json::Value {
        serde_json::json!({
            "engines": engines,
            "checks": [{"name": "dpdk", "ok": false, "detail": "pkg-config libdpdk: not found",
                        "consequence": "no dpdk engine"}],
        })
    }

    /// A directory holding an `engine` script that prints `listing`.
    fn fake_engine(tag: &str, listing: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bench-avail-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("engine");
        std::fs::write(&bin, format!("#!/bin/sh\necho '{listing}'\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn fstack_built_in_is_trusted_without_ff_path() {
        let dir = fake_engine(
            "with",
            r#"{"kinds":[{"kind":"kernel","available":true},{"kind":"dpdk","available":true},{"kind":"fstack","available":true}]}"#,
        );
        // The doctor of a shell without FF_PATH: fstack is not among its
        // engines, dpdk is.
        let got = engines(
            &[EngineKind::Kernel, EngineKind::Fstack, EngineKind::Kernel],
            &dir,
            &doctor(&["kernel", "dpdk"]),
        );
        assert_eq!(got.len(), 2, "a kind asked twice is measured once");
        assert!(got.iter().all(|(_, a)| a.available), "{got:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_kind_or_host_facility_is_listed_with_the_reason() {
        let dir = fake_engine(
            "without",
            r#"{"kinds":[{"kind":"kernel","available":true},{"kind":"dpdk","available":true},{"kind":"fstack","available":false,"reason":"built without fstack"}]}"#,
        );
        let got = engines(
            &[EngineKind::Kernel, EngineKind::Dpdk, EngineKind::Fstack],
            &dir,
            &doctor(&["kernel"]),
        );
        assert!(got[0].1.available);
        let dpdk = got[1].1.reason.as_deref().unwrap();
        assert!(
            dpdk.contains("doctor, dpdk") && dpdk.contains("pkg-config libdpdk"),
            "{dpdk}"
        );
        assert_eq!(got[2].1.reason.as_deref(), Some("built without fstack"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_engine_that_cannot_list_gets_kernel_and_dpdk() {
        let dir = std::env::temp_dir().join(format!("bench-avail-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let got = engines(
            &[EngineKind::Dpdk, EngineKind::Fstack],
            &dir,
            &doctor(&["kernel", "dpdk"]),
        );
        assert!(got[0].1.available);
        let why = got[1].1.reason.as_deref().unwrap();
        assert!(why.contains("engine") && why.contains("FF_PATH"), "{why}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
