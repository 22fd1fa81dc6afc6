//! The kernel drivers that hand a PCI NIC to a userspace poll-mode driver,
//! each named here once: the name it registers in sysfs, the module
//! `modprobe` loads, what it needs, and where it comes from. Also the
//! original experiment's KNI module, which no engine needs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::sysfs::{NoIommuMode, Sysfs};

/// A userspace I/O driver for a PCI NIC.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
pub enum Driver {
    /// VFIO: DMA confined by the IOMMU, MSI-X; DPDK's recommended driver.
    #[serde(rename = "vfio-pci")]
    #[value(name = "vfio-pci")]
    VfioPci,
    /// The kernel's generic UIO driver: no IOMMU needed, legacy interrupts.
    #[serde(rename = "uio_pci_generic")]
    #[value(name = "uio_pci_generic")]
    UioPciGeneric,
    /// DPDK's own UIO driver (out of tree: Debian's dpdk-kmods-dkms), the
    /// original experiment's.
    #[serde(rename = "igb_uio")]
    #[value(name = "igb_uio")]
    IgbUio,
}

/// The original experiment's Kernel NIC Interface module.
pub const RTE_KNI: &str = "rte_kni";

/// A driver name that is none of [`Driver::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a userspace I/O driver: use vfio-pci, uio_pci_generic or igb_uio")]
pub struct UnknownDriver(pub String);

impl Driver {
    /// Every driver, in the order of preference.
    pub const ALL: [Driver; 3] = [Self::VfioPci, Self::UioPciGeneric, Self::IgbUio];

    /// The name it registers under `/sys/bus/pci/drivers`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::VfioPci => "vfio-pci",
            Self::UioPciGeneric => "uio_pci_generic",
            Self::IgbUio => "igb_uio",
        }
    }

    /// The module `modprobe` loads for it.
    #[must_use]
    pub const fn module(self) -> &'static str {
        match self {
            Self::VfioPci => "vfio-pci",
            Self::UioPciGeneric => "uio_pci_generic",
            Self::IgbUio => "igb_uio",
        }
    }

    /// What to do when its module cannot be loaded.
    #[must_use]
    pub const fn install_hint(self) -> &'static str {
        match self {
            Self::VfioPci | Self::UioPciGeneric => {
                "it ships with Debian's kernel (linux-image-amd64); a kernel without it needs another driver"
            }
            Self::IgbUio => {
                "igb_uio is out of tree: `apt-get install dpdk-kmods-dkms` builds it for the running kernel; or use uio_pci_generic / vfio-pci"
            }
        }
    }

    /// The driver named `name` in sysfs, if it is one of these.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The default on this host: vfio-pci where it can work (an IOMMU, or
    /// vfio's no-IOMMU mode switched on), else uio_pci_generic.
    #[must_use]
    pub fn default_for(sysfs: &Sysfs) -> Self {
        if sysfs.iommu_present() || sysfs.noiommu_mode() == NoIommuMode::On {
            Self::VfioPci
        } else {
            Self::UioPciGeneric
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Driver {
    type Err = UnknownDriver;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| UnknownDriver(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_json_uses_them() {
        for d in Driver::ALL {
            assert_eq!(d.name().parse::<Driver>(), Ok(d));
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.name())
            );
        }
        assert!("virtio-pci".parse::<Driver>().is_err());
    }
}
