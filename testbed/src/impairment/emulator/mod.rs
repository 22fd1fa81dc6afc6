//! The userspace link emulator: delay and loss where the kernel has no netem.
//!
//! It runs in NS2 between two interfaces: `a`, whose peer is a bridge port
//! (the NS1 side), and `b`, NS2's end of NS3's veth. Each interface has an
//! AF_PACKET socket with a TPACKET_V2 receive ring ([`ring::PacketRing`]),
//! and each direction is a FIFO: a frame's release time is the kernel's
//! receive timestamp of that frame plus the delay (plus jitter, never earlier
//! than the previous frame's release, so order holds). Because the deadline
//! counts from the kernel's timestamp, the emulator's own wake-up latency is
//! absorbed into the delay instead of added to it, as long as it is shorter
//! than the delay.
//!
//! Waiting: with nothing queued it blocks in ppoll(2) (both modes; `poll`
//! mode first spins for [`POLL_IDLE_NS`] after the last frame). With frames
//! queued it sleeps until shortly before the head's release time, then spins
//! the last [`SPIN_MARGIN_NS`].
//!
//! Counters are written every 100 ms, atomically (write + rename), to a JSON
//! file that `supervisor net status` reads:
//!
//! ```json
//! {"pid":4242,"mode":"blocking","delay_us":100,"jitter_us":0,"loss_percent":1.0,
//!  "direction":"from-ns3","core":0,"updated_unix_ms":1764300000000,
//!  "to_ns3":{"frames_in":10,"frames_out":10,"dropped":0,"ring_drops":0,"truncated":0,"send_errors":0,"csum_not_ready":0},
//!  "from_ns3":{"frames_in":10,"frames_out":9,"dropped":1,"ring_drops":0,"truncated":0,"send_errors":0,"csum_not_ready":0}}
//! ```

pub mod ring;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::EmulatorMode;
use ring::PacketRing;

/// In poll mode, how long the emulator keeps spinning after the last frame
/// before it blocks.
pub const POLL_IDLE_NS: i64 = 200_000_000;
/// With a frame queued, how long before its release time a sleeping
/// emulator wakes up and starts spinning.
pub const SPIN_MARGIN_NS: i64 = 20_000;
/// How often counters are published.
pub const STATS_INTERVAL_NS: i64 = 100_000_000;
/// Slots per ring.
const RING_FRAMES: usize = 1024;

pub use contract::emulator::EmulatorArgs;

/// Why the emulator stopped.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Bad arguments.
    #[error("emulator arguments: {0}")]
    Args(String),
    /// The packet socket or ring could not be set up.
    #[error("open packet ring on {iface}: {source} (the emulator needs root and must run in the namespace holding {iface})")]
    OpenRing {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    /// Pinning failed.
    #[error("pin emulator to core {core}: {source}")]
    Pin { core: usize, source: nix::Error },
    /// Counters could not be published.
    #[error("write stats file {path}: {source}")]
    Stats {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Waiting for frames failed.
    #[error("ppoll: {0}")]
    Poll(std::io::Error),
    /// Signal handler registration failed.
    #[error("install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Counters of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirStats {
    /// Frames taken from the ring.
    pub frames_in: u64,
    /// Frames forwarded.
    pub frames_out: u64,
    /// Frames dropped by the configured loss.
    pub dropped: u64,
    /// Frames the kernel dropped because the ring was full.
    pub ring_drops: u64,
    /// Frames longer than a ring slot (dropped).
    pub truncated: u64,
    /// Frames the kernel refused to send.
    pub send_errors: u64,
    /// Frames whose checksum was left to an offload (forwarded as they are;
    /// nonzero means an interface still has tx checksumming on).
    #[serde(default)]
    pub csum_not_ready: u64,
}

/// The stats file's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmulatorStats {
    pub pid: u32,
    pub mode: String,
    pub delay_us: u32,
    pub jitter_us: u32,
    pub loss_percent: f64,
    pub direction: String,
    pub core: Option<usize>,
    pub updated_unix_ms: i64,
    /// Frames from NS1 toward NS3 (a → b).
    pub to_ns3: DirStats,
    /// Frames from NS3 toward NS1 (b → a).
    pub from_ns3: DirStats,
}

