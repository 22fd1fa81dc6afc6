//! The suite every bypass engine passes, for real: two network namespaces
//! joined by a veth pair, the engine owning the server end through
//! net_af_packet or net_af_xdp (EAL without hugepages), kernel TCP clients
//! in the other namespace. Every reply is checked; a client sending garbage
//! is closed while the first keeps working; more connections than listening
//! sockets are served at once; SIGTERM ends the engine with exit 0 and final
//! counters that account for every message and connection.
//!
//! Needs root (namespaces, EAL) and Debian's DPDK drivers; skipped, with a
//! message, without root. Everything created is removed by guards, also on
//! failure; every wait is bounded.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;
pub mod load;

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use protocol::encode_request;
use serde_json::Value;

const SERVER_IP: &str = "10.99.0.3";
const CLIENT_IP: &str = "10.99.0.1";
const PORT: u16 = 7000;
const MESSAGES: usize = 2000;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// More connections at once than the engine keeps listening sockets (64).
const CONCURRENT: usize = 150;

/// One engine at a time: both busy-poll, and the machine may have 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces and the veth pair between them; removed on drop.
struct Testbed {
    server_ns: String,
    client_ns: String,
    server_if: String,
}

impl Testbed {
    fn new(kind: &str, tag: &str) -> Self {
        let id = format!("{}k{}{tag}", &kind[..1], std::process::id());
        let bed = Self {
            server_ns: format!("{id}-s"),
            client_ns: format!("{id}-c"),
            server_if: format!("{id}s"),
        };
        let client_if = format!("{id}c");
        assert!(
            client_if.len() <= 15,
            "interface name too long: {client_if}"
        );
        // The guard exists before the first side effect.
        run("ip", &["netns", "add", &bed.server_ns]);
        run("ip", &["netns", "add", &bed.client_ns]);
        run(
            "ip",
            &[
                "link",
                "add",
                &bed.server_if,
                "type",
                "veth",
                "peer",
                "name",
                &client_if,
            ],
        );
        run(
            "ip",
            &["link", "set", &bed.server_if, "netns", &bed.server_ns],
        );
        run("ip", &["link", "set", &client_if, "netns", &bed.client_ns]);
        let (s, c) = (bed.server_ns.as_str(), bed.client_ns.as_str());
        run(
            "ip",
            &[
                "-n",
                c,
                "addr",
                "add",
                &format!("{CLIENT_IP}/24"),
                "dev",
                &client_if,
            ],
        );
        for (ns, dev) in [(s, bed.server_if.as_str()), (c, client_if.as_str())] {
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
            // Full checksums and MTU-sized frames on the wire: the
            // userspace stack neither completes partial checksums nor takes
            // GSO super-frames.
            run(
                "ip",
                &[
                    "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso",
                    "off", "gro", "off",
                ],
            );
        }
        bed
    }
}

impl Testbed {
    /// Drops `percent` of the frames leaving the server's namespace, on
    /// the client's side (nftables: this machine's kernel has no netem),
    /// as the experiment's impairment does, and counts the resets either
    /// side sends. Deleting the namespace removes the rules.
    fn lose_server_frames(&self, percent: u32) {
        let nft = |args: &[&str]| {
            let mut all = vec!["netns", "exec", self.client_ns.as_str(), "nft"];
            all.extend_from_slice(args);
            run("ip", &all);
        };
        nft(&["add", "table", "inet", "lossy"]);
        for counter in ["dropped", "rst_from_server", "rst_from_client"] {
            nft(&["add", "counter", "inet", "lossy", counter]);
        }
        for (chain, hook) in [("input", "input"), ("output", "output")] {
            let spec = format!("{{ type filter hook {hook} priority 0; policy accept; }}");
            nft(&["add", "chain", "inet", "lossy", chain, &spec]);
        }
        // Resets are counted before the loss, so a dropped one counts too.
        let rst = ["tcp", "flags", "&", "rst", "==", "rst", "counter", "name"];
        nft(&[
            &["add", "rule", "inet", "lossy", "input"],
            &rst[..],
            &["rst_from_server"],
        ]
        .concat());
        nft(&[
            &["add", "rule", "inet", "lossy", "output"],
            &rst[..],
            &["rst_from_client"],
        ]
        .concat());
        let percent = percent.to_string();
        nft(&[
            "add", "rule", "inet", "lossy", "input", "ip", "saddr", SERVER_IP, "numgen", "random",
            "mod", "100", "<", &percent, "counter", "name", "dropped", "drop",
        ]);
    }

