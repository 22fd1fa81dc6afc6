//! The load generator's command line. The load generator parses and
//! validates it (its `config` module); the supervisor fills it and renders
//! it with [`crate::argv::to_argv`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use protocol::{MAX_MESSAGE_LEN, MIN_MESSAGE_LEN};

use crate::kinds::{ClientStack, Pmd, PmdKind};
use serde::{Deserialize, Serialize};

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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

/// How connections live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// Every connection is opened once, before the first request, and
    /// carries requests until the run ends (the original experiment).
    #[default]
    Persistent,
    /// Connect, send `--requests-per-connection` requests one at a time,
    /// read each reply, close; the next connection opens at once
    /// (closed loop only). Connections/s, the connect time and the request
    /// round trip are reported apart.
    Short,
}

impl Pattern {
    /// Name in the result JSON and the bench's tests (`persistent`, `short`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Persistent => "persistent",
            Pattern::Short => "short",
        }
    }
}

/// What a short-connection run adds to the load generator's result (and
/// to a row): the connections' rate and handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShortConnections {
    /// Requests each connection carried.
    pub requests_per_connection: u32,
    /// Connections of the measured phase that carried all their requests
    /// and closed.
    pub connections_completed: u64,
    /// `connections_completed` per second of the measured phase.
    pub connections_per_s: f64,
    /// Handshake time of the measured phase's connections: from the
    /// connect call to the stack reporting it established.
    pub connect: shm_layout::LatencySummary,
    /// Connects the server refused (both phases).
    pub connect_refused: u64,
    /// Connects that failed another way or could not start (both phases).
    pub connect_failed: u64,
    /// Connects without an answer within `--timeout-ms` (both phases).
    pub connect_timeouts: u64,
}

impl ShortConnections {
    /// The figures in a load generator's result line (its stdout), if it
    /// ran short connections and printed its result.
    #[must_use]
    pub fn from_result(stdout: &str) -> Option<Self> {
        stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<Self>(line.trim()).ok())
    }

    /// Connects that did not succeed, however.
    #[must_use]
    pub fn connect_errors(&self) -> u64 {
        self.connect_refused + self.connect_failed + self.connect_timeouts
    }
}

/// When to draw a progress bar on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
#[derive(Debug, Clone, PartialEq, Parser, Serialize, Deserialize)]
#[command(name = "loadgen", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct LoadgenArgs {
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

    /// Persistent connections, or a new connection per
    /// --requests-per-connection requests (`short`, closed loop only;
    /// --connections is then how many are open at once).
    #[arg(long, value_enum, default_value = "persistent")]
    pub pattern: Pattern,

    /// `--pattern short`: requests each connection carries before it closes.
    #[arg(long, default_value_t = 1)]
    pub requests_per_connection: u32,

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

    /// TCP stack the connections run on: the kernel's sockets, or DPDK +
    /// smoltcp owning the interface that --dpdk-config names.
    #[arg(long, value_enum, default_value = "kernel")]
    pub stack: ClientStack,

    /// --stack dpdk: the F-Stack-format config.ini of the client's port
    /// (`[dpdk]` pmd, iface, file_prefix; `[port0]` addr, netmask, gateway).
    #[arg(long)]
    pub dpdk_config: Option<PathBuf>,

    /// --stack dpdk: smallest TCP retransmission timeout of the smoltcp
    /// sockets, ms (default: smoltcp's 10). The kernel stack's comes from
    /// the route's `rto_min`.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rto_min_ms: Option<u32>,

    /// --stack dpdk: give the core up (sched_yield) after a poll that moved
    /// nothing, because another process (the link emulator) shares it and
    /// a spinning client would starve it.
    #[arg(long)]
    pub yield_idle: bool,
}

/// What the load generator's slot in the segment says it is (at most 31
/// bytes): the pacing, the stack and, for a bypass stack, its PMD, e.g.
/// `closed-loop kernel`, `open-loop dpdk af_xdp`.
#[must_use]
pub fn slot_kind(mode: Mode, stack: ClientStack, pmd: Option<PmdKind>) -> String {
    match pmd {
        Some(pmd) => format!("{} {stack} {}", mode.slot_kind(), pmd.ini_name()),
        None => format!("{} {stack}", mode.slot_kind()),
    }
}

