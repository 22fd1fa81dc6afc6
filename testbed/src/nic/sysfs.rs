//! Every sysfs path the NIC code reads or writes, under one root: `/sys`
//! on a host, a directory of files in the unit tests. Nothing else in the
//! testbed spells these paths.
//!
//! ```text
//! <root>/bus/pci/devices/<bdf>/        class vendor device driver@ driver_override
//!                                      iommu_group@ net/<if>/ (or <child>/net/<if>/: virtio)
//! <root>/bus/pci/drivers/<driver>/     bind unbind <bdf>@ (the devices it drives)
//! <root>/bus/pci/drivers_probe         probe one device (driver_override decides)
//! <root>/kernel/iommu_groups/<n>/      one per IOMMU group
//! <root>/class/iommu/                  one per IOMMU
//! <root>/module/<module>/              a loaded (or built-in) module
//! <root>/module/vfio/parameters/enable_unsafe_noiommu_mode
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use contract::PciAddress;

/// Where the kernel mounts sysfs.
pub const HOST_SYSFS: &str = "/sys";

/// A write to sysfs that the kernel refused.
#[derive(Debug, thiserror::Error)]
#[error("writing `{value}` to {}: {source}", path.display())]
pub struct SysfsError {
    /// The file.
    pub path: PathBuf,
    /// What was written.
    pub value: String,
    /// The kernel's answer.
    #[source]
    pub source: io::Error,
}

/// vfio's mode without an IOMMU (`enable_unsafe_noiommu_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoIommuMode {
    /// vfio is loaded and the mode is on.
    On,
    /// vfio is loaded and offers the mode, off.
    Off,
    /// vfio is loaded without the parameter (a kernel built without
    /// CONFIG_VFIO_NOIOMMU, as Debian's are), or is not loaded: unknown
    /// here, see the doctor.
    Unavailable,
}

