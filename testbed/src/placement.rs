//! Where a process runs: a [`Node`] is "in network namespace X, on core
//! Y", "here (the supervisor's own namespace), on core Y", or "on host H
//! over SSH". Every child the testbed or the bench starts (engine, load
//! generator, link emulator, peer tools, probes of a namespace, a remote
//! host's supervisor) gets its [`Command`] from a node, as Mininet's
//! `Node.cmd`/`Node.popen` are the only way anything runs in its hosts.

use std::ffi::OsStr;
use std::process::Command;

/// A place to run processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    place: Place,
    core: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// A network namespace of this host.
    Namespace(String),
    /// The supervisor's own namespace (a remote host's `serve`).
    Here,
    /// Another host, reached with OpenSSH's client.
    Ssh(crate::remote::target::SshTarget),
}

impl Node {
    /// Network namespace `namespace` of this host; processes pinned to
    /// `core` when they are given one.
    #[must_use]
    pub fn in_namespace(namespace: impl Into<String>, core: Option<usize>) -> Self {
        Self {
            place: Place::Namespace(namespace.into()),
            core,
        }
    }

    /// The supervisor's own network namespace: on an engine or client host
    /// the processes run beside the `serve` that starts them.
    #[must_use]
    pub fn here(core: Option<usize>) -> Self {
        Self {
            place: Place::Here,
            core,
        }
    }

    /// Another host: a command is run there by `ssh` (in the login's
    /// namespace, as the login's user).
    #[must_use]
    pub fn over_ssh(target: crate::remote::target::SshTarget) -> Self {
        Self {
            place: Place::Ssh(target),
            core: None,
        }
    }

    /// The network namespace (empty for a node that is not in one of this
    /// host's namespaces).
    #[must_use]
    pub fn namespace(&self) -> &str {
        match &self.place {
            Place::Namespace(ns) => ns,
            Place::Here | Place::Ssh(_) => "",
        }
    }

    /// The core a process of this node is pinned to.
    #[must_use]
    pub fn core(&self) -> Option<usize> {
        self.core
    }

    /// `program` run in the node (`ip netns exec`, which execs: the spawned
    /// pid is the program's own, so it can be signalled by pid; over SSH,
    /// the pid is the local `ssh` client's). The program pins itself (the
    /// engine's and load generator's `--core`).
    #[must_use]
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match &self.place {
            Place::Namespace(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(program);
                command
            }
            Place::Here => Command::new(program),
            Place::Ssh(target) => target.command(program.as_ref()),
        }
    }

    /// `program` run in the node and pinned to its core with `taskset`,
    /// for tools that cannot pin themselves (sockperf, iperf3, netperf).
    #[must_use]
    pub fn pinned_command(&self, program: impl AsRef<OsStr>) -> Command {
        match self.core {
            Some(core) => {
                let mut command = self.command("taskset");
                command.arg("-c").arg(core.to_string()).arg(program);
                command
            }
            None => self.command(program),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(c: &Command) -> Vec<String> {
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn commands_enter_the_namespace_and_pin() {
        let node = Node::in_namespace("bl-ns3", Some(1));
        assert_eq!(
            argv(&node.command("/x/engine")),
            ["ip", "netns", "exec", "bl-ns3", "/x/engine"]
        );
        assert_eq!(
            argv(&node.pinned_command("sockperf")),
            ["ip", "netns", "exec", "bl-ns3", "taskset", "-c", "1", "sockperf"]
        );
        let unpinned = Node::in_namespace("bl-ns1", None);
        assert_eq!(argv(&unpinned.pinned_command("iperf3")).len(), 5);
        assert_eq!(
            argv(&Node::here(Some(0)).pinned_command("sockperf")),
            ["taskset", "-c", "0", "sockperf"]
        );
    }
}
