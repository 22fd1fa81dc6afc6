//! `results.md`: the report in human form, shaped like the original
//! experiment's table, beside the peers, with every cell, its ratios, its
//! flags and what is still unmeasured.

use std::fmt::Write as _;

use crate::model::{configured, Cell, CellKey, Results, Session, TestbedRecord, DEFAULT_CLIENT};
use crate::stats;

fn num(v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

fn ratio_text(v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(x) if x >= 100.0 => format!("{x:.0}×"),
        Some(x) if x >= 0.1 => format!("{x:.2}×"),
        Some(x) => format!("{x:.4}×"),
    }
}

/// Column groups of one table: (subject, test) pairs in a fixed order.
/// Where a subject goes in a table: the engines as the report first lists
/// them, then the peers, in the order the configuration names them.
fn subject_order(results: &Results, subject: &str) -> usize {
    let named: Vec<serde_json::Value> = configured(&results.configuration, "engines")
        .into_iter()
        .chain(configured(&results.configuration, "peers"))
        .collect();
    named
        .iter()
        .position(|v| v.as_str() == Some(subject))
        .unwrap_or(named.len())
}

fn groups(results: &Results, impairment: &str, family: &str) -> Vec<(String, String)> {
    let subject_order = |s: &str| subject_order(results, s);
    let mut g: Vec<(String, String)> = results
        .cells
        .iter()
        .filter(|c| {
            c.impairment == impairment && c.family() == family && c.key().is_original_shape()
        })
        .map(|c| (c.subject.clone(), c.test.clone()))
        .collect();
    g.sort_by_key(|(s, t)| (subject_order(s), t.clone()));
    g.dedup();
    g
}

/// The original experiment's cell (one connection, the kernel client,
/// each stack's own RTO) of `subject`'s `test`.
fn cell<'a>(
    results: &'a Results,
    subject: &str,
    test: &str,
    imp: &str,
    packets: u64,
) -> Option<&'a Cell> {
    results.find(&CellKey::new(subject, test, imp, packets))
}

