//! The bypass engines' configuration file: F-Stack's `config.ini` format,
//! so that one file configures both the `dpdk` and the `fstack` engine.
//!
//! Read here (everything else, e.g. F-Stack's `[freebsd.*]` sections or
//! `[dpdk] channel`, is F-Stack's business and ignored, reported in
//! [`DpdkConfig::ignored`]):
//!
//! ```ini
//! [dpdk]
//! lcore_mask = 2          ; hex; the lowest set bit is the serving lcore
//! memory = 256            ; MB for EAL (-m)
//! no_huge = 1             ; 1: --no-huge (anonymous memory), 0: hugepages
//! file_prefix = bl-1234   ; EAL --file-prefix, unique per running instance
//! promiscuous = 1
//! port_list = 0           ; PCI case: the port id to use (first of the list)
//! pci_whitelist = 0000:00:04.0   ; PCI case: -a for each (comma-separated)
//! pmd = af_xdp            ; bypasslab: af_xdp | af_packet | memif | pci
//! iface = veth3           ; bypasslab: Linux interface of the af_* vdevs
//! memif_socket = /run/bypasslab/bl/memif.sock  ; bypasslab, memif: its socket
//! memif_role = server     ; bypasslab, memif: server (creates the socket) | client
//! pmd_args = start_queue=0      ; bypasslab: extra devargs for the vdev
//! log_level = *:notice    ; bypasslab: EAL --log-level
//!
//! [port0]
//! addr = 10.0.0.3
//! netmask = 255.255.255.0
//! broadcast = 10.0.0.255
//! gateway = 10.0.0.1
//! ```
//!
//! Keys may also be written `key: value`; `;` and `#` start comment lines
//! (and `;` after whitespace an inline comment), as in F-Stack's parser.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The poll-mode driver that owns the port (`[dpdk] pmd`).
pub use contract::PmdKind as Pmd;

/// Which end of a memif connection a process is (`[dpdk] memif_role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemifRole {
    /// Creates the socket and the shared memory; waits for the client.
    Server,
    /// Connects to the server's socket.
    Client,
}

impl MemifRole {
    /// config.ini's and `net_memif`'s spelling.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// `[dpdk] memif_*`: one end of a memif connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemifEnd {
    /// The Unix socket's path (a file, not an abstract name).
    pub socket: PathBuf,
    /// Which end.
    pub role: MemifRole,
}

/// `[port0]`: the stack's own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortAddr {
    /// `addr`.
    pub addr: Ipv4Addr,
    /// Prefix length derived from `netmask`.
    pub prefix_len: u8,
    /// `broadcast` (informational: the stack derives it from the prefix).
    pub broadcast: Option<Ipv4Addr>,
    /// `gateway`, the default route (none: on-link peers only).
    pub gateway: Option<Ipv4Addr>,
}

/// Everything the dpdk engine reads from `config.ini`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkConfig {
    /// `[dpdk] lcore_mask`: the cores set in the mask, ascending.
    pub lcores: Vec<usize>,
    /// `[dpdk] memory` in MB.
    pub memory_mb: Option<u32>,
    /// `[dpdk] no_huge`.
    pub no_huge: bool,
    /// `[dpdk] file_prefix`.
    pub file_prefix: Option<String>,
    /// `[dpdk] huge_dir` (bypasslab): the hugetlbfs mount EAL must use
    /// (`--huge-dir`); without it EAL takes the first mount it finds, which
    /// may belong to another testbed.
    pub huge_dir: Option<String>,
    /// `[dpdk] pci_whitelist`.
    pub pci_whitelist: Vec<String>,
    /// `[dpdk] port_list` (default `[0]`).
    pub port_list: Vec<u16>,
    /// `[dpdk] promiscuous` (default on, as in F-Stack's sample).
    pub promiscuous: bool,
    /// `[dpdk] pmd` (default `af_xdp`).
    pub pmd: Pmd,
    /// `[dpdk] iface`: required for `af_xdp` and `af_packet`.
    pub iface: Option<String>,
    /// `[dpdk] memif_socket` and `memif_role`: required for `memif`.
    pub memif: Option<MemifEnd>,
    /// `[dpdk] pmd_args`: appended to the vdev's devargs.
    pub pmd_args: Option<String>,
    /// `[dpdk] log_level`.
    pub log_level: Option<String>,
    /// `[port0]`.
    pub port0: PortAddr,
    /// `section.key` of every key present but not read by this engine.
    pub ignored: Vec<String>,
}

