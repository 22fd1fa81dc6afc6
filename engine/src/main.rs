//! `engine`: serves bypasslab's wire protocol with the backend chosen by
//! `--kind`, pinned to `--core`, publishing counters into the engine slot of
//! the `--shm` segment.
//!
//! Exit codes: 0 after a clean stop (SIGTERM or SIGINT), 1 when serving
//! failed (the port or F-Stack could not be brought up, a socket step
//! failed), 2 for usage or configuration errors (bad flags, a core that
//! does not exist, a backend not built in, a DPDK config.ini that cannot be
//! read or is invalid, a `--listen` or `--core` the bypass stack cannot
//! serve with, a segment that cannot be opened or whose engine slot is held
//! by a live process): [`EngineError::exit_code`]. On every exit after
//! serving started, one JSON line with the final counters is printed on
//! stdout (see
//! [`engine::report`]); the bound address is announced on stderr as
//! `engine: listening on ADDR (KIND, busy-poll|blocking)` once connections
//! are accepted, the mode being what the loop does.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use contract::engine::EngineArgs;
use contract::EngineKind;
use engine::backend::Backend;
use engine::context::{ServeContext, StatsSink};
use engine::dpdk::{DpdkBackend, DpdkOptions};
use engine::kernel::{KernelBackend, KernelConfig};
use engine::pin::pin_current_thread;
use engine::report::FinalReport;
use engine::shm_sink::{ProducerState, ShmSlot};
use engine::EngineError;
use shm_layout::{Counters, Measured};

fn main() -> ExitCode {
    let args = EngineArgs::parse();
    if args.list_kinds {
        println!("{}", engine::fstack::list_kinds_json());
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(report) => {
            if let Some(warning) = report.loss_warning() {
                eprintln!("{warning}");
            }
            println!("{}", report.to_json_line());
            ExitCode::SUCCESS
        }
        Err(Failure { error, report }) => {
            eprintln!("engine: {error}");
            if let Some(report) = report {
                if let Some(warning) = report.loss_warning() {
                    eprintln!("{warning}");
                }
                println!("{}", report.to_json_line());
            }
            ExitCode::from(error.exit_code())
        }
    }
}

/// An error, with the counters gathered so far if serving had started.
struct Failure {
    error: EngineError,
    report: Option<Box<FinalReport>>,
}

impl From<EngineError> for Failure {
    fn from(error: EngineError) -> Self {
        Self {
            error,
            report: None,
        }
    }
}

/// Everything a backend needs besides itself: set up in order, each step
/// failing with its own error before any connection is accepted.
struct Setup {
    stop: Arc<AtomicBool>,
    slot: Option<ShmSlot>,
}

fn run(args: &EngineArgs) -> Result<FinalReport, Failure> {
    // 1. Pin first, so every allocation and socket is made on the serving core.
    if let Some(core) = args.core {
        pin_current_thread(core)?;
    }
    // 2. SIGTERM and SIGINT only raise the stop flag; the loop checks it.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|source| {
            EngineError::Io {
                step: format!("install the handler of signal {signal}"),
                source,
            }
        })?;
    }
    // 3. Claim the engine slot (Starting) before the backend is set up.
    let slot = match &args.shm {
        Some(path) => Some(ShmSlot::claim(path, args.kind.as_str(), args.core)?),
        None => None,
    };
    let setup = Setup { stop, slot };

    // 4. The backend, set up then served.
    let result = serve_kind(args, &setup);

    // 5. The slot says how it ended.
    if let Some(slot) = &setup.slot {
        slot.set_state(if result.is_ok() {
            ProducerState::Finished
        } else {
            ProducerState::Failed
        });
    }
    result
}

/// Where a backend other than dpdk takes its minimum RTO from (`None`:
/// from `--rto-min-ms`).
fn rto_min_source(kind: EngineKind) -> Option<&'static str> {
    match kind {
        EngineKind::Kernel => Some("the route's rto_min (ip route ... rto_min)"),
        EngineKind::Fstack => Some("config.ini's [freebsd.sysctl] net.inet.tcp.rexmit_min"),
        EngineKind::Dpdk => None,
    }
}

