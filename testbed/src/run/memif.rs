//! The memif pair (`--pmd memif`): a bypass engine and the DPDK load
//! generator joined by DPDK's `net_memif` on a Unix socket in the run's
//! state directory, so that no kernel, no veth and no bridge lies between
//! the two userspace stacks. It measures what the stacks themselves cost:
//! the floor a real NIC could approach. What such a run must be is checked
//! here, before anything is touched.
//!
//! The engine is memif's server (it creates the socket and the shared
//! memory), the load generator its client; each keeps its own EAL file
//! prefix and hugepages, and the socket is one of the run's files, removed
//! at stop even when a killed engine left it.

use contract::{ClientStack, EngineKind, Pmd};

use crate::config::{BackendChoice, TestbedConfig};

/// Why a run cannot take the memif pair, or a load generator cannot join
/// the run it is attached to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemifRefusal {
    /// The kernel engine owns no DPDK port.
    #[error("--pmd memif joins a bypass engine to the dpdk load generator; the kernel engine has no DPDK port: use --engine dpdk (or fstack)")]
    KernelEngine,
    /// Kernel sockets cannot reach a memif.
    #[error("the engine serves on memif (--pmd memif): only the dpdk load generator reaches it; use --client dpdk (or `[client] stack = \"dpdk\"` in testbed.toml)")]
    KernelClient,
    /// The link's impairment would be claimed but never applied.
    #[error("--pmd memif has no link to impair: frames go through shared memory, never through the bridge, netem or the link emulator, yet the configuration asks for {0}; use a configuration with [impairment] backend = \"none\"")]
    Impaired(String),
    /// Two hosts share no memory.
    #[error("--pmd memif runs both ends on this host; a two-host run ([hosts], --engine-host, --client-host) shares no memory between them")]
    TwoHosts,
    /// The load generator asked for another driver than the engine's.
    #[error("--client-pmd {0}: the engine serves on memif, so the dpdk load generator takes its other end (--client-pmd memif, or leave it unset)")]
    ClientPmd(Pmd),
    /// The load generator asked for memif, the engine serves elsewhere.
    #[error("--client-pmd memif joins an engine started with --pmd memif; this run's engine {0}")]
    NoMemifEngine(String),
}

/// Checks a run started with `--pmd memif` (anything else passes).
///
/// # Errors
/// [`MemifRefusal`]: the first rule the run breaks.
pub fn check_start(
    config: Option<&TestbedConfig>,
    pmd: &Pmd,
    engine: EngineKind,
    client: ClientStack,
) -> Result<(), MemifRefusal> {
    if *pmd != Pmd::Memif {
        return Ok(());
    }
    if !engine.is_bypass() {
        return Err(MemifRefusal::KernelEngine);
    }
    let config = match config {
        Some(config) if config.hosts().is_none() => config,
        _ => return Err(MemifRefusal::TwoHosts),
    };
    if client != ClientStack::Dpdk {
        return Err(MemifRefusal::KernelClient);
    }
    let impairment = config.impairment();
    if impairment.backend != BackendChoice::None && !impairment.is_noop() {
        return Err(MemifRefusal::Impaired(format!(
            "{} µs delay and {} % loss",
            impairment.delay_us, impairment.loss_percent
        )));
    }
    Ok(())
}

/// Whether a run's engine serves on memif (a bypass engine started with
/// `--pmd memif`).
#[must_use]
pub fn engine_on_memif(engine: EngineKind, engine_pmd: Option<&Pmd>) -> bool {
    engine.is_bypass() && engine_pmd == Some(&Pmd::Memif)
}

/// The driver a load generator attached to a run whose engine serves on
/// `engine_pmd` uses, given its own `--client-pmd`: memif when the engine
/// serves on memif (the default `af_xdp` gives way to it), else its own.
///
/// # Errors
/// [`MemifRefusal::ClientPmd`], [`MemifRefusal::NoMemifEngine`].
pub fn client_pmd(
    engine: EngineKind,
    engine_pmd: Option<&Pmd>,
    chosen: &Pmd,
) -> Result<Pmd, MemifRefusal> {
    match (engine_on_memif(engine, engine_pmd), chosen) {
        (true, Pmd::Memif | Pmd::AfXdp) => Ok(Pmd::Memif),
        (true, other) => Err(MemifRefusal::ClientPmd(other.clone())),
        (false, Pmd::Memif) => Err(MemifRefusal::NoMemifEngine(match engine_pmd {
            Some(pmd) if engine.is_bypass() => format!("serves on {pmd}"),
            _ => format!("is `{engine}`, which has no DPDK port"),
        })),
        (false, other) => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Impairment;

    fn plain() -> TestbedConfig {
        let impairment = Impairment {
            backend: BackendChoice::None,
            ..TestbedConfig::default().impairment().clone()
        };
        TestbedConfig::default()
            .with_impairment(impairment)
            .unwrap()
    }

    #[test]
    fn only_a_plain_single_host_bypass_pair_takes_memif() {
        let plain = plain();
        let ok = check_start(
            Some(&plain),
            &Pmd::Memif,
            EngineKind::Dpdk,
            ClientStack::Dpdk,
        );
        assert_eq!(ok, Ok(()));
        let refused = |config: Option<&TestbedConfig>, engine, client| {
            check_start(config, &Pmd::Memif, engine, client).unwrap_err()
        };
        assert_eq!(
            refused(Some(&plain), EngineKind::Kernel, ClientStack::Dpdk),
            MemifRefusal::KernelEngine
        );
        assert_eq!(
            refused(Some(&plain), EngineKind::Dpdk, ClientStack::Kernel),
            MemifRefusal::KernelClient
        );
        assert_eq!(
            refused(None, EngineKind::Dpdk, ClientStack::Dpdk),
            MemifRefusal::TwoHosts
        );
        let impaired = TestbedConfig::default();
        let err = refused(Some(&impaired), EngineKind::Fstack, ClientStack::Dpdk);
        assert!(matches!(err, MemifRefusal::Impaired(_)), "{err}");
        assert!(err.to_string().contains("backend = \"none\""));
        // Other drivers are not this module's business.
        assert_eq!(
            check_start(
                Some(&impaired),
                &Pmd::AfXdp,
                EngineKind::Kernel,
                ClientStack::Kernel
            ),
            Ok(())
        );
    }

    #[test]
    fn the_client_takes_the_engines_memif_and_nothing_else() {
        let memif = Some(&Pmd::Memif);
        let dpdk = EngineKind::Dpdk;
        assert_eq!(client_pmd(dpdk, memif, &Pmd::AfXdp), Ok(Pmd::Memif));
        assert_eq!(client_pmd(dpdk, memif, &Pmd::Memif), Ok(Pmd::Memif));
        assert_eq!(
            client_pmd(dpdk, memif, &Pmd::AfPacket),
            Err(MemifRefusal::ClientPmd(Pmd::AfPacket))
        );
        assert_eq!(
            client_pmd(dpdk, Some(&Pmd::AfXdp), &Pmd::AfPacket),
            Ok(Pmd::AfPacket)
        );
        let err = client_pmd(dpdk, Some(&Pmd::AfXdp), &Pmd::Memif).unwrap_err();
        assert!(err.to_string().contains("serves on af_xdp"), "{err}");
        let err = client_pmd(EngineKind::Kernel, None, &Pmd::Memif).unwrap_err();
        assert!(err.to_string().contains("`kernel`"), "{err}");
    }
}
