//! `supervisor`: the testbed's command line.
//!
//! Exit codes: 0 success; 1 a step failed (the message says which and what
//! to do) or, for `attach`/`run`, messages were lost or mismatched; 2 bad
//! command line or configuration; 3 the engine died during the run; 130
//! stopped by SIGINT/SIGTERM (after cleaning up).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
mod cli;

use testbed::config::TestbedConfig;
use testbed::impairment::emulator;
use testbed::{doctor, net};

#[derive(Parser)]
#[command(name = "supervisor", about = "bypasslab testbed supervisor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, remove or show the testbed network.
    Net {
        #[command(subcommand)]
        action: NetAction,
    },
    /// Report what this host (or, with --host, another) can do and what each missing piece means.
    Doctor {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
        /// Ask another host (`ssh://[user@]host[:port]`) through its
        /// `supervisor serve`, with the SSH options of `[engine_host]`.
        #[arg(long)]
        host: Option<String>,
        /// Testbed configuration (for --host: its `[engine_host]` supervisor and ssh_options).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Start a run: network, hugepages, segment, the engine in NS3 on its core.
    Start(cli::lifecycle::StartArgs),
    /// Run the load generator in NS1 against the running engine, once per count.
    Attach(cli::lifecycle::AttachArgs),
    /// Print engine and load-generator statistics from the shared-memory segment.
    Stats(cli::lifecycle::StatsArgs),
    /// Stop the run and remove everything it created (also a crashed run's leftovers).
    Stop(cli::lifecycle::StopArgs),
    /// The original experiment in one command: start, attach per count, table, stop.
    Run(cli::lifecycle::RunArgs),
    /// Reserve, show or release 2 MB hugepages for running an engine by hand.
    Hugepages {
        #[command(subcommand)]
        action: cli::hugepages::HugepagesAction,
    },
    /// The remote end of a two-host run: JSON-lines requests on stdin, answers on stdout (run over SSH).
    Serve(cli::remote::ServeArgs),
    /// Show, bind or give back the PCI NICs DPDK serves on (what dpdk-devbind.py does, through sysfs).
    Nic {
        #[command(subcommand)]
        action: cli::nic::NicAction,
    },
    /// The benchmark matrix: every engine and peer, counts, impairment off/on; writes results.json, results.md and plots.
    Bench(bench::BenchArgs),
    /// The userspace link emulator (started by `net up` in NS2).
    #[command(hide = true)]
    Emulator(emulator::EmulatorArgs),
}

#[derive(clap::Args)]
struct Common {
    /// Testbed config (default: config/testbed.toml if present, else defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum NetAction {
    /// Create (or complete) the namespaces, links, bridge and impairment.
    Up(Common),
    /// Remove everything `up` created, and nothing else.
    Down(Common),
    /// Show what exists, the impairment in force and the observed loss.
    Status(Common),
    /// Measure RTT and loss between NS1 and NS3 with a UDP ping-pong.
    Probe {
        #[command(flatten)]
        common: Common,
        /// Measured pings.
        #[arg(long, default_value_t = 10_000)]
        count: u32,
        /// A reply later than this (microseconds) counts as lost.
        #[arg(long, default_value_t = 5_000)]
        timeout_us: u64,
        /// Sleep in recv instead of spinning.
        #[arg(long)]
        blocking: bool,
        /// Client core (default: cores.loadgen).
        #[arg(long)]
        client_core: Option<usize>,
        /// Echo server core (default: cores.engine).
        #[arg(long)]
        server_core: Option<usize>,
    },
}

fn load(common: &Common) -> Result<TestbedConfig, ExitCode> {
    TestbedConfig::load(common.config.as_deref()).map_err(|e| {
        eprintln!("supervisor: {e}");
        ExitCode::from(2)
    })
}

fn emit<T: serde::Serialize + std::fmt::Display>(json: bool, value: &T) {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("supervisor: serialise output: {e}"),
        }
    } else {
        print!("{value}");
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("supervisor: {e}");
    ExitCode::from(1)
}

