//! Latency histogram: HDR-style log-linear buckets over nanoseconds.
//!
//! Values below 2048 ns get one bucket per nanosecond. Above, every octave
//! `[2^k, 2^(k+1))` is split into 1024 equal buckets, so a bucket is at most
//! 1/1024 of its value wide: every recorded value is known to better than
//! 0.1 % (three significant digits). 23 such octaves reach 2^34 ns ≈ 17.2 s;
//! larger values are clamped into the top bucket and counted in `clamped`.
//! 25 600 buckets of 8 bytes: 200 KiB per slot.
//!
//! The same bucket scheme backs the shared histogram (atomics in the
//! segment, one writer) and [`LocalHistogram`] (a private copy), and the
//! summary of both is computed by the same code.

use serde::{Deserialize, Serialize};

/// Buckets with one nanosecond each (the first two "half octaves").
const LINEAR: u64 = 2048;
/// Buckets per octave above [`LINEAR`].
const HALF: u64 = 1024;
/// Octaves above [`LINEAR`]: the top bucket ends at `2^(11 + OCTAVES)` ns.
const OCTAVES: u64 = 23;
/// Number of buckets.
pub(crate) const BUCKETS: usize = (LINEAR + OCTAVES * HALF) as usize;
/// Largest value stored without clamping, ns (about 17.2 s).
pub const HISTOGRAM_MAX_NS: u64 = (1 << (11 + OCTAVES)) - 1;

const _: () = assert!(BUCKETS == 25_600);
const _: () = assert!(HISTOGRAM_MAX_NS >= 10_000_000_000);

/// The bucket of `ns` (clamped to [`HISTOGRAM_MAX_NS`]).
#[inline]
pub(crate) fn bucket_of(ns: u64) -> usize {
    let v = ns.min(HISTOGRAM_MAX_NS);
    let idx = if v < LINEAR {
        v
    } else {
        let msb = 63 - u64::from(v.leading_zeros()); // >= 11
        let shift = msb - 10;
        shift * HALF + (v >> shift)
    };
    // idx < BUCKETS, which fits usize.
    usize::try_from(idx).unwrap_or(BUCKETS - 1)
}

/// The smallest value and the width of bucket `idx`, ns.
pub(crate) fn bucket_bounds(idx: usize) -> (u64, u64) {
    let idx = idx as u64;
    if idx < LINEAR {
        (idx, 1)
    } else {
        let shift = idx / HALF - 1;
        let sub = idx - shift * HALF;
        (sub << shift, 1 << shift)
    }
}

/// Latency statistics of one histogram, microseconds (f64, so sub-µs
/// resolution is kept). All zero when `count` is zero.
///
/// Samples above [`HISTOGRAM_MAX_NS`] (~17.2 s) are kept in the top
/// bucket: the minimum, mean and maximum stay exact, but a percentile that
/// falls among them reads as at most ~17.2 s whatever the samples were.
/// `clamped` says how many there were and `percentiles_are_lower_bounds`
/// says so whenever there were any, so an overloaded run cannot show a
/// p99.9 that stopped at the histogram's top as if it were measured.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Samples above the histogram's range (~17.2 s), counted in its top
    /// bucket.
    pub clamped: u64,
    /// True when `clamped` is not zero: p50 to p99.9 are then lower bounds
    /// (any of them may belong to a clamped sample).
    pub percentiles_are_lower_bounds: bool,
    /// Smallest sample, µs (exact).
    pub min_us: f64,
    /// Arithmetic mean, µs (exact: sums keep the true value of clamped
    /// samples).
    pub mean_us: f64,
    /// Median, µs (within 0.1 %).
    pub p50_us: f64,
    /// 90th percentile, µs (within 0.1 %).
    pub p90_us: f64,
    /// 99th percentile, µs (within 0.1 %).
    pub p99_us: f64,
    /// 99.9th percentile, µs (within 0.1 %).
    pub p999_us: f64,
    /// Largest sample, µs (exact).
    pub max_us: f64,
}

/// A private histogram with the segment's bucket scheme: the loadgen keeps
/// one per connection or thread, merges them, and summarises.
#[derive(Clone, Debug)]
pub struct LocalHistogram {
    pub(crate) buckets: Vec<u64>,
    pub(crate) count: u64,
    pub(crate) sum: u128,
    pub(crate) min: u64,
    pub(crate) max: u64,
    pub(crate) clamped: u64,
}

