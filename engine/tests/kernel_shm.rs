//! The kernel engine publishes into its slot of a real segment: Starting,
//! Running while serving, Finished after SIGTERM, with counters and periodic
//! records that agree with its final JSON line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use protocol::encode_request;
use shm_layout::{CreateOptions, ProducerState, Role, Segment, SlotSnapshot};

/// Removes the segment file however the test ends.
struct SegmentGuard {
    segment: Option<Segment>,
    path: PathBuf,
}

impl SegmentGuard {
    fn create(tag: &str) -> Self {
        let name = format!("engine-test-{tag}-{}", std::process::id());
        let segment = Segment::create(&CreateOptions::new(name)).expect("create segment");
        let path = segment.path().to_owned();
        Self {
            segment: Some(segment),
            path,
        }
    }

    fn segment(&self) -> &Segment {
        self.segment.as_ref().expect("segment present")
    }

    fn engine_slot(&self) -> Option<SlotSnapshot> {
        self.segment()
            .snapshot()
            .slots
            .into_iter()
            .find(|s| s.role == Role::Engine)
    }
}

impl Drop for SegmentGuard {
    fn drop(&mut self) {
        if let Some(segment) = self.segment.take() {
            let _ = segment.unlink();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn engine_publishes_counters_states_and_records() {
    let guard = SegmentGuard::create("publish");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["--kind", "kernel", "--listen", "127.0.0.1:0"])
            .args(["--publish-interval-ms", "20", "--shm"])
            .arg(&guard.path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn engine"),
    );
    let stderr = child.0.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("engine: listening on ") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(addr.parse::<SocketAddr>());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("engine announced its address")
        .expect("parseable address");

    // Running before the first connection is accepted.
    let slot = guard.engine_slot().expect("engine slot claimed");
    assert_eq!(slot.info.state, ProducerState::Running);
    assert_eq!(slot.info.kind, "kernel");
    assert_eq!(slot.info.pid, child.0.id());

    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut wire = Vec::new();
    for i in 0..300u32 {
        wire.clear();
        encode_request(512 + i, u64::from(i), &mut wire).expect("legal length");
        stream.write_all(&wire).expect("write");
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).expect("reply");
        assert_eq!(u32::from_be_bytes(reply), 512 + i);
    }
    // Published on the timer while serving, not only at exit.
    wait_for("300 requests in the slot", || {
        guard
            .engine_slot()
            .and_then(|s| s.counters)
            .is_some_and(|c| c.messages_received == Some(300))
    });
    drop(stream);

    let pid = Pid::from_raw(i32::try_from(child.0.id()).expect("pid fits"));
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    wait_for("engine exit", || matches!(child.0.try_wait(), Ok(Some(_))));
    let status = child.0.wait().expect("status");
    assert!(status.success(), "{status}");
    let mut out = String::new();
    child
        .0
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("stdout");
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect("final JSON");

    let slot = guard.engine_slot().expect("engine slot");
    assert_eq!(slot.info.state, ProducerState::Finished);
    let c = slot.counters.expect("readable counters");
    assert_eq!(c.messages_received, Some(300));
    assert_eq!(c.messages_sent, Some(300));
    assert_eq!(c.connections_active, Some(0));
    assert_eq!(
        c.bytes_received,
        json["counters"]["bytes_received"].as_u64()
    );
    assert_eq!(c.bytes_sent, json["counters"]["bytes_sent"].as_u64());
    // What the kernel engine does not measure is not published as zero.
    assert_eq!(
        (c.rx_packets, c.tx_packets, c.busy_loops),
        (None, None, None)
    );
    assert_eq!(slot.latency, None, "the engine records no latencies");
    assert_eq!(json["shm"], true);

    let mut consumer = guard
        .segment()
        .consumer(Role::Engine)
        .expect("ring consumer");
    let mut last = None;
    let mut seqs = Vec::new();
    while let Some(record) = consumer.pop() {
        assert!(record.is_intact());
        seqs.push(record.seq);
        last = Some(record);
    }
    assert!(seqs.len() >= 2, "records: {seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let last = last.expect("a record");
    assert_eq!(last.values[0], 300, "messages_received");
    assert_eq!(Some(last.values[1]), c.bytes_received);
    assert_eq!(Some(last.values[2]), c.bytes_sent);
    assert_eq!(last.values[3], 0, "connections_active");
    assert_eq!(last.values[4], 0, "protocol_errors");
}

#[test]
fn a_missing_segment_is_a_configuration_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["--kind", "kernel", "--listen", "127.0.0.1:0", "--shm"])
        .arg(format!("/nonexistent/bypasslab-{}", std::process::id()))
        .output()
        .expect("run engine");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("open segment"), "{stderr}");
}
