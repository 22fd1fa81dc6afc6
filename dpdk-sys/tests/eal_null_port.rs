//! The safe API end to end on the `net_null` driver: EAL without hugepages
//! or PCI, a pool, a started port, a burst out and in, the counters. Needs
//! root (EAL's runtime directory) and Debian's PMD plugins; one EAL per
//! process, so this file holds a single test.

use dpdk_sys::{DpdkError, Eal, Mempool, Port, PortConfig, MBUF_DEFAULT_BUF_SIZE};

/// Removes EAL's runtime directory even when the test fails.
struct RuntimeDir(std::path::PathBuf);

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn null_port_round_trip() {
    if !nix_is_root() {
        eprintln!("skipped: EAL needs root");
        return;
    }
    let prefix = format!("dpdksys-test-{}", std::process::id());
    let args: Vec<String> = [
        "-l",
        "0",
        "--no-huge",
        "-m",
        "64",
        "--no-pci",
        "--no-telemetry",
        "--log-level=*:warning",
        "--vdev=net_null0,copy=1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([format!("--file-prefix={prefix}")])
    .collect();
    let eal = Eal::init(&args).expect("EAL init");
    let _cleanup = RuntimeDir(eal.runtime_dir());
    assert!(eal.runtime_dir().ends_with(&prefix));
    assert!(matches!(
        Eal::init(&args),
        Err(DpdkError::AlreadyInitialized)
    ));

    let data_room = u16::try_from(MBUF_DEFAULT_BUF_SIZE).unwrap();
    let pool = Mempool::create(&eal, "test_pool", 1023, 32, data_room).expect("pool");
    let id = Port::id_by_name(&eal, "net_null0").expect("net_null0 probed");
    assert!(matches!(
        Port::id_by_name(&eal, "net_nope0"),
        Err(DpdkError::PortNotFound { .. })
    ));
    let mut port = Port::start(&eal, &pool, id, &PortConfig::default()).expect("start");
    assert_eq!(port.mac_addr().unwrap().len(), 6);
    // A second start of the running port is refused before any DPDK call,
    // and leaves the first one running (the round trip below uses it).
    assert!(matches!(
        Port::start(&eal, &pool, id, &PortConfig::default()),
        Err(DpdkError::PortInUse { port }) if port == id
    ));
    assert!(port.stats().is_ok(), "the running port was left alone");

    let mut out = Vec::new();
    for i in 0..4u8 {
        let mut m = pool.alloc().expect("mbuf");
        m.append(60).expect("tailroom").fill(i);
        assert_eq!(m.len(), 60);
        assert_eq!(m.data()[59], i);
        out.push(m);
    }
    assert!(pool.alloc().unwrap().append(u16::MAX).is_none());
    let sent = port.tx_burst(&mut out);
    assert_eq!(sent + out.len(), 4);
    drop(out);

    // net_null hands out empty frames on every receive call.
    let mut got = Vec::new();
    let n = port.rx_burst(&mut got, 8);
    assert_eq!(n, got.len());
    drop(got);

    let stats = port.stats().unwrap();
    assert_eq!(stats.opackets, sent as u64);
    assert_eq!(stats.ipackets, n as u64);
    drop(port);
    drop(pool);
    drop(eal);
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
