//! Two hosts over SSH beside the single-host testbed, in one session: the
//! same `supervisor run` (kernel and dpdk engine, plain link, closed loop,
//! one connection) on the single-host testbed (NS1 ─ bridge ─ NS3) and on
//! the two-namespace SSH fixture of `tests/two_hosts.rs` (the load
//! generator on A, the engine on B, a veth pair between them, each role
//! reached through its `sshd`), alternating, so the control path's cost —
//! if any — shows against the run-to-run spread. Root only.
//!
//! ```text
//! cargo bench -p supervisor --bench two_hosts                 # 3 rounds of 20 000 messages
//! BENCH_ROUNDS=5 BENCH_PACKETS=50000 cargo bench -p supervisor --bench two_hosts
//! ```
//!
//! Prints one line per run and a Markdown table of medians and ratios.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::Value;
use support::two_hosts::TwoHosts;
use support::{bin_dir, require_root, Testbed};

const LIMIT: Duration = Duration::from_secs(600);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `(RTT p50 µs, msgs/s)` of a `run --json` document's row.
fn figures(doc: &Value, what: &str) -> (f64, f64) {
    let row = &doc["rows"][0];
    assert_eq!(row["failed"], 0, "{what}: {row}");
    (
        row["rtt"]["p50_us"].as_f64().expect("p50"),
        row["messages_per_s"].as_f64().expect("msgs/s"),
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn spread(values: &[f64]) -> f64 {
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let mut sorted = values.to_vec();
    (hi - lo) / median(&mut sorted)
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (a test run of every
    // target, `--list`) measures nothing.
    if !std::env::args().any(|a| a == "--bench") || !require_root("two_hosts bench") {
        return;
    }
    bin_dir();
    let rounds = env_or("BENCH_ROUNDS", 3);
    let packets = env_or("BENCH_PACKETS", 20_000).to_string();
    let mut results: Vec<(&str, &str, Vec<f64>, Vec<f64>)> = Vec::new();
    for engine in ["kernel", "dpdk"] {
        for testbed in ["single host", "two hosts"] {
            results.push((engine, testbed, Vec::new(), Vec::new()));
        }
    }
    for round in 1..=rounds {
        for (engine, testbed, p50s, rates) in &mut results {
            let args = [
                "run",
                "--engine",
                engine,
                "--packets",
                packets.as_str(),
                "--json",
            ];
            let out = if *testbed == "single host" {
                let bed = Testbed::plain("bs");
                bed.run(&args, LIMIT)
            } else {
                let hosts = TwoHosts::plain("bt");
                let config = hosts.standard_config();
                let mut with_config = args.to_vec();
                let config = config.to_str().unwrap().to_owned();
                with_config.extend(["--config", config.as_str()]);
                hosts.run(&with_config, LIMIT)
            };
            assert_eq!(out.code, Some(0), "{engine} on {testbed}: {}", out.stderr);
            let (p50, rate) = figures(&out.json(), &format!("{engine} on {testbed}"));
            println!(
                "round {round}: {engine:<6} {testbed:<11} p50 {p50:>7.2} µs  {rate:>9.0} msgs/s"
            );
            p50s.push(p50);
            rates.push(rate);
        }
    }
    println!(
        "\n| engine | testbed | RTT p50 (median of {rounds}) | spread | msgs/s (median) | spread | p50 ÷ single host | msgs/s ÷ single host |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for pair in results.chunks(2) {
        let (engine, _, single_p50, single_rate) = &pair[0];
        let single = (
            median(&mut single_p50.clone()),
            median(&mut single_rate.clone()),
        );
        for (_, testbed, p50s, rates) in pair {
            let (p50, rate) = (median(&mut p50s.clone()), median(&mut rates.clone()));
            println!(
                "| {engine} | {testbed} | {p50:.2} µs | {:.0} % | {rate:.0} | {:.0} % | {:.2}× | {:.2}× |",
                spread(p50s) * 100.0,
                spread(rates) * 100.0,
                p50 / single.0,
                rate / single.1
            );
        }
    }
}
