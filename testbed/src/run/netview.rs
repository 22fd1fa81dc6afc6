//! What the lifecycle needs to know of the testbed network, in its terms.

use crate::config::TestbedConfig;
use crate::impairment::Backend;
use crate::net::{self, NetStatus};

/// Whether the testbed network exists completely.
pub fn is_up(config: &TestbedConfig) -> bool {
    net::status(config).is_ok_and(|s| s.up)
}

/// One line: backend in force and what it was configured with.
pub fn describe_impairment(status: &NetStatus) -> String {
    let i = &status.impairment;
    match i.backend {
        None => "testbed not up".to_owned(),
        Some(Backend::None) => "none".to_owned(),
        Some(backend) => format!(
            "{backend}: {} µs delay, {} % loss, {}",
            i.configured.delay_us,
            i.configured.loss_percent,
            i.configured.direction.as_str()
        ),
    }
}

/// Loss observed on the impaired direction so far, percent.
pub fn observed_loss_percent(status: &NetStatus) -> Option<f64> {
    status
        .impairment
        .observed
        .as_ref()
        .and_then(|o| o.loss_percent)
}

/// Whether the link emulator recorded by `net up` runs (it is pinned to
/// `[cores] emulator`).
pub fn emulator_running(config: &TestbedConfig) -> bool {
    let path = config.state_dir().file(crate::state::StateFile::Net);
    net::state::NetState::load(&path)
        .ok()
        .flatten()
        .and_then(|s| s.emulator)
        .is_some_and(|e| e.process.is_alive())
}

/// The link emulator recorded by `net up`, if it no longer runs: its pid and
/// how it ended (known when it is this process's child, i.e. when this
/// supervisor brought the network up; otherwise "is gone").
pub fn emulator_ending(config: &TestbedConfig) -> Option<(u32, String)> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let path = config.state_dir().file(crate::state::StateFile::Net);
    let record = net::state::NetState::load(&path).ok()??.emulator?;
    if record.process.is_alive() {
        return None;
    }
    let how = match waitpid(
        nix::unistd::Pid::from_raw(i32::try_from(record.process.pid).unwrap_or(-1)),
        Some(WaitPidFlag::WNOHANG),
    ) {
        Ok(WaitStatus::Signaled(_, signal, _)) => format!("was killed by {}", signal.as_str()),
        Ok(WaitStatus::Exited(_, code)) => format!("exited with code {code}"),
        _ => "is gone".to_owned(),
    };
    Some((record.process.pid, how))
}
