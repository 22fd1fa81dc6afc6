//! The peer tools' command lines (sockperf, iperf3, netperf), typed and
//! written once: the bench builds them for this host's testbed, and a
//! remote host's `serve` builds the same from a request, so a request
//! names a tool and its values, never a program or an argument of its own
//! (the tools have options that write files or run scripts; none can be
//! asked for).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

/// The most parallel streams `iperf3 -P` takes.
pub const IPERF3_MAX_STREAMS: u32 = 128;

/// Longest a time-bounded peer client may be asked to run, seconds.
pub const MAX_PEER_SECONDS: u64 = 24 * 3600;

/// A peer's server, for the whole testbed or (iperf3) one test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PeerServer {
    /// `sockperf sr --tcp -i <address> -p <port>`.
    Sockperf {
        /// The address it binds.
        address: Ipv4Addr,
        /// Its TCP port.
        port: u16,
        /// Spin on non-blocking sockets.
        nonblocked: bool,
    },
    /// `iperf3 -s -1 -p <port>`: serves one test, then exits.
    Iperf3 {
        /// Its TCP port.
        port: u16,
    },
    /// `netserver -D -p <port>`, in the foreground.
    Netserver {
        /// Its TCP port.
        port: u16,
    },
}

/// A peer's client run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PeerClient {
    /// sockperf `pp` (ping-pong) when `mps` is `None`, else `ul`
    /// (under-load) at `mps` messages per second, every one answered.
    Sockperf {
        /// The server.
        server: SocketAddrV4,
        /// Message size, bytes.
        message_size: u32,
        /// How long, seconds.
        seconds: u64,
        /// Under-load rate.
        mps: Option<u64>,
        /// Spin on non-blocking sockets.
        nonblocked: bool,
    },
    /// iperf3 moving `bytes` to the server over `streams` connections,
    /// JSON output.
    Iperf3 {
        /// The server.
        server: SocketAddrV4,
        /// Bytes to move.
        bytes: u64,
        /// Parallel streams, 1..=128.
        streams: u32,
    },
    /// netperf TCP_RR: `transactions` requests of `request_size` bytes,
    /// 4-byte responses, key=value output.
    Netperf {
        /// The server.
        server: SocketAddrV4,
        /// Transactions.
        transactions: u64,
        /// Request size, bytes.
        request_size: u32,
    },
}

/// netperf's output selectors (the figures its parser reads).
const NETPERF_KEYS: &str =
    "THROUGHPUT,ELAPSED_TIME,MEAN_LATENCY,P50_LATENCY,P99_LATENCY,MAX_LATENCY,TRANSACTION_RATE";

impl PeerServer {
    /// The program it runs.
    #[must_use]
    pub const fn program(&self) -> &'static str {
        match self {
            Self::Sockperf { .. } => "sockperf",
            Self::Iperf3 { .. } => "iperf3",
            Self::Netserver { .. } => "netserver",
        }
    }

    /// The TCP port it listens on.
    #[must_use]
    pub const fn port(&self) -> u16 {
        match self {
            Self::Sockperf { port, .. } | Self::Iperf3 { port } | Self::Netserver { port } => *port,
        }
    }

    /// Its arguments.
    #[must_use]
    pub fn args(&self) -> Vec<String> {
        let port = self.port().to_string();
        match self {
            Self::Sockperf {
                address,
                nonblocked,
                ..
            } => {
                let mut args = strings(&["sr", "--tcp", "-i", &address.to_string(), "-p", &port]);
                if *nonblocked {
                    args.push("--nonblocked".into());
                }
                args
            }
            Self::Iperf3 { .. } => strings(&["-s", "-1", "-p", &port]),
            Self::Netserver { .. } => strings(&["-D", "-p", &port]),
        }
    }

    /// Why its values are not a server this protocol runs, if they are not.
    ///
    /// # Errors
    /// The field and the reason.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.port() == 0 {
            return Err(("port", "must not be 0"));
        }
        Ok(())
    }
}

