//! The segment: creating and validating the file, claiming slots, reading
//! snapshots.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::counters::{CounterReadings, Counters, Measured, COUNTER_WORDS};
use crate::error::ShmError;
use crate::histogram::{bucket_of, LatencySummary, LocalHistogram, HISTOGRAM_MAX_NS};
use crate::layout::{
    claim_word, split_claim, Header, Layout, Mapping, SlotShm, CLAIM_REWINDING,
    FLAG_DEVSHM_FALLBACK, HUGE_PAGE_SIZE, KNOWN_FLAGS, LATCH_WORDS,
};
use crate::proc;
use crate::ring::{PeriodicRecord, RecordCell, RingReader, RingStats, RingWriter, RECORD_WORDS};
use crate::sync::{AtomicU64, Ordering};
use crate::{LAYOUT_VERSION, MAGIC, SLOT_COUNT};

/// How long [`Segment::open`] waits for the creator to publish the magic.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(1);

/// Claim words compare the low 32 bits of the start time.
const CLAIM_TICKS_MASK: u64 = 0xffff_ffff;

/// The slot a producer uses; slot index = declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The server engine (slot 0).
    Engine,
    /// The load generator (slot 1).
    Loadgen,
    /// The userspace link emulator (slot 2).
    Emulator,
    /// Room for one more producer (slot 3).
    Spare,
}

const _: () = assert!(SLOT_COUNT == 4);

impl Role {
    /// Every role, in slot order.
    pub const ALL: [Role; SLOT_COUNT] = [Role::Engine, Role::Loadgen, Role::Emulator, Role::Spare];

    /// The slot index, `0..SLOT_COUNT`.
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A producer's lifecycle as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProducerState {
    /// Never claimed (not in snapshots).
    Empty,
    /// Claimed, not measuring yet (warm-up, connecting, DPDK init).
    Starting,
    /// Measuring.
    Running,
    /// Done; the numbers are final.
    Finished,
    /// Stopped on an error; the numbers are what it had.
    Failed,
}

impl ProducerState {
    fn encode(self) -> u32 {
        self as u32
    }

    fn decode(v: u32) -> Self {
        match v {
            0 => Self::Empty,
            1 => Self::Starting,
            2 => Self::Running,
            3 => Self::Finished,
            _ => Self::Failed,
        }
    }
}

/// Who a slot's producer is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerInfo {
    /// Process id of the producer.
    pub pid: u32,
    /// CPU core it is pinned to, if any.
    pub core: Option<u32>,
    /// What it is, at most 31 bytes: "kernel", "dpdk", "fstack",
    /// "closed-loop", "open-loop", "emulator", ...
    pub kind: String,
    /// Its lifecycle state.
    pub state: ProducerState,
}

impl ProducerInfo {
    /// This process, `Starting`, pinned to `core` if any: what a producer
    /// claims its slot with.
    #[must_use]
    pub fn starting(kind: &str, core: Option<usize>) -> Self {
        Self {
            pid: std::process::id(),
            core: core.and_then(|c| u32::try_from(c).ok()),
            kind: kind.to_owned(),
            state: ProducerState::Starting,
        }
    }
}

/// What backs the segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backing {
    /// A hugetlbfs mount (huge pages: no TLB misses on the ring).
    Hugetlbfs,
    /// /dev/shm (or another tmpfs): ordinary pages, because no hugepages
    /// could be had; [`Segment::fallback_reason`] says why.
    DevShm,
}

/// How to create a segment.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Segment name; the file is `bypasslab-{name}`. No `/`.
    pub name: String,
    /// hugetlbfs directory; `None`: the first hugetlbfs mount in
    /// `/proc/mounts`.
    pub hugetlbfs_dir: Option<PathBuf>,
    /// Where to create the file when hugetlbfs cannot be used.
    pub fallback_dir: PathBuf,
    /// Whether to fall back to `fallback_dir` at all.
    pub allow_fallback: bool,
    /// Ring cells per slot, records (power of two).
    pub ring_capacity: usize,
}

impl CreateOptions {
    /// Defaults: any hugetlbfs mount, fallback to /dev/shm, 4096 records.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            hugetlbfs_dir: None,
            fallback_dir: PathBuf::from("/dev/shm"),
            allow_fallback: true,
            ring_capacity: 4096,
        }
    }

    /// The file name for these options.
    #[must_use]
    pub fn file_name(&self) -> String {
        format!("bypasslab-{}", self.name)
    }
}

