//! How long the matrix will take, said before it starts: a calibration
//! (each engine on each testbed, a short closed loop at the fewest and the
//! most connections of its half) gives the rates, and every run still
//! missing is priced at them.
//!
//! Short connections (a handshake per message) are calibrated apart, when
//! the matrix has them. The price of a run is its messages (warm-up
//! included) over the rate of its loop (closed, or short) at its connection
//! count (interpolated between the two calibrated counts on
//! a log scale), divided by the open-loop fraction for an open loop, plus a
//! fixed overhead per run, per engine start and per testbed. Peers are
//! priced at the kernel engine's one-connection rate (sockperf ping-pongs
//! like it; iperf3 moves bulk far faster). An equal minimum RTO is priced
//! like each stack's own, which it can only shorten. An estimate, not a
//! promise: rates on a shared machine vary, and the printed figure says so.

use std::collections::BTreeMap;
use std::time::Duration;

use contract::loadgen::{Mode, Pattern};
use contract::EngineKind;
use testbed::config::TestbedConfig;
use testbed::run::attach::{self, LoadOptions, REPLY_TIMEOUT_MS};
use testbed::run::session::{Run, StartOptions, DEFAULT_READY_TIMEOUT};

use crate::matrix::{Bench, Half, Plan};
use crate::Setting;

/// Messages of each calibration run.
const CALIBRATION_MESSAGES: u64 = 2_000;
/// Fixed cost of one load-generator run: its start, connections, teardown.
const PER_RUN: Duration = Duration::from_millis(700);
/// Fixed cost of starting and stopping an engine (EAL, the port).
const PER_ENGINE_START: Duration = Duration::from_secs(4);
/// Fixed cost of building and removing a testbed.
const PER_TESTBED: Duration = Duration::from_secs(5);

/// Which loop a calibrated rate is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Loop {
    /// Persistent connections, closed loop.
    Closed,
    /// A new connection per message.
    Short,
}

impl Loop {
    /// The loop a bench test runs at (the open loop is priced from the
    /// closed one).
    #[must_use]
    pub fn of_test(test: &str) -> Self {
        if test == "short" {
            Self::Short
        } else {
            Self::Closed
        }
    }
}

/// Calibrated rates, messages/s, by engine, testbed, loop and connection
/// count.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    rates: BTreeMap<(EngineKind, Setting, Loop, u32), f64>,
    /// How long the calibration itself took.
    pub took: Duration,
}

impl Calibration {
    /// The calibrated rate at `connections`: exact where measured, else
    /// interpolated (log-log) between the fewest and most connections.
    #[must_use]
    pub fn rate(
        &self,
        engine: EngineKind,
        setting: Setting,
        of: Loop,
        connections: u32,
    ) -> Option<f64> {
        let measured: Vec<(u32, f64)> = self
            .rates
            .iter()
            .filter(|((e, s, l, _), _)| *e == engine && *s == setting && *l == of)
            .map(|((_, _, _, n), r)| (*n, *r))
            .collect();
        let (lo, hi) = (measured.first()?, measured.last()?);
        if connections <= lo.0 || lo.0 == hi.0 {
            return Some(lo.1);
        }
        if connections >= hi.0 {
            return Some(hi.1);
        }
        let t = (f64::from(connections).ln() - f64::from(lo.0).ln())
            / (f64::from(hi.0).ln() - f64::from(lo.0).ln());
        Some((lo.1.ln() + t * (hi.1.ln() - lo.1.ln())).exp())
    }

