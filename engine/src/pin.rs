//! Pinning the serving thread to its configured core.

use crate::EngineError;

/// Pins the calling thread to `core`.
///
/// # Errors
/// [`EngineError::CoreUnavailable`] when the core is not among those this
/// process may use, [`EngineError::PinFailed`] when the scheduler refuses.
pub fn pin_current_thread(core: usize) -> Result<(), EngineError> {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let Some(id) = ids.iter().copied().find(|c| c.id == core) else {
        return Err(EngineError::CoreUnavailable {
            core,
            available: ids.iter().map(|c| c.id).collect(),
        });
    };
    if core_affinity::set_for_current(id) {
        Ok(())
    } else {
        Err(EngineError::PinFailed { core })
    }
}
