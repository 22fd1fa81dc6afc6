//! The poll loop of the dpdk engine, in the spirit of DPDK's
//! `examples/skeleton/basicfwd.c`: one thread, no logging inside the loop,
//! a stop flag checked on every pass, counters on a timer.
//!
//! One pass: rx burst → stack poll (ARP, TCP input, pending output) →
//! serve (each connection: flush replies, read, answer) → stack poll again
//! when anything was served (its replies leave in this same pass) → tx
//! flush. Without received frames the stack is only polled when one of its
//! timers is due or every `SWEEP` (1 ms), so an idle pass costs one rx
//! burst and a clock read, whatever the number of sockets.

use std::time::{Duration as StdDuration, Instant as StdInstant};

use dpdk_stack::config::PortAddr;
use dpdk_stack::{merge_link_counters, BurstDevice, StackClock};
use smoltcp::iface::Interface;
use smoltcp::time::{Duration, Instant};

use super::pool::{PoolConfig, SocketPool};
use crate::context::ServeContext;

/// Sizes and timings of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// The stack's address (`[port0]`).
    pub addr: PortAddr,
    /// The socket pool.
    pub pool: PoolConfig,
    /// After stop: how long to keep serving so that replies in flight
    /// leave.
    pub drain: StdDuration,
    /// How often the port's counters are read (each read may be a syscall
    /// for the af_* drivers).
    pub stats_interval: StdDuration,
}

impl ServerConfig {
    /// Defaults for `addr:port`.
    #[must_use]
    pub fn new(addr: PortAddr, port: u16) -> Self {
        Self {
            addr,
            pool: PoolConfig {
                port,
                listen_backlog: 64,
                max_sockets: 4096,
                socket_buffer: 32 * 1024,
                // Linux waits 60 s in FIN-WAIT-2; a benchmark's peers close
                // within milliseconds, and a stuck socket is lost to the
                // pool until then.
                half_close_timeout: Duration::from_secs(10),
                keep_alive: Duration::from_secs(10),
                peer_timeout: Duration::from_secs(30),
                rto_min: None,
            },
            drain: StdDuration::from_millis(200),
            stats_interval: StdDuration::from_millis(100),
        }
    }
}

/// Longest time between two polls of the stack and sweeps of the sockets
/// when no frame arrives.
const SWEEP: Duration = Duration::from_millis(1);

/// The stack and its sockets over one device.
pub struct Server {
    config: ServerConfig,
    iface: Interface,
    pool: SocketPool,
    clock: StackClock,
    /// When the stack next needs a poll without received frames.
    next_poll: Instant,
}

impl Server {
    /// Sets up the interface (address, default route, `mac`) and the
    /// listening sockets.
    pub fn new(config: ServerConfig, device: &mut impl BurstDevice, mac: [u8; 6]) -> Self {
        let clock = StackClock::new();
        let iface = dpdk_stack::interface(
            device,
            mac,
            config.addr,
            dpdk_stack::run_seed(),
            clock.now(),
        );
        Self {
            config,
            iface,
            pool: SocketPool::new(config.pool),
            clock,
            next_poll: Instant::from_micros(0),
        }
    }

    /// Serves until `ctx.should_stop()`, drains, and publishes the final
    /// counters.
    pub fn run(&mut self, device: &mut impl BurstDevice, ctx: &mut ServeContext) {
        let mut next_stats = StdInstant::now();
        let mut passes = shm_layout::PassClock::start();
        while !ctx.should_stop() {
            let worked = self.pass(device, ctx, self.clock.now());
            let now = StdInstant::now();
            passes.end_pass_at(worked, now, &mut ctx.counters);
            if now >= next_stats {
                next_stats = now + self.config.stats_interval;
                merge_link_counters(
                    &device.link_counters(),
                    &mut ctx.counters,
                    &mut ctx.measured,
                );
            }
            ctx.maybe_publish();
        }
        self.drain(device, ctx);
    }

    /// After stop: serve briefly so replies already decided leave, then
    /// close every connection gracefully, push the FINs out and publish.
    fn drain(&mut self, device: &mut impl BurstDevice, ctx: &mut ServeContext) {
        let deadline = StdInstant::now() + self.config.drain;
        while StdInstant::now() < deadline {
            self.pass(device, ctx, self.clock.now());
            if self.pool.all_sent() && !device.tx_pending() {
                break;
            }
        }
        self.pool.close_all(&mut ctx.counters);
        self.pool.poll(&mut self.iface, self.clock.now(), device);
        device.tx_flush();
        merge_link_counters(
            &device.link_counters(),
            &mut ctx.counters,
            &mut ctx.measured,
        );
        ctx.publish_now();
    }

    /// The socket pool (tests look at its regions).
    #[cfg(test)]
    pub(super) fn pool(&self) -> &SocketPool {
        &self.pool
    }

    /// One pass of the loop at `now`; whether it found any work.
    pub(super) fn pass(
        &mut self,
        device: &mut impl BurstDevice,
        ctx: &mut ServeContext,
        now: Instant,
    ) -> bool {
        let received = device.rx_burst();
        if received == 0 && now < self.next_poll {
            return device.tx_pending() && device.tx_flush() > 0;
        }
        let changed = self.pool.poll(&mut self.iface, now, device);
        let served = self.pool.serve(&mut ctx.counters, now);
        if served {
            // The replies just queued leave in this same pass.
            self.pool.poll(&mut self.iface, now, device);
        }
        if changed || served {
            self.pool.balance_listeners();
        }
        let sweep = now + SWEEP;
        self.next_poll = self
            .pool
            .poll_at(&mut self.iface, now)
            .map_or(sweep, |at| at.min(sweep));
        let sent = device.tx_flush();
        received > 0 || changed || served || sent > 0
    }
}
