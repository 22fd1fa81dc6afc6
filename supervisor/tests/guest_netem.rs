//! The netem impairment backend, which this host's kernel lacks, run for
//! real inside an emulated Debian guest: `supervisor net up` with
//! `backend = "netem"`, a 10 000-ping probe between NS1 and NS3, `net
//! status`, then `net down`; and a two-host bench's peer server on an
//! engine host with netem (`serve --stdio` driven by its protocol), whose
//! netem is added for the server and removed after it.
//!
//! The delay is 1 ms, not the experiment's 100 µs: under software
//! emulation the guest's own round trip between two namespaces already
//! varies by hundreds of microseconds (and by milliseconds at the tail),
//! so 100 µs would not stand out in the RTT; 1 ms does. Every figure here
//! is a functional check inside an emulated machine, not a measurement.

mod support;

use std::time::Duration;

use support::guest::{self, GuestBuilder};
use support::SUPERVISOR;

const TESTBED: &str = r#"[testbed]
name = "gnetem"

[impairment]
backend = "netem"
delay_us = 1000
loss_percent = 1.0
direction = "from-ns3"

[cores]
engine = 1
loadgen = 0
emulator = 0
"#;

fn json(g: &guest::Guest, file: &str) -> serde_json::Value {
    let text = g.read_file(file).expect("the guest wrote it");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}: {text}"))
}

#[test]
fn guest_netem_backend_loses_one_percent_and_delays_one_millisecond() {
    if !guest::can_run_or_skip("guest_netem") {
        return;
    }
    // The script runs in the exchange folder; the supervisor under test is
    // the host's build, seen through the guest's 9p root.
    let script = format!(
        r#"set -u
S={SUPERVISOR}
down() {{ $S net down --config testbed.toml --json >down.json 2>down.err; }}
trap down EXIT
$S net up --config testbed.toml --json >up.json || exit 10
# Sleeping receives: two spinning vCPUs would starve QEMU's own threads.
# A reply later than 50 ms counts as lost; emulated jitter stays below.
$S net probe --config testbed.toml --count 10000 --timeout-us 50000 --blocking --json >probe.json || exit 11
$S net status --config testbed.toml --json >status.json || exit 12
trap - EXIT
down || exit 13
ip netns list >netns-after.txt
ip -o link show >links-after.txt
"#
    );
    let (g, out) = GuestBuilder::new("guest_netem")
        .file("testbed.toml", TESTBED)
        .timeout(Duration::from_secs(240))
        .run(&script)
        .expect("the guest runs");
    out.assert_success();
    eprintln!(
        "guest_netem: the guest ran {:.1} s",
        out.elapsed.as_secs_f64()
    );

    let up = json(&g, "up.json");
    assert_eq!(up["impairment"]["backend"], "netem", "{up}");

    let probe = json(&g, "probe.json");
    eprintln!("guest_netem: probe (emulated guest, functional only): {probe}");
    let sent = probe["sent"].as_u64().expect("sent");
    let loss = probe["loss_percent"].as_f64().expect("loss_percent");
    let p50 = probe["rtt_us"]["p50"].as_f64().expect("rtt p50");
    assert!(sent >= 10_000, "{probe}");
    assert!(
        (0.5..=1.5).contains(&loss),
        "probe loss {loss} % outside 0.5-1.5 %: {probe}"
    );
    assert!(
        p50 >= 1000.0,
        "RTT p50 {p50} us does not show the 1 ms delay: {probe}"
    );

    let status = json(&g, "status.json");
    let imp = &status["impairment"];
    assert_eq!(imp["backend"], "netem", "{status}");
    let seen = imp["observed"]["frames_seen"]
        .as_u64()
        .expect("frames_seen");
    let tc_loss = imp["observed"]["loss_percent"]
        .as_f64()
        .expect("observed loss");
    assert!(seen >= 10_000, "netem saw {seen} frames: {status}");
    assert!(
        (0.5..=1.5).contains(&tc_loss),
        "netem's own counters: {tc_loss} %: {status}"
    );

    let down = json(&g, "down.json");
    assert_eq!(down["had_state"], true, "{down}");
    let netns = g.read_file("netns-after.txt").expect("netns list");
    assert!(!netns.contains("gnetem"), "namespaces left: {netns}");
    let links = g.read_file("links-after.txt").expect("link list");
    assert!(!links.contains("gnetem"), "links left: {links}");
}

