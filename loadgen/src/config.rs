//! The command line's validation into a [`Config`] before anything is
//! touched. The flags themselves are [`contract::loadgen::LoadgenArgs`],
//! shared with the supervisor that builds them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use contract::loadgen::{LoadgenArgs as Args, Mode, Pattern, Progress};
use contract::ClientStack;
use protocol::{MAX_MESSAGE_LEN, MIN_MESSAGE_LEN};

/// A configuration that was checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server address.
    pub connect: SocketAddr,
    /// Messages to measure; `None`: until `duration` ends.
    pub packets: Option<u64>,
    /// Measurement time limit.
    pub duration: Option<Duration>,
    /// Connections.
    pub connections: usize,
    /// Spin instead of sleeping (always, on the dpdk stack: a poll-mode
    /// driver has nothing to sleep on).
    pub busy_poll: bool,
    /// The TCP stack, with what it needs.
    pub stack: StackChoice,
    /// Pacing, the open loop's rate with it.
    pub pacing: Pacing,
    /// How long connections live, with what short ones carry.
    pub lifetime: Lifetime,
    /// Size generator seed.
    pub seed: u64,
    /// Smallest message.
    pub min_size: u32,
    /// Largest message.
    pub max_size: u32,
    /// Core to pin to.
    pub core: Option<usize>,
    /// Warm-up messages.
    pub warmup: u64,
    /// Reply and connect timeout.
    pub timeout: Duration,
    /// Segment to publish into.
    pub shm: Option<PathBuf>,
    /// Whether to draw the progress bar.
    pub progress: bool,
}

/// The TCP stack the connections run on, with what each needs.
#[derive(Debug, Clone, PartialEq)]
pub enum StackChoice {
    /// The kernel's sockets.
    Kernel,
    /// DPDK + smoltcp on the port `config` describes.
    Dpdk(DpdkChoice),
}

impl StackChoice {
    /// The command line's stack.
    #[must_use]
    pub fn kind(&self) -> ClientStack {
        match self {
            StackChoice::Kernel => ClientStack::Kernel,
            StackChoice::Dpdk(_) => ClientStack::Dpdk,
        }
    }
}

/// What the dpdk stack is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct DpdkChoice {
    /// The port's config.ini.
    pub config: PathBuf,
    /// The sockets' smallest retransmission timeout (`None`: smoltcp's).
    pub rto_min: Option<Duration>,
    /// Yield the core after a poll that moved nothing.
    pub yield_idle: bool,
}

/// How requests are paced, with what each way needs: the open loop cannot
/// exist without its rate, so no default rate can ever apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// One request in flight per connection, the next on each reply.
    Closed,
    /// Requests on a fixed schedule, whatever is in flight.
    Open {
        /// Messages per second, all connections together (finite, > 0).
        rate: f64,
    },
}

impl Pacing {
    /// The command line's mode.
    #[must_use]
    pub fn mode(self) -> Mode {
        match self {
            Pacing::Closed => Mode::Closed,
            Pacing::Open { .. } => Mode::Open,
        }
    }

    /// The open loop's rate.
    #[must_use]
    pub fn rate(self) -> Option<f64> {
        match self {
            Pacing::Closed => None,
            Pacing::Open { rate } => Some(rate),
        }
    }
}

/// How long a connection lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Opened before the first request, used until the run ends.
    Persistent,
    /// Closed after this many requests (at least one); the next opens at once.
    Short {
        /// Requests each connection carries.
        requests: u32,
    },
}

impl Lifetime {
    /// The command line's pattern.
    #[must_use]
    pub fn pattern(self) -> Pattern {
        match self {
            Lifetime::Persistent => Pattern::Persistent,
            Lifetime::Short { .. } => Pattern::Short,
        }
    }
}

/// Most requests one short connection carries.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 1_000_000;

/// Most connections one load generator opens.
pub const MAX_CONNECTIONS: usize = 4096;

