//! Publishing the engine's counters into its slot of the shared-memory
//! segment.
//!
//! Placeholder with the final API until the segment (`shm_layout::Segment`)
//! is available: claiming a slot fails with a clear error, so `--shm` is
//! refused rather than silently ignored.

use std::path::Path;

use shm_layout::Counters;

use crate::context::StatsSink;
use crate::EngineError;

/// State of the engine's slot, as the segment will record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerState {
    /// Claimed, setting up.
    Starting,
    /// Accepting connections.
    Running,
    /// Exited cleanly.
    Finished,
    /// Exited on an error.
    Failed,
}

/// The engine's claimed slot.
#[derive(Clone)]
pub struct ShmSlot;

impl ShmSlot {
    /// Opens the segment at `path` and claims the engine slot.
    ///
    /// # Errors
    /// Always, until the segment API is available.
    pub fn claim(path: &Path, _kind: &str, _core: Option<usize>) -> Result<Self, EngineError> {
        Err(EngineError::Io {
            step: format!("open segment {}", path.display()),
            source: std::io::Error::other("shared-memory publishing is not built in yet"),
        })
    }

    /// Moves the slot to `state`.
    pub fn set_state(&self, _state: ProducerState) {}

    /// A sink for the serving loop.
    #[must_use]
    pub fn sink(&self) -> ShmSink {
        ShmSink
    }
}

/// [`StatsSink`] writing into the engine slot.
pub struct ShmSink;

impl StatsSink for ShmSink {
    fn publish(&mut self, _counters: &Counters) {}
}
