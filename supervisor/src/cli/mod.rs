//! One module per command group of the `supervisor` binary: each parses
//! its arguments into options, calls the testbed (or the bench), and maps
//! the outcome to the documented exit code.

pub mod hugepages;
pub mod lifecycle;
pub mod nic;
pub mod remote;
