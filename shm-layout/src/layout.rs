//! The `#[repr(C)]` structures of the segment and the arithmetic that
//! places them.
//!
//! ```text
//! offset 0            Header (256 bytes)
//! slots_offset        SlotShm × SLOT_COUNT       (control, counters latch,
//!                                                 ring indices, consumer
//!                                                 claim, histogram)
//! rings_offset        RecordCell × ring_capacity, one array per slot
//! layout_size         end of the data; the file is `total_size`, the
//!                     layout rounded up to the (huge) page size
//! ```
//!
//! Everything is located by offsets from the start of the mapping, never by
//! pointers, so every process may map it at another address. All-zero bytes
//! are a valid initial value of every structure (an empty slot, a zero
//! latch, an empty ring and histogram), which is what `ftruncate` gives the
//! creator. Every field another process reads is an atomic.

use crossbeam_utils::CachePadded;

use crate::counters::COUNTER_WORDS;

/// Words of a slot's counters seqlock: the [`crate::Measured`] mask, then
/// the [`crate::Counters`], published together.
pub(crate) const LATCH_WORDS: usize = 1 + COUNTER_WORDS;
use crate::histogram::BUCKETS;
use crate::latch::Latch;
use crate::ring::{RecordCell, RingIndices, RECORD_WORDS};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::SLOT_COUNT;

/// The segment header. `magic` (offset 0) and `version` (offset 8) keep
/// their place in every layout version, so any version can recognise any
/// other.
#[repr(C)]
pub(crate) struct Header {
    /// 0 while the creator initialises, then [`crate::MAGIC`] (stored last,
    /// Release).
    pub(crate) magic: AtomicU64,
    /// [`crate::LAYOUT_VERSION`] of the creator.
    pub(crate) version: AtomicU32,
    /// Bit set of `FLAG_*`.
    pub(crate) flags: AtomicU32,
    /// Bytes of [`Header`].
    pub(crate) header_size: AtomicU64,
    /// Bytes of the file (the layout rounded up to `page_size`).
    pub(crate) total_size: AtomicU64,
    /// Bytes of the data (header, slots and rings).
    pub(crate) layout_size: AtomicU64,
    /// Page size the file size is rounded to, bytes (2 MiB on hugetlbfs with
    /// 2 MiB pages and on /dev/shm).
    pub(crate) page_size: AtomicU64,
    /// Number of slots ([`SLOT_COUNT`]).
    pub(crate) slot_count: AtomicU64,
    /// Offset of the first [`SlotShm`], bytes.
    pub(crate) slots_offset: AtomicU64,
    /// Bytes of one [`SlotShm`].
    pub(crate) slot_size: AtomicU64,
    /// Offset of the first ring's cells, bytes.
    pub(crate) rings_offset: AtomicU64,
    /// Cells per ring (a power of two), records.
    pub(crate) ring_capacity: AtomicU64,
    /// Bytes of one slot's cells (`ring_capacity × 64`).
    pub(crate) ring_size: AtomicU64,
    /// Creation time, nanoseconds since the Unix epoch.
    pub(crate) created_unix_ns: AtomicU64,
    /// Pid of the creating process.
    pub(crate) owner_pid: AtomicU32,
    /// Reserved, zero.
    pub(crate) reserved: AtomicU32,
    /// Start time of the creating process, clock ticks after boot
    /// (`/proc/<pid>/stat` field 22): with the pid, identifies it even after
    /// pid reuse.
    pub(crate) owner_start_ticks: AtomicU64,
    /// Incremented by every producer claim of any slot.
    pub(crate) generation: AtomicU64,
    /// Why hugetlbfs was not used: UTF-8, NUL-padded, 128 bytes (little
    /// endian words); empty on hugetlbfs.
    pub(crate) fallback_reason: [AtomicU64; 16],
}

/// `Header::flags`: the segment lives on /dev/shm, not hugetlbfs.
pub(crate) const FLAG_DEVSHM_FALLBACK: u32 = 1;
/// Every flag this version knows.
pub(crate) const KNOWN_FLAGS: u32 = FLAG_DEVSHM_FALLBACK;

