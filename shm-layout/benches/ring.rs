//! Cross-process ring throughput beside crossbeam's `ArrayQueue` in one
//! process, same record type, same run.
//!
//! `cargo bench -p shm-layout --bench ring`
//!
//! The segment goes where `Segment::create` puts it by default (the first
//! hugetlbfs mount, else /dev/shm, printed on the first line);
//! `SHM_RING_BENCH_HUGETLBFS=<dir>` names a hugetlbfs directory instead.
//!
//! Cross-process: this process creates a segment and consumes the Loadgen
//! ring on core 0; a child process (this binary again) produces on core 1.
//! Reference: an `ArrayQueue<PeriodicRecord>` of the same capacity between
//! two threads of one process on the same cores. Each side checks the
//! sequence of every record. Several rounds, alternating; the table shows
//! the median and the best.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use shm_layout::{CreateOptions, PeriodicRecord, ProducerInfo, ProducerState, Role, Segment};

const RECORDS: u64 = 20_000_000;
const CAPACITY: usize = 4096;
const ROUNDS: usize = 5;
const CHILD_ENV: &str = "SHM_RING_BENCH_PRODUCER";
/// A hugetlbfs directory to use instead of the first one in /proc/mounts.
const HUGETLBFS_ENV: &str = "SHM_RING_BENCH_HUGETLBFS";

fn pin(core: usize) {
    if core >= libc::CPU_SETSIZE as usize {
        return;
    }
    // SAFETY: `cpu_set_t` is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core` is checked against the set's capacity above.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this
    // thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        eprintln!(
            "warning: cannot pin to core {core}: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn record(seq: u64) -> PeriodicRecord {
    PeriodicRecord::new(seq, seq, [seq; 5])
}

/// Child: produce `RECORDS` records into the segment's Loadgen ring without
/// dropping (wait for room instead).
fn produce(path: &str) {
    pin(1);
    let seg = Segment::open(path.as_ref()).expect("open segment");
    let info = ProducerInfo {
        pid: std::process::id(),
        core: Some(1),
        kind: "bench".into(),
        state: ProducerState::Running,
    };
    let mut p = seg.producer(Role::Loadgen, &info).expect("claim slot");
    let mut room = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    for seq in 0..RECORDS {
        while room == 0 {
            room = p.free_slots();
            if room == 0 {
                std::hint::spin_loop();
                assert!(Instant::now() < deadline, "consumer stalled");
            }
        }
        let pushed = p.push_record(&record(seq));
        debug_assert!(pushed);
        room -= 1;
    }
    p.set_state(ProducerState::Finished);
}

/// Cross-process records/s.
fn cross_process(round: usize) -> f64 {
    let mut opts = CreateOptions::new(format!("ring-bench-{}-{round}", std::process::id()));
    opts.ring_capacity = CAPACITY;
    if let Some(dir) = std::env::var_os(HUGETLBFS_ENV) {
        opts.hugetlbfs_dir = Some(dir.into());
    }
    let seg = Segment::create(&opts).expect("create segment");
    if round == 0 {
        match seg.fallback_reason() {
            Some(why) => println!("segment: {:?} ({why})", seg.backing()),
            None => println!("segment: {:?}", seg.backing()),
        }
    }
    pin(0);
    let mut c = seg.consumer(Role::Loadgen).expect("claim consumer");
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .env(CHILD_ENV, seg.path())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn producer");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut expected = 0;
    let mut start = None;
    while expected < RECORDS {
        if let Some(r) = c.pop() {
            assert_eq!(r.seq, expected, "out of order");
            if expected == 0 {
                start = Some(Instant::now());
            }
            expected += 1;
        } else {
            std::hint::spin_loop();
            assert!(Instant::now() < deadline, "producer stalled at {expected}");
        }
    }
    let secs = start.expect("records").elapsed().as_secs_f64();
    assert_eq!(c.dropped(), 0);
    assert!(child.wait().expect("wait producer").success());
    drop(c);
    seg.unlink().expect("unlink");
    (RECORDS - 1) as f64 / secs
}

/// `ArrayQueue` between two threads, records/s.
fn array_queue() -> f64 {
    let q = Arc::new(ArrayQueue::<PeriodicRecord>::new(CAPACITY));
    pin(0);
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || {
            pin(1);
            for seq in 0..RECORDS {
                let mut r = record(seq);
                while let Err(back) = q.push(r) {
                    r = back;
                    std::hint::spin_loop();
                }
            }
        })
    };
    let mut expected = 0;
    let mut start = None;
    while expected < RECORDS {
        if let Some(r) = q.pop() {
            assert_eq!(r.seq, expected, "out of order");
            if expected == 0 {
                start = Some(Instant::now());
            }
            expected += 1;
        } else {
            std::hint::spin_loop();
        }
    }
    let secs = start.expect("records").elapsed().as_secs_f64();
    producer.join().expect("producer thread");
    (RECORDS - 1) as f64 / secs
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        produce(&path);
        return;
    }
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "ring bench: {RECORDS} records of {} bytes, capacity {CAPACITY}, {ROUNDS} rounds, {cores} cores (consumer core 0, producer core 1)",
        std::mem::size_of::<PeriodicRecord>()
    );
    let (mut shm, mut aq) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        shm.push(cross_process(round));
        aq.push(array_queue());
        println!(
            "round {round}: shm ring (2 processes) {:.1} M/s, ArrayQueue (2 threads) {:.1} M/s",
            shm[round] / 1e6,
            aq[round] / 1e6
        );
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (sb, ab) = (best(&shm), best(&aq));
    let (sm, am) = (median(&mut shm), median(&mut aq));
    println!();
    println!("| queue | processes | median records/s | best records/s | median vs ArrayQueue |");
    println!("|---|---|---|---|---|");
    println!(
        "| shm-layout ring | 2 (producer child, consumer parent) | {:.1} M | {:.1} M | {:.2}x |",
        sm / 1e6,
        sb / 1e6,
        sm / am
    );
    println!(
        "| crossbeam ArrayQueue | 1 (2 threads) | {:.1} M | {:.1} M | 1.00x |",
        am / 1e6,
        ab / 1e6
    );
}
