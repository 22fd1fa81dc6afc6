//! `engine --kind dpdk` (DPDK + smoltcp) through the bypass-engine suite
//! (`bypass_suite`), on net_af_packet and net_af_xdp.

mod bypass_suite;

#[test]
fn dpdk_engine_af_packet() {
    bypass_suite::exercise("dpdk", "af_packet");
}

#[test]
fn dpdk_engine_af_xdp() {
    bypass_suite::exercise("dpdk", "af_xdp");
}