/// Why `config.ini` was refused; every variant names the file position or
/// the `section.key` at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is neither a section, a key/value pair nor a comment.
    #[error("line {line}: expected `[section]` or `key = value`, found {text:?}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// A key the engine cannot do without is absent.
    #[error("{key} is required")]
    Missing {
        /// `section.key`.
        key: &'static str,
    },
    /// A key's value is unusable.
    #[error("{key} = {value:?}: {reason}")]
    Invalid {
        /// `section.key`.
        key: &'static str,
        /// The value found.
        value: String,
        /// What was expected.
        reason: String,
    },
}

impl DpdkConfig {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates the text of a `config.ini`.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let entries = parse_ini(text)?;
        let mut cfg = Self {
            lcores: vec![0],
            memory_mb: None,
            no_huge: false,
            file_prefix: None,
            huge_dir: None,
            pci_whitelist: Vec::new(),
            port_list: vec![0],
            promiscuous: true,
            pmd: Pmd::AfXdp,
            iface: None,
            memif: None,
            pmd_args: None,
            log_level: None,
            port0: PortAddr {
                addr: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                broadcast: None,
                gateway: None,
            },
            ignored: Vec::new(),
        };
        let (mut addr, mut netmask) = (None, None);
        let (mut memif_socket, mut memif_role) = (None, MemifRole::Server);
        for (section, key, value) in entries {
            let v = value.as_str();
            match (section.as_str(), key.as_str()) {
                ("dpdk", "lcore_mask") => cfg.lcores = parse_lcore_mask(v)?,
                ("dpdk", "memory") => {
                    cfg.memory_mb = Some(parse_num(v, "dpdk.memory", "a size in MB")?);
                }
                ("dpdk", "no_huge") => cfg.no_huge = parse_bool(v, "dpdk.no_huge")?,
                ("dpdk", "file_prefix") => cfg.file_prefix = non_empty(v, "dpdk.file_prefix")?,
                ("dpdk", "huge_dir") => cfg.huge_dir = non_empty(v, "dpdk.huge_dir")?,
                ("dpdk", "pci_whitelist") => {
                    cfg.pci_whitelist = list(v).map(str::to_owned).collect();
                }
                ("dpdk", "port_list") => cfg.port_list = parse_port_list(v)?,
                ("dpdk", "promiscuous") => cfg.promiscuous = parse_bool(v, "dpdk.promiscuous")?,
                ("dpdk", "pmd") => cfg.pmd = parse_pmd(v)?,
                ("dpdk", "iface") => cfg.iface = non_empty(v, "dpdk.iface")?,
                ("dpdk", "memif_socket") => memif_socket = Some(parse_socket_path(v)?),
                ("dpdk", "memif_role") => memif_role = parse_memif_role(v)?,
                ("dpdk", "pmd_args") => cfg.pmd_args = non_empty(v, "dpdk.pmd_args")?,
                ("dpdk", "log_level") => cfg.log_level = non_empty(v, "dpdk.log_level")?,
                ("port0", "addr") => addr = Some(parse_ip(v, "port0.addr")?),
                ("port0", "netmask") => netmask = Some(parse_ip(v, "port0.netmask")?),
                ("port0", "broadcast") => {
                    cfg.port0.broadcast = Some(parse_ip(v, "port0.broadcast")?);
                }
                ("port0", "gateway") => cfg.port0.gateway = Some(parse_ip(v, "port0.gateway")?),
                _ => cfg.ignored.push(format!("{section}.{key}")),
            }
        }
        cfg.port0.addr = addr.ok_or(ConfigError::Missing { key: "port0.addr" })?;
        let netmask = netmask.ok_or(ConfigError::Missing {
            key: "port0.netmask",
        })?;
        cfg.port0.prefix_len = prefix_len(netmask)?;
        if cfg.port0.addr.is_unspecified() || cfg.port0.addr.is_broadcast() {
            return Err(invalid("port0.addr", cfg.port0.addr, "not a host address"));
        }
        match cfg.pmd {
            Pmd::AfXdp | Pmd::AfPacket if cfg.iface.is_none() => {
                return Err(ConfigError::Missing { key: "dpdk.iface" });
            }
            Pmd::Pci if cfg.pci_whitelist.is_empty() => {
                return Err(ConfigError::Missing {
                    key: "dpdk.pci_whitelist",
                });
            }
            Pmd::Memif => {
                let socket = memif_socket.ok_or(ConfigError::Missing {
                    key: "dpdk.memif_socket",
                })?;
                cfg.memif = Some(MemifEnd {
                    socket,
                    role: memif_role,
                });
            }
            _ => {}
        }
        if let Some(iface) = &cfg.iface {
            if iface.len() > 15 || iface.contains([',', '=', ' ', '/']) {
                return Err(invalid("dpdk.iface", iface, "not a Linux interface name"));
            }
        }
        Ok(cfg)
    }

    /// The serving lcore: the lowest core of `lcore_mask`.
    #[must_use]
    pub fn main_lcore(&self) -> usize {
        self.lcores.first().copied().unwrap_or(0)
    }
}

