//! A DPDK load generator's port: what [`super::bypass`] does for NS3 and a
//! bypass engine, done for NS1 for the length of one load-generator run.
//! NS1's kernel address is taken off its veth (the userspace stack answers
//! ARP and TCP for it), the client gets its own config.ini with its own
//! EAL file prefix, and after the run, however it ended (kill -9
//! included), EAL's runtime directory and hugepage files of that prefix
//! and any XDP program are removed and the address is given back, with the
//! route's `rto_min` if the run had set one.
//!
//! Every change is recorded in the state directory (`client-port.json`)
//! before it is made, so the teardown of a crashed supervisor's run
//! undoes it too ([`teardown_recorded`]).

use std::fs;
use std::path::{Path, PathBuf};

use contract::{ClientStack, Pmd};
use serde::{Deserialize, Serialize};

use super::bypass::{self, BypassError, Port};
use super::report::TeardownReport;
use super::rto::{self, TunedRoute};
use super::state::RunState;
use crate::config::{Cores, TestbedConfig};
use crate::host::hugepages;
use crate::state::{read_json, write_json, StateDir, StateFile};

/// 2 MB pages a DPDK load generator's EAL takes (its config.ini's
/// `memory=256`), which a run that expects one reserves beside the
/// engine's.
pub const CLIENT_PAGES: u64 = 128;

/// EAL's `--file-prefix` of a testbed's DPDK load generator (the engine's
/// is [`bypass::file_prefix`]; the two never share a runtime directory or
/// a hugepage file name).
#[must_use]
pub fn file_prefix(testbed: &str) -> String {
    format!("{}-client", bypass::file_prefix(testbed))
}

/// Why a DPDK client cannot run here, found before anything is touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientRefusal {
    /// The client's PMD is not one that works on a veth (nor memif).
    #[error(
        "--client-pmd {0}: a dpdk load generator runs on NS1's veth, through af_xdp or af_packet (or on an engine's memif)"
    )]
    Pmd(Pmd),
    /// A two-host run: there is no NS1 veth to take over.
    #[error("--client dpdk takes over NS1's veth of the single-host testbed; a two-host run ([hosts] in the configuration, --engine-host, --client-host) has none, and its load generator uses the kernel stack")]
    RemoteClient,
}

/// What a DPDK client's run changed on NS1, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// NS1's veth and addresses.
    pub port: Port,
    /// The kernel address removed from it (`addr/prefix`), once removed.
    pub removed_address: Option<String>,
    /// EAL's file prefix.
    pub file_prefix: String,
    /// The hugetlbfs directory its EAL used, if any.
    pub huge_dir: Option<PathBuf>,
    /// NS1's route with the `rto_min` the run had set (restored with the
    /// address, which takes the route with it when it goes).
    pub tuned_route: Option<(TunedRoute, u32)>,
}

/// How a DPDK client uses its core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientCore {
    /// It spins on a core of its own.
    Spins,
    /// It yields after every idle poll: the link emulator runs on its core.
    YieldsToEmulator,
}

impl ClientCore {
    /// Where the client's loop stands with the emulator: it yields when the
    /// emulator runs on the same core (a spinning client would starve it).
    #[must_use]
    pub fn of(cores: Cores, emulator_running: bool) -> Self {
        if emulator_running && cores.emulator == cores.loadgen {
            Self::YieldsToEmulator
        } else {
            Self::Spins
        }
    }

    /// One line for the output.
    #[must_use]
    pub fn describe(self, cores: Cores) -> String {
        match self {
            Self::Spins => format!("spins on core {}", cores.loadgen),
            Self::YieldsToEmulator => format!(
                "yields core {} to the link emulator when idle (give them separate cores in [cores] of testbed.toml to spin)",
                cores.loadgen
            ),
        }
    }
}

/// NS1 prepared for a DPDK client; dropping it undoes everything.
pub struct ClientPort {
    record: ClientRecord,
    dir: StateDir,
    config: TestbedConfig,
    ini: PathBuf,
    done: bool,
}

