//! `net status`: what exists of the [`Topology`], the impairment in force
//! and the loss observed on the impaired direction.

use std::path::PathBuf;

use serde::Serialize;

use super::links::{link_info, ns_exists};
use super::state::NetState;
use super::NetError;
use crate::config::{Impairment, TestbedConfig};
use crate::impairment::emulator::{DirStats, EmulatorStats};
use crate::impairment::{self, Backend};
use crate::state::StateFile;
use crate::topology::Topology;

/// One namespace of the testbed.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceStatus {
    pub role: &'static str,
    pub name: String,
    pub exists: bool,
    /// Recorded as created by this testbed.
    pub ours: bool,
}

/// One link of the testbed.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    pub ns: String,
    pub name: String,
    pub exists: bool,
    pub up: bool,
    pub mtu: u32,
    pub master: Option<String>,
}

/// Loss observed in the impaired direction(s).
#[derive(Debug, Clone, Serialize)]
pub struct ObservedLoss {
    /// Where the counts come from.
    pub source: String,
    pub frames_seen: u64,
    pub frames_dropped: u64,
    /// `frames_dropped / frames_seen` in percent; None before any frame.
    pub loss_percent: Option<f64>,
}

/// The emulator process.
#[derive(Debug, Clone, Serialize)]
pub struct EmulatorStatus {
    pub pid: u32,
    pub running: bool,
    pub stats: Option<EmulatorStats>,
}

/// The impairment in force.
#[derive(Debug, Clone, Serialize)]
pub struct ImpairmentStatus {
    /// netem, emulator or none; None while the testbed is not up.
    pub backend: Option<Backend>,
    pub reason: Option<String>,
    pub configured: Impairment,
    pub emulator: Option<EmulatorStatus>,
    pub observed: Option<ObservedLoss>,
}

/// What exists of the testbed.
#[derive(Debug, Clone, Serialize)]
pub struct NetStatus {
    pub testbed: String,
    pub state_file: PathBuf,
    /// Every namespace and link exists (and the emulator runs if in force).
    pub up: bool,
    pub namespaces: Vec<NamespaceStatus>,
    pub links: Vec<LinkStatus>,
    pub client_addr: std::net::Ipv4Addr,
    pub server_addr: std::net::Ipv4Addr,
    pub prefix_len: u8,
    pub mtu: u32,
    pub impairment: ImpairmentStatus,
}

fn add(a: &DirStats, sum: &mut (u64, u64)) {
    sum.0 += a.frames_in;
    sum.1 += a.dropped;
}

