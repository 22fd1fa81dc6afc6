//! `supervisor doctor`: what this host can do for the testbed, and what each
//! missing piece means for a run. Every check is read-only; the few that
//! must try something (netem, namespaces) do it in a throwaway namespace.

use std::path::Path;

use serde::Serialize;

use crate::config::host_cores;
use crate::host::command;
use crate::host::hugepages::meminfo;
use crate::impairment::{self, Backend};
use crate::nic::driver::{Driver, RTE_KNI};
use crate::nic::module;
use crate::nic::sysfs::Sysfs;
use contract::EngineKind;

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name: `root`, `netem`, `hugepages`, ...
    pub name: &'static str,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What it means for a run.
    pub consequence: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub checks: Vec<Check>,
    /// The impairment backend `auto` resolves to on this host.
    pub impairment_backend: Backend,
    /// Engines this host can run: kernel always; dpdk when DPDK and a
    /// usable PMD are present; fstack when, on top, the engine binary has
    /// F-Stack built in.
    pub engines: Vec<EngineKind>,
}

impl DoctorReport {
    /// The check called `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

fn check(
    name: &'static str,
    ok: bool,
    detail: impl Into<String>,
    consequence: impl Into<String>,
) -> Check {
    Check {
        name,
        ok,
        detail: detail.into(),
        consequence: consequence.into(),
    }
}

fn af_xdp_socket() -> std::io::Result<()> {
    // SAFETY: plain socket(2) call; the descriptor is closed right away.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is the descriptor just opened and owned here.
    unsafe { libc::close(fd) };
    Ok(())
}

fn bpf_map() -> std::io::Result<()> {
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size,
    // max_entries as the first four u32; the rest zero.
    let mut attr = [0u32; 32];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    let size = std::mem::size_of_val(&attr);
    // SAFETY: `attr` is a zero-padded bpf_attr of `size` bytes that lives
    // across the call; BPF_MAP_CREATE (0) only reads it.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_mut_ptr(), size) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if let Ok(fd) = i32::try_from(fd) {
        // SAFETY: `fd` is the map descriptor just created and owned here.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

fn dpdk_pmds() -> Vec<String> {
    let mut c = command::cmd("pkg-config", ["--variable=libdir", "libdpdk"]);
    let Ok(libdir) = command::run(&mut c, "") else {
        return Vec::new();
    };
    let dpdk_dir = Path::new(libdir.trim()).join("dpdk");
    let mut pmds = Vec::new();
    let Ok(dirs) = std::fs::read_dir(&dpdk_dir) else {
        return pmds;
    };
    for d in dirs.flatten() {
        if !d.file_name().to_string_lossy().starts_with("pmds-") {
            continue;
        }
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let n = f.file_name().to_string_lossy().into_owned();
            if let Some(rest) = n.strip_prefix("librte_net_") {
                if let Some(name) = rest.strip_suffix(".so") {
                    pmds.push(format!("net_{name}"));
                }
            }
        }
    }
    pmds.sort();
    pmds.dedup();
    pmds
}

/// What the `engine` binary beside this supervisor says of F-Stack
/// (`engine --list-kinds`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum FstackBuild {
    /// Linked in: the F-Stack release, and the prefix it was linked
    /// against (`None` from an engine too old to report it).
    BuiltIn {
        version: String,
        prefix: Option<String>,
    },
    /// The engine was built without the `fstack` feature.
    Without,
    /// No engine binary answered `--list-kinds`.
    Unknown,
}

impl FstackBuild {
    fn of_engine_beside_us() -> Self {
        let engine = crate::bins::default_dir().join(crate::bins::Binary::Engine.name());
        crate::bins::kinds(&engine).map_or(Self::Unknown, |kinds| Self::of(&kinds))
    }

    /// What an engine's kind list says of F-Stack.
    fn of(kinds: &contract::KindList) -> Self {
        match kinds.get(contract::EngineKind::Fstack) {
            None => Self::Unknown,
            Some(k) if k.available => Self::BuiltIn {
                version: k
                    .fstack_version
                    .clone()
                    .unwrap_or_else(|| "(unknown)".into()),
                prefix: k.fstack_prefix.clone(),
            },
            Some(_) => Self::Without,
        }
    }

