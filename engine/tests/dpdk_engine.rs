//! `engine --kind dpdk` (DPDK + smoltcp) through the bypass-engine suite
//! (`bypass_suite`), on net_af_packet and net_af_xdp, and under load on a
//! lossy link (`bypass_suite::load`).

mod bypass_suite;

#[test]
fn dpdk_engine_af_packet() {
    bypass_suite::exercise("dpdk", "af_packet");
}

#[test]
fn dpdk_engine_af_xdp() {
    bypass_suite::exercise("dpdk", "af_xdp");
}

/// 2000 short connections over a link losing 1 % of the server's frames:
/// every one answered, none reset.
#[test]
fn dpdk_engine_short_connections_over_a_lossy_link() {
    bypass_suite::load::short_connections_over_a_lossy_link("dpdk", "af_xdp");
}

/// 1000 clients that send garbage and never close leave the engine (capped
/// at 256 connections) serving new connections.
#[test]
fn dpdk_engine_garbage_clients_that_never_close() {
    bypass_suite::load::garbage_clients_that_never_close("dpdk", "af_xdp");
}

/// Short connections whose SYN-ACKs are often lost twice in a row, so that
/// clients retransmit their SYN: answered, none reset.
#[test]
fn dpdk_engine_short_connections_with_lost_syn_acks() {
    bypass_suite::load::short_connections_with_lost_syn_acks("dpdk", "af_xdp");
}
