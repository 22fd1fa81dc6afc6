//! The bypasslab supervisor: it builds the testbed network, applies the link
//! impairment, and (in later modules) runs the engine and load generator.
//!
//! Bottom-up:
//! - [`command`] runs iproute2/tc/ethtool and keeps what explains a failure;
//! - [`config`] parses and validates `config/testbed.toml`;
//! - [`emulator`] is the userspace link emulator (AF_PACKET rings, timed
//!   FIFO, random drop) used where the kernel has no netem;
//! - [`impairment`] chooses between netem, the emulator and none;
//! - [`net`] creates, shows and removes the namespaces, links and
//!   impairment, recording every object in a state file under /run;
//! - [`doctor`] reports what the host can do;
//! - [`bench`](mod@bench) runs the benchmark matrix and writes the report.

pub mod bench;
pub mod command;
pub mod config;
pub mod doctor;
pub mod emulator;
pub mod impairment;
pub mod lifecycle;
pub mod net;