    /// Also drops `percent` of the server's SYN-ACKs (after the link's own
    /// loss): a client's SYN then often needs its retransmission.
    fn lose_syn_acks(&self, percent: u32) {
        let percent = percent.to_string();
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.client_ns,
                "nft",
                "add",
                "rule",
                "inet",
                "lossy",
                "input",
                "ip",
                "saddr",
                SERVER_IP,
                "tcp",
                "flags",
                "&",
                "(syn|ack)",
                "==",
                "syn|ack",
                "numgen",
                "random",
                "mod",
                "100",
                "<",
                &percent,
                "counter",
                "name",
                "dropped",
                "drop",
            ],
        );
    }

    /// The packets counter `name` of [`Testbed::lose_server_frames`] has
    /// seen.
    fn counted(&self, name: &str) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client_ns,
                "nft",
                "list",
                "counter",
                "inet",
                "lossy",
            ])
            .arg(name)
            .output()
            .expect("nft list counter");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter {name}: {text}"))
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pair with it.
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The engine process in the server namespace; killed on drop if a test
/// failed before stopping it, and its EAL runtime directory removed.
struct Engine {
    child: Child,
    runtime_dir: PathBuf,
    /// The engine's `engine: listening on ...` line.
    listening: String,
    _config: TempFile,
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Engine {
    /// Starts engine `kind` on `pmd` with `extra` flags.
    fn start(bed: &Testbed, kind: &'static str, pmd: &str, extra: &[&str]) -> Self {
        let prefix = format!("{}-{pmd}", bed.server_ns);
        let config = TempFile(std::env::temp_dir().join(format!("{prefix}.ini")));
        let core = engine_core();
        // One file for both engines, as on the testbed: F-Stack's keys (no
        // TX batching delay, no idle sleep, the gateway it insists on) are
        // listed as unused by the dpdk engine.
        std::fs::write(
            &config.0,
            format!(
                "[dpdk]\nlcore_mask={:x}\nmemory=256\nno_huge=1\nfile_prefix={prefix}\n\
                 promiscuous=0\nport_list=0\npmd={pmd}\niface={}\npkt_tx_delay=0\n\
                 idle_sleep=0\n[port0]\naddr={SERVER_IP}\nnetmask=255.255.255.0\n\
                 broadcast=10.99.0.255\ngateway={CLIENT_IP}\n[freebsd.boot]\nhz=1000\n",
                1u64 << core,
                bed.server_if
            ),
        )
        .expect("write config.ini");
        let core = core.to_string();
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &bed.server_ns,
                env!("CARGO_BIN_EXE_engine"),
            ])
            .args([
                "--kind",
                kind,
                "--listen",
                &format!("0.0.0.0:{PORT}"),
                "--core",
                &core,
            ])
            .args(["--drain-ms", "300"])
            .args(extra)
            .arg("--dpdk-config")
            .arg(&config.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn engine");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("engine: listening on ") {
                    let _ = tx.send(line.clone());
                }
                eprintln!("[engine] {line}");
            }
        });
        let Ok(listening) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("engine ({pmd}) did not become ready");
        };
        Self {
            runtime_dir: PathBuf::from("/var/run/dpdk").join(&prefix),
            listening,
            _config: config,
            child,
        }
    }

    /// SIGTERM, then waits (bounded) for the exit and the final JSON line.
    fn stop(mut self) -> (ExitStatus, Value) {
        // `ip netns exec` execs the engine: the child is the engine itself.
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"));
        kill(pid, Signal::SIGTERM).expect("send SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait engine") {
                break status;
            }
            assert!(Instant::now() < deadline, "engine ignored SIGTERM");
            thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout piped")
            .read_to_string(&mut out)
            .expect("read stdout");
        let line = out.lines().last().unwrap_or_default();
        let json = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"));
        (status, json)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}

/// Core 1 when there are two, else 0.
fn engine_core() -> usize {
    usize::from(thread::available_parallelism().map_or(1, usize::from) > 1)
}

/// Runs `f` on a thread that has entered namespace `ns` (only that thread
/// moves: setns is per thread).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        setns(file, CloneFlags::CLONE_NEWNET).expect("setns");
        // Off the engine's busy-polling core (when there is another), or
        // every round trip waits for a scheduler tick.
        if let Some(core) = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.id != engine_core())
        {
            core_affinity::set_for_current(core);
        }
        f()
    })
    .join()
    .expect("client thread")
}

/// xorshift64: request sizes without another dependency.
struct Rng(u64);

impl Rng {
    fn size(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        512 + u32::try_from(self.0 % 513).expect("fits")
    }
}

fn connect() -> TcpStream {
    let addr: SocketAddr = format!("{SERVER_IP}:{PORT}").parse().expect("addr");
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the engine");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// Sends `count` requests one at a time, checking each reply; returns the
/// round-trip times.
fn ping_pong(stream: &mut TcpStream, rng: &mut Rng, count: usize) -> Vec<Duration> {
    let mut rtts = Vec::with_capacity(count);
    let mut wire = Vec::with_capacity(1024);
    for i in 0..count {
        let len = rng.size();
        wire.clear();
        encode_request(len, i as u64, &mut wire).expect("legal length");
        let start = Instant::now();
        stream.write_all(&wire).expect("send request");
        let reply = spin_read_reply(stream, start + IO_TIMEOUT);
        rtts.push(start.elapsed());
        assert_eq!(reply, len, "reply {i}");
    }
    rtts
}

/// Reads one 4-byte reply by spinning on a non-blocking socket, as a
/// busy-polling load generator does: the measured round trip then holds no
/// scheduler wake-up of the client.
fn spin_read_reply(stream: &mut TcpStream, deadline: Instant) -> u32 {
    let mut reply = [0u8; 4];
    let mut filled = 0;
    stream.set_nonblocking(true).expect("nonblocking");
    while filled < reply.len() {
        match stream.read(&mut reply[filled..]) {
            Ok(0) => panic!("engine closed the connection"),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no reply within {IO_TIMEOUT:?}");
                std::hint::spin_loop();
            }
            Err(e) => panic!("read reply: {e}"),
        }
    }
    stream.set_nonblocking(false).expect("blocking");
    u32::from_be_bytes(reply)
}

