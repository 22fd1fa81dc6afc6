//! Two hosts: the engine on one machine, the load generator on another,
//! each role driven through `supervisor serve --stdio` on its host, which
//! OpenSSH's client reaches (no control daemon, no open port: SSH's
//! authentication is the only way in).
//!
//! - [`target`]: `ssh://[user@]host[:port]` and the `ssh` command line;
pub mod target;