/// Every header field, as `supervisor stats --json` prints it under
/// `"segment"`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// The segment file.
    pub path: String,
    /// What backs it (`"hugetlbfs"` or `"devshm"`), from `flags`.
    pub backing: Backing,
    /// Why hugetlbfs was not used (`null` on hugetlbfs).
    pub fallback_reason: Option<String>,
    /// The magic number, [`MAGIC`].
    pub magic: u64,
    /// Layout version, [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// Flag bits: 1 = /dev/shm fallback.
    pub flags: u32,
    /// File size, bytes (the layout rounded up to `page_size`).
    pub total_size: u64,
    /// Used bytes: header + slots + rings.
    pub layout_size: u64,
    /// Page size the file is rounded to, bytes.
    pub page_size: u64,
    /// Header size, bytes.
    pub header_size: u64,
    /// Producer slots.
    pub slot_count: u64,
    /// Offset of the first slot, bytes.
    pub slots_offset: u64,
    /// Size of one slot (control, counters, ring indices, histogram), bytes.
    pub slot_size: u64,
    /// Offset of the first ring, bytes.
    pub rings_offset: u64,
    /// Records per ring.
    pub ring_capacity: u64,
    /// Size of one ring, bytes.
    pub ring_size: u64,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Pid of the creating process (the owner).
    pub owner_pid: u32,
    /// Start time of the owner, clock ticks after boot (`/proc/<pid>/stat`
    /// field 22; pid-reuse check).
    pub owner_start_ticks: u64,
    /// Producer claims so far, all slots together.
    pub generation: u64,
}

/// What `supervisor stats --json` prints: the segment and every slot in use.
///
/// ```json
/// {"segment":{"path":"/dev/hugepages/bypasslab-run","backing":"hugetlbfs",
///   "fallback_reason":null,"magic":...,"layout_version":2,...},
///  "slots":[{"role":"loadgen","info":{"pid":4242,"core":1,
///    "kind":"closed-loop","state":"running"},"generation":1,
///    "counters":{"messages_sent":10000,...,"rx_packets":null,...},
///    "latency":{"count":10000,"clamped":0,"percentiles_are_lower_bounds":false,
///      "min_us":95.1,"mean_us":120.4,...},
///    "ring":{"capacity":4096,"written":12,"read":12,"dropped":0}},
///   {"role":"engine",...,"latency":null,...}]}
/// ```
///
/// `null` always means "not known", never zero: a counter the producer does
/// not measure, counters that could not be read consistently, or the
/// latency of a producer that records none.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Snapshot {
    /// The header.
    pub segment: HeaderInfo,
    /// Slots whose state is not `empty`, in slot order.
    pub slots: Vec<SlotSnapshot>,
}

/// One producer's published state.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct SlotSnapshot {
    /// Whose slot.
    pub role: Role,
    /// Who claimed it last and its state.
    pub info: ProducerInfo,
    /// Claims of this slot so far (1 for the first producer).
    pub generation: u64,
    /// The counters of the last `publish`, never torn; a counter the
    /// producer does not measure is `None`. `None` as a whole: unreadable
    /// (the producer republished without pause for the whole 100 ms the
    /// reader retries), never shown as zeros.
    pub counters: Option<CounterReadings>,
    /// The latency histogram, summarised (µs); `None` when the producer
    /// records no latencies (or, with unreadable counters, has recorded
    /// none so far).
    pub latency: Option<LatencySummary>,
    /// The ring's counters (records).
    pub ring: RingStats,
}

impl SlotSnapshot {
    /// The counters with every unknown value as 0: what layout 1 showed,
    /// for a caller that has yet to tell "not measured" and "unreadable"
    /// from zero.
    #[must_use]
    pub fn counters_or_zero(&self) -> Counters {
        self.counters.map(|c| c.or_zero()).unwrap_or_default()
    }
}

