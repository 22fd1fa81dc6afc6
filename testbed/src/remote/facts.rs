//! What a host says of itself to an orchestrator: its name, its kernel,
//! and its `doctor` in the contract's words.

use contract::serve::{HostCheck, HostReport};

use crate::doctor::DoctorReport;

/// This host's name.
#[must_use]
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "(unknown)".to_owned())
}

/// This host's kernel release, as `uname -r` prints it.
#[must_use]
pub fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "(unknown)".to_owned())
}

/// A doctor report as the protocol carries it.
#[must_use]
pub fn report(doctor: &DoctorReport) -> HostReport {
    HostReport {
        checks: doctor
            .checks
            .iter()
            .map(|c| HostCheck {
                name: c.name.to_owned(),
                ok: c.ok,
                detail: c.detail.clone(),
                consequence: c.consequence.clone(),
            })
            .collect(),
        engines: doctor.engines.clone(),
    }
}
