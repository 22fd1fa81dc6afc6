//! Bad input, as a table: configuration files, command lines, wire protocol
//! garbage, shared-memory segments, hugepages and names. Each case expects a
//! clear error naming the problem (exit code + message substring, never a
//! Debug string), no panic and no hang (every process and socket is bounded
//! in time); the protocol cases also check that the engine keeps serving a
//! well-behaved client. Each case prints one row `id | input | outcome`,
//! listed in docs/RELIABILITY.md.
//!
//! Not repeated here: net_config.rs (unknown `[testbed]` key, loss 150,
//! overlapping and invalid addresses, bad direction and core),
//! net_lifecycle.rs (a namespace the testbed did not create),
//! shm-layout/tests/validation.rs (21 segment validation cases),
//! engine/tests/kernel_engine.rs (garbage, half messages, resets, the
//! connection cap), loadgen/tests/fake_servers.rs (mismatching and silent
//! servers).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shm_layout::{CreateOptions, Segment, ShmError};
use support::{bin_dir, engines, finish, require_root, Ran, Testbed, SUPERVISOR};

fn row(id: &str, input: &str, outcome: &str) {
    println!("{id:<4} | {input} | {outcome}");
}

/// Runs `program args`, bounded to 30 s.
fn run_bounded(program: &Path, args: &[&str]) -> Ran {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child, Duration::from_secs(30))
}

fn assert_refused(id: &str, input: &str, ran: &Ran, code: i32, needles: &[&str]) {
    assert_eq!(
        ran.code,
        Some(code),
        "{id} ({input}): exit code; stderr: {}",
        ran.stderr
    );
    for needle in needles {
        assert!(
            ran.stderr.contains(needle),
            "{id} ({input}): message does not name `{needle}`: {}",
            ran.stderr
        );
    }
    assert!(!ran.stderr.contains("panicked"), "{id}: panic");
    row(
        id,
        input,
        ran.stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or(""),
    );
}

