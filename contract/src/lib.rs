//! What bypasslab's processes agree on, written once.
//!
//! The engine, the load generator, the link emulator and the supervisor are
//! separate binaries. Every fact more than one of them needs lives here:
//!
//! - [`kinds`]: the engine kinds, the poll-mode drivers, the
//!   `engine --list-kinds` document;
//! - [`engine`], [`loadgen`], [`emulator`]: each child's command line as a
//!   typed clap struct, parsed by the child and built by the supervisor;
//! - [`argv`]: renders such a struct back into the argv that produces it,
//!   so a flag is spelled only in its struct, and a recorded command is the
//!   one that ran;
//! - [`peer_tool`]: the peer tools' (sockperf, iperf3, netperf) command
//!   lines, typed, so a remote host runs only what a request's values make;
//! - [`process`]: how a child ended, in the words every report uses;
//! - [`serve`]: the JSON-lines protocol of `supervisor serve --stdio`, what
//!   an orchestrating supervisor and a remote host's supervisor say to each
//!   other over SSH.
//!
//! [`CONTRACT_VERSION`] changes whenever any of it changes in a way another
//! binary would notice: a supervisor driving a remote host refuses a peer
//! of another version.

pub mod argv;
pub mod emulator;
pub mod engine;
pub mod kinds;
pub mod loadgen;
pub mod peer_tool;
pub mod process;
pub mod serve;

pub use kinds::{
    ClientStack, EngineKind, KindList, KindListing, PciAddress, Pmd, PmdError, PmdKind,
};

/// Version of this contract between bypasslab's binaries.
pub const CONTRACT_VERSION: u32 = 3;
