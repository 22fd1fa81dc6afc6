//! A UDP ping-pong between NS1 and NS3 that measures what the testbed link
//! does: round-trip times and lost replies. The client and the echo server
//! are threads of the calling process that enter the namespaces with
//! setns(2), so the caller's own namespace is untouched.

use std::fs::File;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags, CpuSet};
use serde::Serialize;

use crate::config::TestbedConfig;

/// How to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Measured pings (after `warmup`).
    pub count: u32,
    /// Unmeasured pings first (ARP, caches).
    pub warmup: u32,
    /// A reply later than this counts as lost.
    pub timeout: Duration,
    /// Client and echo server spin on non-blocking sockets (yielding the
    /// core to anything else runnable on it, such as a blocking emulator)
    /// instead of sleeping in recv: no cross-core wake-up in the figures.
    pub busy_poll: bool,
    /// UDP payload bytes (≥ 8).
    pub payload: usize,
    /// Client core (None: the config's loadgen core).
    pub client_core: Option<usize>,
    /// Echo server core (None: the config's engine core).
    pub server_core: Option<usize>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            count: 10_000,
            warmup: 200,
            timeout: Duration::from_millis(5),
            busy_poll: true,
            payload: 64,
            client_core: None,
            server_core: None,
        }
    }
}

/// Round-trip percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct RttSummary {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// What a probe measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub sent: u32,
    pub received: u32,
    pub lost: u32,
    pub loss_percent: f64,
    pub rtt_us: Option<RttSummary>,
    pub busy_poll: bool,
    pub client_core: usize,
    pub server_core: usize,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A thread could not enter its namespace.
    #[error("enter namespace {ns}: {detail} (is the testbed up? `supervisor net up`)")]
    EnterNamespace { ns: String, detail: String },
    /// A socket step failed.
    #[error("{step}: {source}")]
    Socket {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A probe thread died.
    #[error("probe thread failed: {0}")]
    Thread(String),
}

/// Moves the calling thread into network namespace `ns` and onto `core`.
pub fn enter(ns: &str, core: Option<usize>) -> Result<(), ProbeError> {
    let fail = |detail: String| ProbeError::EnterNamespace {
        ns: ns.to_string(),
        detail,
    };
    let f = File::open(format!("/run/netns/{ns}")).map_err(|e| fail(e.to_string()))?;
    setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| fail(e.to_string()))?;
    if let Some(core) = core {
        let mut set = CpuSet::new();
        set.set(core)
            .map_err(|e| fail(format!("core {core}: {e}")))?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
            .map_err(|e| fail(format!("pin to core {core}: {e}")))?;
    }
    Ok(())
}

fn sock(step: &'static str) -> impl Fn(std::io::Error) -> ProbeError {
    move |source| ProbeError::Socket { step, source }
}

/// Runs the ping-pong; the echo server stops when it returns.
pub fn udp_pingpong(cfg: &TestbedConfig, opts: &ProbeOptions) -> Result<ProbeReport, ProbeError> {
    let client_core = opts.client_core.unwrap_or(cfg.cores().loadgen);
    let server_core = opts.server_core.unwrap_or(cfg.cores().engine);
    let server = SocketAddrV4::new(cfg.server_addr(), cfg.port());
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();

    let ns3 = cfg.server_ns();
    let stop2 = Arc::clone(&stop);
    let busy_poll = opts.busy_poll;
    let echo = std::thread::spawn(move || -> Result<(), ProbeError> {
        let setup = (|| -> Result<UdpSocket, ProbeError> {
            enter(&ns3, Some(server_core))?;
            let s = UdpSocket::bind(server).map_err(sock("bind echo socket in NS3"))?;
            if busy_poll {
                s.set_nonblocking(true)
                    .map_err(sock("set echo non-blocking"))?;
            } else {
                s.set_read_timeout(Some(Duration::from_millis(50)))
                    .map_err(sock("set echo timeout"))?;
            }
            Ok(s)
        })();
        let s = match setup {
            Ok(s) => {
                let _ = ready_tx.send(Ok(()));
                s
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return Err(e);
            }
        };
        let mut buf = [0u8; 2048];
        // Ends when the client sets `stop` (checked every 50 ms at least).
        while !stop2.load(Ordering::Relaxed) {
            match s.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let _ = s.send_to(&buf[..n], from);
                }
                Err(_) if busy_poll => std::thread::yield_now(),
                Err(_) => {}
            }
        }
        Ok(())
    });
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|e| ProbeError::Thread(format!("echo server not ready: {e}")));
    let result = match ready {
        Ok(Ok(())) => run_client(cfg, opts, client_core, server),
        Ok(Err(e)) => Err(ProbeError::Thread(e)),
        Err(e) => Err(e),
    };
    stop.store(true, Ordering::Relaxed);
    match echo.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(ProbeError::Thread("echo server panicked".into())),
    }
    let (sent, rtts) = result?;
    Ok(summarise(
        sent,
        rtts,
        opts.busy_poll,
        client_core,
        server_core,
    ))
}