/// A mapped segment. `Send + Sync`: everything shared is atomics; writers
/// are the [`Producer`] and [`RingConsumer`] claims.
pub struct Segment {
    map: Mapping,
    layout: Layout,
    path: PathBuf,
    backing: Backing,
    fallback_reason: Option<String>,
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Segment>();
};

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ShmError + '_ {
    move |source| ShmError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Segment {
    /// Creates the segment file on hugetlbfs, or on `fallback_dir` when no
    /// hugepages can be had (then [`Segment::backing`] is `DevShm`, the
    /// header says so and [`Segment::fallback_reason`] says why). Fails with
    /// `AlreadyExists` if the file exists: the caller removes stale files.
    pub fn create(opts: &CreateOptions) -> Result<Segment, ShmError> {
        let file_name = opts.file_name();
        let invalid = |reason: String| ShmError::InvalidOptions {
            path: opts.fallback_dir.join(&file_name),
            reason,
        };
        if opts.name.is_empty() || opts.name.contains('/') || opts.name.contains('\0') {
            return Err(invalid(format!(
                "segment name {:?} is empty or holds '/' or NUL",
                opts.name
            )));
        }
        let capacity = u64::try_from(opts.ring_capacity).unwrap_or(u64::MAX);
        Layout::compute(capacity, HUGE_PAGE_SIZE).map_err(invalid)?;

        let huge_dir = opts.hugetlbfs_dir.clone().or_else(proc::find_hugetlbfs);
        let reason = match &huge_dir {
            None => "no hugetlbfs mounted (none in /proc/mounts)".to_owned(),
            Some(dir) => match proc::hugetlbfs_page_size(dir) {
                None => format!("{} is not a hugetlbfs mount", dir.display()),
                Some(page) => {
                    let layout = Layout::compute(capacity, page.max(HUGE_PAGE_SIZE))
                        .map_err(|e| invalid(e.clone()))?;
                    match Self::create_in(dir, &file_name, layout, None) {
                        Ok(seg) => return Ok(seg),
                        Err(e @ ShmError::AlreadyExists { .. }) => return Err(e),
                        Err(ShmError::Map { source, .. })
                            if source.raw_os_error() == Some(libc::ENOMEM) =>
                        {
                            format!(
                                "not enough free huge pages in {} for {} MiB",
                                dir.display(),
                                layout.total_size >> 20
                            )
                        }
                        Err(e) => format!("hugetlbfs failed: {e}"),
                    }
                }
            },
        };
        if !opts.allow_fallback {
            return Err(ShmError::NoHugepages {
                path: huge_dir.unwrap_or_default().join(&file_name),
                reason,
            });
        }
        let layout = Layout::compute(capacity, HUGE_PAGE_SIZE).map_err(invalid)?;
        Self::create_in(&opts.fallback_dir, &file_name, layout, Some(reason))
    }

    /// Creates, sizes, maps and initialises `dir/file_name`; removes the
    /// file again if any step fails.
    fn create_in(
        dir: &Path,
        file_name: &str,
        layout: Layout,
        fallback: Option<String>,
    ) -> Result<Segment, ShmError> {
        let path = dir.join(file_name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::AlreadyExists => ShmError::AlreadyExists { path: path.clone() },
                _ => ShmError::Create {
                    path: path.clone(),
                    source,
                },
            })?;
        let result = Self::init_file(&file, &path, layout, fallback);
        if result.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        result
    }

    fn init_file(
        file: &File,
        path: &Path,
        layout: Layout,
        fallback: Option<String>,
    ) -> Result<Segment, ShmError> {
        file.set_len(layout.total_size)
            .map_err(|source| ShmError::Create {
                path: path.to_owned(),
                source,
            })?;
        let len = usize::try_from(layout.total_size).map_err(|_| ShmError::Create {
            path: path.to_owned(),
            source: io::Error::other("size does not fit in memory"),
        })?;
        // Populate: on hugetlbfs this is where missing pages show up (as an
        // error rather than a SIGBUS later), elsewhere it pre-faults.
        let raw = memmap2::MmapOptions::new()
            .len(len)
            .populate()
            .map_raw(file)
            .map_err(|source| ShmError::Map {
                path: path.to_owned(),
                source,
            })?;
        let map = Mapping::new(raw);
        let my_ticks = proc::self_start_ticks();
        let seg = Segment {
            map,
            layout,
            path: path.to_owned(),
            backing: if fallback.is_some() {
                Backing::DevShm
            } else {
                Backing::Hugetlbfs
            },
            fallback_reason: fallback,
        };
        seg.check_views()?;
        // The file is fresh zeros: every slot is empty and every latch,
        // ring and histogram is zero. Only the header needs values.
        let h = seg.header_ref();
        let l = &seg.layout;
        h.header_size.store(l.header_size, Ordering::Relaxed);
        h.total_size.store(l.total_size, Ordering::Relaxed);
        h.layout_size.store(l.layout_size, Ordering::Relaxed);
        h.page_size.store(l.page_size, Ordering::Relaxed);
        h.slot_count.store(SLOT_COUNT as u64, Ordering::Relaxed);
        h.slots_offset.store(l.slots_offset, Ordering::Relaxed);
        h.slot_size.store(l.slot_size, Ordering::Relaxed);
        h.rings_offset.store(l.rings_offset, Ordering::Relaxed);
        h.ring_capacity.store(l.ring_capacity, Ordering::Relaxed);
        h.ring_size.store(l.ring_size, Ordering::Relaxed);
        h.created_unix_ns
            .store(proc::unix_now_ns(), Ordering::Relaxed);
        h.owner_pid.store(std::process::id(), Ordering::Relaxed);
        h.owner_start_ticks.store(my_ticks, Ordering::Relaxed);
        if let Some(reason) = &seg.fallback_reason {
            h.flags.store(FLAG_DEVSHM_FALLBACK, Ordering::Relaxed);
            h.store_reason(reason);
        }
        h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        // SYNC: Release publishes every store above; pairs with the Acquire
        // load of `magic` in `open`.
        h.magic.store(MAGIC, Ordering::Release);
        Ok(seg)
    }

    /// Opens a segment another process created, validating it first: magic,
    /// layout version, every size, the file length and the owner's liveness.
    /// Waits up to [`OPEN_TIMEOUT`] for a creator that is still initialising.
    pub fn open(path: &Path) -> Result<Segment, ShmError> {
        Self::open_with_timeout(path, OPEN_TIMEOUT)
    }

    /// [`Segment::open`] with another wait for the initialisation.
    pub fn open_with_timeout(path: &Path, timeout: Duration) -> Result<Segment, ShmError> {
        let start = Instant::now();
        let waited_ms =
            |start: Instant| u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        // An empty file is a creator between `create_new` and `set_len`.
        let mut len = file.metadata().map_err(io_err(path))?.len();
        while len == 0 {
            if start.elapsed() >= timeout {
                return Err(ShmError::NotInitialized {
                    path: path.to_owned(),
                    waited_ms: waited_ms(start),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
            len = file.metadata().map_err(io_err(path))?.len();
        }
        let header_size = core::mem::size_of::<Header>() as u64;
        if len < header_size {
            return Err(ShmError::Truncated {
                path: path.to_owned(),
                len,
                expected: header_size,
            });
        }
        let map_len = usize::try_from(len).map_err(|_| ShmError::SizeMismatch {
            path: path.to_owned(),
            what: "file size",
            found: len,
            expected: u64::try_from(usize::MAX).unwrap_or(u64::MAX),
        })?;
        let raw = memmap2::MmapOptions::new()
            .len(map_len)
            .map_raw(&file)
            .map_err(|source| ShmError::Map {
                path: path.to_owned(),
                source,
            })?;
        let map = Mapping::new(raw);
        let header: &Header = map.view(0).ok_or_else(|| ShmError::Truncated {
            path: path.to_owned(),
            len,
            expected: header_size,
        })?;

        // SYNC: Acquire pairs with the creator's Release store of `magic`:
        // once it is visible, so is the rest of the header.
        let magic = loop {
            let m = header.magic.load(Ordering::Acquire);
            if m != 0 {
                break m;
            }
            if start.elapsed() >= timeout {
                return Err(ShmError::NotInitialized {
                    path: path.to_owned(),
                    waited_ms: waited_ms(start),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if magic != MAGIC {
            return Err(ShmError::BadMagic {
                path: path.to_owned(),
                found: magic,
                expected: MAGIC,
            });
        }
        let version = header.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(ShmError::VersionMismatch {
                path: path.to_owned(),
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let flags = header.flags.load(Ordering::Relaxed);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(ShmError::Corrupt {
                path: path.to_owned(),
                what: format!("unknown flags {flags:#x}"),
            });
        }
        let layout = Layout::compute(
            header.ring_capacity.load(Ordering::Relaxed),
            header.page_size.load(Ordering::Relaxed),
        )
        .map_err(|what| ShmError::Corrupt {
            path: path.to_owned(),
            what,
        })?;
        let checks: [(&'static str, &AtomicU64, u64); 9] = [
            ("header size", &header.header_size, layout.header_size),
            ("slot count", &header.slot_count, SLOT_COUNT as u64),
            ("slots offset", &header.slots_offset, layout.slots_offset),
            ("slot size", &header.slot_size, layout.slot_size),
            ("rings offset", &header.rings_offset, layout.rings_offset),
            ("ring size", &header.ring_size, layout.ring_size),
            ("layout size", &header.layout_size, layout.layout_size),
            ("total size", &header.total_size, layout.total_size),
            ("page size", &header.page_size, layout.page_size),
        ];
        for (what, field, expected) in checks {
            let found = field.load(Ordering::Relaxed);
            if found != expected {
                return Err(ShmError::SizeMismatch {
                    path: path.to_owned(),
                    what,
                    found,
                    expected,
                });
            }
        }
        if len < layout.total_size {
            return Err(ShmError::Truncated {
                path: path.to_owned(),
                len,
                expected: layout.total_size,
            });
        }
        if len > layout.total_size {
            return Err(ShmError::SizeMismatch {
                path: path.to_owned(),
                what: "file size",
                found: len,
                expected: layout.total_size,
            });
        }
        let owner = header.owner_pid.load(Ordering::Relaxed);
        let owner_ticks = header.owner_start_ticks.load(Ordering::Relaxed);
        if !proc::is_alive(owner, owner_ticks, u64::MAX) {
            return Err(ShmError::OwnerDead {
                path: path.to_owned(),
                pid: owner,
            });
        }
        let fallback_reason = header.load_reason();
        let seg = Segment {
            map,
            layout,
            path: path.to_owned(),
            backing: if flags & FLAG_DEVSHM_FALLBACK != 0 {
                Backing::DevShm
            } else {
                Backing::Hugetlbfs
            },
            fallback_reason,
        };
        seg.check_views()?;
        Ok(seg)
    }

    /// Checks once that every view the accessors hand out fits the mapping
    /// and is aligned, so that they cannot fail later.
    fn check_views(&self) -> Result<(), ShmError> {
        let cap = usize::try_from(self.layout.ring_capacity).unwrap_or(usize::MAX);
        let ok = self.map.view::<Header>(0).is_some()
            && self
                .map
                .view_slice::<SlotShm>(self.layout.slots_offset, SLOT_COUNT)
                .is_some()
            && (0..SLOT_COUNT).all(|i| {
                self.map
                    .view_slice::<RecordCell<RECORD_WORDS>>(self.layout.ring_offset(i), cap)
                    .is_some()
            });
        if ok {
            Ok(())
        } else {
            Err(ShmError::Truncated {
                path: self.path.clone(),
                len: self.map.len() as u64,
                expected: self.layout.total_size,
            })
        }
    }

    fn header_ref(&self) -> &Header {
        // Checked in `check_views` before any caller can get here.
        self.map
            .view(0)
            .unwrap_or_else(|| unreachable!("header view checked at open"))
    }

    fn slot(&self, role: Role) -> &SlotShm {
        let slots = self
            .map
            .view_slice::<SlotShm>(self.layout.slots_offset, SLOT_COUNT)
            .unwrap_or_else(|| unreachable!("slot views checked at open"));
        &slots[role.index()]
    }

    fn cells(&self, role: Role) -> &[RecordCell<RECORD_WORDS>] {
        let cap = usize::try_from(self.layout.ring_capacity).unwrap_or(usize::MAX);
        self.map
            .view_slice(self.layout.ring_offset(role.index()), cap)
            .unwrap_or_else(|| unreachable!("ring views checked at open"))
    }

    /// The segment file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What backs the file.
    #[must_use]
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// Why hugetlbfs was not used; `None` on hugetlbfs.
    #[must_use]
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Every header field.
    #[must_use]
    pub fn header(&self) -> HeaderInfo {
        let h = self.header_ref();
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HeaderInfo {
            path: self.path.display().to_string(),
            backing: self.backing,
            fallback_reason: self.fallback_reason.clone(),
            magic: r(&h.magic),
            layout_version: h.version.load(Ordering::Relaxed),
            flags: h.flags.load(Ordering::Relaxed),
            total_size: r(&h.total_size),
            layout_size: r(&h.layout_size),
            page_size: r(&h.page_size),
            header_size: r(&h.header_size),
            slot_count: r(&h.slot_count),
            slots_offset: r(&h.slots_offset),
            slot_size: r(&h.slot_size),
            rings_offset: r(&h.rings_offset),
            ring_capacity: r(&h.ring_capacity),
            ring_size: r(&h.ring_size),
            created_unix_ns: r(&h.created_unix_ns),
            owner_pid: h.owner_pid.load(Ordering::Relaxed),
            owner_start_ticks: r(&h.owner_start_ticks),
            generation: h.generation.load(Ordering::Relaxed),
        }
    }

    /// Claims `word` for this process: free, or held by a dead process.
    /// `Err(pid)` when a live process (this one included) holds it.
    fn claim(&self, word: &AtomicU64) -> Result<(), u32> {
        // Read now, not when the segment was mapped: a forked child claims
        // as itself.
        let me = claim_word(std::process::id(), proc::self_start_ticks());
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut expected = 0;
        loop {
            // SYNC: AcqRel: Acquire sees everything the previous holder did
            // before releasing; pairs with the Release store in `release`.
            match word.compare_exchange(expected, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(CLAIM_REWINDING) => {
                    // A producer is rewinding the ring: microseconds.
                    if Instant::now() > deadline {
                        return Err(0);
                    }
                    expected = 0;
                    std::thread::yield_now();
                }
                Err(held) => {
                    let (pid, ticks) = split_claim(held);
                    if held == me || proc::is_alive(pid, ticks, CLAIM_TICKS_MASK) {
                        return Err(pid);
                    }
                    expected = held; // dead holder: take over
                }
            }
        }
    }

    /// Claims `role`'s slot for this process's single producer. Resets the
    /// slot's counters, histogram and drop count, rewinds its ring unless a
    /// consumer is attached (then the ring continues where it is), bumps
    /// the slot generation, then publishes `info` (state last).
    ///
    /// `SlotBusy` if a live process (this one included) holds the slot; the
    /// claim of a dead process (pid gone, a zombie, or reused by a process
    /// with another start time) is taken over.
    pub fn producer(&self, role: Role, info: &ProducerInfo) -> Result<Producer<'_>, ShmError> {
        if info.kind.len() > 31 {
            return Err(ShmError::KindTooLong {
                path: self.path.clone(),
                kind: info.kind.clone(),
            });
        }
        let slot = self.slot(role);
        let c = &slot.control;
        self.claim(&c.producer_claim)
            .map_err(|pid| ShmError::SlotBusy {
                path: self.path.clone(),
                role,
                pid,
            })?;

        // Mask and values zero: nothing published, nothing measured yet.
        slot.counters.write(&[0; LATCH_WORDS]);
        let hist = &slot.histogram;
        for b in &hist.buckets {
            b.store(0, Ordering::Relaxed);
        }
        for a in [
            &hist.count,
            &hist.sum_ns,
            &hist.min_inverted,
            &hist.max_ns,
            &hist.clamped,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        slot.ring.producer.dropped.store(0, Ordering::Relaxed);
        // Rewind only while no consumer can be reading: the consumer owns
        // `head`. The marker keeps consumers out meanwhile.
        // SYNC: AcqRel: Acquire sees the last consumer's final `head` (its
        // Release in `RingConsumer::drop`).
        if c.consumer_claim
            .compare_exchange(0, CLAIM_REWINDING, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            slot.ring.producer.tail.store(0, Ordering::Relaxed);
            slot.ring.consumer.head.store(0, Ordering::Relaxed);
            // SYNC: Release publishes the rewind; pairs with the consumer
            // claim's Acquire compare-exchange.
            c.consumer_claim.store(0, Ordering::Release);
        }

        c.info_pid.store(info.pid, Ordering::Relaxed);
        c.info_core.store(
            info.core.map_or(0, |k| k.saturating_add(1)),
            Ordering::Relaxed,
        );
        let mut kind = [0u8; 32];
        kind[0] = u8::try_from(info.kind.len()).unwrap_or(31);
        kind[1..=info.kind.len()].copy_from_slice(info.kind.as_bytes());
        for (w, chunk) in c.kind.iter().zip(kind.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        c.generation.fetch_add(1, Ordering::Relaxed);
        // A plain count: nothing is published through it.
        self.header_ref().generation.fetch_add(1, Ordering::Relaxed);
        // SYNC: Release publishes the reset and the info above; pairs with
        // the Acquire load of `state` in `snapshot`.
        c.state.store(info.state.encode(), Ordering::Release);

        Ok(Producer {
            seg: self,
            slot,
            ring: RingWriter::attach(&slot.ring, self.cells(role)),
            measured: Measured::ALL,
        })
    }

    /// Claims the consumer side of `role`'s ring (one consumer at a time).
    ///
    /// A consumer continues where the previous one handed cells back. If
    /// the previous one died, the up to capacity / 8 records it had taken
    /// but not yet handed back are delivered again (their `seq` shows it).
    /// A new producer claim restarts its records' `seq` at 0 while a
    /// consumer stays attached; [`SlotSnapshot::generation`] tells the
    /// claims apart.
    pub fn consumer(&self, role: Role) -> Result<RingConsumer<'_>, ShmError> {
        let slot = self.slot(role);
        self.claim(&slot.control.consumer_claim)
            .map_err(|pid| ShmError::ConsumerBusy {
                path: self.path.clone(),
                role,
                pid,
            })?;
        Ok(RingConsumer {
            slot,
            ring: RingReader::attach(&slot.ring, self.cells(role)),
        })
    }

    /// The counters `role`'s producer last published (never torn), those
    /// it does not measure as `None`; `None` if the slot was never claimed,
    /// or if the producer kept republishing for the whole ~100 ms of
    /// retries.
    #[must_use]
    pub fn read_counters(&self, role: Role) -> Option<CounterReadings> {
        let slot = self.slot(role);
        // SYNC: Acquire pairs with the Release store of `state` at claim.
        if ProducerState::decode(slot.control.state.load(Ordering::Acquire)) == ProducerState::Empty
        {
            return None;
        }
        read_latch(slot).map(|(measured, values)| CounterReadings::new(&values, measured))
    }

    /// The lifecycle state `role`'s producer last set (`Empty` if never
    /// claimed).
    #[must_use]
    pub fn producer_state(&self, role: Role) -> ProducerState {
        // SYNC: Acquire pairs with the Release stores of `state`.
        ProducerState::decode(self.slot(role).control.state.load(Ordering::Acquire))
    }

    /// Everything every claimed slot published.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_with(read_latch)
    }

    /// [`Segment::snapshot`] with the counters read by `read` (the tests
    /// make them unreadable at will).
    fn snapshot_with(&self, read: impl Fn(&SlotShm) -> Option<(Measured, Counters)>) -> Snapshot {
        let mut slots = Vec::new();
        for role in Role::ALL {
            let slot = self.slot(role);
            let c = &slot.control;
            // SYNC: Acquire pairs with the Release store of `state` at claim.
            let state = ProducerState::decode(c.state.load(Ordering::Acquire));
            if state == ProducerState::Empty {
                continue;
            }
            let mut kind = Vec::with_capacity(32);
            for w in &c.kind {
                kind.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            let n = usize::from(kind[0]).min(31);
            let core = c.info_core.load(Ordering::Relaxed);
            let published = read(slot);
            let histogram = local_histogram(slot);
            // Unreadable counters hide the mask too: then samples are what
            // shows latencies are recorded.
            let has_latency = match published {
                Some((measured, _)) => measured.latency(),
                None => histogram.count() > 0,
            };
            slots.push(SlotSnapshot {
                role,
                info: ProducerInfo {
                    pid: c.info_pid.load(Ordering::Relaxed),
                    core: core.checked_sub(1),
                    kind: String::from_utf8_lossy(&kind[1..=n]).into_owned(),
                    state,
                },
                generation: c.generation.load(Ordering::Relaxed),
                counters: published
                    .map(|(measured, values)| CounterReadings::new(&values, measured)),
                latency: has_latency.then(|| histogram.summary()),
                ring: slot.ring.stats(self.layout.ring_capacity),
            });
        }
        Snapshot {
            segment: self.header(),
            slots,
        }
    }

    /// Copies `role`'s shared histogram into a [`LocalHistogram`].
    #[must_use]
    pub fn histogram(&self, role: Role) -> LocalHistogram {
        local_histogram(self.slot(role))
    }

    /// Removes the file (the owner does this at the end of a run). Other
    /// processes' mappings stay valid until they drop them.
    pub fn unlink(self) -> Result<(), ShmError> {
        std::fs::remove_file(&self.path).map_err(io_err(&self.path))
    }
}

/// A consistent read of the slot's mask and counters, retrying for about
/// 100 ms.
fn read_latch(slot: &SlotShm) -> Option<(Measured, Counters)> {
    let deadline = Instant::now() + Duration::from_millis(100);
    loop {
        if let Some(words) = slot.counters.read(1024) {
            let mut values = [0; COUNTER_WORDS];
            values.copy_from_slice(&words[1..]);
            return Some((Measured::from_bits(words[0]), Counters::from_words(&values)));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::yield_now();
    }
}

fn local_histogram(slot: &SlotShm) -> LocalHistogram {
    let h = &slot.histogram;
    let mut local = LocalHistogram::new();
    for (dst, src) in local.buckets.iter_mut().zip(&h.buckets) {
        *dst = src.load(Ordering::Relaxed);
    }
    local.count = h.count.load(Ordering::Relaxed);
    local.sum = u128::from(h.sum_ns.load(Ordering::Relaxed));
    local.min = !h.min_inverted.load(Ordering::Relaxed);
    local.max = h.max_ns.load(Ordering::Relaxed);
    local.clamped = h.clamped.load(Ordering::Relaxed);
    local
}

/// The one producer of a slot (RAII claim; `Drop` releases it, the slot
/// keeps its last state and numbers for readers).
pub struct Producer<'a> {
    seg: &'a Segment,
    slot: &'a SlotShm,
    ring: RingWriter<'a, RECORD_WORDS>,
    /// Published with every update of the counters.
    measured: Measured,
}

impl Producer<'static> {
    /// Opens the segment at `path` and claims `role` for the rest of this
    /// process's life: what an engine or a load generator does once at
    /// start. The segment is leaked on purpose (the claim borrows it, and
    /// the mapping must outlive every publication anyway); the claim is
    /// released when the returned producer is dropped.
    ///
    /// # Errors
    /// Any [`Segment::open`] validation error, or [`ShmError::SlotBusy`]
    /// when a live process holds the slot.
    pub fn claim_for_process(
        path: &Path,
        role: Role,
        info: &ProducerInfo,
    ) -> Result<Self, ShmError> {
        let segment: &'static Segment = Box::leak(Box::new(Segment::open(path)?));
        segment.producer(role, info)
    }
}

impl Producer<'_> {
    /// Publishes the producer's lifecycle state.
    pub fn set_state(&mut self, state: ProducerState) {
        // SYNC: Release, so a reader that sees Finished also sees the last
        // counters; pairs with the Acquire load in `snapshot`.
        self.slot
            .control
            .state
            .store(state.encode(), Ordering::Release);
    }

    /// Declares which counters this producer measures and whether it
    /// records latencies; readers see the others as `null`. Takes effect
    /// with the next [`Producer::publish`]. A producer that declares
    /// nothing claims [`Measured::ALL`].
    pub fn set_measured(&mut self, measured: Measured) {
        self.measured = measured;
    }

    /// Publishes `counters` and the measured set as one value (seqlock
    /// write; wait-free).
    pub fn publish(&mut self, counters: &Counters) {
        let mut words = [0; LATCH_WORDS];
        words[0] = self.measured.bits();
        words[1..].copy_from_slice(&counters.to_words());
        self.slot.counters.write(&words);
    }

    /// Records one latency sample, nanoseconds (relaxed single-writer
    /// updates: a plain load and store each, no locked instruction).
    pub fn record_latency_ns(&mut self, ns: u64) {
        let h = &self.slot.histogram;
        let bump = |a: &AtomicU64, by: u64| {
            a.store(
                a.load(Ordering::Relaxed).wrapping_add(by),
                Ordering::Relaxed,
            )
        };
        bump(&h.buckets[bucket_of(ns)], 1);
        bump(&h.sum_ns, ns);
        if !h.min_inverted.load(Ordering::Relaxed) > ns {
            h.min_inverted.store(!ns, Ordering::Relaxed);
        }
        if h.max_ns.load(Ordering::Relaxed) < ns {
            h.max_ns.store(ns, Ordering::Relaxed);
        }
        if ns > HISTOGRAM_MAX_NS {
            bump(&h.clamped, 1);
        }
        bump(&h.count, 1);
    }

    /// Appends `record` to the ring. `false` when the ring is full: the
    /// record is dropped and counted (see the `ring` module).
    pub fn push_record(&mut self, record: &PeriodicRecord) -> bool {
        self.ring.push(&record.to_words())
    }

    /// Records that can be pushed now without a drop (reloads the
    /// consumer's position). A producer that must not drop waits for this
    /// to be non-zero.
    pub fn free_slots(&mut self) -> usize {
        self.ring.free()
    }

    /// This claim's generation of the slot.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.slot.control.generation.load(Ordering::Relaxed)
    }

    /// The segment this producer writes to.
    #[must_use]
    pub fn segment(&self) -> &Segment {
        self.seg
    }
}

impl Drop for Producer<'_> {
    fn drop(&mut self) {
        // SYNC: Release hands everything we wrote to the next claimer's
        // Acquire compare-exchange.
        self.slot.control.producer_claim.store(0, Ordering::Release);
    }
}

/// The one consumer of a slot's ring (RAII claim).
pub struct RingConsumer<'a> {
    slot: &'a SlotShm,
    ring: RingReader<'a, RECORD_WORDS>,
}

impl RingConsumer<'_> {
    /// Takes the oldest record, if any. Cells go back to the producer in
    /// batches of capacity / 8 and whenever the ring is found empty.
    pub fn pop(&mut self) -> Option<PeriodicRecord> {
        self.ring.pop().map(PeriodicRecord::from_words)
    }

    /// Records the producer dropped on a full ring since it claimed the slot.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.ring.dropped()
    }

    /// The producer's lifecycle state (to know when to stop draining).
    #[must_use]
    pub fn producer_state(&self) -> ProducerState {
        // SYNC: pairs with the producer's Release stores of `state`.
        ProducerState::decode(self.slot.control.state.load(Ordering::Acquire))
    }
}

impl Drop for RingConsumer<'_> {
    fn drop(&mut self) {
        self.ring.flush();
        // SYNC: Release hands our `head` to the next consumer's Acquire claim.
        self.slot.control.consumer_claim.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn counters_that_cannot_be_read_are_none_never_zeros() {
        let dir = Scratch(
            std::env::temp_dir().join(format!("shm-layout-unit-unreadable-{}", std::process::id())),
        );
        std::fs::create_dir_all(&dir.0).unwrap();
        let mut opts = CreateOptions::new("unreadable");
        opts.hugetlbfs_dir = Some(dir.0.clone());
        opts.fallback_dir = dir.0.clone();
        let seg = Segment::create(&opts).unwrap();
        let mut p = seg
            .producer(Role::Loadgen, &ProducerInfo::starting("test", None))
            .unwrap();
        p.publish(&Counters {
            messages_received: 3,
            ..Counters::default()
        });
        p.record_latency_ns(1_000);

        // As if the producer republished for the whole 100 ms of retries.
        let snap = seg.snapshot_with(|_| None);
        let slot = &snap.slots[0];
        assert_eq!(slot.counters, None);
        let json = serde_json::to_value(&snap).unwrap();
        assert!(json["slots"][0]["counters"].is_null(), "{json}");
        assert_eq!(
            slot.latency.map(|l| l.count),
            Some(1),
            "its samples still show"
        );

        let readable = seg.snapshot();
        let counters = readable.slots[0].counters.expect("readable");
        assert_eq!(counters.messages_received, Some(3));
    }
}