/// `(section, key, value)` in file order, names lower-cased.
fn parse_ini(text: &str) -> Result<Vec<(String, String, String)>, ConfigError> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = strip_inline_comment(raw).trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let syntax = || ConfigError::Syntax {
            line: index + 1,
            text: raw.to_owned(),
        };
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.strip_suffix(']').ok_or_else(syntax)?.trim();
            if name.is_empty() {
                return Err(syntax());
            }
            name.clone_into(&mut section);
            section.make_ascii_lowercase();
            continue;
        }
        let split = line.find(['=', ':']).ok_or_else(syntax)?;
        let key = line[..split].trim();
        if key.is_empty() || section.is_empty() {
            return Err(syntax());
        }
        out.push((
            section.clone(),
            key.to_ascii_lowercase(),
            line[split + 1..].trim().to_owned(),
        ));
    }
    Ok(out)
}

/// inih's rule: `;` preceded by whitespace starts an inline comment.
fn strip_inline_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b';' && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return &line[..i];
        }
    }
    line
}

fn invalid(key: &'static str, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty())
}

fn non_empty(v: &str, key: &'static str) -> Result<Option<String>, ConfigError> {
    if v.is_empty() {
        Err(invalid(key, v, "must not be empty"))
    } else {
        Ok(Some(v.to_owned()))
    }
}

fn parse_bool(v: &str, key: &'static str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(invalid(key, v, "expected 0 or 1")),
    }
}

fn parse_num<T: std::str::FromStr>(
    v: &str,
    key: &'static str,
    reason: &'static str,
) -> Result<T, ConfigError> {
    v.parse().map_err(|_| invalid(key, v, reason))
}

fn parse_ip(v: &str, key: &'static str) -> Result<Ipv4Addr, ConfigError> {
    parse_num(v, key, "expected an IPv4 address")
}

fn parse_pmd(v: &str) -> Result<Pmd, ConfigError> {
    Pmd::from_ini(v).ok_or_else(|| invalid("dpdk.pmd", v, format!("expected {}", Pmd::names())))
}

