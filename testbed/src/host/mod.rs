//! What the testbed does to its host below the level of namespaces and
//! runs: [`command`] runs iproute2/tc/ethtool and keeps what explains a
//! failure; [`process`] names a process by pid and start time, stops it
//! and reports how a child ended; [`wait`] is the one bounded wait;
//! [`cpu`] says how busy a process kept its core; [`hugepages`] takes and
//! gives back 2 MB pages.

pub mod command;
pub mod cpu;
pub mod hugepages;
pub mod process;
pub mod wait;
