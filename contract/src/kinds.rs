//! The engine kinds and poll-mode drivers, each named here once: the
//! engine's `--kind`, the supervisor's `--engine`, the bench's subjects,
//! config.ini's `pmd` key and the `--list-kinds` document all use these.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which backend serves the protocol.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    clap::ValueEnum,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// Linux kernel TCP sockets (Case 1).
    Kernel,
    /// DPDK poll-mode driver + smoltcp TCP in userspace (Case 2).
    Dpdk,
    /// DPDK + F-Stack (FreeBSD TCP in userspace, as in the original
    /// experiment); needs the engine's `fstack` feature.
    Fstack,
}

impl EngineKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [EngineKind; 3] = [Self::Kernel, Self::Dpdk, Self::Fstack];

    /// The name on command lines, in the segment and in reports.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Dpdk => "dpdk",
            Self::Fstack => "fstack",
        }
    }

    /// Whether it bypasses the kernel (owns a DPDK port and hugepages).
    #[must_use]
    pub const fn is_bypass(self) -> bool {
        !matches!(self, Self::Kernel)
    }

    /// The kind named `name`, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which TCP stack the load generator's connections run on: its
/// `--stack`, the supervisor's `--client` and `[client] stack`.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    clap::ValueEnum,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ClientStack {
    /// Linux kernel TCP sockets.
    #[default]
    Kernel,
    /// DPDK poll-mode driver + smoltcp TCP in userspace, on NS1's veth.
    Dpdk,
}

impl ClientStack {
    /// Every client stack, in the order reports list them.
    pub const ALL: [ClientStack; 2] = [Self::Kernel, Self::Dpdk];

    /// The name on command lines, in the segment and in reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Dpdk => "dpdk",
        }
    }

    /// The stack named `name`, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether it bypasses the kernel (owns a DPDK port and hugepages).
    #[must_use]
    pub const fn is_bypass(self) -> bool {
        matches!(self, Self::Dpdk)
    }
}

impl fmt::Display for ClientStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The driver family of a DPDK port, as config.ini's `[dpdk] pmd` names it
/// (the PCI address itself goes in `pci_whitelist`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PmdKind {
    /// `net_af_xdp` on a Linux interface (XDP socket; native copy mode on veth).
    AfXdp,
    /// `net_af_packet` on a Linux interface (PACKET_MMAP rings).
    AfPacket,
    /// A PCI device bound to a userspace I/O driver (vfio-pci, uio).
    Pci,
    /// `net_memif`: a shared-memory packet interface between two DPDK
    /// processes on one host, over a Unix socket (no kernel on the path).
    Memif,
}

impl PmdKind {
    /// Every driver family.
    pub const ALL: [PmdKind; 4] = [Self::AfXdp, Self::AfPacket, Self::Pci, Self::Memif];

    /// config.ini's spelling.
    #[must_use]
    pub const fn ini_name(self) -> &'static str {
        match self {
            Self::AfXdp => "af_xdp",
            Self::AfPacket => "af_packet",
            Self::Pci => "pci",
            Self::Memif => "memif",
        }
    }

    /// The virtual device this driver creates, if it is one (a PCI device
    /// is probed, not created).
    #[must_use]
    pub const fn vdev_name(self) -> Option<&'static str> {
        match self {
            Self::AfXdp => Some("net_af_xdp0"),
            Self::AfPacket => Some("net_af_packet0"),
            Self::Memif => Some("net_memif0"),
            Self::Pci => None,
        }
    }

    /// Whether it runs on a Linux interface (`[dpdk] iface`).
    #[must_use]
    pub const fn on_interface(self) -> bool {
        matches!(self, Self::AfXdp | Self::AfPacket)
    }

    /// Parses config.ini's value (also DPDK's driver names, `net_af_xdp`).
    #[must_use]
    pub fn from_ini(value: &str) -> Option<Self> {
        let value = value.to_ascii_lowercase();
        Self::ALL.into_iter().find(|k| {
            value == k.ini_name()
                || k.vdev_name()
                    .is_some_and(|vdev| vdev.strip_suffix('0') == Some(value.as_str()))
        })
    }

    /// Every accepted spelling, for messages.
    #[must_use]
    pub fn names() -> String {
        Self::ALL.map(Self::ini_name).join(", ")
    }
}

/// A PCI address, `DDDD:BB:DD.F` in hexadecimal (lower case, as sysfs
/// names it); in JSON, that string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PciAddress(String);

impl TryFrom<String> for PciAddress {
    type Error = PmdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PciAddress> for String {
    fn from(a: PciAddress) -> Self {
        a.0
    }
}

impl PciAddress {
    /// The address as sysfs and EAL write it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PciAddress {
    type Err = PmdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split([':', '.']).collect();
        let well_formed = parts.len() == 4
            && [4, 2, 2, 1]
                .iter()
                .zip(&parts)
                .all(|(len, p)| p.len() == *len && p.chars().all(|c| c.is_ascii_hexdigit()));
        if well_formed {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(PmdError::PciAddress(s.to_owned()))
        }
    }
}

/// Which poll-mode driver owns a bypass stack's port: the command-line
/// choice (`--pmd`), with the device for a PCI NIC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pmd {
    /// `net_af_xdp` on the testbed's veth.
    AfXdp,
    /// `net_af_packet` on the testbed's veth.
    AfPacket,
    /// A NIC bound to a userspace I/O driver.
    Pci(PciAddress),
    /// `net_memif` between the engine and the DPDK load generator, on a
    /// socket in the run's state directory: no kernel and no link (nor
    /// its impairment) between them.
    Memif,
}

