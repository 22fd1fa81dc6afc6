//! Keeping a long matrix: the report is saved after every repetition, and
//! `--resume` continues a saved one.
//!
//! The full default matrix takes most of a day (1 000 000 messages over the
//! impaired link run at a few hundred messages/s). Saving `results.json`
//! (atomically: a temporary file renamed over it) after each repetition
//! means a crash, a reboot or Ctrl-C loses at most the run in progress;
//! `supervisor bench --resume --out DIR` then reads the report, checks that
//! it was measured the same way (the settings in [`MUST_MATCH`]) and runs
//! only the repetitions it lacks. A report is never replaced by accident: a
//! bench into a directory that holds one needs `--resume` or `--overwrite`.

use std::path::{Path, PathBuf};

use crate::model::{self, Results};

/// The report's file in the output directory.
pub const RESULTS_FILE: &str = "results.json";
/// Its human form.
pub const MARKDOWN_FILE: &str = "results.md";

/// Configuration keys whose figures are not comparable when they differ.
/// Engines, counts, impairment settings, peers and repetitions may differ:
/// each cell knows its own subject, count, testbed and runs.
pub const MUST_MATCH: [&str; 7] = [
    "open_fraction",
    "busy_poll",
    "pmd",
    "warmup",
    "loadgen",
    "peer_message_size",
    "impaired_link",
];

/// Why a report cannot be continued or written.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// `--resume` into a directory without a report.
    #[error("nothing to resume: {0} does not exist (run without --resume to start a report)")]
    Missing(PathBuf),
    /// A report exists and neither `--resume` nor `--overwrite` was given.
    #[error(
        "{0} holds a report already: pass --resume to add the runs it lacks, \
         --overwrite to replace it, or another --out"
    )]
    Exists(PathBuf),
    /// The report cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a bench report.
    #[error("{path} is not a bench report: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A layout this supervisor does not continue.
    #[error(
        "{path} has layout version {found}; this supervisor continues versions {}..={}",
        model::OLDEST_RESUMABLE_SCHEMA,
        model::SCHEMA
    )]
    Schema {
        /// The file.
        path: PathBuf,
        /// Its `schema`.
        found: u64,
    },
    /// Measured with other settings.
    #[error(
        "{path} was measured with {key} = {theirs}, this bench asks for {ours}: \
         repeat the report's options or measure into another --out"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The configuration key.
        key: &'static str,
        /// The report's value.
        theirs: String,
        /// This invocation's.
        ours: String,
    },
}

/// Reads a saved report for `--resume`.
///
/// # Errors
/// [`ResumeError::Missing`], [`ResumeError::Read`],
/// [`ResumeError::Corrupt`], [`ResumeError::Schema`].
pub fn load(path: &Path) -> Result<Results, ResumeError> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ResumeError::Missing(path.to_owned()),
        _ => ResumeError::Read {
            path: path.to_owned(),
            source,
        },
    })?;
    parse(path, &bytes)
}

/// [`load`] on bytes already read; `path` names them in errors.
///
/// # Errors
/// [`ResumeError::Corrupt`], [`ResumeError::Schema`].
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Results, ResumeError> {
    let corrupt = |reason: String| ResumeError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    // The version first, so a newer layout is named as such rather than as
    // a file with unexpected fields.
    let schema = value
        .get("schema")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| corrupt("no `schema` number".into()))?;
    if !(u64::from(model::OLDEST_RESUMABLE_SCHEMA)..=u64::from(model::SCHEMA)).contains(&schema) {
        return Err(ResumeError::Schema {
            path: path.to_owned(),
            found: schema,
        });
    }
    serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
}

/// Checks that a saved report was measured with the settings of
/// `configuration` (this invocation's) wherever [`MUST_MATCH`] says the
/// figures would differ.
///
/// # Errors
/// [`ResumeError::Mismatch`] naming the first setting that differs (a
/// setting the report does not record counts as different).
pub fn check_compatible(
    path: &Path,
    saved: &Results,
    configuration: &serde_json::Value,
) -> Result<(), ResumeError> {
    for key in MUST_MATCH {
        let theirs = saved.configuration.get(key);
        let ours = configuration.get(key);
        if theirs != ours {
            let show = |v: Option<&serde_json::Value>| {
                v.map_or_else(|| "(not recorded)".to_owned(), ToString::to_string)
            };
            return Err(ResumeError::Mismatch {
                path: path.to_owned(),
                key,
                theirs: show(theirs),
                ours: show(ours),
            });
        }
    }
    Ok(())
}