/// A load generator slot's kind read back: its pacing, stack and PMD.
/// A kind without a stack (written before the stack was recorded) reads as
/// the kernel's.
#[must_use]
pub fn parse_slot_kind(kind: &str) -> Option<(Mode, ClientStack, Option<PmdKind>)> {
    let mut words = kind.split(' ');
    let first = words.next()?;
    let mode = [Mode::Closed, Mode::Open]
        .into_iter()
        .find(|m| m.slot_kind() == first)?;
    let stack = match words.next() {
        None => ClientStack::Kernel,
        Some(name) => ClientStack::from_name(name)?,
    };
    let pmd = match words.next() {
        None => None,
        Some(name) => Some(PmdKind::from_ini(name)?),
    };
    words.next().is_none().then_some((mode, stack, pmd))
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
second / 1000), latency {count, clamped, percentiles_are_lower_bounds,
min_us, mean_us, p50_us, p90_us, p99_us, p999_us, max_us}, mode, pattern,
connections, busy_poll, seed, core, warmup, ...; with --pattern short also
connections_completed, connections_per_s, connect (the handshake's time,
as latency), connect_refused, connect_failed, connect_timeouts.";

impl LoadgenArgs {
    /// Every flag at its default, against `connect`.
    #[must_use]
    pub fn new(connect: SocketAddr) -> Self {
        Self::parse_from(["loadgen", "--connect", &connect.to_string()])
    }
}

/// Load generator options passed through by `attach` and `run`.
/// The same options travel to a remote host's supervisor in a
/// `run_loadgen` request (see [`crate::serve`]), so unknown fields are refused.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadOptions {
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    pub connections: u32,
    /// Spin on non-blocking sockets instead of sleeping in poll.
    #[arg(long)]
    pub loadgen_busy_poll: bool,
    /// `closed`: one message in flight per connection (as in the original);
    /// `open`: a fixed rate, latency measured from the intended send time.
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: Mode,
    /// Messages per second for `--mode open`.
    #[arg(long)]
    pub rate: Option<u64>,
    /// `persistent` connections, or `short` ones: connect, send
    /// --requests-per-connection requests, close (closed loop only).
    #[arg(long, value_enum, default_value = "persistent")]
    #[serde(default)]
    pub pattern: Pattern,
    /// Requests per short connection.
    #[arg(long, default_value_t = 1)]
    #[serde(default = "one")]
    pub requests_per_connection: u32,
    /// Seed of the message-size sequence.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Smallest message, bytes (header included).
    #[arg(long, default_value_t = 512)]
    pub min_size: u32,
    /// Largest message, bytes (header included).
    #[arg(long, default_value_t = 1024)]
    pub max_size: u32,
    /// Messages exchanged before measuring.
    #[arg(long, default_value_t = 1000)]
    pub warmup: u64,
    /// A reply later than this counts as lost, milliseconds. Generous: over
    /// a lossy link TCP's exponential backoff (200 ms, 400 ms, 800 ms, ...
    /// after consecutive losses of one segment) delays a reply by seconds
    /// without losing it; such delays show up in the maximum RTT instead.
    #[arg(long, default_value_t = REPLY_TIMEOUT_MS)]
    pub timeout_ms: u64,
    /// The load generator's TCP stack: `kernel` sockets, or `dpdk` (DPDK +
    /// smoltcp owning NS1's veth through --client-pmd; the supervisor moves NS1's
    /// address to it for the run and gives it its own config.ini and
    /// hugepages). Default: `[client] stack` of the testbed configuration.
    #[arg(long, value_enum)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientStack>,
    /// Poll-mode driver of a `dpdk` client: af_xdp or af_packet on NS1's
    /// veth, or memif, the other end of an engine started with `--pmd
    /// memif` (such a run's client always takes memif).
    #[arg(long, default_value = "af_xdp")]
    #[serde(default = "af_xdp")]
    pub client_pmd: Pmd,
}

fn af_xdp() -> Pmd {
    Pmd::AfXdp
}

fn one() -> u32 {
    1
}

/// The load generator's reply timeout under the supervisor: generous,
/// because over the impaired link consecutive losses of one segment back
/// off for seconds without losing the message, and a 1 000 000-message run
/// must not fail on one such stall.
pub const REPLY_TIMEOUT_MS: u64 = 30_000;

