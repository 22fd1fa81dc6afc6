//! One measurement's figures, and the median and spread of a cell's
//! repetitions.

use serde::{Deserialize, Serialize};

/// Busy share of the load generator's core from which a cell counts as
/// client-bound.
pub const CLIENT_BOUND_SHARE: f64 = 0.9;

/// Spread above which a cell is flagged, percent of the median.
pub const SPREAD_FLAG_PERCENT: f64 = 10.0;

/// The figures of one run (engine or peer). A figure the tool does not
/// measure is `None` (iperf3 has no per-message RTT).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Messages (transactions) answered in the measured phase.
    pub messages: Option<f64>,
    /// Measured time, seconds.
    pub elapsed_s: Option<f64>,
    /// Answered messages per second.
    pub messages_per_s: Option<f64>,
    /// Request bytes answered per second / 1000 (the original table's kB/s).
    pub bandwidth_kb_s: Option<f64>,
    /// Round-trip time, µs.
    pub rtt_mean_us: Option<f64>,
    /// Median round-trip time, µs.
    pub rtt_p50_us: Option<f64>,
    /// 99th percentile, µs.
    pub rtt_p99_us: Option<f64>,
    /// 99.9th percentile, µs.
    pub rtt_p999_us: Option<f64>,
    /// Largest round-trip time, µs.
    pub rtt_max_us: Option<f64>,
    /// Short connections: connections opened, used and closed per second.
    #[serde(default)]
    pub connections_per_s: Option<f64>,
    /// Short connections: median time to connect, µs.
    #[serde(default)]
    pub connect_p50_us: Option<f64>,
    /// Short connections: 99th percentile time to connect, µs.
    #[serde(default)]
    pub connect_p99_us: Option<f64>,
    /// Share of the engine's core it was busy (0..=1): its poll loop's busy
    /// share when it spins, else its CPU time over the run.
    #[serde(default)]
    pub engine_busy: Option<f64>,
    /// Share of the load generator's core it was busy (0..=1), measured the
    /// same way: near 1, the client, not the engine, is the limit.
    #[serde(default)]
    pub loadgen_busy: Option<f64>,
}

/// One figure: its name in the report and how to read and write it.
#[derive(Clone, Copy)]
pub struct Figure {
    /// Its field name.
    pub name: &'static str,
    /// Reads it.
    pub get: fn(&Figures) -> Option<f64>,
    /// Writes it.
    pub set: fn(&mut Figures, Option<f64>),
}

macro_rules! figure {
    ($field:ident) => {
        Figure {
            name: stringify!($field),
            get: |f| f.$field,
            set: |f, v| f.$field = v,
        }
    };
}

/// Every figure, in table order: each field of [`Figures`] once.
pub const FIGURES: [Figure; 14] = [
    figure!(messages),
    figure!(elapsed_s),
    figure!(messages_per_s),
    figure!(bandwidth_kb_s),
    figure!(rtt_mean_us),
    figure!(rtt_p50_us),
    figure!(rtt_p99_us),
    figure!(rtt_p999_us),
    figure!(rtt_max_us),
    figure!(connections_per_s),
    figure!(connect_p50_us),
    figure!(connect_p99_us),
    figure!(engine_busy),
    figure!(loadgen_busy),
];

/// The figures a cell is judged repeatable on: its rate and its median RTT
/// (tails under 1 % loss swing with where the drops fall, by design).
pub const HEADLINE: [&str; 4] = [
    "messages_per_s",
    "bandwidth_kb_s",
    "rtt_p50_us",
    "connections_per_s",
];

/// Median of a non-empty list (mean of the middle two for an even count).
#[must_use]
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Spread of the values, percent of their median: (max − min) / median.
/// `None` for fewer than two values or a zero median.
#[must_use]
pub fn spread_percent(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = median(values)?;
    if m == 0.0 {
        return None;
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((hi - lo) / m.abs() * 100.0)
}

/// Median and spread of each figure over a cell's runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Aggregate {
    /// Per-figure median over the runs.
    pub median: Figures,
    /// Per-figure spread over the runs, percent of the median.
    pub spread_percent: Figures,
    /// Whether a headline figure's spread exceeds [`SPREAD_FLAG_PERCENT`].
    pub flagged: bool,
    /// Which headline figures exceeded it.
    pub flag_reasons: Vec<String>,
}

/// Aggregates the figures of a cell's runs.
#[must_use]
pub fn aggregate(runs: &[&Figures]) -> Aggregate {
    let mut median_f = Figures::default();
    let mut spread_f = Figures::default();
    let mut reasons = Vec::new();
    for Figure { name, get, set } in FIGURES {
        let values: Vec<f64> = runs.iter().filter_map(|f| get(f)).collect();
        let m = median(&values);
        let s = spread_percent(&values);
        set(&mut median_f, m);
        set(&mut spread_f, s);
        if let Some(s) = s {
            if HEADLINE.contains(&name) && s > SPREAD_FLAG_PERCENT {
                reasons.push(format!("{name} spread {s:.1} % > {SPREAD_FLAG_PERCENT} %"));
            }
        }
    }
    Aggregate {
        median: median_f,
        spread_percent: spread_f,
        flagged: !reasons.is_empty(),
        flag_reasons: reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(spread_percent(&[10.0]), None);
        let s = spread_percent(&[90.0, 100.0, 110.0]).unwrap();
        assert!((s - 20.0).abs() < 1e-9);
    }

    #[test]
    fn flags_a_noisy_rate_only() {
        let run = |rate: f64, p99: f64| Figures {
            messages_per_s: Some(rate),
            rtt_p50_us: Some(100.0),
            rtt_p99_us: Some(p99),
            ..Figures::default()
        };
        let (a, b, c) = (run(100.0, 1.0), run(101.0, 50.0), run(99.0, 100.0));
        let agg = aggregate(&[&a, &b, &c]);
        assert!(!agg.flagged, "{:?}", agg.flag_reasons);
        assert_eq!(agg.median.rtt_p99_us, Some(50.0));
        let d = run(150.0, 1.0);
        let agg = aggregate(&[&a, &b, &d]);
        assert!(agg.flagged);
        assert!(agg.flag_reasons[0].starts_with("messages_per_s"));
    }
}
