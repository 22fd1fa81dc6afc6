//! The testbed configuration: `config/testbed.toml` parsed and validated into
//! a [`TestbedConfig`] before anything touches the host.
//!
//! Parsing happens in two passes. The raw TOML is first walked against the
//! list of known keys, so an unknown key is reported with its full dotted name
//! (`impairment.loss`), then deserialised into typed sections and checked
//! semantically. Every error names the key and the reason:
//!
//! ```text
//! impairment.loss_percent = 150: must be within 0..=100
//! ```
//!
//! Every key has a default, so an empty file (or no file) is a valid testbed.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where [`TestbedConfig::load`] looks when it is given no path.
pub const DEFAULT_CONFIG_PATH: &str = "config/testbed.toml";

/// Longest testbed name: the longest derived interface name is the name plus
/// five characters (`<name>-c-br`), and Linux allows 15.
pub const MAX_NAME_LEN: usize = 10;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or a value has the wrong type.
    #[error("parse config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A key this version does not know (typo, or a key from another version).
    #[error("{key}: unknown key ({hint})")]
    UnknownKey { key: String, hint: String },
    /// A known key with a value outside what the testbed accepts.
    #[error("{key} = {value}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
}

/// How link impairment is realised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// netem where the kernel has it, else the userspace emulator.
    Auto,
    /// The kernel's netem qdisc; fails where the kernel has none.
    Netem,
    /// The userspace link emulator in NS2.
    Emulator,
    /// No impairment: a plain bridge.
    None,
}

pub use contract::emulator::{Direction, EmulatorMode};

/// What a namespace is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsRole {
    /// NS1: the load generator.
    Client,
    /// NS2: the bridge (and the link emulator).
    Bridge,
    /// NS3: the engine.
    Server,
}

impl NsRole {
    /// How `net status` names it.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Client => "client (NS1)",
            Self::Bridge => "bridge (NS2)",
            Self::Server => "server (NS3)",
        }
    }
}

/// The impairment section, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Impairment {
    pub backend: BackendChoice,
    pub delay_us: u32,
    pub jitter_us: u32,
    pub loss_percent: f64,
    pub direction: Direction,
    pub emulator_mode: EmulatorMode,
    /// Seed of the emulator's drop decisions; 0 picks one at start.
    pub seed: u64,
}

impl Impairment {
    /// Whether this impairment changes anything at all.
    pub fn is_noop(&self) -> bool {
        self.delay_us == 0 && self.jitter_us == 0 && self.loss_percent == 0.0
    }
}

/// Cores the testbed's processes are pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cores {
    pub engine: usize,
    pub loadgen: usize,
    pub emulator: usize,
}

/// Where one role of a two-host run lives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleHost {
    /// The host, over SSH (`None`: this host, outside the testbed's
    /// namespaces).
    #[serde(serialize_with = "display_opt")]
    pub ssh: Option<crate::remote::target::SshTarget>,
    /// Its interface on the link to the other host.
    pub iface: Option<String>,
    /// The engine host's poll-mode driver for a bypass engine (a NIC:
    /// `pci:…`); `None`: the command line's `--pmd`.
    #[serde(serialize_with = "display_opt")]
    pub pmd: Option<contract::Pmd>,
    /// Core the role's process is pinned to there.
    pub core: usize,
    /// The supervisor binary there: a name on its PATH or an absolute path.
    pub supervisor: String,
    /// `ssh -o` options (`Key=Value`), as given.
    pub ssh_options: Vec<String>,
}

fn display_opt<S: serde::Serializer, T: fmt::Display>(
    value: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// The two-host placement: set when `[hosts]` names a host for either
/// role; then both roles run through a host's `supervisor serve`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hosts {
    /// The engine's host.
    pub engine: RoleHost,
    /// The load generator's host.
    pub client: RoleHost,
}

/// A validated testbed description. Build it with [`TestbedConfig::load`],
/// [`TestbedConfig::from_toml_str`] or [`TestbedConfig::default`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestbedConfig {
    name: String,
    subnet: Ipv4Addr,
    prefix_len: u8,
    client: Ipv4Addr,
    server: Ipv4Addr,
    mtu: u32,
    impairment: Impairment,
    cores: Cores,
    port: u16,
    dpdk_hugepages: Option<u64>,
    limits: ServiceLimits,
    /// `[client] stack`: the load generator's TCP stack by default.
    client_stack: contract::ClientStack,
    /// `[engine_host]` and `[client_host]`, kept with or without `[hosts]`
    /// (the command line may name the hosts).
    role_hosts: Hosts,
}