/// One arm per backend: set it up (bind, start the port), serve it, report.
fn serve_kind(args: &EngineArgs, setup: &Setup) -> Result<FinalReport, Failure> {
    let kind = args.kind.as_str();
    if let Some(source) = args.rto_min_ms.and(rto_min_source(args.kind)) {
        return Err(EngineError::BadFlag {
            flag: "--rto-min-ms",
            problem: format!(
                "sets the smoltcp sockets' minimum (the dpdk backend); the {kind} backend's comes from {source}"
            ),
        }
        .into());
    }
    match args.kind {
        EngineKind::Kernel => {
            let mut config = KernelConfig::new(args.listen, args.busy_poll);
            config.max_connections = args.max_connections;
            config.listen_backlog = args.listen_backlog;
            config.drain = Duration::from_millis(args.drain_ms);
            let mut kernel = KernelBackend::bind(config)?;
            let listen = kernel.local_addr().to_string();
            let served = serve(&mut kernel, args, setup, &listen);
            let report = served
                .report(kind, args, listen)
                .with("refused_connections", kernel.refused())
                .with("so_busy_poll_failures", kernel.busy_poll_failures());
            finish(report, served.result)
        }
        EngineKind::Dpdk => {
            let mut options = DpdkOptions::from_args(args);
            options.max_connections = args.max_connections;
            options.listen_backlog = args.listen_backlog;
            options.rto_min = args
                .rto_min_ms
                .map(|ms| Duration::from_millis(u64::from(ms)));
            options.drain = Duration::from_millis(args.drain_ms);
            let mut dpdk = DpdkBackend::new(options)?;
            let listen = dpdk.listen_addr().to_string();
            let served = serve(&mut dpdk, args, setup, &listen);
            finish(served.report(kind, args, listen), served.result)
        }
        #[cfg(feature = "fstack")]
        EngineKind::Fstack => {
            let options = engine::fstack::FstackOptions::from_args(args);
            let mut fstack = engine::fstack::FstackBackend::new(options)?;
            let listen = fstack.listen_addr().to_string();
            let served = serve(&mut fstack, args, setup, &listen);
            finish(served.report(kind, args, listen), served.result)
        }
        #[cfg(not(feature = "fstack"))]
        EngineKind::Fstack => Err(EngineError::KindUnavailable {
            kind: "fstack",
            how_to_enable: engine::fstack::HOW_TO_ENABLE,
        }
        .into()),
    }
}

/// The report, as success or as the failure it accompanies.
fn finish(report: FinalReport, served: Result<(), EngineError>) -> Result<FinalReport, Failure> {
    match served {
        Ok(()) => Ok(report),
        Err(error) => Err(Failure {
            error,
            report: Some(Box::new(report)),
        }),
    }
}

/// How serving went: the final counters, which of them were measured,
/// whether the loop spun, and how it ended.
struct Served {
    counters: Counters,
    measured: Measured,
    busy_poll: bool,
    result: Result<(), EngineError>,
}

impl Served {
    fn report(&self, kind: &'static str, args: &EngineArgs, listen: String) -> FinalReport {
        FinalReport::new(
            kind,
            args,
            listen,
            &self.counters,
            self.measured,
            self.busy_poll,
        )
    }
}

/// Serves until stopped (the backend marks the slot Running once it
/// accepts connections).
fn serve(backend: &mut dyn Backend, args: &EngineArgs, setup: &Setup, listen: &str) -> Served {
    let sink: Box<dyn StatsSink> = match &setup.slot {
        Some(slot) => Box::new(slot.sink()),
        None => Box::new(NoSink),
    };
    // What the loop does, not what was asked: the bypass engines always
    // poll, whatever --busy-poll says.
    let busy_poll = backend.busy_polls();
    let mode = if busy_poll { "busy-poll" } else { "blocking" };
    let sink = Box::new(Announce {
        inner: sink,
        line: format!("engine: listening on {listen} ({}, {mode})", backend.name()),
    });
    let interval = Duration::from_millis(args.publish_interval_ms.max(1));
    let mut ctx = ServeContext::new(Arc::clone(&setup.stop), sink, interval);
    ctx.measured = backend.measured();
    ctx.publish_now();
    let result = backend.serve(&mut ctx);
    Served {
        counters: ctx.counters,
        measured: ctx.measured,
        busy_poll,
        result,
    }
}

/// Announces the address on stderr once the backend is ready, after the
/// slot says Running: whoever reads the line may connect at once.
struct Announce {
    inner: Box<dyn StatsSink>,
    line: String,
}

impl StatsSink for Announce {
    fn publish(&mut self, counters: &Counters, measured: Measured) {
        self.inner.publish(counters, measured);
    }

    fn ready(&mut self) {
        self.inner.ready();
        eprintln!("{}", self.line);
    }
}

/// Without `--shm` counters are only printed at exit.
struct NoSink;

impl StatsSink for NoSink {
    fn publish(&mut self, _counters: &Counters, _measured: Measured) {}
}
