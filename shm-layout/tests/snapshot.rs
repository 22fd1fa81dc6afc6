//! The snapshot: what `supervisor stats --json` prints, and the slot
//! semantics behind it (claims, resets, drops, histogram).

mod common;

use common::{scratch_opts, TempDir};
use serde_json::Value;
use shm_layout::{
    Counter, CounterReadings, Counters, LocalHistogram, Measured, PeriodicRecord, ProducerInfo,
    ProducerState, Role, Segment, Snapshot, COUNTER_WORDS,
};

fn info(kind: &str, core: Option<u32>) -> ProducerInfo {
    ProducerInfo {
        pid: std::process::id(),
        core,
        kind: kind.into(),
        state: ProducerState::Starting,
    }
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn snapshot_json_round_trip_has_every_documented_field() {
    let dir = TempDir::new("json");
    let seg = Segment::create(&scratch_opts(dir.path(), "json")).unwrap();
    let mut p = seg
        .producer(Role::Loadgen, &info("closed-loop", Some(1)))
        .unwrap();
    p.set_state(ProducerState::Running);
    let words: [u64; COUNTER_WORDS] = std::array::from_fn(|i| i as u64 + 1);
    p.publish(&Counters::from_words(&words));
    for ns in [95_000, 120_000, 130_000, 207_000_000] {
        p.record_latency_ns(ns);
    }
    assert!(p.push_record(&PeriodicRecord::new(0, 1, [1; 5])));

    let snap = seg.snapshot();
    let text = serde_json::to_string_pretty(&snap).unwrap();
    println!("{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(keys(&v), ["segment", "slots"]);
    assert_eq!(
        keys(&v["segment"]),
        [
            "backing",
            "created_unix_ns",
            "fallback_reason",
            "flags",
            "generation",
            "header_size",
            "layout_size",
            "layout_version",
            "magic",
            "owner_pid",
            "owner_start_ticks",
            "page_size",
            "path",
            "ring_capacity",
            "ring_size",
            "rings_offset",
            "slot_count",
            "slot_size",
            "slots_offset",
            "total_size",
        ]
    );
    let slots = v["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 1, "only claimed slots");
    let s = &slots[0];
    assert_eq!(
        keys(s),
        ["counters", "generation", "info", "latency", "ring", "role"]
    );
    assert_eq!(s["role"], "loadgen");
    assert_eq!(keys(&s["info"]), ["core", "kind", "pid", "state"]);
    assert_eq!(s["info"]["state"], "running");
    assert_eq!(s["info"]["core"], 1);
    assert_eq!(s["info"]["kind"], "closed-loop");
    assert_eq!(
        keys(&s["latency"]),
        [
            "clamped",
            "count",
            "max_us",
            "mean_us",
            "min_us",
            "p50_us",
            "p90_us",
            "p999_us",
            "p99_us",
            "percentiles_are_lower_bounds"
        ]
    );
    assert_eq!(keys(&s["ring"]), ["capacity", "dropped", "read", "written"]);
    assert_eq!(keys(&s["counters"]).len(), COUNTER_WORDS);
    assert_eq!(s["counters"]["messages_sent"], 1);
    assert_eq!(s["counters"]["elapsed_ns"], 21);
    assert_eq!(s["latency"]["count"], 4);
    assert_eq!(s["latency"]["min_us"], 95.0);
    assert_eq!(s["latency"]["max_us"], 207_000.0);
    assert_eq!(s["ring"]["written"], 1);

    assert_eq!(keys(&s["counters"]).len(), COUNTER_WORDS);

    let back: Snapshot = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_string_pretty(&back).unwrap(), text);
    assert_eq!(back.segment, snap.segment);
    assert_eq!(back.slots[0].counters, snap.slots[0].counters);
    assert_eq!(back.slots[0].latency, snap.slots[0].latency);
    assert_eq!(back.slots[0].info, snap.slots[0].info);
}

#[test]
fn shared_histogram_summarises_like_a_local_one() {
    let dir = TempDir::new("hist");
    let seg = Segment::create(&scratch_opts(dir.path(), "hist")).unwrap();
    let mut p = seg
        .producer(Role::Loadgen, &info("open-loop", None))
        .unwrap();
    let mut local = LocalHistogram::new();
    let mut x = 12_345u64;
    for _ in 0..100_000 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let ns = 1_000 + (x >> 33) % 50_000_000;
        p.record_latency_ns(ns);
        local.record_ns(ns);
    }
    p.record_latency_ns(30_000_000_000); // above the range: clamped, counted
    local.record_ns(30_000_000_000);
    let shared = seg.histogram(Role::Loadgen);
    assert_eq!(shared.summary(), local.summary());
    assert_eq!(shared.clamped(), 1);
    p.publish(&Counters::default());
    let s = seg.snapshot().slots[0]
        .latency
        .expect("the loadgen records latencies");
    assert_eq!(s, local.summary());
    assert_eq!(s.count, 100_001);
    assert!((s.max_us - 30_000_000.0).abs() < 1e-6);
    assert_eq!(s.clamped, 1, "the snapshot reports the clamped sample");
    assert!(s.percentiles_are_lower_bounds);
}

/// What a producer does not measure is `null` in the JSON; a measured zero
/// is a number. The kernel engine, for one, has no port counters, no busy
/// loops outside busy-poll, and no latency histogram.
#[test]
fn counters_not_measured_are_null_and_measured_zeros_are_numbers() {
    let dir = TempDir::new("null");
    let seg = Segment::create(&scratch_opts(dir.path(), "null")).unwrap();
    let mut p = seg.producer(Role::Engine, &info("kernel", None)).unwrap();
    p.set_measured(Measured::counters(&[
        Counter::MessagesReceived,
        Counter::ProtocolErrors,
        Counter::ElapsedNs,
    ]));
    p.publish(&Counters {
        messages_received: 7,
        rx_packets: 99, // published, but not measured: must not show
        ..Counters::default()
    });
    let v: Value = serde_json::to_value(seg.snapshot()).unwrap();
    let slot = &v["slots"][0];
    let c = &slot["counters"];
    assert_eq!(c["messages_received"], 7);
    assert_eq!(c["protocol_errors"], 0, "a measured zero is a number");
    for name in ["rx_packets", "tx_packets", "busy_loops", "rx_missed"] {
        assert!(c[name].is_null(), "{name} is not measured: {c}");
    }
    assert!(slot["latency"].is_null(), "{slot}");
    assert_eq!(seg.read_counters(Role::Engine).unwrap().rx_packets, None);
}

#[test]
fn claim_resets_the_slot_and_release_keeps_final_numbers() {
    let dir = TempDir::new("claim");
    let seg = Segment::create(&scratch_opts(dir.path(), "claim")).unwrap();
    {
        let mut p = seg
            .producer(Role::Engine, &info("kernel", Some(0)))
            .unwrap();
        p.publish(&Counters {
            messages_received: 5,
            ..Counters::default()
        });
        p.record_latency_ns(1_000);
        assert!(p.push_record(&PeriodicRecord::new(0, 0, [0; 5])));
        p.set_state(ProducerState::Finished);
    }
    // Released: readers still see the final numbers.
    let s = seg.snapshot();
    assert_eq!(s.slots[0].info.state, ProducerState::Finished);
    let counters = s.slots[0].counters.expect("readable");
    assert_eq!(counters.messages_received, Some(5));
    assert_eq!(s.slots[0].latency.map(|l| l.count), Some(1));
    assert_eq!(s.segment.generation, 1);

    // A new claim without a consumer attached resets everything.
    let p = seg.producer(Role::Engine, &info("dpdk", None)).unwrap();
    let s = seg.snapshot();
    let slot = &s.slots[0];
    assert_eq!(slot.generation, 2);
    assert_eq!(s.segment.generation, 2);
    assert_eq!(slot.info.kind, "dpdk");
    assert_eq!(slot.info.core, None);
    assert_eq!(slot.info.state, ProducerState::Starting);
    // Nothing published yet: nothing measured, not zeros.
    assert_eq!(slot.counters, Some(CounterReadings::default()));
    assert_eq!(slot.latency, None);
    assert_eq!(
        (slot.ring.written, slot.ring.read, slot.ring.dropped),
        (0, 0, 0)
    );
    drop(p);

    // With a consumer attached the ring is not rewound under it.
    let mut c = seg.consumer(Role::Engine).unwrap();
    {
        let mut p = seg.producer(Role::Engine, &info("dpdk", None)).unwrap();
        assert!(p.push_record(&PeriodicRecord::new(0, 0, [7; 5])));
    }
    let mut p = seg.producer(Role::Engine, &info("dpdk", None)).unwrap();
    assert!(p.push_record(&PeriodicRecord::new(0, 0, [8; 5])));
    assert_eq!(c.pop().unwrap().values, [7; 5]);
    assert_eq!(c.pop().unwrap().values, [8; 5]);
    assert_eq!(c.pop(), None);
}

#[test]
fn full_ring_in_a_segment_drops_and_counts() {
    let dir = TempDir::new("full");
    let mut opts = scratch_opts(dir.path(), "full");
    opts.ring_capacity = 8;
    let seg = Segment::create(&opts).unwrap();
    let mut p = seg
        .producer(Role::Emulator, &info("emulator", None))
        .unwrap();
    let mut c = seg.consumer(Role::Emulator).unwrap();
    assert_eq!(p.free_slots(), 8);
    let pushed: Vec<bool> = (0..11)
        .map(|i| p.push_record(&PeriodicRecord::new(i, 0, [0; 5])))
        .collect();
    assert_eq!(pushed.iter().filter(|&&ok| ok).count(), 8);
    assert!(
        !pushed[8] && !pushed[9] && !pushed[10],
        "the newest are dropped"
    );
    assert_eq!(c.dropped(), 3);
    let ring = seg.snapshot().slots[0].ring;
    assert_eq!(
        (ring.capacity, ring.written, ring.read, ring.dropped),
        (8, 8, 0, 3)
    );
    for i in 0..8 {
        let r = c.pop().unwrap();
        assert_eq!(r.seq, i);
        assert!(r.is_intact());
    }
    assert_eq!(c.pop(), None);
    assert!(p.push_record(&PeriodicRecord::new(11, 0, [0; 5])));
    assert_eq!(
        c.pop().unwrap().seq,
        11,
        "the gap 8..11 is the 3 counted drops"
    );
}