/// A two-host bench's peer server on an engine host that has netem (this
/// host has none, the guest does): `serve` puts the testbed's netem on the
/// named interface's egress while the server runs and removes it when the
/// server is stopped, and again at the session's teardown.
#[test]
fn guest_peer_server_gets_netem_while_it_runs_and_leaves_none() {
    if !guest::can_run_or_skip("guest_peer_netem") {
        return;
    }
    let version = contract::CONTRACT_VERSION;
    let start = r#"{"id":ID,"call":{"start_peer_server":{"server":{"iperf3":{"port":7102}},"core":0,"iface":"blp0","netem":{"delay_us":1000,"jitter_us":0,"loss_percent":1.0}}}}"#;
    let script = format!(
        r#"set -u
S={SUPERVISOR}
ip link add blp0 type veth peer name blp1 || exit 10
ip link set blp0 up && ip link set blp1 up || exit 10
mkfifo /tmp/serve.in || exit 10
$S serve --stdio </tmp/serve.in >replies.txt 2>serve.err &
SP=$!
exec 3>/tmp/serve.in
send() {{ echo "$1" >&3; }}
lines() {{
  for _ in $(seq 1 600); do
    [ "$(wc -l <replies.txt)" -ge "$1" ] && return 0
    sleep 0.1
  done
  exit 20
}}
send '{{"id":1,"call":{{"hello":{{"contract_version":{version},"testbed":"gpeer","role":"engine"}}}}}}'; lines 1
send '{start1}'; lines 2
tc qdisc show dev blp0 >during.txt
send '{{"id":3,"call":{{"stop_peer_server":{{"wait_ms":0}}}}}}'; lines 3
tc qdisc show dev blp0 >after-stop.txt
send '{start4}'; lines 4
tc qdisc show dev blp0 >during-again.txt
send '{{"id":5,"call":{{"teardown":{{}}}}}}'; lines 5
exec 3>&-
wait $SP
tc qdisc show dev blp0 >after-teardown.txt
ls -A /run/bypasslab >state-after.txt 2>/dev/null
ip link del blp0
exit 0
"#,
        start1 = start.replace("ID", "2"),
        start4 = start.replace("ID", "4"),
    );
    let (g, out) = GuestBuilder::new("guest_peer_netem")
        .timeout(Duration::from_secs(240))
        .run(&script)
        .expect("the guest runs");
    out.assert_success();
    let replies = g.read_file("replies.txt").expect("serve answered");
    let replies: Vec<&str> = replies.lines().collect();
    assert_eq!(replies.len(), 5, "{replies:?}");
    for started in [replies[1], replies[3]] {
        assert!(
            started.contains("peer_server_started")
                && started.contains("netem on blp0: 1000 µs delay, 1 % loss"),
            "{started}"
        );
    }
    assert!(replies[2].contains("peer_server_stopped"), "{}", replies[2]);
    assert!(
        replies[4].contains("removed netem from blp0"),
        "{}",
        replies[4]
    );
    for (file, netem) in [
        ("during.txt", true),
        ("after-stop.txt", false),
        ("during-again.txt", true),
        ("after-teardown.txt", false),
    ] {
        let qdisc = g.read_file(file).expect("tc ran");
        assert_eq!(qdisc.contains("netem"), netem, "{file}: {qdisc}");
        if netem {
            assert!(
                qdisc.contains("delay 1ms") && qdisc.contains("loss 1%"),
                "{qdisc}"
            );
        }
    }
    let state = g.read_file("state-after.txt").unwrap_or_default();
    assert!(!state.contains("gpeer"), "state left: {state}");
}
