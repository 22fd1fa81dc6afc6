//! The dpdk client stack over memory: a plain smoltcp server that answers
//! the protocol on the other end of the wire, both on real time, every
//! wait bounded.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use dpdk_stack::config::PortAddr;
use dpdk_stack::memory::MemDevice;
use dpdk_stack::{BurstDevice, StackClock};
use protocol::ServerSession;
use shm_layout::{Counter, Counters, Measured};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;

use super::dpdk::{DpdkStack, DpdkStackConfig};
use super::{Connecting, Handle, Stack, StackError, Transfer};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PORT: u16 = 7000;
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 3];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// Longest a test waits for anything.
const LIMIT: StdDuration = StdDuration::from_secs(10);

fn addr(ip: Ipv4Addr) -> PortAddr {
    PortAddr {
        addr: ip,
        prefix_len: 24,
        broadcast: None,
        gateway: None,
    }
}

/// Listening sockets on `PORT` that answer each request with its length
/// and close once the client has.
struct Server {
    dev: MemDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    conns: Vec<(SocketHandle, ServerSession, Vec<u8>)>,
    clock: StackClock,
}

impl Server {
    fn new(mut dev: MemDevice, listeners: usize) -> Self {
        let clock = StackClock::new();
        let iface = dpdk_stack::interface(&mut dev, SERVER_MAC, addr(SERVER_IP), 3, clock.now());
        let mut sockets = SocketSet::new(Vec::new());
        let conns = (0..listeners)
            .map(|_| {
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; 8192]),
                    tcp::SocketBuffer::new(vec![0; 8192]),
                );
                s.set_nagle_enabled(false);
                // As Linux does: the client's timestamps are answered.
                s.set_tsval_generator(Some(dpdk_stack::tcp_timestamp_ms));
                s.listen(PORT).expect("listen");
                (sockets.add(s), ServerSession::default(), Vec::new())
            })
            .collect();
        Self {
            dev,
            iface,
            sockets,
            conns,
            clock,
        }
    }

    fn pass(&mut self) {
        let now = self.clock.now();
        self.dev.rx_burst();
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        for (handle, session, pending) in &mut self.conns {
            let s = self.sockets.get_mut::<tcp::Socket>(*handle);
            if s.can_recv() {
                let _ = s.recv(|data| (data.len(), session.on_bytes(data, pending)));
            }
            if !pending.is_empty() {
                if let Ok(n) = s.send_slice(pending) {
                    pending.drain(..n);
                }
            }
            match s.state() {
                tcp::State::CloseWait if pending.is_empty() => s.close(),
                tcp::State::TimeWait | tcp::State::Closed => {
                    *session = ServerSession::default();
                    pending.clear();
                    s.listen(PORT).expect("listen");
                }
                _ => {}
            }
        }
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        self.dev.tx_flush();
    }

    /// Every server socket carrying a connection, reset or closed.
    fn each_connected(&mut self, f: impl Fn(&mut tcp::Socket<'static>)) {
        for (handle, _, _) in &self.conns {
            let s = self.sockets.get_mut::<tcp::Socket>(*handle);
            if s.state() == tcp::State::Established {
                f(s);
            }
        }
    }
}

/// The client stack, the server, and the source ports of every SYN the
/// client sent.
struct Net {
    client: DpdkStack<MemDevice>,
    server: Server,
    syn_ports: Rc<RefCell<Vec<u16>>>,
}

impl Net {
    fn new(server_port: u16, tune: impl FnOnce(&mut DpdkStackConfig)) -> Self {
        let (mut client_dev, server_dev) = MemDevice::pair();
        let syn_ports = Rc::new(RefCell::new(Vec::new()));
        let seen = Rc::clone(&syn_ports);
        client_dev.filter = Some(Box::new(move |frame| {
            if let Some((src, flags)) = tcp_src_and_flags(frame) {
                if flags & 0x12 == 0x02 {
                    seen.borrow_mut().push(src);
                }
            }
            true
        }));
        let mut config =
            DpdkStackConfig::new(addr(CLIENT_IP), SocketAddrV4::new(SERVER_IP, server_port));
        tune(&mut config);
        Self {
            client: DpdkStack::new(client_dev, CLIENT_MAC, config, 7),
            server: Server::new(server_dev, 64),
            syn_ports,
        }
    }

    /// Polls both ends until `done` holds (true) or `LIMIT` passes (false).
    fn until(&mut self, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let deadline = StdInstant::now() + LIMIT;
        while StdInstant::now() < deadline {
            if done(self) {
                return true;
            }
            self.client.poll(StdDuration::ZERO, &mut Vec::new());
            self.server.pass();
        }
        done(self)
    }

    fn connect(&mut self) -> Handle {
        let h = self.client.open().expect("open");
        assert!(
            self.until(|n| n.client.connecting(h) != Connecting::Pending),
            "handshake never ended"
        );
        assert_eq!(self.client.connecting(h), Connecting::Established);
        h
    }

