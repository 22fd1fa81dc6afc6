//! The kernel engine as a process on loopback: misbehaving clients do not
//! disturb a good one, SIGTERM ends it cleanly with its counters printed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use protocol::encode_request;
use serde_json::Value;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A running engine; killed on drop if a test failed before stopping it.
struct Engine {
    child: Child,
    addr: SocketAddr,
}

impl Engine {
    fn start(extra: &[&str]) -> Engine {
        let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["--kind", "kernel", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn engine");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        // Keeps draining stderr so the engine never blocks on it.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("engine: listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.parse::<SocketAddr>());
                }
                eprintln!("[engine] {line}");
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
        Engine { child, addr }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    /// SIGTERM, then waits (bounded) for the exit and the final JSON line.
    fn stop(mut self) -> (ExitStatus, Value) {
        kill(self.pid(), Signal::SIGTERM).expect("send SIGTERM");
        let status = wait_bounded(&mut self.child, Duration::from_secs(10));
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
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit in {limit:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// Sends `count` requests one at a time and checks every reply.
fn good_client(addr: SocketAddr, count: u32) {
    let mut stream = connect(addr);
    let mut wire = Vec::with_capacity(1024);
    for i in 0..count {
        let len = 512 + (i * 37) % 513;
        wire.clear();
        encode_request(len, u64::from(i), &mut wire).expect("legal length");
        stream.write_all(&wire).expect("write request");
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).expect("read reply");
        assert_eq!(u32::from_be_bytes(reply), len, "reply to request {i}");
    }
}

/// Whether the engine closed the connection (EOF or reset) within
/// `IO_TIMEOUT`; a connection still open then is not closed.
fn closed_by_engine(stream: &mut TcpStream) -> bool {
    common::closed_within(stream, IO_TIMEOUT).is_some()
}

/// The check itself can fail: a peer that never closes is reported open,
/// one that closes as EOF, one that aborts as a reset.
#[test]
fn the_closed_check_tells_an_open_connection_from_a_closed_one() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut open = TcpStream::connect(addr).expect("connect");
    let (held, _) = listener.accept().expect("accept");
    assert_eq!(
        common::closed_within(&mut open, Duration::from_millis(300)),
        None
    );

    drop(held);
    assert_eq!(
        common::closed_within(&mut open, IO_TIMEOUT),
        Some(common::Closed::Eof)
    );

    let mut aborted = TcpStream::connect(addr).expect("connect");
    let (held, _) = listener.accept().expect("accept");
    nix::sys::socket::setsockopt(
        &held,
        nix::sys::socket::sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .expect("SO_LINGER 0");
    drop(held);
    assert_eq!(
        common::closed_within(&mut aborted, IO_TIMEOUT),
        Some(common::Closed::Reset)
    );
}

fn counter(json: &Value, name: &str) -> u64 {
    json["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {name} missing in {json}"))
}

#[test]
fn misbehaving_clients_do_not_disturb_a_good_one() {
    misbehaving_clients_beside_a_good_one(&[]);
}

/// Busy-poll with few connections reads every socket on each spin and stops
/// reading at a short read: an end-of-stream queued behind data must still
/// be seen.
#[test]
fn misbehaving_clients_do_not_disturb_a_good_one_busy_poll() {
    misbehaving_clients_beside_a_good_one(&["--busy-poll"]);
}

fn misbehaving_clients_beside_a_good_one(mode: &[&str]) {
    let engine = Engine::start(mode);
    let addr = engine.addr;
    let good = thread::spawn(move || good_client(addr, 2000));

    for round in 0..5u64 {
        // Garbage: an HTTP request is no legal length header.
        let mut garbage = connect(addr);
        garbage
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write garbage");
        assert!(closed_by_engine(&mut garbage), "garbage client not closed");

        // Half a message, then an orderly close.
        let mut half = connect(addr);
        let mut wire = Vec::new();
        encode_request(800, round, &mut wire).expect("legal length");
        half.write_all(&wire[..300]).expect("write half");
        half.shutdown(Shutdown::Write).expect("shutdown");
        assert!(
            closed_by_engine(&mut half),
            "half-message client not closed"
        );

        // Half a message, then an abortive close (RST, SO_LINGER 0).
        let abrupt = connect(addr);
        (&abrupt).write_all(&wire[..2]).expect("write two bytes");
        nix::sys::socket::setsockopt(
            &abrupt,
            nix::sys::socket::sockopt::Linger,
            &nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        )
        .expect("SO_LINGER 0");
        drop(abrupt);
    }

    good.join().expect("good client completed every exchange");
    // Let the engine see the last reset before it is stopped.
    thread::sleep(Duration::from_millis(100));
    let (status, json) = engine.stop();
    assert!(status.success(), "engine exit: {status}");
    assert_eq!(counter(&json, "protocol_errors"), 5);
    assert!(counter(&json, "half_messages") >= 5, "{json}");
    assert!(counter(&json, "resets") >= 1, "{json}");
    assert_eq!(counter(&json, "messages_received"), 2000, "{json}");
    assert_eq!(
        counter(&json, "messages_sent"),
        counter(&json, "messages_received")
    );
    assert_eq!(counter(&json, "connections_opened"), 16);
    assert_eq!(counter(&json, "connections_closed"), 16);
    assert_eq!(counter(&json, "connections_active"), 0);
}

#[test]
fn sigterm_exits_zero_with_final_counters() {
    for mode in [&[][..], &["--busy-poll"][..]] {
        let engine = Engine::start(mode);
        good_client(engine.addr, 100);
        let (status, json) = engine.stop();
        assert!(status.success(), "engine exit: {status}");
        assert_eq!(json["kind"], "kernel");
        assert_eq!(json["busy_poll"], !mode.is_empty());
        assert_eq!(counter(&json, "messages_received"), 100);
        assert_eq!(counter(&json, "messages_sent"), 100);
        assert_eq!(counter(&json, "bytes_sent"), 400);
        if mode.is_empty() {
            // Blocking: a loop is a wake-up, not counted; not a zero.
            assert!(json["counters"]["busy_loops"].is_null(), "{json}");
            assert!(json["counters"]["idle_loops"].is_null(), "{json}");
            assert!(json["counters"]["busy_ns"].is_null(), "{json}");
        } else {
            assert!(counter(&json, "busy_loops") > 0, "{json}");
            assert!(counter(&json, "idle_loops") > 0, "{json}");
            let busy = counter(&json, "busy_ns");
            assert!(busy > 0 && busy <= counter(&json, "elapsed_ns"), "{json}");
        }
        // The kernel's frames are not the engine's to count.
        for name in ["rx_packets", "tx_packets", "rx_missed", "tx_dropped"] {
            assert!(json["counters"][name].is_null(), "{name}: {json}");
        }
    }
}

#[test]
fn sigterm_closes_idle_connections_after_the_drain_bound() {
    let engine = Engine::start(&["--drain-ms", "300"]);
    let mut idle = connect(engine.addr);
    // Make sure the connection was accepted before the signal.
    good_client(engine.addr, 1);
    let started = Instant::now();
    let (status, json) = engine.stop();
    assert!(status.success(), "engine exit: {status}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(closed_by_engine(&mut idle));
    assert_eq!(counter(&json, "connections_active"), 0);
    assert_eq!(counter(&json, "connections_closed"), 2);
}

#[test]
fn many_connections_are_served_at_once() {
    let engine = Engine::start(&[]);
    let addr = engine.addr;
    let clients: Vec<_> = (0..32)
        .map(|_| thread::spawn(move || good_client(addr, 200)))
        .collect();
    for client in clients {
        client.join().expect("client completed");
    }
    let (status, json) = engine.stop();
    assert!(status.success());
    assert_eq!(counter(&json, "messages_received"), 32 * 200);
    assert_eq!(counter(&json, "connections_opened"), 32);
}

#[test]
fn many_requests_in_one_write_are_all_answered() {
    let engine = Engine::start(&[]);
    let mut stream = connect(engine.addr);
    let mut wire = Vec::new();
    let lengths: Vec<u32> = (0..500).map(|i| 512 + (i * 101) % 513).collect();
    for (tag, &len) in (0u64..).zip(&lengths) {
        encode_request(len, tag, &mut wire).expect("legal length");
    }
    stream.write_all(&wire).expect("write all requests");
    let mut replies = vec![0u8; 4 * lengths.len()];
    stream.read_exact(&mut replies).expect("read all replies");
    for (chunk, &len) in replies.chunks(4).zip(&lengths) {
        assert_eq!(chunk, len.to_be_bytes());
    }
    drop(stream);
    let (status, _) = engine.stop();
    assert!(status.success());
}

#[test]
fn connections_beyond_the_cap_are_refused_and_counted() {
    let engine = Engine::start(&["--max-connections", "2"]);
    let _a = connect(engine.addr);
    let _b = connect(engine.addr);
    // Let the engine accept the first two before the third arrives.
    thread::sleep(Duration::from_millis(100));
    let mut third = connect(engine.addr);
    assert!(closed_by_engine(&mut third));
    drop((_a, _b));
    let (status, json) = engine.stop();
    assert!(status.success());
    assert!(
        json["refused_connections"].as_u64().unwrap_or(0) >= 1,
        "{json}"
    );
    assert_eq!(counter(&json, "connections_opened"), 2);
}

fn run_expecting_failure(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run engine");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_core_that_does_not_exist_is_a_configuration_error() {
    let (code, stderr) = run_expecting_failure(&[
        "--kind",
        "kernel",
        "--listen",
        "127.0.0.1:0",
        "--core",
        "4096",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("core 4096"), "{stderr}");
}

/// A DPDK configuration that cannot be read or that a flag contradicts is
/// a configuration error (exit 2), found before any port is touched, so no
/// root or DPDK is needed here.
#[test]
fn a_bad_dpdk_configuration_or_flag_exits_2() {
    let dir = std::env::temp_dir().join(format!("engine-exit2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(dir.clone());
    let missing = dir.join("missing.ini");
    let broken = dir.join("broken.ini");
    std::fs::write(
        &broken,
        "[dpdk]\niface=veth9\n[port0]\nnetmask=255.255.255.0\n",
    )
    .unwrap();
    let good = dir.join("good.ini");
    std::fs::write(
        &good,
        "[dpdk]\niface=veth9\nno_huge=1\n[port0]\naddr=10.9.0.3\nnetmask=255.255.255.0\n",
    )
    .unwrap();
    let cases: [(&[&str], &std::path::Path, &str); 4] = [
        (&["--listen", "0.0.0.0:7000"], &missing, "missing.ini"),
        (&["--listen", "0.0.0.0:7000"], &broken, "port0.addr"),
        (&["--listen", "0.0.0.0:0"], &good, "--listen"),
        (&["--listen", "10.1.2.3:7000"], &good, "10.9.0.3"),
    ];
    for (flags, config, says) in cases {
        let mut args = vec!["--kind", "dpdk", "--dpdk-config", config.to_str().unwrap()];
        args.extend_from_slice(flags);
        let (code, stderr) = run_expecting_failure(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
#[cfg_attr(
    feature = "fstack",
    ignore = "this build has the fstack engine (the hint is for builds without it)"
)]
fn fstack_without_the_feature_says_how_to_enable_it() {
    let (code, stderr) = run_expecting_failure(&["--kind", "fstack"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--features"), "{stderr}");
    assert!(stderr.contains("fstack"), "{stderr}");
    assert!(stderr.contains("FF_PATH"), "{stderr}");
}

/// `--rto-min-ms` sets smoltcp's minimum: the kernel backend refuses it,
/// naming where its own comes from, and a minimum out of range is refused
/// by the parser; both before anything is bound.
#[test]
fn an_rto_minimum_for_the_kernel_backend_or_out_of_range_exits_2() {
    let (code, stderr) = run_expecting_failure(&[
        "--kind",
        "kernel",
        "--listen",
        "127.0.0.1:0",
        "--rto-min-ms",
        "50",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--rto-min-ms"), "{stderr}");
    assert!(stderr.contains("rto_min"), "{stderr}");
    for bad in ["0", "10001", "ten"] {
        let (code, stderr) = run_expecting_failure(&["--kind", "dpdk", "--rto-min-ms", bad]);
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.contains("--rto-min-ms"), "{bad}: {stderr}");
    }
}