    /// Reads `--list-kinds`'s JSON.
    #[cfg(test)]
    fn parse(doc: &str) -> Self {
        serde_json::from_str(doc).map_or(Self::Unknown, |kinds| Self::of(&kinds))
    }
}

/// Whether vfio can run without an IOMMU (`enable_unsafe_noiommu_mode`,
/// only in kernels built with CONFIG_VFIO_NOIOMMU; Debian's are not).
fn vfio_noiommu(sysfs: &Sysfs) -> bool {
    if let Some(has) = sysfs.vfio_has_noiommu() {
        return has;
    }
    command::run(&mut command::cmd("modinfo", ["-F", "parm", "vfio"]), "")
        .is_ok_and(|p| p.contains("enable_unsafe_noiommu_mode"))
}

/// The drivers a PCI NIC can be handed to DPDK with, and the original
/// experiment's KNI module, one check each.
fn pci_driver_checks(sysfs: &Sysfs, iommu: bool) -> Vec<Check> {
    let module = |name| module::availability(sysfs, name);
    let uio = module(Driver::UioPciGeneric.module());
    let vfio = module(Driver::VfioPci.module());
    let noiommu = vfio.usable() && vfio_noiommu(sysfs);
    let igb = module(Driver::IgbUio.module());
    let kni = module(RTE_KNI);
    vec![
        check(
            "uio_pci_generic",
            uio.usable(),
            uio.describe(),
            if uio.usable() {
                "a PCI NIC can be bound to uio_pci_generic (no IOMMU, legacy interrupts)"
            } else {
                "no uio_pci_generic: bind with vfio-pci or igb_uio"
            },
        ),
        check(
            "vfio_pci",
            vfio.usable() && (iommu || noiommu),
            format!(
                "{}; {}",
                vfio.describe(),
                if iommu { "IOMMU present" } else { "no IOMMU" }
            ),
            match (vfio.usable(), iommu, noiommu) {
                (false, _, _) => "no vfio-pci: bind with uio_pci_generic or igb_uio",
                (true, true, _) => "a PCI NIC can be bound to vfio-pci (the default)",
                (true, false, true) => "vfio-pci works only in its unsafe no-IOMMU mode here",
                (true, false, false) => {
                    "vfio-pci cannot be used: no IOMMU and no no-IOMMU mode; use uio_pci_generic"
                }
            },
        ),
        check(
            "vfio_noiommu",
            noiommu,
            if noiommu {
                "vfio offers enable_unsafe_noiommu_mode"
            } else if vfio.usable() {
                "vfio has no no-IOMMU mode (kernel built without CONFIG_VFIO_NOIOMMU)"
            } else {
                "no vfio-pci"
            },
            if noiommu {
                "vfio-pci can run without an IOMMU (no DMA protection)"
            } else {
                "vfio-pci needs an IOMMU"
            },
        ),
        check(
            "igb_uio",
            igb.usable(),
            igb.describe(),
            if igb.usable() {
                "a PCI NIC can be bound to igb_uio (the original experiment's driver)"
            } else {
                "no igb_uio: build it from Debian's dpdk-kmods-dkms, or use uio_pci_generic / vfio-pci"
            },
        ),
        check(
            "rte_kni",
            kni.usable(),
            kni.describe(),
            "not needed: no engine hands packets back to the kernel; no Debian package provides rte_kni for DPDK 22.11 (KNI was removed in DPDK 23.11; virtio-user and tap replace it)",
        ),
    ]
}

/// F-Stack is linked into the engine at build time: what runs is decided
/// by the engine binary, what could be built by `FF_PATH`.
fn fstack_check(build: &FstackBuild, dpdk_ok: bool, ff_path: Option<&Path>) -> Check {
    if let FstackBuild::BuiltIn { version, prefix } = build {
        let from = prefix.as_ref().map_or_else(
            || "from a prefix it does not report (an engine older than that report)".to_owned(),
            |p| format!("linked from FF_PATH={p}"),
        );
        return check(
            "fstack",
            dpdk_ok,
            format!(
                "the engine binary beside the supervisor has F-Stack {version} built in, {from}"
            ),
            if dpdk_ok {
                "the fstack engine can run (it needs what the dpdk engine needs)"
            } else {
                "the fstack engine is built in but cannot run: DPDK's PMDs are missing (see dpdk)"
            },
        );
    }
    let engine = match build {
        FstackBuild::Unknown => "no engine binary beside the supervisor answers --list-kinds",
        _ => "engine built without F-Stack",
    };
    let ff_ok = ff_path.is_some_and(|p| p.join("lib").join("libfstack.a").exists());
    check(
        "fstack",
        false,
        match ff_path {
            Some(p) if ff_ok => format!("{engine}; FF_PATH={} holds lib/libfstack.a", p.display()),
            Some(p) => format!(
                "{engine}; FF_PATH={} but lib/libfstack.a is missing",
                p.display()
            ),
            None => format!("{engine}; FF_PATH is not set"),
        },
        match ff_path {
            Some(p) if ff_ok => format!(
                "rebuild with `FF_PATH={} cargo build --release --features engine/fstack` to get \
                 the fstack engine",
                p.display()
            ),
            _ => format!("no fstack engine: {}", crate::bins::FSTACK_HOW_TO),
        },
    )
}

