//! Impairment on an engine host: netem on the egress of the host's link
//! interface, where the host's kernel has netem; otherwise none, said so.
//! The userspace emulator is the single-host testbed's (it forwards
//! between two of its namespaces). A bypass engine's transmit skips the
//! kernel's qdiscs (AF_XDP, a NIC bound to vfio-pci), so netem impairs only
//! the kernel engine.
//!
//! The qdisc is recorded (in the site's state directory) before it is
//! added, so a teardown from the record alone removes it.

use std::process::Command;

use contract::serve::{Netem, StartEngine};
use contract::EngineKind;

use crate::host::command;
use crate::impairment::probe_netem;
use crate::run::teardown::TeardownReport;
use crate::state::{read_json, write_json, StateDir, StateFile};

/// `tc qdisc replace dev <iface> root netem ...`.
#[must_use]
pub fn netem_command(iface: &str, netem: &Netem) -> Command {
    let mut c = command::cmd("tc", ["qdisc", "replace", "dev", iface, "root", "netem"]);
    c.args(["delay", &format!("{}us", netem.delay_us)]);
    if netem.jitter_us > 0 {
        c.arg(format!("{}us", netem.jitter_us));
    }
    c.args(["loss", &format!("{}%", netem.loss_percent)]);
    c
}

/// What impairs the engine's link, in one line, with netem added when
/// asked for and possible (recorded in `dir` first).
pub fn apply(dir: &StateDir, start: &StartEngine) -> String {
    if start.netem.is_some() && start.kind != EngineKind::Kernel {
        return format!(
            "none: the {} engine's transmit skips the kernel's qdiscs, so netem cannot impair it",
            start.kind
        );
    }
    apply_on(dir, &start.iface, start.netem.as_ref())
}

/// What impairs `iface`'s egress, in one line, with `netem` added when
/// asked for and possible (recorded in `dir`, made if need be, first).
pub fn apply_on(dir: &StateDir, iface: &str, netem: Option<&Netem>) -> String {
    let Some(netem) = netem else {
        return "none".to_owned();
    };
    let probe = probe_netem();
    if !probe.available {
        return format!("none: this host has no netem ({})", probe.detail);
    }
    let record = dir.file(StateFile::Netem);
    if let Err(e) = dir.create().and_then(|()| write_json(&record, &iface)) {
        return format!("none: recording the netem qdisc failed ({e})");
    }
    match command::run(&mut netem_command(iface, netem), "") {
        Ok(_) => format!(
            "netem on {iface}: {} µs delay, {} % loss, engine host egress",
            netem.delay_us, netem.loss_percent
        ),
        Err(e) => {
            dir.remove(StateFile::Netem);
            format!("none: adding netem failed ({e})")
        }
    }
}

/// Removes the netem qdisc a run recorded in `dir`, if any.
pub fn remove_recorded(dir: &StateDir, report: &mut TeardownReport) {
    let Ok(Some(iface)) = read_json::<String>(&dir.file(StateFile::Netem)) else {
        return;
    };
    let mut c = command::cmd("tc", ["qdisc", "del", "dev", &iface, "root"]);
    match command::run(&mut c, "") {
        Ok(_) => report.done.push(format!("removed netem from {iface}")),
        Err(e) if e.stderr().contains("Cannot find device") => {}
        Err(e) => report.problems.push(e.to_string()),
    }
    dir.remove(StateFile::Netem);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qdisc_goes_on_the_interface_egress() {
        let c = netem_command(
            "enp3s0",
            &Netem {
                delay_us: 100,
                jitter_us: 0,
                loss_percent: 1.0,
            },
        );
        assert_eq!(
            command::words(&c),
            [
                "tc", "qdisc", "replace", "dev", "enp3s0", "root", "netem", "delay", "100us",
                "loss", "1%"
            ]
        );
    }
}
