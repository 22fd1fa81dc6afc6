//! A DPDK port brought up for a smoltcp stack: everything between
//! `config.ini` and a ready `phy::Device`, and nothing about what the
//! stack then serves or sends.
//!
//! The dpdk engine (a smoltcp TCP server) uses it; a DPDK client (a smoltcp
//! TCP client in the load generator) brings its port up the same way, so
//! neither copies EAL, mempool, port or device code. Layers, bottom-up:
//!
//! - [`config`]: F-Stack's `config.ini` format (one file configures the
//!   dpdk and the fstack engine).
//! - [`eal_args`]: EAL's argv from it (a vdev on a Linux interface, or PCI
//!   devices) and how the port is found.
//! - [`setup`]: EAL, the mbuf pool and the port in DPDK's order, handed to
//!   a closure and torn down after it ([`setup::attach`]).
//! - [`device`]: the port as a smoltcp `phy::Device` over mbufs, zero-copy
//!   on receive ([`device::MbufDevice`]), and the [`device::BurstDevice`]
//!   trait a poll loop drives (tests implement it over memory).
//! - [`mod@interface`]: the smoltcp interface with `[port0]`'s address and
//!   route, and the stack's clock.
//! - [`counters`]: the port's and the device's counters into a producer's.
//! - [`memory`]: a [`BurstDevice`] pair over memory, for tests of any stack
//!   run on this crate.

pub mod config;
pub mod counters;
pub mod device;
pub mod eal_args;
pub mod interface;
pub mod memory;
pub mod setup;

pub use counters::{merge_link_counters, PORT_COUNTERS};
pub use device::{BurstDevice, DeviceStats, LinkCounters, MbufDevice, MAX_FRAME};
pub use interface::{
    interface, run_seed, tcp_socket, tcp_timestamp_ms, SocketSettings, StackClock,
};
pub use setup::{attach, Attached, PortPlan, SetupError};
