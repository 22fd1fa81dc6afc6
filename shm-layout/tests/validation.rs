//! Opening validates before trusting: one test per error, checked with
//! `matches!`, and every message names the file.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use common::{child_role, scratch_opts, spawn_self, TempDir};
use shm_layout::{ProducerInfo, ProducerState, Role, Segment, ShmError, LAYOUT_VERSION, MAGIC};

/// Byte offsets of header fields (pinned by the crate's compile-time checks).
const VERSION_OFFSET: u64 = 8;
const FLAGS_OFFSET: u64 = 12;
const SLOT_SIZE_OFFSET: u64 = 64;
const OWNER_TICKS_OFFSET: u64 = 112;

fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn assert_names_file(err: &ShmError, path: &Path) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name the file: {msg}"
    );
    println!("error message: {msg}");
}

fn info() -> ProducerInfo {
    ProducerInfo {
        pid: std::process::id(),
        core: None,
        kind: "test".into(),
        state: ProducerState::Running,
    }
}

#[test]
fn opens_a_valid_segment() {
    let dir = TempDir::new("valid");
    let seg = Segment::create(&scratch_opts(dir.path(), "valid")).unwrap();
    let other = Segment::open(seg.path()).unwrap();
    assert_eq!(other.header(), seg.header());
    assert_eq!(other.header().magic, MAGIC);
    assert_eq!(other.header().layout_version, LAYOUT_VERSION);
    assert_eq!(other.header().owner_pid, std::process::id());
}

#[test]
fn bad_magic() {
    let dir = TempDir::new("magic");
    let seg = Segment::create(&scratch_opts(dir.path(), "magic")).unwrap();
    poke(seg.path(), 0, &0x1234_5678_u64.to_le_bytes());
    let err = Segment::open(seg.path()).err().unwrap();
    assert!(
        matches!(
            err,
            ShmError::BadMagic {
                found: 0x1234_5678,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names_file(&err, seg.path());
}

#[test]
fn other_layout_version_is_refused_with_a_clear_message() {
    let dir = TempDir::new("version");
    let seg = Segment::create(&scratch_opts(dir.path(), "version")).unwrap();
    poke(
        seg.path(),
        VERSION_OFFSET,
        &(LAYOUT_VERSION + 1).to_le_bytes(),
    );
    let err = Segment::open(seg.path()).err().unwrap();
    assert!(
        matches!(err, ShmError::VersionMismatch { found, expected, .. }
            if found == LAYOUT_VERSION + 1 && expected == LAYOUT_VERSION),
        "{err:?}"
    );
    assert_names_file(&err, seg.path());
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("layout version {}", LAYOUT_VERSION + 1)),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("understands version {LAYOUT_VERSION}")),
        "{msg}"
    );
}

#[test]
fn file_larger_than_header_says() {
    let dir = TempDir::new("larger");
    let seg = Segment::create(&scratch_opts(dir.path(), "larger")).unwrap();
    let total = seg.header().total_size;
    set_len(seg.path(), total + 4096);
    let err = Segment::open(seg.path()).err().unwrap();
    assert!(
        matches!(err, ShmError::SizeMismatch { what: "file size", found, expected, .. }
            if found == total + 4096 && expected == total),
        "{err:?}"
    );
    assert_names_file(&err, seg.path());
}

#[test]
fn header_section_size_disagrees_with_layout() {
    let dir = TempDir::new("section");
    let seg = Segment::create(&scratch_opts(dir.path(), "section")).unwrap();
    let slot_size = seg.header().slot_size;
    poke(
        seg.path(),
        SLOT_SIZE_OFFSET,
        &(slot_size + 128).to_le_bytes(),
    );
    let err = Segment::open(seg.path()).err().unwrap();
    assert!(
        matches!(err, ShmError::SizeMismatch { what: "slot size", found, .. } if found == slot_size + 128),
        "{err:?}"
    );
    assert_names_file(&err, seg.path());
}

#[test]
fn truncated_file_is_refused_with_a_clear_message() {
    let dir = TempDir::new("trunc");
    let seg = Segment::create(&scratch_opts(dir.path(), "trunc")).unwrap();
    let total = seg.header().total_size;
    set_len(seg.path(), total - 4096);
    let err = Segment::open(seg.path()).err().unwrap();
    assert!(
        matches!(err, ShmError::Truncated { len, expected, .. } if len == total - 4096 && expected == total),
        "{err:?}"
    );
    assert_names_file(&err, seg.path());
    assert!(err.to_string().contains("is truncated"), "{err}");
}

