//! Real processes on one segment: a producer process and a reader process
//! move 10 million records through one slot's ring, and a writer process
//! publishes counters while a reader process checks every snapshot.

mod common;

use std::time::{Duration, Instant};

use common::{child_role, field, scratch_opts, spawn_self, TempDir};
use shm_layout::{
    Counter, Counters, PeriodicRecord, ProducerInfo, ProducerState, Role, Segment, COUNTER_WORDS,
};

const RECORDS: u64 = 10_000_000;
const RING: usize = 16_384;
/// Every wait of a child is bounded by this.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

fn values_of(seq: u64) -> [u64; 5] {
    [seq * 3, !seq, seq.rotate_left(17), seq ^ 0x5555, 42]
}

fn env_path() -> std::path::PathBuf {
    std::env::var("SHM_PATH").unwrap().into()
}

fn info(kind: &str) -> ProducerInfo {
    ProducerInfo {
        pid: std::process::id(),
        core: None,
        kind: kind.into(),
        state: ProducerState::Running,
    }
}

/// Child role "producer": pushes records until `RECORDS` were accepted. A
/// refused push (full ring) is a counted drop: its sequence number is skipped.
#[test]
fn child_ring_producer() {
    if child_role().as_deref() != Some("producer") {
        return;
    }
    let seg = Segment::open(&env_path()).unwrap();
    let mut p = seg.producer(Role::Loadgen, &info("ring-test")).unwrap();
    let start = Instant::now();
    let (mut seq, mut accepted) = (0u64, 0u64);
    while accepted < RECORDS {
        if p.push_record(&PeriodicRecord::new(seq, seq * 1000, values_of(seq))) {
            accepted += 1;
        } else {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
        seq += 1;
        assert!(start.elapsed() < CHILD_DEADLINE, "producer timed out");
    }
    p.publish(&Counters {
        messages_sent: seq,
        ..Counters::default()
    });
    p.set_state(ProducerState::Finished);
    println!(
        "PRODUCER offered={seq} accepted={accepted} ms={}",
        start.elapsed().as_millis()
    );
}

/// Child role "reader": checks every record, prints what it saw.
#[test]
fn child_ring_reader() {
    if child_role().as_deref() != Some("reader") {
        return;
    }
    let seg = Segment::open(&env_path()).unwrap();
    let mut c = seg.consumer(Role::Loadgen).unwrap();
    println!("READY");
    // Let the producer run into a full ring first, so drops happen and are
    // accounted for across processes too.
    while seg.producer_state(Role::Loadgen) == ProducerState::Empty {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(30));
    let (mut received, mut torn, mut reordered, mut gaps, mut expected) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + CHILD_DEADLINE;
    loop {
        match c.pop() {
            Some(r) => {
                first.get_or_insert_with(Instant::now);
                received += 1;
                if !r.is_intact() || r.values != values_of(r.seq) || r.timestamp_ns != r.seq * 1000
                {
                    torn += 1;
                }
                if r.seq < expected {
                    reordered += 1;
                } else {
                    gaps += r.seq - expected;
                    expected = r.seq + 1;
                }
            }
            None => {
                if seg.producer_state(Role::Loadgen) == ProducerState::Finished {
                    if let Some(r) = c.pop() {
                        // Raced with the last pushes: put it through the
                        // same checks on the next turn.
                        received += 1;
                        if !r.is_intact() || r.values != values_of(r.seq) {
                            torn += 1;
                        }
                        if r.seq < expected {
                            reordered += 1;
                        } else {
                            gaps += r.seq - expected;
                            expected = r.seq + 1;
                        }
                        continue;
                    }
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "reader timed out after {received} records"
                );
                std::hint::spin_loop();
            }
        }
    }
    let ms = first.map_or(0, |t| t.elapsed().as_millis());
    let offered = seg
        .read_counters(Role::Loadgen)
        .and_then(|c| c.messages_sent)
        .unwrap_or(0);
    println!(
        "READER received={received} torn={torn} reordered={reordered} gaps={gaps} dropped={} \
         offered={offered} last={expected} ms={ms}",
        c.dropped()
    );
}

#[test]
fn ring_moves_10m_records_between_processes() {
    let dir = TempDir::new("xring");
    let mut opts = scratch_opts(dir.path(), "xring");
    opts.ring_capacity = RING;
    let seg = Segment::create(&opts).unwrap();
    let env = [("SHM_PATH", seg.path().display().to_string())];
    let mut reader = spawn_self("child_ring_reader", "reader", &env);
    reader.wait_line("READY", Duration::from_secs(20));
    let mut producer = spawn_self("child_ring_producer", "producer", &env);
    let p = producer.wait_line("PRODUCER ", CHILD_DEADLINE);
    let r = reader.wait_line("READER ", CHILD_DEADLINE);
    assert!(producer.wait(Duration::from_secs(10)).success());
    assert!(reader.wait(Duration::from_secs(10)).success());

    let offered = field(&p, "offered");
    let (received, torn, reordered, gaps, dropped) = (
        field(&r, "received"),
        field(&r, "torn"),
        field(&r, "reordered"),
        field(&r, "gaps"),
        field(&r, "dropped"),
    );
    let ms = field(&r, "ms").max(1);
    println!(
        "cross-process ring: {received} records received, {dropped} dropped (counted), {torn} torn, \
         {reordered} reordered, {} records/s while the reader ran",
        received * 1000 / ms
    );
    assert_eq!(field(&p, "accepted"), RECORDS);
    assert_eq!(received, RECORDS, "{r}");
    assert_eq!(torn, 0, "{r}");
    assert_eq!(reordered, 0, "{r}");
    assert_eq!(gaps, dropped, "every gap is a counted drop: {r}");
    assert_eq!(received + dropped, offered, "{r}");
    assert_eq!(field(&r, "last"), offered);
    let snap = seg.snapshot();
    let slot = snap.slots.iter().find(|s| s.role == Role::Loadgen).unwrap();
    assert_eq!(slot.ring.written, RECORDS);
    assert_eq!(slot.ring.read, RECORDS);
    assert_eq!(slot.ring.dropped, dropped);
    assert_eq!(slot.info.state, ProducerState::Finished);
}

/// Child role "writer": publishes counters whose words all equal one
/// incrementing value.
#[test]
fn child_counter_writer() {
    if child_role().as_deref() != Some("writer") {
        return;
    }
    let seg = Segment::open(&env_path()).unwrap();
    let mut p = seg.producer(Role::Engine, &info("seqlock-test")).unwrap();
    println!("WRITING");
    let start = Instant::now();
    let mut v = 0u64;
    while start.elapsed() < Duration::from_millis(1500) {
        for _ in 0..1000 {
            v += 1;
            p.publish(&Counters::from_words(&[v; COUNTER_WORDS]));
        }
    }
    p.set_state(ProducerState::Finished);
    println!("WRITER last={v}");
}

/// Child role "checker": reads snapshots until the writer finished.
#[test]
fn child_counter_checker() {
    if child_role().as_deref() != Some("checker") {
        return;
    }
    let seg = Segment::open(&env_path()).unwrap();
    let deadline = Instant::now() + CHILD_DEADLINE;
    let (mut reads, mut torn, mut backwards, mut missed, mut distinct, mut last) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    loop {
        let finished = seg.producer_state(Role::Engine) == ProducerState::Finished;
        match seg.read_counters(Role::Engine) {
            Some(c) => {
                reads += 1;
                let w = c.or_zero().to_words();
                // The measured set travels in the same seqlock: a torn read
                // would show as a counter gone missing as well.
                let unmeasured = Counter::ALL.iter().any(|&k| c.get(k).is_none());
                if unmeasured || w.iter().any(|&x| x != w[0]) {
                    torn += 1;
                }
                if w[0] < last {
                    backwards += 1;
                }
                if w[0] != last {
                    distinct += 1;
                }
                last = w[0];
            }
            None => missed += 1,
        }
        if finished {
            break;
        }
        assert!(Instant::now() < deadline, "checker timed out");
    }
    println!("CHECKER reads={reads} torn={torn} backwards={backwards} missed={missed} distinct={distinct} last={last}");
}

#[test]
fn seqlock_snapshots_are_never_torn_across_processes() {
    let dir = TempDir::new("xseq");
    let seg = Segment::create(&scratch_opts(dir.path(), "xseq")).unwrap();
    let env = [("SHM_PATH", seg.path().display().to_string())];
    let mut writer = spawn_self("child_counter_writer", "writer", &env);
    writer.wait_line("WRITING", Duration::from_secs(20));
    let mut checker = spawn_self("child_counter_checker", "checker", &env);
    let w = writer.wait_line("WRITER ", CHILD_DEADLINE);
    let c = checker.wait_line("CHECKER ", CHILD_DEADLINE);
    assert!(writer.wait(Duration::from_secs(10)).success());
    assert!(checker.wait(Duration::from_secs(10)).success());
    println!("cross-process seqlock: {w}; {c}");
    assert_eq!(field(&c, "torn"), 0, "{c}");
    assert_eq!(field(&c, "backwards"), 0, "{c}");
    assert!(field(&c, "reads") >= 1000, "{c}");
    assert!(
        field(&c, "distinct") >= 100,
        "the reader saw the writer progress: {c}"
    );
    assert_eq!(field(&c, "last"), field(&w, "last"), "{c}");
    assert_eq!(
        seg.read_counters(Role::Engine).unwrap().elapsed_ns,
        Some(field(&w, "last"))
    );
}