/// Runs every check.
pub fn run() -> DoctorReport {
    let mut checks = Vec::new();

    let root = nix::unistd::geteuid().is_root();
    checks.push(check(
        "root",
        root,
        if root { "running as root" } else { "not root" },
        if root {
            "namespaces, hugepages and the emulator can be set up"
        } else {
            "`net up`, hugepages and bypass engines need root: run as root"
        },
    ));

    let ns = command::run(&mut command::cmd("unshare", ["-n", "true"]), "");
    checks.push(check(
        "namespaces",
        ns.is_ok(),
        match &ns {
            Ok(_) => "a network namespace can be created".to_string(),
            Err(e) => e.to_string(),
        },
        if ns.is_ok() {
            "the three-namespace testbed can be built"
        } else {
            "no testbed: network namespaces are required"
        },
    ));

    let tools: Vec<&str> = ["ip", "tc", "ethtool", "nft", "sockperf", "iperf3"]
        .into_iter()
        .filter(|t| {
            command::run(
                &mut command::cmd("sh", ["-c", &format!("command -v {t}")]),
                "",
            )
            .is_err()
        })
        .collect();
    checks.push(check(
        "tools",
        tools.is_empty(),
        if tools.is_empty() {
            "ip, tc, ethtool, nft, sockperf, iperf3 found".to_string()
        } else {
            format!("missing: {}", tools.join(", "))
        },
        if tools.is_empty() {
            "the testbed and the peer measurements can run".to_string()
        } else {
            "run scripts/setup: ip/tc/ethtool build the testbed, sockperf/iperf3 are the peer measurements".to_string()
        },
    ));

    let netem = impairment::probe_netem();
    checks.push(check(
        "netem",
        netem.available,
        if netem.available {
            "the kernel accepts a netem qdisc".to_string()
        } else {
            format!("no netem: {}", netem.detail)
        },
        if netem.available {
            "impairment will use netem (backend auto)"
        } else {
            "no netem: impairment will use the userspace emulator (backend auto)"
        },
    ));

    let total = meminfo("HugePages_Total").unwrap_or(0);
    let free = meminfo("HugePages_Free").unwrap_or(0);
    let size_kb = meminfo("Hugepagesize").unwrap_or(0);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mounted: Vec<&str> = mounts
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    checks.push(check(
        "hugepages",
        free > 0,
        format!(
            "total {total}, free {free}, size {size_kb} kB, hugetlbfs mounted at {}",
            if mounted.is_empty() { "nowhere".to_string() } else { mounted.join(", ") }
        ),
        if free > 0 {
            "the shared-memory segment and DPDK can use hugepages".to_string()
        } else {
            "no free hugepages: the supervisor reserves them (vm.nr_hugepages) when it can, else the segment falls back to /dev/shm and DPDK runs with --no-huge".to_string()
        },
    ));

    let hugetlbfs = std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some("hugetlbfs"));
    checks.push(check(
        "hugetlbfs",
        hugetlbfs,
        if hugetlbfs {
            "hugetlbfs is supported"
        } else {
            "hugetlbfs is not in /proc/filesystems"
        },
        if hugetlbfs {
            "hugepage-backed segments are possible"
        } else {
            "the segment lives in /dev/shm; DPDK needs --no-huge"
        },
    ));

    let xdp = af_xdp_socket();
    checks.push(check(
        "af_xdp",
        xdp.is_ok(),
        match &xdp {
            Ok(()) => "AF_XDP sockets can be opened".to_string(),
            Err(e) => format!("socket(AF_XDP): {e}"),
        },
        if xdp.is_ok() {
            "DPDK's net_af_xdp PMD can own a veth"
        } else {
            "no AF_XDP: the dpdk engine must use net_af_packet (slower)"
        },
    ));

    let bpf = bpf_map();
    checks.push(check(
        "bpf",
        bpf.is_ok(),
        match &bpf {
            Ok(()) => "bpf(BPF_MAP_CREATE) works".to_string(),
            Err(e) => format!("bpf(BPF_MAP_CREATE): {e}"),
        },
        if bpf.is_ok() {
            "XDP programs (for AF_XDP) can be loaded"
        } else {
            "no BPF: AF_XDP cannot redirect frames; use net_af_packet"
        },
    ));

    let dpdk = command::run(
        &mut command::cmd("pkg-config", ["--modversion", "libdpdk"]),
        "",
    );
    let pmds = dpdk_pmds();
    let usable: Vec<&str> = [
        "net_af_xdp",
        "net_af_packet",
        "net_tap",
        "net_virtio",
        "net_memif",
        "net_ring",
    ]
    .into_iter()
    .filter(|p| pmds.iter().any(|x| x == p))
    .collect();
    let dpdk_ok = dpdk.is_ok() && !usable.is_empty();
    checks.push(check(
        EngineKind::Dpdk.as_str(),
        dpdk_ok,
        match &dpdk {
            Ok(v) => format!(
                "libdpdk {} (pkg-config), {} net PMDs; for veth: {}",
                v.trim(),
                pmds.len(),
                if usable.is_empty() {
                    "none".to_string()
                } else {
                    usable.join(", ")
                }
            ),
            Err(e) => format!("pkg-config libdpdk: {e}"),
        },
        if dpdk_ok {
            "the dpdk engine can be built and run on a veth"
        } else {
            "no dpdk engine: install libdpdk-dev (scripts/setup)"
        },
    ));

    // Loaded, or loadable with modprobe: either way a NIC can be bound.
    let sysfs = Sysfs::host();
    let vfio = Path::new("/dev/vfio/vfio").exists()
        || module::availability(&sysfs, Driver::VfioPci.module()).usable();
    let uio = module::availability(&sysfs, "uio").usable();
    checks.push(check(
        "vfio_uio",
        vfio || uio,
        format!(
            "vfio-pci {}, uio {}",
            if vfio { "present" } else { "absent" },
            if uio { "present" } else { "absent" }
        ),
        if vfio || uio {
            "a PCI NIC can be bound to DPDK"
        } else {
            "no NIC can be bound to DPDK: engines use virtual devices (af_xdp/af_packet on veth)"
        },
    ));

    let iommu = sysfs.iommu_present();
    checks.push(check(
        "iommu",
        iommu,
        if iommu {
            "IOMMU groups present"
        } else {
            "no IOMMU groups"
        },
        if iommu {
            "vfio-pci can be used in its safe mode"
        } else {
            "vfio-pci would need no-IOMMU mode; irrelevant for veth-based runs"
        },
    ));

    checks.extend(pci_driver_checks(&sysfs, iommu));

    let modules = Path::new("/proc/modules").exists()
        && std::fs::read_to_string("/proc/sys/kernel/modules_disabled")
            .is_ok_and(|v| v.trim() == "0");
    checks.push(check(
        "modules",
        modules,
        if modules {
            "the kernel loads modules"
        } else {
            "this kernel cannot load modules (no /proc/modules or modules_disabled)"
        },
        if modules {
            "missing drivers (netem, vfio, uio) could be loaded with modprobe"
        } else {
            "what is not built in (netem, uio, igb_uio, vfio, rte_kni) is unavailable"
        },
    ));

    let fstack = FstackBuild::of_engine_beside_us();
    let ff_path = std::env::var_os("FF_PATH").map(std::path::PathBuf::from);
    checks.push(fstack_check(&fstack, dpdk_ok, ff_path.as_deref()));
    let fstack_runs = dpdk_ok && matches!(fstack, FstackBuild::BuiltIn { .. });

    let cores = host_cores();
    checks.push(check(
        "cores",
        cores >= 2,
        format!("{cores} online"),
        if cores >= 3 {
            "engine, load generator and emulator can each have a core"
        } else if cores == 2 {
            "engine and load generator get a core each; the emulator shares the load generator's"
        } else {
            "everything shares one core: latency figures will include scheduling"
        },
    ));

    let mut engines = vec![EngineKind::Kernel];
    if dpdk_ok {
        engines.push(EngineKind::Dpdk);
        if fstack_runs {
            engines.push(EngineKind::Fstack);
        }
    }
    DoctorReport {
        checks,
        impairment_backend: if netem.available {
            Backend::Netem
        } else {
            Backend::Emulator
        },
        engines,
    }
}

