//! `supervisor doctor --json` parses and tells the truth about netem.

mod common;

use common::supervisor;

#[test]
fn net_doctor_json_reports_netem_and_fallback() {
    let out = supervisor(&["doctor", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor JSON parses");
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
    // The truth, independently: can a netem qdisc be added in a throwaway
    // namespace?
    let probe = testbed::impairment::probe_netem();
    println!("netem: {netem}; backend {}", v["impairment_backend"]);
    assert_eq!(netem["ok"].as_bool(), Some(probe.available));
    if probe.available {
        assert_eq!(v["impairment_backend"], "netem");
    } else {
        assert_eq!(v["impairment_backend"], "emulator");
        let c = netem["consequence"].as_str().unwrap_or("");
        assert!(c.contains("emulator"), "{c}");
    }
    // Human form names the same verdict.
    let out = supervisor(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("netem"), "{text}");
}
