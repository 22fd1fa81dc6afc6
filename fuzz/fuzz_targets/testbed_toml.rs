//! Fuzz target: the testbed.toml parser and validator.
//!
//! Any text must either be refused with a `ConfigError` or give a config
//! whose derived names fit Linux's limits, whose addresses are distinct hosts
//! of its subnet, and that survives a round trip through its own raw form
//! (`with_name` re-validates). Nothing may panic.
//!
//! ```text
//! scripts/fuzz --time 600 testbed_toml
//! cargo run --manifest-path fuzz/Cargo.toml --bin testbed_toml -- fuzz/corpus/testbed_toml
//! ```

#![cfg_attr(fuzzing, no_main)]

use testbed::config::TestbedConfig;

fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = TestbedConfig::from_toml_str(text) else {
        return;
    };
    for iface in [
        cfg.client_iface(),
        cfg.server_iface(),
        cfg.client_peer_iface(),
        cfg.server_peer_iface(),
        cfg.bridge_iface(),
        cfg.emulator_iface(),
        cfg.emulator_peer_iface(),
    ] {
        assert!(
            !iface.is_empty() && iface.len() <= 15,
            "interface name {iface:?} does not fit IFNAMSIZ"
        );
    }
    for ns in [cfg.client_ns(), cfg.bridge_ns(), cfg.server_ns()] {
        assert!(!ns.contains('/') && !ns.is_empty(), "namespace {ns:?}");
    }
    assert_ne!(cfg.client_addr(), cfg.server_addr());
    let prefix = cfg.prefix_len();
    assert!(prefix <= 32);
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    for addr in [cfg.client_addr(), cfg.server_addr()] {
        assert_eq!(
            u32::from(addr) & mask,
            u32::from(cfg.subnet()) & mask,
            "{addr} outside the subnet"
        );
    }
    assert!(cfg.mtu() > 0);
    let _ = (cfg.port(), cfg.cores(), cfg.impairment(), cfg.state_dir());
    let again = cfg
        .clone()
        .with_name(cfg.name())
        .expect("a valid config re-validates");
    assert_eq!(again, cfg, "round trip changed the config");
}

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));

/// Replays the files (and directories of files) named on the command line.
#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
    replay::replay(check)
}

#[cfg(not(fuzzing))]
#[path = "replay.rs"]
mod replay;
