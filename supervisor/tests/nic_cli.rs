//! `supervisor nic` on this host, where nothing may be bound: the host's
//! own NIC is how it is reached. Only what never writes to sysfs runs
//! here: `status`, and targets that are refused before any write (not on
//! the bus, no such interface, not a NIC, nothing recorded). Binding for
//! real happens inside a guest (guest_dpdk.rs); the bind's logic against a
//! fake sysfs tree (testbed's nic unit tests).

mod support;

use support::{require_root, supervisor, Ran};

fn refused(ran: &Ran, code: i32, needles: &[&str]) {
    assert_eq!(ran.code, Some(code), "exit code; stderr: {}", ran.stderr);
    for n in needles {
        assert!(ran.stderr.contains(n), "no `{n}` in: {}", ran.stderr);
    }
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
}

#[test]
fn nic_status_lists_network_functions_and_the_drivers() {
    let ran = supervisor(&["nic", "status", "--json"]);
    assert!(ran.success(), "{}", ran.stderr);
    let v = ran.json();
    let drivers: Vec<&str> = v["drivers"]
        .as_array()
        .expect("drivers")
        .iter()
        .filter_map(|d| d["driver"].as_str())
        .collect();
    assert_eq!(drivers, ["vfio-pci", "uio_pci_generic", "igb_uio"], "{v}");
    for d in v["devices"].as_array().expect("devices") {
        assert!(
            d["class"].as_str().is_some_and(|c| c.starts_with("0x02")),
            "{d}"
        );
        assert!(d["address"].as_str().is_some(), "{d}");
    }
    let text = supervisor(&["nic", "status"]);
    assert!(text.success(), "{}", text.stderr);
    assert!(text.stdout.contains("default driver"), "{}", text.stdout);
}

#[test]
fn nic_bind_refuses_what_is_not_a_nic_of_this_host_before_touching_anything() {
    refused(
        &supervisor(&["nic", "bind", "0000:ff:1f.7"]),
        2,
        &[
            "PCI device 0000:ff:1f.7 does not exist",
            "supervisor nic status",
        ],
    );
    refused(
        &supervisor(&["nic", "bind", "bypasslab-none0"]),
        2,
        &["`bypasslab-none0` is neither a PCI address"],
    );
    refused(
        &supervisor(&["nic", "bind", "bypasslab-none0", "--driver", "virtio-pci"]),
        2,
        &["invalid value 'virtio-pci'"],
    );
    refused(&supervisor(&["nic", "unbind"]), 2, &["<TARGET>"]);
    // A function of the bus that is not a network controller (a host
    // bridge, say), if this host has one.
    let other = std::fs::read_dir("/sys/bus/pci/devices")
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| {
            std::fs::read_to_string(e.path().join("class")).is_ok_and(|c| !c.starts_with("0x02"))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned());
    match other {
        Some(addr) => refused(
            &supervisor(&["nic", "bind", &addr]),
            2,
            &[&format!("{addr} is not a network controller")],
        ),
        None => eprintln!("no non-network PCI function here: that case skipped"),
    }
}

#[test]
fn nic_unbind_of_what_nic_bind_did_not_bind_says_so() {
    if !require_root("nic_unbind_of_what_nic_bind_did_not_bind_says_so") {
        return;
    }
    // A well-formed address nothing recorded (nor on the bus).
    refused(
        &supervisor(&["nic", "unbind", "0000:ff:1f.7"]),
        1,
        &["nothing is recorded for 0000:ff:1f.7"],
    );
}
