//! The NIC commands against a fake sysfs tree (see [`super::fake`]): they
//! run on any machine, root or not, and touch nothing of the host's.

use super::device::{self, PciDevice};
use super::fake::FakeHost;
use super::ops::{self, Plan, RunHold};
use super::{bind, module, Asker, Binding, Driver, NicError};

const ETHERNET: &str = "0x020000";

/// A host with one virtio NIC (eth0) and a disk controller.
fn one_nic(tag: &str) -> (FakeHost, contract::PciAddress) {
    let fake = FakeHost::new(tag);
    let nic = fake.function("0000:00:03.0", ETHERNET, Some("virtio-pci"), &["eth0"]);
    fake.function("0000:00:01.1", "0x010180", Some("ata_piix"), &[]);
    fake.driver("uio_pci_generic");
    fake.driver("vfio-pci");
    (fake, nic)
}

#[test]
fn status_lists_network_functions_with_their_interfaces_and_holders() {
    let (fake, nic) = one_nic("status");
    fake.links.addressed(
        "eth0",
        "10.0.0.2/24",
        "10.0.0.0/24 proto kernel scope link src 10.0.0.2",
    );
    let host = fake.host();
    let status = ops::status(&host, &[]).unwrap();
    assert_eq!(status.devices.len(), 1, "the disk controller is not listed");
    let d = &status.devices[0];
    assert_eq!(d.device.address, nic);
    assert_eq!(d.device.driver.as_deref(), Some("virtio-pci"));
    assert_eq!(d.device.interface_names(), ["eth0"]);
    assert_eq!(
        d.in_use,
        [
            "eth0 is up with address 10.0.0.2/24",
            "eth0 carries route `10.0.0.0/24 proto kernel scope link src 10.0.0.2`"
        ]
    );
    assert!(d.bound_by.is_none());
    assert!(!status.iommu);
    assert_eq!(status.default_driver, Driver::UioPciGeneric);
    let text = status.to_string();
    assert!(
        text.contains("0000:00:03.0  1af4:1000  driver virtio-pci"),
        "{text}"
    );
    assert!(text.contains("eth0 up, address 10.0.0.2/24"), "{text}");
    // A run's binding shows as the run's.
    let hold = RunHold {
        testbed: "bl".into(),
        alive: false,
        binding: Binding {
            address: nic.clone(),
            driver: Driver::VfioPci,
            original_driver: Some("virtio-pci".into()),
            interfaces: vec!["eth0".into()],
            original_override: None,
            loaded_module: false,
        },
    };
    let status = ops::status(&host, &[hold]).unwrap();
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["devices"][0]["bound_by"]["by"], "run", "{json}");
    assert_eq!(json["devices"][0]["bound_by"]["testbed"], "bl", "{json}");
    assert_eq!(json["devices"][0]["address"], "0000:00:03.0", "{json}");
}

#[test]
fn targets_are_addresses_or_interfaces() {
    let (fake, nic) = one_nic("resolve");
    assert_eq!(device::resolve(&fake.sysfs, "0000:00:03.0").unwrap(), nic);
    assert_eq!(device::resolve(&fake.sysfs, "eth0").unwrap(), nic);
    let e = device::resolve(&fake.sysfs, "eth9").unwrap_err();
    assert!(
        matches!(e, NicError::NoSuchTarget(_)) && e.is_usage(),
        "{e}"
    );
    let e = device::resolve(&fake.sysfs, "0000:00:09.0").unwrap_err();
    assert!(matches!(e, NicError::NoDevice(_)) && e.is_usage(), "{e}");
    let disk = "0000:00:01.1".parse().unwrap();
    let e = PciDevice::read(&fake.sysfs, &fake.links, &disk).unwrap_err();
    assert!(matches!(e, NicError::NotNetwork { .. }), "{e}");
}