/// A flag combination that makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Sizes outside the protocol's range or in the wrong order.
    #[error(
        "message sizes must satisfy {MIN_MESSAGE_LEN} <= --min-size <= --max-size <= \
         {MAX_MESSAGE_LEN}, got --min-size {min} --max-size {max}"
    )]
    Sizes {
        /// --min-size.
        min: u32,
        /// --max-size.
        max: u32,
    },
    /// No connection or too many.
    #[error("--connections must be between 1 and {MAX_CONNECTIONS}, got {0}")]
    Connections(usize),
    /// Open loop without a usable rate.
    #[error("--mode open needs --rate R with R > 0 messages per second")]
    MissingRate,
    /// A rate given to the closed loop, which paces itself.
    #[error("--rate only applies to --mode open (the closed loop sends on each reply)")]
    RateInClosedLoop,
    /// Neither a message count nor a duration worth running.
    #[error("--packets must be at least 1")]
    NoPackets,
    /// A duration that is not a positive number of seconds.
    #[error("--duration must be a positive number of seconds, got {0}")]
    Duration(f64),
    /// A zero timeout would fail every message.
    #[error("--timeout-ms must be at least 1")]
    Timeout,
    /// Short connections are paced by their replies.
    #[error(
        "--pattern short runs the closed loop only (each connection sends its next request \
         on the reply); drop --mode open"
    )]
    ShortOpenLoop,
    /// A short connection must carry something.
    #[error(
        "--requests-per-connection must be between 1 and {MAX_REQUESTS_PER_CONNECTION}, got {0}"
    )]
    RequestsPerConnection(u32),
    /// --requests-per-connection without short connections.
    #[error("--requests-per-connection only applies to --pattern short")]
    RequestsWithoutShort,
    /// The dpdk stack without its port's configuration.
    #[error(
        "--stack dpdk needs --dpdk-config PATH: the config.ini of the client's own port \
         ([dpdk] pmd and iface, [port0] addr, netmask and gateway)"
    )]
    MissingDpdkConfig,
    /// A flag of the dpdk stack given to the kernel's.
    #[error("{0} only applies to --stack dpdk")]
    DpdkOnly(&'static str),
    /// The dpdk stack cannot reach an IPv6 server.
    #[error("--connect {0}: the dpdk stack speaks IPv4 only")]
    Ipv6WithDpdk(SocketAddr),
}

/// The flags checked, defaults resolved.
pub trait Validate {
    /// Checks the flags and resolves defaults.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    fn validate(&self, stderr_is_terminal: bool) -> Result<Config, ConfigError>;
}

impl Validate for Args {
    fn validate(&self, stderr_is_terminal: bool) -> Result<Config, ConfigError> {
        if !(MIN_MESSAGE_LEN <= self.min_size
            && self.min_size <= self.max_size
            && self.max_size <= MAX_MESSAGE_LEN)
        {
            return Err(ConfigError::Sizes {
                min: self.min_size,
                max: self.max_size,
            });
        }
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return Err(ConfigError::Connections(self.connections));
        }
        let pacing = match (self.mode, self.rate) {
            (Mode::Open, Some(rate)) if rate.is_finite() && rate > 0.0 => Pacing::Open { rate },
            (Mode::Open, _) => return Err(ConfigError::MissingRate),
            (Mode::Closed, Some(_)) => return Err(ConfigError::RateInClosedLoop),
            (Mode::Closed, None) => Pacing::Closed,
        };
        let duration = match self.duration {
            None => None,
            Some(d) if d.is_finite() && d > 0.0 && d < 1e9 => Some(Duration::from_secs_f64(d)),
            Some(d) => return Err(ConfigError::Duration(d)),
        };
        let packets = match (self.packets, duration) {
            (Some(0), _) => return Err(ConfigError::NoPackets),
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(10_000),
        };
        if self.timeout_ms == 0 {
            return Err(ConfigError::Timeout);
        }
        let lifetime = match self.pattern {
            Pattern::Persistent if self.requests_per_connection != 1 => {
                return Err(ConfigError::RequestsWithoutShort)
            }
            Pattern::Persistent => Lifetime::Persistent,
            Pattern::Short if matches!(pacing, Pacing::Open { .. }) => {
                return Err(ConfigError::ShortOpenLoop)
            }
            Pattern::Short
                if !(1..=MAX_REQUESTS_PER_CONNECTION).contains(&self.requests_per_connection) =>
            {
                return Err(ConfigError::RequestsPerConnection(
                    self.requests_per_connection,
                ))
            }
            Pattern::Short => Lifetime::Short {
                requests: self.requests_per_connection,
            },
        };
        let stack = self.stack_choice()?;
        Ok(Config {
            connect: self.connect,
            packets,
            duration,
            connections: self.connections,
            busy_poll: self.busy_poll || stack.kind().is_bypass(),
            stack,
            pacing,
            lifetime,
            seed: self.seed,
            min_size: self.min_size,
            max_size: self.max_size,
            core: self.core,
            warmup: self.warmup,
            timeout: Duration::from_millis(self.timeout_ms),
            shm: self.shm.clone(),
            progress: match self.progress {
                Progress::Always => true,
                Progress::Never => false,
                Progress::Auto => stderr_is_terminal,
            },
        })
    }
}