    /// Sends a request of `len` bytes on `h` and reads its reply.
    fn exchange(&mut self, h: Handle, len: u32, tag: u64) -> u32 {
        let mut wire = Vec::new();
        protocol::encode_request(len, tag, &mut wire).expect("legal length");
        let mut sent = 0;
        assert!(self.until(|n| {
            if let Transfer::Moved(m) = n.client.send(h, &wire[sent..]) {
                sent += m;
            }
            sent == wire.len()
        }));
        let mut reply = Vec::new();
        assert!(self.until(|n| {
            let mut buf = [0u8; 4];
            if let Transfer::Moved(m) = n.client.recv(h, &mut buf[..4 - reply.len()]) {
                reply.extend_from_slice(&buf[..m]);
            }
            reply.len() == 4
        }));
        u32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]])
    }
}

fn tcp_src_and_flags(frame: &[u8]) -> Option<(u16, u8)> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] || frame[23] != 6 {
        return None;
    }
    let tcp = frame.get(14 + usize::from(frame[14] & 0x0f) * 4..)?;
    Some((
        u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]),
        *tcp.get(13)?,
    ))
}

#[test]
fn many_connections_each_get_their_replies_from_distinct_ports_and_close() {
    let mut net = Net::new(PORT, |_| {});
    let full = net.client.ports_free();
    let conns: Vec<Handle> = (0..40).map(|_| net.client.open().expect("open")).collect();
    assert!(
        net.until(|n| conns
            .iter()
            .all(|&h| n.client.connecting(h) == Connecting::Established)),
        "not every connection was established"
    );
    let mut ports = net.syn_ports.borrow().clone();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), conns.len(), "one local port per connection");
    for (i, &h) in conns.iter().enumerate() {
        for k in 0..3 {
            let len = 512 + u32::try_from(i * 10 + k).unwrap();
            assert_eq!(net.exchange(h, len, 1), len, "reply to {len}");
        }
    }
    for &h in &conns {
        net.client.close(h);
    }
    assert!(
        net.until(|n| n.client.sockets_alive() == 0),
        "closed sockets never finished: {} left",
        net.client.sockets_alive()
    );
    assert_eq!(net.client.ports_free(), full, "every port freed");
}

/// Requests queued back to back (the open loop's way) fill whole segments;
/// with timestamps on at both ends each must still fit the link, which
/// drops a longer frame as a veth does, or the connection stalls for good.
#[test]
fn pipelined_requests_fill_segments_that_fit_the_link() {
    let mut net = Net::new(PORT, |_| {});
    let h = net.connect();
    let lens: Vec<u32> = (0..24).map(|i| protocol::MAX_MESSAGE_LEN - i).collect();
    let mut wire = Vec::new();
    for (tag, &len) in (0u64..).zip(&lens) {
        protocol::encode_request(len, tag, &mut wire).expect("legal length");
    }
    let mut sent = 0;
    let mut replies = Vec::new();
    let all_answered = net.until(|n| {
        if sent < wire.len() {
            if let Transfer::Moved(m) = n.client.send(h, &wire[sent..]) {
                sent += m;
            }
        }
        let mut buf = [0u8; 256];
        if let Transfer::Moved(m) = n.client.recv(h, &mut buf) {
            replies.extend_from_slice(&buf[..m]);
        }
        replies.len() == lens.len() * protocol::REPLY_LEN
    });
    assert!(
        all_answered,
        "{} of {} reply bytes after {sent} of {} request bytes sent",
        replies.len(),
        lens.len() * protocol::REPLY_LEN,
        wire.len()
    );
    let got: Vec<u32> = replies
        .chunks(4)
        .map(|r| u32::from_be_bytes([r[0], r[1], r[2], r[3]]))
        .collect();
    assert_eq!(got, lens);
    assert_eq!(
        net.client.device().link_counters().device.tx_dropped,
        0,
        "no frame was longer than the link carries"
    );
}

#[test]
fn a_reset_in_answer_to_the_syn_is_a_refusal_and_frees_the_socket() {
    let mut net = Net::new(PORT + 1, |_| {});
    let h = net.client.open().expect("open");
    assert_eq!(net.client.connecting(h), Connecting::Pending);
    assert!(net.until(|n| n.client.connecting(h) != Connecting::Pending));
    assert_eq!(net.client.connecting(h), Connecting::Refused);
    net.client.abort(h);
    assert!(net.until(|n| n.client.sockets_alive() == 0));
}

