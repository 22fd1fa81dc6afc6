//! The command line, and its validation into a [`Config`] before anything
//! is touched.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use protocol::{MAX_MESSAGE_LEN, MIN_MESSAGE_LEN};

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One request in flight per connection; the next leaves when the reply
    /// arrives (the original experiment). Latency: send to reply.
    Closed,
    /// Requests leave on a fixed schedule (`--rate`), whatever is in flight.
    /// Latency: intended send time to reply, so a stall is not hidden.
    Open,
}

impl Mode {
    /// Name in the result JSON (`closed`, `open`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Mode::Closed => "closed",
            Mode::Open => "open",
        }
    }

    /// Kind recorded in the shared-memory slot.
    #[must_use]
    pub fn slot_kind(self) -> &'static str {
        match self {
            Mode::Closed => "closed-loop",
            Mode::Open => "open-loop",
        }
    }
}

/// When to draw a progress bar on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// Only when stderr is a terminal.
    Auto,
    /// Always (even into a pipe).
    Always,
    /// Never.
    Never,
}

/// bypasslab load generator: sends length-prefixed requests of random size
/// and checks every reply.
///
/// Prints one JSON result on stdout at the end.
///
/// Exit codes: 0 when every requested message was answered correctly;
/// 1 when any message was lost, mismatched, timed out or reset, when the run
/// was interrupted, or when the server could not be reached; 2 for usage
/// and configuration errors.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Args {
    /// Server address.
    #[arg(long)]
    pub connect: SocketAddr,

    /// Messages to exchange after the warm-up (default 10000; unlimited when
    /// only --duration is given).
    #[arg(long)]
    pub packets: Option<u64>,

    /// Stop issuing new messages after this many seconds of measurement
    /// (whichever of --packets and --duration comes first).
    #[arg(long)]
    pub duration: Option<f64>,

    /// Connections to spread messages over.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,

    /// Spin on non-blocking sockets instead of sleeping in epoll.
    #[arg(long)]
    pub busy_poll: bool,

    /// Closed loop (one message in flight per connection) or open loop at
    /// --rate.
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: Mode,

    /// Open loop: messages per second, all connections together.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Seed of the message-size generator (same seed, same sizes).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Smallest message, bytes, header included (≥ 512).
    #[arg(long, default_value_t = MIN_MESSAGE_LEN)]
    pub min_size: u32,

    /// Largest message, bytes, header included (≤ 1024).
    #[arg(long, default_value_t = MAX_MESSAGE_LEN)]
    pub max_size: u32,

    /// Core to pin the load generator to.
    #[arg(long)]
    pub core: Option<usize>,

    /// Messages exchanged before measuring, excluded from every result.
    #[arg(long, default_value_t = 1000)]
    pub warmup: u64,

    /// A message without its reply after this long counts as timed out
    /// (also the connect timeout).
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,

    /// Shared-memory segment to publish counters, latency histogram and
    /// periodic records into (the loadgen slot).
    #[arg(long)]
    pub shm: Option<PathBuf>,

    /// Progress bar on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: Progress,
}

const EXIT_CODES: &str = "\
Exit codes:
  0  every requested message was answered with its own length
  1  a message was lost, mismatched, timed out or reset, the run was
     interrupted, or the server could not be reached
  2  usage or configuration error

Result (stdout, one JSON object): packets_requested, sent, answered, failed,
mismatches, timeouts, resets, bytes_sent, bytes_received, elapsed_s,
messages_per_s, goodput_kB_per_s (request bytes answered correctly per
second / 1000), latency {count, min_us, mean_us, p50_us, p90_us, p99_us,
p999_us, max_us}, mode, connections, busy_poll, seed, core, warmup, ...";

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
    /// Spin instead of sleeping.
    pub busy_poll: bool,
    /// Pacing.
    pub mode: Mode,
    /// Open loop: messages per second in total.
    pub rate: Option<f64>,
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
}

impl Args {
    /// Checks the flags and resolves defaults.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self, stderr_is_terminal: bool) -> Result<Config, ConfigError> {
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
        let rate = match (self.mode, self.rate) {
            (Mode::Open, Some(r)) if r.is_finite() && r > 0.0 => Some(r),
            (Mode::Open, _) => return Err(ConfigError::MissingRate),
            (Mode::Closed, Some(_)) => return Err(ConfigError::RateInClosedLoop),
            (Mode::Closed, None) => None,
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
        Ok(Config {
            connect: self.connect,
            packets,
            duration,
            connections: self.connections,
            busy_poll: self.busy_poll,
            mode: self.mode,
            rate,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.mode, Mode::Closed);
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
        assert_eq!(ok.map(|c| c.rate), Ok(Some(1000.0)));
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