impl ClientPort {
    /// Checks what can be checked before anything changes.
    ///
    /// # Errors
    /// [`ClientRefusal`].
    pub fn check(config: &TestbedConfig, pmd: &Pmd) -> Result<(), ClientRefusal> {
        if !matches!(pmd, Pmd::AfXdp | Pmd::AfPacket | Pmd::Memif) {
            return Err(ClientRefusal::Pmd(pmd.clone()));
        }
        if config.hosts().is_some() {
            return Err(ClientRefusal::RemoteClient);
        }
        Ok(())
    }

    /// Takes NS1's address off its veth and writes the client's
    /// config.ini for `run`, each step recorded first.
    ///
    /// # Errors
    /// [`BypassError`] of the step that failed (what was done is undone
    /// when the half-made value drops).
    pub fn prepare(
        config: &TestbedConfig,
        run: &RunState,
        pmd: &Pmd,
        say: &mut dyn FnMut(&str),
    ) -> Result<Self, BypassError> {
        let dir = StateDir::of(&run.testbed);
        let port = Port::client_of(config);
        let huge_dir = run
            .hugepages
            .dir
            .clone()
            .filter(|_| run.hugepages.unavailable.is_none())
            .filter(|_| {
                // Held for it since the run started with a DPDK client in
                // mind, or free for anyone now.
                run.hugepages.reserved_pages
                    >= super::session::pages_needed(run.engine_kind, ClientStack::Dpdk)
                    || hugepages::pool().is_some_and(|p| p.available() >= CLIENT_PAGES)
            });
        let tuned_route = run.rto_min_ms.and_then(|ms| {
            run.tuned_routes
                .iter()
                .find(|r| r.ns == port.namespace.clone().unwrap_or_default())
                .map(|r| (r.clone(), ms))
        });
        let mut this = Self {
            record: ClientRecord {
                port,
                removed_address: None,
                file_prefix: file_prefix(&run.testbed),
                huge_dir,
                tuned_route,
            },
            ini: dir.file(StateFile::ClientIni),
            dir,
            config: config.clone(),
            done: false,
        };
        // Leftovers of an earlier client that was killed with its
        // supervisor would hold the prefix's files.
        let mut report = TeardownReport::default();
        bypass::remove_eal_files(
            &this.record.file_prefix,
            this.record.huge_dir.as_deref(),
            &mut report,
        );
        if *pmd == Pmd::Memif {
            // NS1's veth is not on the path: its address stays.
            this.save()?;
            say(&format!(
                "the load generator joins the engine's memif {}",
                bypass::memif_socket(&run.testbed).display()
            ));
        } else {
            this.take_address(say)?;
        }
        if this.record.huge_dir.is_none() {
            say(&format!(
                "the dpdk load generator runs without hugepages (--no-huge): {}",
                run.hugepages.unavailable.as_deref().unwrap_or(
                    "the run's hugetlbfs mount has too few free pages (a run started with --client dpdk reserves them)"
                )
            ));
        }
        let text = bypass::port_ini(
            &run.testbed,
            bypass::DpdkProcess::Client,
            &this.record.port,
            pmd,
            run.loadgen_core,
            this.record.huge_dir.as_deref(),
            None,
        );
        fs::write(&this.ini, text).map_err(|source| BypassError::WriteIni {
            path: this.ini.clone(),
            source,
        })?;
        Ok(this)
    }

    /// Takes NS1's kernel address off its veth, recorded first.
    fn take_address(&mut self, say: &mut dyn FnMut(&str)) -> Result<(), BypassError> {
        let address = self.record.port.cidr();
        self.record.removed_address = Some(address.clone());
        self.save()?;
        let port = &self.record.port;
        port.remove_address()?;
        say(&format!(
            "removed {address} from {}: the load generator's userspace stack answers for it",
            port.place()
        ));
        Ok(())
    }

    /// The client's config.ini.
    #[must_use]
    pub fn ini(&self) -> &Path {
        &self.ini
    }

    fn save(&self) -> Result<(), BypassError> {
        let path = self.dir.file(StateFile::ClientPort);
        write_json(&path, &self.record).map_err(|source| BypassError::WriteIni { path, source })
    }

