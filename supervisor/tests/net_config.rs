//! Bad configurations are rejected with the key named, before any side
//! effect.

mod support;

use support::supervisor;
use testbed::config::{ConfigError, TestbedConfig};

fn rejected_by_cli(text: &str, key: &str) {
    let path = std::env::temp_dir().join(format!(
        "bypasslab-badcfg-{}-{}.toml",
        std::process::id(),
        key.replace('.', "_")
    ));
    std::fs::write(&path, text).expect("write config");
    let p = path.to_string_lossy().into_owned();
    let out = supervisor(&["net", "status", "--config", &p]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.code, Some(2), "{text}");
    let err = out.stderr.clone();
    println!("{err}");
    assert!(err.contains(key), "{key} not named in: {err}");
}

#[test]
fn net_config_unknown_key() {
    let e = TestbedConfig::from_toml_str("[impairment]\nlos_percent = 1.0\n").unwrap_err();
    assert!(matches!(&e, ConfigError::UnknownKey { key, .. } if key == "impairment.los_percent"));
    rejected_by_cli(
        "[impairment]\nlos_percent = 1.0\n",
        "impairment.los_percent",
    );
}

#[test]
fn net_config_loss_150() {
    let e = TestbedConfig::from_toml_str("[impairment]\nloss_percent = 150.0\n").unwrap_err();
    assert!(matches!(
        e,
        ConfigError::Invalid {
            key: "impairment.loss_percent",
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "impairment.loss_percent = 150: must be within 0..=100"
    );
    rejected_by_cli(
        "[impairment]\nloss_percent = 150.0\n",
        "impairment.loss_percent",
    );
}

#[test]
fn net_config_overlapping_and_invalid_addresses() {
    let e = TestbedConfig::from_toml_str("[addresses]\nclient = \"10.77.0.3\"\n").unwrap_err();
    assert!(matches!(
        e,
        ConfigError::Invalid {
            key: "addresses.server",
            ..
        }
    ));
    let e = TestbedConfig::from_toml_str("[addresses]\nserver = \"10.77.1.3\"\n").unwrap_err();
    assert!(matches!(
        e,
        ConfigError::Invalid {
            key: "addresses.server",
            ..
        }
    ));
    let e = TestbedConfig::from_toml_str("[addresses]\nsubnet = \"10.77.0.0/33\"\n").unwrap_err();
    assert!(matches!(
        e,
        ConfigError::Invalid {
            key: "addresses.subnet",
            ..
        }
    ));
    rejected_by_cli("[addresses]\nclient = \"10.77.0.3\"\n", "addresses.server");
}

#[test]
fn net_config_bad_direction_and_core() {
    let e = TestbedConfig::from_toml_str("[impairment]\ndirection = \"up\"\n").unwrap_err();
    assert!(matches!(
        e,
        ConfigError::Invalid {
            key: "impairment.direction",
            ..
        }
    ));
    let e = TestbedConfig::from_toml_str("[cores]\nengine = 4096\n").unwrap_err();
    assert!(matches!(
        e,
        ConfigError::Invalid {
            key: "cores.engine",
            ..
        }
    ));
    rejected_by_cli("[cores]\nemulator = 4096\n", "cores.emulator");
    rejected_by_cli("[impairment]\ndirection = \"up\"\n", "impairment.direction");
}

#[test]
fn net_config_shipped_file_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/testbed.toml");
    let c = TestbedConfig::load(Some(&path)).expect("config/testbed.toml is valid");
    assert_eq!(
        c,
        TestbedConfig::default().with_name(c.name()).expect("name")
    );
}