impl EmulatorStats {
    /// Reads a stats file written by a running emulator.
    pub fn read(path: &Path) -> std::io::Result<EmulatorStats> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}

fn realtime_ns() -> i64 {
    // The ring timestamps are CLOCK_REALTIME.
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME) {
        Ok(ts) => ts.tv_sec() * 1_000_000_000 + ts.tv_nsec(),
        Err(_) => 0,
    }
}

/// One direction: frames received on `rx` leave through the other ring.
struct Lane {
    impaired: bool,
    /// Release time of the head frame, computed once when it became head.
    head_release: Option<i64>,
    /// Release time of the previous frame: no frame leaves before it.
    last_release: i64,
    stats: DirStats,
}

struct Emulator {
    rings: [PacketRing; 2],
    lanes: [Lane; 2],
    delay_ns: i64,
    jitter_ns: i64,
    loss: f64,
    rng: SmallRng,
}

impl Emulator {
    /// Forwards every due frame of lane `i` (ring `i` → ring `1-i`);
    /// returns how many frames were handled and the next release time.
    fn pump(&mut self, i: usize, now: i64) -> (usize, Option<i64>) {
        let mut handled = 0;
        // Bounded: at most one pass over the ring per call.
        for _ in 0..RING_FRAMES {
            let (rx, tx) = if i == 0 {
                let [a, b] = &mut self.rings;
                (a, &*b)
            } else {
                let [a, b] = &mut self.rings;
                (b, &*a)
            };
            let lane = &mut self.lanes[i];
            let Some(frame) = rx.peek() else {
                return (handled, None);
            };
            if lane.impaired {
                let release = *lane.head_release.get_or_insert_with(|| {
                    // A timestamp from the future or the far past (clock
                    // step) is replaced by now.
                    let ts = if frame.rx_ns > now || now - frame.rx_ns > 1_000_000_000 {
                        now
                    } else {
                        frame.rx_ns
                    };
                    let jitter = if self.jitter_ns > 0 {
                        self.rng.gen_range(-self.jitter_ns..=self.jitter_ns)
                    } else {
                        0
                    };
                    (ts + self.delay_ns + jitter).max(lane.last_release)
                });
                if release > now {
                    return (handled, Some(release));
                }
                lane.last_release = release;
            }
            lane.stats.frames_in += 1;
            if frame.csum_not_ready {
                lane.stats.csum_not_ready += 1;
            }
            if frame.truncated {
                lane.stats.truncated += 1;
            } else if lane.impaired && self.loss > 0.0 && self.rng.gen::<f64>() * 100.0 < self.loss
            {
                lane.stats.dropped += 1;
            } else if tx.send(frame.data).is_ok() {
                lane.stats.frames_out += 1;
            } else {
                lane.stats.send_errors += 1;
            }
            lane.head_release = None;
            rx.release();
            handled += 1;
        }
        (handled, None)
    }
}

