//! The engine a matrix's cells run against: on this host's testbed (a
//! local [`Run`]) or on the engine host of a two-host configuration (a
//! [`TwoHostRun`], its load generator on the client host). The matrix asks
//! the same of both: start, has it ended, one measured run, stop.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use shm_layout::{LocalHistogram, Role, Segment};
use testbed::config::TestbedConfig;
use testbed::remote::peer::RemoteError;
use testbed::remote::run::{HostRecord, TwoHostOptions, TwoHostRun};
use testbed::run::attach::{self, Attached, LoadOptions};
use testbed::run::session::{Run, StartOptions};
use testbed::run::LifecycleError;

/// A started engine.
pub enum EngineRun {
    /// On this host's testbed.
    Here(Box<Run>),
    /// On the engine host, the load generator on the client host.
    TwoHosts(Box<TwoHostRun>),
}

/// One measured run.
pub struct Measured {
    /// The row, the load generator's stdout and command line.
    pub attached: Attached,
    /// The load generator's histogram (this host's segment only; over two
    /// hosts the row's quantiles are what is known).
    pub histogram: Option<LocalHistogram>,
    /// The engine's command line (this host's run only).
    pub engine_command: Vec<String>,
}

/// Why a run gave no row.
pub enum Failure {
    /// A signal: the matrix stops.
    Interrupted,
    /// Anything else, as the cell records it.
    Failed(String),
}

impl EngineRun {
    /// Starts the engine of `options` where `config` places it.
    ///
    /// # Errors
    /// Why it did not start (what was created is removed).
    pub fn start(
        config: &TestbedConfig,
        options: &StartOptions,
        say: &mut dyn FnMut(&str),
    ) -> Result<Self, String> {
        if config.hosts().is_none() {
            return Run::start(config.clone(), options, say)
                .map(|run| Self::Here(Box::new(run)))
                .map_err(|e| e.to_string());
        }
        let two_hosts = TwoHostOptions {
            engine: options.engine,
            busy_poll: options.busy_poll,
            pmd: options.pmd.clone(),
            ready_timeout: options.ready_timeout,
        };
        TwoHostRun::start(config, &two_hosts, say)
            .map(|run| Self::TwoHosts(Box::new(run)))
            .map_err(|e| e.to_string())
    }

    /// How the engine (or its host's session) ended, if it did, as a
    /// sentence.
    pub fn ending(&mut self) -> Option<String> {
        match self {
            Self::Here(run) => run
                .engine_ending()
                .ok()
                .flatten()
                .map(|ending| format!("the {} engine {ending}", run.state().engine_kind)),
            Self::TwoHosts(run) => run.check().err().map(|e| e.to_string()),
        }
    }

    /// The impairment the engine host put in force (two hosts only: this
    /// host's testbed records its own).
    #[must_use]
    pub fn remote_impairment(&self) -> Option<&str> {
        match self {
            Self::Here(_) => None,
            Self::TwoHosts(run) => Some(run.impairment()),
        }
    }

    /// The hosts, as results record them (two hosts only).
    #[must_use]
    pub fn hosts(&self) -> &[HostRecord] {
        match self {
            Self::Here(_) => &[],
            Self::TwoHosts(run) => run.hosts(),
        }
    }

    /// Runs the load generator once with `packets` messages.
    /// `progress` gets the messages answered so far (this host's run).
    ///
    /// # Errors
    /// [`Failure`]: a signal, or why the run gave no row.
    pub fn measure(
        &mut self,
        config: &TestbedConfig,
        bin_dir: &Path,
        packets: u64,
        load: &LoadOptions,
        interrupted: &AtomicBool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Measured, Failure> {
        match self {
            Self::Here(run) => {
                let state = run.state().clone();
                let attached = attach::attach(
                    config,
                    &state,
                    bin_dir,
                    packets,
                    load,
                    interrupted,
                    Some(progress),
                )
                .map_err(|e| match e {
                    LifecycleError::Interrupted => Failure::Interrupted,
                    e => Failure::Failed(e.to_string()),
                })?;
                let histogram = state
                    .segment
                    .as_deref()
                    .and_then(|p| Segment::open(p).ok())
                    .map(|s| s.histogram(Role::Loadgen));
                Ok(Measured {
                    attached,
                    histogram,
                    engine_command: state.engine_command,
                })
            }
            Self::TwoHosts(run) => {
                let attached =
                    run.attach(config, packets, load, interrupted)
                        .map_err(|e| match e {
                            RemoteError::Interrupted => Failure::Interrupted,
                            e => Failure::Failed(e.to_string()),
                        })?;
                Ok(Measured {
                    attached,
                    histogram: None,
                    engine_command: Vec::new(),
                })
            }
        }
    }

    /// Stops the engine; each host removes what it created. Returns the
    /// problems met.
    #[must_use]
    pub fn stop(self) -> Vec<String> {
        match self {
            Self::Here(run) => run.stop().problems,
            Self::TwoHosts(run) => run
                .stop()
                .into_iter()
                .flat_map(|(host, outcome)| match outcome {
                    Ok(cleanup) => cleanup
                        .problems
                        .into_iter()
                        .map(|p| format!("{host}: {p}"))
                        .collect::<Vec<_>>(),
                    Err(e) => vec![format!("{host}: {e}")],
                })
                .collect(),
        }
    }
}
