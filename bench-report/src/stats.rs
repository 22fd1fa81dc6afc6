//! One measurement's figures, and the median and spread of a cell's
//! repetitions.

use serde::{Deserialize, Serialize};

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
}

/// Reads one figure.
pub type Getter = fn(&Figures) -> Option<f64>;

/// Names and accessors of every figure, in table order.
pub const FIGURES: [(&str, Getter); 9] = [
    ("messages", |f| f.messages),
    ("elapsed_s", |f| f.elapsed_s),
    ("messages_per_s", |f| f.messages_per_s),
    ("bandwidth_kb_s", |f| f.bandwidth_kb_s),
    ("rtt_mean_us", |f| f.rtt_mean_us),
    ("rtt_p50_us", |f| f.rtt_p50_us),
    ("rtt_p99_us", |f| f.rtt_p99_us),
    ("rtt_p999_us", |f| f.rtt_p999_us),
    ("rtt_max_us", |f| f.rtt_max_us),
];

/// The figures a cell is judged repeatable on: its rate and its median RTT
/// (tails under 1 % loss swing with where the drops fall, by design).
pub const HEADLINE: [&str; 3] = ["messages_per_s", "bandwidth_kb_s", "rtt_p50_us"];

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
    for (name, get) in FIGURES {
        let values: Vec<f64> = runs.iter().filter_map(|f| get(f)).collect();
        let m = median(&values);
        let s = spread_percent(&values);
        set(&mut median_f, name, m);
        set(&mut spread_f, name, s);
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

fn set(f: &mut Figures, name: &str, v: Option<f64>) {
    match name {
        "messages" => f.messages = v,
        "elapsed_s" => f.elapsed_s = v,
        "messages_per_s" => f.messages_per_s = v,
        "bandwidth_kb_s" => f.bandwidth_kb_s = v,
        "rtt_mean_us" => f.rtt_mean_us = v,
        "rtt_p50_us" => f.rtt_p50_us = v,
        "rtt_p99_us" => f.rtt_p99_us = v,
        "rtt_p999_us" => f.rtt_p999_us = v,
        _ => f.rtt_max_us = v,
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
