//! A seqlock with two copies (a "latch"): torn-free snapshots of a group of
//! words written by one process and read by any number of others.
//!
//! The writer never waits. A reader never sees a mix of two updates: it reads
//! the copy the writer is *not* touching and checks afterwards that the
//! sequence did not move. With two copies a reader also gets a consistent
//! value when the writer died in the middle of an update (a plain seqlock
//! would stay odd forever); it then reads the last complete value.
//!
//! Encoding of `seq`: the number of half-updates since the slot was zeroed.
//! Even: readers use copy 0; odd: readers use copy 1. An update is
//! `seq += 1` (odd, writer rewrites copy 0), then `seq += 1` (even, writer
//! rewrites copy 1). So the copy a reader picks is never the one being
//! written, and any write to that copy bumps `seq` first.

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
    /// producer claim. Wait-free: 2N plain stores and two atomic adds.
    pub(crate) fn write(&self, words: &[u64; N]) {
        // Read-modify-writes rather than load + store: the same cost on
        // x86 for an update published on a timer, and loom's partial-order
        // reduction only sees every interleaving of a writer that never
        // loads `seq` before storing it.
        // SYNC: every Release bump publishes the previous rewrite of the copy
        // readers are sent to by the new value; pairs with the Acquire load
        // of `seq` in `try_read`.
        let mut seq = self.seq.fetch_add(1, Ordering::Release) + 1;
        if seq & 1 == 0 {
            // A previous writer died half-way: copy 0 may be partial and
            // readers are on copy 1. Go to the next odd value to keep them
            // there while copy 0 is rewritten.
            seq = self.seq.fetch_add(1, Ordering::Release) + 1;
        }
        for half in 0..2 {
            if half == 1 {
                seq = self.seq.fetch_add(1, Ordering::Release) + 1;
            }
            // The copy readers of `seq` do not use; bumping `seq` first is
            // what lets a reader that was reading it notice.
            let target = usize::from(seq & 1 == 0);
            debug_assert_eq!(target, half);
            for (cell, &w) in self.copies[target].iter().zip(words) {
                // SYNC: Release keeps the `seq` bump above before this data
                // store; pairs with the Acquire data loads in `try_read`, so a
                // reader that sees this value also sees the new `seq`.
                cell.store(w, Ordering::Release);
            }
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

    /// A writer that stops half-way (died) leaves a readable, whole value.
    #[test]
    fn loom_latch_dead_writer_leaves_whole_value() {
        loom::model(|| {
            let latch = Arc::new(Latch::<2>::new());
            latch.write(&[7, 7]);
            // Simulate a writer that bumped seq and rewrote one word, then died.
            let s = latch.seq.load(Ordering::Relaxed);
            latch.seq.store(s + 1, Ordering::Release);
            latch.copies[0][0].store(9, Ordering::Release);
            let reader = {
                let latch = latch.clone();
                loom::thread::spawn(move || latch.try_read())
            };
            assert_eq!(reader.join().unwrap(), Some([7, 7]));
        });
    }
}