/// A sysfs tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    /// This host's.
    #[must_use]
    pub fn host() -> Self {
        Self::at(HOST_SYSFS)
    }

    /// A tree rooted at `root` (a fake one in tests).
    #[must_use]
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn devices_dir(&self) -> PathBuf {
        self.root.join("bus/pci/devices")
    }

    /// The directory of one PCI function.
    #[must_use]
    pub fn device_dir(&self, addr: &PciAddress) -> PathBuf {
        self.devices_dir().join(addr.as_str())
    }

    fn driver_dir(&self, driver: &str) -> PathBuf {
        self.root.join("bus/pci/drivers").join(driver)
    }

    /// Every PCI function, sorted by address.
    ///
    /// # Errors
    /// The devices directory cannot be read (no PCI bus, no sysfs).
    pub fn addresses(&self) -> io::Result<Vec<PciAddress>> {
        let mut found: Vec<PciAddress> = fs::read_dir(self.devices_dir())?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        found.sort();
        Ok(found)
    }

    /// Whether the function exists.
    #[must_use]
    pub fn exists(&self, addr: &PciAddress) -> bool {
        self.device_dir(addr).is_dir()
    }

    /// One of the function's one-line attributes (`class`, `vendor`,
    /// `device`), trimmed.
    #[must_use]
    pub fn attribute(&self, addr: &PciAddress, name: &str) -> Option<String> {
        let text = fs::read_to_string(self.device_dir(addr).join(name)).ok()?;
        Some(text.trim().to_owned())
    }

    /// The driver bound to the function now.
    #[must_use]
    pub fn driver(&self, addr: &PciAddress) -> Option<String> {
        link_name(&self.device_dir(addr).join("driver"))
    }

    /// The function's `driver_override`; `None` when unset (the kernel
    /// reads back `(null)`).
    #[must_use]
    pub fn driver_override(&self, addr: &PciAddress) -> Option<String> {
        self.attribute(addr, "driver_override")
            .filter(|v| !v.is_empty() && v != "(null)")
    }

    /// The IOMMU group the function is in, if it is behind one.
    #[must_use]
    pub fn iommu_group(&self, addr: &PciAddress) -> Option<String> {
        link_name(&self.device_dir(addr).join("iommu_group"))
    }

    /// The network interfaces of the function: in its own `net/`, or, for
    /// a virtio NIC, in the `net/` of its virtio child device.
    #[must_use]
    pub fn interfaces(&self, addr: &PciAddress) -> Vec<String> {
        let dir = self.device_dir(addr);
        let mut net_dirs = vec![dir.join("net")];
        for child in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = child.file_name();
            // Real child devices only: `driver`, `iommu_group` and the
            // like are links back up the tree.
            let is_dir = child.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && name != "net" {
                net_dirs.push(child.path().join("net"));
            }
        }
        let mut names: Vec<String> = net_dirs
            .iter()
            .flat_map(|d| fs::read_dir(d).into_iter().flatten().flatten())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether a PCI driver of that name is registered (its module loaded,
    /// or built in).
    #[must_use]
    pub fn driver_registered(&self, driver: &str) -> bool {
        self.driver_dir(driver).is_dir()
    }

    /// The functions a driver drives now.
    #[must_use]
    pub fn driven_by(&self, driver: &str) -> Vec<PciAddress> {
        let mut found: Vec<PciAddress> = fs::read_dir(self.driver_dir(driver))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        found.sort();
        found
    }

    /// Whether the kernel has a module of that name loaded (or built in
    /// with parameters); `-` and `_` are the same to the kernel.
    #[must_use]
    pub fn module_present(&self, module: &str) -> bool {
        self.root
            .join("module")
            .join(module.replace('-', "_"))
            .exists()
    }

    /// Whether an IOMMU is active: any IOMMU group, or any IOMMU device.
    #[must_use]
    pub fn iommu_present(&self) -> bool {
        let nonempty = |p: PathBuf| fs::read_dir(p).is_ok_and(|mut d| d.next().is_some());
        nonempty(self.root.join("kernel/iommu_groups")) || nonempty(self.root.join("class/iommu"))
    }

    /// vfio's no-IOMMU mode as the loaded module reports it.
    #[must_use]
    pub fn noiommu_mode(&self) -> NoIommuMode {
        let param = self
            .root
            .join("module/vfio/parameters/enable_unsafe_noiommu_mode");
        match fs::read_to_string(param) {
            Ok(v) if v.trim() == "Y" || v.trim() == "1" => NoIommuMode::On,
            Ok(_) => NoIommuMode::Off,
            Err(_) => NoIommuMode::Unavailable,
        }
    }

    /// Whether the loaded vfio module has the no-IOMMU parameter at all;
    /// `None` when vfio is not loaded (then only modinfo can tell).
    #[must_use]
    pub fn vfio_has_noiommu(&self) -> Option<bool> {
        self.module_present("vfio")
            .then(|| self.noiommu_mode() != NoIommuMode::Unavailable)
    }

    fn write(&self, path: PathBuf, value: &str) -> Result<(), SysfsError> {
        // One write(2) of the whole value: sysfs attributes take a value
        // per write, and a newline ends it.
        fs::write(&path, format!("{value}\n")).map_err(|source| SysfsError {
            path,
            value: value.to_owned(),
            source,
        })
    }

    /// Sets (or, with `None`, clears) the driver that alone may take the
    /// function at its next probe.
    ///
    /// # Errors
    /// The kernel refused the write.
    pub fn set_override(&self, addr: &PciAddress, driver: Option<&str>) -> Result<(), SysfsError> {
        self.write(
            self.device_dir(addr).join("driver_override"),
            driver.unwrap_or(""),
        )
    }

    /// Detaches the function from its driver, if it has one.
    ///
    /// # Errors
    /// The kernel refused the write.
    pub fn unbind(&self, addr: &PciAddress) -> Result<(), SysfsError> {
        match self.driver(addr) {
            Some(driver) => self.write(self.driver_dir(&driver).join("unbind"), addr.as_str()),
            None => Ok(()),
        }
    }

    /// Asks the kernel to find a driver for the function (the override's,
    /// when one is set).
    ///
    /// # Errors
    /// The kernel refused the write (no driver accepted the device).
    pub fn probe(&self, addr: &PciAddress) -> Result<(), SysfsError> {
        self.write(self.root.join("bus/pci/drivers_probe"), addr.as_str())
    }

    /// Binds the function to `driver` directly.
    ///
    /// # Errors
    /// The kernel refused the write (the driver does not take the device).
    pub fn bind(&self, addr: &PciAddress, driver: &str) -> Result<(), SysfsError> {
        self.write(self.driver_dir(driver).join("bind"), addr.as_str())
    }
}

/// The last component of the target of the symbolic link `path`.
fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    target.file_name().map(|n| n.to_string_lossy().into_owned())
}
