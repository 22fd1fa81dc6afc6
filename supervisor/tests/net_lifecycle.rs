//! `net up` / `down` / `status` against real namespaces (root only).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use support::{require_root, snapshot, Testbed};
use testbed::net::probe::enter;

/// A TCP connection from NS1 to NS3 that exchanges bytes both ways.
fn tcp_exchange(tb: &Testbed) {
    let server = SocketAddrV4::new(tb.cfg.server_addr(), tb.cfg.port());
    let ns3 = tb.cfg.server_ns();
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = std::thread::spawn(move || {
        enter(&ns3, None).expect("enter NS3");
        let l = TcpListener::bind(server).expect("listen in NS3");
        tx.send(()).expect("signal ready");
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("read request");
        assert_eq!(&buf, b"hello");
        s.write_all(b"world").expect("write reply");
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    let ns1 = tb.cfg.client_ns();
    let cli = std::thread::spawn(move || {
        enter(&ns1, None).expect("enter NS1");
        let mut s = TcpStream::connect_timeout(&server.into(), Duration::from_secs(5))
            .expect("connect NS1 -> NS3");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(b"hello").expect("write request");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("read reply");
        assert_eq!(&buf, b"world");
    });
    cli.join().expect("client thread");
    srv.join().expect("server thread");
}

#[test]
fn net_up_connects_is_idempotent_and_down_leaves_nothing() {
    if !require_root("net_up_connects_is_idempotent_and_down_leaves_nothing") {
        return;
    }
    let before_all = snapshot("");
    let tb = Testbed::new("nt", "");
    let before = snapshot(&tb.name);
    let first = tb.up();
    assert_eq!(first["up"], true, "{first:#}");
    let backend = first["impairment"]["backend"]
        .as_str()
        .unwrap_or("")
        .to_string();
    println!(
        "backend in force: {backend} ({})",
        first["impairment"]["reason"]
    );
    tcp_exchange(&tb);

    // Twice is harmless: same objects, same emulator process.
    let second = tb.up();
    assert_eq!(second["up"], true);
    assert_eq!(first["links"], second["links"]);
    assert_eq!(
        first["impairment"]["emulator"]["pid"],
        second["impairment"]["emulator"]["pid"]
    );
    tcp_exchange(&tb);

    let status = tb.status();
    assert_eq!(
        status["impairment"]["backend"].as_str(),
        Some(backend.as_str())
    );
    let pid = status["impairment"]["emulator"]["pid"].as_i64();

    let out = tb.net("down", &[]);
    assert!(out.success(), "{}", out.stderr.clone());
    assert_eq!(snapshot(&tb.name), before, "down left objects behind");
    if let Some(pid) = pid {
        let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            });
        assert!(gone, "emulator {pid} still running after down");
    }
    assert!(!tb.cfg.state_dir().path().join("net.json").exists());
    // Nothing else on the host changed either (namespaces, qdiscs, tables).
    let after_all = snapshot("");
    assert_eq!(before_all.nft_tables, after_all.nft_tables);
    assert_eq!(before_all.qdiscs, after_all.qdiscs);
    // A second down is harmless.
    let out = tb.net("down", &[]);
    assert!(out.success());
}

#[test]
fn net_plain_bridge_connects() {
    if !require_root("net_plain_bridge_connects") {
        return;
    }
    let tb = Testbed::new("nt", "[impairment]\nbackend = \"none\"\n");
    let st = tb.up();
    assert_eq!(st["impairment"]["backend"], "none");
    tcp_exchange(&tb);
}

#[test]
fn net_refuses_namespace_it_did_not_create() {
    if !require_root("net_refuses_namespace_it_did_not_create") {
        return;
    }
    let tb = Testbed::new("nt", "");
    let foreign = tb.cfg.bridge_ns();
    struct Foreign(String);
    impl Drop for Foreign {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let ok = std::process::Command::new("ip")
        .args(["netns", "add", &foreign])
        .status()
        .expect("ip netns add");
    assert!(ok.success());
    let _guard = Foreign(foreign.clone());

    let out = tb.net("up", &[]);
    assert!(!out.success(), "net up adopted a foreign namespace");
    let err = out.stderr.clone();
    println!("{err}");
    assert!(
        err.contains(&foreign) && err.contains("not created by"),
        "{err}"
    );
    // down must leave the foreign namespace alone.
    let out = tb.net("down", &[]);
    assert!(out.success());
    assert!(std::path::Path::new("/run/netns").join(&foreign).exists());
}

#[test]
fn net_down_after_crashed_emulator_and_partial_state() {
    if !require_root("net_down_after_crashed_emulator_and_partial_state") {
        return;
    }
    let tb = Testbed::new("nt", "[impairment]\nbackend = \"emulator\"\n");
    let before = snapshot(&tb.name);
    let st = tb.up();
    // The emulator dies unexpectedly.
    if let Some(pid) = st["impairment"]["emulator"]["pid"].as_i64() {
        let pid = i32::try_from(pid).expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill emulator");
        // SIGKILL is asynchronous: wait (bounded) until it is gone.
        for _ in 0..200 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty()
                || stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let st = tb.status();
    assert_eq!(st["up"], false, "status must notice the dead emulator");
    // `up` repairs it.
    let st = tb.up();
    assert_eq!(st["up"], true);
    assert_eq!(st["impairment"]["emulator"]["running"], true);
    // A run that crashed after recording, before creating: a recorded
    // namespace and link that do not exist are skipped by down.
    let state_path = tb.cfg.state_dir().path().join("net.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).expect("state")).expect("json");
    state["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(format!("{}-nsx", tb.name).into());
    std::fs::write(&state_path, state.to_string()).expect("write state");
    let out = tb.net("down", &["--json"]);
    assert!(out.success(), "{}", out.stderr.clone());
    assert_eq!(snapshot(&tb.name), before);
}