fn counts(results: &Results) -> Vec<u64> {
    let mut p: Vec<u64> = results.cells.iter().map(|c| c.packets).collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// `results.md`: per testbed and loop, one row per count and one column
/// group per engine and peer; then the ratios.
#[must_use]
pub fn markdown(results: &Results) -> String {
    let mut md = String::new();
    let reps = results
        .configuration
        .get("repetitions")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1);
    let _ = writeln!(md, "# bypasslab benchmark matrix\n");
    if results.sessions.len() > 1 {
        let _ = writeln!(
            md,
            "Measured in {} sessions (`--resume`), each adding the runs the report lacked (times in UTC):\n",
            results.sessions.len()
        );
        for (i, session) in results.sessions.iter().enumerate() {
            let _ = writeln!(md, "{}. {}", i + 1, session_line(session));
        }
        md.push('\n');
    } else {
        let _ = writeln!(
            md,
            "Run {} → {} (UTC), git `{}`.\n\nCommand: `{}`\n",
            results.started_utc, results.finished_utc, results.git_revision, results.command
        );
    }
    let h = &results.host;
    let _ = writeln!(
        md,
        "Host: {} ({} cores, {} MiB), Linux {}; load average at start `{}`, at end `{}`.\n",
        h.cpu,
        h.cores,
        h.memory_mib,
        h.kernel,
        h.loadavg_start.trim(),
        h.loadavg_end.trim()
    );
    let _ = writeln!(
        md,
        "Every figure is the median of its cell's runs ({reps} asked for; a cell with fewer is listed under Flags); RTT in µs, rate in messages/s, bandwidth in kB/s (request bytes / 1000, as the original table). \
         ⚠ marks a cell whose messages/s, kB/s or RTT p50 spread more than {} % over its runs (spread = (max − min) / median). \
         — : not measured by that tool. sockperf echoes 768-byte messages (the engines answer 4 bytes) and is bounded by time, \
         so its row holds the messages it exchanged in the time a 1-second calibration gave for the count; \
         iperf3 moves the count's bytes (count × 768) in bulk, and its mean is the sender's smoothed TCP RTT, not a message's.\n",
        stats::SPREAD_FLAG_PERCENT
    );
    if results
        .configuration
        .get("pmd")
        .and_then(serde_json::Value::as_str)
        == Some("memif")
    {
        let _ = writeln!(
            md,
            "**memif pair** (`--pmd memif`): every engine cell's load generator and engine exchanged frames through shared memory, with no kernel, veth or link between them — the userspace stacks' own floor, not a deployment figure. The peers ran over the testbed's veth bridge as usual.\n"
        );
    }
    if !results.hosts.is_empty() {
        let _ = writeln!(
            md,
            "**Two hosts** (`[hosts]`): each engine on the engine host, the load generator on the client host, driven over SSH; the engines' counters come from the engine host's segment, the load generator's from its own.\n"
        );
        for h in &results.hosts {
            let text = |key: &str| {
                h.get(key)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("?")
            };
            let number = |key: &str| h.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let _ = writeln!(
                md,
                "- {} host {} ({}, Linux {}, {} cores): core {}, interface {}{}",
                text("role"),
                text("reached"),
                text("hostname"),
                text("kernel"),
                number("cores"),
                number("core"),
                h.get("iface")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("its own"),
                h.get("pmd")
                    .and_then(serde_json::Value::as_str)
                    .map_or_else(String::new, |p| format!(", PMD {p}"))
            );
        }
        md.push('\n');
    }
    for a in results.engines.iter().chain(&results.peers) {
        if !a.available {
            let _ = writeln!(
                md,
                "- **{}** not measured: {}",
                a.name,
                a.reason.as_deref().unwrap_or("unavailable")
            );
        }
    }
    md.push('\n');
    let fraction = results
        .configuration
        .get("open_fraction")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    for impairment in results.impairments() {
        let testbeds: Vec<&TestbedRecord> = results
            .testbeds
            .iter()
            .filter(|tb| tb.impairment == impairment)
            .collect();
        let losses: Vec<String> = testbeds
            .iter()
            .map(|tb| {
                tb.observed_loss_percent
                    .map_or_else(|| "n/a".to_owned(), |l| format!("{l:.2} %"))
            })
            .collect();
        match testbeds.first() {
            Some(tb) => {
                let _ = writeln!(
                    md,
                    "## Impairment {impairment} — {} (observed loss {})\n",
                    tb.described,
                    losses.join(", ")
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "## Impairment {impairment} — testbed not recorded (the session stopped before this half ended; see results.json's configuration)\n"
                );
            }
        }

        for (family, title) in [
            (
                "closed",
                "Closed loop (one message in flight) beside sockperf ping-pong, netperf TCP_RR and iperf3 bulk".to_owned(),
            ),
            (
                "open",
                format!("Open loop at {fraction} × the closed-loop rate beside sockperf under-load at {fraction} × its ping-pong rate"),
            ),
        ] {
            let g = groups(results, &impairment, family);
            if g.is_empty() {
                continue;
            }
            let _ = writeln!(md, "### {title}\n");
            table(&mut md, results, &impairment, &g);
            md.push('\n');
        }
        scaling(&mut md, results, &impairment);
        both_ends(&mut md, results, &impairment);
        bulk_ceiling(&mut md, results, &impairment);
        minimum_rto(&mut md, results, &impairment);
        let _ = writeln!(md, "### Every cell, one row each\n");
        cell_rows(&mut md, results, &impairment);
        md.push('\n');
        let _ = writeln!(
            md,
            "### Ratios (median ÷ median; closed ↔ ping-pong, open ↔ under-load)\n"
        );
        let _ = writeln!(
            md,
            "| packets | subject | test | msgs/s ÷ kernel | kB/s ÷ kernel | p50 ÷ kernel | msgs/s ÷ sockperf | kB/s ÷ sockperf | p50 ÷ sockperf |"
        );
        let _ = writeln!(md, "|---:|---|---|---:|---:|---:|---:|---:|---:|");
        for packets in counts(results) {
            for family in ["closed", "open"] {
                for (s, t) in groups(results, &impairment, family) {
                    if let Some(c) = cell(results, &s, &t, &impairment, packets) {
                        let r = &c.ratios;
                        let _ = writeln!(
                            md,
                            "| {packets} | {s} | {t} | {} | {} | {} | {} | {} | {} |",
                            ratio_text(r.messages_per_s_vs_kernel),
                            ratio_text(r.bandwidth_vs_kernel),
                            ratio_text(r.rtt_p50_vs_kernel),
                            ratio_text(r.messages_per_s_vs_sockperf),
                            ratio_text(r.bandwidth_vs_sockperf),
                            ratio_text(r.rtt_p50_vs_sockperf)
                        );
                    }
                }
            }
        }
        md.push('\n');
    }
    let problems: Vec<String> = results
        .cells
        .iter()
        .flat_map(|c| {
            c.errors
                .iter()
                .map(move |e| format!("{}: {e}", c.key()))
                .chain(
                    c.aggregate
                        .flag_reasons
                        .iter()
                        .map(move |f| format!("⚠ {}: {f}", c.key())),
                )
                .chain(
                    (!c.runs.is_empty() && c.runs.len() as u64 != reps).then(|| {
                        format!("{}: median of {} run(s), not {reps}", c.key(), c.runs.len())
                    }),
                )
        })
        .chain(results.problems.iter().cloned())
        .collect();
    let unmeasured = results.unmeasured();
    if !unmeasured.is_empty() {
        let _ = writeln!(
            md,
            "## Not measured yet\n\n{} cell(s) of this matrix have no run; `supervisor bench --resume` with the report's options measures them:\n",
            unmeasured.len()
        );
        for u in unmeasured {
            let _ = writeln!(md, "- {u}");
        }
        md.push('\n');
    }
    if !problems.is_empty() {
        let _ = writeln!(md, "## Flags and failures\n");
        for p in problems {
            let _ = writeln!(md, "- {p}");
        }
        md.push('\n');
    }
    if !results.plots.is_empty() {
        let _ = writeln!(md, "## Plots\n");
        for p in results.plots.iter().filter(|p| p.ends_with(".svg")) {
            let _ = writeln!(md, "- [{p}]({p})");
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "The exact command of every run, each run's figures and the loadgen's own counters are in results.json."
    );
    md
}

/// One session of a resumed report: when, from which revision, under what
/// load, and how it ended. A session without an end time is running, or
/// stopped without closing the report (killed, or the machine went down);
/// its runs up to the last saved repetition are kept.
fn session_line(session: &Session) -> String {
    let ended = if session.finished_utc.is_empty() {
        "not finished (still running, or stopped without closing the report; its saved runs are kept)".to_owned()
    } else if session.interrupted {
        format!("{} (interrupted)", session.finished_utc)
    } else {
        session.finished_utc.clone()
    };
    let load_end = if session.loadavg_end.is_empty() {
        String::new()
    } else {
        format!(" → `{}`", session.loadavg_end.trim())
    };
    format!(
        "{} → {ended}, git `{}`, load average `{}`{load_end}: `{}`",
        session.started_utc,
        session.git_revision,
        session.loadavg_start.trim(),
        session.command
    )
}

fn spread_text(p: Option<f64>) -> String {
    p.map_or_else(|| "—".to_owned(), |p| format!("{p:.1} %"))
}

/// One row per cell of one testbed: count, subject, loop, connections,
/// client, minimum RTO, runs, the medians, the busy shares, the ratios and
/// the spread of the headline figures.
fn cell_rows(md: &mut String, results: &Results, imp: &str) {
    let _ = writeln!(
        md,
        "| packets | subject | test | conns | client | RTO ≥ | runs | RTT mean | p50 | p99 | p99.9 | max | msgs/s | kB/s | conns/s | busy engine, loadgen | msgs/s ÷ kernel | p50 ÷ kernel | msgs/s ÷ sockperf | p50 ÷ sockperf | spread msgs/s, p50 |"
    );
    let _ = writeln!(
        md,
        "|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"
    );
    let family_order = |f: &str| match f {
        "closed" => 0,
        "open" => 1,
        _ => 2,
    };
    let mut cells: Vec<&Cell> = results
        .cells
        .iter()
        .filter(|c| c.impairment == imp)
        .collect();
    cells.sort_by_key(|c| {
        (
            c.packets,
            family_order(c.family()),
            subject_order(results, &c.subject),
            c.test.clone(),
            c.client.clone(),
            c.connections,
            c.rto_min_ms,
        )
    });
    for c in cells {
        let test = match c.target_rate {
            Some(rate) => format!("{} @{rate}/s", c.test),
            None => c.test.clone(),
        };
        let rto = c
            .rto_min_ms
            .map_or_else(|| "own".to_owned(), |r| format!("{r} ms"));
        let head = format!(
            "| {} | {} | {test} | {} | {} | {rto} |",
            c.packets, c.subject, c.connections, c.client
        );
        if c.runs.is_empty() {
            let _ = writeln!(md, "{head} 0 | failed | | | | | | | | | | | | | | |");
            continue;
        }
        let m = &c.aggregate.median;
        let spread = &c.aggregate.spread_percent;
        let r = &c.ratios;
        let share =
            |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{:.0} %", v * 100.0));
        let _ = writeln!(
            md,
            "{head} {} | {} | {} | {} | {} | {} | {} | {} | {} | {}, {}{} | {} | {} | {} | {} | {}, {}{} |",
            c.runs.len(),
            num(m.rtt_mean_us),
            num(m.rtt_p50_us),
            num(m.rtt_p99_us),
            num(m.rtt_p999_us),
            num(m.rtt_max_us),
            num(m.messages_per_s),
            num(m.bandwidth_kb_s),
            num(m.connections_per_s),
            share(m.engine_busy),
            share(m.loadgen_busy),
            if c.client_bound() { " ✱ client-bound" } else { "" },
            ratio_text(r.messages_per_s_vs_kernel.or(r.connections_per_s_vs_kernel)),
            ratio_text(r.rtt_p50_vs_kernel),
            ratio_text(r.messages_per_s_vs_sockperf),
            ratio_text(r.rtt_p50_vs_sockperf),
            spread_text(spread.messages_per_s.or(spread.bandwidth_kb_s).or(spread.connections_per_s)),
            spread_text(spread.rtt_p50_us),
            if c.aggregate.flagged { " ⚠" } else { "" }
        );
    }
}

fn table(md: &mut String, results: &Results, imp: &str, groups: &[(String, String)]) {
    let mut header = String::from("| packets |");
    let mut rule = String::from("|---:|");
    for (s, t) in groups {
        for col in ["mean", "p50", "p99", "p99.9", "msgs/s", "kB/s"] {
            let _ = write!(header, " {s} {t} {col} |");
            rule.push_str("---:|");
        }
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for packets in counts(results) {
        let mut row = format!("| {packets} |");
        for (s, t) in groups {
            match cell(results, s, t, imp, packets) {
                None => row.push_str(" | | | | | |"),
                Some(c) if c.runs.is_empty() => {
                    row.push_str(" failed | | | | | |");
                }
                Some(c) => {
                    let m = &c.aggregate.median;
                    let warn = |figure: &str| {
                        let hit = c
                            .aggregate
                            .flag_reasons
                            .iter()
                            .any(|r| r.starts_with(figure));
                        if hit {
                            " ⚠"
                        } else {
                            ""
                        }
                    };
                    let _ = write!(
                        row,
                        " {} | {}{} | {} | {} | {}{} | {}{} |",
                        num(m.rtt_mean_us),
                        num(m.rtt_p50_us),
                        warn("rtt_p50_us"),
                        num(m.rtt_p99_us),
                        num(m.rtt_p999_us),
                        num(m.messages_per_s),
                        warn("messages_per_s"),
                        num(m.bandwidth_kb_s),
                        warn("bandwidth_kb_s")
                    );
                }
            }
        }
        let _ = writeln!(md, "{row}");
    }
}

/// The engines' columns of a scaling table: each (subject, client) with
/// cells of `family` on this testbed, in the report's order.
fn engine_columns(results: &Results, imp: &str, family: &str) -> Vec<(String, String)> {
    let mut columns: Vec<(String, String)> = results
        .cells
        .iter()
        .filter(|c| c.kind == "engine" && c.impairment == imp && c.family() == family)
        .map(|c| (c.subject.clone(), c.client.clone()))
        .collect();
    columns.sort_by_key(|(s, c)| (subject_order(results, s), c.clone()));
    columns.dedup();
    columns
}

/// A column's heading: the engine, and its client when not the kernel's.
fn column_name(subject: &str, client: &str) -> String {
    if client == DEFAULT_CLIENT {
        subject.to_owned()
    } else {
        format!("{client}→{subject}")
    }
}

/// Per loop, one row per connection count and one column group per
/// engine (and client stack): where bypass is said to win. A ✱ marks a
/// cell whose load generator's core was busy ≥ 90 % of the run: the client,
/// not the engine, was the limit, so ratios there say little of the engine.
fn scaling(md: &mut String, results: &Results, imp: &str) {
    let axes = results.axes(imp);
    let rto = axes.rto_min_ms.first().copied().flatten();
    for (family, title, figures) in [
        (
            "closed",
            "closed loop, one message in flight per connection",
            ["msgs/s", "p50", "p99"],
        ),
        (
            "open",
            "open loop spread over the connections",
            ["msgs/s", "p50", "p99"],
        ),
        (
            "short",
            "short connections: connect, one request, close",
            ["conns/s", "connect p50", "RTT p50"],
        ),
    ] {
        let columns = engine_columns(results, imp, family);
        let mut connections: Vec<u32> = results
            .cells
            .iter()
            .filter(|c| c.kind == "engine" && c.impairment == imp && c.family() == family)
            .map(|c| c.connections)
            .collect();
        connections.sort_unstable();
        connections.dedup();
        if columns.is_empty() || (connections.len() < 2 && family != "short") {
            continue;
        }
        for &packets in &axes.packets {
            let _ = writeln!(
                md,
                "### Scaling with connections — {title} ({packets} messages{})\n",
                rto.map_or_else(String::new, |r| format!(", RTO ≥ {r} ms"))
            );
            let mut header = String::from("| connections |");
            let mut rule = String::from("|---:|");
            for (subject, client) in &columns {
                for figure in figures {
                    let _ = write!(header, " {} {figure} |", column_name(subject, client));
                    rule.push_str("---:|");
                }
            }
            let _ = writeln!(md, "{header}\n{rule}");
            for &n in &connections {
                let mut row = format!("| {n} |");
                for (subject, client) in &columns {
                    let test = match family {
                        "open" => "open",
                        "short" => "short",
                        _ => "closed",
                    };
                    let key = CellKey::new(subject, test, imp, packets)
                        .with_connections(n)
                        .with_client(client)
                        .with_rto_min(rto);
                    match results.find(&key) {
                        None => row.push_str(" | | |"),
                        Some(c) if c.runs.is_empty() => row.push_str(" failed | | |"),
                        Some(c) => {
                            let m = &c.aggregate.median;
                            let bound = if c.client_bound() { " ✱" } else { "" };
                            let (first, second, third) = if family == "short" {
                                (m.connections_per_s, m.connect_p50_us, m.rtt_p50_us)
                            } else {
                                (m.messages_per_s, m.rtt_p50_us, m.rtt_p99_us)
                            };
                            let _ = write!(
                                row,
                                " {}{bound} | {} | {} |",
                                num(first),
                                num(second),
                                num(third)
                            );
                        }
                    }
                }
                let _ = writeln!(md, "{row}");
            }
            md.push('\n');
        }
    }
}

/// iperf3's bulk transfer over N parallel streams beside each engine's
/// closed loop over N connections: how far the request/response figures
/// are from what the path itself carries at that concurrency.
fn bulk_ceiling(md: &mut String, results: &Results, imp: &str) {
    let bulk = |packets: u64, n: u32| {
        results
            .find(&CellKey::new("iperf3", "bulk", imp, packets).with_connections(n))
            .filter(|c| !c.runs.is_empty())
    };
    let mut streams: Vec<u32> = results
        .cells
        .iter()
        .filter(|c| c.subject == "iperf3" && c.impairment == imp && !c.runs.is_empty())
        .map(|c| c.connections)
        .collect();
    streams.sort_unstable();
    streams.dedup();
    if streams.len() < 2 {
        return;
    }
    let engines = engine_columns(results, imp, "closed");
    for packets in counts(results) {
        if !streams.iter().any(|&n| bulk(packets, n).is_some()) {
            continue;
        }
        let _ = writeln!(
            md,
            "### Bulk ceiling: iperf3 over N streams beside the closed loop over N connections ({packets} messages' bytes, kB/s)\n"
        );
        let mut header = String::from("| streams / connections | iperf3 -P N |");
        let mut rule = String::from("|---:|---:|");
        for (subject, client) in &engines {
            let _ = write!(header, " {} |", column_name(subject, client));
            rule.push_str("---:|");
        }
        let _ = writeln!(md, "{header}\n{rule}");
        for &n in &streams {
            let mut row = format!(
                "| {n} | {} |",
                num(bulk(packets, n).and_then(|c| c.aggregate.median.bandwidth_kb_s))
            );
            for (subject, client) in &engines {
                let key = CellKey::new(subject, "closed", imp, packets)
                    .with_connections(n)
                    .with_client(client);
                let kb = results
                    .find(&key)
                    .and_then(|c| c.aggregate.median.bandwidth_kb_s);
                let _ = write!(row, " {} |", num(kb));
            }
            let _ = writeln!(md, "{row}");
        }
        md.push('\n');
    }
}

/// The impaired rows at each stack's own minimum RTO and at an equal one:
/// how much of the lossy-link advantage is bypass and how much a timer.
/// Both ends' stacks side by side, once more than one client stack was
/// measured on the testbed: the closed loop at one connection and each
/// stack's own minimum RTO, one row per count, one column pair (RTT p50,
/// msgs/s) per client→engine pair measured, the kernel client's first
/// (kernel→kernel, kernel→dpdk, dpdk→kernel, dpdk→dpdk, …).
fn both_ends(md: &mut String, results: &Results, imp: &str) {
    let at_origin = |c: &&Cell| {
        c.kind == "engine"
            && c.impairment == imp
            && c.test == "closed"
            && c.connections == 1
            && c.rto_min_ms.is_none()
    };
    let mut pairs: Vec<(String, String)> = results
        .cells
        .iter()
        .filter(at_origin)
        .map(|c| (c.client.clone(), c.subject.clone()))
        .collect();
    pairs.sort_by_key(|(client, subject)| {
        (
            client != DEFAULT_CLIENT,
            client.clone(),
            subject_order(results, subject),
        )
    });
    pairs.dedup();
    let mut clients: Vec<&String> = pairs.iter().map(|(c, _)| c).collect();
    clients.sort();
    clients.dedup();
    if clients.len() < 2 {
        return;
    }
    let _ = writeln!(
        md,
        "### Both ends: client stack → engine, closed loop, one connection
"
    );
    let mut header = String::from("| packets |");
    let mut rule = String::from("|---:|");
    for (client, subject) in &pairs {
        let _ = write!(
            header,
            " {client}→{subject} p50 | {client}→{subject} msgs/s |"
        );
        rule.push_str("---:|---:|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for packets in counts(results) {
        let mut row = format!("| {packets} |");
        for (client, subject) in &pairs {
            let cell =
                results.find(&CellKey::new(subject, "closed", imp, packets).with_client(client));
            let m = cell.map(|c| &c.aggregate.median);
            let _ = write!(
                row,
                " {} | {} |",
                num(m.and_then(|m| m.rtt_p50_us)),
                num(m.and_then(|m| m.messages_per_s))
            );
        }
        let _ = writeln!(md, "{row}");
    }
    md.push('\n');
}

fn minimum_rto(md: &mut String, results: &Results, imp: &str) {
    let axes = results.axes(imp);
    let equal: Vec<u32> = axes.rto_min_ms.iter().copied().flatten().collect();
    if equal.is_empty() {
        return;
    }
    for rto in equal {
        let _ = writeln!(
            md,
            "### Minimum RTO: each stack's own against {rto} ms for every stack\n"
        );
        let _ = writeln!(
            md,
            "| packets | connections | engine | test | msgs/s own | p99 own | max own | msgs/s at {rto} ms | p99 at {rto} ms | max at {rto} ms | rate at {rto} ms ÷ own |"
        );
        let _ = writeln!(md, "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|");
        let mut rows: Vec<&Cell> = results
            .cells
            .iter()
            .filter(|c| c.kind == "engine" && c.impairment == imp && c.rto_min_ms == Some(rto))
            .collect();
        rows.sort_by_key(|c| (c.packets, c.connections, subject_order(results, &c.subject)));
        for c in rows {
            let own = results.find(&c.key().with_rto_min(None));
            let m = &c.aggregate.median;
            let o = own.map(|o| &o.aggregate.median);
            let ratio = match (m.messages_per_s, o.and_then(|o| o.messages_per_s)) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.packets,
                c.connections,
                column_name(&c.subject, &c.client),
                c.test,
                num(o.and_then(|o| o.messages_per_s)),
                num(o.and_then(|o| o.rtt_p99_us)),
                num(o.and_then(|o| o.rtt_max_us)),
                num(m.messages_per_s),
                num(m.rtt_p99_us),
                num(m.rtt_max_us),
                ratio_text(ratio)
            );
        }
        md.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{results, run};

    #[test]
    fn a_two_host_report_names_each_host() {
        let mut r = results(Vec::new(), 1);
        assert!(!markdown(&r).contains("Two hosts"));
        r.hosts = vec![
            serde_json::json!({"role": "engine", "reached": "ssh://root@b", "hostname": "bee",
                "kernel": "6.1.0", "cores": 8, "core": 2, "iface": "ens1", "pmd": "af_xdp"}),
            serde_json::json!({"role": "client", "reached": "this host", "hostname": "ay",
                "kernel": "6.1.0", "cores": 4, "core": 1, "iface": null, "pmd": null}),
        ];
        let md = markdown(&r);
        assert!(md.contains("**Two hosts**"), "{md}");
        assert!(
            md.contains("- engine host ssh://root@b (bee, Linux 6.1.0, 8 cores): core 2, interface ens1, PMD af_xdp"),
            "{md}"
        );
        assert!(
            md.contains(
                "- client host this host (ay, Linux 6.1.0, 4 cores): core 1, interface its own\n"
            ),
            "{md}"
        );
    }

    #[test]
    fn a_memif_report_says_no_kernel_was_on_its_engines_path() {
        let mut r = results(Vec::new(), 1);
        assert!(!markdown(&r).contains("memif pair"));
        r.configuration["pmd"] = serde_json::json!("memif");
        assert!(markdown(&r).contains("**memif pair**"));
    }

    #[test]
    fn markdown_has_every_cell_its_runs_and_its_sessions() {
        let mut kernel = Cell::new("engine", &CellKey::new("kernel", "closed", "on", 1000));
        kernel.runs = vec![run(400.0, 150.0), run(420.0, 148.0), run(410.0, 151.0)];
        let mut dpdk = Cell::new("engine", &CellKey::new("dpdk", "closed", "on", 1000));
        dpdk.runs = vec![run(1600.0, 125.0)];
        let mut open = Cell::new("engine", &CellKey::new("kernel", "open", "on", 1000));
        open.target_rate = Some(328);
        open.errors.push("the kernel engine did not start".into());
        // A half whose session stopped before its testbed was recorded.
        let mut unrecorded = Cell::new("engine", &CellKey::new("kernel", "closed", "off", 1000));
        unrecorded.runs = vec![run(20000.0, 40.0)];
        let mut r = results(vec![kernel, dpdk, open, unrecorded], 2);
        r.aggregate();
        let md = markdown(&r);
        assert!(md.contains("Measured in 2 sessions"), "{md}");
        assert!(md.contains("supervisor bench --resume #1"), "{md}");
        assert!(md.contains("→ 2026-01-01T01:00:00Z, git"), "{md}");
        assert_eq!(md.matches("not finished").count(), 1, "{md}");
        assert!(md.contains("### Every cell, one row each"), "{md}");
        assert!(
            md.contains("| 1000 | kernel | closed | 1 | kernel | own | 3 | 180 | 150 |"),
            "{md}"
        );
        // 1600 / 410 = 3.90 the kernel's rate; 125 / 150 of its median.
        assert!(
            md.contains("| 1000 | dpdk | closed | 1 | kernel | own | 1 |"),
            "{md}"
        );
        assert!(md.contains("3.90×") && md.contains("0.83×"), "{md}");
        assert!(
            md.contains("| 1000 | kernel | open @328/s | 1 | kernel | own | 0 | failed |"),
            "{md}"
        );
        assert!(
            md.contains("dpdk closed (on, 1000): median of 1 run(s), not 3"),
            "{md}"
        );
        assert!(md.contains("kernel open (on, 1000): the kernel engine did not start"));
        assert!(md.contains("observed loss 0.98 %"), "{md}");
        assert!(
            md.contains("## Impairment off — testbed not recorded"),
            "{md}"
        );
        assert!(
            md.contains("| 1000 | kernel | closed | 1 | kernel | own | 1 | "),
            "{md}"
        );
        // The configuration asks for kernel and dpdk at 1000 on and off,
        // and for sockperf, which is unavailable: dpdk open (on), the failed
        // kernel open (on) and the unimpaired dpdk and kernel open have no
        // run; sockperf is not listed.
        assert!(md.contains("## Not measured yet\n\n5 cell(s)"), "{md}");
        for missing in [
            "- dpdk open (on, 1000)",
            "- kernel open (on, 1000)",
            "- kernel open (off, 1000)",
            "- dpdk closed (off, 1000)",
            "- dpdk open (off, 1000)",
        ] {
            assert!(md.contains(missing), "{missing}: {md}");
        }
        assert!(!md.contains("- sockperf"), "{md}");
    }
}

#[cfg(test)]
mod axis_tests {
    use super::*;
    use crate::model::fixtures::{results, run};

    fn measured(key: CellKey, rate: f64, p50: f64) -> Cell {
        let mut c = Cell::new("engine", &key);
        c.runs = vec![run(rate, p50)];
        c
    }

    #[test]
    fn both_ends_set_every_client_engine_pair_side_by_side() {
        let at = |client: &str, subject: &str| {
            CellKey::new(subject, "closed", "off", 1000).with_client(client)
        };
        let one_client = vec![
            measured(at("kernel", "kernel"), 400.0, 150.0),
            measured(at("kernel", "dpdk"), 1600.0, 125.0),
        ];
        let mut r = results(one_client.clone(), 1);
        r.aggregate();
        assert!(
            !markdown(&r).contains("### Both ends"),
            "one client: no table"
        );

        let mut cells = one_client;
        cells.push(measured(at("dpdk", "dpdk"), 5000.0, 20.0));
        cells.push(measured(at("dpdk", "kernel"), 2000.0, 60.0));
        // Not the table's shape: 16 connections.
        cells.push(measured(at("dpdk", "dpdk").with_connections(16), 9.0, 9.0));
        let mut r = results(cells, 1);
        r.aggregate();
        let md = markdown(&r);
        assert!(
            md.contains("### Both ends: client stack → engine, closed loop, one connection"),
            "{md}"
        );
        assert!(
            md.contains(
                "| packets | kernel→kernel p50 | kernel→kernel msgs/s | kernel→dpdk p50 | kernel→dpdk msgs/s | dpdk→kernel p50 | dpdk→kernel msgs/s | dpdk→dpdk p50 | dpdk→dpdk msgs/s |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| 1000 | 150 | 400 | 125 | 1600 | 60.0 | 2000 | 20.0 | 5000 |"),
            "{md}"
        );
    }

    #[test]
    fn scaling_minimum_rto_and_client_bound_cells_are_shown() {
        let at = |subject: &str, test: &str, n: u32| {
            CellKey::new(subject, test, "on", 1000).with_connections(n)
        };
        let mut bound = measured(at("dpdk", "closed", 16), 9000.0, 90.0);
        bound.runs[0].figures.loadgen_busy = Some(0.97);
        let mut short = measured(at("kernel", "short", 16), 0.0, 300.0);
        short.runs[0].figures.connections_per_s = Some(2500.0);
        short.runs[0].figures.connect_p50_us = Some(120.0);
        let cells = vec![
            measured(at("kernel", "closed", 1), 400.0, 150.0),
            measured(at("kernel", "closed", 16), 4000.0, 160.0),
            measured(at("dpdk", "closed", 1), 1600.0, 125.0),
            bound,
            short,
            measured(
                at("kernel", "closed", 1).with_rto_min(Some(10)),
                2700.0,
                150.0,
            ),
        ];
        let mut r = results(cells, 1);
        r.configuration["halves"] = serde_json::json!({
            "on": {"packets": [1000], "connections": [1, 16], "rto_min_ms": [null, 10]}
        });
        r.aggregate();
        let md = markdown(&r);
        assert!(
            md.contains("### Scaling with connections — closed loop"),
            "{md}"
        );
        // 16 connections: the kernel's 4000 msgs/s; dpdk's 9000, client-bound.
        assert!(md.contains("| 16 | 4000 | 160 | 480 | 9000 ✱ |"), "{md}");
        assert!(
            md.contains("### Scaling with connections — short connections"),
            "{md}"
        );
        assert!(md.contains("| 16 | 2500 | 120 | 300 |"), "{md}");
        assert!(
            md.contains("### Minimum RTO: each stack's own against 10 ms"),
            "{md}"
        );
        // 2700 / 400 = 6.75.
        assert!(md.contains("| 1000 | 1 | kernel | closed | 400 |"), "{md}");
        assert!(md.contains("6.75×"), "{md}");
        assert!(md.contains("✱ client-bound"), "{md}");
        // Every axis point the half asks for and nobody measured is listed.
        let missing: Vec<String> = r.unmeasured().iter().map(ToString::to_string).collect();
        assert!(
            missing.contains(&"dpdk closed (on, 1000, RTO ≥ 10 ms)".to_owned()),
            "{missing:?}"
        );
        assert!(
            missing.contains(&"kernel open (on, 1000, 16 connections)".to_owned()),
            "{missing:?}"
        );
        assert!(!missing.contains(&"kernel closed (on, 1000, 16 connections)".to_owned()));
    }

    #[test]
    fn iperf3_over_n_streams_stands_beside_the_closed_loop_over_n_connections() {
        let at = |subject: &str, test: &str, n: u32| {
            CellKey::new(subject, test, "off", 1000).with_connections(n)
        };
        let bulk = |n: u32, kb: f64| {
            let mut c = Cell::new("peer", &at("iperf3", "bulk", n));
            c.runs = vec![run(0.0, 0.0)];
            c.runs[0].figures.bandwidth_kb_s = Some(kb);
            c
        };
        let cells = vec![
            measured(at("kernel", "closed", 1), 400.0, 150.0),
            measured(at("kernel", "closed", 16), 4000.0, 160.0),
            bulk(1, 900_000.0),
            bulk(16, 2_000_000.0),
        ];
        let mut r = results(cells, 1);
        r.aggregate();
        let md = markdown(&r);
        assert!(
            md.contains("### Bulk ceiling: iperf3 over N streams"),
            "{md}"
        );
        assert!(md.contains("| 16 | 2000000 |"), "{md}");
    }
}
