//! Preparing NS3 for a kernel-bypass engine: the kernel must not answer for
//! the address the userspace stack owns, the engine gets a per-run
//! config.ini (F-Stack's format), and after the run EAL's runtime files,
//! hugepage files and any XDP program left by a killed engine are removed.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::LifecycleError;
use super::session::TeardownReport;
use super::state::{self, RunState};
use crate::config::TestbedConfig;

/// Which poll-mode driver owns the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pmd {
    /// `net_af_xdp` on NS3's veth (XDP copy mode on veth).
    AfXdp,
    /// `net_af_packet` on NS3's veth.
    AfPacket,
    /// A PCI device bound to vfio-pci (a real NIC).
    Pci(String),
}

impl std::str::FromStr for Pmd {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "af_xdp" | "af-xdp" => Ok(Self::AfXdp),
            "af_packet" | "af-packet" => Ok(Self::AfPacket),
            other => match other.strip_prefix("pci:") {
                Some(addr) if is_pci_address(addr) => Ok(Self::Pci(addr.to_owned())),
                _ => Err(format!(
                    "`{other}` is not a poll-mode driver: use af_xdp, af_packet or pci:DDDD:BB:DD.F"
                )),
            },
        }
    }
}

impl std::fmt::Display for Pmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AfXdp => f.write_str("af_xdp"),
            Self::AfPacket => f.write_str("af_packet"),
            Self::Pci(addr) => write!(f, "pci:{addr}"),
        }
    }
}

