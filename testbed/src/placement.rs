//! Where a process runs: a [`Node`] is "in network namespace X, on core
//! Y". Every child the testbed or the bench starts (engine, load
//! generator, link emulator, peer tools, probes of a namespace) gets its
//! [`Command`] from a node, as Mininet's `Node.cmd`/`Node.popen` are the
//! only way anything runs in its hosts; a node on another machine joins
//! behind the same type.

use std::ffi::OsStr;
use std::process::Command;

/// A place to run processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    namespace: String,
    core: Option<usize>,
}

impl Node {
    /// Network namespace `namespace` of this host; processes pinned to
    /// `core` when they are given one.
    #[must_use]
    pub fn in_namespace(namespace: impl Into<String>, core: Option<usize>) -> Self {
        Self {
            namespace: namespace.into(),
            core,
        }
    }

    /// The supervisor's own network namespace: an engine on a PCI NIC,
    /// which is in no namespace of the testbed's.
    #[must_use]
    pub fn here(core: Option<usize>) -> Self {
        Self::in_namespace("", core)
    }

    /// The network namespace (empty: the supervisor's own).
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The core a process of this node is pinned to.
    #[must_use]
    pub fn core(&self) -> Option<usize> {
        self.core
    }

    /// `program` run in the node (`ip netns exec`, which execs: the spawned
    /// pid is the program's own, so it can be signalled by pid). The
    /// program pins itself (the engine's and load generator's `--core`).
    #[must_use]
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        if self.namespace.is_empty() {
            return Command::new(program);
        }
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
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
            argv(&Node::here(Some(1)).pinned_command("/x/engine")),
            ["taskset", "-c", "1", "/x/engine"]
        );
    }
}
