//! `supervisor nic status | bind | unbind`, and the checked [`Plan`] a
//! run's bind step shares with `nic bind`: the driver chosen, the
//! refusal of a function the kernel still uses, the module to load.

use std::fmt;

use contract::PciAddress;
use serde::Serialize;

use super::bind::{self, Restored};
use super::device::PciDevice;
use super::driver::Driver;
use super::links::{Iproute2, LinkView};
use super::module::{self, Availability};
use super::record::Records;
use super::sysfs::{NoIommuMode, Sysfs};
use super::{Asker, Binding, NicError};

const IPROUTE2: Iproute2 = Iproute2;

/// Where the NIC commands act: a sysfs tree, a view of its interfaces,
/// and the `nic bind` record.
pub struct Host<'a> {
    /// The sysfs tree.
    pub sysfs: Sysfs,
    /// Who describes the interfaces.
    pub links: &'a dyn LinkView,
    /// The record of `nic bind`.
    pub records: Records,
}

impl Host<'static> {
    /// This host.
    #[must_use]
    pub fn real() -> Self {
        Self {
            sysfs: Sysfs::host(),
            links: &IPROUTE2,
            records: Records::host(),
        }
    }
}

/// A binding a run holds (from its run state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunHold {
    /// The run's testbed.
    pub testbed: String,
    /// Whether its supervisor still runs.
    pub alive: bool,
    /// What it bound.
    pub binding: Binding,
}

fn held_by_run(holds: &[RunHold], addr: &PciAddress) -> Result<(), NicError> {
    match holds.iter().find(|h| &h.binding.address == addr) {
        Some(h) => Err(NicError::HeldByRun {
            address: addr.clone(),
            testbed: h.testbed.clone(),
            alive: h.alive,
        }),
        None => Ok(()),
    }
}

/// A bind checked before anything changes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The function as it is now.
    pub device: PciDevice,
    /// The driver it is to be bound to.
    pub driver: Driver,
    /// Whether the driver's module must be loaded first.
    pub load_module: bool,
}

impl Plan {
    /// Checks binding `addr` to `driver` (default: [`Driver::default_for`]
    /// the host): the function is a NIC, vfio-pci has an IOMMU, and no
    /// interface of the function is up with an address or carries a route
    /// (unless `force`).
    ///
    /// # Errors
    /// What makes the bind impossible or unsafe.
    pub fn check(
        host: &Host<'_>,
        addr: &PciAddress,
        driver: Option<Driver>,
        force: bool,
        asker: Asker,
    ) -> Result<Self, NicError> {
        let device = PciDevice::read(&host.sysfs, host.links, addr)?;
        let driver = driver.unwrap_or_else(|| Driver::default_for(&host.sysfs));
        if driver == Driver::VfioPci && host.sysfs.noiommu_mode() != NoIommuMode::On {
            if !host.sysfs.iommu_present() {
                return Err(NicError::NeedsIommu(addr.clone()));
            }
            if device.iommu_group.is_none() {
                return Err(NicError::NoIommuGroup(addr.clone()));
            }
        }
        let reasons = device.in_use();
        if !force && !reasons.is_empty() {
            return Err(NicError::InUse {
                address: addr.clone(),
                interfaces: device
                    .interface_names()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                reasons,
                asker,
            });
        }
        Ok(Self {
            load_module: !host.sysfs.driver_registered(driver.name()),
            device,
            driver,
        })
    }

    /// The record of this bind, written before it is made.
    #[must_use]
    pub fn binding(&self) -> Binding {
        Binding {
            address: self.device.address.clone(),
            driver: self.driver,
            original_driver: self.device.driver.clone(),
            interfaces: self
                .device
                .interface_names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            original_override: self.device.driver_override.clone(),
            loaded_module: self.load_module,
        }
    }

    /// The step `modules`: loads the driver's module if it is not.
    ///
    /// # Errors
    /// [`NicError::Module`] with modprobe's own error.
    pub fn load_module(&self) -> Result<(), NicError> {
        if !self.load_module {
            return Ok(());
        }
        module::load(self.driver.module(), self.driver.install_hint()).map_err(|source| {
            NicError::Module {
                module: self.driver.module(),
                address: self.device.address.clone(),
                source: Box::new(source),
            }
        })
    }

    /// The step `bind`.
    ///
    /// # Errors
    /// As [`bind::bind`].
    pub fn bind(&self, sysfs: &Sysfs) -> Result<(), NicError> {
        bind::bind(sysfs, &self.device.address, self.driver)
    }
}

/// The function `target` names for `nic unbind`: a PCI address (even one
/// gone from the bus: its record is still there), an interface it had
/// when `nic bind` or a run took it, or an interface it has now.
///
/// # Errors
/// None of these.
pub fn resolve_bound(
    host: &Host<'_>,
    target: &str,
    holds: &[RunHold],
) -> Result<PciAddress, NicError> {
    if let Ok(addr) = target.parse() {
        return Ok(addr);
    }
    let records = host.records.read()?;
    let recorded = records
        .iter()
        .chain(holds.iter().map(|h| &h.binding))
        .find(|b| b.interfaces.iter().any(|i| i == target));
    match recorded {
        Some(b) => Ok(b.address.clone()),
        None => super::device::resolve(&host.sysfs, target),
    }
}

