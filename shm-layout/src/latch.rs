//! A seqlock with two copies (a "latch"): torn-free snapshots of a group of
//! words written by one process and read by any number of others.
//!
//! The writer never waits. A reader never sees a mix of two updates: it reads
//! the copy the writer is *not* touching and checks afterwards that the
//! sequence did not move. With two copies a reader also gets a consistent
//! value when the writer died in the middle of an update (a plain seqlock
//! would stay odd forever); it then reads the last complete value.
//!
//! Encoding of `seq`: even, readers use copy 0; odd, readers use copy 1.
//! An update is `seq |= 1` (odd: the writer rewrites copy 0), then
//! `seq += 1` (even: the writer rewrites copy 1), so `seq` grows by 2 per
//! update. The copy a reader picks is never the one being written, and any
//! write to a copy comes after a change of `seq` that sends readers away
//! from it; a reader that raced it sees `seq` change and retries.

use crate::sync::{AtomicU64, Ordering};

/// `N` words published as one value. All-zero memory is a valid latch
/// holding all-zero words.
#[repr(C)]
pub(crate) struct Latch<const N: usize> {
    /// Half-update count; see the module docs for the encoding.
    seq: AtomicU64,
    /// Two copies of the value; `copies[seq & 1]` is stable for readers.
    copies: [[AtomicU64; N]; 2],
}

impl<const N: usize> Latch<N> {
    /// A latch holding zeros (tests and the loom model; the segment gets its
    /// latches from zeroed file memory).
    #[cfg(any(test, loom))]
    pub(crate) fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            copies: core::array::from_fn(|_| core::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// Publishes `words`. Single writer: the caller holds the slot's
    /// producer claim. Wait-free: 2N plain stores and two atomic read-modify-writes.
    pub(crate) fn write(&self, words: &[u64; N]) {
        // Read-modify-writes rather than load + store: the same cost on x86
        // for an update published on a timer, and loom's partial-order
        // reduction only sees every interleaving of a writer that never
        // loads `seq` before storing it.
        //
        // First make `seq` odd, sending readers to copy 1. `fetch_or` leaves
        // an odd value alone: that is a previous writer that died while
        // rewriting copy 0, readers are already on copy 1, and bumping to
        // even would expose its half-written copy 0.
        // SYNC: Release publishes the previous rewrite of copy 1; pairs with
        // the Acquire load of `seq` in `try_read`.
        self.seq.fetch_or(1, Ordering::Release);
        self.store_copy(0, words);
        // Even: readers go to the fresh copy 0 while copy 1 is rewritten.
        // SYNC: Release publishes copy 0; pairs with the Acquire load of
        // `seq` in `try_read`.
        self.seq.fetch_add(1, Ordering::Release);
        self.store_copy(1, words);
    }

    fn store_copy(&self, copy: usize, words: &[u64; N]) {
        for (cell, &w) in self.copies[copy].iter().zip(words) {
            // SYNC: Release keeps the `seq` update before this data store;
            // pairs with the Acquire data loads in `try_read`, so a reader
            // that sees this value also sees the new `seq` and retries.
            cell.store(w, Ordering::Release);
        }
    }

    /// One attempt at a consistent read; `None` when an update overlapped.
    pub(crate) fn try_read(&self) -> Option<[u64; N]> {
        // SYNC: pairs with the Release stores of `seq` in `write`: the copy
        // chosen is complete.
        let s1 = self.seq.load(Ordering::Acquire);
        let copy = &self.copies[usize::from(s1 & 1 == 1)];
        // SYNC: Acquire loads pair with the Release data stores in `write` and
        // keep the second `seq` load after them.
        let words = core::array::from_fn(|i| copy[i].load(Ordering::Acquire));
        let s2 = self.seq.load(Ordering::Relaxed);
        (s1 == s2).then_some(words)
    }

    /// Reads with up to `attempts` tries.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn read(&self, attempts: usize) -> Option<[u64; N]> {
        for _ in 0..attempts {
            if let Some(words) = self.try_read() {
                return Some(words);
            }
            crate::sync::spin_hint();
        }
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn write_then_read() {
        let latch = Latch::<3>::new();
        assert_eq!(latch.try_read(), Some([0, 0, 0]));
        latch.write(&[1, 2, 3]);
        assert_eq!(latch.try_read(), Some([1, 2, 3]));
        latch.write(&[4, 5, 6]);
        assert_eq!(latch.read(1), Some([4, 5, 6]));
    }

    #[test]
    fn threads_never_see_mixed_words() {
        let latch = std::sync::Arc::new(Latch::<8>::new());
        let writer = {
            let latch = latch.clone();
            std::thread::spawn(move || {
                for v in 1..=200_000u64 {
                    latch.write(&[v; 8]);
                }
            })
        };
        let mut last = 0;
        let mut reads = 0u64;
        while !writer.is_finished() || reads == 0 {
            if let Some(w) = latch.try_read() {
                assert!(w.iter().all(|&x| x == w[0]), "torn read {w:?}");
                assert!(w[0] >= last, "went backwards");
                last = w[0];
                reads += 1;
            }
        }
        writer.join().unwrap();
        assert_eq!(latch.read(10), Some([200_000; 8]));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Every read that succeeds returns one whole value, never a mix, while
    /// the writer publishes two updates.
    #[test]
    fn loom_latch_no_torn_reads() {
        // Bound 5 runs in seconds; unbounded (exhaustive) takes about 70 s
        // and also passes.
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(5);
        model.check(|| {
            let latch = Arc::new(Latch::<2>::new());
            let writer = {
                let latch = latch.clone();
                loom::thread::spawn(move || {
                    latch.write(&[1, 1]);
                    latch.write(&[2, 2]);
                })
            };
            let mut last = 0;
            for _ in 0..2 {
                if let Some([a, b]) = latch.try_read() {
                    assert_eq!(a, b, "torn read");
                    assert!(a >= last, "read went backwards");
                    last = a;
                }
            }
            writer.join().unwrap();
            assert_eq!(latch.try_read(), Some([2, 2]));
        });
    }

    /// A writer that stops half-way (died) leaves a readable, whole value,
    /// and the next writer (a new claim) never exposes the half-written
    /// copy while it takes over.
    #[test]
    fn loom_latch_dead_writer_then_new_writer() {
        loom::model(|| {
            let latch = Arc::new(Latch::<2>::new());
            latch.write(&[7, 7]);
            // A writer that made seq odd, rewrote one word of copy 0, died.
            let s = latch.seq.load(Ordering::Relaxed);
            latch.seq.store(s + 1, Ordering::Release);
            latch.copies[0][0].store(9, Ordering::Release);
            assert_eq!(latch.try_read(), Some([7, 7]));
            let writer = {
                let latch = latch.clone();
                loom::thread::spawn(move || latch.write(&[8, 8]))
            };
            for _ in 0..2 {
                if let Some(w) = latch.try_read() {
                    assert!(w == [7, 7] || w == [8, 8], "torn read {w:?}");
                }
            }
            writer.join().unwrap();
            assert_eq!(latch.try_read(), Some([8, 8]));
        });
    }
}