#[test]
fn a_port_is_not_reused_while_its_socket_lives_and_the_next_one_is_taken_first() {
    let mut net = Net::new(PORT, |c| {
        c.ports = 50_000..=50_002;
        c.random_first_port = false;
    });
    let all: Vec<Handle> = (0..3).map(|_| net.connect()).collect();
    assert!(matches!(net.client.open(), Err(StackError::Exhausted(_))));
    net.client.close(all[1]);
    // Until its close ends, the port stays taken.
    assert!(matches!(net.client.open(), Err(StackError::Exhausted(_))));
    assert!(net.until(|n| n.client.sockets_alive() == 2));
    let again = net.connect();
    assert_eq!(net.syn_ports.borrow().last(), Some(&50_001));
    assert_eq!(net.exchange(again, 700, 2), 700);

    // With ports free on both sides of the last one used, the turn goes on
    // past it rather than back to the port just freed.
    let mut net = Net::new(PORT, |c| {
        c.ports = 50_000..=50_003;
        c.random_first_port = false;
    });
    let first = net.connect();
    net.client.close(first);
    assert!(net.until(|n| n.client.sockets_alive() == 0));
    net.connect();
    assert_eq!(*net.syn_ports.borrow(), [50_000, 50_001]);
}

#[test]
fn a_handle_is_given_out_again_only_after_close() {
    let mut net = Net::new(PORT, |_| {});
    let a = net.connect();
    let b = net.connect();
    assert_ne!(a, b);
    net.client.close(a);
    let c = net.client.open().expect("open");
    assert_eq!(c, a, "the slot freed by close");
    assert_eq!(net.client.send(Handle(99), b"x"), Transfer::Reset);
    assert_eq!(net.client.connecting(Handle(99)), Connecting::Failed);
}

#[test]
fn the_servers_fin_reads_as_closed_and_its_reset_as_reset() {
    let mut net = Net::new(PORT, |_| {});
    let a = net.connect();
    assert_eq!(net.exchange(a, 512, 1), 512);
    net.server.each_connected(tcp::Socket::close);
    let mut buf = [0u8; 16];
    assert!(net.until(|n| n.client.recv(a, &mut buf) == Transfer::Closed));

    let b = net.connect();
    net.server.each_connected(tcp::Socket::abort);
    assert!(net.until(|n| n.client.recv(b, &mut buf) == Transfer::Reset));
    assert_eq!(net.client.send(b, b"late"), Transfer::Reset);
}

#[test]
fn poll_says_whether_anything_moved() {
    let mut net = Net::new(PORT, |_| {});
    let a = net.connect();
    assert_eq!(net.exchange(a, 600, 1), 600);
    // Let the last acknowledgements settle.
    for _ in 0..50 {
        net.client.poll(StdDuration::ZERO, &mut Vec::new());
        net.server.pass();
    }
    assert!(!net.client.poll(StdDuration::ZERO, &mut Vec::new()));
    let mut wire = Vec::new();
    protocol::encode_request(600, 2, &mut wire).unwrap();
    assert!(matches!(net.client.send(a, &wire), Transfer::Moved(_)));
    assert!(
        net.client.poll(StdDuration::ZERO, &mut Vec::new()),
        "a request left"
    );
}

#[test]
fn the_port_counters_are_published_only_once_read() {
    let mut net = Net::new(PORT, |_| {});
    let mut c = Counters::default();
    net.client.add_counters(&mut c);
    // Memory has no port counters: the failed read is counted, never
    // replaced by the device's own counts.
    assert_eq!(c.port_stats_failures, 1);
    let m = net.client.measured(Measured::NOTHING);
    assert!(m.has(Counter::PortStatsFailures) && m.has(Counter::TxDropped));
    assert!(!m.has(Counter::RxPackets));
    assert!(net.client.device().link_counters().port.is_none());
}

#[test]
fn short_connections_recycle_a_small_port_range_many_times_over() {
    // 8 ports, 100 connections one after another: each port serves about a
    // dozen connections, each only once its previous socket is gone.
    let mut net = Net::new(PORT, |c| {
        c.ports = 50_000..=50_007;
        c.random_first_port = false;
    });
    for i in 0..100u32 {
        let h = loop {
            match net.client.open() {
                Ok(h) => break h,
                Err(StackError::Exhausted(_)) => {
                    assert!(
                        net.until(|n| n.client.ports_free() > 0),
                        "no port came free at connection {i}"
                    );
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert!(net.until(|n| n.client.connecting(h) != Connecting::Pending));
        assert_eq!(
            net.client.connecting(h),
            Connecting::Established,
            "connection {i}"
        );
        let len = 512 + i;
        assert_eq!(net.exchange(h, len, u64::from(i)), len);
        net.client.close(h);
        assert!(
            net.client.sockets_alive() <= 8,
            "never more sockets than ports"
        );
    }
    let ports = net.syn_ports.borrow().clone();
    assert_eq!(ports.len(), 100);
    assert!(ports.iter().all(|p| (50_000..=50_007).contains(p)));
    // In turn: consecutive connections never reuse the port just used.
    assert!(ports.windows(2).all(|w| w[0] != w[1]), "{ports:?}");
    assert!(net.until(|n| n.client.sockets_alive() == 0));
    assert_eq!(net.client.ports_free(), 8);
}
