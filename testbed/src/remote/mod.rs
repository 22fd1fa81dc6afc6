//! Two hosts: the engine on one machine, the load generator on another,
//! each role driven through `supervisor serve --stdio` on its host, which
//! OpenSSH's client reaches (no control daemon, no open port: SSH's
//! authentication is the only way in).
//!
//! - [`target`]: `ssh://[user@]host[:port]` and the `ssh` command line;
//! - [`serve`]: the remote end, `supervisor serve --stdio`;
//! - [`facts`]: what a host says of itself (name, kernel, doctor);
//! - [`peer`]: the orchestrator's end of a session;
//! - [`run`]: a run over two hosts, driven from here;
//! - [`control`]: such a run owned by one supervisor, reached by `attach`,
//!   `stats` and `stop` through a Unix socket on this host;
//! - [`netem`]: impairment on an engine host's egress;
//! - [`tool`]: a peer tool's process on a `serve` host;
//! - [`peer_tools`]: the bench's peers over two hosts, driven from here.

pub mod control;
pub mod facts;
pub mod netem;
pub mod peer;
pub mod peer_tools;
pub mod run;
pub mod serve;
pub mod target;
pub mod tool;