/// A memif socket path: absolute, and free of the characters that
/// separate devargs (`,` `=`) or spaces.
fn parse_socket_path(v: &str) -> Result<PathBuf, ConfigError> {
    if !v.starts_with('/') {
        return Err(invalid("dpdk.memif_socket", v, "expected an absolute path"));
    }
    if v.contains([',', '=', ' ']) {
        return Err(invalid(
            "dpdk.memif_socket",
            v,
            "must not contain `,`, `=` or spaces (they separate devargs)",
        ));
    }
    Ok(PathBuf::from(v))
}

fn parse_memif_role(v: &str) -> Result<MemifRole, ConfigError> {
    [MemifRole::Server, MemifRole::Client]
        .into_iter()
        .find(|r| r.name() == v.to_ascii_lowercase())
        .ok_or_else(|| invalid("dpdk.memif_role", v, "expected server or client"))
}

fn parse_lcore_mask(v: &str) -> Result<Vec<usize>, ConfigError> {
    let hex = v
        .strip_prefix("0x")
        .or_else(|| v.strip_prefix("0X"))
        .unwrap_or(v);
    let mask = u128::from_str_radix(hex, 16)
        .map_err(|_| invalid("dpdk.lcore_mask", v, "expected a hexadecimal core mask"))?;
    if mask == 0 {
        return Err(invalid("dpdk.lcore_mask", v, "selects no core"));
    }
    Ok((0..128).filter(|bit| mask & (1u128 << bit) != 0).collect())
}

fn parse_port_list(v: &str) -> Result<Vec<u16>, ConfigError> {
    let mut ports = Vec::new();
    for item in list(v) {
        if let Some((lo, hi)) = item.split_once('-') {
            let lo: u16 = parse_num(lo, "dpdk.port_list", "expected port ids like 0,1 or 0-3")?;
            let hi: u16 = parse_num(hi, "dpdk.port_list", "expected port ids like 0,1 or 0-3")?;
            if lo > hi {
                return Err(invalid("dpdk.port_list", v, "range runs backwards"));
            }
            ports.extend(lo..=hi);
        } else {
            ports.push(parse_num(
                item,
                "dpdk.port_list",
                "expected port ids like 0,1 or 0-3",
            )?);
        }
    }
    if ports.is_empty() {
        return Err(invalid("dpdk.port_list", v, "lists no port"));
    }
    Ok(ports)
}

