//! Preparing an interface for a kernel-bypass engine (NS3's veth, the NIC
//! of an engine host, or a PCI NIC, see [`super::pci`]): the kernel must
//! not answer for the address the userspace stack owns, the engine gets a
//! per-run config.ini (F-Stack's format), and after the run EAL's runtime
//! files, hugepage files and any XDP program left by a killed engine are
//! removed.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use contract::Pmd;

use serde::{Deserialize, Serialize};

use super::pci::{self, PciStepError};
use super::report::TeardownReport;
use super::state::{RunState, StateError};
use crate::config::TestbedConfig;
use crate::host::command::{self, CommandError};
use crate::state::{StateDir, StateFile};

/// The interface a bypass engine takes over and the addresses its stack
/// answers with: recorded in the run state, so a teardown from the record
/// alone (after a crash) knows where to give the address back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// Its network namespace; `None`: the supervisor's own (an engine
    /// host's NIC).
    pub namespace: Option<String>,
    /// The interface.
    pub iface: String,
    /// The server's address on it.
    pub address: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// The client's address (the stack's gateway).
    pub gateway: Ipv4Addr,
}

impl Port {
    /// NS3's veth of a testbed.
    #[must_use]
    pub fn server_of(config: &TestbedConfig) -> Self {
        Self {
            namespace: Some(config.server_ns()),
            iface: config.server_iface(),
            address: config.server_addr(),
            prefix_len: config.prefix_len(),
            gateway: config.client_addr(),
        }
    }

    /// NS1's veth of a testbed, for a DPDK load generator: the client's
    /// address, the server's as its gateway.
    #[must_use]
    pub fn client_of(config: &TestbedConfig) -> Self {
        Self {
            namespace: Some(config.client_ns()),
            iface: config.client_iface(),
            address: config.client_addr(),
            prefix_len: config.prefix_len(),
            gateway: config.server_addr(),
        }
    }

    /// Where it is, for messages.
    pub(super) fn place(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} in {ns}", self.iface),
            None => self.iface.clone(),
        }
    }

    /// `ip [-n <ns>] <args>`.
    pub(super) fn ip(&self, args: &[&str]) -> Result<String, CommandError> {
        let mut c = command::cmd("ip", [""; 0]);
        if let Some(ns) = &self.namespace {
            c.args(["-n", ns]);
        }
        c.args(args);
        command::run(&mut c, "")
    }

    /// Takes its kernel address off the interface (already absent is what
    /// is wanted).
    pub(super) fn remove_address(&self) -> Result<(), BypassError> {
        let address = self.cidr();
        match self.ip(&["addr", "del", &address, "dev", &self.iface]) {
            Err(source) if !source.stderr().contains("Cannot assign requested address") => {
                Err(BypassError::RemoveAddress {
                    iface: self.place(),
                    source,
                })
            }
            _ => Ok(()),
        }
    }

    /// `addr/prefix` as `ip` spells it.
    pub(super) fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix_len)
    }
}