/// A `--pmd` value that names no driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PmdError {
    /// Not one of the drivers.
    #[error("`{0}` is not a poll-mode driver: use af_xdp, af_packet, memif or pci:DDDD:BB:DD.F")]
    Unknown(String),
    /// `pci:` with a malformed address.
    #[error("`{0}` is not a PCI address: write it as DDDD:BB:DD.F (see `supervisor nic status` or `lspci -D`)")]
    PciAddress(String),
}

impl Pmd {
    /// Its driver family.
    #[must_use]
    pub fn kind(&self) -> PmdKind {
        match self {
            Self::AfXdp => PmdKind::AfXdp,
            Self::AfPacket => PmdKind::AfPacket,
            Self::Pci(_) => PmdKind::Pci,
            Self::Memif => PmdKind::Memif,
        }
    }

    /// The PCI device, for `pci:`.
    #[must_use]
    pub fn pci(&self) -> Option<&PciAddress> {
        match self {
            Self::Pci(addr) => Some(addr),
            _ => None,
        }
    }
}

impl FromStr for Pmd {
    type Err = PmdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(addr) = s.strip_prefix("pci:") {
            return if addr.is_empty() {
                Err(PmdError::Unknown(s.to_owned()))
            } else {
                Ok(Self::Pci(addr.parse()?))
            };
        }
        match PmdKind::from_ini(&s.replace('-', "_")) {
            Some(PmdKind::AfXdp) => Ok(Self::AfXdp),
            Some(PmdKind::AfPacket) => Ok(Self::AfPacket),
            Some(PmdKind::Memif) => Ok(Self::Memif),
            _ => Err(PmdError::Unknown(s.to_owned())),
        }
    }
}

impl fmt::Display for Pmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci(addr) => write!(f, "pci:{addr}"),
            other => f.write_str(other.kind().ini_name()),
        }
    }
}

impl Serialize for Pmd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pmd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One entry of `engine --list-kinds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindListing {
    /// The kind.
    pub kind: EngineKind,
    /// Whether this binary can serve it.
    pub available: bool,
    /// Why not, and how to enable it (unavailable kinds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The linked F-Stack release (fstack only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstack_version: Option<String>,
    /// The DPDK F-Stack was linked with (fstack only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpdk_version: Option<String>,
    /// The F-Stack prefix the binary was built against (fstack only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstack_prefix: Option<String>,
}

/// `engine --list-kinds`: every kind and whether this binary has it,
/// e.g. (without F-Stack)
///
/// ```text
/// {"kinds":[{"kind":"kernel","available":true},{"kind":"dpdk","available":true},
///  {"kind":"fstack","available":false,"reason":"this engine binary was built without ..."}]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindList {
    /// One entry per kind.
    pub kinds: Vec<KindListing>,
}

impl KindList {
    /// The entry of `kind`.
    #[must_use]
    pub fn get(&self, kind: EngineKind) -> Option<&KindListing> {
        self.kinds.iter().find(|k| k.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmd_parses_prints_and_rejects() {
        assert_eq!("af_xdp".parse::<Pmd>(), Ok(Pmd::AfXdp));
        assert_eq!("af-packet".parse::<Pmd>(), Ok(Pmd::AfPacket));
        assert_eq!("memif".parse::<Pmd>(), Ok(Pmd::Memif));
        assert_eq!(Pmd::Memif.to_string(), "memif");
        let pci: Pmd = "pci:0000:00:04.0".parse().unwrap();
        assert_eq!(pci.to_string(), "pci:0000:00:04.0");
        assert_eq!(pci.kind(), PmdKind::Pci);
        for bad in ["tap", "pci", "pci:", "pci:00:04.0", "pci:0000:00:04.x"] {
            assert!(bad.parse::<Pmd>().is_err(), "{bad}");
        }
        assert!(matches!(
            "pci:00:04.0".parse::<Pmd>(),
            Err(PmdError::PciAddress(_))
        ));
        assert!(matches!("tap".parse::<Pmd>(), Err(PmdError::Unknown(_))));
    }

    #[test]
    fn pci_addresses_are_json_strings_and_checked() {
        let addr: PciAddress = serde_json::from_str("\"0000:00:1F.6\"").unwrap();
        assert_eq!(addr.as_str(), "0000:00:1f.6");
        assert_eq!(serde_json::to_string(&addr).unwrap(), "\"0000:00:1f.6\"");
        assert!(serde_json::from_str::<PciAddress>("\"eth0\"").is_err());
    }

    #[test]
    fn ini_names_and_vdevs() {
        for kind in PmdKind::ALL {
            assert_eq!(PmdKind::from_ini(kind.ini_name()), Some(kind));
        }
        assert_eq!(PmdKind::from_ini("net_af_xdp"), Some(PmdKind::AfXdp));
        assert_eq!(PmdKind::from_ini("AF_PACKET"), Some(PmdKind::AfPacket));
        assert_eq!(PmdKind::from_ini("net_memif"), Some(PmdKind::Memif));
        assert_eq!(PmdKind::from_ini("tap"), None);
    }

    #[test]
    fn client_stacks_round_trip_their_names() {
        for stack in ClientStack::ALL {
            assert_eq!(ClientStack::from_name(stack.name()), Some(stack));
            let json = serde_json::to_string(&stack).unwrap();
            assert_eq!(json, format!("\"{stack}\""));
        }
        assert_eq!(ClientStack::from_name("fstack"), None);
        assert_eq!(ClientStack::default(), ClientStack::Kernel);
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for kind in EngineKind::ALL {
            assert_eq!(EngineKind::from_name(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
        }
        let listing: KindList = serde_json::from_str(
            r#"{"kinds":[{"kind":"fstack","available":false,"reason":"no"}]}"#,
        )
        .unwrap();
        assert_eq!(
            listing.get(EngineKind::Fstack).unwrap().reason.as_deref(),
            Some("no")
        );
    }
}
