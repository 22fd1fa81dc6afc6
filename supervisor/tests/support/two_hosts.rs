//! Two "hosts" on one machine: network namespaces A and B joined by a veth
//! pair (the link under test, standing in for the wire between two NICs),
//! each running its own `sshd` (Debian's openssh-server, with a config and
//! host key made for the test, on a port of its own, stopped by pid), and
//! an orchestrator namespace O that reaches both over management veths, so
//! no traffic touches this machine's own network. A client key is made per
//! fixture. Dropping the fixture stops the sshds, deletes the namespaces
//! (and with them the links) and removes the key files.
//!
//! ```text
//!   O (orchestrator) <n>-oa ── <n>-ma  A (client)  <n>-da ══ <n>-db  B (engine)
//!                    <n>-ob ───────────────────────────────── <n>-mb
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{run_bounded, unique_name, HostLock, Ran, QUICK, SUPERVISOR};

/// The sshds' port.
pub const SSH_PORT: u16 = 2222;
/// A's and B's management addresses (O reaches them).
pub const A_MGMT: &str = "10.99.1.2";
/// B's management address.
pub const B_MGMT: &str = "10.99.2.2";

/// The fixture.
pub struct TwoHosts {
    /// Testbed name (prefix of every object).
    pub name: String,
    /// Key files, configs, known_hosts.
    pub dir: PathBuf,
    sshd: Vec<Child>,
    _host: HostLock,
}

fn ip(args: &[&str]) {
    let out = run_bounded(Command::new("ip").args(args), QUICK);
    assert!(out.success(), "ip {}: {}", args.join(" "), out.stderr);
}

fn sh(program: &str, args: &[&str]) -> Ran {
    let out = run_bounded(Command::new(program).args(args), QUICK);
    assert!(
        out.success(),
        "{program} {}: {}",
        args.join(" "),
        out.stderr
    );
    out
}

