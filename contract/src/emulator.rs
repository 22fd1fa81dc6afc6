//! The userspace link emulator's command line (`supervisor emulator …`,
//! started in NS2 by `supervisor net up` where the kernel has no netem), and
//! the two choices the testbed configuration shares with it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

/// The subcommand of the supervisor binary that runs the emulator.
pub const SUBCOMMAND: &str = "emulator";

/// Which frames are impaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Frames travelling from NS3 (server) to NS1 (client).
    FromNs3,
    /// Frames travelling from NS1 (client) to NS3 (server).
    ToNs3,
    /// Both ways.
    Both,
}

impl Direction {
    /// Whether frames going from NS3 toward NS1 are impaired.
    #[must_use]
    pub fn impairs_from_ns3(self) -> bool {
        matches!(self, Direction::FromNs3 | Direction::Both)
    }

    /// Whether frames going from NS1 toward NS3 are impaired.
    #[must_use]
    pub fn impairs_to_ns3(self) -> bool {
        matches!(self, Direction::ToNs3 | Direction::Both)
    }

    /// The config spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::FromNs3 => "from-ns3",
            Direction::ToNs3 => "to-ns3",
            Direction::Both => "both",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <Self as ValueEnum>::from_str(s, false)
            .map_err(|_| format!("unknown direction {s:?}: expected from-ns3, to-ns3 or both"))
    }
}

/// How the emulator waits for frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmulatorMode {
    /// Sleep in poll(2) whenever nothing is due; costs a wake-up per burst.
    Blocking,
    /// Spin on the packet rings while traffic flows; falls back to blocking
    /// after a quiet period, so an idle testbed does not burn a core.
    Poll,
}

impl EmulatorMode {
    /// The config spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EmulatorMode::Blocking => "blocking",
            EmulatorMode::Poll => "poll",
        }
    }
}

impl FromStr for EmulatorMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <Self as ValueEnum>::from_str(s, false)
            .map_err(|_| format!("unknown mode {s:?}: expected blocking or poll"))
    }
}

/// The emulator's command line.
#[derive(Debug, Clone, PartialEq, Parser, Serialize, Deserialize)]
#[command(name = "emulator")]
pub struct EmulatorArgs {
    /// Interface toward the bridge (NS1's side).
    #[arg(long)]
    pub a: String,
    /// Interface toward NS3.
    #[arg(long)]
    pub b: String,
    /// Added one-way delay in the impaired direction(s), microseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_us: u32,
    /// Uniform jitter ± this many microseconds (never reorders).
    #[arg(long, default_value_t = 0)]
    pub jitter_us: u32,
    /// Share of frames dropped in the impaired direction(s), percent.
    #[arg(long, default_value_t = 0.0)]
    pub loss_percent: f64,
    /// Impaired direction: from-ns3 (b→a), to-ns3 (a→b) or both.
    #[arg(long, value_enum, default_value = "from-ns3")]
    pub direction: Direction,
    /// Core to pin to.
    #[arg(long)]
    pub core: Option<usize>,
    /// blocking or poll.
    #[arg(long, value_enum, default_value = "blocking")]
    pub mode: EmulatorMode,
    /// Where to publish counters.
    #[arg(long)]
    pub stats_file: PathBuf,
    /// MTU of the links (sizes the ring slots).
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// Seed of the drop decisions; 0 picks one.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argv::{reparse, to_argv};

    #[test]
    fn a_rendered_command_line_parses_back() {
        let args = EmulatorArgs {
            a: "bl-e".into(),
            b: "bl-s-br".into(),
            delay_us: 100,
            jitter_us: 0,
            loss_percent: 1.0,
            direction: Direction::Both,
            core: Some(0),
            mode: EmulatorMode::Poll,
            stats_file: "/run/x/emulator-stats.json".into(),
            mtu: 1500,
            seed: 7,
        };
        let argv = to_argv(&args).unwrap();
        assert_eq!(reparse::<EmulatorArgs>(&argv).unwrap(), args);
        assert!(argv.windows(2).any(|w| w == ["--direction", "both"]));
        assert!(argv.windows(2).any(|w| w == ["--loss-percent", "1.0"]));
    }

    #[test]
    fn spellings_parse() {
        assert_eq!("to-ns3".parse::<Direction>(), Ok(Direction::ToNs3));
        assert!("sideways".parse::<Direction>().is_err());
        assert_eq!("poll".parse::<EmulatorMode>(), Ok(EmulatorMode::Poll));
    }
}
