//! One network PCI function as the NIC commands see it: address, ids,
//! driver, IOMMU group, and its interfaces with their addresses and routes.

use serde::Serialize;

use contract::PciAddress;

use super::links::{LinkState, LinkView};
use super::sysfs::Sysfs;
use super::NicError;

/// PCI base class 0x02: network controllers.
const NETWORK_CLASS: &str = "0x02";

/// A network PCI function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciDevice {
    /// Its address.
    pub address: PciAddress,
    /// Vendor id (`0x1af4`).
    pub vendor: String,
    /// Device id (`0x1000`).
    pub device: String,
    /// Class code (`0x020000`).
    pub class: String,
    /// The driver bound now.
    pub driver: Option<String>,
    /// The driver that alone may take it at the next probe, if set.
    pub driver_override: Option<String>,
    /// Its IOMMU group, if it is behind an IOMMU.
    pub iommu_group: Option<String>,
    /// Its network interfaces (none while a userspace driver has it).
    pub interfaces: Vec<Interface>,
}

/// An interface of a [`PciDevice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// What iproute2 shows (name only when it could not be asked).
    #[serde(flatten)]
    pub state: LinkState,
    /// Why iproute2 could not be asked, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl PciDevice {
    /// Reads the function at `addr`.
    ///
    /// # Errors
    /// [`NicError::NoDevice`], or [`NicError::NotNetwork`] for a function
    /// that is not a network controller.
    pub fn read(sysfs: &Sysfs, links: &dyn LinkView, addr: &PciAddress) -> Result<Self, NicError> {
        if !sysfs.exists(addr) {
            return Err(NicError::NoDevice(addr.clone()));
        }
        let class = sysfs.attribute(addr, "class").unwrap_or_default();
        if !class.starts_with(NETWORK_CLASS) {
            return Err(NicError::NotNetwork {
                address: addr.clone(),
                class,
            });
        }
        let interfaces = sysfs
            .interfaces(addr)
            .into_iter()
            .map(|name| match links.link(&name) {
                Ok(state) => Interface {
                    state,
                    unreadable: None,
                },
                Err(e) => Interface {
                    state: LinkState {
                        name,
                        up: false,
                        addresses: Vec::new(),
                        routes: Vec::new(),
                    },
                    unreadable: Some(e.to_string()),
                },
            })
            .collect();
        Ok(Self {
            address: addr.clone(),
            vendor: sysfs.attribute(addr, "vendor").unwrap_or_default(),
            device: sysfs.attribute(addr, "device").unwrap_or_default(),
            class,
            driver: sysfs.driver(addr),
            driver_override: sysfs.driver_override(addr),
            iommu_group: sysfs.iommu_group(addr),
            interfaces,
        })
    }

    /// Every network PCI function of the host, by address.
    ///
    /// # Errors
    /// The PCI bus cannot be read.
    pub fn all(sysfs: &Sysfs, links: &dyn LinkView) -> Result<Vec<Self>, NicError> {
        let addresses = sysfs.addresses().map_err(|source| NicError::Sysfs {
            path: sysfs.root().join("bus/pci/devices"),
            source,
        })?;
        Ok(addresses
            .iter()
            .filter_map(|a| Self::read(sysfs, links, a).ok())
            .collect())
    }

    /// Why binding it could cut someone off: each interface that is up
    /// with an address or carries a route, and each that could not be
    /// checked.
    #[must_use]
    pub fn in_use(&self) -> Vec<String> {
        self.interfaces
            .iter()
            .flat_map(|i| match &i.unreadable {
                Some(why) => vec![format!("{} could not be checked: {why}", i.state.name)],
                None => i.state.in_use(),
            })
            .collect()
    }

    /// Its interfaces' names.
    #[must_use]
    pub fn interface_names(&self) -> Vec<&str> {
        self.interfaces
            .iter()
            .map(|i| i.state.name.as_str())
            .collect()
    }
}

/// The PCI function `target` names: a PCI address (`0000:00:04.0`), or a
/// network interface of one (`eth1`).
///
/// # Errors
/// Neither: [`NicError::NoSuchTarget`], or [`NicError::NoDevice`] for a
/// well-formed address that is not on the bus.
pub fn resolve(sysfs: &Sysfs, target: &str) -> Result<PciAddress, NicError> {
    if let Ok(addr) = target.parse::<PciAddress>() {
        return if sysfs.exists(&addr) {
            Ok(addr)
        } else {
            Err(NicError::NoDevice(addr))
        };
    }
    let addresses = sysfs.addresses().map_err(|source| NicError::Sysfs {
        path: sysfs.root().join("bus/pci/devices"),
        source,
    })?;
    addresses
        .into_iter()
        .find(|a| sysfs.interfaces(a).iter().any(|i| i == target))
        .ok_or_else(|| NicError::NoSuchTarget(target.to_owned()))
}