const _: () = assert!(core::mem::size_of::<Header>() == 256);
const _: () = assert!(core::mem::offset_of!(Header, magic) == 0);
const _: () = assert!(core::mem::offset_of!(Header, version) == 8);
const _: () = assert!(core::mem::offset_of!(Header, generation) == 120);
const _: () = assert!(core::mem::offset_of!(Header, fallback_reason) == 128);
const _: () = assert!(core::mem::align_of::<Header>() == 8);

/// A process claim: `pid | (start_ticks as u32) << 32`; 0 means free. One
/// word, so a claim is one compare-exchange and nobody sees a pid paired
/// with another process's start time.
pub(crate) fn claim_word(pid: u32, start_ticks: u64) -> u64 {
    u64::from(pid) | (start_ticks & 0xffff_ffff) << 32
}

/// `pid` and the low 32 bits of the start time of a claim word.
pub(crate) fn split_claim(word: u64) -> (u32, u64) {
    (u32::try_from(word & 0xffff_ffff).unwrap_or(0), word >> 32)
}

/// The consumer claim word while a producer rewinds the ring.
pub(crate) const CLAIM_REWINDING: u64 = u64::MAX;

/// Who holds a slot and what it is.
#[repr(C)]
pub(crate) struct SlotControl {
    /// Producer claim word ([`claim_word`]); 0 when no process holds it.
    pub(crate) producer_claim: AtomicU64,
    /// [`crate::ProducerState`] as 0 Empty, 1 Starting, 2 Running,
    /// 3 Finished, 4 Failed. Stored last at claim (Release).
    pub(crate) state: AtomicU32,
    /// The producer's pid as given in its `ProducerInfo`.
    pub(crate) info_pid: AtomicU32,
    /// Pinned core + 1; 0 means not pinned.
    pub(crate) info_core: AtomicU32,
    /// Reserved, zero.
    pub(crate) reserved: AtomicU32,
    /// Incremented at every producer claim of this slot.
    pub(crate) generation: AtomicU64,
    /// Producer kind: byte 0 is the length (≤ 31), bytes 1..=31 UTF-8,
    /// little-endian words.
    pub(crate) kind: [AtomicU64; 4],
    /// Consumer claim word of the slot's ring ([`claim_word`]); 0 free,
    /// [`CLAIM_REWINDING`] while a new producer rewinds the ring.
    pub(crate) consumer_claim: AtomicU64,
}

/// The shared latency histogram: one writer (the slot's producer), relaxed
/// load-add-store, readers see each word exactly (counts may be a few
/// samples apart from one another while the writer runs).
#[repr(C)]
pub(crate) struct SharedHistogram {
    /// Samples recorded.
    pub(crate) count: AtomicU64,
    /// Sum of the samples, ns.
    pub(crate) sum_ns: AtomicU64,
    /// `!min` (bitwise not) of the samples, ns, so that 0 means "none yet".
    pub(crate) min_inverted: AtomicU64,
    /// Largest sample, ns.
    pub(crate) max_ns: AtomicU64,
    /// Samples above the range, clamped into the top bucket.
    pub(crate) clamped: AtomicU64,
    /// Samples per bucket (see the `histogram` module for the scheme).
    pub(crate) buckets: [AtomicU64; BUCKETS],
}

/// One producer's slot. Each part that changes at a different rate or is
/// written by a different process sits on its own cache line(s).
#[repr(C)]
pub(crate) struct SlotShm {
    /// Claims, state and producer info (written at claim and on state
    /// changes; cold).
    pub(crate) control: CachePadded<SlotControl>,
    /// The producer's [`crate::Measured`] mask and [`crate::Counters`] as a
    /// latch of [`LATCH_WORDS`] words (see `latch` for the encoding of its
    /// sequence).
    pub(crate) counters: CachePadded<Latch<LATCH_WORDS>>,
    /// The ring's `tail`/`dropped` line (producer) and `head` line
    /// (consumer); the cells are in the rings section.
    pub(crate) ring: RingIndices,
    /// The latency histogram (producer writes, anyone reads).
    pub(crate) histogram: CachePadded<SharedHistogram>,
}

/// Alignment every section starts at (a cache-line pair, `CachePadded`).
pub(crate) const SECTION_ALIGN: usize = core::mem::align_of::<CachePadded<u8>>();