fn prefix_len(netmask: Ipv4Addr) -> Result<u8, ConfigError> {
    let bits = u32::from(netmask);
    let len = bits.leading_ones();
    if bits.checked_shl(len).unwrap_or(0) != 0 || len == 0 {
        return Err(invalid(
            "port0.netmask",
            netmask,
            "not a contiguous netmask",
        ));
    }
    Ok(u8::try_from(len).unwrap_or(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
; F-Stack style
[dpdk]
lcore_mask=2
channel=4
promiscuous=1
numa_on=1
port_list=0
memory = 256   ; MB
no_huge = 1
file_prefix = bl-7
pmd = af_packet
iface = veth3

[port0]
addr=10.0.0.3
netmask=255.255.255.0
broadcast=10.0.0.255
gateway=10.0.0.1

[freebsd.boot]
hz=100
";

    #[test]
    fn sample_parses() {
        let c = DpdkConfig::parse(SAMPLE).unwrap();
        assert_eq!(c.lcores, [1]);
        assert_eq!(c.main_lcore(), 1);
        assert_eq!(c.memory_mb, Some(256));
        assert!(c.no_huge);
        assert_eq!(c.file_prefix.as_deref(), Some("bl-7"));
        assert_eq!(c.pmd, Pmd::AfPacket);
        assert_eq!(c.iface.as_deref(), Some("veth3"));
        assert_eq!(c.port0.addr, Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(c.port0.prefix_len, 24);
        assert_eq!(c.port0.gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(
            c.ignored,
            ["dpdk.channel", "dpdk.numa_on", "freebsd.boot.hz"]
        );
    }

    #[test]
    fn the_shipped_config_parses() {
        let text = include_str!("../../config/config.ini");
        let c = DpdkConfig::parse(text).unwrap();
        assert_eq!(c.pmd, Pmd::AfXdp);
        assert!(c.iface.is_some());
    }

    #[test]
    fn defaults_and_masks() {
        let c = DpdkConfig::parse(
            "[dpdk]\nlcore_mask=0x0c\niface=eth1\n[port0]\naddr=1.2.3.4\nnetmask=255.255.255.252\n",
        )
        .unwrap();
        assert_eq!(c.lcores, [2, 3]);
        assert_eq!(c.pmd, Pmd::AfXdp);
        assert_eq!(c.port_list, [0]);
        assert!(c.promiscuous);
        assert_eq!(c.port0.prefix_len, 30);
        assert_eq!(parse_port_list("0-2, 5").unwrap(), [0, 1, 2, 5]);
    }

    #[test]
    fn memif_needs_a_socket_not_an_interface() {
        let c = DpdkConfig::parse(
            "[dpdk]\npmd=memif\nmemif_socket=/run/x/memif.sock\nmemif_role=Client\n\
             [port0]\naddr=10.0.0.1\nnetmask=255.255.255.0\n",
        )
        .unwrap();
        assert_eq!(
            c.memif,
            Some(MemifEnd {
                socket: PathBuf::from("/run/x/memif.sock"),
                role: MemifRole::Client,
            })
        );
        assert_eq!(c.iface, None);
        let server = with_dpdk("pmd=memif\nmemif_socket=/run/x/m.sock").unwrap();
        assert_eq!(server.memif.map(|m| m.role), Some(MemifRole::Server));
    }

    fn with_dpdk(line: &str) -> Result<DpdkConfig, ConfigError> {
        DpdkConfig::parse(&format!(
            "[dpdk]\niface=veth3\n{line}\n[port0]\naddr=10.0.0.3\nnetmask=255.255.255.0\n"
        ))
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("lcore_mask=zz", "dpdk.lcore_mask"),
            ("lcore_mask=0", "dpdk.lcore_mask"),
            ("memory=lots", "dpdk.memory"),
            ("no_huge=maybe", "dpdk.no_huge"),
            ("pmd=tap", "dpdk.pmd"),
            ("port_list=3-1", "dpdk.port_list"),
            ("iface=a,b", "dpdk.iface"),
            ("file_prefix=", "dpdk.file_prefix"),
            ("memif_socket=run/m.sock", "dpdk.memif_socket"),
            ("memif_socket=/run/a,b", "dpdk.memif_socket"),
            ("memif_role=both", "dpdk.memif_role"),
        ];
        for (line, want) in cases {
            let err = with_dpdk(line).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { key, .. } if key == want),
                "{line}: {err}"
            );
        }
        let err =
            DpdkConfig::parse("[dpdk]\niface=x\n[port0]\naddr=10.0.0.3\nnetmask=255.0.255.0\n")
                .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                key: "port0.netmask",
                ..
            }
        ));
    }

    #[test]
    fn missing_keys_and_syntax() {
        assert!(matches!(
            DpdkConfig::parse("[port0]\naddr=10.0.0.3\nnetmask=255.255.255.0\n"),
            Err(ConfigError::Missing { key: "dpdk.iface" })
        ));
        assert!(matches!(
            DpdkConfig::parse("[dpdk]\niface=x\n[port0]\nnetmask=255.255.255.0\n"),
            Err(ConfigError::Missing { key: "port0.addr" })
        ));
        assert!(matches!(
            with_dpdk("pmd=pci"),
            Err(ConfigError::Missing {
                key: "dpdk.pci_whitelist"
            })
        ));
        assert!(matches!(
            with_dpdk("pmd=memif"),
            Err(ConfigError::Missing {
                key: "dpdk.memif_socket"
            })
        ));
        assert!(matches!(
            DpdkConfig::parse("[dpdk\n"),
            Err(ConfigError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            DpdkConfig::parse("key=value\n"),
            Err(ConfigError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            DpdkConfig::parse("[dpdk]\njust words\n"),
            Err(ConfigError::Syntax { line: 2, .. })
        ));
    }
}