fn run_client(
    cfg: &TestbedConfig,
    opts: &ProbeOptions,
    client_core: usize,
    server: SocketAddrV4,
) -> Result<(u32, Vec<u64>), ProbeError> {
    let ns1 = cfg.client_ns();
    let client = cfg.client_addr();
    let opts = opts.clone();
    let h = std::thread::spawn(move || -> Result<(u32, Vec<u64>), ProbeError> {
        enter(&ns1, Some(client_core))?;
        let s = UdpSocket::bind(SocketAddrV4::new(client, 0))
            .map_err(sock("bind client socket in NS1"))?;
        s.connect(SocketAddr::V4(server))
            .map_err(sock("connect client socket"))?;
        if opts.busy_poll {
            s.set_nonblocking(true).map_err(sock("set non-blocking"))?;
        } else {
            s.set_read_timeout(Some(opts.timeout))
                .map_err(sock("set client timeout"))?;
        }
        let mut msg = vec![0u8; opts.payload.max(8)];
        let mut buf = [0u8; 2048];
        let mut rtts = Vec::with_capacity(opts.count as usize);
        let total = u64::from(opts.warmup) + u64::from(opts.count);
        for seq in 0..total {
            msg[..8].copy_from_slice(&seq.to_be_bytes());
            let t0 = Instant::now();
            s.send(&msg).map_err(sock("send ping"))?;
            // Bounded by the timeout.
            loop {
                match s.recv(&mut buf) {
                    Ok(n) if n >= 8 && buf[..8] == seq.to_be_bytes() => {
                        if seq >= u64::from(opts.warmup) {
                            let ns = t0.elapsed().as_nanos();
                            rtts.push(u64::try_from(ns).unwrap_or(u64::MAX));
                        }
                        break;
                    }
                    Ok(_) => {} // a late reply to an earlier ping
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => {
                        return Err(ProbeError::Socket {
                            step: "receive pong",
                            source: e,
                        })
                    }
                }
                if t0.elapsed() >= opts.timeout {
                    break;
                }
                if opts.busy_poll {
                    std::thread::yield_now();
                }
            }
        }
        Ok((opts.count, rtts))
    });
    h.join()
        .map_err(|_| ProbeError::Thread("client panicked".into()))?
}

#[allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]
fn summarise(
    sent: u32,
    mut rtts: Vec<u64>,
    busy_poll: bool,
    client_core: usize,
    server_core: usize,
) -> ProbeReport {
    rtts.sort_unstable();
    let received = u32::try_from(rtts.len()).unwrap_or(u32::MAX);
    let lost = sent.saturating_sub(received);
    let us = |ns: u64| ns as f64 / 1000.0;
    let pct = |p: f64| {
        // Nearest rank, in integers: p is one of a few fixed fractions.
        let last = rtts.len() - 1;
        let i = (last * (p * 1000.0).round() as usize + 500) / 1000;
        us(rtts[i.min(last)])
    };
    let rtt_us = (!rtts.is_empty()).then(|| RttSummary {
        min: us(rtts[0]),
        p50: pct(0.5),
        p90: pct(0.9),
        p99: pct(0.99),
        max: us(rtts[rtts.len() - 1]),
        mean: us(rtts.iter().sum::<u64>()) / rtts.len() as f64,
    });
    ProbeReport {
        sent,
        received,
        lost,
        loss_percent: if sent == 0 {
            0.0
        } else {
            f64::from(lost) * 100.0 / f64::from(sent)
        },
        rtt_us,
        busy_poll,
        client_core,
        server_core,
    }
}