fn run(cli: Cli) -> Result<(), ExitCode> {
    match cli.command {
        Command::Net { action } => match action {
            NetAction::Up(c) => {
                let cfg = load(&c)?;
                let st = net::up(&cfg).map_err(fail)?;
                emit(c.json, &st);
            }
            NetAction::Down(c) => {
                let cfg = load(&c)?;
                let r = net::down(&cfg).map_err(fail)?;
                if c.json {
                    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                } else if !r.had_state {
                    println!("testbed {}: nothing recorded, nothing removed", r.testbed);
                } else {
                    println!("testbed {}: removed {}", r.testbed, r.removed.join(", "));
                }
            }
            NetAction::Status(c) => {
                let cfg = load(&c)?;
                emit(c.json, &net::status(&cfg).map_err(fail)?);
            }
            NetAction::Probe {
                common,
                count,
                timeout_us,
                blocking,
                client_core,
                server_core,
            } => {
                let cfg = load(&common)?;
                let opts = net::probe::ProbeOptions {
                    count,
                    timeout: std::time::Duration::from_micros(timeout_us),
                    busy_poll: !blocking,
                    client_core,
                    server_core,
                    ..Default::default()
                };
                let r = net::probe::udp_pingpong(&cfg, &opts).map_err(fail)?;
                if common.json {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                } else {
                    let rtt = r.rtt_us.as_ref();
                    println!(
                        "sent {} received {} lost {} ({:.3} %) rtt us p50 {:.1} p90 {:.1} p99 {:.1}",
                        r.sent,
                        r.received,
                        r.lost,
                        r.loss_percent,
                        rtt.map_or(0.0, |x| x.p50),
                        rtt.map_or(0.0, |x| x.p90),
                        rtt.map_or(0.0, |x| x.p99)
                    );
                }
            }
        },
        Command::Doctor { json, host, config } => match host {
            None => emit(json, &doctor::run()),
            Some(url) => {
                let cfg = TestbedConfig::load(config.as_deref()).map_err(|e| {
                    eprintln!("supervisor: {e}");
                    ExitCode::from(2)
                })?;
                cli::remote::doctor(&url, &cfg, json).map_err(|e| match e {
                    cli::remote::DoctorHostError::Config(_) => {
                        eprintln!("supervisor: {e}");
                        ExitCode::from(2)
                    }
                    other => fail(other),
                })?;
            }
        },
        Command::Serve(args) => cli::remote::serve(&args).map_err(fail)?,
        Command::Emulator(args) => emulator::run(&args).map_err(fail)?,
        Command::Hugepages { action } => {
            return lifecycle_exit(cli::hugepages::run(&action).map_err(Into::into))
        }
        Command::Nic { action } => match cli::nic::run(&action) {
            Ok(0) => {}
            Ok(code) => return Err(ExitCode::from(u8::try_from(code).unwrap_or(1))),
            Err(e) if e.is_usage() => {
                eprintln!("supervisor: {e}");
                return Err(ExitCode::from(2));
            }
            Err(e) => return Err(fail(e)),
        },
        Command::Start(args) => return lifecycle_exit(cli::lifecycle::start(&args)),
        Command::Attach(args) => return lifecycle_exit(cli::lifecycle::attach(&args)),
        Command::Stats(args) => return lifecycle_exit(cli::lifecycle::stats(&args)),
        Command::Stop(args) => return lifecycle_exit(cli::lifecycle::stop(&args)),
        Command::Run(args) => {
            let config = match args.config() {
                Ok(config) => config,
                Err(e) => return lifecycle_exit(Err(e)),
            };
            if config.hosts().is_some() {
                let client = testbed::run::client::stack_of(&config, args.load.client);
                if let Err(e) = cli::lifecycle::refuse_on_two_hosts(&args.engine.pmd, client) {
                    return lifecycle_exit(Err(e));
                }
                return match cli::remote::run(&args, &config) {
                    Ok(code) => lifecycle_exit(Ok(code)),
                    Err(e) => Err(fail(e)),
                };
            }
            return lifecycle_exit(cli::lifecycle::run(&args));
        }
        Command::Bench(args) => match bench::run(&args) {
            Ok(0) => {}
            Ok(code) => return Err(ExitCode::from(u8::try_from(code).unwrap_or(1))),
            Err(e @ (bench::BenchError::BadOption { .. } | bench::BenchError::Resume(_))) => {
                eprintln!("supervisor: {e}");
                return Err(ExitCode::from(2));
            }
            Err(e) => return Err(fail(e)),
        },
    }
    Ok(())
}

/// Maps a lifecycle outcome to the process exit code (see
/// `lifecycle::commands` for the codes).
fn lifecycle_exit(outcome: Result<i32, testbed::run::LifecycleError>) -> Result<(), ExitCode> {
    match outcome {
        Ok(0) => Ok(()),
        Ok(code) => Err(ExitCode::from(u8::try_from(code).unwrap_or(1))),
        Err(testbed::run::LifecycleError::Interrupted) => Err(ExitCode::from(130)),
        Err(e) if e.is_usage() => {
            eprintln!("supervisor: {e}");
            Err(ExitCode::from(2))
        }
        Err(e) => Err(fail(e)),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}
