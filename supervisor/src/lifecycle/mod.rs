//! The run lifecycle: `start`, `attach`, `stats`, `stop`, `run`.
//!
//! Bottom-up: [`process`] names children robustly and stops them;
//! [`hugepages`] takes and gives back 2 MB pages; [`state`] records what a
//! run owns; [`session`] performs start's ordered steps and the teardown
//! that undoes them; [`attach`] runs the load generator and builds result
//! rows; [`commands`] is the CLI on top.

pub mod attach;
pub mod bypass;
pub mod commands;
pub mod engines;
pub mod error;
pub mod hugepage_cmd;
pub mod hugepages;
mod netview;
pub mod process;
pub mod session;
pub mod state;

pub use error::LifecycleError;
