//! A run's steps on a PCI NIC (`--pmd pci:<bdf>`), after the hugepages and
//! their hugetlbfs mount: the driver's module (step `modules`), then the
//! bind (step `bind`), each recorded in the run state before it is made,
//! and their undoing in reverse at teardown (the function back to its
//! original driver, then the module the run loaded, once it drives
//! nothing else).
//!
//! A function that `supervisor nic bind` bound is adopted: its record
//! moves from the host-level record into the run's state, and the run
//! gives it back at stop like one it bound itself. A function already on a
//! userspace I/O driver with no record (bound by hand) is used as it is,
//! and left so.

use std::fs;

use contract::PciAddress;

use super::report::TeardownReport;
use super::state::{RunState, StateError};
use crate::nic::device::PciDevice;
use crate::nic::ops::{self, Host, Plan, RunHold};
use crate::nic::{Asker, Binding, Driver, NicError};
use crate::state::STATE_ROOT;

/// Why a run's PCI steps stopped.
#[derive(Debug, thiserror::Error)]
pub enum PciStepError {
    /// A NIC step failed or was refused.
    #[error(transparent)]
    Nic(#[from] NicError),
    /// Recording a step failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Every run on record (of any testbed) that holds a PCI function.
#[must_use]
pub fn holds() -> Vec<RunHold> {
    let mut found = Vec::new();
    for entry in fs::read_dir(STATE_ROOT).into_iter().flatten().flatten() {
        let Some(testbed) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(state) = RunState::load(&testbed) {
            if let Some(binding) = state.pci_device {
                found.push(RunHold {
                    testbed,
                    alive: state.supervisor.is_alive(),
                    binding,
                });
            }
        }
    }
    found
}

/// Checks, before `start` creates anything, that the run of `testbed` can
/// have `addr`: no other run holds it, and it is bound already (by `nic
/// bind`, or by hand) or free to bind.
///
/// # Errors
/// What stands in the way, with the fix.
pub fn preflight(addr: &PciAddress, testbed: &str) -> Result<(), PciStepError> {
    let host = Host::real();
    let others: Vec<RunHold> = holds()
        .into_iter()
        .filter(|h| h.testbed != testbed)
        .collect();
    if let Some(h) = others.iter().find(|h| &h.binding.address == addr) {
        return Err(NicError::HeldByRun {
            address: addr.clone(),
            testbed: h.testbed.clone(),
            alive: h.alive,
        }
        .into());
    }
    if host.records.read()?.iter().any(|b| &b.address == addr) {
        return Ok(());
    }
    let device = PciDevice::read(&host.sysfs, host.links, addr)?;
    if device
        .driver
        .as_deref()
        .and_then(Driver::from_name)
        .is_some()
    {
        return Ok(());
    }
    Plan::check(&host, addr, None, false, Asker::Run)?;
    Ok(())
}

/// The steps `modules` and `bind` for `addr`, each recorded in `state`
/// (and saved) before it is made.
///
/// # Errors
/// The step that failed, naming it and the fix.
pub fn prepare(
    addr: &PciAddress,
    state: &mut RunState,
    say: &mut dyn FnMut(&str),
) -> Result<(), PciStepError> {
    let host = Host::real();
    // Held across the steps: a `nic bind` of the same function waits.
    let mut record = host.records.lock()?;
    if let Some(adopted) = record.find(addr).cloned() {
        state.pci_device = Some(adopted.clone());
        state.save()?;
        record.remove(addr);
        record.save()?;
        say(&format!(
            "adopted the binding of {addr} to {} made by `supervisor nic bind`: stop gives it back to {}",
            adopted.driver,
            adopted.original_driver.as_deref().unwrap_or("no driver")
        ));
        // A `nic bind` killed half-way recorded it before binding it.
        if host.sysfs.driver(addr).as_deref() != Some(adopted.driver.name()) {
            let plan = Plan::check(&host, addr, Some(adopted.driver), false, Asker::Run)?;
            if plan.load_module {
                if let Some(b) = state.pci_device.as_mut() {
                    b.loaded_module = true;
                }
                state.save()?;
            }
            run_steps(&plan, &host, say)?;
        }
        return Ok(());
    }
    let device = PciDevice::read(&host.sysfs, host.links, addr)?;
    if let Some(driver) = device.driver.as_deref().and_then(Driver::from_name) {
        state.pci_device = Some(Binding {
            address: addr.clone(),
            driver,
            original_driver: Some(driver.name().to_owned()),
            interfaces: Vec::new(),
            original_override: device.driver_override.clone(),
            loaded_module: false,
        });
        state.save()?;
        say(&format!(
            "{addr} is on {driver} already (not bound by bypasslab): used as it is, and left so"
        ));
        return Ok(());
    }
    let plan = Plan::check(&host, addr, None, false, Asker::Run)?;
    state.pci_device = Some(plan.binding());
    state.save()?;
    Ok(run_steps(&plan, &host, say)?)
}

/// The steps `modules` and `bind` of a recorded plan.
fn run_steps(plan: &Plan, host: &Host<'_>, say: &mut dyn FnMut(&str)) -> Result<(), NicError> {
    let addr = &plan.device.address;
    if plan.load_module {
        plan.load_module()?;
        say(&format!("step modules: loaded {}", plan.driver.module()));
    } else {
        say(&format!(
            "step modules: {} is loaded already",
            plan.driver.module()
        ));
    }
    plan.bind(&host.sysfs)?;
    say(&format!(
        "step bind: {addr} bound to {} (its driver before: {})",
        plan.driver,
        plan.device.driver.as_deref().unwrap_or("none")
    ));
    Ok(())
}

/// Undoes [`prepare`]: the function back to its original driver, then the
/// module the run loaded, once that driver drives nothing else.
pub fn teardown(state: &RunState, report: &mut TeardownReport) {
    let Some(binding) = &state.pci_device else {
        return;
    };
    let host = Host::real();
    // Serialised with binds; giving back without the lock beats keeping
    // the function.
    let lock = host.records.lock();
    if let Err(e) = &lock {
        report.problems.push(e.to_string());
    }
    match ops::give_back(&host.sysfs, binding) {
        Ok(lines) => report.done.extend(lines),
        Err(e) => report.problems.push(e.to_string()),
    }
}
