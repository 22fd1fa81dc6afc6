//! The dpdk server without DPDK: a [`BurstDevice`] over memory, a smoltcp
//! client stack on the other end of the "wire", and a manual clock, so the
//! pool's behaviour under loss and churn is tested deterministically and
//! without root.

use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use dpdk_stack::config::PortAddr;
pub(super) use dpdk_stack::memory::MemDevice;
use dpdk_stack::BurstDevice;
use shm_layout::{Counters, Measured};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

use super::server::{Server, ServerConfig};
use crate::context::{ServeContext, StatsSink};

pub(super) const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
pub(super) const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub(super) const PORT: u16 = 7000;
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 3];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// TCP flags of an Ethernet/IPv4/TCP frame, if it is one.
pub(super) fn tcp_flags(frame: &[u8]) -> Option<u8> {
    tcp_header(frame).and_then(|tcp| tcp.get(13).copied())
}

/// Source and destination ports of an Ethernet/IPv4/TCP frame.
pub(super) fn tcp_ports(frame: &[u8]) -> Option<(u16, u16)> {
    let tcp = tcp_header(frame)?;
    Some((
        u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]),
        u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]),
    ))
}

/// Bytes of TCP payload in an Ethernet/IPv4/TCP frame.
pub(super) fn tcp_payload_len(frame: &[u8]) -> Option<usize> {
    let ip_total = usize::from(u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]));
    let ihl = usize::from(frame.get(14)? & 0x0f) * 4;
    let tcp = tcp_header(frame)?;
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    ip_total.checked_sub(ihl + data_offset)
}

/// The TCP options' kinds in an Ethernet/IPv4/TCP frame, in order.
pub(super) fn tcp_option_kinds(frame: &[u8]) -> Vec<u8> {
    let Some(tcp) = tcp_header(frame) else {
        return Vec::new();
    };
    let end = tcp.get(12).map_or(20, |b| usize::from(b >> 4) * 4);
    let options = tcp.get(20..end.min(tcp.len())).unwrap_or(&[]);
    let (mut kinds, mut at) = (Vec::new(), 0);
    while let Some(&kind) = options.get(at) {
        match kind {
            0 => break,
            1 => at += 1,
            _ => {
                kinds.push(kind);
                at += usize::from(options.get(at + 1).copied().unwrap_or(0).max(2));
            }
        }
    }
    kinds
}

fn tcp_header(frame: &[u8]) -> Option<&[u8]> {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] || frame[23] != 6 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    frame.get(14 + ihl..)
}

pub(super) const SYN: u8 = 0x02;
pub(super) const RST: u8 = 0x04;
pub(super) const ACK: u8 = 0x10;

struct NullSink;

impl StatsSink for NullSink {
    fn publish(&mut self, _: &Counters, _: Measured) {}
}

/// The server, a client stack and the wire between them, on a manual clock.
pub(super) struct Net {
    pub(super) server: Server,
    pub(super) server_dev: MemDevice,
    pub(super) ctx: ServeContext,
    client: Interface,
    pub(super) client_dev: MemDevice,
    pub(super) clients: SocketSet<'static>,
    pub(super) now: Instant,
    next_port: u16,
}

impl Net {
    pub(super) fn new(tune: impl FnOnce(&mut ServerConfig)) -> Self {
        let (mut server_dev, mut client_dev) = MemDevice::pair();
        let addr = |ip, gateway| PortAddr {
            addr: ip,
            prefix_len: 24,
            broadcast: None,
            gateway,
        };
        let mut config = ServerConfig::new(addr(SERVER_IP, None), PORT);
        tune(&mut config);
        let server = Server::new(config, &mut server_dev, SERVER_MAC);
        let now = Instant::from_micros(0);
        let client =
            dpdk_stack::interface(&mut client_dev, CLIENT_MAC, addr(CLIENT_IP, None), 7, now);
        let ctx = ServeContext::new(
            Arc::new(AtomicBool::new(false)),
            Box::new(NullSink),
            StdDuration::from_secs(3600),
        );
        Self {
            server,
            server_dev,
            ctx,
            client,
            client_dev,
            clients: SocketSet::new(Vec::new()),
            now,
            next_port: 40_000,
        }
    }

    /// A client socket connecting to the server.
    pub(super) fn connect(&mut self) -> SocketHandle {
        self.connect_with_buffer(8192).0
    }

    /// A client socket with `buffer` bytes each way connecting to the
    /// server, and its port.
    pub(super) fn connect_with_buffer(&mut self, buffer: usize) -> (SocketHandle, u16) {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; buffer]),
            tcp::SocketBuffer::new(vec![0; buffer]),
        );
        socket.set_nagle_enabled(false);
        self.next_port += 1;
        socket
            .connect(
                self.client.context(),
                (SERVER_IP, PORT),
                (CLIENT_IP, self.next_port),
            )
            .expect("connect");
        (self.clients.add(socket), self.next_port)
    }

    pub(super) fn client(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.clients.get_mut::<tcp::Socket>(handle)
    }

    /// `steps` rounds of client poll, wire, server pass, wire, each
    /// advancing the clock by `tick`.
    pub(super) fn run(&mut self, steps: usize, tick: Duration) {
        for _ in 0..steps {
            self.client_step();
            self.server_pass();
            self.now += tick;
        }
    }

    /// The client's half of a step: its frames in, its stack, its frames
    /// out.
    pub(super) fn client_step(&mut self) {
        self.client_dev.rx_burst();
        self.client
            .poll(self.now, &mut self.client_dev, &mut self.clients);
        self.client_dev.tx_flush();
    }

    /// The server's half of a step: one pass.
    pub(super) fn server_pass(&mut self) {
        self.server
            .pass(&mut self.server_dev, &mut self.ctx, self.now);
    }

    /// Runs until `done` or `limit` steps of 1 ms; whether `done` held.
    pub(super) fn run_until(
        &mut self,
        limit: usize,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        for _ in 0..limit {
            if done(self) {
                return true;
            }
            self.run(1, Duration::from_millis(1));
        }
        done(self)
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.ctx.counters
    }
}

/// A request of `len` bytes (header included).
pub(super) fn request(len: u32, tag: u64) -> Vec<u8> {
    let mut wire = Vec::new();
    protocol::encode_request(len, tag, &mut wire).expect("legal length");
    wire
}

#[test]
fn a_client_over_memory_gets_its_reply_and_the_connection_is_counted() {
    let mut net = Net::new(|_| {});
    let c = net.connect();
    assert!(net.run_until(1000, |n| n.client(c).may_send()), "connected");
    net.client(c).send_slice(&request(600, 1)).expect("send");
    assert!(net.run_until(1000, |n| n.client(c).recv_queue() >= 4));
    let mut reply = [0u8; 4];
    assert_eq!(net.client(c).recv_slice(&mut reply), Ok(4));
    assert_eq!(u32::from_be_bytes(reply), 600);
    net.client(c).close();
    assert!(net.run_until(1000, |n| n.counters().connections_closed == 1));
    let c = net.counters();
    assert_eq!(
        (c.connections_opened, c.messages_received, c.messages_sent),
        (1, 1, 1)
    );
    assert_eq!(c.connections_active, 0);
}