/// Shows what exists, the impairment in force and the observed loss.
///
/// # Errors
/// The state file cannot be read.
pub fn status(cfg: &TestbedConfig) -> Result<NetStatus, NetError> {
    let path = cfg.state_dir().file(StateFile::Net);
    let st = NetState::load(&path).map_err(|source| NetError::State {
        path: path.clone(),
        source,
    })?;
    let st = st.unwrap_or_default();
    let backend = st.backend;
    let emulated = backend == Some(Backend::Emulator);
    let topology = Topology::of(cfg, emulated);
    let namespaces: Vec<NamespaceStatus> = topology
        .namespaces
        .iter()
        .map(|(role, name)| NamespaceStatus {
            role: role.label(),
            exists: ns_exists(name),
            ours: st.owns_namespace(name),
            name: name.clone(),
        })
        .collect();
    let links: Vec<LinkStatus> = topology
        .links()
        .into_iter()
        .map(|iface| {
            let info = link_info(&iface.ns, &iface.name);
            LinkStatus {
                exists: info.is_some(),
                up: info.as_ref().is_some_and(|i| i.up),
                mtu: info.as_ref().map_or(0, |i| i.mtu),
                master: info.and_then(|i| i.master),
                ns: iface.ns.clone(),
                name: iface.name.clone(),
            }
        })
        .collect();
    let emulator = st.emulator.as_ref().map(|p| EmulatorStatus {
        pid: p.process.pid,
        running: p.process.is_alive(),
        stats: EmulatorStats::read(&p.stats_file).ok(),
    });
    let dir = cfg.impairment().direction;
    let observed = match backend {
        Some(Backend::Emulator) => emulator.as_ref().and_then(|e| e.stats.as_ref()).map(|s| {
            let mut sum = (0, 0);
            if dir.impairs_to_ns3() {
                add(&s.to_ns3, &mut sum);
            }
            if dir.impairs_from_ns3() {
                add(&s.from_ns3, &mut sum);
            }
            observed(format!("emulator counters ({dir})"), sum)
        }),
        Some(Backend::Netem) => {
            let mut sum = (0, 0);
            for q in &st.qdiscs {
                if let Some((sent, dropped)) = impairment::qdisc_counters(&q.ns, &q.dev) {
                    sum.0 += sent + dropped;
                    sum.1 += dropped;
                }
            }
            Some(observed(format!("tc -s netem counters ({dir})"), sum))
        }
        _ => None,
    };
    let up = namespaces.iter().all(|n| n.exists && n.ours)
        && links.iter().all(|l| l.exists && l.up)
        && (!emulated || emulator.as_ref().is_some_and(|e| e.running));
    Ok(NetStatus {
        testbed: cfg.name().to_string(),
        state_file: path,
        up,
        namespaces,
        links,
        client_addr: cfg.client_addr(),
        server_addr: cfg.server_addr(),
        prefix_len: cfg.prefix_len(),
        mtu: cfg.mtu(),
        impairment: ImpairmentStatus {
            backend,
            reason: st.backend_reason.clone(),
            configured: cfg.impairment().clone(),
            emulator,
            observed,
        },
    })
}

#[allow(clippy::cast_precision_loss)]
fn observed(source: String, (seen, dropped): (u64, u64)) -> ObservedLoss {
    ObservedLoss {
        source,
        frames_seen: seen,
        frames_dropped: dropped,
        loss_percent: (seen > 0).then(|| dropped as f64 * 100.0 / seen as f64),
    }
}

impl std::fmt::Display for NetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "testbed {}: {}",
            self.testbed,
            if self.up { "up" } else { "not (fully) up" }
        )?;
        for n in &self.namespaces {
            let what = match (n.exists, n.ours) {
                (true, true) => "exists",
                (true, false) => "exists, NOT created by this testbed",
                (false, _) => "absent",
            };
            writeln!(f, "  namespace {:<14} {:<12} {what}", n.name, n.role)?;
        }
        for l in &self.links {
            if l.exists {
                writeln!(
                    f,
                    "  link {:<14} in {:<12} {} mtu {}{}",
                    l.name,
                    l.ns,
                    if l.up { "up" } else { "down" },
                    l.mtu,
                    l.master
                        .as_deref()
                        .map(|m| format!(" master {m}"))
                        .unwrap_or_default()
                )?;
            } else {
                writeln!(f, "  link {:<14} in {:<12} absent", l.name, l.ns)?;
            }
        }
        writeln!(
            f,
            "  addresses client {}/{} server {}/{}",
            self.client_addr, self.prefix_len, self.server_addr, self.prefix_len
        )?;
        let i = &self.impairment;
        let c = &i.configured;
        writeln!(
            f,
            "  impairment backend {} ({}), configured delay {} us jitter {} us loss {} % direction {}",
            i.backend.map_or("none in force", Backend::as_str),
            i.reason.as_deref().unwrap_or("testbed not up"),
            c.delay_us,
            c.jitter_us,
            c.loss_percent,
            c.direction
        )?;
        if let Some(e) = &i.emulator {
            writeln!(
                f,
                "  emulator pid {} {} mode {}",
                e.pid,
                if e.running { "running" } else { "NOT running" },
                c.emulator_mode.as_str()
            )?;
        }
        if let Some(o) = &i.observed {
            match o.loss_percent {
                Some(p) => writeln!(
                    f,
                    "  observed loss {p:.3} % ({} of {} frames, {})",
                    o.frames_dropped, o.frames_seen, o.source
                )?,
                None => writeln!(f, "  observed loss: no frames yet ({})", o.source)?,
            }
        }
        Ok(())
    }
}
