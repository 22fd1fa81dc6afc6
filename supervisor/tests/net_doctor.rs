//! `supervisor doctor --json` parses and tells the truth about netem.

mod support;

use std::process::Command;

use support::{require_root, run_bounded, supervisor, unique_name, QUICK};

/// A network namespace of this test's own, deleted when dropped.
struct ScratchNamespace(String);

impl ScratchNamespace {
    fn new() -> Self {
        let name = format!("{}-doctor", unique_name("nd"));
        let made = run_bounded(Command::new("ip").args(["netns", "add", &name]), QUICK);
        assert!(made.success(), "ip netns add {name}: {}", made.stderr);
        Self(name)
    }
}

impl Drop for ScratchNamespace {
    fn drop(&mut self) {
        let _ = run_bounded(Command::new("ip").args(["netns", "del", &self.0]), QUICK);
    }
}

/// Whether this kernel takes a netem qdisc, found out without any of the
/// supervisor's code: `tc` on the loopback of a namespace made here.
fn kernel_has_netem() -> bool {
    let ns = ScratchNamespace::new();
    let tc = run_bounded(
        Command::new("ip").args([
            "netns", "exec", &ns.0, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay",
            "1ms",
        ]),
        QUICK,
    );
    println!("tc netem in {}: {:?} {}", ns.0, tc.code, tc.stderr.trim());
    tc.success()
}

#[test]
fn net_doctor_json_reports_netem_and_fallback() {
    if !require_root("net_doctor_json_reports_netem_and_fallback") {
        return;
    }
    let out = supervisor(&["doctor", "--json"]);
    assert!(out.success(), "{}", out.stderr.clone());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("doctor JSON parses");
    let checks = v["checks"].as_array().expect("checks");
    for name in [
        "root",
        "namespaces",
        "netem",
        "hugepages",
        "hugetlbfs",
        "af_xdp",
        "bpf",
        "dpdk",
        "vfio_uio",
        "iommu",
        "modules",
        "fstack",
        "cores",
    ] {
        assert!(
            checks.iter().any(|c| c["name"] == name),
            "doctor has no {name} line"
        );
    }
    let netem = checks.iter().find(|c| c["name"] == "netem").expect("netem");
    // The truth, independently of doctor's own probe.
    let available = kernel_has_netem();
    println!("netem: {netem}; backend {}", v["impairment_backend"]);
    assert_eq!(netem["ok"].as_bool(), Some(available));
    if available {
        assert_eq!(v["impairment_backend"], "netem");
    } else {
        assert_eq!(v["impairment_backend"], "emulator");
        let c = netem["consequence"].as_str().unwrap_or("");
        assert!(c.contains("emulator"), "{c}");
    }
    // Human form names the same verdict.
    let out = supervisor(&["doctor"]);
    let text = out.stdout.clone();
    assert!(text.contains("netem"), "{text}");
}