    /// Undoes [`ClientPort::prepare`] and removes what a killed client
    /// leaves.
    pub fn teardown(mut self) -> TeardownReport {
        self.undo()
    }

    fn undo(&mut self) -> TeardownReport {
        self.done = true;
        let mut report = TeardownReport::default();
        undo_record(Some(&self.config), &self.record, &mut report);
        self.dir.remove(StateFile::ClientIni);
        self.dir.remove(StateFile::ClientPort);
        report
    }
}

impl Drop for ClientPort {
    fn drop(&mut self) {
        if !self.done {
            for line in self.undo().problems {
                eprintln!("supervisor: cleanup problem: {line}");
            }
        }
    }
}

fn undo_record(config: Option<&TestbedConfig>, record: &ClientRecord, report: &mut TeardownReport) {
    bypass::remove_eal_files(&record.file_prefix, record.huge_dir.as_deref(), report);
    if let Some(address) = &record.removed_address {
        bypass::give_back(&record.port, address, report);
        if let (Some(config), Some((route, ms))) = (config, &record.tuned_route) {
            // The address took its route with it; the run had set its
            // rto_min.
            if let Err(e) = rto::tune(config, route, *ms) {
                report.problems.push(e.to_string());
            }
        }
    }
}

/// Undoes what a DPDK client of a crashed run recorded in `dir`.
pub fn teardown_recorded(
    config: Option<&TestbedConfig>,
    dir: &StateDir,
    report: &mut TeardownReport,
) {
    if let Ok(Some(record)) = read_json::<ClientRecord>(&dir.file(StateFile::ClientPort)) {
        undo_record(config, &record, report);
    }
    dir.remove(StateFile::ClientIni);
    dir.remove(StateFile::ClientPort);
}

/// The client stack a load-generator run uses: the command line's, else
/// the configuration's.
#[must_use]
pub fn stack_of(config: &TestbedConfig, chosen: Option<ClientStack>) -> ClientStack {
    chosen.unwrap_or(config.client_stack())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_yields_only_when_the_emulator_shares_its_core() {
        let shared = Cores {
            engine: 1,
            loadgen: 0,
            emulator: 0,
        };
        assert_eq!(ClientCore::of(shared, true), ClientCore::YieldsToEmulator);
        assert_eq!(ClientCore::of(shared, false), ClientCore::Spins);
        let apart = Cores {
            emulator: 1,
            ..shared
        };
        assert_eq!(ClientCore::of(apart, true), ClientCore::Spins);
        assert!(ClientCore::YieldsToEmulator
            .describe(shared)
            .contains("[cores]"));
    }

    #[test]
    fn the_client_has_its_own_prefix_and_port() {
        let config = TestbedConfig::default();
        let prefix = file_prefix(config.name());
        assert_ne!(prefix, bypass::file_prefix(config.name()));
        // The engine's leftover match (`<prefix>map_`) never takes the
        // client's files, nor the other way round.
        assert!(!format!("{prefix}map_0")
            .starts_with(&format!("{}map_", bypass::file_prefix(config.name()))));
        let port = Port::client_of(&config);
        assert_eq!(port.address, config.client_addr());
        assert_eq!(port.gateway, config.server_addr());
        let ini = bypass::port_ini(
            config.name(),
            bypass::DpdkProcess::Client,
            &port,
            &Pmd::AfXdp,
            0,
            None,
            None,
        );
        assert!(ini.contains(&format!("file_prefix={prefix}\n")));
        assert!(ini.contains(&format!("iface={}\n", config.client_iface())));
        assert!(ini.contains("lcore_mask=1\n"));
    }

    #[test]
    fn only_veth_pmds_and_local_clients_pass_the_check() {
        let config = TestbedConfig::default();
        assert!(ClientPort::check(&config, &Pmd::AfXdp).is_ok());
        assert!(ClientPort::check(&config, &Pmd::AfPacket).is_ok());
        let pci = Pmd::Pci("0000:00:04.0".parse().unwrap());
        assert!(matches!(
            ClientPort::check(&config, &pci),
            Err(ClientRefusal::Pmd(_))
        ));
    }
}
