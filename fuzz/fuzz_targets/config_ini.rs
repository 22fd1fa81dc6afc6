//! Fuzz target: the bypass engines' `config.ini` parser (F-Stack format).
//!
//! Any text must either be refused with a `ConfigError` whose message names
//! the key or line at fault, or give a config the engine can use as is: an
//! address that is a host, a prefix of at most 32 bits, a serving lcore, an
//! interface name that fits Linux's limit. Nothing may panic.
//!
//! The parser is compiled in from dpdk-stack's source (it depends on std
//! and thiserror only), so the fuzz build does not link DPDK.
//!
//! ```text
//! scripts/fuzz --time 600 config_ini
//! cargo run --manifest-path fuzz/Cargo.toml --bin config_ini -- fuzz/corpus/config_ini
//! ```

#![cfg_attr(fuzzing, no_main)]

#[allow(dead_code)]
#[path = "../../dpdk-stack/src/config.rs"]
mod config;

use config::{ConfigError, DpdkConfig};

fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match DpdkConfig::parse(text) {
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty());
            match &e {
                ConfigError::Syntax { line, .. } => {
                    assert!(*line >= 1 && *line <= text.lines().count().max(1));
                }
                ConfigError::Missing { key } | ConfigError::Invalid { key, .. } => {
                    assert!(message.contains(key), "{message:?} does not name {key}");
                }
                ConfigError::Read { .. } => panic!("parse never reads a file"),
            }
        }
        Ok(cfg) => {
            assert!(cfg.port0.prefix_len <= 32);
            assert!(!cfg.port0.addr.is_unspecified() && !cfg.port0.addr.is_broadcast());
            assert!(!cfg.lcores.is_empty(), "no serving lcore");
            assert_eq!(cfg.main_lcore(), cfg.lcores[0]);
            if let Some(iface) = &cfg.iface {
                assert!(!iface.is_empty() && iface.len() <= 15, "iface {iface:?}");
            }
            let _ = cfg.pmd.vdev_name();
        }
    }
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