fn is_pci_address(s: &str) -> bool {
    let parts: Vec<&str> = s.split([':', '.']).collect();
    parts.len() == 4
        && [4, 2, 2, 1]
            .iter()
            .zip(&parts)
            .all(|(len, p)| p.len() == *len && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// EAL's `--file-prefix` for a testbed's engine: unique per testbed, so
/// its runtime directory and hugepage files are findable after a crash.
#[must_use]
pub fn file_prefix(testbed: &str) -> String {
    format!("bypasslab-{testbed}")
}

/// Checks that a PCI device can be handed to DPDK on this host: the
/// vfio-pci driver must be loaded or loadable and an IOMMU present.
///
/// # Errors
/// [`LifecycleError::Unsupported`] saying which piece is missing.
pub fn check_pci_possible(addr: &str) -> Result<(), LifecycleError> {
    let device = Path::new("/sys/bus/pci/devices").join(addr);
    if !device.exists() {
        return Err(LifecycleError::Unsupported(format!(
            "PCI device {addr} does not exist on this host (see `lspci -D`)"
        )));
    }
    let iommu_groups = fs::read_dir("/sys/kernel/iommu_groups").map_or(0, Iterator::count);
    if iommu_groups == 0 {
        return Err(LifecycleError::Unsupported(format!(
            "cannot bind {addr} for DPDK: this host has no IOMMU (no /sys/kernel/iommu_groups), \
             which vfio-pci needs; use --pmd af_xdp or af_packet on the testbed's veth"
        )));
    }
    if !Path::new("/sys/bus/pci/drivers/vfio-pci").exists() {
        let loaded = Command::new("modprobe").arg("vfio-pci").status();
        if !loaded.is_ok_and(|s| s.success()) {
            return Err(LifecycleError::Unsupported(format!(
                "cannot bind {addr} for DPDK: the vfio-pci driver is not loaded and `modprobe \
                 vfio-pci` failed (this kernel cannot load modules?); use --pmd af_xdp or af_packet"
            )));
        }
    }
    Ok(())
}

/// The kernel driver a PCI device is bound to now.
fn current_driver(addr: &str) -> Option<String> {
    let link = fs::read_link(Path::new("/sys/bus/pci/devices").join(addr).join("driver")).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn devbind(addr: &str, driver: &str) -> Result<(), LifecycleError> {
    let output = Command::new("dpdk-devbind.py")
        .args(["-b", driver, addr])
        .output()
        .map_err(LifecycleError::io(
            "running dpdk-devbind.py (Debian package `dpdk`)",
        ))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LifecycleError::Unsupported(format!(
            "dpdk-devbind.py -b {driver} {addr} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

fn ip_in(ns: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .map_err(|e| format!("ip -n {ns} {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -n {ns} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn mask(prefix_len: u8) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0),
    )
}

/// F-Stack's `[dpdk]` keys (the dpdk engine lists them as unused): its
/// default 100 µs TX batching delay would dominate the RTT, and sleeping
/// when idle would add wake-up latency; the virtual PMDs offload nothing.
const FSTACK_DPDK_KEYS: &str = "\
    ; F-Stack: send each burst at once, never sleep when idle (latency)\n\
    pkt_tx_delay=0\n\
    idle_sleep=0\n\
    tso=0\n\
    numa_on=1\n";

/// F-Stack's FreeBSD boot tunables and sysctls: a 1 ms clock (the TCP
/// timers, retransmission included, tick at `hz`), the socket limits of
/// F-Stack's sample config, and 10 ms instead of 200 ms of retransmission
/// timer slop: FreeBSD adds the slop to every RTO (srtt + 4 rttvar, at
/// least `rexmit_min` = 30 ms), so with the default a lost 4-byte reply
/// waits ≥ 230 ms and a few lost retransmissions in a row back off past the
/// load generator's 5 s reply timeout; Linux recovers such a tail loss
/// with a probe after a few ms.
const FSTACK_FREEBSD_SECTIONS: &str = "\
    \n\
    [freebsd.boot]\n\
    hz=1000\n\
    fd_reserve=1024\n\
    kern.ipc.maxsockets=262144\n\
    net.inet.tcp.syncache.hashsize=4096\n\
    net.inet.tcp.syncache.bucketlimit=100\n\
    net.inet.tcp.tcbhashsize=65536\n\
    kern.ncallout=262144\n\
    \n\
    [freebsd.sysctl]\n\
    kern.ipc.somaxconn=32768\n\
    kern.ipc.maxsockbuf=16777216\n\
    net.link.ether.inet.maxhold=5\n\
    net.inet.tcp.sendspace=16384\n\
    net.inet.tcp.recvspace=8192\n\
    net.inet.tcp.sack.enable=1\n\
    net.inet.tcp.blackhole=1\n\
    net.inet.tcp.msl=2000\n\
    net.inet.tcp.delayed_ack=1\n\
    net.inet.tcp.rexmit_slop=10\n\
    net.inet.udp.blackhole=1\n\
    net.inet.ip.redirect=0\n\
    net.inet.ip.forwarding=0\n";

/// The per-run config.ini for the engine.
#[must_use]
pub fn engine_ini(
    config: &TestbedConfig,
    pmd: &Pmd,
    core: usize,
    huge_dir: Option<&Path>,
) -> String {
    let no_huge = huge_dir.is_none();
    let huge_dir_line = huge_dir
        .map(|d| format!("huge_dir={}\n", d.display()))
        .unwrap_or_default();
    let netmask = mask(config.prefix_len());
    let broadcast = Ipv4Addr::from(u32::from(config.subnet()) | !u32::from(netmask));
    let (pmd_key, iface, whitelist) = match pmd {
        Pmd::AfXdp => ("af_xdp", config.server_iface(), String::new()),
        Pmd::AfPacket => ("af_packet", config.server_iface(), String::new()),
        Pmd::Pci(addr) => (
            "pci",
            config.server_iface(),
            format!("pci_whitelist={addr}\n"),
        ),
    };
    format!(
        "; Written by the supervisor for one run of testbed `{name}`; removed on stop.\n\
         [dpdk]\n\
         lcore_mask={mask:x}\n\
         memory=256\n\
         no_huge={no_huge}\n\
         file_prefix={prefix}\n\
         {huge_dir_line}\
         promiscuous=0\n\
         port_list=0\n\
         {whitelist}\
         pmd={pmd_key}\n\
         iface={iface}\n\
         log_level=*:notice\n\
         {fstack_dpdk}\
         \n\
         [port0]\n\
         addr={addr}\n\
         netmask={netmask}\n\
         broadcast={broadcast}\n\
         gateway={gateway}\n\
         {fstack_freebsd}",
        fstack_dpdk = FSTACK_DPDK_KEYS,
        fstack_freebsd = FSTACK_FREEBSD_SECTIONS,
        name = config.name(),
        mask = 1u64 << core.min(63),
        no_huge = u8::from(no_huge),
        prefix = file_prefix(config.name()),
        addr = config.server_addr(),
        gateway = config.client_addr(),
    )
}

/// Prepares NS3 and writes the engine's config.ini; every change is
/// recorded in `state` (and saved) before it is made.
///
/// # Errors
/// A step that failed, with what to do.
pub fn prepare(
    config: &TestbedConfig,
    state: &mut RunState,
    pmd: &Pmd,
    say: &mut dyn FnMut(&str),
) -> Result<PathBuf, LifecycleError> {
    if let Pmd::Pci(addr) = pmd {
        check_pci_possible(addr)?;
        let original = current_driver(addr);
        state.pci_device = Some((addr.clone(), original));
        state.save()?;
        devbind(addr, "vfio-pci")?;
    } else {
        // The userspace stack owns the address: the kernel must not answer
        // ARP or SYNs for it (an af_packet port still lets the kernel see
        // every frame).
        let address = format!("{}/{}", config.server_addr(), config.prefix_len());
        state.removed_server_address = Some(address.clone());
        state.save()?;
        let ns = config.server_ns();
        if let Err(e) = ip_in(
            &ns,
            &["addr", "del", &address, "dev", &config.server_iface()],
        ) {
            if !e.contains("Cannot assign requested address") {
                return Err(LifecycleError::Network(format!(
                    "removing the kernel address from NS3's {}: {e}",
                    config.server_iface()
                )));
            }
        }
        say(&format!(
            "removed {address} from {} in {ns}: the userspace stack answers for it",
            config.server_iface()
        ));
    }
    let no_huge = state.hugepages.unavailable.is_some() || state.hugepages.dir.is_none();
    if no_huge {
        say(&format!(
            "DPDK runs without hugepages (--no-huge): {}",
            state
                .hugepages
                .unavailable
                .as_deref()
                .unwrap_or("no hugetlbfs mount")
        ));
    }
    let ini = state::testbed_dir(config.name()).join("engine-config.ini");
    state.files.push(ini.clone());
    state.save()?;
    let huge_dir = if no_huge {
        None
    } else {
        state.hugepages.dir.as_deref()
    };
    fs::write(&ini, engine_ini(config, pmd, state.engine_core, huge_dir))
        .map_err(LifecycleError::io(format!("writing {}", ini.display())))?;
    Ok(ini)
}

/// Undoes [`prepare`] and removes what a killed engine leaves: EAL's
/// runtime directory, its hugepage files, an XDP program on the veth.
pub fn teardown(config: &TestbedConfig, state: &RunState, report: &mut TeardownReport) {
    let prefix = file_prefix(config.name());
    let runtime = Path::new("/var/run/dpdk").join(&prefix);
    if runtime.exists() {
        match fs::remove_dir_all(&runtime) {
            Ok(()) => report.done.push(format!(
                "removed DPDK runtime directory {}",
                runtime.display()
            )),
            Err(e) => report
                .problems
                .push(format!("removing {}: {e}", runtime.display())),
        }
    }
    if let Some(dir) = &state.hugepages.dir {
        // EAL names its hugepage files `<file-prefix>map_<n>`; the segment,
        // `bypasslab-<testbed>`, shares the prefix but is not EAL's.
        let eal_files = format!("{prefix}map_");
        let files = fs::read_dir(dir).into_iter().flatten().flatten();
        let ours: Vec<PathBuf> = files
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&eal_files))
            })
            .collect();
        for file in &ours {
            let _ = fs::remove_file(file);
        }
        if !ours.is_empty() {
            report
                .done
                .push(format!("removed {} DPDK hugepage files", ours.len()));
        }
    }
    let ns = config.server_ns();
    let iface = config.server_iface();
    if let Some(address) = &state.removed_server_address {
        // A killed af_xdp engine leaves its XDP program attached.
        let _ = ip_in(&ns, &["link", "set", "dev", &iface, "xdp", "off"]);
        match ip_in(&ns, &["addr", "add", address, "dev", &iface]) {
            Ok(()) => report
                .done
                .push(format!("restored {address} on {iface} in {ns}")),
            Err(e) if e.contains("File exists") || e.contains("Cannot find device") => {}
            Err(e) if e.contains("Cannot open network namespace") => {}
            Err(e) => report.problems.push(e),
        }
    }
    if let Some((addr, original)) = &state.pci_device {
        let restored = match original {
            Some(driver) => devbind(addr, driver),
            None => Command::new("dpdk-devbind.py")
                .args(["-u", addr])
                .status()
                .map(|_| ())
                .map_err(LifecycleError::io("dpdk-devbind.py -u")),
        };
        match restored {
            Ok(()) => report.done.push(format!(
                "gave {addr} back to {}",
                original.as_deref().unwrap_or("no driver")
            )),
            Err(e) => report.problems.push(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmd_parses_and_rejects() {
        assert_eq!("af_xdp".parse::<Pmd>(), Ok(Pmd::AfXdp));
        assert_eq!("af_packet".parse::<Pmd>(), Ok(Pmd::AfPacket));
        assert_eq!(
            "pci:0000:00:04.0".parse::<Pmd>(),
            Ok(Pmd::Pci("0000:00:04.0".into()))
        );
        for bad in ["tap", "pci:", "pci:00:04.0", "pci:0000:00:04.x"] {
            let err = bad.parse::<Pmd>().unwrap_err();
            assert!(err.contains("not a poll-mode driver"), "{bad}: {err}");
        }
    }

    #[test]
    fn ini_has_the_testbed_addresses() {
        let config = TestbedConfig::default();
        let ini = engine_ini(&config, &Pmd::AfXdp, 1, None);
        assert!(ini.contains(&format!("addr={}\n", config.server_addr())));
        assert!(ini.contains("netmask=255.255.255.0\n"));
        assert!(ini.contains("lcore_mask=2\n"));
        assert!(ini.contains("no_huge=1\n"));
        assert!(ini.contains(&format!("iface={}\n", config.server_iface())));
        assert!(ini.contains(&format!("file_prefix=bypasslab-{}\n", config.name())));
        assert!(!ini.contains("huge_dir="));
        let huge = engine_ini(&config, &Pmd::AfXdp, 1, Some(Path::new("/run/x/hugepages")));
        assert!(huge.contains("no_huge=0\n") && huge.contains("huge_dir=/run/x/hugepages\n"));
        // F-Stack's latency keys and FreeBSD sections are there too.
        for key in [
            "pkt_tx_delay=0\n",
            "idle_sleep=0\n",
            "[freebsd.boot]\n",
            "[freebsd.sysctl]\n",
        ] {
            assert!(ini.contains(key), "{key}");
        }
    }

    #[test]
    fn pci_mode_fails_clearly_without_the_device_or_iommu() {
        // No such device on any host: the message names it.
        let err = check_pci_possible("0000:ff:1f.7").unwrap_err();
        assert!(matches!(err, LifecycleError::Unsupported(ref m) if m.contains("0000:ff:1f.7")));
        // A device that exists, on a host without an IOMMU or module
        // loading (these build machines): the message says which.
        let existing = fs::read_dir("/sys/bus/pci/devices")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next();
        if let Some(addr) = existing {
            if fs::read_dir("/sys/kernel/iommu_groups").map_or(0, Iterator::count) == 0 {
                let err = check_pci_possible(&addr).unwrap_err();
                assert!(
                    matches!(err, LifecycleError::Unsupported(ref m) if m.contains("no IOMMU")),
                    "{err}"
                );
            }
        }
    }
}