const _: () = assert!(core::mem::size_of::<SlotShm>() % SECTION_ALIGN == 0);
const _: () = assert!(core::mem::align_of::<SlotShm>() == SECTION_ALIGN);
const _: () = assert!(core::mem::offset_of!(SlotShm, control) == 0);
const _: () = assert!(core::mem::offset_of!(SlotShm, counters) % SECTION_ALIGN == 0);
const _: () = assert!(core::mem::offset_of!(SlotShm, histogram) % SECTION_ALIGN == 0);
const _: () = assert!(core::mem::size_of::<RingIndices>() == 2 * SECTION_ALIGN);
const _: () = assert!(core::mem::size_of::<RecordCell<RECORD_WORDS>>() == 64);
const _: () = assert!(core::mem::size_of::<Latch<LATCH_WORDS>>() == 8 * (1 + 2 * LATCH_WORDS));
const _: () = assert!(LATCH_WORDS == 31);
// Layout 3: control (128), counters latch (504 bytes, padded to 512), ring
// indices (256), histogram.
const _: () = assert!(core::mem::offset_of!(SlotShm, counters) == 128);
const _: () = assert!(core::mem::offset_of!(SlotShm, ring) == 640);
const _: () = assert!(core::mem::offset_of!(SlotShm, histogram) == 896);
const _: () = assert!(core::mem::size_of::<SharedHistogram>() == 8 * (5 + BUCKETS));

/// Page size files are rounded to when not on a larger hugetlbfs page.
pub const HUGE_PAGE_SIZE: u64 = 2 * 1024 * 1024;

/// Ring capacities `create` accepts.
pub(crate) const MIN_RING_CAPACITY: u64 = 2;
/// Largest ring (1 Mi records, 64 MiB per slot).
pub(crate) const MAX_RING_CAPACITY: u64 = 1 << 20;

/// Where everything is, for a ring capacity and page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) header_size: u64,
    pub(crate) slots_offset: u64,
    pub(crate) slot_size: u64,
    pub(crate) rings_offset: u64,
    pub(crate) ring_capacity: u64,
    pub(crate) ring_size: u64,
    pub(crate) layout_size: u64,
    pub(crate) page_size: u64,
    pub(crate) total_size: u64,
}

const fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

impl Layout {
    /// The layout for `ring_capacity` records per slot on `page_size` pages.
    pub(crate) fn compute(ring_capacity: u64, page_size: u64) -> Result<Self, String> {
        if !ring_capacity.is_power_of_two()
            || !(MIN_RING_CAPACITY..=MAX_RING_CAPACITY).contains(&ring_capacity)
        {
            return Err(format!(
                "ring capacity {ring_capacity} is not a power of two in {MIN_RING_CAPACITY}..={MAX_RING_CAPACITY}"
            ));
        }
        if !page_size.is_power_of_two() || page_size < 4096 {
            return Err(format!(
                "page size {page_size} is not a power of two >= 4096"
            ));
        }
        let align = SECTION_ALIGN as u64;
        let header_size = core::mem::size_of::<Header>() as u64;
        let slots_offset = round_up(header_size, align);
        let slot_size = core::mem::size_of::<SlotShm>() as u64;
        let rings_offset = round_up(slots_offset + slot_size * SLOT_COUNT as u64, align);
        let ring_size = ring_capacity * core::mem::size_of::<RecordCell<RECORD_WORDS>>() as u64;
        let layout_size = rings_offset + ring_size * SLOT_COUNT as u64;
        Ok(Self {
            header_size,
            slots_offset,
            slot_size,
            rings_offset,
            ring_capacity,
            ring_size,
            layout_size,
            page_size,
            total_size: round_up(layout_size, page_size),
        })
    }

    /// Offset of the cells of slot `index`.
    pub(crate) fn ring_offset(&self, index: usize) -> u64 {
        self.rings_offset + self.ring_size * index as u64
    }
}

/// Types that may be viewed in place in the shared mapping.
///
/// # Safety
///
/// Implementors must be `#[repr(C)]` (or a single-field wrapper of such),
/// made only of atomics (so every access goes through `&self` with interior
/// mutability and concurrent access from other processes is defined),
/// contain no pointers, and accept every bit pattern, all-zero included, as
/// a valid value.
pub(crate) unsafe trait ShmSafe: Sized {}

