//! Link impairment backends and how one is chosen.
//!
//! Impairment lives in NS2, never on NS3's own interface: a bypass engine's
//! AF_XDP transmit skips NS3's qdiscs, so a qdisc there would impair only the
//! kernel engine. With netem the qdisc sits on the egress of NS2's bridge
//! port toward the receiving side; with the emulator a userspace process
//! forwards frames between the bridge and NS3's link (see
//! [`emulator`]).

pub mod emulator;
pub mod launch;

use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::config::{BackendChoice, Impairment};
use crate::host::command::{self, CommandError};

/// The backend actually in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// The kernel's netem qdisc.
    Netem,
    /// The userspace link emulator.
    Emulator,
    /// No impairment.
    None,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Backend {
    /// The config spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Netem => "netem",
            Backend::Emulator => "emulator",
            Backend::None => "none",
        }
    }
}

/// What the host's kernel offers for netem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetemProbe {
    pub available: bool,
    /// The probe's evidence (tc's stderr when it failed).
    pub detail: String,
}

/// Tries a netem qdisc on the loopback of a throwaway network namespace
/// (`unshare -n`), which disappears with the probe process.
pub fn probe_netem() -> NetemProbe {
    let mut c = command::cmd(
        "unshare",
        [
            "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ],
    );
    match command::run(&mut c, "") {
        Ok(_) => NetemProbe {
            available: true,
            detail: "tc accepted a netem qdisc".into(),
        },
        Err(e) => NetemProbe {
            available: false,
            detail: match &e {
                CommandError::Failed { stderr, .. } => stderr.clone(),
                CommandError::Spawn { .. } | CommandError::TimedOut { .. } => e.to_string(),
            },
        },
    }
}

/// Why a backend was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub backend: Backend,
    pub reason: String,
}

/// Errors choosing a backend.
#[derive(Debug, thiserror::Error)]
pub enum ChooseError {
    /// netem was asked for explicitly and this kernel has none.
    #[error("impairment.backend = \"netem\" but this kernel has no netem ({detail}); set impairment.backend = \"emulator\" or \"auto\"")]
    NetemMissing { detail: String },
}

/// Resolves `auto`: netem where the kernel has it, else the emulator.
pub fn choose(imp: &Impairment) -> Result<Choice, ChooseError> {
    match imp.backend {
        BackendChoice::None => Ok(Choice {
            backend: Backend::None,
            reason: "impairment.backend = \"none\"".into(),
        }),
        BackendChoice::Emulator => Ok(Choice {
            backend: Backend::Emulator,
            reason: "impairment.backend = \"emulator\"".into(),
        }),
        BackendChoice::Netem => {
            let p = probe_netem();
            if p.available {
                Ok(Choice {
                    backend: Backend::Netem,
                    reason: "impairment.backend = \"netem\"".into(),
                })
            } else {
                Err(ChooseError::NetemMissing { detail: p.detail })
            }
        }
        BackendChoice::Auto => {
            let p = probe_netem();
            Ok(if p.available {
                Choice {
                    backend: Backend::Netem,
                    reason: "auto: the kernel has netem".into(),
                }
            } else {
                Choice {
                    backend: Backend::Emulator,
                    reason: format!(
                        "auto: the kernel has no netem ({}), using the userspace emulator",
                        p.detail
                    ),
                }
            })
        }
    }
}

/// The `tc` command that installs netem with `imp` on `dev` in `ns`.
pub fn netem_command(ns: &str, dev: &str, imp: &Impairment) -> Command {
    let mut c = command::cmd(
        "tc",
        ["-n", ns, "qdisc", "replace", "dev", dev, "root", "netem"],
    );
    c.args(["delay", &format!("{}us", imp.delay_us)]);
    if imp.jitter_us > 0 {
        c.arg(format!("{}us", imp.jitter_us));
    }
    c.args(["loss", &format!("{}%", imp.loss_percent)]);
    c
}

/// Packets sent and dropped by the root qdisc of `dev`, from `tc -s`.
pub fn qdisc_counters(ns: &str, dev: &str) -> Option<(u64, u64)> {
    let mut c = command::cmd("tc", ["-n", ns, "-s", "qdisc", "show", "dev", dev]);
    let out = command::run(&mut c, "").ok()?;
    parse_tc_stats(&out)
}

/// Parses `Sent 1234 bytes 10 pkt (dropped 1, overlimits 0 requeues 0)`.
fn parse_tc_stats(out: &str) -> Option<(u64, u64)> {
    let line = out.lines().find(|l| l.trim_start().starts_with("Sent "))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let pkt = words.iter().position(|w| *w == "pkt")?;
    let sent = words.get(pkt.checked_sub(1)?)?.parse().ok()?;
    let dropped = words
        .iter()
        .position(|w| *w == "(dropped")
        .and_then(|i| words.get(i + 1))
        .and_then(|w| w.trim_end_matches(',').parse().ok())
        .unwrap_or(0);
    Some((sent, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tc_counters() {
        let out = "qdisc netem 8001: root refcnt 2 limit 1000 delay 100us loss 1%\n Sent 1234 bytes 10 pkt (dropped 1, overlimits 0 requeues 0)\n backlog 0b 0p requeues 0\n";
        assert_eq!(parse_tc_stats(out), Some((10, 1)));
        assert_eq!(parse_tc_stats("garbage"), None);
    }
}
