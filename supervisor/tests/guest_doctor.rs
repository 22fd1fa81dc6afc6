//! `supervisor doctor` where everything it looks for exists: inside an
//! emulated Debian guest on q35 with an emulated Intel IOMMU, with the
//! guest kernel's modules, netem, and igb_uio installed where dkms would
//! install it. On this host most of these lines say "missing"; in the
//! guest each must say what is really there.

mod support;

use std::time::Duration;

use support::guest::{self, GuestBuilder, Machine};
use support::SUPERVISOR;

#[test]
fn guest_doctor_sees_netem_iommu_and_the_pci_drivers() {
    if !guest::can_run_or_skip("guest_doctor") {
        return;
    }
    guest::prepare(true).expect("igb_uio builds for the guest kernel");
    // prepare --igb-uio installed igb_uio where `dkms install` would.
    let script = format!(
        r#"set -eu
{SUPERVISOR} doctor --json >doctor.json
"#
    );
    let (g, out) = GuestBuilder::new("guest_doctor")
        .machine(Machine::Q35Iommu)
        .timeout(Duration::from_secs(180))
        .run(&script)
        .expect("the guest runs");
    out.assert_success();
    eprintln!(
        "guest_doctor: the guest ran {:.1} s",
        out.elapsed.as_secs_f64()
    );
    let text = g.read_file("doctor.json").expect("doctor.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("doctor JSON parses");
    for c in v["checks"].as_array().into_iter().flatten() {
        eprintln!(
            "guest_doctor: {:<5} {:<15} {}",
            c["ok"],
            c["name"].as_str().unwrap_or(""),
            c["detail"].as_str().unwrap_or("")
        );
    }
    let ok = |name: &str| -> bool {
        let c = v["checks"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("doctor has no {name} line: {v}"));
        c["ok"].as_bool().unwrap_or_else(|| panic!("{name}: {c}"))
    };
    for name in [
        "root",
        "netem",
        "modules",
        "iommu",
        "vfio_uio",
        "uio_pci_generic",
        "vfio_pci",
        "igb_uio",
    ] {
        assert!(ok(name), "doctor in the guest: {name} not ok: {v}");
    }
    // Debian's kernels are built without CONFIG_VFIO_NOIOMMU, and no
    // Debian package has rte_kni: doctor must not claim either.
    assert!(!ok("vfio_noiommu"), "{v}");
    assert!(!ok("rte_kni"), "{v}");
    assert_eq!(v["impairment_backend"], "netem", "{v}");
}
