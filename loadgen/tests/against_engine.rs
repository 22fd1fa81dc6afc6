//! The load generator against the real kernel engine on loopback, with and
//! without a shared-memory segment. The engine binary is looked up next to
//! the load generator's (`cargo test --workspace` builds both).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use shm_layout::{Counter, CreateOptions, ProducerState, Role, Segment, SlotSnapshot};

fn engine_binary() -> PathBuf {
    let loadgen = Path::new(env!("CARGO_BIN_EXE_loadgen"));
    let engine = loadgen.with_file_name("engine");
    assert!(
        engine.exists(),
        "{} not found: build the engine in the same profile first \
         (cargo test --workspace does; or cargo build -p engine)",
        engine.display()
    );
    engine
}

struct Engine {
    child: Child,
    addr: SocketAddr,
}

impl Engine {
    fn start(extra: &[&str]) -> Self {
        Self::start_in(None, "127.0.0.1:0", extra)
    }

    /// Starts the engine listening on `listen`, inside network namespace
    /// `netns` if given (`ip netns exec` execs, so the pid is the engine's).
    fn start_in(netns: Option<&str>, listen: &str, extra: &[&str]) -> Self {
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(engine_binary());
                c
            }
            None => Command::new(engine_binary()),
        };
        let mut child = command
            .args(["--kind", "kernel", "--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn engine");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("engine: listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.parse::<SocketAddr>());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(addr)) => addr,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("engine did not announce its address: {other:?}");
            }
        };
        Self { child, addr }
    }

    /// SIGTERM; the exit status must be 0; returns the final JSON line.
    fn stop(mut self) -> Value {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        kill(pid, Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "engine did not exit");
            thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "engine exit {status}");
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("stdout");
        serde_json::from_str(out.trim()).expect("engine JSON")
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn loadgen(addr: SocketAddr, args: &[&str]) -> (Output, Value) {
    loadgen_in(None, addr, args)
}