// ---- raw (deserialised, not yet validated) sections ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFile {
    testbed: RawTestbed,
    addresses: RawAddresses,
    link: RawLink,
    impairment: RawImpairment,
    cores: RawCores,
    service: RawService,
    dpdk: RawDpdk,
    client: RawClient,
    hosts: RawHosts,
    engine_host: RawRoleHost,
    client_host: RawRoleHost,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHosts {
    engine: Option<String>,
    client: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRoleHost {
    iface: Option<String>,
    pmd: Option<String>,
    core: Option<i64>,
    supervisor: Option<String>,
    ssh_options: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTestbed {
    name: String,
}
impl Default for RawTestbed {
    fn default() -> Self {
        Self { name: "bl".into() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAddresses {
    subnet: String,
    client: String,
    server: String,
}
impl Default for RawAddresses {
    fn default() -> Self {
        Self {
            subnet: "10.77.0.0/24".into(),
            client: "10.77.0.1".into(),
            server: "10.77.0.3".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLink {
    mtu: i64,
}
impl Default for RawLink {
    fn default() -> Self {
        Self { mtu: 1500 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawImpairment {
    backend: String,
    delay_us: i64,
    jitter_us: i64,
    loss_percent: f64,
    direction: String,
    emulator_mode: String,
    seed: i64,
}
impl Default for RawImpairment {
    fn default() -> Self {
        Self {
            backend: "auto".into(),
            delay_us: 100,
            jitter_us: 0,
            loss_percent: 1.0,
            direction: "from-ns3".into(),
            emulator_mode: "blocking".into(),
            seed: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCores {
    engine: i64,
    loadgen: i64,
    emulator: i64,
}
impl Default for RawCores {
    fn default() -> Self {
        Self {
            engine: 1,
            loadgen: 0,
            emulator: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawService {
    port: i64,
    max_connections: i64,
    listen_backlog: i64,
}
impl Default for RawService {
    fn default() -> Self {
        let limits = ServiceLimits::default();
        Self {
            port: 7000,
            max_connections: i64::try_from(limits.max_connections).unwrap_or(i64::MAX),
            listen_backlog: i64::from(limits.listen_backlog),
        }
    }
}

/// How many connections the engine takes: `[service] max_connections` and
/// `listen_backlog`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServiceLimits {
    /// Most connections served at once; further ones are refused and
    /// counted.
    pub max_connections: usize,
    /// Connection attempts that can wait at once for the engine.
    pub listen_backlog: u32,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            listen_backlog: 1024,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawClient {
    stack: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDpdk {
    hugepages: Option<i64>,
}

/// Most 2 MB pages `dpdk.hugepages` may ask for (512 GB).
const MAX_HUGEPAGES: i64 = 262_144;

/// Every key the file may hold, by section.
const KNOWN_KEYS: &[(&str, &[&str])] = &[
    ("testbed", &["name"]),
    ("addresses", &["subnet", "client", "server"]),
    ("link", &["mtu"]),
    (
        "impairment",
        &[
            "backend",
            "delay_us",
            "jitter_us",
            "loss_percent",
            "direction",
            "emulator_mode",
            "seed",
        ],
    ),
    ("cores", &["engine", "loadgen", "emulator"]),
    ("service", &["port", "max_connections", "listen_backlog"]),
    ("hosts", &["engine", "client"]),
    (
        "engine_host",
        &["iface", "pmd", "core", "supervisor", "ssh_options"],
    ),
    (
        "client_host",
        &["iface", "pmd", "core", "supervisor", "ssh_options"],
    ),
    ("dpdk", &["hugepages"]),
    ("client", &["stack"]),
];

/// The most cores a remote host's core number may name (its own count is
/// checked there, by the process that pins itself).
const MAX_REMOTE_CORE: i64 = 4095;

impl RawRoleHost {
    fn validate(
        &self,
        url: Option<&str>,
        section: &'static str,
        keys: [&'static str; 5],
        default_core: usize,
    ) -> Result<RoleHost, ConfigError> {
        let [k_host, k_iface, k_pmd, k_core, k_supervisor] = keys;
        let ssh = url
            .map(|u| {
                u.parse::<crate::remote::target::SshTarget>()
                    .map_err(|e| invalid(k_host, format!("{u:?}"), e.to_string()))
            })
            .transpose()?;
        let ssh = ssh
            .map(|t| {
                t.with_options(&self.ssh_options)
                    .map_err(|e| invalid(section, format!("{:?}", self.ssh_options), e.to_string()))
            })
            .transpose()?;
        if let Some(iface) = &self.iface {
            if !contract::serve::is_iface_name(iface) {
                return Err(invalid(
                    k_iface,
                    format!("{iface:?}"),
                    "must be an interface name: 1..=15 of letters, digits, - _ .",
                ));
            }
        }
        let pmd = self
            .pmd
            .as_deref()
            .map(|p| {
                p.parse::<contract::Pmd>()
                    .map_err(|e| invalid(k_pmd, format!("{p:?}"), e.to_string()))
            })
            .transpose()?;
        let core = match self.core {
            Some(v) => in_range::<usize>(k_core, v, 0, MAX_REMOTE_CORE)?,
            None => default_core,
        };
        let supervisor = self
            .supervisor
            .clone()
            .unwrap_or_else(|| "supervisor".into());
        let plain = !supervisor.is_empty()
            && !supervisor.starts_with('-')
            && supervisor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+'));
        if !plain {
            return Err(invalid(
                k_supervisor,
                format!("{supervisor:?}"),
                "must be a program name or an absolute path of letters, digits, / . _ - + (it is run by the remote shell)",
            ));
        }
        Ok(RoleHost {
            ssh,
            iface: self.iface.clone(),
            pmd,
            core,
            supervisor,
            ssh_options: self.ssh_options.clone(),
        })
    }

    fn of(host: &RoleHost) -> Self {
        Self {
            iface: host.iface.clone(),
            pmd: host.pmd.as_ref().map(ToString::to_string),
            core: i64::try_from(host.core).ok(),
            supervisor: Some(host.supervisor.clone()),
            ssh_options: host.ssh_options.clone(),
        }
    }
}

/// Reports the first key that is not in [`KNOWN_KEYS`], with its dotted name.
fn check_known_keys(value: &toml::Value) -> Result<(), ConfigError> {
    let Some(table) = value.as_table() else {
        return Ok(());
    };
    for (section, body) in table {
        let Some((_, keys)) = KNOWN_KEYS.iter().find(|(s, _)| s == section) else {
            let sections: Vec<&str> = KNOWN_KEYS.iter().map(|(s, _)| *s).collect();
            return Err(ConfigError::UnknownKey {
                key: section.clone(),
                hint: format!("known sections: {}", sections.join(", ")),
            });
        };
        let Some(body) = body.as_table() else {
            return Err(ConfigError::Parse {
                path: PathBuf::new(),
                message: format!("{section}: must be a table ([{section}])"),
            });
        };
        for key in body.keys() {
            if !keys.contains(&key.as_str()) {
                return Err(ConfigError::UnknownKey {
                    key: format!("{section}.{key}"),
                    hint: format!("known keys of [{section}]: {}", keys.join(", ")),
                });
            }
        }
    }
    Ok(())
}

fn invalid(key: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn in_range<T: TryFrom<i64>>(
    key: &'static str,
    v: i64,
    lo: i64,
    hi: i64,
) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        return Err(invalid(key, v, format!("must be within {lo}..={hi}")));
    }
    T::try_from(v).map_err(|_| invalid(key, v, format!("must be within {lo}..={hi}")))
}

fn is_private(a: Ipv4Addr) -> bool {
    a.is_private()
}

/// Number of cores this host has online.
pub fn host_cores() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|n| *n > 0).unwrap_or(1)
}

impl RawFile {
    fn validate(self, cores_available: usize) -> Result<TestbedConfig, ConfigError> {
        // testbed.name: prefix of every namespace, link and state directory.
        let name = self.testbed.name;
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(invalid(
                "testbed.name",
                format!("{name:?}"),
                format!("must be 1..={MAX_NAME_LEN} characters so derived interface names fit Linux's 15"),
            ));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase())
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(invalid(
                "testbed.name",
                format!("{name:?}"),
                "must start with a-z and hold only a-z and 0-9",
            ));
        }

        // addresses: a private subnet holding two distinct host addresses.
        let a = &self.addresses;
        let (net, prefix_len) = a.subnet.split_once('/').ok_or_else(|| {
            invalid(
                "addresses.subnet",
                format!("{:?}", a.subnet),
                "must be an IPv4 network like 10.77.0.0/24",
            )
        })?;
        let net: Ipv4Addr = net.parse().map_err(|_| {
            invalid(
                "addresses.subnet",
                format!("{:?}", a.subnet),
                "must be an IPv4 network like 10.77.0.0/24",
            )
        })?;
        let prefix_len: u8 = prefix_len
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| {
                invalid(
                    "addresses.subnet",
                    format!("{:?}", a.subnet),
                    "prefix length must be within 8..=30",
                )
            })?;
        let mask = u32::MAX << (32 - u32::from(prefix_len));
        if u32::from(net) & !mask != 0 {
            return Err(invalid(
                "addresses.subnet",
                format!("{:?}", a.subnet),
                "host bits must be zero",
            ));
        }
        if !is_private(net) {
            return Err(invalid(
                "addresses.subnet",
                format!("{:?}", a.subnet),
                "must be a private (RFC 1918) network so testbed traffic can never leave the host",
            ));
        }
        let host = |key: &'static str, s: &str| -> Result<Ipv4Addr, ConfigError> {
            let ip: Ipv4Addr = s
                .parse()
                .map_err(|_| invalid(key, format!("{s:?}"), "must be an IPv4 address"))?;
            let bits = u32::from(ip);
            if bits & mask != u32::from(net) {
                return Err(invalid(
                    key,
                    format!("{s:?}"),
                    format!("must lie inside addresses.subnet {}", a.subnet),
                ));
            }
            if bits & !mask == 0 || bits & !mask == !mask {
                return Err(invalid(
                    key,
                    format!("{s:?}"),
                    "is the network or broadcast address of the subnet",
                ));
            }
            Ok(ip)
        };
        let client = host("addresses.client", &a.client)?;
        let server = host("addresses.server", &a.server)?;
        if client == server {
            return Err(invalid(
                "addresses.server",
                format!("{:?}", a.server),
                "overlaps addresses.client: the two ends need distinct addresses",
            ));
        }

        let mtu = in_range::<u32>("link.mtu", self.link.mtu, 576, 9000)?;

        let i = &self.impairment;
        let backend = match i.backend.as_str() {
            "auto" => BackendChoice::Auto,
            "netem" => BackendChoice::Netem,
            "emulator" => BackendChoice::Emulator,
            "none" => BackendChoice::None,
            other => {
                return Err(invalid(
                    "impairment.backend",
                    format!("{other:?}"),
                    "must be one of auto, netem, emulator, none",
                ))
            }
        };
        let delay_us = in_range::<u32>("impairment.delay_us", i.delay_us, 0, 1_000_000)?;
        let jitter_us = in_range::<u32>("impairment.jitter_us", i.jitter_us, 0, 1_000_000)?;
        if jitter_us > delay_us {
            return Err(invalid(
                "impairment.jitter_us",
                jitter_us,
                format!("must not exceed impairment.delay_us ({delay_us}): a frame cannot leave before it arrived"),
            ));
        }
        if !i.loss_percent.is_finite() || !(0.0..=100.0).contains(&i.loss_percent) {
            return Err(invalid(
                "impairment.loss_percent",
                i.loss_percent,
                "must be within 0..=100",
            ));
        }
        let direction = i
            .direction
            .parse::<Direction>()
            .map_err(|e| invalid("impairment.direction", format!("{:?}", i.direction), e))?;
        let emulator_mode = i.emulator_mode.parse::<EmulatorMode>().map_err(|e| {
            invalid(
                "impairment.emulator_mode",
                format!("{:?}", i.emulator_mode),
                e,
            )
        })?;
        let seed = u64::try_from(i.seed)
            .map_err(|_| invalid("impairment.seed", i.seed, "must not be negative"))?;

        let max_core = i64::try_from(cores_available).unwrap_or(i64::MAX) - 1;
        let core = |key: &'static str, v: i64| -> Result<usize, ConfigError> {
            if v < 0 || v > max_core {
                return Err(invalid(
                    key,
                    v,
                    format!("this host has cores 0..={max_core}"),
                ));
            }
            usize::try_from(v).map_err(|_| invalid(key, v, "must not be negative"))
        };
        let cores = Cores {
            engine: core("cores.engine", self.cores.engine)?,
            loadgen: core("cores.loadgen", self.cores.loadgen)?,
            emulator: core("cores.emulator", self.cores.emulator)?,
        };
        let port = in_range::<u16>("service.port", self.service.port, 1, 65535)?;
        let max_connections = in_range::<usize>(
            "service.max_connections",
            self.service.max_connections,
            1,
            1_000_000,
        )?;
        let listen_backlog = in_range::<u32>(
            "service.listen_backlog",
            self.service.listen_backlog,
            1,
            4095,
        )?;

        let engine_role = self.engine_host.validate(
            self.hosts.engine.as_deref(),
            "engine_host.ssh_options",
            [
                "hosts.engine",
                "engine_host.iface",
                "engine_host.pmd",
                "engine_host.core",
                "engine_host.supervisor",
            ],
            cores.engine,
        )?;
        let client_role = self.client_host.validate(
            self.hosts.client.as_deref(),
            "client_host.ssh_options",
            [
                "hosts.client",
                "client_host.iface",
                "client_host.pmd",
                "client_host.core",
                "client_host.supervisor",
            ],
            cores.loadgen,
        )?;
        let two_hosts = engine_role.ssh.is_some() || client_role.ssh.is_some();
        if two_hosts
            && engine_role.iface.is_none()
            && engine_role
                .pmd
                .as_ref()
                .and_then(contract::Pmd::pci)
                .is_none()
        {
            return Err(invalid(
                "engine_host.iface",
                "none",
                "the engine host needs its interface on the link to the client (or pmd = \"pci:…\")",
            ));
        }
        let role_hosts = Hosts {
            engine: engine_role,
            client: client_role,
        };
        let dpdk_hugepages = self
            .dpdk
            .hugepages
            .map(|n| in_range::<u64>("dpdk.hugepages", n, 1, MAX_HUGEPAGES))
            .transpose()?;
        let client_stack = match self.client.stack.as_deref() {
            None => contract::ClientStack::default(),
            Some(name) => contract::ClientStack::from_name(name).ok_or_else(|| {
                invalid(
                    "client.stack",
                    format!("{name:?}"),
                    format!(
                        "must be one of {}",
                        contract::ClientStack::ALL
                            .map(contract::ClientStack::name)
                            .join(", ")
                    ),
                )
            })?,
        };

        Ok(TestbedConfig {
            name,
            subnet: net,
            prefix_len,
            client,
            server,
            mtu,
            impairment: Impairment {
                backend,
                delay_us,
                jitter_us,
                loss_percent: i.loss_percent,
                direction,
                emulator_mode,
                seed,
            },
            cores,
            port,
            dpdk_hugepages,
            client_stack,
            limits: ServiceLimits {
                max_connections,
                listen_backlog,
            },
            role_hosts,
        })
    }
}

impl Default for TestbedConfig {
    fn default() -> Self {
        // The built-in defaults are valid on any host with two cores; on a
        // single-core host the engine core is folded onto core 0.
        let mut raw = RawFile::default();
        if host_cores() < 2 {
            raw.cores.engine = 0;
        }
        raw.validate(host_cores().max(1))
            .unwrap_or_else(|e| unreachable!("built-in defaults are invalid: {e}"))
    }
}

impl TestbedConfig {
    /// Loads `path`, or [`DEFAULT_CONFIG_PATH`] if it exists, or the built-in
    /// defaults.
    pub fn load(path: Option<&Path>) -> Result<TestbedConfig, ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from(DEFAULT_CONFIG_PATH);
                if !p.exists() {
                    return Ok(TestbedConfig::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, host_cores()).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path, message },
            other => other,
        })
    }

    /// Parses and validates TOML text against this host's core count.
    pub fn from_toml_str(text: &str) -> Result<TestbedConfig, ConfigError> {
        Self::parse(text, host_cores())
    }

    fn parse(text: &str, cores_available: usize) -> Result<TestbedConfig, ConfigError> {
        let value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        check_known_keys(&value)?;
        let raw: RawFile = value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: PathBuf::new(),
                message: e.to_string(),
            })?;
        raw.validate(cores_available)
    }

    /// The same testbed under another name (tests run several side by side).
    pub fn with_name(mut self, name: &str) -> Result<TestbedConfig, ConfigError> {
        let mut raw = self.to_raw();
        raw.testbed.name = name.to_string();
        self = raw.validate(host_cores())?;
        Ok(self)
    }

    /// The same testbed with another impairment; validated like the file.
    pub fn with_impairment(mut self, impairment: Impairment) -> Result<TestbedConfig, ConfigError> {
        self.impairment = impairment;
        self.to_raw().validate(host_cores())
    }

    fn to_raw(&self) -> RawFile {
        RawFile {
            testbed: RawTestbed {
                name: self.name.clone(),
            },
            addresses: RawAddresses {
                subnet: format!("{}/{}", self.subnet, self.prefix_len),
                client: self.client.to_string(),
                server: self.server.to_string(),
            },
            link: RawLink {
                mtu: self.mtu.into(),
            },
            impairment: RawImpairment::default(),
            cores: RawCores {
                engine: i64::try_from(self.cores.engine).unwrap_or(i64::MAX),
                loadgen: i64::try_from(self.cores.loadgen).unwrap_or(i64::MAX),
                emulator: i64::try_from(self.cores.emulator).unwrap_or(i64::MAX),
            },
            service: RawService {
                port: self.port.into(),
                max_connections: i64::try_from(self.limits.max_connections).unwrap_or(i64::MAX),
                listen_backlog: self.limits.listen_backlog.into(),
            },
            hosts: RawHosts {
                engine: self.role_hosts.engine.ssh.as_ref().map(ToString::to_string),
                client: self.role_hosts.client.ssh.as_ref().map(ToString::to_string),
            },
            engine_host: RawRoleHost::of(&self.role_hosts.engine),
            client_host: RawRoleHost::of(&self.role_hosts.client),
            dpdk: RawDpdk {
                hugepages: self
                    .dpdk_hugepages
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            },
            client: RawClient {
                stack: Some(self.client_stack.name().to_owned()),
            },
        }
        .with_impairment_of(self)
    }

    /// The testbed name: prefix of every namespace, link and state directory.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// NS1, the client namespace.
    pub fn client_ns(&self) -> String {
        format!("{}-ns1", self.name)
    }
    /// NS2, the namespace holding the bridge (and the emulator).
    pub fn bridge_ns(&self) -> String {
        format!("{}-ns2", self.name)
    }
    /// NS3, the server namespace.
    pub fn server_ns(&self) -> String {
        format!("{}-ns3", self.name)
    }
    /// The veth end in NS1.
    pub fn client_iface(&self) -> String {
        format!("{}-c", self.name)
    }
    /// The veth end in NS3.
    pub fn server_iface(&self) -> String {
        format!("{}-s", self.name)
    }
    /// NS2's end of the client veth (a bridge port).
    pub fn client_peer_iface(&self) -> String {
        format!("{}-c-br", self.name)
    }
    /// NS2's end of the server veth (a bridge port, or the emulator's B side).
    pub fn server_peer_iface(&self) -> String {
        format!("{}-s-br", self.name)
    }
    /// The bridge in NS2.
    pub fn bridge_iface(&self) -> String {
        format!("{}-br", self.name)
    }
    /// The emulator's A side in NS2 (its peer is a bridge port).
    pub fn emulator_iface(&self) -> String {
        format!("{}-e", self.name)
    }
    /// The bridge port paired with [`Self::emulator_iface`].
    pub fn emulator_peer_iface(&self) -> String {
        format!("{}-e-br", self.name)
    }
    /// The client's address (NS1).
    pub fn client_addr(&self) -> Ipv4Addr {
        self.client
    }
    /// The server's address (NS3).
    pub fn server_addr(&self) -> Ipv4Addr {
        self.server
    }
    /// The network address of the testbed subnet.
    pub fn subnet(&self) -> Ipv4Addr {
        self.subnet
    }
    /// Prefix length of the testbed subnet.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
    /// MTU of every testbed link.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }
    /// The service's TCP port in NS3.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// How many connections the engine takes (`[service]`).
    pub fn service_limits(&self) -> ServiceLimits {
        self.limits
    }
    /// Cores of the engine, the load generator and the emulator.
    pub fn cores(&self) -> Cores {
        self.cores
    }
    /// 2 MB hugepages a run on a PCI NIC reserves (`dpdk.hugepages`);
    /// `None`: the original setup's 1024 where the host has the memory.
    pub fn dpdk_hugepages(&self) -> Option<u64> {
        self.dpdk_hugepages
    }
    /// `[client] stack`: the load generator's TCP stack unless the
    /// command line names one (`--client`).
    pub fn client_stack(&self) -> contract::ClientStack {
        self.client_stack
    }
    /// The configured impairment.
    pub fn impairment(&self) -> &Impairment {
        &self.impairment
    }
    /// The two-host placement, when `[hosts]` names a host.
    pub fn hosts(&self) -> Option<&Hosts> {
        let h = &self.role_hosts;
        (h.engine.ssh.is_some() || h.client.ssh.is_some()).then_some(h)
    }

    /// `[engine_host]`/`[client_host]` as configured, hosts named or not
    /// (`doctor --host` takes the SSH options from there).
    pub fn role_hosts(&self) -> &Hosts {
        &self.role_hosts
    }

    /// The same testbed with the engine's and/or the client's host given
    /// on the command line (`ssh://…`), validated like the file.
    pub fn with_hosts(
        self,
        engine: Option<&str>,
        client: Option<&str>,
    ) -> Result<TestbedConfig, ConfigError> {
        if engine.is_none() && client.is_none() {
            return Ok(self);
        }
        let mut raw = self.to_raw();
        if let Some(e) = engine {
            raw.hosts.engine = Some(e.to_owned());
        }
        if let Some(c) = client {
            raw.hosts.client = Some(c.to_owned());
        }
        raw.validate(host_cores())
    }

    /// Directory of this testbed's runtime state.
    #[must_use]
    pub fn state_dir(&self) -> crate::state::StateDir {
        crate::state::StateDir::of(&self.name)
    }

    /// The node of a role: its namespace, and the core its processes are
    /// pinned to.
    #[must_use]
    pub fn node(&self, role: NsRole) -> crate::placement::Node {
        let (ns, core) = match role {
            NsRole::Client => (self.client_ns(), self.cores.loadgen),
            NsRole::Bridge => (self.bridge_ns(), self.cores.emulator),
            NsRole::Server => (self.server_ns(), self.cores.engine),
        };
        crate::placement::Node::in_namespace(ns, Some(core))
    }
}

impl RawFile {
    fn with_impairment_of(mut self, c: &TestbedConfig) -> RawFile {
        let i = &c.impairment;
        self.impairment = RawImpairment {
            backend: match i.backend {
                BackendChoice::Auto => "auto",
                BackendChoice::Netem => "netem",
                BackendChoice::Emulator => "emulator",
                BackendChoice::None => "none",
            }
            .into(),
            delay_us: i.delay_us.into(),
            jitter_us: i.jitter_us.into(),
            loss_percent: i.loss_percent,
            direction: i.direction.as_str().into(),
            emulator_mode: i.emulator_mode.as_str().into(),
            seed: i64::try_from(i.seed).unwrap_or(i64::MAX),
        };
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TestbedConfig, ConfigError> {
        TestbedConfig::parse(text, 2)
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.name(), "bl");
        assert_eq!(c.client_addr(), Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(c.impairment().delay_us, 100);
        assert_eq!(c.impairment().direction, Direction::FromNs3);
        assert_eq!(c.cores().engine, 1);
        assert_eq!(c.dpdk_hugepages(), None);
        let d = parse("[dpdk]\nhugepages = 512\n").unwrap();
        assert_eq!(d.dpdk_hugepages(), Some(512));
        assert_eq!(d.with_name("x").unwrap().dpdk_hugepages(), Some(512));
        assert_eq!(c.client_stack(), contract::ClientStack::Kernel);
        let dpdk = parse("[client]\nstack = \"dpdk\"\n").unwrap();
        assert_eq!(dpdk.client_stack(), contract::ClientStack::Dpdk);
        assert_eq!(
            dpdk.with_name("x").unwrap().client_stack(),
            contract::ClientStack::Dpdk
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("[impairment]\nloss = 1\n").unwrap_err();
        assert!(matches!(&e, ConfigError::UnknownKey { key, .. } if key == "impairment.loss"));
        let e = parse("[nope]\n").unwrap_err();
        assert!(matches!(&e, ConfigError::UnknownKey { key, .. } if key == "nope"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            ("[impairment]\nloss_percent = 150.0\n", "impairment.loss_percent"),
            ("[impairment]\nloss_percent = -1.0\n", "impairment.loss_percent"),
            ("[impairment]\ndirection = \"sideways\"\n", "impairment.direction"),
            ("[impairment]\nbackend = \"magic\"\n", "impairment.backend"),
            ("[client]\nstack = \"fstack\"\n", "client.stack"),
            ("[impairment]\ndelay_us = 10\njitter_us = 20\n", "impairment.jitter_us"),
            ("[addresses]\nserver = \"10.77.0.1\"\n", "addresses.server"),
            ("[addresses]\nclient = \"10.78.0.1\"\n", "addresses.client"),
            ("[addresses]\nsubnet = \"8.8.8.0/24\"\nclient = \"8.8.8.1\"\nserver = \"8.8.8.2\"\n", "addresses.subnet"),
            ("[addresses]\nsubnet = \"10.77.0.1/24\"\n", "addresses.subnet"),
            ("[addresses]\nclient = \"10.77.0.255\"\n", "addresses.client"),
            ("[testbed]\nname = \"waytoolongname\"\n", "testbed.name"),
            ("[testbed]\nname = \"a/b\"\n", "testbed.name"),
            ("[cores]\nengine = 2\n", "cores.engine"),
            ("[cores]\nemulator = -1\n", "cores.emulator"),
            ("[link]\nmtu = 100\n", "link.mtu"),
            ("[service]\nport = 0\n", "service.port"),
            ("[service]\nmax_connections = 0\n", "service.max_connections"),
            ("[service]\nlisten_backlog = 4096\n", "service.listen_backlog"),
            ("[dpdk]\nhugepages = 0\n", "dpdk.hugepages"),
        ];
        for (text, want) in cases {
            match parse(text) {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, want, "{text}"),
                other => panic!("{text}: expected Invalid({want}), got {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_type_is_a_parse_error() {
        let e = parse("[impairment]\ndelay_us = \"soon\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }));
        assert!(e.to_string().contains("delay_us"), "{e}");
    }

    #[test]
    fn derived_names_fit_ifnamsiz() {
        let c = parse("[testbed]\nname = \"abcdefghij\"\n").unwrap();
        for n in [
            c.client_iface(),
            c.server_iface(),
            c.client_peer_iface(),
            c.server_peer_iface(),
            c.bridge_iface(),
            c.emulator_iface(),
            c.emulator_peer_iface(),
        ] {
            assert!(n.len() <= 15, "{n}");
        }
    }

    #[test]
    fn hosts_parse_validate_and_round_trip() {
        let text = "[hosts]\nengine = \"ssh://root@192.0.2.2:2222\"\n\
                    [engine_host]\niface = \"enp3s0\"\ncore = 3\nsupervisor = \"/opt/bl/supervisor\"\n\
                    ssh_options = [\"UserKnownHostsFile=/k\"]\n[client_host]\niface = \"eth1\"\n";
        let c = parse(text).unwrap();
        let hosts = c.hosts().unwrap();
        assert_eq!(
            hosts.engine.ssh.as_ref().unwrap().to_string(),
            "ssh://root@192.0.2.2:2222"
        );
        assert_eq!(hosts.engine.core, 3);
        assert!(hosts.client.ssh.is_none());
        assert_eq!(hosts.client.core, 0);
        assert_eq!(c.clone().with_name(c.name()).unwrap(), c);
        assert!(parse("").unwrap().hosts().is_none());
        let cases = [
            ("[hosts]\nengine = \"root@b\"\n[engine_host]\niface = \"e\"\n", "hosts.engine"),
            ("[hosts]\nengine = \"ssh://b\"\n", "engine_host.iface"),
            ("[hosts]\nengine = \"ssh://b\"\n[engine_host]\niface = \"../x\"\n", "engine_host.iface"),
            ("[hosts]\nengine = \"ssh://b\"\n[engine_host]\niface = \"e\"\nsupervisor = \"x; rm\"\n", "engine_host.supervisor"),
            ("[hosts]\nclient = \"ssh://b\"\n[engine_host]\niface = \"e\"\n[client_host]\npmd = \"x\"\n", "client_host.pmd"),
            ("[hosts]\nengine = \"ssh://b\"\n[engine_host]\niface = \"e\"\nssh_options = [\"-oProxyCommand=x\"]\n", "engine_host.ssh_options"),
        ];
        for (text, key) in cases {
            match parse(text) {
                Err(ConfigError::Invalid { key: got, .. }) => assert_eq!(got, key, "{text}"),
                other => panic!("{text}: expected Invalid({key}), got {other:?}"),
            }
        }
        let pci =
            parse("[hosts]\nengine = \"ssh://b\"\n[engine_host]\npmd = \"pci:0000:03:00.0\"\n")
                .unwrap();
        assert!(pci.hosts().unwrap().engine.pmd.is_some());
        let cli = parse("[engine_host]\niface = \"e\"\n")
            .unwrap()
            .with_hosts(Some("ssh://root@b"), None)
            .unwrap();
        assert!(cli.hosts().unwrap().engine.ssh.is_some());
    }

    #[test]
    fn with_name_and_impairment_round_trip() {
        let c = parse("[impairment]\ndelay_us = 7\n").unwrap();
        let d = c.clone().with_name("other").unwrap();
        assert_eq!(d.name(), "other");
        assert_eq!(d.impairment(), c.impairment());
        let mut imp = c.impairment().clone();
        imp.loss_percent = 150.0;
        assert!(matches!(
            c.with_impairment(imp),
            Err(ConfigError::Invalid {
                key: "impairment.loss_percent",
                ..
            })
        ));
    }
}
