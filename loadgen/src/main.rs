//! `loadgen`: see `loadgen --help` for the flags, the exit codes and the
//! result JSON.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use contract::loadgen::slot_kind;
use contract::PmdKind;
use dpdk_stack::config::DpdkConfig;
use dpdk_stack::PortPlan;
use loadgen::config::{Args, Config, ConfigError, DpdkChoice, StackChoice, Validate};
use loadgen::driver::Driver;
use loadgen::stack::dpdk::{DpdkStack, DpdkStackConfig, IdlePolicy};
use loadgen::stack::kernel::KernelStack;
use loadgen::stack::Stack;
use loadgen::telemetry::{self, NoTelemetry, ShmTelemetry, Telemetry};
use loadgen::{pin_current_thread, LoadgenError};

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(result) => {
            println!("{}", result.to_json_line());
            if result.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(args: &Args) -> Result<loadgen::result::RunResult, LoadgenError> {
    // 1. Check every flag before touching anything.
    let cfg = args.validate(std::io::stderr().is_terminal())?;
    // 2. Pin, so sockets and buffers are made on the measuring core.
    if let Some(core) = cfg.core {
        pin_current_thread(core)?;
    }
    // 3. SIGINT/SIGTERM stop issuing; what is in flight is still resolved.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|source| {
            LoadgenError::Io {
                step: format!("install the handler of signal {signal}"),
                source,
            }
        })?;
    }
    // 4. The client's stack, then the slot and the run over it.
    match cfg.stack.clone() {
        StackChoice::Kernel => {
            let stack =
                KernelStack::new(cfg.connect, cfg.busy_poll).map_err(LoadgenError::Stack)?;
            drive(cfg, stack, stop)
        }
        StackChoice::Dpdk(choice) => run_dpdk(cfg, &choice, stop),
    }
}

/// Claims the loadgen slot (Starting until the warm-up is done), then
/// connects, warms up and measures over `stack`.
fn drive<S: Stack>(
    cfg: Config,
    stack: S,
    stop: Arc<AtomicBool>,
) -> Result<loadgen::result::RunResult, LoadgenError> {
    let pmd = stack.pmd().and_then(PmdKind::from_ini);
    let telemetry: Box<dyn Telemetry> = match &cfg.shm {
        Some(path) => Box::new(ShmTelemetry::claim(
            path,
            &slot_kind(cfg.pacing.mode(), cfg.stack.kind(), pmd),
            cfg.core,
            stack.measured(telemetry::measured(!stack.reports_readiness())),
        )?),
        None => Box::new(NoTelemetry),
    };
    let driver = Driver::new(cfg, stack, telemetry, stop)?;
    Ok(driver.run())
}

/// The run over DPDK + smoltcp: EAL, the pool and the port of
/// `choice.config` come up (EAL's lcore is `--core`), the run goes over
/// them, and everything is torn down after, EAL's runtime directory
/// included.
fn run_dpdk(
    cfg: Config,
    choice: &DpdkChoice,
    stop: Arc<AtomicBool>,
) -> Result<loadgen::result::RunResult, LoadgenError> {
    let config = DpdkConfig::load(&choice.config).map_err(|source| LoadgenError::DpdkConfig {
        path: choice.config.clone(),
        source,
    })?;
    let std::net::SocketAddr::V4(server) = cfg.connect else {
        // Refused by validation: the dpdk stack speaks IPv4 only.
        return Err(ConfigError::Ipv6WithDpdk(cfg.connect).into());
    };
    let mut stack_config = DpdkStackConfig::new(config.port0, server);
    stack_config.rto_min = choice.rto_min.map(Into::into);
    stack_config.idle = if choice.yield_idle {
        IdlePolicy::Yield
    } else {
        IdlePolicy::Spin
    };
    stack_config.pmd = Some(config.pmd.ini_name());
    let plan = PortPlan::from_config(&config, cfg.core);
    dpdk_stack::attach(&plan, |port| {
        eprintln!(
            "loadgen: dpdk ready: {} lcore {}, to {server}",
            port.describe(config.port0.addr, config.port0.prefix_len),
            port.lcore,
        );
        let stack = DpdkStack::new(port.device, port.mac, stack_config, dpdk_stack::run_seed());
        drive(cfg, stack, stop)
    })
    .map_err(LoadgenError::DpdkSetup)?
}