fn loadgen_in(netns: Option<&str>, addr: SocketAddr, args: &[&str]) -> (Output, Value) {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns])
                .arg(env!("CARGO_BIN_EXE_loadgen"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_loadgen")),
    };
    let out = command
        .arg("--connect")
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON result ({e}): {stdout:?} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

fn num(json: &Value, key: &str) -> u64 {
    json[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
}

#[test]
fn every_mode_completes_against_the_kernel_engine() {
    let cases: [&[&str]; 4] = [
        &["--packets", "3000", "--core", "0"],
        &["--packets", "3000", "--connections", "4", "--busy-poll"],
        &["--mode", "open", "--rate", "5000", "--packets", "2000"],
        &[
            "--mode",
            "open",
            "--rate",
            "5000",
            "--packets",
            "2000",
            "--connections",
            "3",
            "--busy-poll",
        ],
    ];
    for engine_mode in [&["--core", "0"][..], &["--busy-poll"][..]] {
        let engine = Engine::start(engine_mode);
        let mut expected = 0;
        for args in cases {
            let (out, json) = loadgen(engine.addr, &[args, &["--warmup", "200"]].concat());
            assert_eq!(out.status.code(), Some(0), "{args:?}: {json}");
            assert_eq!(num(&json, "answered"), num(&json, "sent"));
            assert_eq!(num(&json, "failed"), 0);
            expected += num(&json, "sent") + num(&json, "warmup_answered");
        }
        let final_json = engine.stop();
        assert_eq!(
            final_json["counters"]["messages_received"].as_u64(),
            Some(expected)
        );
        let pinned = engine_mode.contains(&"--core");
        assert_eq!(final_json["core"].as_u64(), pinned.then_some(0));
    }
}

#[test]
fn misbehaving_clients_do_not_disturb_a_loadgen_run() {
    let engine = Engine::start(&[]);
    let addr = engine.addr;
    let run = thread::spawn(move || loadgen(addr, &["--packets", "20000", "--warmup", "0"]));
    for _ in 0..10 {
        let mut garbage = TcpStream::connect(addr).expect("connect");
        let _ = garbage.write_all(&[0xff; 64]);
        let mut half = TcpStream::connect(addr).expect("connect");
        let _ = half.write_all(&700u32.to_be_bytes());
        let _ = half.write_all(&[1; 100]);
        let _ = half.shutdown(Shutdown::Both);
        let abrupt = TcpStream::connect(addr).expect("connect");
        let _ = (&abrupt).write_all(&[0, 0]);
        let _ = nix::sys::socket::setsockopt(
            &abrupt,
            nix::sys::socket::sockopt::Linger,
            &nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        );
        drop((garbage, half, abrupt));
        thread::sleep(Duration::from_millis(5));
    }
    let (out, json) = run.join().expect("loadgen thread");
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(num(&json, "answered"), 20000);
    thread::sleep(Duration::from_millis(100));
    let final_json = engine.stop();
    let counters = &final_json["counters"];
    assert_eq!(counters["protocol_errors"].as_u64(), Some(10));
    assert!(
        counters["half_messages"].as_u64() >= Some(10),
        "{final_json}"
    );
}

/// Removes the segment however the test ends.
struct SegmentGuard(Option<Segment>);

impl Drop for SegmentGuard {
    fn drop(&mut self) {
        if let Some(segment) = self.0.take() {
            let _ = segment.unlink();
        }
    }
}

fn slot(segment: &Segment, role: Role) -> SlotSnapshot {
    segment
        .snapshot()
        .slots
        .into_iter()
        .find(|s| s.role == role)
        .unwrap_or_else(|| panic!("{role:?} slot not claimed"))
}

/// A counter of `slot`, which its producer must measure.
fn count(slot: &SlotSnapshot, counter: Counter) -> u64 {
    slot.counters
        .and_then(|c| c.get(counter))
        .unwrap_or_else(|| panic!("{} unreadable or not measured", counter.name()))
}

#[test]
fn engine_and_loadgen_counters_agree_in_the_segment() {
    let name = format!("loadgen-test-{}", std::process::id());
    let guard = SegmentGuard(Some(
        Segment::create(&CreateOptions::new(name)).expect("create segment"),
    ));
    let segment = guard.0.as_ref().expect("segment");
    let path = segment.path().to_string_lossy().into_owned();

    let engine = Engine::start(&["--shm", &path, "--publish-interval-ms", "20"]);
    assert_eq!(
        slot(segment, Role::Engine).info.state,
        ProducerState::Running
    );

    let (out, json) = loadgen(
        engine.addr,
        &[
            "--packets",
            "5000",
            "--warmup",
            "300",
            "--connections",
            "2",
            "--shm",
            &path,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{json}");

    let lg = slot(segment, Role::Loadgen);
    assert_eq!(lg.info.state, ProducerState::Finished);
    assert_eq!(lg.info.kind, "closed-loop kernel");
    assert_eq!(count(&lg, Counter::MessagesSent), 5000);
    assert_eq!(count(&lg, Counter::MessagesReceived), 5000);
    assert_eq!(count(&lg, Counter::MessagesFailed), 0);
    assert_eq!(count(&lg, Counter::WarmupMessages), 300);
    assert_eq!(count(&lg, Counter::BytesSent), num(&json, "bytes_sent"));
    // Every request answered: the answered request bytes are all it sent.
    assert_eq!(
        count(&lg, Counter::AnsweredBytes),
        count(&lg, Counter::BytesSent)
    );
    // What the load generator does not measure is not published as zero.
    let c = lg.counters.expect("readable");
    assert_eq!(
        (c.protocol_errors, c.rx_packets, c.busy_loops),
        (None, None, None),
        "{c:?}"
    );
    assert_eq!(
        lg.latency.map(|l| l.count),
        Some(5000),
        "shared histogram holds every sample"
    );

    // The engine publishes on its timer: wait for it to catch up.
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(&slot(segment, Role::Engine), Counter::MessagesReceived) < 5300 {
        assert!(Instant::now() < deadline, "engine slot never reached 5300");
        thread::sleep(Duration::from_millis(10));
    }
    let final_json = engine.stop();
    let en = slot(segment, Role::Engine);
    assert_eq!(en.info.state, ProducerState::Finished);
    assert_eq!(count(&en, Counter::MessagesReceived), 5000 + 300);
    assert_eq!(count(&en, Counter::MessagesSent), 5000 + 300);
    assert_eq!(
        Some(count(&en, Counter::MessagesReceived)),
        final_json["counters"]["messages_received"].as_u64()
    );
    // Loadgen bytes out (measured phase) are engine bytes in minus warm-up.
    assert!(count(&en, Counter::BytesReceived) > count(&lg, Counter::BytesSent));

    let mut ring = segment.consumer(Role::Loadgen).expect("loadgen ring");
    let mut last = None;
    while let Some(record) = ring.pop() {
        assert!(record.is_intact());
        last = Some(record);
    }
    let last = last.expect("loadgen records");
    assert_eq!(last.values[0], 5000, "messages_received");
    assert_eq!(last.values[1], count(&lg, Counter::BytesSent));
    assert_eq!(last.values[3], 0, "failed");
    assert_eq!(last.values[4], 0, "in flight");
}

#[test]
fn a_lossy_run_marks_the_loadgen_slot_failed() {
    let name = format!("loadgen-fail-{}", std::process::id());
    let guard = SegmentGuard(Some(
        Segment::create(&CreateOptions::new(name)).expect("create segment"),
    ));
    let segment = guard.0.as_ref().expect("segment");
    let path = segment.path().to_string_lossy().into_owned();
    // A server that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (out, json) = loadgen(
        addr,
        &[
            "--packets",
            "5",
            "--warmup",
            "0",
            "--timeout-ms",
            "200",
            "--shm",
            &path,
        ],
    );
    drop(listener);
    assert_eq!(out.status.code(), Some(1), "{json}");
    let lg = slot(segment, Role::Loadgen);
    assert_eq!(lg.info.state, ProducerState::Failed);
    assert_eq!(count(&lg, Counter::Timeouts), 1);
    assert_eq!(count(&lg, Counter::MessagesFailed), 5);
    assert!(count(&lg, Counter::BytesSent) > 0);
    assert_eq!(
        count(&lg, Counter::AnsweredBytes),
        0,
        "nothing was answered"
    );
}

/// Two network namespaces joined by a veth pair, removed on drop.
struct NetnsPair {
    client: String,
    server: String,
    server_addr: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl NetnsPair {
    /// `None` when namespaces cannot be made here (not root, no `ip`).
    fn create() -> Option<Self> {
        let pid = std::process::id();
        let pair = Self {
            client: format!("lgtest-c-{pid}"),
            server: format!("lgtest-s-{pid}"),
            // An isolated /30 that exists only inside the two namespaces.
            server_addr: format!("10.253.{}.2", pid % 250),
        };
        let client_addr = format!("10.253.{}.1/30", pid % 250);
        let server_cidr = format!("{}/30", pair.server_addr);
        let (vc, vs) = (format!("lgc{pid}"), format!("lgs{pid}"));
        let (c, s) = (pair.client.as_str(), pair.server.as_str());
        let steps: [&[&str]; 11] = [
            &["netns", "add", c],
            &["netns", "add", s],
            &["link", "add", &vc, "type", "veth", "peer", "name", &vs],
            &["link", "set", &vc, "netns", c],
            &["link", "set", &vs, "netns", s],
            &["-n", c, "addr", "add", &client_addr, "dev", &vc],
            &["-n", s, "addr", "add", &server_cidr, "dev", &vs],
            &["-n", c, "link", "set", "lo", "up"],
            &["-n", s, "link", "set", "lo", "up"],
            &["-n", c, "link", "set", &vc, "up"],
            &["-n", s, "link", "set", &vs, "up"],
        ];
        for step in steps {
            if !ip(step) {
                eprintln!("skipping: `ip {}` failed (needs root)", step.join(" "));
                // Drop removes whatever was made.
                return None;
            }
        }
        Some(pair)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and its peer.
        let _ = ip(&["netns", "del", &self.client]);
        let _ = ip(&["netns", "del", &self.server]);
    }
}

#[test]
fn engine_and_loadgen_in_separate_namespaces_over_veth() {
    let Some(pair) = NetnsPair::create() else {
        return;
    };
    for mode in [&[][..], &["--busy-poll"][..]] {
        let listen = format!("{}:7000", pair.server_addr);
        let engine = Engine::start_in(Some(&pair.server), "0.0.0.0:7000", mode);
        assert_eq!(engine.addr.port(), 7000);
        let addr: SocketAddr = listen.parse().expect("address");
        let (out, json) = loadgen_in(
            Some(&pair.client),
            addr,
            &[&["--packets", "2000", "--warmup", "100"], mode].concat(),
        );
        assert_eq!(out.status.code(), Some(0), "{mode:?}: {json}");
        assert_eq!(num(&json, "answered"), 2000);
        let final_json = engine.stop();
        assert_eq!(
            final_json["counters"]["messages_received"].as_u64(),
            Some(2100)
        );
    }
}