impl TwoHosts {
    /// Builds it; `authorized` renders the authorized_keys line from the
    /// client's public key.
    pub fn new(tag: &str, authorized: impl Fn(&str) -> String) -> Self {
        let name = unique_name(tag);
        let dir = std::env::temp_dir().join(format!("bl2h-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut fixture = Self {
            name: name.clone(),
            dir: dir.clone(),
            sshd: Vec::new(),
            _host: HostLock::shared(),
        };
        for ns in ["o", "a", "b"] {
            let ns = fixture.ns(ns);
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        let (o, a, b) = (fixture.ns("o"), fixture.ns("a"), fixture.ns("b"));
        let link = |x: &str, xns: &str, xaddr: &str, y: &str, yns: &str, yaddr: &str| {
            ip(&[
                "link", "add", x, "netns", xns, "type", "veth", "peer", "name", y, "netns", yns,
            ]);
            for (dev, ns, addr) in [(x, xns, xaddr), (y, yns, yaddr)] {
                ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
                ip(&["-n", ns, "link", "set", dev, "up"]);
            }
        };
        link(
            &format!("{name}-da"),
            &a,
            "10.77.0.1/24",
            &format!("{name}-db"),
            &b,
            "10.77.0.3/24",
        );
        // A veth leaves checksums and segmentation to "hardware" that is
        // not there; a NIC would do them, so the stand-in does them in
        // software (a userspace stack drops incomplete frames).
        for (ns, dev) in [(&a, format!("{name}-da")), (&b, format!("{name}-db"))] {
            sh(
                "ip",
                &[
                    "netns", "exec", ns, "ethtool", "-K", &dev, "tx", "off", "tso", "off", "gso",
                    "off", "gro", "off",
                ],
            );
        }
        link(
            &format!("{name}-oa"),
            &o,
            "10.99.1.1/30",
            &format!("{name}-ma"),
            &a,
            "10.99.1.2/30",
        );
        link(
            &format!("{name}-ob"),
            &o,
            "10.99.2.1/30",
            &format!("{name}-mb"),
            &b,
            "10.99.2.2/30",
        );

        let key = dir.join("client_key");
        sh(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &name,
                "-f",
                key.to_str().unwrap(),
            ],
        );
        let public = std::fs::read_to_string(dir.join("client_key.pub")).unwrap();
        std::fs::write(
            dir.join("authorized_keys"),
            authorized(public.trim()) + "\n",
        )
        .unwrap();
        // sshd's privilege-separation directory (Debian's path).
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mut known = String::new();
        for (host, ns, addr) in [("a", &a, A_MGMT), ("b", &b, B_MGMT)] {
            let host_key = dir.join(format!("host_{host}"));
            sh(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    host_key.to_str().unwrap(),
                ],
            );
            let host_pub = std::fs::read_to_string(dir.join(format!("host_{host}.pub"))).unwrap();
            let mut words = host_pub.split_whitespace();
            let (kind, body) = (words.next().unwrap(), words.next().unwrap());
            known.push_str(&format!("[{addr}]:{SSH_PORT} {kind} {body}\n"));
            let config = dir.join(format!("sshd_{host}.config"));
            std::fs::write(
                &config,
                format!(
                    "Port {SSH_PORT}\nListenAddress {addr}\nHostKey {}\nAuthorizedKeysFile {}\n\
                     PidFile {}\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     AllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\n",
                    host_key.display(),
                    dir.join("authorized_keys").display(),
                    dir.join(format!("sshd_{host}.pid")).display()
                ),
            )
            .unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", ns, "/usr/sbin/sshd", "-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sshd (Debian's openssh-server: scripts/setup installs it)");
            fixture.sshd.push(child);
            fixture.wait_listening(ns);
        }
        std::fs::write(dir.join("known_hosts"), known).unwrap();
        fixture
    }

    /// A plain key: the whole of ssh.
    pub fn plain(tag: &str) -> Self {
        Self::new(tag, str::to_owned)
    }

    /// The namespace of host `x` (`o`, `a`, `b`).
    pub fn ns(&self, x: &str) -> String {
        format!("{}-{x}", self.name)
    }

    fn wait_listening(&self, ns: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = run_bounded(
                Command::new("ip").args([
                    "netns",
                    "exec",
                    ns,
                    "ss",
                    "-Hltn",
                    &format!("sport = :{SSH_PORT}"),
                ]),
                QUICK,
            );
            if out.stdout.contains(&format!(":{SSH_PORT}")) {
                return;
            }
            assert!(Instant::now() < deadline, "sshd in {ns} does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `ssh -o` options that reach the fixture's sshds.
    pub fn ssh_options(&self, known_hosts: &Path) -> Vec<String> {
        vec![
            format!("IdentityFile={}", self.dir.join("client_key").display()),
            "IdentitiesOnly=yes".into(),
            format!("UserKnownHostsFile={}", known_hosts.display()),
            "StrictHostKeyChecking=yes".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
        ]
    }

    /// A testbed.toml for a run with the engine on B and the load generator
    /// on A; `engine_url`, `supervisor` and `known_hosts` replaceable for
    /// the fault tests.
    pub fn config(&self, engine_url: &str, supervisor: &str, known_hosts: &Path) -> PathBuf {
        let options: Vec<String> = self
            .ssh_options(known_hosts)
            .iter()
            .map(|o| format!("{o:?}"))
            .collect();
        let options = options.join(", ");
        let text = format!(
            "[testbed]\nname = \"{name}\"\n[impairment]\nbackend = \"none\"\n\
             [hosts]\nengine = \"{engine_url}\"\nclient = \"ssh://root@{A_MGMT}:{SSH_PORT}\"\n\
             [engine_host]\niface = \"{name}-db\"\ncore = 1\nsupervisor = \"{supervisor}\"\nssh_options = [{options}]\n\
             [client_host]\niface = \"{name}-da\"\ncore = 0\nsupervisor = \"{SUPERVISOR}\"\nssh_options = [{options}]\n",
            name = self.name
        );
        let path = self.dir.join("testbed.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The standard config: B reached at its address with the real binary.
    pub fn standard_config(&self) -> PathBuf {
        self.config(
            &format!("ssh://root@{B_MGMT}:{SSH_PORT}"),
            SUPERVISOR,
            &self.dir.join("known_hosts"),
        )
    }

    /// `supervisor <args>` in the orchestrator namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns("o"), SUPERVISOR])
            .args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs `supervisor <args>` in O, bounded.
    pub fn run(&self, args: &[&str], limit: Duration) -> Ran {
        let ran = run_bounded(&mut self.command(args), limit);
        eprintln!(
            "$ supervisor {} -> {:?}\n{}",
            args.join(" "),
            ran.code,
            ran.stderr
        );
        ran
    }

    /// The state directory of a role's `serve` session.
    pub fn state_dir(&self, role: &str) -> PathBuf {
        Path::new(testbed::state::STATE_ROOT).join(format!("{}-{role}", self.name))
    }

    /// The run state a role's `serve` recorded, if any.
    pub fn run_state(&self, role: &str) -> Option<serde_json::Value> {
        testbed::state::read_json(&self.state_dir(role).join("run.json"))
            .ok()
            .flatten()
    }

    /// Asserts (within a bound) that neither host keeps anything of the
    /// run: state directories, processes, segments, DPDK's files, and that
    /// B's link holds its address again.
    pub fn assert_nothing_left(&self, pids: &[u32], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let dirs: Vec<PathBuf> = ["engine", "client"]
                .iter()
                .map(|r| self.state_dir(r))
                .filter(|d| d.exists())
                .collect();
            let alive: Vec<u32> = pids.iter().copied().filter(|p| super::alive(*p)).collect();
            let named = super::host::processes_naming(&self.name);
            if dirs.is_empty() && alive.is_empty() && named.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "left after {within:?}: state {dirs:?}, pids {alive:?}, processes {named:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let prefix = format!("bypasslab-{}", self.name);
        for dir in ["/dev/shm", "/dev/hugepages", "/var/run/dpdk"] {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                assert!(
                    !file.starts_with(&prefix),
                    "left: {}",
                    entry.path().display()
                );
            }
        }
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        assert!(
            !mounts.contains(&format!("/bypasslab/{}-", self.name)),
            "mount left"
        );
        let addr = run_bounded(
            Command::new("ip").args([
                "-n",
                &self.ns("b"),
                "-o",
                "addr",
                "show",
                &format!("{}-db", self.name),
            ]),
            QUICK,
        );
        assert!(
            addr.stdout.contains("10.77.0.3/24"),
            "B's address not restored: {}",
            addr.stdout
        );
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for child in &mut self.sshd {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in ["o", "a", "b"] {
            let _ = run_bounded(
                Command::new("ip").args(["netns", "del", &self.ns(ns)]),
                QUICK,
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