#[test]
fn file_shorter_than_a_header_is_truncated() {
    let dir = TempDir::new("tiny");
    let path = dir.path().join("bypasslab-tiny");
    std::fs::write(&path, MAGIC.to_le_bytes()).unwrap();
    let err = Segment::open(&path).err().unwrap();
    assert!(
        matches!(
            err,
            ShmError::Truncated {
                len: 8,
                expected: 256,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names_file(&err, &path);
}

#[test]
fn empty_file_is_a_creator_still_starting() {
    let dir = TempDir::new("empty");
    let path = dir.path().join("bypasslab-empty");
    std::fs::write(&path, b"").unwrap();
    let err = Segment::open_with_timeout(&path, Duration::from_millis(50))
        .err()
        .unwrap();
    assert!(matches!(err, ShmError::NotInitialized { .. }), "{err:?}");
    assert_names_file(&err, &path);
}

/// Garbage in any header word gives an error or a usable segment, never a
/// panic or a view outside the file (a deterministic fuzz of `open`).
#[test]
fn corrupted_headers_never_panic() {
    let dir = TempDir::new("fuzz");
    let seg = Segment::create(&scratch_opts(dir.path(), "fuzz")).unwrap();
    let pristine = std::fs::read(seg.path()).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut errors = 0;
    for round in 0..300 {
        std::fs::write(seg.path(), &pristine).unwrap();
        // Keep magic and version valid half of the time so the later checks
        // are reached too.
        let first_word = if round % 2 == 0 { 2 } else { 0 };
        for _ in 0..1 + next() % 3 {
            let word = first_word + next() % (32 - first_word);
            let value = match next() % 4 {
                0 => next(),
                1 => next() % 4096,
                2 => 1 << (next() % 64),
                _ => 0,
            };
            poke(seg.path(), word * 8, &value.to_le_bytes());
        }
        if round % 7 == 0 {
            set_len(seg.path(), next() % (pristine.len() as u64 * 2));
        }
        match Segment::open_with_timeout(seg.path(), Duration::from_millis(5)) {
            Ok(s) => {
                let _ = s.snapshot();
            }
            Err(e) => {
                assert!(e.to_string().contains(&seg.path().display().to_string()));
                errors += 1;
            }
        }
    }
    assert!(errors > 200, "most corruptions are caught: {errors}");
}

#[test]
fn never_initialised_segment() {
    let dir = TempDir::new("uninit");
    let seg = Segment::create(&scratch_opts(dir.path(), "uninit")).unwrap();
    // A creator that crashed before publishing: right size, magic still 0.
    let path = dir.path().join("bypasslab-zeros");
    std::fs::write(
        &path,
        vec![0u8; usize::try_from(seg.header().total_size).unwrap()],
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = Segment::open(&path).err().unwrap();
    let waited = started.elapsed();
    assert!(matches!(err, ShmError::NotInitialized { .. }), "{err:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_names_file(&err, &path);
}

#[test]
fn unknown_flags_are_corrupt() {
    let dir = TempDir::new("flags");
    let seg = Segment::create(&scratch_opts(dir.path(), "flags")).unwrap();
    poke(seg.path(), FLAGS_OFFSET, &0x80u32.to_le_bytes());
    let err = Segment::open(seg.path()).err().unwrap();
    assert!(matches!(err, ShmError::Corrupt { .. }), "{err:?}");
    assert_names_file(&err, seg.path());
}

#[test]
fn owner_pid_reused_counts_as_dead() {
    let dir = TempDir::new("reuse");
    let seg = Segment::create(&scratch_opts(dir.path(), "reuse")).unwrap();
    // Same pid, other start time: the pid now belongs to another process.
    let ticks = seg.header().owner_start_ticks;
    poke(seg.path(), OWNER_TICKS_OFFSET, &(ticks + 1).to_le_bytes());
    let err = Segment::open(seg.path()).err().unwrap();
    assert!(
        matches!(err, ShmError::OwnerDead { pid, .. } if pid == std::process::id()),
        "{err:?}"
    );
    assert_names_file(&err, seg.path());
}

/// Child role: create a segment in `SHM_DIR`, print its path, exit.
#[test]
fn child_creates_segment_and_exits() {
    if child_role().as_deref() != Some("creator") {
        return;
    }
    let dir = std::env::var("SHM_DIR").unwrap();
    let seg = Segment::create(&scratch_opts(Path::new(&dir), "orphan")).unwrap();
    println!("CREATED {}", seg.path().display());
}

#[test]
fn owner_dead() {
    let dir = TempDir::new("dead");
    let mut child = spawn_self(
        "child_creates_segment_and_exits",
        "creator",
        &[("SHM_DIR", dir.path().display().to_string())],
    );
    let child_pid = child.pid();
    let line = child.wait_line("CREATED ", Duration::from_secs(20));
    assert!(child.wait(Duration::from_secs(20)).success());
    let path = Path::new(line.trim_start_matches("CREATED ")).to_owned();
    let err = Segment::open(&path).err().unwrap();
    assert!(
        matches!(err, ShmError::OwnerDead { pid, .. } if pid == child_pid),
        "{err:?}"
    );
    assert_names_file(&err, &path);
}

#[test]
fn create_refuses_an_existing_file() {
    let dir = TempDir::new("exists");
    let opts = scratch_opts(dir.path(), "exists");
    let _seg = Segment::create(&opts).unwrap();
    let err = Segment::create(&opts).err().unwrap();
    assert!(matches!(err, ShmError::AlreadyExists { .. }), "{err:?}");
    assert_names_file(&err, &dir.path().join("bypasslab-exists"));
}

#[test]
fn bad_options_are_refused() {
    let dir = TempDir::new("opts");
    let mut opts = scratch_opts(dir.path(), "opts");
    opts.ring_capacity = 1000;
    let err = Segment::create(&opts).err().unwrap();
    assert!(matches!(err, ShmError::InvalidOptions { .. }), "{err:?}");
    assert_names_file(&err, &dir.path().join("bypasslab-opts"));
    let err = Segment::create(&scratch_opts(dir.path(), "a/b"))
        .err()
        .unwrap();
    assert!(matches!(err, ShmError::InvalidOptions { .. }), "{err:?}");
}

#[test]
fn slot_held_by_a_live_process_is_busy() {
    let dir = TempDir::new("busy");
    let seg = Segment::create(&scratch_opts(dir.path(), "busy")).unwrap();
    let p = seg.producer(Role::Engine, &info()).unwrap();
    let err = seg.producer(Role::Engine, &info()).err().unwrap();
    assert!(
        matches!(err, ShmError::SlotBusy { role: Role::Engine, pid, .. } if pid == std::process::id()),
        "{err:?}"
    );
    assert_names_file(&err, seg.path());
    let c = seg.consumer(Role::Engine).unwrap();
    let err = seg.consumer(Role::Engine).err().unwrap();
    assert!(
        matches!(
            err,
            ShmError::ConsumerBusy {
                role: Role::Engine,
                ..
            }
        ),
        "{err:?}"
    );
    drop((p, c));
    // Released: claimable again, and the generation counts claims.
    let p = seg.producer(Role::Engine, &info()).unwrap();
    assert_eq!(p.generation(), 2);
    let long = ProducerInfo {
        kind: "x".repeat(32),
        ..info()
    };
    let err = seg.producer(Role::Loadgen, &long).err().unwrap();
    assert!(matches!(err, ShmError::KindTooLong { .. }), "{err:?}");
}

/// Child role: claim the Loadgen slot of `SHM_PATH` and exit without
/// releasing it (as a crash would).
#[test]
fn child_claims_slot_and_dies() {
    if child_role().as_deref() != Some("claimer") {
        return;
    }
    let seg = Segment::open(Path::new(&std::env::var("SHM_PATH").unwrap())).unwrap();
    let p = seg.producer(Role::Loadgen, &info()).unwrap();
    println!("CLAIMED");
    std::mem::forget(p);
    std::process::exit(0);
}

#[test]
fn slot_of_a_dead_process_is_taken_over() {
    let dir = TempDir::new("takeover");
    let seg = Segment::create(&scratch_opts(dir.path(), "takeover")).unwrap();
    let mut child = spawn_self(
        "child_claims_slot_and_dies",
        "claimer",
        &[("SHM_PATH", seg.path().display().to_string())],
    );
    child.wait_line("CLAIMED", Duration::from_secs(20));
    assert!(child.wait(Duration::from_secs(20)).success());
    let p = seg.producer(Role::Loadgen, &info()).unwrap();
    assert_eq!(p.generation(), 2);
}

/// The `inspect` example, built by `cargo test` next to this test binary.
fn inspect_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("examples").join("inspect");
    bin.exists().then_some(bin)
}

#[test]
fn a_program_prints_a_clear_error_for_another_version_or_a_truncated_file() {
    let Some(inspect) = inspect_binary() else {
        println!("SKIPPED: the inspect example is not built (run through cargo test)");
        return;
    };
    let dir = TempDir::new("inspect");
    let seg = Segment::create(&scratch_opts(dir.path(), "inspect")).unwrap();
    let run = || {
        std::process::Command::new(&inspect)
            .arg(seg.path())
            .output()
            .unwrap()
    };

    let ok = run();
    assert!(ok.status.success());
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(json["segment"]["layout_version"], LAYOUT_VERSION);

    poke(
        seg.path(),
        VERSION_OFFSET,
        &(LAYOUT_VERSION + 1).to_le_bytes(),
    );
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{}", stderr.trim());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&seg.path().display().to_string()),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("layout version {}", LAYOUT_VERSION + 1)),
        "{stderr}"
    );

    poke(seg.path(), VERSION_OFFSET, &LAYOUT_VERSION.to_le_bytes());
    set_len(seg.path(), seg.header().total_size / 2);
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{}", stderr.trim());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&seg.path().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("is truncated"), "{stderr}");
}

#[test]
fn missing_file_and_unwritable_directory() {
    let dir = TempDir::new("io");
    let path = dir.path().join("bypasslab-missing");
    let err = Segment::open(&path).err().unwrap();
    assert!(
        matches!(&err, ShmError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert_names_file(&err, &path);

    let mut opts = scratch_opts(dir.path(), "nodir");
    opts.fallback_dir = dir.path().join("does-not-exist");
    let err = Segment::create(&opts).err().unwrap();
    assert!(matches!(err, ShmError::Create { .. }), "{err:?}");
    assert_names_file(&err, &opts.fallback_dir.join("bypasslab-nodir"));
}