/// Gives `binding` back, then unloads the module it loaded once the
/// driver drives nothing else; one line per thing done.
///
/// # Errors
/// Giving back failed (the module is left alone then).
pub fn give_back(sysfs: &Sysfs, binding: &Binding) -> Result<Vec<String>, NicError> {
    let original = binding.original_driver.as_deref().unwrap_or("no driver");
    let mut done = vec![match bind::restore(sysfs, binding)? {
        Restored::GaveBack => format!("gave {} back to {original}", binding.address),
        Restored::AlreadyThere => format!("{} is on {original}, as before", binding.address),
    }];
    // A bind that failed before the module loaded has nothing to unload.
    if binding.loaded_module && sysfs.driver_registered(binding.driver.name()) {
        let module = binding.driver.module();
        let others = sysfs.driven_by(binding.driver.name());
        if others.is_empty() {
            match module::unload(module) {
                Ok(()) => done.push(format!("unloaded module {module}, which the bind loaded")),
                Err(e) => done.push(format!("left module {module} loaded: {e}")),
            }
        } else {
            let others: Vec<&str> = others.iter().map(PciAddress::as_str).collect();
            done.push(format!(
                "left module {module} loaded: it still drives {}",
                others.join(", ")
            ));
        }
    }
    Ok(done)
}

/// `supervisor nic bind`: checks, records, loads the module, binds. A
/// function already on the driver (bound by hand) is left as it is, and
/// not recorded: its original driver is not known.
///
/// # Errors
/// Refusals and failed steps; after a failed step the function is given
/// back and the record dropped.
pub fn bind(
    host: &Host<'_>,
    addr: &PciAddress,
    driver: Option<Driver>,
    force: bool,
    holds: &[RunHold],
) -> Result<Option<Binding>, NicError> {
    held_by_run(holds, addr)?;
    let mut record = host.records.lock()?;
    if let Some(b) = record.find(addr) {
        return Err(NicError::AlreadyBound {
            address: addr.clone(),
            driver: b.driver,
            original: b.original_driver.clone(),
        });
    }
    let plan = Plan::check(host, addr, driver, force, Asker::NicBind)?;
    if plan.device.driver.as_deref() == Some(plan.driver.name()) {
        return Ok(None);
    }
    let binding = plan.binding();
    record.bindings.push(binding.clone());
    record.save()?;
    match plan.load_module().and_then(|()| plan.bind(&host.sysfs)) {
        Ok(()) => Ok(Some(binding)),
        Err(e) => {
            // Nothing stays half-bound, and nothing stays on record that
            // is not so. If giving back fails too, the record stays for
            // `nic unbind`.
            if give_back(&host.sysfs, &binding).is_ok() {
                record.remove(addr);
                let _ = record.save();
            }
            Err(e)
        }
    }
}

/// What `nic unbind` did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct UnbindReport {
    /// One line per thing done.
    pub done: Vec<String>,
    /// Bindings that could not be given back (they stay on record).
    pub problems: Vec<String>,
}

/// `supervisor nic unbind <bdf|iface>` (`Some`) or `--all` (`None`):
/// gives recorded bindings back and drops them from the record.
///
/// # Errors
/// One function named that nothing recorded, or that a run holds; the
/// record cannot be had.
pub fn unbind(
    host: &Host<'_>,
    addr: Option<&PciAddress>,
    holds: &[RunHold],
) -> Result<UnbindReport, NicError> {
    let mut record = host.records.lock()?;
    let chosen: Vec<Binding> = match addr {
        Some(addr) => {
            held_by_run(holds, addr)?;
            let Some(b) = record.find(addr) else {
                return Err(NicError::NotRecorded {
                    address: addr.clone(),
                    now: host.sysfs.driver(addr),
                });
            };
            vec![b.clone()]
        }
        None => record.bindings.clone(),
    };
    let mut report = UnbindReport::default();
    for binding in &chosen {
        match give_back(&host.sysfs, binding) {
            Ok(lines) => {
                report.done.extend(lines);
                record.remove(&binding.address);
            }
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    record.save()?;
    Ok(report)
}

/// Who bound a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Holder {
    /// `supervisor nic bind`.
    NicBind {
        /// Its driver before.
        original_driver: Option<String>,
    },
    /// A run of a testbed.
    Run {
        /// The testbed.
        testbed: String,
        /// Whether its supervisor still runs.
        alive: bool,
        /// Its driver before.
        original_driver: Option<String>,
    },
}

/// One function in `nic status`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceStatus {
    /// The function.
    #[serde(flatten)]
    pub device: PciDevice,
    /// Who bound it, if bypasslab did.
    pub bound_by: Option<Holder>,
    /// Why `nic bind` refuses it without `--force` (empty: it does not).
    pub in_use: Vec<String>,
}