/// Opens `CONCURRENT` connections, all open at once, and interleaves
/// requests on them: the engine must keep enough sockets listening.
fn many_connections(rng: &mut Rng) {
    let mut streams: Vec<TcpStream> = (0..CONCURRENT).map(|_| connect()).collect();
    for round in 0..4 {
        let mut wire = Vec::new();
        let lens: Vec<u32> = streams.iter().map(|_| rng.size()).collect();
        for (stream, &len) in streams.iter_mut().zip(&lens) {
            wire.clear();
            encode_request(len, round, &mut wire).expect("legal length");
            stream.write_all(&wire).expect("send request");
        }
        for (stream, &len) in streams.iter_mut().zip(&lens) {
            let mut reply = [0u8; 4];
            stream.read_exact(&mut reply).expect("read reply");
            assert_eq!(u32::from_be_bytes(reply), len);
        }
    }
    streams.clear();
}

/// A connection that sends garbage must be closed by the engine: EOF or a
/// reset within `IO_TIMEOUT`, not a read that merely timed out.
fn garbage_is_closed() {
    let mut bad = connect();
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send garbage");
    assert!(
        common::closed_within(&mut bad, IO_TIMEOUT).is_some(),
        "garbage connection left open"
    );
}

/// The whole suite against engine `kind` (`dpdk` or `fstack`) on `pmd`
/// (`af_packet` or `af_xdp`).
pub fn exercise(kind: &'static str, pmd: &'static str) {
    if !is_root() {
        eprintln!("skipped: namespaces and EAL need root");
        return;
    }
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let bed = Testbed::new(kind, &pmd[3..4]);
    let engine = Engine::start(&bed, kind, pmd, &[]);
    // Started without --busy-poll: the line says what the loop does.
    assert!(
        engine.listening.contains(&format!("({kind}, busy-poll)")),
        "{}",
        engine.listening
    );

    let rtts = in_netns(&bed.client_ns, || {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut good = connect();
        let mut rtts = ping_pong(&mut good, &mut rng, MESSAGES / 2);
        garbage_is_closed();
        rtts.extend(ping_pong(&mut good, &mut rng, MESSAGES - MESSAGES / 2));
        drop(good);
        many_connections(&mut rng);
        rtts
    });
    let mut sorted = rtts.clone();
    sorted.sort();
    let mean = rtts.iter().sum::<Duration>() / u32::try_from(rtts.len()).expect("fits");
    eprintln!(
        "{pmd}: {} round trips, mean {:?}, p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        rtts.len(),
        mean,
        sorted[sorted.len() / 2],
        sorted[sorted.len() * 9 / 10],
        sorted[sorted.len() * 99 / 100],
        sorted[sorted.len() - 1],
    );

    let runtime_dir = engine.runtime_dir.clone();
    let (status, report) = engine.stop();
    assert!(status.success(), "engine exit: {status}");
    let c = &report["counters"];
    let count = |key: &str| {
        c[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {report}"))
    };
    assert_eq!(report["kind"], kind);
    assert_eq!(report["busy_poll"], true, "a bypass engine always polls");
    let messages = (MESSAGES + CONCURRENT * 4) as u64;
    let connections = 2 + CONCURRENT as u64;
    assert_eq!(count("messages_received"), messages);
    assert_eq!(count("messages_sent"), messages);
    assert_eq!(count("protocol_errors"), 1);
    assert_eq!(count("connections_opened"), connections);
    assert_eq!(count("connections_closed"), connections);
    assert_eq!(count("connections_active"), 0);
    assert!(count("rx_packets") >= MESSAGES as u64, "{report}");
    assert!(count("tx_packets") >= MESSAGES as u64, "{report}");
    assert!(
        count("busy_loops") > 0 && count("idle_loops") > 0,
        "{report}"
    );
    // Busy time: some, and no more than the engine lived.
    assert!(
        count("busy_ns") > 0 && count("busy_ns") <= count("elapsed_ns"),
        "{report}"
    );
    // Every loss inside the engine is measured under its own name (the
    // values depend on the driver and the machine); the link emulator's
    // rx_dropped is not the engine's.
    for name in [
        "rx_missed",
        "rx_nombuf",
        "rx_errors",
        "tx_errors",
        "port_stats_failures",
    ] {
        count(name);
    }
    if kind == "dpdk" {
        count("tx_dropped");
    }
    assert!(c["rx_dropped"].is_null(), "{report}");
    assert!(
        !runtime_dir.exists(),
        "engine left {}",
        runtime_dir.display()
    );
}
