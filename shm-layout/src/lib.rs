//! Placeholder while the segment is written: see the shm-layout issue.
mod counters;
pub use counters::{Counters, COUNTER_WORDS};
