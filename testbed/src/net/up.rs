//! `net up`: the ordered side effects that build the [`Topology`], each
//! object recorded in the state file before it is created.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::links::{link_info, ns_exists};
use super::state::{LinkRecord, NetState, QdiscKind, QdiscRecord};
use super::status::{status, NetStatus};
use super::{is_root, lock, NetError};
use crate::config::TestbedConfig;
use crate::host::command;
use crate::impairment::{self, launch, Backend};
use crate::placement::Node;
use crate::state::StateFile;
use crate::topology::{End, Iface, Topology, Veth, Wiring};

/// Builds (or completes) the testbed. Idempotent: a second call with the
/// same config changes nothing; with a changed impairment it re-applies it.
///
/// # Errors
/// The step that failed (what was done before it stays recorded, so `down`
/// removes it).
pub fn up(cfg: &TestbedConfig) -> Result<NetStatus, NetError> {
    if !is_root() {
        return Err(NetError::NotRoot);
    }
    let _lock = lock(cfg)?;
    let path = cfg.state_dir().file(StateFile::Net);
    let st = NetState::load(&path)
        .map_err(|source| NetError::State {
            path: path.clone(),
            source,
        })?
        .unwrap_or_default();
    // Decide the backend before the first side effect.
    let choice = impairment::choose(cfg.impairment())?;
    let emulated = choice.backend == Backend::Emulator;
    let topology = Topology::of(cfg, emulated);
    let mut b = Builder { cfg, st, path };
    b.st.testbed = cfg.name().to_string();

    // 1. Namespaces, loopback up, IPv6 off.
    for (_, ns) in &topology.namespaces {
        b.namespace(ns)?;
    }
    for (_, ns) in &topology.namespaces {
        b.namespace_basics(ns)?;
    }
    // 2. A backend switch away from the emulator stops it first.
    if !emulated {
        b.stop_emulator()?;
    }
    // 3. The bridge and the veth pairs; links of the other wiring go.
    b.bridge(&topology.bridge)?;
    for veth in &topology.veths {
        b.veth(veth)?;
    }
    for iface in &topology.absent {
        b.remove_link(iface)?;
    }
    // 4. Wiring: every end without offloads, NS2's ends on or off the
    //    bridge, NS1's and NS3's with their addresses.
    b.configure(&topology.bridge, None)?;
    for end in topology.ends() {
        b.configure_end(end, &topology.bridge.name)?;
    }
    // 5. Impairment: netem on the egress toward the receiving side.
    let dir = cfg.impairment().direction;
    let mut netem_devs = Vec::new();
    if choice.backend == Backend::Netem {
        if dir.impairs_from_ns3() {
            netem_devs.push(cfg.client_peer_iface());
        }
        if dir.impairs_to_ns3() {
            netem_devs.push(cfg.server_peer_iface());
        }
    }
    b.clear_qdiscs(&netem_devs)?;
    b.netem(&netem_devs)?;
    if emulated {
        b.start_emulator()?;
    }
    b.st.backend = Some(choice.backend);
    b.st.backend_reason = Some(choice.reason);
    b.save()?;
    status(cfg)
}

/// The ordered side effects of `up`, with the state saved after each record.
struct Builder<'a> {
    cfg: &'a TestbedConfig,
    st: NetState,
    path: PathBuf,
}

