//! The dpdk engine's PCI path, which needs a NIC bound to a userspace I/O
//! driver and has never run on this host (no PCI NIC, no module loading):
//! inside an emulated Debian guest, its virtio-net NIC is bound through
//! sysfs (`driver_override`, `unbind`, `drivers_probe`) to
//! uio_pci_generic, igb_uio or vfio-pci, `engine --kind dpdk` with
//! `pmd=pci` serves on it, and the load generator runs in a host namespace
//! on the other side of the NIC's tap. Every one of 2 000 messages must
//! be answered, and afterwards the NIC is back on virtio-pci.
//!
//! The bind step is the test's own shell until `supervisor nic bind`
//! exists. Figures from here are functional only: the guest is emulated.

mod guest;

use std::time::Duration;

use guest::{guest_addr, guest_mac, workspace_bin, GuestBuilder, Machine, HOST_ADDR};

/// Messages measured per driver (after a short warm-up).
const MESSAGES: u64 = 2000;

/// Bash run in the guest: for each driver in $DRIVERS, bind eth0's PCI
/// device, run the engine, tell the host (`ready-<driver>`), wait for it
/// (`done-<driver>`), stop the engine and give the device back to
/// virtio-pci. Every wait is bounded.
fn guest_script(engine: &str) -> String {
    format!(
        r#"set -u
ENGINE={engine}
say() {{ echo "[$(cut -d' ' -f1 /proc/uptime) s] $*"; }}
driver_of() {{ basename "$(readlink -f "$1/driver" 2>/dev/null)"; }}
wait_for() {{ # FILE SECONDS
  local n=0
  until [ -e "$1" ]; do
    n=$((n + 1)); [ "$n" -le $(($2 * 10)) ] || return 1; sleep 0.1
  done
}}
# eth0's device is the virtio device; its parent is the PCI function.
dev=$(dirname "$(readlink -f /sys/class/net/eth0/device)")
bdf=$(basename "$dev")
orig=$(driver_of "$dev")
say "eth0 is $bdf on $orig"
[ "$orig" = virtio-pci ] || exit 20
echo "$bdf" >bdf
grep -q '^HugePages_Total: *[1-9]' /proc/meminfo || {{ grep Huge /proc/meminfo; exit 21; }}
bind() {{ # DRIVER
  echo "$1" >"$dev/driver_override"
  [ ! -e "$dev/driver" ] || echo "$bdf" >"$dev/driver/unbind"
  echo "$bdf" >/sys/bus/pci/drivers_probe
  [ "$(driver_of "$dev")" = "$1" ]
}}
unbind() {{
  echo >"$dev/driver_override"
  [ ! -e "$dev/driver" ] || echo "$bdf" >"$dev/driver/unbind"
  echo "$bdf" >/sys/bus/pci/drivers_probe
}}
trap unbind EXIT
for drv in $DRIVERS; do
  # igb_uio too: prepare --igb-uio installed it where dkms would.
  modprobe "$drv" || exit 22
  ip link set eth0 down
  bind "$drv" || {{ say "bind to $drv failed: $(driver_of "$dev")"; exit 23; }}
  say "bound to $drv"
  [ "$drv" != vfio-pci ] || ls -l "/dev/vfio/$(basename "$(readlink -f "$dev/iommu_group")")" || exit 24
  cat >"config-$drv.ini" <<INI
[dpdk]
lcore_mask=2
memory=256
no_huge=0
huge_dir=/dev/hugepages
file_prefix=guest-$drv
promiscuous=0
port_list=0
pci_whitelist=$bdf
pmd=pci
log_level=*:notice
[port0]
addr={addr}
netmask=255.255.255.0
broadcast=10.250.0.255
gateway={host}
INI
  "$ENGINE" --kind dpdk --dpdk-config "config-$drv.ini" --core 1 --listen {addr}:7000 \
    >"engine-$drv.out" 2>"engine-$drv.err" &
  epid=$!
  n=0
  until grep -q 'dpdk ready' "engine-$drv.err"; do
    n=$((n + 1))
    if [ "$n" -gt 1200 ] || ! kill -0 "$epid" 2>/dev/null; then
      say "engine not ready on $drv"; cat "engine-$drv.err"; kill -KILL "$epid" 2>/dev/null; exit 25
    fi
    sleep 0.1
  done
  say "engine ready on $drv"
  touch "ready-$drv"
  wait_for "done-$drv" 300 || {{ kill -KILL "$epid"; exit 26; }}
  kill -TERM "$epid"
  n=0
  while kill -0 "$epid" 2>/dev/null && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL "$epid" 2>/dev/null && say "engine had to be killed"
  wait "$epid"; echo "$?" >"engine-$drv.code"
  unbind
  driver_of "$dev" >"after-$drv"
  # virtio_net takes the device again and eth0 returns (bounded).
  n=0
  until [ -e /sys/class/net/eth0 ] || [ "$n" -ge 50 ]; do sleep 0.1; n=$((n + 1)); done
  ls /sys/class/net >>"after-$drv"
  say "back on $(driver_of "$dev")"
done
trap - EXIT
"#,
        addr = guest_addr(0),
        host = HOST_ADDR,
    )
}

