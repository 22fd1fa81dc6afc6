//! The two-host commands: `serve --stdio` (the remote end), `run` with
//! `[hosts]` (the orchestrating end) and `doctor --host`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use testbed::config::{RoleHost, TestbedConfig};
use testbed::remote::peer::RemoteError;
use testbed::remote::run::{HostRecord, TwoHostOptions, TwoHostRun};
use testbed::remote::serve::{self, ServeOptions};
use testbed::run::attach::{self, ResultRow};

use super::lifecycle::{RunArgs, EXIT_CHILD_DIED, EXIT_INTERRUPTED, EXIT_LOSS, EXIT_OK};

/// `supervisor serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Speak the protocol on standard input and output (the only
    /// transport: SSH carries it).
    #[arg(long, required = true)]
    pub stdio: bool,
}

/// `serve --stdio`: until the input ends; everything created is removed.
///
/// # Errors
/// The output broke or signals could not be handled.
pub fn serve(_args: &ServeArgs) -> Result<(), serve::ServeError> {
    let stdin = std::io::BufReader::new(std::io::stdin());
    serve::serve(
        stdin,
        std::io::stdout().lock(),
        ServeOptions {
            bin_dir: testbed::bins::default_dir(),
        },
    )
}

fn say(line: &str) {
    eprintln!("supervisor: {line}");
}

/// What `run --json` prints over two hosts.
#[derive(Debug, Serialize)]
pub struct TwoHostDocument {
    /// One row per message count.
    pub rows: Vec<ResultRow>,
    /// Each host.
    pub hosts: Vec<HostRecord>,
    /// The engine's end, or a host's loss, if either ended the run.
    pub failure: Option<String>,
    /// What each host's teardown did, by host.
    pub teardown: Vec<(String, contract::serve::Cleanup)>,
}

/// `run` over two hosts: the engine on its host, the load generator on
/// its own, each reached through its `serve`.
///
/// # Errors
/// A host could not be reached or a step failed before any row (what was
/// created is removed).
pub fn run(args: &RunArgs, config: &TestbedConfig) -> Result<i32, RemoteError> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, Arc::clone(&interrupted));
    }
    if args.engine.rto_min_ms.is_some() {
        return Err(RemoteError::Unsupported {
            option: "--rto-min-ms",
            why: "set rto_min on each host's route to the link (ip route change <subnet> dev <nic> rto_min <ms>ms) and run without it",
        });
    }
    let options = TwoHostOptions {
        engine: args.engine.engine,
        busy_poll: args.engine.busy_poll,
        pmd: args.engine.pmd.clone(),
        ready_timeout: std::time::Duration::from_secs(args.engine.ready_timeout_s),
    };
    let mut run = TwoHostRun::start(config, &options, &mut |l| say(l))?;
    let mut rows = Vec::new();
    let mut code = EXIT_OK;
    let mut failure = None;
    for &packets in &args.packets {
        say(&format!(
            "load generator: {packets} messages, {} loop",
            args.load.mode.name()
        ));
        match run.attach(config, packets, &args.load, &interrupted) {
            Ok(row) => {
                if !row.is_clean() {
                    code = EXIT_LOSS;
                }
                rows.push(row);
            }
            Err(RemoteError::Interrupted) => {
                say("signal received: stopping");
                code = EXIT_INTERRUPTED;
                break;
            }
            Err(e) => {
                say(&e.to_string());
                code = if matches!(e, RemoteError::EngineEnded { .. }) {
                    EXIT_CHILD_DIED
                } else {
                    EXIT_LOSS
                };
                failure = Some(e.to_string());
                break;
            }
        }
        if interrupted.load(Ordering::Relaxed) {
            code = EXIT_INTERRUPTED;
            break;
        }
    }
    let hosts = run.hosts().to_vec();
    let mut teardown = Vec::new();
    for (host, outcome) in run.stop() {
        match outcome {
            Ok(cleanup) => teardown.push((host, cleanup)),
            // A host already lost has nothing to say; its `serve` cleaned
            // up when its input ended.
            Err(e) => say(&format!("closing {host}: {e}")),
        }
    }
    if args.json {
        let doc = TwoHostDocument {
            rows,
            hosts,
            failure,
            teardown,
        };
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for (host, cleanup) in &teardown {
            for line in &cleanup.done {
                say(&format!("{host}: {line}"));
            }
            for line in &cleanup.problems {
                say(&format!("{host}: cleanup problem: {line}"));
            }
        }
        for h in &hosts {
            println!(
                "{} host: {} ({}, kernel {}, {} cores), core {}, iface {}{}",
                h.role,
                h.reached,
                h.hostname,
                h.kernel,
                h.cores,
                h.core,
                h.iface.as_deref().unwrap_or("-"),
                h.pmd
                    .as_deref()
                    .map(|p| format!(", pmd {p}"))
                    .unwrap_or_default()
            );
        }
        print!("{}", attach::format_table(&rows));
    }
    Ok(code)
}

/// `doctor --host ssh://…`: the host's own doctor, through its `serve`.
///
/// # Errors
/// The host cannot be reached, or the URL or configuration is bad.
pub fn doctor(url: &str, config: &TestbedConfig, json: bool) -> Result<(), DoctorHostError> {
    let configured = &config.role_hosts().engine;
    let target = url
        .parse::<testbed::remote::target::SshTarget>()
        .and_then(|t| t.with_options(&configured.ssh_options))?;
    let host = RoleHost {
        ssh: Some(target),
        ..configured.clone()
    };
    let (label, report) = testbed::remote::run::doctor(&host, config.name())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!("{label}:");
        for c in &report.checks {
            println!(
                "{:<8} {:<11} {} — {}",
                if c.ok { "ok" } else { "missing" },
                c.name,
                c.detail,
                c.consequence
            );
        }
        let engines: Vec<&str> = report.engines.iter().map(|e| e.as_str()).collect();
        println!("engines: {}", engines.join(", "));
    }
    Ok(())
}

/// `doctor --host` failed.
#[derive(Debug, thiserror::Error)]
pub enum DoctorHostError {
    /// The URL (or the configured SSH options) is bad.
    #[error("--host: {0}")]
    Config(#[from] testbed::remote::target::TargetError),
    /// The host could not be reached or refused.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}