impl Default for LocalHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalHistogram {
    /// An empty histogram.
    #[must_use]
    pub fn new() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
            clamped: 0,
        }
    }

    /// Records one sample, nanoseconds.
    pub fn record_ns(&mut self, ns: u64) {
        self.buckets[bucket_of(ns)] += 1;
        self.count += 1;
        self.sum += u128::from(ns);
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
        if ns > HISTOGRAM_MAX_NS {
            self.clamped += 1;
        }
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LocalHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.clamped += other.clamped;
    }

    /// Samples recorded.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Samples above [`HISTOGRAM_MAX_NS`], clamped into the top bucket.
    #[must_use]
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    /// The value at quantile `q` (0..=1), ns: the midpoint of the bucket
    /// holding the `ceil(q * n)`-th smallest sample, kept inside [min, max].
    #[must_use]
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        // Percentiles use the bucket total, which is what the buckets can
        // answer for (a reader of the shared histogram may see `count` and
        // the buckets a few samples apart).
        // Saturating: the buckets may come from a corrupt segment, and a
        // reader must not overflow on them.
        let total = self.buckets.iter().fold(0_u64, |a, &n| a.saturating_add(n));
        if total == 0 {
            return 0;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0_u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(n);
            if seen >= rank {
                let (lo, width) = bucket_bounds(i);
                let mid = lo + (width - 1) / 2;
                return mid.clamp(self.min.min(self.max), self.max);
            }
        }
        self.max
    }

    /// Count, min, mean, p50, p90, p99, p99.9 and max in microseconds.
    #[must_use]
    pub fn summary(&self) -> LatencySummary {
        if self.count == 0 {
            return LatencySummary::default();
        }
        #[allow(clippy::cast_precision_loss)]
        let us = |ns: u64| ns as f64 / 1000.0;
        #[allow(clippy::cast_precision_loss)]
        let mean_us = self.sum as f64 / self.count as f64 / 1000.0;
        LatencySummary {
            count: self.count,
            clamped: self.clamped,
            percentiles_are_lower_bounds: self.clamped > 0,
            min_us: us(self.min),
            mean_us,
            p50_us: us(self.value_at_quantile(0.50)),
            p90_us: us(self.value_at_quantile(0.90)),
            p99_us: us(self.value_at_quantile(0.99)),
            p999_us: us(self.value_at_quantile(0.999)),
            max_us: us(self.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_the_range() {
        let mut expected_lo = 0;
        for i in 0..BUCKETS {
            let (lo, w) = bucket_bounds(i);
            assert_eq!(lo, expected_lo, "bucket {i}");
            assert_eq!(bucket_of(lo), i);
            assert_eq!(bucket_of(lo + w - 1), i);
            expected_lo = lo + w;
        }
        assert_eq!(expected_lo, HISTOGRAM_MAX_NS + 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn three_significant_digits_from_1us_to_10s() {
        let mut v = 1_000u64;
        while v <= 10_000_000_000 {
            let (lo, w) = bucket_bounds(bucket_of(v));
            let mid = lo + (w - 1) / 2;
            #[allow(clippy::cast_precision_loss)]
            let err = (mid as f64 - v as f64).abs() / v as f64;
            assert!(err <= 0.001, "{v} ns reported as {mid} ({err})");
            v = v * 1001 / 1000 + 1;
        }
    }

    #[test]
    fn percentiles_of_uniform_distribution() {
        // 1..=100_000 µs, one sample each.
        let mut h = LocalHistogram::new();
        for us in 1..=100_000u64 {
            h.record_ns(us * 1000);
        }
        let s = h.summary();
        assert_eq!(s.count, 100_000);
        assert!((s.min_us - 1.0).abs() < 1e-9);
        assert!((s.max_us - 100_000.0).abs() < 1e-9);
        assert!((s.mean_us - 50_000.5).abs() < 1e-6);
        for (got, want) in [
            (s.p50_us, 50_000.0),
            (s.p90_us, 90_000.0),
            (s.p99_us, 99_000.0),
            (s.p999_us, 99_900.0),
        ] {
            assert!((got - want).abs() / want <= 0.001, "{got} vs {want}");
        }
    }

    #[test]
    fn percentiles_of_two_point_distribution_and_clamping() {
        // 99 % at 10 µs, 1 % at 200 ms, plus one sample above the range.
        let mut h = LocalHistogram::new();
        for _ in 0..9_900 {
            h.record_ns(10_000);
        }
        for _ in 0..99 {
            h.record_ns(200_000_000);
        }
        h.record_ns(60_000_000_000);
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert!((s.p50_us - 10.0).abs() < 0.01);
        assert!((s.p99_us - 10.0).abs() < 0.01);
        assert!((s.p999_us - 200_000.0).abs() / 200_000.0 <= 0.001);
        assert!((s.max_us - 60_000_000.0).abs() < 1e-6, "max is exact");
        assert_eq!(h.clamped(), 1);
    }

    #[test]
    fn samples_above_the_range_reach_the_summary_and_mark_the_percentiles() {
        let mut h = LocalHistogram::new();
        for _ in 0..99 {
            h.record_ns(1_000);
        }
        h.record_ns(60_000_000_000);
        let s = h.summary();
        assert_eq!(s.clamped, 1);
        assert!(s.percentiles_are_lower_bounds);
        // The reason for the flag: p99.9 is the 60 s sample, read from the
        // top bucket as less than it was.
        assert!(
            s.p999_us < 60_000_000.0 && s.p999_us > 17_000_000.0,
            "{s:?}"
        );
        assert!((s.max_us - 60_000_000.0).abs() < 1e-6, "max stays exact");

        let mut within = LocalHistogram::new();
        within.record_ns(HISTOGRAM_MAX_NS);
        let s = within.summary();
        assert_eq!((s.clamped, s.percentiles_are_lower_bounds), (0, false));

        let mut merged = LocalHistogram::new();
        merged.merge(&h);
        merged.merge(&within);
        assert_eq!(merged.summary().clamped, 1);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = LocalHistogram::new();
        let mut b = LocalHistogram::new();
        let mut all = LocalHistogram::new();
        for i in 0..10_000u64 {
            let v = i * i % 7_919_993 + 500;
            if i % 2 == 0 {
                a.record_ns(v)
            } else {
                b.record_ns(v)
            }
            all.record_ns(v);
        }
        a.merge(&b);
        assert_eq!(a.summary(), all.summary());
        assert_eq!(LocalHistogram::new().summary(), LatencySummary::default());
    }
}