    /// One line per calibrated rate, for the user.
    #[must_use]
    pub fn describe(&self) -> String {
        self.rates
            .iter()
            .map(|((e, s, l, n), r)| {
                let what = match l {
                    Loop::Closed => "",
                    Loop::Short => " short",
                };
                format!("{e} {}{what} {n} conn. {r:.0}/s", s.as_str())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs the calibration: on each testbed of `settings`, each engine of
/// `engines`, a closed loop of [`CALIBRATION_MESSAGES`] at the fewest and
/// the most connections of its half. An engine that does not start is left
/// out (the matrix will say why); `say` gets progress lines.
pub fn calibrate(
    plan: &Plan,
    testbeds: &[(Setting, TestbedConfig)],
    engines: &[EngineKind],
    interrupted: &std::sync::atomic::AtomicBool,
    say: &mut dyn FnMut(&str),
) -> Calibration {
    let started = std::time::Instant::now();
    let mut calibration = Calibration::default();
    for (setting, config) in testbeds {
        let half = plan.half(*setting);
        let counts = [
            half.connections.iter().copied().min().unwrap_or(1),
            half.connections.iter().copied().max().unwrap_or(1),
        ];
        for &engine in engines {
            if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
                return calibration;
            }
            let options = StartOptions {
                engine,
                busy_poll: plan.busy_poll,
                bin_dir: plan.bin_dir.clone(),
                clean_leftovers: true,
                ready_timeout: DEFAULT_READY_TIMEOUT,
                pmd: plan.pmd.clone(),
                rto_min_ms: None,
                client: calibration_client(&plan.pmd).unwrap_or(contract::ClientStack::Kernel),
            };
            let Ok(run) = Run::start(config.clone(), &options, &mut |_| {}) else {
                say(&format!(
                    "calibration: the {engine} engine did not start on the {} testbed",
                    setting.as_str()
                ));
                continue;
            };
            let loops: &[Loop] = if half.tests.contains(&"short") {
                &[Loop::Closed, Loop::Short]
            } else {
                &[Loop::Closed]
            };
            for (&of, connections) in loops
                .iter()
                .flat_map(|l| counts.iter().map(move |&n| (l, n)))
            {
                let load = LoadOptions {
                    connections,
                    loadgen_busy_poll: plan.busy_poll,
                    mode: Mode::Closed,
                    rate: None,
                    pattern: match of {
                        Loop::Closed => Pattern::Persistent,
                        Loop::Short => Pattern::Short,
                    },
                    requests_per_connection: 1,
                    seed: 1,
                    min_size: 512,
                    max_size: 1024,
                    warmup: 200,
                    timeout_ms: REPLY_TIMEOUT_MS,
                    client: calibration_client(&plan.pmd),
                    client_pmd: contract::Pmd::AfXdp,
                };
                let attached = attach::attach(
                    config,
                    run.state(),
                    &plan.bin_dir,
                    CALIBRATION_MESSAGES,
                    &load,
                    interrupted,
                    Some(&mut |_| {}),
                );
                if let Ok(a) = attached {
                    if a.row.messages_per_s > 0.0 {
                        calibration
                            .rates
                            .insert((engine, *setting, of, connections), a.row.messages_per_s);
                    }
                }
            }
            let _ = run.stop();
        }
    }
    calibration.took = started.elapsed();
    calibration
}

/// The time the runs `bench` still lacks will take at `calibration`'s
/// rates.
#[must_use]
pub fn estimate(
    bench: &Bench<'_>,
    plan: &Plan,
    calibration: &Calibration,
    settings: &[Setting],
    engines: &[EngineKind],
    peers: &[&str],
) -> Duration {
    let mut total = Duration::ZERO;
    let warmup = plan.warmup;
    let seconds = |messages: u64, rate: f64| {
        #[allow(clippy::cast_precision_loss)]
        Duration::from_secs_f64(messages as f64 / rate.max(1.0))
    };
    for &setting in settings {
        let half: &Half = plan.half(setting);
        let mut any = false;
        for &engine in engines {
            let missing = bench.missing_keys(engine.as_str(), setting);
            if missing.is_empty() {
                continue;
            }
            any = true;
            total += PER_ENGINE_START * u32::try_from(half.rto_min_ms.len()).unwrap_or(1);
            for (key, runs) in missing {
                let of = Loop::of_test(&key.test);
                let rate = calibration
                    .rate(engine, setting, of, key.connections)
                    .or_else(|| calibration.rate(EngineKind::Kernel, setting, of, key.connections))
                    .unwrap_or(500.0);
                let rate = if key.test == "open" {
                    rate * plan.open_fraction
                } else {
                    rate
                };
                total += (seconds(key.packets + warmup, rate) + PER_RUN) * runs;
            }
        }
        let peer_rate = calibration
            .rate(EngineKind::Kernel, setting, Loop::Closed, 1)
            .unwrap_or(500.0);
        for &peer in peers {
            for (key, runs) in bench.missing_keys(peer, setting) {
                any = true;
                let run = match peer {
                    "iperf3" => Duration::from_secs(2),
                    _ if key.test == "under-load" => {
                        seconds(key.packets, peer_rate * plan.open_fraction) + PER_RUN
                    }
                    _ => seconds(key.packets, peer_rate) + PER_RUN,
                };
                total += run * runs;
            }
        }
        if any {
            total += PER_TESTBED;
        }
    }
    total
}

/// `1 h 02 min`, `14 min 30 s`, `45 s`.
#[must_use]
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// The load generator's stack the calibration must run on: the DPDK
/// client for a memif pair (its only other end), else none in particular.
fn calibration_client(pmd: &contract::Pmd) -> Option<contract::ClientStack> {
    (*pmd == contract::Pmd::Memif).then_some(contract::ClientStack::Dpdk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_interpolate_between_the_calibrated_counts() {
        let mut c = Calibration::default();
        let (k, off, closed) = (EngineKind::Kernel, Setting::Off, Loop::Closed);
        c.rates.insert((k, off, closed, 1), 1_000.0);
        c.rates.insert((k, off, closed, 1024), 32_000.0);
        c.rates.insert((k, off, Loop::Short, 1), 300.0);
        assert_eq!(c.rate(k, off, closed, 1), Some(1_000.0));
        assert_eq!(c.rate(k, off, closed, 4096), Some(32_000.0));
        // 32 connections: halfway on the log scale, so the geometric mean.
        let mid = c.rate(k, off, closed, 32).unwrap();
        assert!((mid - 5_656.85).abs() < 1.0, "{mid}");
        assert_eq!(c.rate(EngineKind::Dpdk, off, closed, 1), None);
        // Short connections are priced at their own rate.
        assert_eq!(c.rate(k, off, Loop::of_test("short"), 64), Some(300.0));
        assert_eq!(human(Duration::from_secs(3725)), "1 h 02 min");
        assert_eq!(human(Duration::from_secs(870)), "14 min 30 s");
    }
}