impl LoadOptions {
    /// The load generator's arguments for one run of `packets` messages
    /// against `connect`, pinned to `core`, publishing into `shm`; `bar`
    /// lets it draw its own progress bar.
    #[must_use]
    pub fn loadgen_args(
        &self,
        connect: SocketAddr,
        packets: u64,
        core: Option<usize>,
        shm: Option<PathBuf>,
        bar: bool,
    ) -> LoadgenArgs {
        LoadgenArgs {
            packets: Some(packets),
            connections: usize::try_from(self.connections).unwrap_or(usize::MAX),
            busy_poll: self.loadgen_busy_poll,
            mode: self.mode,
            rate: self.rate.map(|r| r as f64),
            pattern: self.pattern,
            requests_per_connection: self.requests_per_connection,
            seed: self.seed,
            min_size: self.min_size,
            max_size: self.max_size,
            core,
            warmup: self.warmup,
            timeout_ms: self.timeout_ms,
            shm,
            progress: if bar { Progress::Auto } else { Progress::Never },
            ..LoadgenArgs::new(connect)
        }
    }

    /// How long one run of `packets` messages may take at most: every
    /// message (warm-up included) waiting out its reply timeout, plus a
    /// minute to connect and finish.
    #[must_use]
    pub fn bound(&self, packets: u64) -> Duration {
        let messages = packets.saturating_add(self.warmup).max(1);
        let worst = Duration::from_millis(messages.saturating_mul(self.timeout_ms.max(1)));
        worst.min(Duration::from_secs(7 * 86_400)) + Duration::from_secs(60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argv::{reparse, to_argv};

    #[test]
    fn a_rendered_command_line_parses_back() {
        let connect: SocketAddr = "10.77.0.3:7000".parse().unwrap();
        let defaults = LoadgenArgs::new(connect);
        assert_eq!(to_argv(&defaults).unwrap(), ["--connect", "10.77.0.3:7000"]);
        let args = LoadgenArgs {
            packets: Some(100_000),
            connections: 16,
            mode: Mode::Open,
            rate: Some(1234.5),
            core: Some(0),
            busy_poll: true,
            shm: Some("/run/x/segment".into()),
            progress: Progress::Never,
            timeout_ms: 30_000,
            pattern: Pattern::Short,
            requests_per_connection: 3,
            ..defaults
        };
        let argv = to_argv(&args).unwrap();
        assert_eq!(reparse::<LoadgenArgs>(&argv).unwrap(), args);
        assert!(argv.windows(2).any(|w| w == ["--mode", "open"]));
        assert!(argv.windows(2).any(|w| w == ["--progress", "never"]));

        let dpdk = LoadgenArgs {
            stack: ClientStack::Dpdk,
            dpdk_config: Some("/run/x/client.ini".into()),
            rto_min_ms: Some(5),
            yield_idle: true,
            ..LoadgenArgs::new(connect)
        };
        let argv = to_argv(&dpdk).unwrap();
        assert_eq!(reparse::<LoadgenArgs>(&argv).unwrap(), dpdk);
        assert!(argv.windows(2).any(|w| w == ["--stack", "dpdk"]));
    }

    #[test]
    fn slot_kinds_say_the_stack_and_read_back() {
        let cases = [
            (
                Mode::Closed,
                ClientStack::Kernel,
                None,
                "closed-loop kernel",
            ),
            (
                Mode::Open,
                ClientStack::Dpdk,
                Some(PmdKind::AfPacket),
                "open-loop dpdk af_packet",
            ),
        ];
        for (mode, stack, pmd, text) in cases {
            let kind = slot_kind(mode, stack, pmd);
            assert_eq!(kind, text);
            assert!(kind.len() <= 31, "fits the slot's kind field");
            assert_eq!(parse_slot_kind(&kind), Some((mode, stack, pmd)));
        }
        assert_eq!(
            parse_slot_kind("closed-loop"),
            Some((Mode::Closed, ClientStack::Kernel, None))
        );
        for bad in [
            "",
            "dpdk",
            "closed-loop fstack",
            "open-loop dpdk tap",
            "closed-loop kernel x y",
        ] {
            assert_eq!(parse_slot_kind(bad), None, "{bad}");
        }
    }
}
