//! Removing what a run recorded, in reverse order of creation: used by a
//! live run's teardown and for a crashed run's leftovers alike, so the two
//! can never differ.

use std::fs;

use super::attach::recorded_loadgens;
use super::bypass;
pub use super::report::TeardownReport;
use super::state::RunState;
use crate::config::TestbedConfig;
use crate::host::hugepages;
use crate::host::process::ProcessId;
use crate::net;
use crate::state::{StateDir, StateFile};

/// A one-line list of what a dead run recorded.
#[must_use]
pub fn describe_leftovers(state: &RunState) -> String {
    let mut parts = Vec::new();
    if let Some(engine) = state.engine.filter(ProcessId::is_alive) {
        parts.push(format!("engine pid {} still running", engine.pid));
    }
    if let Some(seg) = state.segment.as_ref().filter(|p| p.exists()) {
        parts.push(format!("segment {}", seg.display()));
    }
    if state.created_network {
        parts.push("testbed network".to_owned());
    }
    if state.hugepages.added_pages > 0 || state.hugepages.mounted_at.is_some() {
        parts.push("hugepage reservation".to_owned());
    }
    if let Some(nic) = &state.pci_device {
        parts.push(format!(
            "PCI NIC {} for {} (its driver before: {})",
            nic.address,
            nic.driver,
            nic.original_driver.as_deref().unwrap_or("none")
        ));
    }
    if parts.is_empty() {
        parts.push("only the run state file".to_owned());
    }
    parts.join(", ")
}

/// Removes everything `state` records of a run of testbed `config`, in
/// reverse order of creation.
pub fn teardown_recorded(config: &TestbedConfig, state: &RunState, report: &mut TeardownReport) {
    teardown_record(Some(config), state, report);
}

/// Removes everything `state` records, in reverse order of creation; the
/// testbed network too when the run brought up `network`'s. A remote
/// host's run (`serve`) has no testbed network: its record names all it
/// owns.
pub fn teardown_record(
    network: Option<&TestbedConfig>,
    state: &RunState,
    report: &mut TeardownReport,
) {
    let dir = StateDir::of(&state.testbed);
    // The load generator first (it was started last): stopping the engine
    // first would make it exit on its own, and its end go unreported.
    for loadgen in recorded_loadgens(&dir) {
        report.stop("load generator", &loadgen);
    }
    // Its record too, or the state directory outlives the run.
    dir.remove(StateFile::LoadgenPid);
    // A DPDK load generator's hold on NS1 (its address, EAL's files).
    super::client::teardown_recorded(network, &dir, report);
    if let Some(engine) = state.engine {
        report.stop("engine", &engine);
    }
    crate::remote::netem::remove_recorded(&dir, report);
    let port = state
        .port
        .clone()
        .or_else(|| network.map(bypass::Port::server_of));
    if let Some(port) = &port {
        bypass::teardown(port, state, report);
    }
    if let Some(config) = network {
        for route in &state.tuned_routes {
            super::rto::untune(config, route);
        }
    }
    if let Some(path) = &state.segment {
        match fs::remove_file(path) {
            Ok(()) => report
                .done
                .push(format!("removed segment {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report
                .problems
                .push(format!("removing segment {}: {e}", path.display())),
        }
    }
    for file in &state.files {
        let _ = fs::remove_file(file);
    }
    let problems = hugepages::release(&state.hugepages);
    if state.hugepages.added_pages > 0 || state.hugepages.mounted_at.is_some() {
        report.done.push("released hugepages".to_owned());
    }
    report.problems.extend(problems);
    if let Some(config) = network.filter(|_| state.created_network) {
        match net::down(config) {
            Ok(_) => report
                .done
                .push(format!("testbed network `{}` removed", config.name())),
            Err(e) => report.problems.push(format!("network down: {e}")),
        }
    }
    for log in [StateFile::EngineLog, StateFile::SupervisorLog] {
        dir.remove(log);
    }
    state.remove();
    // The directory goes only when nothing else (network state) is in it.
    dir.remove_if_empty();
}
