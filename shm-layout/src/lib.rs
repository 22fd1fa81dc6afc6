//! bypasslab's shared-memory statistics segment.
//!
//! The engine, the load generator and the link emulator each publish what
//! they measure into one file mapped by every process; the supervisor reads
//! it for `supervisor stats --json`. The crate is built in layers, bottom-up:
//!
//! 1. `sync`: the atomics, from loom under `cfg(loom)` so that the model
//!    checks the real code of the two layers above it.
//! 2. `latch`: a two-copy seqlock. A group of words written by one process
//!    is read whole by any other, even if the writer died mid-update.
//!    Backs [`Counters`].
//! 3. `ring`: single-producer/single-consumer, fixed 64-byte
//!    [`PeriodicRecord`]s, head and tail on their own cache lines, each side
//!    caching the other's index. A full ring drops the new record and counts
//!    it ([`RingStats::dropped`], [`RingConsumer::dropped`]).
//! 4. `histogram`: log-linear nanosecond buckets, 3 significant digits from
//!    1 ns to 17 s; [`LocalHistogram`] is the private twin with the same
//!    buckets and the same summary code.
//! 5. `layout`: the `#[repr(C)]` header, [`SLOT_COUNT`] slots and the rings,
//!    placed by offsets (never pointers), with compile-time checks of sizes,
//!    offsets and alignment, viewed through a checked `from_bytes`-style
//!    function, never a blind cast.
//! 6. [`Segment`]: create on hugetlbfs (or /dev/shm, recorded in the header
//!    and returned as [`Segment::fallback_reason`]), open with validation
//!    (each failure a [`ShmError`] naming the file), RAII [`Producer`] and
//!    [`RingConsumer`] claims identified by pid + process start time, and
//!    [`Snapshot`], the JSON schema of the stats: a counter the producer
//!    does not measure ([`Measured`]) is `null`, never a zero, and counters
//!    that cannot be read consistently are `null` as a whole.
//!
//! Create, then open "from another process" (the same calls work across
//! processes; the tests do exactly that with real ones):
//!
//! ```
//! use shm_layout::{CreateOptions, Counters, PeriodicRecord, ProducerInfo, ProducerState, Role, Segment};
//! # let dir = std::env::temp_dir();
//! let mut opts = CreateOptions::new(format!("doc-{}", std::process::id()));
//! opts.fallback_dir = dir.clone(); // normally /dev/shm
//! # opts.hugetlbfs_dir = Some(dir.clone());
//! let seg = Segment::create(&opts)?;
//! if let Some(why) = seg.fallback_reason() {
//!     eprintln!("no hugepages: {why}");
//! }
//! // In the loadgen (another process in real use):
//! let reader = Segment::open(seg.path())?;
//! let info = ProducerInfo { pid: std::process::id(), core: Some(1), kind: "closed-loop".into(), state: ProducerState::Running };
//! let mut p = reader.producer(Role::Loadgen, &info)?;
//! p.publish(&Counters { messages_sent: 10, ..Counters::default() });
//! p.record_latency_ns(120_000);
//! assert!(p.push_record(&PeriodicRecord::new(0, 0, [1, 2, 3, 4, 5])));
//! // In the supervisor:
//! let snap = seg.snapshot();
//! let counters = snap.slots[0].counters.expect("readable");
//! assert_eq!(counters.messages_sent, Some(10));
//! println!("{}", serde_json::to_string(&snap)?);
//! drop(p);
//! seg.unlink()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod counters;
mod histogram;
mod latch;
mod pass_clock;
mod ring;
mod sync;

#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod layout;
#[cfg(not(loom))]
mod proc;
#[cfg(not(loom))]
mod segment;

pub use counters::{Counter, CounterReadings, Counters, Measured, COUNTER_WORDS};
pub use histogram::{LatencySummary, LocalHistogram, HISTOGRAM_MAX_NS};
pub use pass_clock::{busy_share, PassClock};
pub use ring::{PeriodicRecord, RingStats};

#[cfg(not(loom))]
pub use error::ShmError;
#[cfg(not(loom))]
pub use layout::HUGE_PAGE_SIZE;
#[cfg(not(loom))]
pub use segment::{
    Backing, CreateOptions, HeaderInfo, Producer, ProducerInfo, ProducerState, RingConsumer, Role,
    Segment, SlotSnapshot, Snapshot, OPEN_TIMEOUT,
};

/// First 8 bytes of every segment: "BYPSLAB" + 0x01 as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"BYPSLAB\x01");

/// Version of the layout in this crate. Bump on any change of a `#[repr(C)]`
/// structure, the bucket scheme or an encoding; readers refuse other
/// versions.
///
/// 2: the counters seqlock starts with the producer's [`Measured`] mask, and
/// eight counters joined (`rx_missed` to `setup_failures`).
/// 3: `busy_ns` joined (a spinning loop's time in passes that found work).
pub const LAYOUT_VERSION: u32 = 3;

/// Producer slots in a segment: one per [`Role`].
pub const SLOT_COUNT: usize = 4;