/// One driver in `nic status`.
#[derive(Debug, Clone, Serialize)]
pub struct DriverStatus {
    /// The driver.
    pub driver: Driver,
    /// Registered in sysfs (its module loaded, or built in).
    pub registered: bool,
    /// Its module.
    pub module: Availability,
}

/// `supervisor nic status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Every network PCI function.
    pub devices: Vec<DeviceStatus>,
    /// Whether an IOMMU is active.
    pub iommu: bool,
    /// The driver `nic bind` and runs use when none is named.
    pub default_driver: Driver,
    /// The userspace I/O drivers.
    pub drivers: Vec<DriverStatus>,
    /// `nic bind` records of functions that are gone from the bus.
    pub missing: Vec<Binding>,
}

/// `supervisor nic status`.
///
/// # Errors
/// The PCI bus or the record cannot be read.
pub fn status(host: &Host<'_>, holds: &[RunHold]) -> Result<Status, NicError> {
    let records = host.records.read()?;
    let devices: Vec<DeviceStatus> = PciDevice::all(&host.sysfs, host.links)?
        .into_iter()
        .map(|device| {
            let addr = &device.address;
            let by_run = holds.iter().find(|h| &h.binding.address == addr);
            let bound_by = match (records.iter().find(|b| &b.address == addr), by_run) {
                (_, Some(h)) => Some(Holder::Run {
                    testbed: h.testbed.clone(),
                    alive: h.alive,
                    original_driver: h.binding.original_driver.clone(),
                }),
                (Some(b), None) => Some(Holder::NicBind {
                    original_driver: b.original_driver.clone(),
                }),
                (None, None) => None,
            };
            DeviceStatus {
                in_use: device.in_use(),
                bound_by,
                device,
            }
        })
        .collect();
    let missing = records
        .into_iter()
        .filter(|b| !devices.iter().any(|d| d.device.address == b.address))
        .collect();
    let drivers = Driver::ALL
        .into_iter()
        .map(|d| DriverStatus {
            driver: d,
            registered: host.sysfs.driver_registered(d.name()),
            module: module::availability(&host.sysfs, d.module()),
        })
        .collect();
    Ok(Status {
        devices,
        iommu: host.sysfs.iommu_present(),
        default_driver: Driver::default_for(&host.sysfs),
        drivers,
        missing,
    })
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.devices.is_empty() {
            writeln!(f, "no network PCI devices")?;
        }
        for d in &self.devices {
            let dev = &d.device;
            writeln!(
                f,
                "{}  {}:{}  driver {}{}",
                dev.address,
                dev.vendor.trim_start_matches("0x"),
                dev.device.trim_start_matches("0x"),
                dev.driver.as_deref().unwrap_or("none"),
                dev.iommu_group
                    .as_ref()
                    .map(|g| format!(", IOMMU group {g}"))
                    .unwrap_or_default()
            )?;
            for i in &dev.interfaces {
                let s = &i.state;
                writeln!(
                    f,
                    "    {} {}{}{}",
                    s.name,
                    if s.up { "up" } else { "down" },
                    if s.addresses.is_empty() {
                        String::new()
                    } else {
                        format!(", address {}", s.addresses.join(", "))
                    },
                    if s.routes.is_empty() {
                        String::new()
                    } else {
                        format!(", routes: {}", s.routes.join("; "))
                    }
                )?;
            }
            match &d.bound_by {
                Some(Holder::NicBind { original_driver }) => writeln!(
                    f,
                    "    bound by `supervisor nic bind` (driver before: {}); `supervisor nic unbind {}` gives it back",
                    original_driver.as_deref().unwrap_or("none"),
                    dev.address
                )?,
                Some(Holder::Run {
                    testbed,
                    alive,
                    original_driver,
                }) => writeln!(
                    f,
                    "    bound by the {} run of testbed `{testbed}` (driver before: {}); `supervisor stop` gives it back",
                    if *alive { "running" } else { "crashed" },
                    original_driver.as_deref().unwrap_or("none")
                )?,
                None => {}
            }
            if !d.in_use.is_empty() {
                writeln!(
                    f,
                    "    in use ({}): `nic bind` refuses it without --force",
                    d.in_use.join("; ")
                )?;
            }
        }
        for b in &self.missing {
            writeln!(
                f,
                "{}  recorded by `supervisor nic bind` but gone from the bus",
                b.address
            )?;
        }
        let drivers: Vec<String> = self
            .drivers
            .iter()
            .map(|d| {
                format!(
                    "{} {}",
                    d.driver,
                    if d.registered {
                        "loaded".to_owned()
                    } else {
                        d.module.describe()
                    }
                )
            })
            .collect();
        writeln!(
            f,
            "IOMMU {}; default driver {}; {}",
            if self.iommu { "present" } else { "absent" },
            self.default_driver,
            drivers.join(", ")
        )
    }
}
