//! `engine --kind fstack` (F-Stack on DPDK) through the bypass-engine suite
//! (`bypass_suite`), on net_af_packet and net_af_xdp, and under load on a
//! lossy link (`bypass_suite::load`).
//!
//! Needs a build with the `fstack` feature (an F-Stack 1.24 install found
//! through FF_PATH): without it the tests are listed as ignored, with the
//! reason.

mod bypass_suite;

#[test]
#[cfg_attr(
    not(feature = "fstack"),
    ignore = "engine built without the `fstack` feature: install F-Stack 1.24 and run with FF_PATH=<prefix> cargo test -p engine --features fstack"
)]
fn fstack_engine_af_packet() {
    bypass_suite::exercise("fstack", "af_packet");
}

#[test]
#[cfg_attr(
    not(feature = "fstack"),
    ignore = "engine built without the `fstack` feature: install F-Stack 1.24 and run with FF_PATH=<prefix> cargo test -p engine --features fstack"
)]
fn fstack_engine_af_xdp() {
    bypass_suite::exercise("fstack", "af_xdp");
}

#[test]
#[cfg_attr(
    not(feature = "fstack"),
    ignore = "engine built without the `fstack` feature: install F-Stack 1.24 and run with FF_PATH=<prefix> cargo test -p engine --features fstack"
)]
fn fstack_engine_short_connections_over_a_lossy_link() {
    bypass_suite::load::short_connections_over_a_lossy_link("fstack", "af_xdp");
}

#[test]
#[cfg_attr(
    not(feature = "fstack"),
    ignore = "engine built without the `fstack` feature: install F-Stack 1.24 and run with FF_PATH=<prefix> cargo test -p engine --features fstack"
)]
fn fstack_engine_garbage_clients_that_never_close() {
    bypass_suite::load::garbage_clients_that_never_close("fstack", "af_xdp");
}

#[test]
#[cfg_attr(
    not(feature = "fstack"),
    ignore = "engine built without the `fstack` feature: install F-Stack 1.24 and run with FF_PATH=<prefix> cargo test -p engine --features fstack"
)]
fn fstack_engine_short_connections_with_lost_syn_acks() {
    bypass_suite::load::short_connections_with_lost_syn_acks("fstack", "af_xdp");
}