/// The configuration a continued report records: this invocation's
/// settings, with the matrix's extent widened to all the report holds.
///
/// A resume may measure part of the matrix (`--packets 1000000
/// --repetitions 1`, say); the report still covers every count, testbed,
/// engine and peer it has cells for, and asks for the largest number of
/// repetitions any session asked for, so a cell with fewer runs stays
/// flagged until a later session adds them.
#[must_use]
pub fn widen(saved: &Results, mut ours: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let union = |lists: [Vec<Value>; 3]| -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        for v in lists.into_iter().flatten() {
            if !all.contains(&v) {
                all.push(v);
            }
        }
        all
    };
    let of_cells = |pick: &dyn Fn(&model::Cell) -> Option<Value>| -> Vec<Value> {
        saved.cells.iter().filter_map(pick).collect()
    };
    let subjects = |kind: &'static str| {
        move |c: &model::Cell| (c.kind == kind).then(|| Value::from(c.subject.as_str()))
    };
    let engines = union([
        model::configured(&saved.configuration, "engines"),
        of_cells(&subjects("engine")),
        model::configured(&ours, "engines"),
    ]);
    let peers = union([
        model::configured(&saved.configuration, "peers"),
        of_cells(&subjects("peer")),
        model::configured(&ours, "peers"),
    ]);
    let mut packets = union([
        model::configured(&saved.configuration, "packets"),
        of_cells(&|c| Some(Value::from(c.packets))),
        model::configured(&ours, "packets"),
    ]);
    packets.sort_by_key(|v| v.as_u64().unwrap_or(u64::MAX));
    let mut impairment = union([
        model::configured(&saved.configuration, "impairment"),
        of_cells(&|c| Some(Value::from(c.impairment.as_str()))),
        model::configured(&ours, "impairment"),
    ]);
    // `off` before `on`, the order a full bench measures them in.
    impairment.sort_by_key(|v| v.as_str().map(str::to_owned));
    let repetitions = [&saved.configuration, &ours]
        .iter()
        .filter_map(|c| c.get("repetitions").and_then(Value::as_u64))
        .max();
    // Each subject's tests: what this session knows, else what the saved
    // report recorded or its cells hold.
    let mut tests = ours
        .get("tests")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for subject in engines.iter().chain(&peers).filter_map(Value::as_str) {
        if !tests.contains_key(subject) {
            let known = saved.tests_of(subject);
            if !known.is_empty() {
                tests.insert(subject.to_owned(), Value::from(known));
            }
        }
    }
    // Each half's axes: the union of both sessions' lists.
    let mut halves = serde_json::Map::new();
    for half in impairment.iter().filter_map(Value::as_str) {
        let of = |c: &Value| c.get("halves").and_then(|h| h.get(half)).cloned();
        let (saved_half, our_half) = (of(&saved.configuration), of(&ours));
        let mut merged = serde_json::Map::new();
        for axis in ["packets", "connections", "clients", "rto_min_ms"] {
            let list = |h: &Option<Value>| -> Vec<Value> {
                h.as_ref()
                    .and_then(|h| h.get(axis))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let all = union([list(&saved_half), list(&our_half), Vec::new()]);
            if !all.is_empty() {
                merged.insert(axis.to_owned(), Value::Array(all));
            }
        }
        if !merged.is_empty() {
            halves.insert(half.to_owned(), Value::Object(merged));
        }
    }
    if let Some(map) = ours.as_object_mut() {
        if !halves.is_empty() {
            map.insert("halves".into(), Value::Object(halves));
        }
        map.insert("tests".into(), Value::Object(tests));
        map.insert("engines".into(), Value::Array(engines));
        map.insert("peers".into(), Value::Array(peers));
        map.insert("packets".into(), Value::Array(packets));
        map.insert("impairment".into(), Value::Array(impairment));
        if let Some(r) = repetitions {
            map.insert("repetitions".into(), Value::from(r));
        }
    }
    ours
}

