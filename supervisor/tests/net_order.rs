//! The emulator keeps frame order under jitter, in the configured
//! direction: a burst of numbered datagrams from NS3 to NS1 arrives in order.

mod support;

use std::net::{SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use support::{require_root, Testbed};
use testbed::net::probe::enter;

#[test]
fn net_emulator_keeps_order_under_jitter() {
    if !require_root("net_emulator_keeps_order_under_jitter") {
        return;
    }
    let tb = Testbed::new("nt", "[impairment]\nbackend = \"emulator\"\ndelay_us = 300\njitter_us = 250\nloss_percent = 0.0\ndirection = \"both\"\n",
    );
    let st = tb.up();
    assert_eq!(st["impairment"]["backend"], "emulator");
    // Resolve ARP first: packets queued behind an unresolved neighbour are
    // flushed by the kernel concurrently with new sends, a reordering that
    // happens before the emulator.
    let warm = testbed::net::probe::ProbeOptions {
        count: 20,
        warmup: 5,
        ..Default::default()
    };
    testbed::net::probe::udp_pingpong(&tb.cfg, &warm).expect("warm-up ping-pong");

    const N: u32 = 3000;
    let client = SocketAddrV4::new(tb.cfg.client_addr(), 7100);
    let ns1 = tb.cfg.client_ns();
    let (tx, rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || -> Vec<u32> {
        enter(&ns1, None).expect("enter NS1");
        let s = UdpSocket::bind(client).expect("bind in NS1");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        tx.send(()).expect("ready");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let deadline = Instant::now() + Duration::from_secs(10);
        // Bounded by N datagrams, a 500 ms silence and 10 s overall.
        while got.len() < N as usize && Instant::now() < deadline {
            match s.recv(&mut buf) {
                Ok(n) if n >= 4 => got.push(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]])),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        got
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("receiver ready");
    let ns3 = tb.cfg.server_ns();
    let server = tb.cfg.server_addr();
    let cores = tb.cfg.cores();
    let sender = std::thread::spawn(move || {
        // Pinned: a sender migrating between cores mid-burst queues its
        // frames on two CPUs' backlogs, and the kernel itself may then
        // deliver them out of order before the emulator sees them.
        enter(&ns3, Some(cores.engine)).expect("enter NS3");
        let s = UdpSocket::bind(SocketAddrV4::new(server, 0)).expect("bind in NS3");
        for i in 0..N {
            let mut msg = [0u8; 64];
            msg[..4].copy_from_slice(&i.to_be_bytes());
            s.send_to(&msg, client).expect("send");
            if i % 16 == 15 {
                // Let the emulator and the receiver keep up, even on a
                // busy machine (its 1024-frame rings overflow otherwise):
                // the point is order, not rate.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    sender.join().expect("sender");
    let got = receiver.join().expect("receiver");
    let inversions = got.windows(2).filter(|w| w[1] <= w[0]).count();
    if let Some(at) = got.windows(2).position(|w| w[1] <= w[0]) {
        println!(
            "first inversion at index {at}: {:?}",
            &got[at.saturating_sub(3)..(at + 4).min(got.len())]
        );
    }
    println!(
        "received {} of {N} datagrams, {inversions} out of order",
        got.len()
    );
    // The emulator publishes its counters every 100 ms.
    std::thread::sleep(std::time::Duration::from_millis(250));
    let st = tb.status();
    println!(
        "emulator counters from NS3: {}",
        st["impairment"]["emulator"]["stats"]["from_ns3"]
    );
    // Order is the point; on a busy machine a socket buffer may overflow,
    // so only require enough datagrams to judge it.
    assert!(
        got.len() >= (N as usize) / 2,
        "only {} of {N} arrived",
        got.len()
    );
    assert_eq!(inversions, 0, "frames were reordered");
}
