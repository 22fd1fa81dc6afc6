//! Fuzz target: `Segment::open`, the validator every reader runs before it
//! trusts a mapping.
//!
//! A valid segment (small rings, one producer that published counters,
//! latencies and records) is made once; each input then describes a file:
//! byte 0 picks how (the raw input as the whole file, or the valid image
//! with byte patches and a new length), the rest are the raw bytes or
//! patches of 4 bytes (24-bit offset into the image, value). The file is
//! opened without waiting; a refusal must be a typed error naming the file,
//! and an accepted segment must serve every reader (snapshot, counters,
//! histograms, a consumer draining its ring) without panicking or reading
//! outside the mapping.
//!
//! ```text
//! scripts/fuzz --time 600 segment_validator
//! cargo run --manifest-path fuzz/Cargo.toml --bin segment_validator -- fuzz/corpus/segment_validator
//! ```

#![cfg_attr(fuzzing, no_main)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use shm_layout::{
    Counters, CreateOptions, PeriodicRecord, ProducerInfo, ProducerState, Role, Segment,
};

struct Fixture {
    /// Bytes of a valid, populated segment owned by this (live) process.
    image: Vec<u8>,
    /// Where each input is written.
    path: PathBuf,
    /// Keeps the template's directory until exit.
    _dir: PathBuf,
    _owner: Segment,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("bypasslab-fuzz-segment-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let mut opts = CreateOptions::new("template");
        // Not a hugetlbfs mount: the segment falls back to this directory.
        opts.hugetlbfs_dir = Some(dir.clone());
        opts.fallback_dir = dir.clone();
        opts.ring_capacity = 8;
        let _ = std::fs::remove_file(dir.join(opts.file_name()));
        let owner = Segment::create(&opts).expect("template segment");
        {
            let info = ProducerInfo {
                pid: std::process::id(),
                core: Some(1),
                kind: "fuzz".into(),
                state: ProducerState::Running,
            };
            let mut producer = owner.producer(Role::Engine, &info).expect("claim");
            let counters = Counters {
                messages_sent: 7,
                messages_received: 7,
                ..Counters::default()
            };
            producer.publish(&counters);
            for ns in [900, 12_000, 250_000, 3_000_000_000] {
                producer.record_latency_ns(ns);
            }
            for seq in 0..5_u64 {
                let _ = producer.push_record(&PeriodicRecord::new(seq, seq * 1000, [seq; 5]));
            }
        }
        let image = std::fs::read(owner.path()).expect("read template");
        Fixture {
            image,
            path: dir.join("input"),
            _dir: dir,
            _owner: owner,
        }
    })
}

fn build_file(data: &[u8], image: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    if mode & 1 == 0 {
        return rest.to_vec();
    }
    let mut file = image.to_vec();
    for patch in rest.chunks_exact(4) {
        let offset =
            (usize::from(patch[0]) << 16 | usize::from(patch[1]) << 8 | usize::from(patch[2]))
                % file.len();
        file[offset] = patch[3];
    }
    // Bits 1..3: keep the length, cut to the header, cut by a bit, grow.
    match (mode >> 1) & 3 {
        1 => file.truncate(usize::from(mode) * 4),
        2 => file.truncate(file.len().saturating_sub(usize::from(mode))),
        3 => file.resize(file.len() + 4096, 0),
        _ => {}
    }
    file
}

fn check(data: &[u8]) {
    let fx = fixture();
    let bytes = build_file(data, &fx.image);
    std::fs::write(&fx.path, &bytes).expect("write input");
    match Segment::open_with_timeout(&fx.path, Duration::ZERO) {
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(&fx.path.display().to_string()),
                "error does not name the file: {message}"
            );
        }
        Ok(segment) => {
            let header = segment.header();
            assert_eq!(
                header.total_size,
                bytes.len() as u64,
                "accepted a wrong size"
            );
            let _ = segment.snapshot();
            for role in Role::ALL {
                let _ = segment.producer_state(role);
                let _ = segment.histogram(role).summary();
                if let Ok(mut consumer) = segment.consumer(role) {
                    for _ in 0..64 {
                        if consumer.pop().is_none() {
                            break;
                        }
                    }
                    let _ = consumer.dropped();
                }
            }
        }
    }
}

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));

/// Replays the files (and directories of files) named on the command line.
#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
    replay::replay(check)
}

#[cfg(not(fuzzing))]
#[path = "replay.rs"]
mod replay;
