//! What iproute2 says of a network interface: whether it is up, its
//! addresses and its routes — what decides whether taking its NIC away
//! could cut someone off. Behind a trait, so the unit tests can describe
//! interfaces of a fake sysfs tree.

use serde::Serialize;
use serde_json::Value;

use crate::host::command::{self, CommandError};

/// One interface as iproute2 shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkState {
    /// Its name.
    pub name: String,
    /// Administratively up.
    pub up: bool,
    /// Its addresses (`addr/prefix`), link-local ones left out: the kernel
    /// gives every IPv6 interface one, and nobody reaches a host by it.
    pub addresses: Vec<String>,
    /// Routes through it in the main tables (IPv4 and IPv6, `ip route`'s
    /// words), the kernel's own link-local IPv6 route left out.
    pub routes: Vec<String>,
}

impl LinkState {
    /// Why taking its NIC away could cut someone off, if it could: up with
    /// an address, or carrying a route.
    #[must_use]
    pub fn in_use(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.up && !self.addresses.is_empty() {
            why.push(format!(
                "{} is up with address {}",
                self.name,
                self.addresses.join(", ")
            ));
        }
        for route in &self.routes {
            why.push(format!("{} carries route `{route}`", self.name));
        }
        why
    }
}

/// A source of [`LinkState`]s.
pub trait LinkView {
    /// The state of interface `name`.
    ///
    /// # Errors
    /// It cannot be inspected.
    fn link(&self, name: &str) -> Result<LinkState, CommandError>;
}

/// The host's interfaces, through `ip -json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Iproute2;

impl LinkView for Iproute2 {
    fn link(&self, name: &str) -> Result<LinkState, CommandError> {
        let ip = |args: &[&str]| {
            let mut c = command::cmd("ip", ["-json"].iter().chain(args));
            command::run(&mut c, "")
        };
        let addr = ip(&["addr", "show", "dev", name])?;
        let v4 = ip(&["-4", "route", "show", "dev", name])?;
        let v6 = ip(&["-6", "route", "show", "dev", name])?;
        let (up, addresses) = parse_addr(&addr);
        let mut routes = parse_routes(&v4);
        routes.extend(parse_routes(&v6));
        Ok(LinkState {
            name: name.to_owned(),
            up,
            addresses,
            routes,
        })
    }
}

fn json(text: &str) -> Vec<Value> {
    // An interface without IPv6 (or a kernel without it) prints nothing.
    serde_json::from_str::<Vec<Value>>(text.trim()).unwrap_or_default()
}

/// `ip -json addr show dev X`: up, and the addresses that are not
/// link-local.
fn parse_addr(text: &str) -> (bool, Vec<String>) {
    let links = json(text);
    let Some(link) = links.first() else {
        return (false, Vec::new());
    };
    let up = link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    let addresses = link["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["scope"] != "link" && a["scope"] != "host")
        .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"])))
        .collect();
    (up, addresses)
}

/// `ip -json route show dev X`: each route in `ip route`'s words.
fn parse_routes(text: &str) -> Vec<String> {
    json(text)
        .iter()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?;
            // Every IPv6 interface has the kernel's fe80::/64; multicast
            // routes are the kernel's too.
            if dst.starts_with("fe80:") || dst.starts_with("ff00:") {
                return None;
            }
            let mut words = vec![dst.to_owned()];
            for (key, word) in [
                ("gateway", "via"),
                ("protocol", "proto"),
                ("scope", "scope"),
                ("prefsrc", "src"),
            ] {
                if let Some(v) = r[key].as_str() {
                    words.push(format!("{word} {v}"));
                }
            }
            Some(words.join(" "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_ip_json_prints() {
        let addr = r#"[{"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
            "addr_info":[{"family":"inet","local":"10.250.0.2","prefixlen":24,"scope":"global"},
                         {"family":"inet6","local":"fe80::5054:ff:feb1:0","prefixlen":64,"scope":"link"}]}]"#;
        assert_eq!(parse_addr(addr), (true, vec!["10.250.0.2/24".to_owned()]));
        let down = r#"[{"ifname":"eth1","flags":["BROADCAST","MULTICAST"],"addr_info":[]}]"#;
        assert_eq!(parse_addr(down), (false, vec![]));
        assert_eq!(parse_addr(""), (false, vec![]));

        let v4 = r#"[{"dst":"default","gateway":"10.0.0.1","flags":[]},
            {"dst":"10.250.0.0/24","protocol":"kernel","scope":"link","prefsrc":"10.250.0.2","flags":[]}]"#;
        assert_eq!(
            parse_routes(v4),
            [
                "default via 10.0.0.1",
                "10.250.0.0/24 proto kernel scope link src 10.250.0.2"
            ]
        );
        let v6 =
            r#"[{"dst":"fe80::/64","protocol":"kernel","metric":256,"flags":[],"pref":"medium"}]"#;
        assert!(parse_routes(v6).is_empty());
    }

    #[test]
    fn in_use_names_the_interface_address_and_route() {
        let mut s = LinkState {
            name: "eth0".into(),
            up: true,
            addresses: vec!["10.0.0.2/24".into()],
            routes: vec!["default via 10.0.0.1".into()],
        };
        assert_eq!(
            s.in_use(),
            [
                "eth0 is up with address 10.0.0.2/24",
                "eth0 carries route `default via 10.0.0.1`"
            ]
        );
        // Down with an address, no route: nobody is using it.
        s.up = false;
        s.routes.clear();
        assert!(s.in_use().is_empty());
    }
}