// SAFETY: repr(C), only integer atomics (any bit pattern valid), no pointers.
unsafe impl ShmSafe for Header {}
// SAFETY: repr(C) of CachePadded (align-only wrapper) around repr(C)
// structures of integer atomics; no pointers.
unsafe impl ShmSafe for SlotShm {}
// SAFETY: repr(C) array of integer atomics.
unsafe impl<const W: usize> ShmSafe for RecordCell<W> {}

/// A shared mapping with checked, in-place views of [`ShmSafe`] types.
pub(crate) struct Mapping {
    map: memmap2::MmapRaw,
}

impl Mapping {
    pub(crate) fn new(map: memmap2::MmapRaw) -> Self {
        Self { map }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// `len` values of `T` at byte `offset`, if they fit in the mapping and
    /// the offset is aligned for `T` (the `from_bytes` check: never a blind
    /// cast).
    pub(crate) fn view_slice<T: ShmSafe>(&self, offset: u64, len: usize) -> Option<&[T]> {
        let offset = usize::try_from(offset).ok()?;
        let bytes = core::mem::size_of::<T>().checked_mul(len)?;
        if offset.checked_add(bytes)? > self.map.len() {
            return None;
        }
        // SAFETY: offset + bytes <= len, so the pointer stays inside the
        // mapping (or one past its end for an empty slice).
        let ptr = unsafe { self.map.as_mut_ptr().add(offset) };
        if ptr.align_offset(core::mem::align_of::<T>()) != 0 {
            return None;
        }
        // SAFETY: the range is inside the mapping, which lives as long as
        // `self`, and aligned for `T`; `T: ShmSafe` accepts any bytes and is
        // only accessed through atomics, so shared references into memory
        // other processes write concurrently are sound.
        Some(unsafe { core::slice::from_raw_parts(ptr.cast::<T>(), len) })
    }

    /// One `T` at byte `offset`; see [`Mapping::view_slice`].
    pub(crate) fn view<T: ShmSafe>(&self, offset: u64) -> Option<&T> {
        self.view_slice(offset, 1).map(|s| &s[0])
    }
}

impl Header {
    /// Stores `text` (truncated to 128 bytes at a char boundary) in
    /// `fallback_reason`.
    pub(crate) fn store_reason(&self, text: &str) {
        let mut end = text.len().min(128);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; 128];
        bytes[..end].copy_from_slice(&text.as_bytes()[..end]);
        for (word, chunk) in self.fallback_reason.iter().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            word.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
    }

    /// `fallback_reason` as text; `None` when empty.
    pub(crate) fn load_reason(&self) -> Option<String> {
        let mut bytes = Vec::with_capacity(128);
        for word in &self.fallback_reason {
            bytes.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        (end > 0).then(|| String::from_utf8_lossy(&bytes[..end]).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_math() {
        let l = Layout::compute(4096, HUGE_PAGE_SIZE).unwrap();
        assert_eq!(l.header_size, 256);
        assert_eq!(l.slots_offset % SECTION_ALIGN as u64, 0);
        assert!(l.slots_offset >= l.header_size);
        assert_eq!(l.rings_offset % SECTION_ALIGN as u64, 0);
        assert!(l.rings_offset >= l.slots_offset + 4 * l.slot_size);
        assert_eq!(l.ring_size, 4096 * 64);
        assert_eq!(l.layout_size, l.rings_offset + 4 * l.ring_size);
        assert_eq!(l.total_size % HUGE_PAGE_SIZE, 0);
        assert!(l.total_size >= l.layout_size && l.total_size - l.layout_size < HUGE_PAGE_SIZE);
        assert_eq!(l.ring_offset(3), l.rings_offset + 3 * l.ring_size);
        assert!(Layout::compute(4095, HUGE_PAGE_SIZE).is_err());
        assert!(Layout::compute(1, HUGE_PAGE_SIZE).is_err());
        assert!(Layout::compute(MAX_RING_CAPACITY * 2, HUGE_PAGE_SIZE).is_err());
        assert!(Layout::compute(4096, 3000).is_err());
    }

    #[test]
    fn claim_words_round_trip() {
        let w = claim_word(4_194_303, 0x1_2345_6789);
        assert_eq!(split_claim(w), (4_194_303, 0x2345_6789));
        assert_ne!(claim_word(1, 0), 0);
    }
}
