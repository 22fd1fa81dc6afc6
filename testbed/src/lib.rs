//! bypasslab's testbed: everything the supervisor does to a host, as a
//! library (the `supervisor` binary is its command line, the `bench` crate
//! its biggest user).
//!
//! Bottom-up:
//! - [`host`] runs commands, names and stops processes, takes hugepages;
//! - [`config`] parses and validates `config/testbed.toml`;
//! - [`impairment`] chooses between netem, the userspace link emulator and
//!   none, and owns launching the emulator;
//! - [`net`] creates, shows and removes the namespaces, links and
//!   impairment, recording every object in a state file under /run;
//! - [`run`] is one run of the experiment: start's ordered steps, the load
//!   generator's attach, teardown;
//! - [`doctor`] reports what the host can do.

pub mod bins;
pub mod config;
pub mod doctor;
pub mod host;
pub mod impairment;
pub mod net;
pub mod placement;
pub mod run;
pub mod state;
pub mod topology;