impl PeerClient {
    /// The program it runs.
    #[must_use]
    pub const fn program(&self) -> &'static str {
        match self {
            Self::Sockperf { .. } => "sockperf",
            Self::Iperf3 { .. } => "iperf3",
            Self::Netperf { .. } => "netperf",
        }
    }

    /// The server it runs against.
    #[must_use]
    pub const fn server(&self) -> SocketAddrV4 {
        match self {
            Self::Sockperf { server, .. }
            | Self::Iperf3 { server, .. }
            | Self::Netperf { server, .. } => *server,
        }
    }

    /// Its arguments.
    #[must_use]
    pub fn args(&self) -> Vec<String> {
        let host = self.server().ip().to_string();
        let port = self.server().port().to_string();
        match self {
            Self::Sockperf {
                message_size,
                seconds,
                mps,
                nonblocked,
                ..
            } => {
                let mut args = strings(&[
                    if mps.is_some() { "ul" } else { "pp" },
                    "--tcp",
                    "-i",
                    &host,
                    "-p",
                    &port,
                    "-m",
                    &message_size.to_string(),
                    "-t",
                    &seconds.to_string(),
                    "--full-rtt",
                ]);
                if let Some(mps) = mps {
                    args.extend(strings(&["--mps", &mps.to_string(), "--reply-every", "1"]));
                }
                if *nonblocked {
                    args.push("--nonblocked".into());
                }
                args
            }
            Self::Iperf3 { bytes, streams, .. } => strings(&[
                "-c",
                &host,
                "-p",
                &port,
                "-n",
                &bytes.to_string(),
                "-P",
                &streams.clamp(&1, &IPERF3_MAX_STREAMS).to_string(),
                "-J",
            ]),
            Self::Netperf {
                transactions,
                request_size,
                ..
            } => strings(&[
                "-H",
                &host,
                "-p",
                &port,
                "-t",
                "TCP_RR",
                "-l",
                &format!("-{transactions}"),
                "-P",
                "0",
                "--",
                "-r",
                &format!("{request_size},4"),
                "-k",
                NETPERF_KEYS,
            ]),
        }
    }

    /// Why its values are not a client run this protocol runs, if they are
    /// not.
    ///
    /// # Errors
    /// The field and the reason.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.server().port() == 0 {
            return Err(("server", "port must not be 0"));
        }
        match self {
            Self::Sockperf {
                message_size,
                seconds,
                mps,
                ..
            } => {
                if !(14..=65_000).contains(message_size) {
                    return Err(("message_size", "must be within 14..=65000"));
                }
                if !(1..=MAX_PEER_SECONDS).contains(seconds) {
                    return Err(("seconds", "must be within 1..=86400"));
                }
                if *mps == Some(0) {
                    return Err(("mps", "must be at least 1"));
                }
            }
            Self::Iperf3 { bytes, streams, .. } => {
                if *bytes == 0 {
                    return Err(("bytes", "must be at least 1"));
                }
                if !(1..=IPERF3_MAX_STREAMS).contains(streams) {
                    return Err(("streams", "must be within 1..=128 (iperf3's -P)"));
                }
            }
            Self::Netperf {
                transactions,
                request_size,
                ..
            } => {
                if *transactions == 0 {
                    return Err(("transactions", "must be at least 1"));
                }
                if !(1..=65_000).contains(request_size) {
                    return Err(("request_size", "must be within 1..=65000"));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for PeerServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.program(), self.args().join(" "))
    }
}

impl fmt::Display for PeerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.program(), self.args().join(" "))
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|&w| w.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 7001)
    }

    #[test]
    fn each_tool_is_run_as_its_peer_measures_it() {
        let pp = PeerClient::Sockperf {
            server: server(),
            message_size: 768,
            seconds: 3,
            mps: None,
            nonblocked: false,
        };
        assert_eq!(
            pp.to_string(),
            "sockperf pp --tcp -i 10.0.0.2 -p 7001 -m 768 -t 3 --full-rtt"
        );
        let ul = PeerClient::Sockperf {
            server: server(),
            message_size: 768,
            seconds: 3,
            mps: Some(5000),
            nonblocked: true,
        };
        assert!(ul
            .to_string()
            .ends_with("--mps 5000 --reply-every 1 --nonblocked"));
        assert!(ul.to_string().starts_with("sockperf ul "));
        let bulk = PeerClient::Iperf3 {
            server: server(),
            bytes: 768_000,
            streams: 4,
        };
        assert_eq!(
            bulk.to_string(),
            "iperf3 -c 10.0.0.2 -p 7001 -n 768000 -P 4 -J"
        );
        let rr = PeerClient::Netperf {
            server: server(),
            transactions: 100,
            request_size: 768,
        };
        assert!(rr
            .to_string()
            .contains("-t TCP_RR -l -100 -P 0 -- -r 768,4 -k"));
        let sr = PeerServer::Sockperf {
            address: *server().ip(),
            port: 7001,
            nonblocked: true,
        };
        assert_eq!(
            sr.to_string(),
            "sockperf sr --tcp -i 10.0.0.2 -p 7001 --nonblocked"
        );
        assert_eq!(
            PeerServer::Iperf3 { port: 7002 }.to_string(),
            "iperf3 -s -1 -p 7002"
        );
    }

    #[test]
    fn values_a_tool_would_refuse_or_misread_are_checked() {
        assert_eq!(
            PeerClient::Iperf3 {
                server: server(),
                bytes: 1,
                streams: 129
            }
            .check(),
            Err(("streams", "must be within 1..=128 (iperf3's -P)"))
        );
        assert!(PeerClient::Sockperf {
            server: server(),
            message_size: 768,
            seconds: 0,
            mps: None,
            nonblocked: false,
        }
        .check()
        .is_err());
        assert!(PeerServer::Iperf3 { port: 0 }.check().is_err());
        assert!(PeerServer::Netserver { port: 1 }.check().is_ok());
    }
}
