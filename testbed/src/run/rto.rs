//! One minimum retransmission timeout for every TCP stack of a run, so the
//! impaired rows can be read with the timers equal: how much of a
//! lossy-link advantage is bypass and how much is a timer.
//!
//! - Linux (the kernel engine in NS3, the kernel load generator in NS1):
//!   the `rto_min` of the route to the testbed subnet.
//! - FreeBSD (F-Stack): `net.inet.tcp.rexmit_min`, with no slop added
//!   (FreeBSD adds `rexmit_slop` to every timeout).
//! - smoltcp (the dpdk engine): fixed at [`SMOLTCP_MIN_RTO_MS`]; another
//!   value is refused, naming the stack.

use std::net::Ipv4Addr;

use contract::EngineKind;
use serde::{Deserialize, Serialize};

use crate::config::TestbedConfig;
use crate::host::command::{self, CommandError};

/// smoltcp's minimum RTO, ms: a constant of the crate, not a setting.
pub const SMOLTCP_MIN_RTO_MS: u32 = 10;

/// An equal minimum RTO that cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum RtoError {
    /// A stack whose minimum is fixed at another value.
    #[error("--rto-min-ms {asked}: the {engine} engine's TCP stack (smoltcp) has a fixed minimum RTO of {SMOLTCP_MIN_RTO_MS} ms; give {SMOLTCP_MIN_RTO_MS}, or leave the stacks' own")]
    Fixed {
        /// The engine.
        engine: EngineKind,
        /// The value asked for.
        asked: u32,
    },
    /// A zero or absurd value.
    #[error("--rto-min-ms {0}: must be within 1..=60000")]
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

/// Whether every stack of a run with `engine` can take `ms`.
///
/// # Errors
/// [`RtoError`] naming the stack that cannot.
pub fn check(engine: EngineKind, ms: u32) -> Result<(), RtoError> {
    if ms == 0 || ms > 60_000 {
        return Err(RtoError::OutOfRange(ms));
    }
    if engine == EngineKind::Dpdk && ms != SMOLTCP_MIN_RTO_MS {
        return Err(RtoError::Fixed { engine, asked: ms });
    }
    Ok(())
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
        Some(ms) => format!("net.inet.tcp.rexmit_min={ms}\nnet.inet.tcp.rexmit_slop=0\n"),
        None => "net.inet.tcp.rexmit_slop=10\n".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoltcp_takes_only_its_own_minimum() {
        assert!(check(EngineKind::Dpdk, 10).is_ok());
        assert!(matches!(
            check(EngineKind::Dpdk, 50),
            Err(RtoError::Fixed { asked: 50, .. })
        ));
        assert!(check(EngineKind::Kernel, 50).is_ok());
        assert!(check(EngineKind::Fstack, 5).is_ok());
        assert!(matches!(
            check(EngineKind::Kernel, 0),
            Err(RtoError::OutOfRange(0))
        ));
        assert!(freebsd_sysctls(Some(10)).contains("rexmit_min=10\nnet.inet.tcp.rexmit_slop=0"));
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
