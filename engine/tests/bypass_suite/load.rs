//! The bypass engines under load on a lossy link: many short connections
//! (each one connect, one message, close) must all be answered without a
//! reset, and a thousand clients that break the protocol and never close
//! must not keep the engine from serving new connections.
//!
//! The link loses 1 % of the frames leaving the server's namespace, the
//! replies' direction, as the experiment's impairment does (SYN-ACKs
//! included: the case where a retransmitted SYN must find its own
//! half-connection).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use protocol::encode_request;

use super::{connect, in_netns, is_root, Engine, Testbed, IO_TIMEOUT, SERIAL};

/// Short connections in all, and at once.
const SHORT_CONNECTIONS: usize = 2000;
const SHORT_AT_ONCE: usize = 40;
/// Clients that send garbage and never close.
const GARBAGE_CLIENTS: usize = 1000;
/// The engine's connection cap in the garbage test: far fewer sockets
/// than garbage clients, so sockets that were never given back would run
/// out long before the last one connects.
const GARBAGE_CAP: &str = "256";
/// A connect's limit (the kernel's SYN retransmissions come at 1, 3, 7, 15 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Every load test ends within this.
const LOAD_LIMIT: Duration = Duration::from_secs(60);

/// One connection, one request, its reply, an orderly close; the error as
/// text if any step failed (a reset, a refused connect, a timeout, a wrong
/// reply).
fn short_exchange(len: u32, tag: u64) -> Result<(), String> {
    let mut stream = connect_checked()?;
    let mut wire = Vec::new();
    encode_request(len, tag, &mut wire).map_err(|e| e.to_string())?;
    stream.write_all(&wire).map_err(|e| format!("write: {e}"))?;
    let mut reply = [0u8; 4];
    stream
        .read_exact(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    if u32::from_be_bytes(reply) != len {
        return Err(format!("reply {} to {len}", u32::from_be_bytes(reply)));
    }
    // Everything read: the close is a FIN, never a reset of ours.
    Ok(())
}

/// [`connect`] without panicking: the load threads report, the test
/// asserts.
fn connect_checked() -> Result<TcpStream, String> {
    let addr = format!("{}:{}", super::SERVER_IP, super::PORT)
        .parse()
        .map_err(|e| format!("{e}"))?;
    // Generous: with SYN-ACKs lost on purpose, a handshake may need the
    // client's 1 s, 2 s and 4 s retransmissions.
    let stream =
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Runs `count` jobs on `threads` threads (of the calling thread's network
/// namespace), each job numbered; the failures, as text.
fn on_threads(
    count: usize,
    threads: usize,
    job: impl Fn(usize) -> Result<(), String> + Send + Sync + 'static,
) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let deadline = Instant::now() + LOAD_LIMIT;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (next, job) = (Arc::clone(&next), Arc::clone(&job));
            thread::spawn(move || {
                let mut failures = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || Instant::now() > deadline {
                        break;
                    }
                    if let Err(e) = job(i) {
                        failures.push(format!("job {i}: {e}"));
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures: Vec<String> = workers
        .into_iter()
        .flat_map(|w| {
            w.join()
                .unwrap_or_else(|_| vec!["a worker panicked".into()])
        })
        .collect();
    let done = next.load(Ordering::Relaxed).min(count);
    if done < count {
        failures.push(format!(
            "only {done} of {count} jobs ran within {LOAD_LIMIT:?}"
        ));
    }
    failures
}

/// Raises this process's descriptor limit to at least `want` (the garbage
/// clients hold a thousand sockets open at once).
fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// 2000 short connections, 40 at a time, over the lossy link: every one
/// answered, none reset or refused, and the engine counts exactly them.
pub fn short_connections_over_a_lossy_link(kind: &'static str, pmd: &'static str) {
    short_connections(kind, pmd, SHORT_CONNECTIONS, None, "l");
}

/// Short connections over the lossy link, `total` of them, and with
/// `syn_ack_loss` percent of the server's SYN-ACKs lost on top; `tag` makes
/// the namespaces' names the test's own.
fn short_connections(
    kind: &'static str,
    pmd: &'static str,
    total: usize,
    syn_ack_loss: Option<u32>,
    tag: &str,
) {
    if !is_root() {
        eprintln!("skipped: namespaces and EAL need root");
        return;
    }
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let bed = Testbed::new(kind, tag);
    bed.lose_server_frames(1);
    if let Some(percent) = syn_ack_loss {
        bed.lose_syn_acks(percent);
    }
    // The pool is under test here, not the timer: smoltcp's own 10 ms
    // minimum RTO is shorter than a poll loop's stall on a busy 2-core
    // machine, so a FIN goes out twice, the client acknowledges both, and
    // the second acknowledgement meets a socket already recycled and
    // answered with a reset, as Linux answers one after LAST-ACK. Linux's
    // 200 ms keeps the count of resets about the pool.
    let extra: &[&str] = if kind == "dpdk" {
        &["--rto-min-ms", "200"]
    } else {
        &[]
    };
    let engine = Engine::start(&bed, kind, pmd, extra);
    let started = Instant::now();
    let failures = in_netns(&bed.client_ns, move || {
        on_threads(total, SHORT_AT_ONCE, |i| {
            let len = 512 + u32::try_from(i % 513).unwrap_or(0);
            short_exchange(len, i as u64)
        })
    });
    let took = started.elapsed();
    let (status, report) = engine.stop();
    let dropped = bed.counted("dropped");
    let resets = (
        bed.counted("rst_from_server"),
        bed.counted("rst_from_client"),
    );
    eprintln!(
        "{kind}/{pmd}: {total} short connections in {took:?}, {dropped} server \
         frames dropped by the link, {} failed, resets on the wire (server, client) {resets:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    assert!(dropped > 0, "the link lost nothing: not the lossy case");
    // No reset in either direction, also none the clients never noticed
    // (a stray SYN-ACK from a second half-connection is answered with one).
    assert_eq!(resets, (0, 0), "resets on the wire (server, client)");
    assert!(status.success(), "engine exit: {status}");
    let c = &report["counters"];
    let n = total as u64;
    for (name, want) in [
        ("connections_opened", n),
        ("connections_closed", n),
        ("messages_received", n),
        ("messages_sent", n),
        ("protocol_errors", 0),
        ("resets", 0),
    ] {
        assert_eq!(c[name].as_u64(), Some(want), "{name}: {report}");
    }
}

/// 1000 clients each send garbage and never close (nor read); the engine,
/// capped at 256 connections, must still serve a good client afterwards,
/// and every garbage client must have been able to connect.
pub fn garbage_clients_that_never_close(kind: &'static str, pmd: &'static str) {
    if !is_root() {
        eprintln!("skipped: namespaces and EAL need root");
        return;
    }
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    raise_fd_limit(4096);
    let bed = Testbed::new(kind, "g");
    bed.lose_server_frames(1);
    let engine = Engine::start(&bed, kind, pmd, &["--max-connections", GARBAGE_CAP]);
    let started = Instant::now();
    let (failures, good) = in_netns(&bed.client_ns, || {
        let held = Arc::new(std::sync::Mutex::new(Vec::with_capacity(GARBAGE_CLIENTS)));
        let keep = Arc::clone(&held);
        let failures = on_threads(GARBAGE_CLIENTS, 20, move |_| {
            let mut stream = connect_checked()?;
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .map_err(|e| format!("write: {e}"))?;
            // Never closed, never read, until the test ends.
            keep.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(stream);
            Ok(())
        });
        // Every garbage client still holds its socket: now a good one.
        let good = (|| -> Result<(), String> {
            let mut stream = connect();
            let mut wire = Vec::new();
            for i in 0..20u32 {
                wire.clear();
                encode_request(600 + i, u64::from(i), &mut wire).map_err(|e| e.to_string())?;
                stream.write_all(&wire).map_err(|e| format!("write: {e}"))?;
                let mut reply = [0u8; 4];
                stream.read_exact(&mut reply).map_err(|e| match e.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => "no reply".to_owned(),
                    _ => format!("read: {e}"),
                })?;
                if u32::from_be_bytes(reply) != 600 + i {
                    return Err(format!("wrong reply to request {i}"));
                }
            }
            Ok(())
        })();
        drop(held);
        (failures, good)
    });
    let took = started.elapsed();
    let (status, report) = engine.stop();
    eprintln!(
        "{kind}/{pmd}: {GARBAGE_CLIENTS} garbage clients in {took:?}, {} failed; good client: \
         {good:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(good, Ok(()), "the engine stopped serving new connections");
    assert!(status.success(), "engine exit: {status}");
    let c = &report["counters"];
    assert_eq!(
        c["protocol_errors"].as_u64(),
        Some(GARBAGE_CLIENTS as u64),
        "{report}"
    );
    assert_eq!(
        c["connections_opened"].as_u64(),
        Some(GARBAGE_CLIENTS as u64 + 1),
        "{report}"
    );
}

/// 500 short connections whose SYN-ACKs are lost a quarter of the time: the
/// client's retransmitted SYN (after the server's retransmitted SYN-ACK
/// was lost too) must find the connection's own half-open socket.
pub fn short_connections_with_lost_syn_acks(kind: &'static str, pmd: &'static str) {
    short_connections(kind, pmd, 500, Some(25), "s");
}
