//! One engine run as the report keeps it: the figures of the segment's
//! result row, checked against the load generator's own JSON result and
//! the engine's request counter, the latency CDF from the histogram, and
//! the exact command lines that produced them.

use bench_report::model::RunRecord;
use bench_report::stats::Figures;
use testbed::run::attach::ResultRow;

use crate::host;

/// The exact command lines of one engine run, as the report records them:
/// the load generator's as it ran, and the engine's it ran against (both
/// rendered from the commands that were started, never retyped).
#[must_use]
pub fn command_line(loadgen: &[String], engine: &[String]) -> String {
    format!("{} ; engine: {}", loadgen.join(" "), engine.join(" "))
}

/// The quantiles plotted and stored for an engine run's CDF.
pub fn cdf_quantiles() -> Vec<f64> {
    let mut q: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
    q.extend([0.995, 0.999, 0.9995, 0.9999, 1.0]);
    q
}

/// One engine run's record: figures from the segment's row, checked
/// against the loadgen's own JSON result and the engine's counter.
pub fn engine_record(
    row: &ResultRow,
    stdout: &str,
    histogram: Option<&shm_layout::LocalHistogram>,
    command: String,
    started_utc: String,
) -> RunRecord {
    #[allow(clippy::cast_precision_loss)]
    let figures = Figures {
        messages: Some(row.answered as f64),
        elapsed_s: Some(row.elapsed_s),
        messages_per_s: Some(row.messages_per_s),
        bandwidth_kb_s: Some(row.bandwidth_kb_s),
        rtt_mean_us: Some(row.rtt.mean_us),
        rtt_p50_us: Some(row.rtt.p50_us),
        rtt_p99_us: Some(row.rtt.p99_us),
        rtt_p999_us: Some(row.rtt.p999_us),
        rtt_max_us: Some(row.rtt.max_us),
        connections_per_s: row.short.map(|s| s.connections_per_s),
        connect_p50_us: row.short.map(|s| s.connect.p50_us),
        connect_p99_us: row.short.map(|s| s.connect.p99_us),
        engine_busy: row.engine_busy,
        loadgen_busy: row.loadgen_busy,
    };
    let report: Option<serde_json::Value> = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(serde_json::Value::is_object);
    let mut problems = Vec::new();
    match &report {
        None => problems.push("the load generator printed no JSON result".to_owned()),
        Some(r) => {
            let get = |k: &str| r.get(k).and_then(serde_json::Value::as_f64);
            #[allow(clippy::cast_precision_loss)]
            for (key, ours) in [
                ("answered", row.answered as f64),
                ("sent", row.sent as f64),
                ("failed", row.failed as f64),
            ] {
                if get(key) != Some(ours) {
                    problems.push(format!("{key}: segment {ours}, loadgen {:?}", get(key)));
                }
            }
            if row.pattern == contract::loadgen::Pattern::Short && row.short.is_none() {
                problems.push(
                    "short connections, but the load generator's result has no connection figures"
                        .to_owned(),
                );
            }
            if let Some(theirs) = get("messages_per_s") {
                if (theirs - row.messages_per_s).abs() > 0.02 * theirs.max(1.0) {
                    problems.push(format!(
                        "messages_per_s: segment {:.1}, loadgen {theirs:.1}",
                        row.messages_per_s
                    ));
                }
            }
        }
    }
    if row.engine_received != row.sent + row.warmup {
        problems.push(format!(
            "engine received {} requests, loadgen sent {} + {} warm-up",
            row.engine_received, row.sent, row.warmup
        ));
    }
    let cdf = histogram
        .filter(|h| h.count() > 0)
        .map(|h| {
            cdf_quantiles()
                .into_iter()
                .map(|q| {
                    #[allow(clippy::cast_precision_loss)]
                    let us = h.value_at_quantile(q) as f64 / 1000.0;
                    (q, us)
                })
                .collect()
        })
        .unwrap_or_default();
    RunRecord {
        command,
        figures,
        clean: row.is_clean(),
        inconsistencies: problems,
        cdf,
        detail: serde_json::json!({
            "row": row,
            "loadgen_report": report,
            "histogram_count": histogram.map(shm_layout::LocalHistogram::count),
        }),
        started_utc,
        loadavg: host::loadavg(),
    }
}