#[test]
fn an_interface_in_use_is_refused_by_name_unless_forced() {
    let (fake, nic) = one_nic("refuse");
    fake.links
        .addressed("eth0", "10.0.0.2/24", "default via 10.0.0.1");
    let host = fake.host();
    let e = ops::bind(&host, &nic, None, false, &[]).unwrap_err();
    let text = e.to_string();
    for needle in [
        "refusing to bind 0000:00:03.0",
        "eth0 is up with address 10.0.0.2/24",
        "eth0 carries route `default via 10.0.0.1`",
        "ip addr flush dev eth0",
        "--force",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(!e.is_usage());
    // Nothing changed, nothing recorded.
    assert_eq!(fake.sysfs.driver(&nic).as_deref(), Some("virtio-pci"));
    assert!(host.records.read().unwrap().is_empty());
    // A run's refusal offers `nic bind --force` instead.
    let e = Plan::check(&host, &nic, None, false, Asker::Run).unwrap_err();
    assert!(e.to_string().contains("supervisor nic bind --force"), "{e}");
    // --force binds it.
    let b = ops::bind(&host, &nic, None, true, &[]).unwrap().unwrap();
    assert_eq!(b.driver, Driver::UioPciGeneric);
    assert_eq!(fake.sysfs.driver(&nic).as_deref(), Some("uio_pci_generic"));
    ops::unbind(&host, Some(&nic), &[]).unwrap();
}

#[test]
fn bind_records_first_and_unbind_restores_exactly() {
    let (fake, nic) = one_nic("bind");
    let host = fake.host();
    let b = ops::bind(&host, &nic, Some(Driver::UioPciGeneric), false, &[])
        .unwrap()
        .expect("a new binding");
    assert_eq!(b.original_driver.as_deref(), Some("virtio-pci"));
    assert!(!b.loaded_module, "the driver was registered already");
    assert_eq!(fake.sysfs.driver(&nic).as_deref(), Some("uio_pci_generic"));
    assert_eq!(
        fake.sysfs.driver_override(&nic).as_deref(),
        Some("uio_pci_generic")
    );
    assert_eq!(host.records.read().unwrap(), std::slice::from_ref(&b));
    assert_eq!(
        fake.sysfs.driven_by("uio_pci_generic"),
        std::slice::from_ref(&nic)
    );
    // Twice is refused, naming the way back.
    let e = ops::bind(&host, &nic, None, false, &[]).unwrap_err();
    assert!(matches!(e, NicError::AlreadyBound { .. }), "{e}");
    assert!(
        e.to_string().contains("supervisor nic unbind 0000:00:03.0"),
        "{e}"
    );
    // The interface went with the kernel's driver: its record still
    // names it.
    assert_eq!(b.interfaces, ["eth0"]);
    let addr = ops::resolve_bound(&host, "eth0", &[]).unwrap();
    assert_eq!(addr, nic);
    let report = ops::unbind(&host, Some(&addr), &[]).unwrap();
    assert_eq!(report.done, ["gave 0000:00:03.0 back to virtio-pci"]);
    assert!(report.problems.is_empty());
    assert_eq!(fake.sysfs.driver(&nic).as_deref(), Some("virtio-pci"));
    assert_eq!(fake.sysfs.driver_override(&nic), None);
    assert!(host.records.read().unwrap().is_empty());
    assert!(!host.records.path().exists(), "an empty record is removed");
    let e = ops::unbind(&host, Some(&nic), &[]).unwrap_err();
    assert!(matches!(e, NicError::NotRecorded { .. }), "{e}");
}

#[test]
fn vfio_needs_an_iommu_and_is_the_default_with_one() {
    let (fake, nic) = one_nic("vfio");
    let host = fake.host();
    let e = ops::bind(&host, &nic, Some(Driver::VfioPci), false, &[]).unwrap_err();
    assert!(matches!(e, NicError::NeedsIommu(_)), "{e}");
    assert!(e.to_string().contains("uio_pci_generic"), "{e}");
    // An IOMMU, but this function outside every group.
    let other = fake.function("0000:00:04.0", ETHERNET, Some("virtio-pci"), &["eth1"]);
    fake.iommu_group(&other, "7");
    let e = ops::bind(&host, &nic, Some(Driver::VfioPci), false, &[]).unwrap_err();
    assert!(matches!(e, NicError::NoIommuGroup(_)), "{e}");
    assert_eq!(Driver::default_for(&fake.sysfs), Driver::VfioPci);
    let b = ops::bind(&host, &other, None, false, &[]).unwrap().unwrap();
    assert_eq!(b.driver, Driver::VfioPci);
    assert_eq!(fake.sysfs.driver(&other).as_deref(), Some("vfio-pci"));
    let report = ops::unbind(&host, None, &[]).unwrap();
    assert_eq!(report.done, ["gave 0000:00:04.0 back to virtio-pci"]);
    assert_eq!(fake.sysfs.driver(&other).as_deref(), Some("virtio-pci"));
}

#[test]
fn a_driver_that_refuses_leaves_the_function_as_it_was() {
    let (fake, nic) = one_nic("refusing");
    fake.refusing_driver("igb_uio");
    let host = fake.host();
    let e = ops::bind(&host, &nic, Some(Driver::IgbUio), false, &[]).unwrap_err();
    assert!(matches!(e, NicError::DidNotTake { .. }), "{e}");
    assert!(e.to_string().starts_with("step `bind`"), "{e}");
    assert_eq!(fake.sysfs.driver(&nic).as_deref(), Some("virtio-pci"));
    assert_eq!(fake.sysfs.driver_override(&nic), None);
    assert!(host.records.read().unwrap().is_empty());
}

#[test]
fn a_function_a_run_holds_is_not_touched() {
    let (fake, nic) = one_nic("held");
    let host = fake.host();
    let hold = RunHold {
        testbed: "gpci".into(),
        alive: true,
        binding: Binding {
            address: nic.clone(),
            driver: Driver::UioPciGeneric,
            original_driver: Some("virtio-pci".into()),
            interfaces: vec!["eth0".into()],
            original_override: None,
            loaded_module: false,
        },
    };
    // Its interface, gone with the kernel's driver, still names it.
    let holds = std::slice::from_ref(&hold);
    remove_interfaces(&fake, &nic);
    assert_eq!(ops::resolve_bound(&host, "eth0", holds).unwrap(), nic);
    for e in [
        ops::bind(&host, &nic, None, false, std::slice::from_ref(&hold)).unwrap_err(),
        ops::unbind(&host, Some(&nic), std::slice::from_ref(&hold)).unwrap_err(),
    ] {
        assert!(matches!(e, NicError::HeldByRun { .. }), "{e}");
        assert!(e.to_string().contains("`gpci`"), "{e}");
    }
}

#[test]
fn giving_back_after_a_crash_mid_bind_clears_the_override() {
    let (fake, nic) = one_nic("crash");
    // The bind had written the override when it was killed.
    fake.set_override(&nic, "vfio-pci");
    let binding = Binding {
        address: nic.clone(),
        driver: Driver::VfioPci,
        original_driver: Some("virtio-pci".into()),
        interfaces: vec!["eth0".into()],
        original_override: None,
        loaded_module: false,
    };
    assert_eq!(
        bind::restore(&fake.sysfs, &binding).unwrap(),
        bind::Restored::AlreadyThere
    );
    assert_eq!(fake.sysfs.driver_override(&nic), None);
    // And after the bind itself: back to the original driver.
    bind::bind(&fake.sysfs, &nic, Driver::UioPciGeneric).unwrap();
    assert_eq!(
        bind::restore(&fake.sysfs, &binding).unwrap(),
        bind::Restored::GaveBack
    );
    assert_eq!(fake.sysfs.driver(&nic).as_deref(), Some("virtio-pci"));
}

#[test]
fn a_module_that_cannot_load_is_reported_with_modprobes_words() {
    // A name no kernel has: nothing is loaded on any host.
    let e = module::load("bypasslab-no-such-module", "build it first").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("modprobe bypasslab-no-such-module"), "{text}");
    assert!(
        text.contains("build it first") || text.contains("install it"),
        "{text}"
    );
}

/// What a userspace driver's bind does to the kernel's interfaces.
fn remove_interfaces(fake: &FakeHost, addr: &contract::PciAddress) {
    std::fs::remove_dir_all(fake.sysfs.device_dir(addr).join("virtio0")).unwrap();
    assert!(fake.sysfs.interfaces(addr).is_empty());
}