impl std::fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.checks {
            writeln!(
                f,
                "{:<8} {:<15} {} — {}",
                if c.ok { "ok" } else { "missing" },
                c.name,
                c.detail,
                c.consequence
            )?;
        }
        writeln!(f, "impairment backend (auto): {}", self.impairment_backend)?;
        let engines: Vec<&str> = self.engines.iter().map(|e| e.as_str()).collect();
        writeln!(f, "engines: {}", engines.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own, removed even when the test fails.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("bypasslab-doctor-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reads_the_fstack_build_from_the_engines_listing() {
        let with = r#"{"kinds":[{"available":true,"kind":"kernel"},{"available":true,
            "dpdk_version":"22.11.11","fstack_prefix":"/opt/f-stack","fstack_version":"1.24",
            "kind":"fstack"}]}"#;
        assert_eq!(
            FstackBuild::parse(with),
            FstackBuild::BuiltIn {
                version: "1.24".into(),
                prefix: Some("/opt/f-stack".into())
            }
        );
        let older = r#"{"kinds":[{"available":true,"fstack_version":"1.24","kind":"fstack"}]}"#;
        assert_eq!(
            FstackBuild::parse(older),
            FstackBuild::BuiltIn {
                version: "1.24".into(),
                prefix: None
            }
        );
        let without = r#"{"kinds":[{"available":false,"kind":"fstack","reason":"built without"}]}"#;
        assert_eq!(FstackBuild::parse(without), FstackBuild::Without);
        for garbage in ["", "not json", "{}", r#"{"kinds":[]}"#] {
            assert_eq!(
                FstackBuild::parse(garbage),
                FstackBuild::Unknown,
                "{garbage}"
            );
        }
    }

    #[test]
    fn a_built_in_fstack_shows_its_version_and_prefix() {
        let build = FstackBuild::BuiltIn {
            version: "1.24".into(),
            prefix: Some("/opt/f-stack".into()),
        };
        let c = fstack_check(&build, true, None);
        assert!(c.ok);
        assert!(
            c.detail.contains("F-Stack 1.24") && c.detail.contains("FF_PATH=/opt/f-stack"),
            "{}",
            c.detail
        );
        let c = fstack_check(&build, false, None);
        assert!(!c.ok && c.consequence.contains("DPDK"), "{}", c.consequence);
    }

    #[test]
    fn without_fstack_it_gives_the_command_that_builds_it() {
        for build in [FstackBuild::Without, FstackBuild::Unknown] {
            let c = fstack_check(&build, true, None);
            assert!(!c.ok);
            assert!(c.detail.contains("FF_PATH is not set"), "{}", c.detail);
            for needle in ["scripts/fstack --source", "scripts/fstack --clone", "1.24"] {
                assert!(
                    c.consequence.contains(needle),
                    "{needle}: {}",
                    c.consequence
                );
            }
        }
        let empty = TempDir::new("empty");
        let c = fstack_check(&FstackBuild::Without, true, Some(&empty.0));
        assert!(
            c.detail.contains("lib/libfstack.a is missing"),
            "{}",
            c.detail
        );
        assert!(c.consequence.contains("scripts/fstack --source"));
    }

    #[test]
    fn with_an_f_stack_prefix_it_says_how_to_rebuild_against_it() {
        let prefix = TempDir::new("prefix");
        std::fs::create_dir_all(prefix.0.join("lib")).unwrap();
        std::fs::write(prefix.0.join("lib").join("libfstack.a"), b"").unwrap();
        let c = fstack_check(&FstackBuild::Without, true, Some(&prefix.0));
        assert!(!c.ok);
        assert!(c.detail.contains("holds lib/libfstack.a"), "{}", c.detail);
        let rebuild = format!("FF_PATH={} cargo build", prefix.0.display());
        assert!(c.consequence.contains(&rebuild), "{}", c.consequence);
    }
}
