//! `supervisor nic`: hands a PCI NIC to a userspace I/O driver for DPDK
//! and gives it back, as `dpdk-devbind.py` does, through sysfs. What `bind`
//! changes is recorded under the state root first, so `unbind` restores
//! exactly, also after a crash; a run's own binding (`start --pmd pci:`)
//! is the run's, and `stop` gives it back.

use testbed::nic::ops::{self, Host};
use testbed::nic::{Driver, NicError};
use testbed::run::pci;

/// `supervisor nic`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum NicAction {
    /// List the network PCI devices: driver, interfaces with their addresses and routes, who bound them.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Bind a NIC to a userspace I/O driver, loading the driver's module first.
    Bind {
        /// The NIC: its PCI address (DDDD:BB:DD.F) or one of its network interfaces.
        target: String,
        /// The driver (default: vfio-pci where the host has an IOMMU, else uio_pci_generic).
        #[arg(long, value_enum)]
        driver: Option<Driver>,
        /// Bind even though an interface of the NIC is up with an address or carries a route.
        #[arg(long)]
        force: bool,
    },
    /// Give a NIC bound by `nic bind` back to the driver it had before.
    Unbind {
        /// The NIC: its PCI address, or the interface it had.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        target: Option<String>,
        /// Every NIC `nic bind` bound.
        #[arg(long)]
        all: bool,
    },
}

fn say(line: &str) {
    eprintln!("supervisor: {line}");
}

/// Runs the subcommand; returns the exit code.
///
/// # Errors
/// A refusal or a failed step ([`NicError::is_usage`]: a NIC that is not
/// there).
pub fn run(action: &NicAction) -> Result<i32, NicError> {
    let host = Host::real();
    let holds = pci::holds();
    match action {
        NicAction::Status { json } => {
            let status = ops::status(&host, &holds)?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            } else {
                print!("{status}");
            }
            Ok(0)
        }
        NicAction::Bind {
            target,
            driver,
            force,
        } => {
            let addr = testbed::nic::device::resolve(&host.sysfs, target)?;
            match ops::bind(&host, &addr, *driver, *force, &holds)? {
                None => say(&format!(
                    "{addr} is on {} already (not bound by bypasslab): left as it is, nothing recorded",
                    host.sysfs.driver(&addr).unwrap_or_default()
                )),
                Some(b) => {
                    if b.loaded_module {
                        say(&format!("loaded module {}", b.driver.module()));
                    }
                    let ifaces = if b.interfaces.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", b.interfaces.join(", "))
                    };
                    say(&format!(
                        "bound {addr}{ifaces} to {} (its driver before: {}); `supervisor nic unbind {addr}` gives it back",
                        b.driver,
                        b.original_driver.as_deref().unwrap_or("none")
                    ));
                }
            }
            Ok(0)
        }
        NicAction::Unbind { target, all: _ } => {
            let addr = target
                .as_deref()
                .map(|t| ops::resolve_bound(&host, t, &holds))
                .transpose()?;
            let report = ops::unbind(&host, addr.as_ref(), &holds)?;
            if report.done.is_empty() && report.problems.is_empty() {
                say("nothing to unbind: `supervisor nic bind` has bound nothing");
            }
            for line in &report.done {
                say(line);
            }
            for line in &report.problems {
                say(&format!("problem: {line}"));
            }
            Ok(i32::from(!report.problems.is_empty()))
        }
    }
}
