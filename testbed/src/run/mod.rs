//! The run lifecycle: `start`, `attach`, `stats`, `stop`, `run`.
//!
//! Bottom-up: [`state`] records what a run owns; [`engines`] asks the
//! engine binary which kinds it has; [`bypass`] prepares NS3 for a bypass
//! engine, and [`pci`] takes a PCI NIC for one; [`client`] does for NS1
//! what `bypass` does for NS3, for a DPDK load generator; [`memif`] says
//! what a run joining the two through shared memory must be; [`session`] performs
//! start's ordered steps and the teardown that undoes them; [`attach`]
//! runs the load generator and builds result rows.

pub mod attach;
pub mod bypass;
pub mod client;
pub mod error;
pub mod memif;
pub mod netview;
pub mod pci;
mod report;
pub mod rto;
pub mod session;
pub mod state;
pub mod teardown;

pub use error::LifecycleError;