#[test]
fn bad_input_config_files_and_command_lines() {
    let dir = std::env::temp_dir().join(format!("bypasslab-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let supervisor = Path::new(SUPERVISOR);
    // (id, TOML, key the message must name)
    let configs: &[(&str, &str, &str)] = &[
        ("C1", "[extra]\nx = 1", "extra"),
        ("C2", "[cores]\ngpu = 1", "gpu"),
        ("C3", "[link]\nmtu = \"big\"", "mtu"),
        ("C4", "[service]\nport = 1.5", "port"),
        ("C5", "[link]\nmtu = 100", "mtu"),
        ("C6", "[service]\nport = 0", "port"),
        ("C7", "[service]\nport = 70000", "port"),
        ("C8", "[impairment]\ndelay_us = -1", "delay_us"),
        (
            "C9",
            "[impairment]\ndelay_us = 100\njitter_us = 200",
            "jitter_us",
        ),
        ("C10", "[testbed]\nname = \"Upper\"", "name"),
        ("C11", "[testbed]\nname = \"waytoolongname\"", "name"),
        ("C12", "[testbed]\nname = \"1abc\"", "name"),
        ("C13", "[addresses]\nsubnet = \"8.8.8.0/24\"", "subnet"),
        ("C14", "[impairment]\nseed = \"x\"", "seed"),
        ("C15", "[testbed", "TOML"),
    ];
    for (id, text, key) in configs {
        let path = dir.join(format!("{id}.toml"));
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        // The lifecycle and the network commands refuse it alike.
        let start = run_bounded(supervisor, &["start", "--config", p]);
        assert_refused(id, &text.replace('\n', " "), &start, 2, &[key]);
        let up = run_bounded(supervisor, &["net", "up", "--config", p]);
        assert_eq!(up.code, Some(2), "{id}: net up: {}", up.stderr);
    }
    let missing = dir.join("missing.toml");
    let ran = run_bounded(supervisor, &["stop", "--config", missing.to_str().unwrap()]);
    assert_refused("C16", "missing config file", &ran, 2, &["missing.toml"]);

    // A valid config of a testbed that is not running, for CLI misuse.
    let idle = dir.join("idle.toml");
    std::fs::write(
        &idle,
        format!("[testbed]\nname = \"bi{}\"\n", std::process::id() % 100_000),
    )
    .unwrap();
    let idle = idle.to_str().unwrap();
    let cli: &[(&str, &[&str], i32, &str)] = &[
        ("L1", &["frobnicate"], 2, "unrecognized subcommand"),
        ("L2", &["start", "--engine", "quantum"], 2, "quantum"),
        ("L3", &["attach", "--packets", "ten"], 2, "ten"),
        ("L4", &["attach"], 2, "--packets"),
        ("L5", &["start", "--pmd", "bogus"], 2, "bogus"),
        ("L6", &["run", "--mode", "sideways"], 2, "sideways"),
        ("L7", &["stats", "--interval-ms", "-5"], 2, "-5"),
        ("L8", &["net", "probe", "--count", "x"], 2, "x"),
        (
            "L9",
            &["attach", "--packets", "10", "--config", idle],
            1,
            "no run of testbed",
        ),
        ("L10", &["stats", "--config", idle], 1, "no run of testbed"),
    ];
    for (id, args, code, needle) in cli {
        let ran = run_bounded(supervisor, args);
        assert_refused(id, &args.join(" "), &ran, *code, &[needle]);
    }

    // The engines' config.ini.
    let engine = bin_dir().join("engine");
    let inis: &[(&str, &str, &str)] = &[
        ("E1", "junk line", "line 1"),
        ("E2", "[dpdk]\npmd = af_xdp\niface = x\n", "port0.addr"),
        (
            "E3",
            "[dpdk]\npmd = warp\n[port0]\naddr = 10.0.0.3\nnetmask = 255.255.255.0\n",
            "dpdk.pmd",
        ),
        (
            "E4",
            "[dpdk]\niface = x\n[port0]\naddr = 10.0.0.3\nnetmask = 255.0.255.0\n",
            "port0.netmask",
        ),
    ];
    for (id, text, key) in inis {
        let path = dir.join(format!("{id}.ini"));
        std::fs::write(&path, text).unwrap();
        let ran = run_bounded(
            &engine,
            &["--kind", "dpdk", "--dpdk-config", path.to_str().unwrap()],
        );
        assert!(ran.code.is_some_and(|c| c != 0), "{id}: {ran:?}");
        assert!(ran.stderr.contains(key), "{id}: {}", ran.stderr);
        row(id, &text.replace('\n', " "), ran.stderr.trim());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Byte offsets of header fields (as in shm-layout's validation tests).
const VERSION_OFFSET: u64 = 8;
const OWNER_TICKS_OFFSET: u64 = 112;

#[test]
fn bad_input_segments_are_refused_by_engine_and_loadgen() {
    let bins = bin_dir();
    let dir = PathBuf::from(format!("/dev/shm/bypasslab-badseg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut opts = CreateOptions::new("template");
    opts.hugetlbfs_dir = Some(dir.clone());
    opts.fallback_dir = dir.clone();
    let template = Segment::create(&opts).unwrap();
    let image = std::fs::read(template.path()).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let patched = |name: &str, offset: u64, bytes: &[u8]| {
        let path = write(name, &image);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(bytes, offset).unwrap();
        path
    };
    let mut grown = image.clone();
    grown.extend_from_slice(&[0; 4096]);
    let foreign: Vec<u8> = (0..image.len()).map(|i| (i * 7 + 3) as u8).collect();
    let cases: Vec<(&str, &str, PathBuf, &str)> = vec![
        ("S1", "missing", dir.join("absent"), "No such file"),
        (
            "S2",
            "foreign file",
            write("foreign", &foreign),
            "bad magic",
        ),
        (
            "S3",
            "truncated",
            write("truncated", &image[..image.len() / 2]),
            "truncated",
        ),
        (
            "S4",
            "stale (owner dead)",
            patched("stale", OWNER_TICKS_OFFSET, &1_u64.to_le_bytes()),
            "is dead",
        ),
        (
            "S5",
            "older layout version",
            patched("old", VERSION_OFFSET, &0_u32.to_le_bytes()),
            "layout version 0",
        ),
        ("S6", "grown file", write("grown", &grown), "file size"),
        ("S7", "empty file", write("empty", &[]), "segment"),
    ];
    for (id, what, path, needle) in &cases {
        let p = path.to_str().unwrap();
        let engine = run_bounded(
            &bins.join("engine"),
            &["--kind", "kernel", "--listen", "127.0.0.1:0", "--shm", p],
        );
        assert_refused(id, &format!("engine --shm <{what}>"), &engine, 2, &[needle]);
        assert!(engine.stderr.contains(p), "{id}: names the file");
        let loadgen = run_bounded(
            &bins.join("loadgen"),
            &["--connect", "127.0.0.1:9", "--packets", "1", "--shm", p],
        );
        assert_refused(
            id,
            &format!("loadgen --shm <{what}>"),
            &loadgen,
            2,
            &[needle],
        );
    }
    drop(template);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_hugepages_exhausted() {
    if !require_root("bad_input_hugepages_exhausted") {
        return;
    }
    // A hugetlbfs mount limited to one 2 MB page: the first segment takes
    // it, the second finds none.
    let mount = PathBuf::from(format!("/run/bypasslab-hugetest-{}", std::process::id()));
    std::fs::create_dir_all(&mount).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "hugetlbfs", "-o", "pagesize=2M,size=2M", "none"])
        .arg(&mount)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount hugetlbfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _guard = Unmount(mount.clone());
    let scratch = PathBuf::from(format!("/dev/shm/bypasslab-hugefb-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let opts = |name: &str, fallback: bool| {
        let mut o = CreateOptions::new(name);
        o.hugetlbfs_dir = Some(mount.clone());
        o.fallback_dir = scratch.clone();
        o.allow_fallback = fallback;
        o.ring_capacity = 64;
        o
    };
    // The first may or may not get the page (the host pool may be empty).
    let first = Segment::create(&opts("hfirst", false));
    let second = Segment::create(&opts("hsecond", false));
    let err = second.err().expect("no page left");
    assert!(matches!(err, ShmError::NoHugepages { .. }), "{err}");
    row("H1", "hugetlbfs full, no fallback", &err.to_string());
    let fallback = Segment::create(&opts("hthird", true)).expect("falls back to /dev/shm");
    let reason = fallback.fallback_reason().expect("says why").to_owned();
    assert!(fallback.path().starts_with(&scratch));
    row("H2", "hugetlbfs full, fallback allowed", &reason);
    drop((first, fallback));
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn bad_input_name_collisions() {
    if !require_root("bad_input_name_collisions") {
        return;
    }
    // N1: two config files, one testbed name: the second start is refused.
    let testbed = Testbed::plain("nc");
    let other = std::env::temp_dir().join(format!("bypasslab-{}-other.toml", testbed.name));
    std::fs::write(
        &other,
        format!(
            "[testbed]\nname = \"{}\"\n[service]\nport = 7100\n",
            testbed.name
        ),
    )
    .unwrap();
    testbed.start_detached(contract::EngineKind::Kernel);
    let second = run_bounded(
        Path::new(SUPERVISOR),
        &["start", "--config", other.to_str().unwrap()],
    );
    assert_refused(
        "N1",
        "second config with the same testbed name",
        &second,
        1,
        &["already running"],
    );
    // N2: `net up` of the same name while it runs completes nothing new and
    // breaks nothing: the run still serves.
    let up = run_bounded(
        Path::new(SUPERVISOR),
        &["net", "up", "--config", testbed.config.to_str().unwrap()],
    );
    assert_eq!(up.code, Some(0), "{}", up.stderr);
    let attached = testbed.run(
        &["attach", "--packets", "300", "--json"],
        Duration::from_secs(60),
    );
    assert_eq!(attached.code, Some(0));
    row(
        "N2",
        "net up over a running testbed",
        "idempotent; run still serves",
    );
    let stopped = testbed.run(&["stop"], Duration::from_secs(60));
    assert_eq!(stopped.code, Some(0));
    let _ = std::fs::remove_file(&other);
}

// ---- the wire protocol, against both engines, through the testbed ----

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn request(len: u32) -> Vec<u8> {
    let mut m = len.to_be_bytes().to_vec();
    m.extend((4..len).map(|i| (i % 251) as u8));
    m
}

/// A well-behaved client: `count` requests, each reply checked.
fn good_client(addr: SocketAddr, count: u32) {
    let mut s = connect(addr);
    for i in 0..count {
        let len = 512 + (i * 37) % 513;
        s.write_all(&request(len)).unwrap();
        let mut reply = [0; 4];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(u32::from_be_bytes(reply), len, "reply {i}");
    }
}

/// Whether the engine closes `s` (EOF or reset) within 5 s.
fn closed_by_engine(s: &mut TcpStream) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0; 64];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the rlimit struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn protocol_cases(addr: SocketAddr) -> u64 {
    // (id, what, bytes sent, whether the engine must close the connection)
    let mut valid_then_garbage = request(600);
    valid_then_garbage.extend_from_slice(b"\xff\xff\xff\xffgarbage");
    let cases: Vec<(&str, &str, Vec<u8>, bool)> = vec![
        ("P1", "length 0", 0_u32.to_be_bytes().to_vec(), true),
        ("P2", "length 511 (undersized)", request(511), true),
        ("P3", "length 1025 (oversized)", request(1025), true),
        (
            "P4",
            "length 0xffffffff",
            u32::MAX.to_be_bytes().to_vec(),
            true,
        ),
        (
            "P5",
            "HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            true,
        ),
        ("P6", "valid request then garbage", valid_then_garbage, true),
    ];
    let mut errors = 0;
    for (id, what, bytes, closes) in cases {
        let mut s = connect(addr);
        s.write_all(&bytes).unwrap();
        assert_eq!(closed_by_engine(&mut s), closes, "{id} ({what})");
        errors += 1;
        good_client(addr, 20);
        row(
            id,
            what,
            "closed by the engine; a good client is still served",
        );
    }

    // P7 slow loris: a header's first two bytes, then silence, while a good
    // client is served; then the rest, one byte at a time.
    let mut loris = connect(addr);
    loris.write_all(&700_u32.to_be_bytes()[..2]).unwrap();
    good_client(addr, 50);
    let rest = &request(700)[2..];
    for chunk in rest.chunks(64) {
        loris.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut reply = [0; 4];
    loris.read_exact(&mut reply).unwrap();
    assert_eq!(u32::from_be_bytes(reply), 700);
    row(
        "P7",
        "slow loris: 2 header bytes, idle, then 1 chunk / 5 ms",
        "others served meanwhile; answered once complete",
    );

    // P8 half a message, then close.
    let mut half = connect(addr);
    half.write_all(&request(800)[..300]).unwrap();
    drop(half);
    good_client(addr, 20);
    row(
        "P8",
        "half a message, then close",
        "no reply, nothing counted, others served",
    );

    // P9 a thousand idle connections held open while a good client runs.
    raise_fd_limit(4096);
    let idle: Vec<TcpStream> = (0..1000).map(|_| connect(addr)).collect();
    good_client(addr, 200);
    drop(idle);
    good_client(addr, 20);
    row(
        "P9",
        "1000 idle connections",
        "a good client is served meanwhile",
    );
    errors
}

#[test]
fn bad_input_protocol_garbage_never_stops_the_engine() {
    if !require_root("bad_input_protocol_garbage") {
        return;
    }
    for engine in engines() {
        let testbed = Testbed::plain("bp");
        let state = testbed.start_detached(engine);
        let engine_pid = support::pid(&state["engine"]["pid"]);
        let addr: SocketAddr = state["server"].as_str().unwrap().parse().unwrap();
        println!("-- engine {engine}");
        let errors = in_netns(&format!("{}-ns1", testbed.name), move || {
            protocol_cases(addr)
        });
        assert!(support::alive(engine_pid), "{engine} engine died");
        // The engine counted every protocol error (published every 100 ms).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stats = testbed.run(&["stats", "--json"], Duration::from_secs(30));
            assert_eq!(stats.code, Some(0));
            let doc = stats.json();
            let slot = doc["segment"]["slots"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["role"] == "engine")
                .cloned()
                .unwrap();
            assert_eq!(slot["info"]["state"], "running");
            let counted = slot["counters"]["protocol_errors"].as_u64().unwrap();
            if counted >= errors {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{engine}: {counted} protocol errors counted, {errors} sent"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let stopped = testbed.run(&["stop"], Duration::from_secs(60));
        assert_eq!(stopped.code, Some(0));
        testbed.assert_nothing_left(&[engine_pid]);
    }
}
