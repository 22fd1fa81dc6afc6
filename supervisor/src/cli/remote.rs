//! The two-host commands: `serve --stdio` (the remote end), `run` with
//! `[hosts]` (the orchestrating end) and `doctor --host`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use testbed::config::{RoleHost, TestbedConfig};
use testbed::remote::control::{
    self, ControlError, ControlReply, ControlRequest, Owner, OwnerRecord, RemoteStats,
};
use testbed::remote::peer::RemoteError;
use testbed::remote::run::{HostRecord, TwoHostOptions, TwoHostRun};
use testbed::remote::serve::{self, ServeOptions};
use testbed::run::attach::{self, ResultRow};
use testbed::run::LifecycleError;
use testbed::state::StateFile;

use super::lifecycle::{
    AttachArgs, EngineOptions, RunArgs, StartArgs, StatsArgs, EXIT_CHILD_DIED, EXIT_INTERRUPTED,
    EXIT_LOSS, EXIT_OK,
};

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
    refuse_unsupported(&args.engine)?;
    let options = two_host_options(&args.engine);
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
            Ok(attached) => {
                let row = attached.row;
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
    let teardown = print_host_teardown(run.stop());
    if args.json {
        let doc = TwoHostDocument {
            rows,
            hosts,
            failure,
            teardown,
        };
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for h in &hosts {
            println!("{}", describe_host(h));
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

/// `start` over two hosts, in the foreground (or as `--detach`'s
/// background supervisor): both sessions, the engine on its host, then
/// `attach`, `stats` and `stop` are served through the run's control socket
/// until a signal, a lost host or the engine's end.
///
/// # Errors
/// A host could not be reached or the engine did not start (what was
/// created is removed).
pub fn start(args: &StartArgs, config: &TestbedConfig) -> Result<i32, LifecycleError> {
    let interrupted = super::lifecycle::interrupt_flag()?;
    refuse_unsupported(&args.engine)?;
    if let Ok(record) = control::live(config.name()) {
        return Err(LifecycleError::Control(ControlError::Failed(format!(
            "a two-host run of testbed `{}` is already owned by the supervisor pid {}; stop it first with `supervisor stop`",
            record.testbed, record.owner.pid
        ))));
    }
    let options = two_host_options(&args.engine);
    let mut run = TwoHostRun::start(config, &options, &mut |l| say(l))?;
    let record = OwnerRecord {
        testbed: config.name().to_owned(),
        owner: testbed::host::process::ProcessId::current(),
        engine: options.engine,
        server: std::net::SocketAddrV4::new(config.server_addr(), config.port()),
        hosts: run.hosts().to_vec(),
        impairment: run.impairment().to_owned(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let owner = match Owner::open(record) {
        Ok(owner) => owner,
        Err(e) => {
            print_host_teardown(run.stop());
            return Err(e.into());
        }
    };
    say("serving; `supervisor attach|stats` reach this run, Ctrl-C or `supervisor stop` ends it");
    let failure = owner.serve(&mut run, config, &interrupted);
    let code = match &failure {
        None => {
            say("stopping: each host removes what it created");
            EXIT_OK
        }
        Some(e @ RemoteError::EngineEnded { .. }) => {
            say(&format!("{e}; ending the run"));
            EXIT_CHILD_DIED
        }
        Some(e) => {
            say(&format!("{e}; ending the run"));
            EXIT_LOSS
        }
    };
    drop(owner);
    print_host_teardown(run.stop());
    Ok(code)
}

fn refuse_unsupported(engine: &EngineOptions) -> Result<(), RemoteError> {
    if engine.rto_min_ms.is_some() {
        return Err(RemoteError::Unsupported {
            option: "--rto-min-ms",
            why: "set rto_min on each host's route to the link (ip route change <subnet> dev <nic> rto_min <ms>ms) and run without it",
        });
    }
    Ok(())
}

fn two_host_options(engine: &EngineOptions) -> TwoHostOptions {
    TwoHostOptions {
        engine: engine.engine,
        busy_poll: engine.busy_poll,
        pmd: engine.pmd.clone(),
        ready_timeout: std::time::Duration::from_secs(engine.ready_timeout_s),
    }
}

fn print_host_teardown(
    outcomes: Vec<(String, Result<contract::serve::Cleanup, RemoteError>)>,
) -> Vec<(String, contract::serve::Cleanup)> {
    let mut teardown = Vec::new();
    for (host, outcome) in outcomes {
        match outcome {
            Ok(cleanup) => {
                for line in &cleanup.done {
                    say(&format!("{host}: {line}"));
                }
                for line in &cleanup.problems {
                    say(&format!("{host}: cleanup problem: {line}"));
                }
                teardown.push((host, cleanup));
            }
            // A host already lost has nothing to say; its `serve` cleaned
            // up when its input ended.
            Err(e) => say(&format!("closing {host}: {e}")),
        }
    }
    teardown
}

/// `attach` to a two-host run: each count's load generator runs on the
/// client host, through the run's owner.
///
/// # Errors
/// The owner cannot be reached, or refused.
pub fn attach(args: &AttachArgs, config: &TestbedConfig) -> Result<i32, LifecycleError> {
    let mut rows = Vec::new();
    let mut clean = true;
    for &packets in &args.packets {
        if !args.json {
            say(&format!(
                "attaching the load generator on the client host: {packets} messages"
            ));
        }
        let request = ControlRequest::Attach {
            packets,
            load: args.load.clone(),
        };
        let limit = args.load.bound(packets) + std::time::Duration::from_secs(180);
        let ControlReply::Row(row) = control::request(config.name(), &request, limit)? else {
            return Err(
                ControlError::Garbage("something else than a row to `attach`".into()).into(),
            );
        };
        clean &= row.clean;
        if !args.json {
            print!("{}", row.table);
        }
        rows.push(row.row);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    }
    Ok(if clean { EXIT_OK } else { EXIT_LOSS })
}

/// `stats` of a two-host run: the engine host's segment and both hosts.
///
/// # Errors
/// The owner cannot be reached, or refused.
pub fn stats(args: &StatsArgs, config: &TestbedConfig) -> Result<i32, LifecycleError> {
    let interrupted = if args.follow {
        super::lifecycle::interrupt_flag()?
    } else {
        Arc::new(AtomicBool::new(false))
    };
    let interval = std::time::Duration::from_millis(args.interval_ms.max(10));
    loop {
        let reply = control::request(
            config.name(),
            &ControlRequest::Stats {},
            std::time::Duration::from_secs(60),
        );
        let stats = match reply {
            Ok(ControlReply::Stats(stats)) => stats,
            Ok(_) => {
                return Err(
                    ControlError::Garbage("something else than stats to `stats`".into()).into(),
                )
            }
            // The run ended while following.
            Err(ControlError::NotRunning(_) | ControlError::OwnerGone { .. }) if args.follow => {
                return Ok(EXIT_OK)
            }
            Err(e) => return Err(e.into()),
        };
        if args.json {
            let text = if args.follow {
                serde_json::to_string(&stats)
            } else {
                serde_json::to_string_pretty(&stats)
            };
            println!("{}", text.unwrap_or_default());
        } else {
            print_remote_stats(&stats);
        }
        if !args.follow || interrupted.load(Ordering::Relaxed) {
            return Ok(EXIT_OK);
        }
        std::thread::sleep(interval);
    }
}

fn print_remote_stats(stats: &RemoteStats) {
    let r = &stats.record;
    println!(
        "testbed {} — two hosts, engine {} on {}, owner pid {}, impairment: {}",
        r.testbed, r.engine, r.server, r.owner.pid, r.impairment
    );
    for h in &r.hosts {
        println!("{}", describe_host(h));
    }
    for slot in &stats.segment.slots {
        let c = slot.counters.as_ref();
        let v = |get: fn(&shm_layout::CounterReadings) -> Option<u64>| {
            c.and_then(get)
                .map_or_else(|| "—".to_owned(), |x| x.to_string())
        };
        println!(
            "{:?} pid {} (on the engine host) [{:?}] {}: received {} sent {} conns {} rx/tx pkts {}/{}",
            slot.role,
            slot.info.pid,
            slot.info.state,
            slot.info.kind,
            v(|c| c.messages_received),
            v(|c| c.messages_sent),
            v(|c| c.connections_active),
            v(|c| c.rx_packets),
            v(|c| c.tx_packets),
        );
    }
}

fn describe_host(h: &HostRecord) -> String {
    format!(
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
    )
}

/// `stop` of a two-host run: SIGTERM to its owner, which ends both
/// sessions; a dead owner's record is removed (its hosts removed their
/// part when its sessions closed).
///
/// # Errors
/// The owner does not finish in time.
pub fn stop(config: &TestbedConfig, record: &OwnerRecord) -> Result<i32, LifecycleError> {
    if record.owner.is_alive() {
        say(&format!(
            "asking the supervisor (pid {}) that owns the two-host run to stop it",
            record.owner.pid
        ));
        super::lifecycle::terminate_owner(record.owner, config)?;
        say("stopped; each host removed what it created");
        return Ok(EXIT_OK);
    }
    say(&format!(
        "the supervisor (pid {}) that owned the two-host run is gone; its hosts removed their part when its SSH sessions closed; removing its record",
        record.owner.pid
    ));
    let dir = config.state_dir();
    dir.remove(StateFile::Control);
    dir.remove(StateFile::TwoHostRun);
    dir.remove(StateFile::SupervisorLog);
    dir.remove_if_empty();
    Ok(EXIT_OK)
}
