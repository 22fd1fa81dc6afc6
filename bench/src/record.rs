//! One engine run as the report keeps it: the figures of the segment's
//! result row, checked against the load generator's own JSON result and
//! the engine's request counter, the latency CDF from the histogram, and
//! the exact command lines that produced them.

use std::path::Path;

use crate::host;
use bench_report::report::RunRecord;
use bench_report::stats::Figures;
use testbed::config::TestbedConfig;
use testbed::run::attach::{LoadOptions, ResultRow};
use testbed::run::state::RunState;

/// The load generator's command line as `attach` runs it, and the
/// engine's it ran against.
pub fn loadgen_command(
    config: &TestbedConfig,
    state: &RunState,
    bin_dir: &Path,
    packets: u64,
    load: &LoadOptions,
) -> String {
    let segment = state
        .segment
        .as_deref()
        .map_or_else(String::new, |p| p.display().to_string());
    format!(
        "ip netns exec {} {} --connect {} --packets {packets} --connections {} --mode {} --seed {} --min-size {} --max-size {} --warmup {} --timeout-ms {} --core {} --shm {segment}{}{} --progress never ; engine: ip netns exec {} {} --kind {} --listen 0.0.0.0:{} --core {} --shm {segment}{}",
        config.client_ns(),
        bin_dir.join("loadgen").display(),
        state.server,
        load.connections,
        load.mode,
        load.seed,
        load.min_size,
        load.max_size,
        load.warmup,
        load.timeout_ms,
        state.loadgen_core,
        load.rate.map_or_else(String::new, |r| format!(" --rate {r}")),
        if load.loadgen_busy_poll { " --busy-poll" } else { "" },
        config.server_ns(),
        bin_dir.join("engine").display(),
        state.engine_kind,
        config.port(),
        state.engine_core,
        match (state.engine_kind.as_str(), load.loadgen_busy_poll) {
            // The bench gives the kernel engine --busy-poll with the loadgen's.
            ("kernel", true) => " --busy-poll",
            ("kernel", false) => "",
            _ => " --dpdk-config <engine-config.ini>",
        },
    )
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