impl Builder<'_> {
    fn save(&self) -> Result<(), NetError> {
        self.st.save(&self.path).map_err(|source| NetError::State {
            path: self.path.clone(),
            source,
        })
    }

    fn run(&self, step: impl Into<String>, mut c: Command, hint: &str) -> Result<String, NetError> {
        command::run(&mut c, hint).map_err(|source| NetError::Step {
            step: step.into(),
            source,
        })
    }

    fn not_ours_link(&self, iface: &Iface) -> NetError {
        NetError::NotOurs {
            kind: "interface",
            name: format!("{} (in namespace {})", iface.name, iface.ns),
            testbed: self.cfg.name().to_string(),
            remove: format!("ip -n {} link del {}", iface.ns, iface.name),
        }
    }

    /// Creates namespace `ns` unless this testbed already owns it.
    fn namespace(&mut self, ns: &str) -> Result<(), NetError> {
        if ns_exists(ns) {
            if self.st.owns_namespace(ns) {
                return Ok(());
            }
            return Err(NetError::NotOurs {
                kind: "network namespace",
                name: ns.to_string(),
                testbed: self.cfg.name().to_string(),
                remove: format!("ip netns del {ns}"),
            });
        }
        if !self.st.owns_namespace(ns) {
            self.st.namespaces.push(ns.to_string());
            self.save()?;
        }
        self.run(
            format!("create network namespace {ns}"),
            command::cmd("ip", ["netns", "add", ns]),
            "check that /run/netns is writable and that namespaces are enabled (supervisor doctor)",
        )?;
        Ok(())
    }

    /// Brings up loopback and turns IPv6 off, so no router solicitation or
    /// DAD frame disturbs the counts. Widens the local port range and lets
    /// connects reuse ports in TIME-WAIT: a short-connection run closes from
    /// the client side, each closed connection holds its port for 60 s, and
    /// 100 000 of them in a minute need more than the default 28 232 ports.
    fn namespace_basics(&self, ns: &str) -> Result<(), NetError> {
        self.run(
            format!("bring up loopback in {ns}"),
            command::cmd("ip", ["-n", ns, "link", "set", "lo", "up"]),
            "",
        )?;
        let mut c = Node::in_namespace(ns, None).command("sysctl");
        c.args([
            "-q",
            "-w",
            "net.ipv4.ip_local_port_range=1024 65535",
            "net.ipv4.tcp_tw_reuse=1",
        ]);
        self.run(format!("widen the local ports of {ns}"), c, "")?;
        if Path::new("/proc/sys/net/ipv6").exists() {
            let mut c = Node::in_namespace(ns, None).command("sysctl");
            c.args([
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
            self.run(format!("disable IPv6 in {ns}"), c, "")?;
        }
        Ok(())
    }

    fn record_link(&mut self, iface: &Iface) -> Result<(), NetError> {
        if !self.st.owns_link(&iface.ns, &iface.name) {
            self.st.links.push(LinkRecord {
                ns: iface.ns.clone(),
                name: iface.name.clone(),
            });
            self.save()?;
        }
        Ok(())
    }

    fn bridge(&mut self, br: &Iface) -> Result<(), NetError> {
        if link_info(&br.ns, &br.name).is_some() {
            return if self.st.owns_link(&br.ns, &br.name) {
                Ok(())
            } else {
                Err(self.not_ours_link(br))
            };
        }
        self.record_link(br)?;
        self.run(
            format!("create bridge {} in {}", br.name, br.ns),
            command::cmd(
                "ip",
                [
                    "-n",
                    &br.ns,
                    "link",
                    "add",
                    &br.name,
                    "type",
                    "bridge",
                    "stp_state",
                    "0",
                ],
            ),
            "check that the kernel has bridge support (supervisor doctor)",
        )?;
        Ok(())
    }

    /// Creates the veth pair (completing nothing: half a pair is removed
    /// and made again).
    fn veth(&mut self, veth: &Veth) -> Result<(), NetError> {
        let (a, b) = (&veth.a.iface, &veth.b.iface);
        let have_a = link_info(&a.ns, &a.name).is_some();
        let have_b = link_info(&b.ns, &b.name).is_some();
        for (iface, have) in [(a, have_a), (b, have_b)] {
            if have && !self.st.owns_link(&iface.ns, &iface.name) {
                return Err(self.not_ours_link(iface));
            }
        }
        if have_a && have_b {
            return Ok(());
        }
        for (iface, have) in [(a, have_a), (b, have_b)] {
            if have {
                self.run(
                    format!("remove half veth pair {} in {}", iface.name, iface.ns),
                    command::cmd("ip", ["-n", &iface.ns, "link", "del", &iface.name]),
                    "",
                )?;
            }
        }
        self.record_link(a)?;
        self.record_link(b)?;
        let mtu = self.cfg.mtu().to_string();
        let mut args = vec![
            "-n", &a.ns, "link", "add", &a.name, "mtu", &mtu, "type", "veth", "peer", "name",
            &b.name, "mtu", &mtu,
        ];
        if a.ns != b.ns {
            args.extend(["netns", &b.ns]);
        }
        self.run(
            format!(
                "create veth pair {} ({}) - {} ({})",
                a.name, a.ns, b.name, b.ns
            ),
            command::cmd("ip", args),
            "check that the kernel has veth support (supervisor doctor)",
        )?;
        Ok(())
    }

    /// Removes a recorded link if it exists (a backend switch).
    fn remove_link(&mut self, iface: &Iface) -> Result<(), NetError> {
        if self.st.owns_link(&iface.ns, &iface.name) && link_info(&iface.ns, &iface.name).is_some()
        {
            self.run(
                format!("remove {} in {}", iface.name, iface.ns),
                command::cmd("ip", ["-n", &iface.ns, "link", "del", &iface.name]),
                "",
            )?;
        }
        Ok(())
    }

    /// An end as its wiring says: on or off the bridge, or addressed.
    fn configure_end(&self, end: &End, bridge: &str) -> Result<(), NetError> {
        match &end.wiring {
            Wiring::BridgePort => self.configure(&end.iface, Some(Some(bridge))),
            Wiring::Detached => self.configure(&end.iface, Some(None)),
            Wiring::Address(addr) => {
                self.configure(&end.iface, None)?;
                self.address(&end.iface, *addr)
            }
        }
    }

    /// MTU, offloads off, up; `master` sets or clears the bridge.
    fn configure(&self, iface: &Iface, master: Option<Option<&str>>) -> Result<(), NetError> {
        let (ns, dev) = (iface.ns.as_str(), iface.name.as_str());
        let mtu = self.cfg.mtu().to_string();
        self.run(
            format!("set MTU of {dev} in {ns}"),
            command::cmd("ip", ["-n", ns, "link", "set", dev, "mtu", &mtu]),
            "",
        )?;
        // Checksums and segmentation left to "hardware" would reach a
        // userspace stack or the emulator as incomplete frames.
        let mut c = Node::in_namespace(ns, None).command("ethtool");
        c.args([
            "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
        ]);
        self.run(
            format!("turn off offloads on {dev} in {ns}"),
            c,
            "check that ethtool is installed (scripts/setup)",
        )?;
        match master {
            Some(Some(br)) => {
                self.run(
                    format!("attach {dev} to bridge {br} in {ns}"),
                    command::cmd("ip", ["-n", ns, "link", "set", dev, "master", br]),
                    "",
                )?;
            }
            Some(None) if link_info(ns, dev).is_some_and(|l| l.master.is_some()) => {
                self.run(
                    format!("detach {dev} from the bridge in {ns}"),
                    command::cmd("ip", ["-n", ns, "link", "set", dev, "nomaster"]),
                    "",
                )?;
            }
            Some(None) | None => {}
        }
        self.run(
            format!("bring up {dev} in {ns}"),
            command::cmd("ip", ["-n", ns, "link", "set", dev, "up"]),
            "",
        )?;
        Ok(())
    }

    fn address(&self, iface: &Iface, addr: std::net::Ipv4Addr) -> Result<(), NetError> {
        let a = format!("{addr}/{}", self.cfg.prefix_len());
        self.run(
            format!("assign {a} to {} in {}", iface.name, iface.ns),
            command::cmd(
                "ip",
                ["-n", &iface.ns, "addr", "replace", &a, "dev", &iface.name],
            ),
            "",
        )?;
        Ok(())
    }

    /// Removes every recorded netem qdisc not in `keep`.
    fn clear_qdiscs(&mut self, keep: &[String]) -> Result<(), NetError> {
        let mut kept = Vec::new();
        for q in std::mem::take(&mut self.st.qdiscs) {
            if keep.contains(&q.dev) {
                kept.push(q);
                continue;
            }
            if link_info(&q.ns, &q.dev).is_some() {
                // The qdisc may already be gone; its absence is the goal.
                let mut c =
                    command::cmd("tc", ["-n", &q.ns, "qdisc", "del", "dev", &q.dev, "root"]);
                let _ = command::run(&mut c, "");
            }
        }
        self.st.qdiscs = kept;
        self.save()
    }

    fn netem(&mut self, devs: &[String]) -> Result<(), NetError> {
        let ns = self.cfg.bridge_ns();
        for dev in devs {
            if !self.st.qdiscs.iter().any(|q| &q.dev == dev) {
                self.st.qdiscs.push(QdiscRecord {
                    ns: ns.clone(),
                    dev: dev.clone(),
                    kind: QdiscKind::Netem,
                });
                self.save()?;
            }
            self.run(
                format!("install netem on {dev} in {ns}"),
                impairment::netem_command(&ns, dev, self.cfg.impairment()),
                "set impairment.backend = \"emulator\" if this kernel lacks netem",
            )?;
        }
        Ok(())
    }

    fn stop_emulator(&mut self) -> Result<(), NetError> {
        if let Some(p) = self.st.emulator.clone() {
            p.process
                .stop(Duration::from_secs(2))
                .map_err(NetError::StopEmulator)?;
            self.st.emulator = None;
            self.save()?;
        }
        Ok(())
    }

    fn start_emulator(&mut self) -> Result<(), NetError> {
        let failed = |cfg: &TestbedConfig, source| NetError::StartEmulator {
            ns: cfg.bridge_ns(),
            log: cfg.state_dir().file(StateFile::EmulatorLog),
            source,
        };
        let argv = launch::argv(self.cfg).map_err(|e| failed(self.cfg, e))?;
        if let Some(p) = &self.st.emulator {
            if p.args == argv && p.process.is_alive() {
                return Ok(());
            }
            self.stop_emulator()?;
        }
        let started = launch::spawn(self.cfg, argv).map_err(|e| failed(self.cfg, e))?;
        self.st.emulator = Some(started.record.clone());
        self.save()?;
        if let Err(e) = started.wait_ready(self.cfg) {
            if let Some(p) = self.st.emulator.take() {
                let _ = p.process.stop(Duration::from_secs(2));
            }
            self.save()?;
            return Err(failed(self.cfg, e));
        }
        Ok(())
    }
}
