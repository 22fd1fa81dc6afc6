//! One minimum retransmission timeout for every TCP stack of a run, so the
//! impaired rows can be read with the timers equal: how much of a
//! lossy-link advantage is bypass and how much is a timer.
//!
//! - Linux (the kernel engine in NS3, the kernel load generator in NS1):
//!   the `rto_min` of the route to the testbed subnet.
//! - FreeBSD (F-Stack): `net.inet.tcp.rexmit_min`, with the least slop
//!   FreeBSD takes, one tick = 1 ms (it adds `rexmit_slop` to every
//!   timeout and refuses 0).
//! - smoltcp (the dpdk engine): its sockets' minimum (`engine
//!   --rto-min-ms`, a setter of the patched smoltcp the workspace builds,
//!   see third_party/README.md); [`SMOLTCP_MIN_RTO_MS`] by default.

use std::net::Ipv4Addr;

use contract::EngineKind;
use serde::{Deserialize, Serialize};

use crate::config::TestbedConfig;
use crate::host::command::{self, CommandError};

/// smoltcp's own minimum RTO, ms (what the dpdk engine uses unless told).
pub const SMOLTCP_MIN_RTO_MS: u32 = 10;

/// The largest minimum every stack can take, ms (smoltcp caps its timeout
/// at 10 s).
pub const MAX_RTO_MIN_MS: u32 = 10_000;

/// An equal minimum RTO that cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum RtoError {
    /// A run on a remote host: no testbed routes to set it on.
    #[error("--rto-min-ms {0}: a run on a remote host has no testbed routes to set it on; over two hosts, set rto_min on each host's route to the link (ip route change <subnet> dev <nic> rto_min <ms>ms)")]
    NoTestbedRoutes(u32),
    /// A zero or absurd value.
    #[error("--rto-min-ms {0}: must be within 1..={MAX_RTO_MIN_MS}")]
    OutOfRange(u32),
    /// The route could not be changed.
    #[error("setting rto_min on the route of {iface} in {ns}: {source}")]
    Route {
        /// The namespace.
        ns: String,
        /// The interface.
        iface: String,
        /// ip's failure.
        #[source]
        source: Box<CommandError>,
    },
}

/// A connected route whose `rto_min` a run changed (put back on stop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunedRoute {
    /// Its namespace.
    pub ns: String,
    /// Its interface.
    pub iface: String,
    /// The interface's address (the route's source).
    pub src: Ipv4Addr,
}

/// Whether every stack of a run can take `ms`.
///
/// # Errors
/// [`RtoError::OutOfRange`].
pub fn check(ms: u32) -> Result<(), RtoError> {
    if ms == 0 || ms > MAX_RTO_MIN_MS {
        return Err(RtoError::OutOfRange(ms));
    }
    Ok(())
}

/// The engine's own `--rto-min-ms`: only the dpdk engine's stack takes its
/// minimum from the command line (the kernel's is the route's, F-Stack's is
/// in its config.ini).
#[must_use]
pub fn engine_flag(engine: EngineKind, rto_min_ms: Option<u32>) -> Option<u32> {
    rto_min_ms.filter(|_| engine == EngineKind::Dpdk)
}

/// `ip route replace <subnet> dev <iface> proto kernel scope link src <src> [rto_min <ms>ms]`.
fn route(cfg: &TestbedConfig, r: &TunedRoute, rto_min_ms: Option<u32>) -> std::process::Command {
    let subnet = format!("{}/{}", cfg.subnet(), cfg.prefix_len());
    let src = r.src.to_string();
    let mut c = command::cmd(
        "ip",
        [
            "-n", &r.ns, "route", "replace", &subnet, "dev", &r.iface, "proto", "kernel", "scope",
            "link", "src", &src,
        ],
    );
    if let Some(ms) = rto_min_ms {
        c.args(["rto_min", &format!("{ms}ms")]);
    }
    c
}

/// Sets the route's `rto_min` to `ms`.
///
/// # Errors
/// [`RtoError::Route`].
pub fn tune(cfg: &TestbedConfig, r: &TunedRoute, ms: u32) -> Result<(), RtoError> {
    command::run(&mut route(cfg, r, Some(ms)), "")
        .map(|_| ())
        .map_err(|source| RtoError::Route {
            ns: r.ns.clone(),
            iface: r.iface.clone(),
            source: Box::new(source),
        })
}

/// Puts the route back as the kernel makes it (no `rto_min`). A route that
/// went with its namespace or address is already as it should be.
pub fn untune(cfg: &TestbedConfig, r: &TunedRoute) {
    let _ = command::run(&mut route(cfg, r, None), "");
}

/// FreeBSD's sysctls for an equal minimum of `ms` (F-Stack's config.ini
/// `[freebsd.sysctl]`), or its defaults with the 10 ms slop the testbed
/// uses when no minimum is asked for.
#[must_use]
pub fn freebsd_sysctls(rto_min_ms: Option<u32>) -> String {
    match rto_min_ms {
        // One tick (1 ms at hz=1000) is the least slop FreeBSD takes: its
        // sysctl refuses 0 (`sysctl_msec_to_ticks` wants ≥ 1 tick), and a
        // refused write leaves the 200 ms default slop in force.
        Some(ms) => format!("net.inet.tcp.rexmit_min={ms}\nnet.inet.tcp.rexmit_slop=1\n"),
        None => "net.inet.tcp.rexmit_slop=10\n".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stack_takes_any_minimum_in_range_and_only_smoltcp_by_flag() {
        assert!(check(50).is_ok());
        assert!(check(MAX_RTO_MIN_MS).is_ok());
        assert!(matches!(check(0), Err(RtoError::OutOfRange(0))));
        assert!(matches!(
            check(MAX_RTO_MIN_MS + 1),
            Err(RtoError::OutOfRange(_))
        ));
        assert_eq!(engine_flag(EngineKind::Dpdk, Some(50)), Some(50));
        assert_eq!(engine_flag(EngineKind::Kernel, Some(50)), None);
        assert_eq!(engine_flag(EngineKind::Fstack, Some(50)), None);
        assert_eq!(engine_flag(EngineKind::Dpdk, None), None);
        assert!(freebsd_sysctls(Some(10)).contains("rexmit_min=10\nnet.inet.tcp.rexmit_slop=1\n"));
    }

    #[test]
    fn the_route_command_names_the_subnet_and_the_minimum() {
        let cfg = TestbedConfig::default();
        let r = TunedRoute {
            ns: cfg.client_ns(),
            iface: cfg.client_iface(),
            src: cfg.client_addr(),
        };
        let words = command::words(&route(&cfg, &r, Some(10)));
        assert!(words.join(" ").ends_with(&format!(
            "route replace 10.77.0.0/24 dev {} proto kernel scope link src 10.77.0.1 rto_min 10ms",
            cfg.client_iface()
        )));
        assert!(!command::words(&route(&cfg, &r, None)).contains(&"rto_min".to_owned()));
    }
}