fn write_stats(path: &Path, stats: &EmulatorStats) -> Result<(), EmulatorError> {
    let err = |source| EmulatorError::Stats {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec(stats).map_err(|e| err(std::io::Error::other(e)))?;
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(&body).map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

/// Runs the emulator until SIGTERM or SIGINT.
pub fn run(args: &EmulatorArgs) -> Result<(), EmulatorError> {
    if !args.loss_percent.is_finite() || !(0.0..=100.0).contains(&args.loss_percent) {
        return Err(EmulatorError::Args(format!(
            "--loss-percent {} must be within 0..=100",
            args.loss_percent
        )));
    }
    if args.jitter_us > args.delay_us {
        return Err(EmulatorError::Args(
            "--jitter-us must not exceed --delay-us".into(),
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(EmulatorError::Signals)?;
    }
    if let Some(core) = args.core {
        let mut set = nix::sched::CpuSet::new();
        set.set(core)
            .map_err(|source| EmulatorError::Pin { core, source })?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
            .map_err(|source| EmulatorError::Pin { core, source })?;
    }
    // Timer slack (50 µs by default) would be added to every timed sleep.
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer; no pointers involved.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }

    // A slot holds the tpacket header (≤ 80 bytes), the Ethernet header and
    // VLAN tag, and an MTU-sized payload.
    let frame_size = (args.mtu as usize + 18 + 128).next_power_of_two().max(2048);
    let open = |iface: &str| {
        PacketRing::open(iface, frame_size, RING_FRAMES).map_err(|source| EmulatorError::OpenRing {
            iface: iface.to_string(),
            source,
        })
    };
    let ra = open(&args.a)?;
    let rb = open(&args.b)?;
    let seed = if args.seed == 0 {
        u64::try_from(realtime_ns()).unwrap_or(1) ^ u64::from(std::process::id())
    } else {
        args.seed
    };
    let mut emu = Emulator {
        rings: [ra, rb],
        lanes: [
            Lane {
                impaired: args.direction.impairs_to_ns3(),
                head_release: None,
                last_release: 0,
                stats: DirStats::default(),
            },
            Lane {
                impaired: args.direction.impairs_from_ns3(),
                head_release: None,
                last_release: 0,
                stats: DirStats::default(),
            },
        ],
        delay_ns: i64::from(args.delay_us) * 1000,
        jitter_ns: i64::from(args.jitter_us) * 1000,
        loss: args.loss_percent,
        rng: SmallRng::seed_from_u64(seed),
    };
    let mut snapshot = EmulatorStats {
        pid: std::process::id(),
        mode: args.mode.as_str().into(),
        delay_us: args.delay_us,
        jitter_us: args.jitter_us,
        loss_percent: args.loss_percent,
        direction: args.direction.as_str().into(),
        core: args.core,
        updated_unix_ms: realtime_ns() / 1_000_000,
        to_ns3: DirStats::default(),
        from_ns3: DirStats::default(),
    };
    // The first stats file tells `net up` the rings are bound.
    write_stats(&args.stats_file, &snapshot)?;

    let mut last_stats = realtime_ns();
    let mut last_activity = last_stats;
    while !stop.load(Ordering::Relaxed) {
        let now = realtime_ns();
        let (n0, due0) = emu.pump(0, now);
        let (n1, due1) = emu.pump(1, now);
        if now - last_stats >= STATS_INTERVAL_NS {
            last_stats = now;
            for i in 0..2 {
                emu.lanes[i].stats.ring_drops += emu.rings[i].take_kernel_drops();
            }
            snapshot.to_ns3 = emu.lanes[0].stats.clone();
            snapshot.from_ns3 = emu.lanes[1].stats.clone();
            snapshot.updated_unix_ms = now / 1_000_000;
            write_stats(&args.stats_file, &snapshot)?;
        }
        if n0 + n1 > 0 {
            last_activity = now;
            continue;
        }
        let due = match (due0, due1) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        if args.mode == EmulatorMode::Poll && now - last_activity < POLL_IDLE_NS {
            std::hint::spin_loop();
            continue;
        }
        // Sleep until a frame arrives on an idle lane, or shortly before
        // the next release. A lane holding a queued frame is left out of
        // the poll set: its ring reports readable as long as we hold a slot.
        let timeout_ns = match due {
            Some(t) => t - now - SPIN_MARGIN_NS,
            None => STATS_INTERVAL_NS,
        };
        if timeout_ns <= 0 {
            std::hint::spin_loop();
            continue;
        }
        let mut fds = Vec::with_capacity(2);
        if due0.is_none() {
            fds.push(libc::pollfd {
                fd: emu.rings[0].raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if due1.is_none() {
            fds.push(libc::pollfd {
                fd: emu.rings[1].raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let ts = libc::timespec {
            tv_sec: timeout_ns / 1_000_000_000,
            tv_nsec: timeout_ns % 1_000_000_000,
        };
        let nfds = libc::nfds_t::try_from(fds.len()).unwrap_or(0);
        // SAFETY: `fds` holds `nfds` initialised pollfd entries and `ts` is a
        // valid timespec; both outlive the call.
        let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), nfds, &ts, std::ptr::null()) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(EmulatorError::Poll(e));
            }
        }
    }
    snapshot.to_ns3 = emu.lanes[0].stats.clone();
    snapshot.from_ns3 = emu.lanes[1].stats.clone();
    snapshot.updated_unix_ms = realtime_ns() / 1_000_000;
    write_stats(&args.stats_file, &snapshot)
}
