//! `loadgen`: see `loadgen --help` for the flags, the exit codes and the
//! result JSON.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use loadgen::config::{Args, Validate};
use loadgen::driver::Driver;
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
    // 4. The client's stack.
    let stack = KernelStack::new(cfg.connect, cfg.busy_poll).map_err(LoadgenError::Stack)?;
    // 5. Claim the loadgen slot (Starting until the warm-up is done).
    let telemetry: Box<dyn Telemetry> = match &cfg.shm {
        Some(path) => Box::new(ShmTelemetry::claim(
            path,
            cfg.pacing.mode().slot_kind(),
            cfg.core,
            stack.measured(telemetry::measured(!stack.reports_readiness())),
        )?),
        None => Box::new(NoTelemetry),
    };
    // 6. Connect, warm up, measure.
    let driver = Driver::new(cfg, stack, telemetry, stop)?;
    Ok(driver.run())
}
