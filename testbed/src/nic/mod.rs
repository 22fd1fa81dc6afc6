//! PCI NICs and the drivers that hand them to DPDK: what `dpdk-devbind.py`
//! does, in the supervisor, through sysfs (`driver_override`, `unbind`,
//! `drivers_probe`, `bind`), so no Debian `dpdk` package is needed.
//!
//! Bottom-up: [`sysfs`] holds every sysfs path (under a root a test can
//! fake); [`driver`] names the userspace I/O drivers; [`module`] loads and
//! unloads their modules; [`links`] asks iproute2 whether an interface is
//! in use; [`device`] is the view of one network PCI function; [`bind`]
//! binds a function and gives it back; [`record`] is the host-level record
//! of what `supervisor nic bind` bound; [`ops`] is `nic status`, `bind` and
//! `unbind`, and the checked plan a run's bind step shares with them.

pub mod bind;
pub mod device;
pub mod driver;
pub mod links;
pub mod module;
pub mod ops;
pub mod record;
pub mod sysfs;

use std::path::PathBuf;

use contract::PciAddress;

pub use driver::Driver;
pub use record::Binding;

use crate::host::command::CommandError;

/// What the fix for a refused bind is, by who asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// `supervisor nic bind`: it has `--force`.
    NicBind,
    /// A run's bind step (`start --pmd pci:`): it binds only what is free.
    Run,
}

/// A NIC step that failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    /// No PCI function at that address.
    #[error("PCI device {0} does not exist on this host (see `supervisor nic status`)")]
    NoDevice(PciAddress),
    /// Neither an address nor an interface of a PCI function.
    #[error("`{0}` is neither a PCI address (DDDD:BB:DD.F) nor a network interface of a PCI device on this host (see `supervisor nic status`)")]
    NoSuchTarget(String),
    /// Not a network controller.
    #[error("{address} is not a network controller (PCI class {class}); only NICs are bound")]
    NotNetwork {
        /// The function.
        address: PciAddress,
        /// Its class code.
        class: String,
    },
    /// sysfs could not be read.
    #[error("reading {}: {source}", path.display())]
    Sysfs {
        /// What was read.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// vfio-pci without an IOMMU.
    #[error("cannot bind {0} to vfio-pci: this host has no IOMMU (no IOMMU groups in sysfs) and vfio's unsafe no-IOMMU mode is not on (Debian's kernels are built without it); use --driver uio_pci_generic or igb_uio, or enable the IOMMU (intel_iommu=on or amd_iommu=on on the kernel command line)")]
    NeedsIommu(PciAddress),
    /// vfio-pci for a function outside every IOMMU group.
    #[error("cannot bind {0} to vfio-pci: the device is in no IOMMU group; use --driver uio_pci_generic or igb_uio")]
    NoIommuGroup(PciAddress),
    /// The function carries traffic of the kernel's.
    #[error("refusing to bind {address}: {}. Binding takes the interface away from the kernel, and whoever reaches this host through it; {}", reasons.join("; "), fix_for(*asker, interfaces))]
    InUse {
        /// The function.
        address: PciAddress,
        /// Its interfaces.
        interfaces: Vec<String>,
        /// Each address and route, by interface.
        reasons: Vec<String>,
        /// Who asked (decides the fix offered).
        asker: Asker,
    },
    /// The step `modules` failed: modprobe's own error.
    #[error("step `modules`: loading {module} for {address}: {source}")]
    Module {
        /// The module.
        module: &'static str,
        /// The function it was for.
        address: PciAddress,
        /// modprobe's failure, its stderr and the fix included (boxed:
        /// every NIC result would otherwise be as large).
        #[source]
        source: Box<CommandError>,
    },
    /// The step `bind` failed: the kernel refused a sysfs write.
    #[error(
        "step `bind`: binding {address} to {driver}: {source}; the kernel log (`dmesg`) says why"
    )]
    Bind {
        /// The function.
        address: PciAddress,
        /// The driver.
        driver: Driver,
        /// The write.
        #[source]
        source: sysfs::SysfsError,
    },
    /// The step `bind` ran, and another driver (or none) has the function.
    #[error("step `bind`: {address} is on {} instead of {driver} after the kernel's probe: the driver refused the device (see `dmesg`)", now.as_deref().unwrap_or("no driver"))]
    DidNotTake {
        /// The function.
        address: PciAddress,
        /// The driver asked for.
        driver: Driver,
        /// What has it now.
        now: Option<String>,
    },
    /// Giving a function back failed.
    #[error("giving {address} back to {}: {source}; the kernel log (`dmesg`) says why", wanted.as_deref().unwrap_or("no driver"))]
    Restore {
        /// The function.
        address: PciAddress,
        /// Its original driver.
        wanted: Option<String>,
        /// The write.
        #[source]
        source: sysfs::SysfsError,
    },
    /// Giving back ran, and another driver (or none) has the function.
    #[error("giving {address} back to {}: it is on {} after the bind", wanted.as_deref().unwrap_or("no driver"), now.as_deref().unwrap_or("no driver"))]
    RestoreDidNotTake {
        /// The function.
        address: PciAddress,
        /// Its original driver.
        wanted: Option<String>,
        /// What has it now.
        now: Option<String>,
    },
    /// `nic bind` of a function it already bound.
    #[error("{address} is already bound to {driver} by `supervisor nic bind` (its driver before: {}); `supervisor nic unbind {address}` first", original.as_deref().unwrap_or("none"))]
    AlreadyBound {
        /// The function.
        address: PciAddress,
        /// Its driver now.
        driver: Driver,
        /// Its original driver.
        original: Option<String>,
    },
    /// `nic unbind` of a function nothing recorded.
    #[error("nothing is recorded for {address} (on {}): bypasslab did not bind it, so it does not know the driver to give it back to", now.as_deref().unwrap_or("no driver"))]
    NotRecorded {
        /// The function.
        address: PciAddress,
        /// Its driver now.
        now: Option<String>,
    },
    /// A run holds the function.
    #[error("{address} belongs to the {} run of testbed `{testbed}`: {}", if *alive { "running" } else { "crashed" }, if *alive { "`supervisor stop` ends the run and gives it back" } else { "`supervisor stop` (with that testbed's config) removes the run's leftovers and gives it back" })]
    HeldByRun {
        /// The function.
        address: PciAddress,
        /// The run's testbed.
        testbed: String,
        /// Whether its supervisor still runs.
        alive: bool,
    },
    /// The host-level record cannot be read or written.
    #[error("the NIC record {}: {source}", path.display())]
    Record {
        /// The file (or its lock).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn fix_for(asker: Asker, interfaces: &[String]) -> String {
    let flush: Vec<String> = interfaces
        .iter()
        .map(|i| format!("ip addr flush dev {i}; ip link set dev {i} down"))
        .collect();
    let flush = flush.join("; ");
    match asker {
        Asker::NicBind => format!(
            "take its addresses and routes away first (`{flush}`), or pass --force if nothing depends on it"
        ),
        Asker::Run => format!(
            "take its addresses and routes away first (`{flush}`), or bind it with `supervisor nic bind --force` before `start`"
        ),
    }
}

impl NicError {
    /// Whether the command line named something that is not there (exit
    /// code 2), rather than a step failing or being refused (1).
    #[must_use]
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::NoDevice(_) | Self::NoSuchTarget(_) | Self::NotNetwork { .. }
        )
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
