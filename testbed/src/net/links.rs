//! What iproute2 shows of the testbed's namespaces and links.

use std::path::Path;

use crate::host::command;

/// Whether network namespace `ns` exists.
#[must_use]
pub fn ns_exists(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
}

/// A link of a namespace, from `ip -j link show`.
#[derive(Debug, Clone, Default)]
pub struct LinkInfo {
    /// Administratively up.
    pub up: bool,
    /// Its MTU.
    pub mtu: u32,
    /// The bridge it is a port of.
    pub master: Option<String>,
}

/// Every link of `ns`, by name (none when the namespace does not exist).
#[must_use]
pub fn links_in(ns: &str) -> Vec<(String, LinkInfo)> {
    if !ns_exists(ns) {
        return Vec::new();
    }
    let mut c = command::cmd("ip", ["-n", ns, "-j", "link", "show"]);
    let Ok(out) = command::run(&mut c, "") else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(&out)
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|l| {
            let name = l.get("ifname")?.as_str()?.to_string();
            let up = l
                .get("flags")
                .and_then(|f| f.as_array())
                .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("UP")));
            let mtu = l
                .get("mtu")
                .and_then(serde_json::Value::as_u64)
                .and_then(|m| u32::try_from(m).ok())
                .unwrap_or(0);
            let master = l.get("master").and_then(|m| m.as_str()).map(String::from);
            Some((name, LinkInfo { up, mtu, master }))
        })
        .collect()
}

/// Link `name` of `ns`, if it exists.
#[must_use]
pub fn link_info(ns: &str, name: &str) -> Option<LinkInfo> {
    links_in(ns)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, i)| i)
}