/// Boots a guest on `machine`, and for each driver: waits for the engine,
/// runs the load generator through the tap, checks every reply and that
/// the NIC went back to virtio-pci.
fn serve_on_bound_nic(test: &str, machine: Machine, drivers: &[&str]) {
    let engine = workspace_bin("engine");
    let loadgen = workspace_bin("loadgen");
    let mut g = GuestBuilder::new(test)
        .nics(1)
        .unaddressed()
        .machine(machine)
        .memory_mb(1536)
        .hugepages(256)
        .env("DRIVERS", drivers.join(" "))
        .timeout(Duration::from_secs(150 + 120 * drivers.len() as u64))
        .start(&guest_script(&engine.to_string_lossy()))
        .expect("the guest boots");
    let tap = format!("{}t0", g.name);
    for drv in drivers {
        g.wait_for_file(&format!("ready-{drv}"), Duration::from_secs(240))
            .unwrap_or_else(|e| panic!("{test}: engine on {drv}: {e}"));
        // The engine's stack answers ARP itself; a static entry keeps an
        // emulated hiccup from turning into a lost first SYN.
        let neigh = g
            .host_command("ip")
            .args(["neigh", "replace", &guest_addr(0), "lladdr", &guest_mac(0)])
            .args(["dev", &tap, "nud", "permanent"])
            .output()
            .expect("ip neigh");
        assert!(neigh.status.success(), "{neigh:?}");
        let mut c = g.host_command(&loadgen);
        c.args(["--connect", &format!("{}:7000", guest_addr(0))])
            .args(["--packets", &MESSAGES.to_string(), "--warmup", "100"])
            .args(["--progress", "never", "--timeout-ms", "5000"]);
        let out = guest::run_bounded(c, Duration::from_secs(180), "loadgen").expect("loadgen runs");
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("{test}: {drv}: loadgen (emulated guest, functional only): {text}");
        g.write_file(&format!("done-{drv}"), "")
            .expect("tell the guest");
        assert!(
            out.status.success(),
            "loadgen against the engine on {drv}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("loadgen JSON");
        assert_eq!(v["answered"].as_u64(), Some(MESSAGES), "{v}");
        assert_eq!(v["failed"].as_u64(), Some(0), "{v}");
    }
    let out = g.finish().expect("the guest powers off");
    out.assert_success();
    eprintln!("{test}: the guest ran {:.1} s", out.elapsed.as_secs_f64());
    for drv in drivers {
        let log = g
            .read_file(&format!("engine-{drv}.err"))
            .unwrap_or_default();
        eprintln!("{test}: {drv}: engine's stderr:\n{log}");
        let after = g.read_file(&format!("after-{drv}")).expect("after");
        assert!(
            after.starts_with("virtio-pci\n") && after.contains("eth0"),
            "after {drv} the NIC is not back on virtio-pci with eth0: {after}"
        );
        let code = g
            .read_file(&format!("engine-{drv}.code"))
            .expect("engine code");
        assert_eq!(code.trim(), "0", "the engine on {drv} exited with {code}");
    }
}

#[test]
fn guest_dpdk_engine_serves_on_nic_bound_to_uio_pci_generic_and_igb_uio() {
    if !guest::can_run_or_skip("guest_dpdk uio") {
        return;
    }
    guest::prepare(true).expect("igb_uio builds for the guest kernel");
    serve_on_bound_nic(
        "guest_dpdk uio",
        Machine::Pc,
        &["uio_pci_generic", "igb_uio"],
    );
}

#[test]
fn guest_dpdk_engine_serves_on_nic_bound_to_vfio_pci_behind_an_iommu() {
    if !guest::can_run_or_skip("guest_dpdk vfio") {
        return;
    }
    serve_on_bound_nic("guest_dpdk vfio", Machine::Q35Iommu, &["vfio-pci"]);
}
