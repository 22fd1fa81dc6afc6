//! bypasslab's testbed: everything the supervisor does to a host, as a
//! library (the `supervisor` binary is its command line, the `bench` crate
//! its biggest user).
//!
//! Bottom-up:
//! - [`host`] runs commands (bounded), names and stops processes, waits
//!   with a bound, takes hugepages;
//! - [`state`] is the one state directory per testbed and the one way a
//!   state file is written;
//! - [`config`] parses and validates `config/testbed.toml`;
//! - [`topology`] is the testbed network as data; [`placement`] says where
//!   a process runs (a [`placement::Node`]: namespace and core) and is the
//!   only way a child gets its command;
//! - [`bins`] finds the engine and load generator and asks the engine
//!   which kinds it has;
//! - [`impairment`] chooses between netem, the userspace link emulator and
//!   none, and owns launching the emulator;
//! - [`net`] creates, shows and removes the topology and the impairment,
//!   recording every object before it is created;
//! - [`nic`] hands a PCI NIC to a userspace I/O driver through sysfs and
//!   gives it back;
//! - [`run`] is one run of the experiment: start's ordered steps, the load
//!   generator's attach, teardown;
//! - [`remote`] drives a role on another host over SSH (`serve --stdio`
//!   there, its client here);
//! - [`doctor`] reports what the host can do.

pub mod bins;
pub mod config;
pub mod doctor;
pub mod host;
pub mod impairment;
pub mod net;
pub mod nic;
pub mod placement;
pub mod remote;
pub mod run;
pub mod state;
pub mod topology;
