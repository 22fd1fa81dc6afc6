//! Progress on stderr: an indicatif bar on a terminal, one plain line per
//! second when forced into a pipe or file (`--progress always`), nothing
//! otherwise. Updated on the publication timer, never per message.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
pub enum Progress {
    /// A bar redrawn in place.
    Bar(ProgressBar),
    /// A line per second, for logs.
    Lines {
        /// Messages to do, if bounded.
        total: Option<u64>,
        /// When the next line is due.
        next: Instant,
        /// Phase name printed at the start of each line.
        phase: &'static str,
    },
    /// Nothing.
    Off,
}

impl Progress {
    /// Progress over `total` messages (`None`: unbounded).
    #[must_use]
    pub fn new(enabled: bool, total: Option<u64>) -> Self {
        if !enabled {
            return Self::Off;
        }
        if !std::io::stderr().is_terminal() {
            return Self::Lines {
                total,
                next: Instant::now() + Duration::from_secs(1),
                phase: "run",
            };
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let template = if total.is_some() {
            "{spinner} {msg} [{elapsed_precise}] {wide_bar} {pos}/{len} eta {eta}"
        } else {
            "{spinner} {msg} [{elapsed_precise}] {pos} messages"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        Self::Bar(bar)
    }

    /// Starts a phase (`warm-up`, `run`) from zero.
    pub fn phase(&mut self, name: &'static str, total: Option<u64>) {
        match self {
            Self::Bar(bar) => {
                bar.reset();
                bar.set_length(total.unwrap_or(0));
                if total.is_none() {
                    bar.unset_length();
                }
                bar.set_message(name);
            }
            Self::Lines {
                total: t, phase, ..
            } => {
                *t = total;
                *phase = name;
            }
            Self::Off => {}
        }
    }

    /// Reports `done` resolved messages, `failed` of them failed.
    pub fn update(&mut self, done: u64, failed: u64) {
        match self {
            Self::Bar(bar) => bar.set_position(done),
            Self::Lines { total, next, phase } => {
                let now = Instant::now();
                if now >= *next {
                    *next = now + Duration::from_secs(1);
                    let of = total.map(|t| format!("/{t}")).unwrap_or_default();
                    let _ = writeln!(
                        std::io::stderr(),
                        "loadgen: {phase}: {done}{of} messages resolved, {failed} failed"
                    );
                }
            }
            Self::Off => {}
        }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