/// Writes `bytes` to `path` through a temporary file renamed over it, so a
/// reader (or a crash) never sees half a report.
///
/// # Errors
/// The temporary file cannot be written or renamed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Saves the report and its markdown in `dir`.
///
/// # Errors
/// The path that could not be written, and why.
pub fn save(dir: &Path, results: &Results) -> Result<(), (PathBuf, std::io::Error)> {
    let json = serde_json::to_vec_pretty(results)
        .map_err(|e| (dir.join(RESULTS_FILE), std::io::Error::other(e)))?;
    for (name, bytes) in [
        (RESULTS_FILE, json),
        (
            MARKDOWN_FILE,
            crate::markdown::markdown(results).into_bytes(),
        ),
    ] {
        let path = dir.join(name);
        write_atomically(&path, &bytes).map_err(|e| (path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(schema: u64) -> serde_json::Value {
        serde_json::json!({
            "schema": schema, "command": "supervisor bench", "started_utc": "", "finished_utc": "",
            "git_revision": "", "configuration": {"open_fraction": 0.8, "busy_poll": false},
            "host": {"kernel": "", "cpu": "", "cores": 2, "memory_mib": 1, "loadavg_start": "",
                     "loadavg_end": "", "doctor": null},
            "engines": [], "peers": [], "testbeds": [], "cells": [], "plots": [], "problems": [],
            "interrupted": false
        })
    }

    #[test]
    fn reads_a_version_one_report_without_sessions() {
        let bytes = serde_json::to_vec(&minimal(1)).unwrap();
        let r = parse(Path::new("r.json"), &bytes).unwrap();
        assert!(r.sessions.is_empty());
    }

    #[test]
    fn names_what_is_wrong_with_a_file() {
        let p = Path::new("r.json");
        assert!(matches!(
            parse(p, b"{\"schema\": 2, \"cells\": 3"),
            Err(ResumeError::Corrupt { .. })
        ));
        assert!(matches!(
            parse(p, b"{\"cells\": []}"),
            Err(ResumeError::Corrupt { .. })
        ));
        let newer = serde_json::to_vec(&minimal(u64::from(model::SCHEMA) + 1)).unwrap();
        assert!(matches!(
            parse(p, &newer),
            Err(ResumeError::Schema { found, .. }) if found == u64::from(model::SCHEMA) + 1
        ));
        let mut wrong = minimal(2);
        wrong["cells"] = serde_json::json!([{"subject": 7}]);
        let err = parse(p, &serde_json::to_vec(&wrong).unwrap()).unwrap_err();
        assert!(matches!(err, ResumeError::Corrupt { .. }), "{err}");
        assert!(matches!(
            load(Path::new("/nonexistent/bypasslab/results.json")),
            Err(ResumeError::Missing(_))
        ));
    }

    #[test]
    fn a_different_setting_is_refused_by_name() {
        let p = Path::new("r.json");
        let saved = parse(p, &serde_json::to_vec(&minimal(2)).unwrap()).unwrap();
        let mut ours = serde_json::json!({
            "open_fraction": 0.8, "busy_poll": false, "pmd": "af_xdp", "warmup": 1000,
            "loadgen": {}, "peer_message_size": 768, "impaired_link": {}
        });
        let err = check_compatible(p, &saved, &ours).unwrap_err();
        assert!(
            matches!(err, ResumeError::Mismatch { key: "pmd", .. }),
            "{err}"
        );
        let mut same = saved.clone();
        same.configuration = ours.clone();
        assert!(check_compatible(p, &same, &ours).is_ok());
        ours["busy_poll"] = serde_json::json!(true);
        let err = check_compatible(p, &same, &ours).unwrap_err();
        assert!(
            matches!(
                err,
                ResumeError::Mismatch {
                    key: "busy_poll",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("false") && err.to_string().contains("true"));
    }

    #[test]
    fn a_partial_resume_keeps_the_whole_matrix_in_the_configuration() {
        let p = Path::new("r.json");
        let mut saved = parse(p, &serde_json::to_vec(&minimal(2)).unwrap()).unwrap();
        // An earlier partial session recorded only part of the matrix...
        saved.configuration = serde_json::json!({
            "engines": ["kernel", "dpdk"], "packets": [10000, 100000],
            "impairment": ["on"], "peers": ["sockperf", "netperf"], "repetitions": 3
        });
        // ...but its cells show the unimpaired testbed and fstack too.
        saved.cells = vec![
            model::Cell::new(
                "engine",
                &model::CellKey::new("kernel", "closed", "off", 10000),
            ),
            model::Cell::new(
                "engine",
                &model::CellKey::new("fstack", "closed", "on", 10000),
            ),
            model::Cell::new("peer", &model::CellKey::new("iperf3", "bulk", "on", 100000)),
        ];
        let ours = serde_json::json!({
            "engines": ["dpdk"], "packets": [1000000], "impairment": ["on"],
            "peers": ["iperf3"], "repetitions": 1, "pmd": "af_xdp"
        });
        let wide = widen(&saved, ours);
        assert_eq!(
            wide["engines"],
            serde_json::json!(["kernel", "dpdk", "fstack"])
        );
        assert_eq!(
            wide["peers"],
            serde_json::json!(["sockperf", "netperf", "iperf3"])
        );
        assert_eq!(wide["packets"], serde_json::json!([10000, 100000, 1000000]));
        assert_eq!(wide["impairment"], serde_json::json!(["off", "on"]));
        assert_eq!(wide["repetitions"], serde_json::json!(3));
        assert_eq!(wide["pmd"], serde_json::json!("af_xdp"));
    }

    #[test]
    fn atomic_write_replaces_whole() {
        let dir = std::env::temp_dir().join(format!("bench-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.json");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(!dir.join("f.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