/// A step of preparing NS3 (or a NIC) for a bypass engine that failed.
#[derive(Debug, thiserror::Error)]
pub enum BypassError {
    /// The kernel address could not be taken off the interface.
    #[error("removing the kernel address from {iface}: {source}")]
    RemoveAddress {
        /// The interface.
        iface: String,
        /// The command's failure.
        #[source]
        source: CommandError,
    },
    /// A step of a run on a PCI NIC failed or was refused.
    #[error(transparent)]
    Pci(#[from] PciStepError),
    /// Recording a step failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The per-run config.ini could not be written.
    #[error("writing {path}: {source}")]
    WriteIni {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// EAL's `--file-prefix` for a testbed's engine: unique per testbed, so
/// its runtime directory and hugepage files are findable after a crash.
#[must_use]
pub fn file_prefix(testbed: &str) -> String {
    format!("bypasslab-{testbed}")
}

/// The DPDK processes of a run: each has its own config.ini and EAL file
/// prefix and, on a memif pair, its own end of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpdkProcess {
    /// The bypass engine (memif: the server, which creates the socket).
    Engine,
    /// The DPDK load generator (memif: the client).
    Client,
}

impl DpdkProcess {
    /// Its EAL `--file-prefix` in a run of `testbed`.
    #[must_use]
    pub fn file_prefix(self, testbed: &str) -> String {
        match self {
            Self::Engine => file_prefix(testbed),
            Self::Client => super::client::file_prefix(testbed),
        }
    }

    const fn memif_role(self) -> &'static str {
        match self {
            Self::Engine => "server",
            Self::Client => "client",
        }
    }
}

/// The Unix socket of a memif pair (`--pmd memif`) in a run of `testbed`:
/// in its state directory, so that a killed engine's socket goes with the
/// run.
#[must_use]
pub fn memif_socket(testbed: &str) -> PathBuf {
    StateDir::of(testbed).file(StateFile::MemifSocket)
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
/// timers, retransmission included, tick at `hz`) and the socket limits of
/// F-Stack's sample config. The retransmission timer's settings follow
/// (see [`super::rto::freebsd_sysctls`]): by default 10 ms instead of
/// 200 ms of slop — FreeBSD adds the slop to every RTO (srtt + 4 rttvar, at
/// least `rexmit_min` = 30 ms), so with its default a lost 4-byte reply
/// waits ≥ 230 ms and a few lost retransmissions in a row back off past the
/// load generator's reply timeout; Linux recovers such a tail loss with a
/// probe after a few ms.
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
    net.inet.udp.blackhole=1\n\
    net.inet.ip.redirect=0\n\
    net.inet.ip.forwarding=0\n";

/// The per-run config.ini for the engine of run `name` on `port`.
#[must_use]
pub fn engine_ini(
    name: &str,
    port: &Port,
    pmd: &Pmd,
    core: usize,
    huge_dir: Option<&Path>,
    rto_min_ms: Option<u32>,
) -> String {
    port_ini(
        name,
        DpdkProcess::Engine,
        port,
        pmd,
        core,
        huge_dir,
        rto_min_ms,
    )
}

/// A per-run config.ini for DPDK process `process` of run `name` on
/// `port` (a memif pair's ends ignore its interface).
#[must_use]
pub fn port_ini(
    name: &str,
    process: DpdkProcess,
    port: &Port,
    pmd: &Pmd,
    core: usize,
    huge_dir: Option<&Path>,
    rto_min_ms: Option<u32>,
) -> String {
    let no_huge = huge_dir.is_none();
    let huge_dir_line = huge_dir
        .map(|d| format!("huge_dir={}\n", d.display()))
        .unwrap_or_default();
    let netmask = mask(port.prefix_len);
    let broadcast = Ipv4Addr::from(u32::from(port.address) | !u32::from(netmask));
    let pmd_key = pmd.kind().ini_name();
    let prefix = process.file_prefix(name);
    let device = if matches!(pmd, Pmd::Memif) {
        format!(
            "memif_socket={}\nmemif_role={}\n",
            memif_socket(name).display(),
            process.memif_role()
        )
    } else {
        format!("iface={}\n", port.iface)
    };
    let whitelist = pmd
        .pci()
        .map(|addr| format!("pci_whitelist={addr}\n"))
        .unwrap_or_default();
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
         {device}\
         log_level=*:notice\n\
         {fstack_dpdk}\
         \n\
         [port0]\n\
         addr={addr}\n\
         netmask={netmask}\n\
         broadcast={broadcast}\n\
         gateway={gateway}\n\
         {fstack_freebsd}\
         {fstack_rto}",
        fstack_dpdk = FSTACK_DPDK_KEYS,
        fstack_freebsd = FSTACK_FREEBSD_SECTIONS,
        fstack_rto = super::rto::freebsd_sysctls(rto_min_ms),
        mask = 1u64 << core.min(63),
        no_huge = u8::from(no_huge),
        addr = port.address,
        gateway = port.gateway,
    )
}

/// Prepares `port` and writes the engine's config.ini in the run's state
/// directory; every change is recorded in `state` (and saved) before it is
/// made.
///
/// # Errors
/// [`BypassError`]: the step that failed, with what to do.
pub fn prepare(
    port: &Port,
    state: &mut RunState,
    pmd: &Pmd,
    say: &mut dyn FnMut(&str),
) -> Result<PathBuf, BypassError> {
    if let Pmd::Pci(addr) = pmd {
        pci::prepare(addr, state, say)?;
    } else if *pmd == Pmd::Memif {
        // No kernel interface on the path: the engine creates the socket
        // the load generator connects to. One a killed engine left would
        // make the new one fail; the socket goes with the run's files.
        let socket = memif_socket(&state.testbed);
        state.files.push(socket.clone());
        state.save()?;
        let _ = fs::remove_file(&socket);
        say(&format!(
            "the engine serves on memif {} (shared memory with the dpdk load generator: no kernel, no link)",
            socket.display()
        ));
    } else {
        // The userspace stack owns the address: the kernel must not answer
        // ARP or SYNs for it (an af_packet port still lets the kernel see
        // every frame).
        let address = port.cidr();
        state.removed_server_address = Some(address.clone());
        state.save()?;
        port.remove_address()?;
        say(&format!(
            "removed {address} from {}: the userspace stack answers for it",
            port.place()
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
    let ini = StateDir::of(&state.testbed).file(StateFile::EngineIni);
    state.files.push(ini.clone());
    state.save()?;
    let huge_dir = if no_huge {
        None
    } else {
        state.hugepages.dir.as_deref()
    };
    let text = engine_ini(
        &state.testbed,
        port,
        pmd,
        state.engine_core,
        huge_dir,
        state.rto_min_ms,
    );
    fs::write(&ini, text).map_err(|source| BypassError::WriteIni {
        path: ini.clone(),
        source,
    })?;
    Ok(ini)
}

/// Undoes [`prepare`] on `port` and removes what a killed engine leaves:
/// EAL's runtime directory, its hugepage files, an XDP program on the
/// interface.
pub fn teardown(port: &Port, state: &RunState, report: &mut TeardownReport) {
    remove_eal_files(
        &file_prefix(&state.testbed),
        state.hugepages.dir.as_deref(),
        report,
    );
    if let Some(address) = &state.removed_server_address {
        give_back(port, address, report);
    }
    pci::teardown(state, report);
}

/// Removes what EAL leaves of a process with file prefix `prefix` that
/// could not tear down (killed): its runtime directory and its hugepage
/// files in `huge_dir`.
pub fn remove_eal_files(prefix: &str, huge_dir: Option<&Path>, report: &mut TeardownReport) {
    let runtime = Path::new("/var/run/dpdk").join(prefix);
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
    if let Some(dir) = huge_dir {
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
}

/// Detaches any XDP program a killed af_xdp process left on `port` and
/// puts `address` (`addr/prefix`) back on it.
pub fn give_back(port: &Port, address: &str, report: &mut TeardownReport) {
    let iface = &port.iface;
    // A killed af_xdp process leaves its XDP program attached.
    let _ = port.ip(&["link", "set", "dev", iface, "xdp", "off"]);
    match port.ip(&["addr", "add", address, "dev", iface]) {
        Ok(_) => report
            .done
            .push(format!("restored {address} on {}", port.place())),
        // Already there, or the namespace or link went with the network.
        Err(e)
            if [
                "File exists",
                "Cannot find device",
                "Cannot open network namespace",
            ]
            .iter()
            .any(|gone| e.stderr().contains(gone)) => {}
        Err(e) => report.problems.push(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_has_the_testbed_addresses() {
        let config = TestbedConfig::default();
        let port = Port::server_of(&config);
        let ini = engine_ini(config.name(), &port, &Pmd::AfXdp, 1, None, None);
        assert!(ini.contains(&format!("addr={}\n", config.server_addr())));
        assert!(ini.contains("netmask=255.255.255.0\n"));
        assert!(ini.contains("lcore_mask=2\n"));
        assert!(ini.contains("no_huge=1\n"));
        assert!(ini.contains(&format!("iface={}\n", config.server_iface())));
        assert!(ini.contains(&format!("file_prefix=bypasslab-{}\n", config.name())));
        assert!(!ini.contains("huge_dir="));
        let huge = engine_ini(
            config.name(),
            &port,
            &Pmd::AfXdp,
            1,
            Some(Path::new("/run/x/hugepages")),
            Some(10),
        );
        assert!(huge.ends_with("net.inet.tcp.rexmit_min=10\nnet.inet.tcp.rexmit_slop=1\n"));
        assert!(ini.ends_with("net.inet.tcp.rexmit_slop=10\n"));
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
}
