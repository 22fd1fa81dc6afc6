//! Binding a PCI function to a userspace I/O driver and giving it back,
//! as `dpdk-devbind.py` does: `driver_override` names the one driver that
//! may take the function, `unbind` detaches it from the kernel's, and
//! `drivers_probe` lets the override's driver take it (no `new_id`: the
//! override matches any device). Giving back clears the override, detaches
//! the function and binds it to the driver on record.

use std::time::Duration;

use contract::PciAddress;

use super::sysfs::Sysfs;
use super::{Binding, Driver, NicError};
use crate::host::wait::{self, Check};

/// How long the kernel gets to finish a probe: it is synchronous, but a
/// driver may defer it (EPROBE_DEFER) and retry from a work queue.
const SETTLE: Duration = Duration::from_secs(5);

/// Waits (bounded) until `addr` is on `driver` (`None`: on no driver);
/// returns what it is on when the time is up.
fn settle(sysfs: &Sysfs, addr: &PciAddress, driver: Option<&str>) -> Result<(), Option<String>> {
    wait::until(SETTLE, Duration::from_millis(10), || {
        if sysfs.driver(addr).as_deref() == driver {
            Check::<(), ()>::Ready(())
        } else {
            Check::Pending
        }
    })
    .map_err(|_| sysfs.driver(addr))
}

/// Hands `addr` to `driver` (its module must be loaded). A function
/// already on it is left alone.
///
/// # Errors
/// The kernel refused a write ([`NicError::Bind`]) or the driver did not
/// take the function ([`NicError::DidNotTake`]).
pub fn bind(sysfs: &Sysfs, addr: &PciAddress, driver: Driver) -> Result<(), NicError> {
    let name = driver.name();
    if sysfs.driver(addr).as_deref() == Some(name) {
        return Ok(());
    }
    let failed = |source| NicError::Bind {
        address: addr.clone(),
        driver,
        source,
    };
    sysfs.set_override(addr, Some(name)).map_err(failed)?;
    sysfs.unbind(addr).map_err(failed)?;
    sysfs.probe(addr).map_err(failed)?;
    settle(sysfs, addr, Some(name)).map_err(|now| NicError::DidNotTake {
        address: addr.clone(),
        driver,
        now,
    })
}

/// What giving back did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The function went back to its original driver (or to none).
    GaveBack,
    /// It was on its original driver already (a bind that never
    /// happened, or one undone before).
    AlreadyThere,
}

/// Gives the function of `binding` back to its original driver and
/// override.
///
/// # Errors
/// The function is gone, the kernel refused a write, or the original
/// driver did not take the function.
pub fn restore(sysfs: &Sysfs, binding: &Binding) -> Result<Restored, NicError> {
    let addr = &binding.address;
    if !sysfs.exists(addr) {
        return Err(NicError::NoDevice(addr.clone()));
    }
    let wanted = binding.original_driver.as_deref();
    let failed = |source| NicError::Restore {
        address: addr.clone(),
        wanted: binding.original_driver.clone(),
        source,
    };
    let outcome = if sysfs.driver(addr).as_deref() == wanted {
        Restored::AlreadyThere
    } else {
        // Cleared first, so nothing but the bind below can take it.
        sysfs.set_override(addr, None).map_err(failed)?;
        sysfs.unbind(addr).map_err(failed)?;
        if let Some(original) = wanted {
            sysfs.bind(addr, original).map_err(failed)?;
        }
        settle(sysfs, addr, wanted).map_err(|now| NicError::RestoreDidNotTake {
            address: addr.clone(),
            wanted: binding.original_driver.clone(),
            now,
        })?;
        Restored::GaveBack
    };
    // Also after a crash between writing the override and the probe.
    if sysfs.driver_override(addr) != binding.original_override {
        sysfs
            .set_override(addr, binding.original_override.as_deref())
            .map_err(failed)?;
    }
    Ok(outcome)
}
