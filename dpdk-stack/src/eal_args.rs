//! EAL's argv, built from the configuration.
//!
//! ```text
//! -l <core> [--file-prefix=P] [--no-huge] [-m MB] --no-telemetry [--log-level=L]
//!   af_xdp:    --no-pci --vdev=net_af_xdp0,iface=IF[,pmd_args]
//!   af_packet: --no-pci --vdev=net_af_packet0,iface=IF[,pmd_args]
//!   memif:     --no-pci --vdev=net_memif0,role=R,socket=PATH,socket-abstract=no[,pmd_args]
//!   pci:       -a ADDR ...
//! ```
//!
//! `--no-pci` always accompanies a vdev: without it EAL would probe (and, on
//! a VM, try to take) the host's own PCI NICs.

use crate::config::DpdkConfig;

/// EAL arguments (without the program name) for `config`, serving on
/// `core` when given (the engine's `--core`, which wins over `lcore_mask`)
/// or else on the config's main lcore.
#[must_use]
pub fn eal_args(config: &DpdkConfig, core: Option<usize>) -> Vec<String> {
    let core = core.unwrap_or_else(|| config.main_lcore());
    let mut args = vec!["-l".to_owned(), core.to_string()];
    if let Some(prefix) = &config.file_prefix {
        args.push(format!("--file-prefix={prefix}"));
    }
    if config.no_huge {
        args.push("--no-huge".to_owned());
    } else if let Some(dir) = &config.huge_dir {
        args.push(format!("--huge-dir={dir}"));
    }
    if let Some(mb) = config.memory_mb {
        args.push("-m".to_owned());
        args.push(mb.to_string());
    }
    // The telemetry socket and its thread are of no use to the engine, which
    // publishes its own counters.
    args.push("--no-telemetry".to_owned());
    if let Some(level) = &config.log_level {
        args.push(format!("--log-level={level}"));
    }
    match (config.pmd.vdev_name(), vdev_device(config)) {
        (Some(vdev), Some(device)) => {
            args.push("--no-pci".to_owned());
            let mut devargs = format!("--vdev={vdev},{device}");
            if let Some(extra) = &config.pmd_args {
                devargs.push(',');
                devargs.push_str(extra);
            }
            args.push(devargs);
        }
        _ => {
            for addr in &config.pci_whitelist {
                args.push("-a".to_owned());
                args.push(addr.clone());
            }
        }
    }
    args
}

/// The devargs naming what a vdev runs on: the Linux interface of the
/// af_* drivers, memif's socket (a file, so that it is found and removed
/// like the run's other files) and end.
fn vdev_device(config: &DpdkConfig) -> Option<String> {
    if config.pmd.on_interface() {
        return config.iface.as_ref().map(|iface| format!("iface={iface}"));
    }
    config.memif.as_ref().map(|end| {
        format!(
            "role={},socket={},socket-abstract=no",
            end.role.name(),
            end.socket.display()
        )
    })
}

/// How the engine finds its port after EAL init: the vdev's name, or for a
/// PCI device the first id of `port_list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSelector {
    /// `rte_eth_dev_get_port_by_name`.
    Name(&'static str),
    /// A port id.
    Id(u16),
}

/// The port `config` designates.
#[must_use]
pub fn port_selector(config: &DpdkConfig) -> PortSelector {
    match config.pmd.vdev_name() {
        Some(vdev) => PortSelector::Name(vdev),
        None => PortSelector::Id(config.port_list.first().copied().unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dpdk: &str) -> DpdkConfig {
        DpdkConfig::parse(&format!(
            "[dpdk]\n{dpdk}\n[port0]\naddr=10.0.0.3\nnetmask=255.255.255.0\n"
        ))
        .unwrap()
    }

    #[test]
    fn af_xdp_without_hugepages() {
        let c = config("lcore_mask=2\nno_huge=1\nmemory=256\nfile_prefix=bl-9\niface=veth3");
        assert_eq!(
            eal_args(&c, None),
            [
                "-l",
                "1",
                "--file-prefix=bl-9",
                "--no-huge",
                "-m",
                "256",
                "--no-telemetry",
                "--no-pci",
                "--vdev=net_af_xdp0,iface=veth3",
            ]
        );
        assert_eq!(port_selector(&c), PortSelector::Name("net_af_xdp0"));
    }

    #[test]
    fn af_packet_with_core_override_and_devargs() {
        let c = config("pmd=af_packet\niface=v0\npmd_args=framecnt=1024\nlog_level=*:warning");
        let args = eal_args(&c, Some(3));
        assert_eq!(&args[..2], ["-l", "3"]);
        assert!(args.contains(&"--log-level=*:warning".to_owned()));
        assert!(!args.contains(&"--no-huge".to_owned()));
        assert!(!args.iter().any(|a| a.starts_with("--huge-dir")));
        assert_eq!(
            &args[args.len() - 2..],
            ["--no-pci", "--vdev=net_af_packet0,iface=v0,framecnt=1024"]
        );
    }

    #[test]
    fn memif_names_its_socket_and_end() {
        let c = config("pmd=memif\nmemif_socket=/run/bypasslab/bl/memif.sock\nmemif_role=client");
        let args = eal_args(&c, None);
        assert_eq!(
            &args[args.len() - 2..],
            [
                "--no-pci",
                "--vdev=net_memif0,role=client,socket=/run/bypasslab/bl/memif.sock,socket-abstract=no",
            ]
        );
        assert_eq!(port_selector(&c), PortSelector::Name("net_memif0"));
    }

    #[test]
    fn pci_allows_listed_devices_and_never_disables_pci() {
        let c = config("pmd=pci\npci_whitelist=0000:00:04.0,0000:00:05.0\nport_list=1");
        let args = eal_args(&c, None);
        assert!(!args.contains(&"--no-pci".to_owned()));
        assert_eq!(
            &args[args.len() - 4..],
            ["-a", "0000:00:04.0", "-a", "0000:00:05.0"]
        );
        assert_eq!(port_selector(&c), PortSelector::Id(1));
    }

    #[test]
    fn huge_dir_is_passed_only_with_hugepages() {
        let with = config("lcore_mask=2\nno_huge=0\nhuge_dir=/run/x/hugepages\niface=v0");
        assert!(eal_args(&with, None).contains(&"--huge-dir=/run/x/hugepages".to_owned()));
        let without = config("lcore_mask=2\nno_huge=1\nhuge_dir=/run/x/hugepages\niface=v0");
        let args = eal_args(&without, None);
        assert!(args.contains(&"--no-huge".to_owned()));
        assert!(!args.iter().any(|a| a.starts_with("--huge-dir")));
    }
}
