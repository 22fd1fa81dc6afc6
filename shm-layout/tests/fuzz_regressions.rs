//! Inputs the fuzzers found (fuzz/corpus/*/regression-*), kept as tests so
//! that CI, which does not build the fuzz crate, replays them too.

mod common;

use std::time::Duration;

use common::{scratch_opts, TempDir};
use shm_layout::{Counters, PeriodicRecord, ProducerInfo, ProducerState, Role, Segment};

/// The segment_validator target's template: small rings, an engine that
/// published counters, four latencies and five records.
fn template(dir: &std::path::Path) -> (Segment, Vec<u8>) {
    let mut opts = scratch_opts(dir, "fuzzreg");
    opts.ring_capacity = 8;
    let owner = Segment::create(&opts).unwrap();
    {
        let info = ProducerInfo {
            pid: std::process::id(),
            core: Some(1),
            kind: "fuzz".into(),
            state: ProducerState::Running,
        };
        let mut producer = owner.producer(Role::Engine, &info).unwrap();
        producer.publish(&Counters {
            messages_sent: 7,
            messages_received: 7,
            ..Counters::default()
        });
        for ns in [900, 12_000, 250_000, 3_000_000_000] {
            producer.record_latency_ns(ns);
        }
        for seq in 0..5_u64 {
            let _ = producer.push_record(&PeriodicRecord::new(seq, seq * 1000, [seq; 5]));
        }
    }
    let image = std::fs::read(owner.path()).unwrap();
    (owner, image)
}

/// regression-histogram-overflow: two bytes of the engine's histogram set
/// high made the bucket total overflow u64 in `snapshot` (a panic in debug
/// builds, wrapped percentiles in release).
#[test]
fn corrupt_histogram_buckets_do_not_overflow_a_reader() {
    let dir = TempDir::new("fuzzhist");
    let (owner, mut image) = template(dir.path());
    let pristine_p50 = owner.histogram(Role::Engine).value_at_quantile(0.5);
    // Both offsets fall in slot 0's (the engine's) histogram buckets in
    // layout 2 as in layout 1 (buckets from byte 1192 to 206 000): the
    // high bytes of two bucket words.
    for (offset, value) in [(0xffff_usize, 0x05_u8), (0x24ff, 0xff)] {
        let at = offset % image.len();
        image[at] = value;
    }
    let path = dir.path().join("input");
    std::fs::write(&path, &image).unwrap();
    let segment = Segment::open_with_timeout(&path, Duration::ZERO)
        .expect("the patch leaves the header valid");
    let snapshot = segment.snapshot();
    for slot in &snapshot.slots {
        let l = slot
            .latency
            .as_ref()
            .expect("the template recorded latencies");
        assert!(
            l.p50_us <= l.p90_us && l.p90_us <= l.p99_us && l.p99_us <= l.p999_us,
            "percentiles out of order: {l:?}"
        );
    }
    let engine = segment.histogram(Role::Engine);
    assert!(engine.value_at_quantile(0.5) <= engine.value_at_quantile(1.0));
    assert_ne!(
        engine.value_at_quantile(0.5),
        pristine_p50,
        "the patch reached the buckets (the regression is still exercised)"
    );
}
