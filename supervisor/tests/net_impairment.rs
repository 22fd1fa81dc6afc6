//! The default impairment (0.1 ms, 1 %, from NS3 to NS1) does what it says:
//! loss in the impaired direction within 0.5–1.6 % over ≥ 20 000 frames,
//! median RTT 90–150 µs above the unimpaired (plain bridge) testbed.
//! Figures are printed; run with `--nocapture` to see them.

mod support;

use support::{require_root, Testbed};
use testbed::net::probe::{udp_pingpong, ProbeOptions};

#[test]
fn net_impairment_loss_and_delay_match_config() {
    if !require_root("net_impairment_loss_and_delay_match_config") {
        return;
    }
    let opts = ProbeOptions {
        count: 20_500,
        // Generous: on a busy machine a late reply is scheduling, not loss.
        timeout: std::time::Duration::from_millis(20),
        ..ProbeOptions::default()
    };

    let plain = Testbed::new("nt", "[impairment]\nbackend = \"none\"\n");
    plain.up();
    let base = udp_pingpong(&plain.cfg, &opts).expect("probe plain bridge");
    drop(plain);

    // The defaults: auto backend, 100 µs, 1 %, from-ns3.
    let imp = Testbed::new("nt", "");
    let st = imp.up();
    let backend = st["impairment"]["backend"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let r = udp_pingpong(&imp.cfg, &opts).expect("probe impaired testbed");
    // The emulator publishes its counters every 100 ms.
    std::thread::sleep(std::time::Duration::from_millis(250));
    let st = imp.status();
    let obs = &st["impairment"]["observed"];
    let seen = obs["frames_seen"].as_u64().unwrap_or(0);
    let dropped = obs["frames_dropped"].as_u64().unwrap_or(0);
    let loss = obs["loss_percent"].as_f64().unwrap_or(f64::NAN);

    let p50 = |x: &testbed::net::probe::ProbeReport| x.rtt_us.as_ref().map_or(f64::NAN, |r| r.p50);
    let rise = p50(&r) - p50(&base);
    println!(
        "plain bridge: {} pings, lost {}, rtt p50 {:.1} us p99 {:.1} us",
        base.sent,
        base.lost,
        p50(&base),
        base.rtt_us.as_ref().map_or(f64::NAN, |x| x.p99)
    );
    println!(
        "impaired ({backend}, 100 us, 1 %, from-ns3): {} pings, client saw {} lost ({:.3} %), rtt p50 {:.1} us p99 {:.1} us",
        r.sent,
        r.lost,
        r.loss_percent,
        p50(&r),
        r.rtt_us.as_ref().map_or(f64::NAN, |x| x.p99)
    );
    println!(
        "observed in the impaired direction ({}): {dropped} dropped of {seen} frames = {loss:.3} %",
        obs["source"]
    );
    println!("median RTT rise over the plain bridge: {rise:.1} us");

    assert!(
        seen >= 20_000,
        "only {seen} frames in the impaired direction"
    );
    assert!(
        (0.5..=1.6).contains(&loss),
        "observed loss {loss:.3} % outside 0.5..=1.6"
    );
    // End to end, a ping also counts as lost when the machine is too busy
    // to answer within the timeout: printed above, not asserted.
    assert!(
        (90.0..=150.0).contains(&rise),
        "median RTT rise {rise:.1} us outside 90..=150"
    );
}
