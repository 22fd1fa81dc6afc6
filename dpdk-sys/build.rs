//! Builds the DPDK FFI: finds Debian's libdpdk with pkg-config, compiles the
//! C shim over DPDK's static-inline functions with the same flags, and
//! generates bindings for an explicit allowlist only (everything else in the
//! DPDK headers stays out of the crate).

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// What to install when libdpdk is missing (Debian 12 package names).
const INSTALL_HINT: &str = "install Debian's DPDK 22.11 development files and the tools the \
     bindings need: `apt-get install libdpdk-dev pkg-config libclang-dev clang` \
     (scripts/setup does this)";

const FUNCTIONS: &[&str] = &[
    "rte_eal_init",
    "rte_eal_cleanup",
    "rte_eal_get_runtime_dir",
    "rte_strerror",
    "rte_socket_id",
    "rte_lcore_count",
    "rte_pktmbuf_pool_create",
    "rte_mempool_free",
    "rte_mempool_avail_count",
    "rte_mempool_in_use_count",
    "rte_dev_probe",
    "rte_eth_dev_count_avail",
    "rte_eth_dev_get_port_by_name",
    "rte_eth_dev_get_name_by_port",
    "rte_eth_dev_info_get",
    "rte_eth_dev_configure",
    "rte_eth_dev_adjust_nb_rx_tx_desc",
    "rte_eth_rx_queue_setup",
    "rte_eth_tx_queue_setup",
    "rte_eth_dev_start",
    "rte_eth_dev_stop",
    "rte_eth_dev_close",
    "rte_eth_dev_socket_id",
    "rte_eth_dev_get_mtu",
    "rte_eth_stats_get",
    "rte_eth_stats_reset",
    "rte_eth_macaddr_get",
    "rte_eth_promiscuous_enable",
    "shim_.*",
];

const TYPES: &[&str] = &[
    "rte_eth_stats",
    "rte_eth_conf",
    "rte_eth_dev_info",
    "rte_eth_rxconf",
    "rte_eth_txconf",
    "rte_ether_addr",
];

const CONSTANTS: &[&str] = &[
    "RTE_PKTMBUF_HEADROOM",
    "RTE_MBUF_DEFAULT_DATAROOM",
    "RTE_MAX_ETHPORTS",
    "RTE_MAX_LCORE",
    "RTE_ETHER_ADDR_LEN",
    "RTE_MEMPOOL_CACHE_MAX_SIZE",
    "RTE_ETH_NAME_MAX_LEN",
    "SOCKET_ID_ANY",
];

fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    // The full cflags (not only -I): DPDK's headers expect `-include
    // rte_config.h` and the -march the library was built for.
    let cflags = pkg_config_cflags();

    // Shim first: cargo passes link libraries in the order they are printed,
    // and the shim's references must resolve against the DPDK libraries that
    // follow it.
    let mut shim = cc::Build::new();
    shim.file("src/shim.c").include("src").warnings(true);
    for flag in &cflags {
        shim.flag(flag);
    }
    shim.compile("bypasslab_dpdk_shim");

    // Dynamic link against the distribution's shared libraries. Poll-mode
    // drivers are not linked: EAL loads them as plugins from its driver
    // directory (`pkg-config --variable=pmdsdir libdpdk` style), which
    // Debian compiles into librte_eal.
    let lib = pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
        .unwrap_or_else(|e| panic!("libdpdk not found with pkg-config ({e}); {INSTALL_HINT}"));
    if let Some(dir) = pmds_dir() {
        println!("cargo:rustc-env=DPDK_SYS_PMDS_DIR={dir}");
    } else {
        println!("cargo:rustc-env=DPDK_SYS_PMDS_DIR=");
    }
    println!("cargo:rustc-env=DPDK_SYS_VERSION={}", lib.version);

    let mut builder = bindgen::Builder::default()
        .header("src/wrapper.h")
        .clang_arg("-Isrc")
        .clang_args(cflags.iter().filter(|f| !f.starts_with("-march")))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        // Only ever handled through pointers: their layouts (bitfields,
        // cache-aligned unions) are DPDK's business, read through the shim.
        .opaque_type("rte_mbuf")
        .opaque_type("rte_mempool")
        .derive_default(true)
        .prepend_enum_name(false)
        .layout_tests(true)
        // DPDK's doxygen would become (failing) doctests.
        .generate_comments(false);
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for c in CONSTANTS {
        builder = builder.allowlist_var(c);
    }
    let bindings = builder
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on the DPDK headers ({e}); {INSTALL_HINT}"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}

fn pkg_config_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
    let output = Command::new(&pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{pkg_config}` ({e}); {INSTALL_HINT}"));
    if !output.status.success() {
        panic!(
            "`{pkg_config} --cflags libdpdk` failed: {}; {INSTALL_HINT}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    // `-include rte_config.h` is dropped: the shim and the wrapper include
    // rte_config.h first themselves, and cc cannot take a two-word flag.
    let mut flags = Vec::new();
    let mut words = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter();
    while let Some(word) = words.next() {
        if word == "-include" {
            words.next();
        } else {
            flags.push(word);
        }
    }
    flags
}

/// EAL's plugin directory (`<libdir>/dpdk/pmds-<abi>`), when there is one.
/// Debian compiles it into librte_eal, so EAL finds its drivers by itself;
/// the engine passes it with `-d` only when a driver turns out missing.
fn pmds_dir() -> Option<String> {
    let libdir = pkg_config::get_variable("libdpdk", "libdir").ok()?;
    let mut dirs: Vec<_> = std::fs::read_dir(format!("{libdir}/dpdk"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("pmds-"))
        .map(|e| e.path().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    dirs.pop()
}
