//! The matrix over two hosts (`[hosts]` in the configuration): each engine
//! on the engine host, the load generator on the client host, both through
//! `supervisor serve --stdio` over SSH (see [`crate::engine_run`]). What
//! only this host's testbed has is refused by name before anything starts:
//! the DPDK client and memif (a single host's), an equal minimum RTO (the
//! engine host's stacks keep their own) and the calibration (it runs on
//! this host's testbed). The peers' servers run on the engine host and
//! their clients on the client host, through the same sessions
//! ([`crate::peers::Hosts`]), impaired by the engine host's netem where it
//! has it, as the engines are.

use bench_report::model::Availability;
use contract::EngineKind;
use testbed::run::client::ClientRefusal;
use testbed::run::memif::MemifRefusal;

use crate::peers::Peer;
use crate::{flag, BenchArgs, BenchError, RtoChoice};

/// `args` for a two-host matrix: the kernel client, each stack's own
/// minimum RTO, no calibration.
///
/// # Errors
/// [`BenchError::BadOption`] naming an option only this host's testbed
/// can take.
pub fn args(args: &BenchArgs) -> Result<BenchArgs, BenchError> {
    let refuse = |field: &str, value: String, reason: String| BenchError::BadOption {
        option: flag(field),
        value,
        reason,
    };
    if args.pmd == contract::Pmd::Memif {
        return Err(refuse(
            "pmd",
            "memif".into(),
            MemifRefusal::TwoHosts.to_string(),
        ));
    }
    if args.clients.contains(&contract::ClientStack::Dpdk) {
        return Err(refuse(
            "clients",
            "dpdk".into(),
            ClientRefusal::RemoteClient.to_string(),
        ));
    }
    if let Some(ms) = args.rto_min.iter().find_map(|r| r.0) {
        return Err(refuse(
            "rto_min",
            ms.to_string(),
            "over two hosts each stack keeps its own minimum RTO (give own, or leave it unset)"
                .into(),
        ));
    }
    if args.estimate {
        return Err(refuse(
            "estimate",
            "given".into(),
            "the calibration runs on this host's testbed, not over two hosts".into(),
        ));
    }
    let mut args = args.clone();
    args.clients = vec![contract::ClientStack::Kernel];
    args.rto_min = vec![RtoChoice(None)];
    args.no_estimate = true;
    Ok(args)
}

/// Every engine asked for, left to the engine host: one it cannot run
/// fails its cells with the reason that host gives.
#[must_use]
pub fn engines(requested: &[EngineKind]) -> Vec<(EngineKind, Availability)> {
    let mut kinds = requested.to_vec();
    kinds.dedup();
    kinds
        .into_iter()
        .map(|kind| (kind, left_to_the_hosts(kind.as_str())))
        .collect()
}

/// Every peer asked for, left to the hosts: one whose tool a host lacks
/// fails its cells with that host's words.
#[must_use]
pub fn peers(requested: &[&'static dyn Peer]) -> Vec<(&'static dyn Peer, Availability)> {
    requested
        .iter()
        .map(|&peer| (peer, left_to_the_hosts(peer.name())))
        .collect()
}

/// Available here: whether it runs is the hosts' to say.
fn left_to_the_hosts(name: &str) -> Availability {
    Availability {
        name: name.to_owned(),
        available: true,
        reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::bench_args;

    #[test]
    fn the_default_matrix_becomes_kernel_clients_own_rto_and_no_calibration() {
        let two_hosts = args(&bench_args(&[])).expect("the defaults run over two hosts");
        assert_eq!(two_hosts.clients, [contract::ClientStack::Kernel]);
        assert_eq!(two_hosts.rto_min, [RtoChoice(None)]);
        assert!(two_hosts.no_estimate);
    }

    #[test]
    fn what_only_this_hosts_testbed_has_is_refused_by_its_flag() {
        for (extra, option) in [
            (&["--pmd", "memif"][..], "--pmd"),
            (&["--clients", "kernel,dpdk"][..], "--clients"),
            (&["--rto-min", "5"][..], "--rto-min"),
            (&["--estimate"][..], "--estimate"),
        ] {
            match args(&bench_args(extra)) {
                Err(BenchError::BadOption { option: got, .. }) => {
                    assert_eq!(got, option, "{extra:?}");
                }
                other => panic!("{extra:?}: {:?}", other.map(|_| ())),
            }
        }
    }
}