/// The stack flags, checked together.
trait StackFlags {
    fn stack_choice(&self) -> Result<StackChoice, ConfigError>;
}

impl StackFlags for Args {
    fn stack_choice(&self) -> Result<StackChoice, ConfigError> {
        match self.stack {
            ClientStack::Kernel => {
                if self.dpdk_config.is_some() {
                    return Err(ConfigError::DpdkOnly("--dpdk-config"));
                }
                if self.rto_min_ms.is_some() {
                    return Err(ConfigError::DpdkOnly(
                        "--rto-min-ms (the kernel's comes from the route's rto_min)",
                    ));
                }
                if self.yield_idle {
                    return Err(ConfigError::DpdkOnly("--yield-idle"));
                }
                Ok(StackChoice::Kernel)
            }
            ClientStack::Dpdk => {
                let config = self
                    .dpdk_config
                    .clone()
                    .ok_or(ConfigError::MissingDpdkConfig)?;
                if self.connect.is_ipv6() {
                    return Err(ConfigError::Ipv6WithDpdk(self.connect));
                }
                Ok(StackChoice::Dpdk(DpdkChoice {
                    config,
                    rto_min: self.rto_min_ms.map(|ms| Duration::from_millis(ms.into())),
                    yield_idle: self.yield_idle,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["loadgen", "--connect", "127.0.0.1:7000"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("parses")
    }

    #[test]
    fn defaults_are_the_original_experiment() {
        let c = args(&[]).validate(false).expect("valid");
        assert_eq!(c.packets, Some(10_000));
        assert_eq!((c.min_size, c.max_size), (512, 1024));
        assert_eq!(c.pacing, Pacing::Closed);
        assert_eq!(c.connections, 1);
        assert_eq!(c.warmup, 1000);
        assert!(!c.progress);
    }

    #[test]
    fn sizes_are_checked_against_the_protocol() {
        for (min, max) in [("100", "1024"), ("512", "2000"), ("900", "600")] {
            let err = args(&["--min-size", min, "--max-size", max]).validate(false);
            assert!(matches!(err, Err(ConfigError::Sizes { .. })), "{min} {max}");
        }
        let ok = args(&["--min-size", "700", "--max-size", "700"]).validate(false);
        assert!(ok.is_ok());
    }

    #[test]
    fn open_loop_needs_a_positive_rate() {
        let err = args(&["--mode", "open"]).validate(false);
        assert!(matches!(err, Err(ConfigError::MissingRate)));
        let err = args(&["--mode", "open", "--rate", "0"]).validate(false);
        assert!(matches!(err, Err(ConfigError::MissingRate)));
        let err = args(&["--rate", "10"]).validate(false);
        assert!(matches!(err, Err(ConfigError::RateInClosedLoop)));
        let ok = args(&["--mode", "open", "--rate", "1000"]).validate(false);
        assert_eq!(ok.map(|c| c.pacing), Ok(Pacing::Open { rate: 1000.0 }));
    }

    #[test]
    fn duration_alone_means_no_message_limit() {
        let c = args(&["--duration", "2.5"]).validate(false).expect("valid");
        assert_eq!(c.packets, None);
        assert_eq!(c.duration, Some(Duration::from_millis(2500)));
        let err = args(&["--duration=-1"]).validate(false);
        assert!(matches!(err, Err(ConfigError::Duration(_))));
    }

    #[test]
    fn counts_are_bounded() {
        let err = args(&["--connections", "0"]).validate(false);
        assert!(matches!(err, Err(ConfigError::Connections(0))));
        let err = args(&["--packets", "0"]).validate(false);
        assert!(matches!(err, Err(ConfigError::NoPackets)));
        let err = args(&["--timeout-ms", "0"]).validate(false);
        assert!(matches!(err, Err(ConfigError::Timeout)));
    }

    #[test]
    fn short_connections_are_closed_loop_and_carry_at_least_one_request() {
        let c = args(&["--pattern", "short", "--requests-per-connection", "3"])
            .validate(false)
            .expect("valid");
        assert_eq!(c.lifetime, Lifetime::Short { requests: 3 });
        assert_eq!(
            args(&[]).validate(false).map(|c| c.lifetime),
            Ok(Lifetime::Persistent)
        );
        let err = args(&["--pattern", "short", "--mode", "open", "--rate", "10"]).validate(false);
        assert_eq!(err.err(), Some(ConfigError::ShortOpenLoop));
        let err = args(&["--pattern", "short", "--requests-per-connection", "0"]).validate(false);
        assert_eq!(err.err(), Some(ConfigError::RequestsPerConnection(0)));
        let err = args(&["--requests-per-connection", "2"]).validate(false);
        assert_eq!(err.err(), Some(ConfigError::RequestsWithoutShort));
    }

    #[test]
    fn the_dpdk_stack_needs_its_config_and_its_flags_need_it() {
        assert_eq!(
            args(&[]).validate(false).unwrap().stack,
            StackChoice::Kernel
        );
        let err = args(&["--stack", "dpdk"]).validate(false);
        assert!(matches!(err, Err(ConfigError::MissingDpdkConfig)));
        for extra in [
            &["--dpdk-config", "c.ini"][..],
            &["--rto-min-ms", "5"],
            &["--yield-idle"],
        ] {
            let err = args(extra).validate(false);
            assert!(matches!(err, Err(ConfigError::DpdkOnly(_))), "{extra:?}");
        }
        let c = args(&[
            "--stack",
            "dpdk",
            "--dpdk-config",
            "c.ini",
            "--rto-min-ms",
            "5",
            "--yield-idle",
        ])
        .validate(false)
        .expect("valid");
        assert!(c.busy_poll, "a poll-mode driver always spins");
        assert_eq!(
            c.stack,
            StackChoice::Dpdk(DpdkChoice {
                config: "c.ini".into(),
                rto_min: Some(Duration::from_millis(5)),
                yield_idle: true,
            })
        );
        let v6 = Args::try_parse_from([
            "loadgen",
            "--connect",
            "[::1]:7000",
            "--stack",
            "dpdk",
            "--dpdk-config",
            "c.ini",
        ])
        .unwrap()
        .validate(false);
        assert!(matches!(v6, Err(ConfigError::Ipv6WithDpdk(_))));
    }

    #[test]
    fn progress_follows_the_terminal_unless_forced() {
        assert!(args(&[]).validate(true).expect("valid").progress);
        assert!(
            !args(&["--progress", "never"])
                .validate(true)
                .expect("valid")
                .progress
        );
        assert!(
            args(&["--progress", "always"])
                .validate(false)
                .expect("valid")
                .progress
        );
    }
}
