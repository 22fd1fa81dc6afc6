//! The dpdk engine's PCI path, which needs a NIC bound to a userspace I/O
//! driver and has never run on this host (no PCI NIC, no module loading):
//! inside an emulated Debian guest, a virtio-net NIC is bound through
//! sysfs (`driver_override`, `unbind`, `drivers_probe`) to
//! uio_pci_generic, igb_uio or vfio-pci, `engine --kind dpdk` with
//! `pmd=pci` serves on it, and the load generator runs in a host namespace
//! on the other side of the NIC's tap. Every one of 2 000 messages must
//! be answered, and afterwards the NIC is back on virtio-pci. The vfio
//! case has two NICs on a bridge: eth0 stays with the kernel (a kernel
//! engine answers there too) while eth1 is DPDK's.
//!
//! The bind step is the test's own shell until `supervisor nic bind`
//! exists. Figures from here are functional only: the guest is emulated.

mod support;

use std::time::Duration;

use support::guest::{
    self, guest_addr, guest_mac, workspace_bin, GuestBuilder, Machine, HOST_ADDR,
};

/// Messages measured per driver (after a short warm-up).
const MESSAGES: u64 = 2000;

/// Bash run in the guest: for each driver in $DRIVERS, bind eth`nic`'s
/// PCI function, run the engine, tell the host (`ready-<driver>`), wait
/// for it (`done-<driver>`), stop the engine and give the function back
/// to virtio-pci. With $KERNEL_IF set, a kernel engine serves on eth0
/// throughout. Every wait is bounded.
fn guest_script(engine: &str, nic: usize) -> String {
    format!(
        r#"set -u
ENGINE={engine}
IF=eth{nic}
say() {{ echo "[$(cut -d' ' -f1 /proc/uptime) s] $*"; }}
driver_of() {{ basename "$(readlink -f "$1/driver" 2>/dev/null)"; }}
wait_for() {{ # FILE SECONDS
  local n=0
  until [ -e "$1" ]; do
    n=$((n + 1)); [ "$n" -le $(($2 * 10)) ] || return 1; sleep 0.1
  done
}}
# $IF's device is the virtio device; its parent is the PCI function.
dev=$(dirname "$(readlink -f "/sys/class/net/$IF/device")")
bdf=$(basename "$dev")
orig=$(driver_of "$dev")
say "$IF is $bdf on $orig"
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
kpid=
stop_all() {{ unbind; [ -z "$kpid" ] || kill -KILL "$kpid" 2>/dev/null; }}
trap stop_all EXIT
if [ -n "${{KERNEL_IF:-}}" ]; then
  "$ENGINE" --kind kernel --listen {kaddr}:7001 >engine-kernel.out 2>engine-kernel.err &
  kpid=$!
  n=0
  until ss -ltn | grep -q '{kaddr}:7001'; do
    n=$((n + 1)); [ "$n" -le 300 ] || exit 27; sleep 0.1
  done
fi
for drv in $DRIVERS; do
  # igb_uio too: prepare --igb-uio installed it where dkms would.
  modprobe "$drv" || exit 22
  ip link set "$IF" down
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
  # virtio_net takes the device again and $IF returns (bounded).
  n=0
  until [ -e "/sys/class/net/$IF" ] || [ "$n" -ge 50 ]; do sleep 0.1; n=$((n + 1)); done
  ls /sys/class/net >>"after-$drv"
  say "back on $(driver_of "$dev")"
done
trap - EXIT
if [ -n "$kpid" ]; then
  kill -TERM "$kpid"
  n=0
  while kill -0 "$kpid" 2>/dev/null && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL "$kpid" 2>/dev/null
  wait "$kpid"; echo "$?" >engine-kernel.code
fi
"#,
        addr = guest_addr(nic),
        kaddr = guest_addr(0),
        host = HOST_ADDR,
    )
}

/// Runs the load generator in the guest's host namespace against
/// `addr:port`; asserts every message was answered.
fn load(g: &guest::Guest, what: &str, addr: &str, port: u16, messages: u64) {
    let mut c = g.host_command(workspace_bin("loadgen"));
    c.args(["--connect", &format!("{addr}:{port}")])
        .args(["--packets", &messages.to_string(), "--warmup", "100"])
        .args(["--progress", "never", "--timeout-ms", "5000"]);
    let out = support::run_bounded(&mut c, Duration::from_secs(180));
    let text = &out.stdout;
    eprintln!("{what}: loadgen (emulated guest, functional only): {text}");
    assert!(
        out.success(),
        "loadgen against {what}: {:?}\n{}",
        out.code,
        out.stderr
    );
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("loadgen JSON");
    assert_eq!(v["answered"].as_u64(), Some(messages), "{v}");
    assert_eq!(v["failed"].as_u64(), Some(0), "{v}");
}

/// Boots a guest on `machine` with `nics` NICs, the last one DPDK's, and
/// for each driver: waits for the engine, runs the load generator through
/// the tap, checks every reply and that the NIC went back to virtio-pci.
fn serve_on_bound_nic(test: &str, machine: Machine, nics: usize, drivers: &[&str]) {
    let nic = nics - 1;
    let engine = workspace_bin("engine");
    let mut b = GuestBuilder::new(test)
        .nics(nics)
        .unaddressed(nic)
        .machine(machine)
        .memory_mb(1536)
        .hugepages(256)
        .env("DRIVERS", drivers.join(" "))
        .timeout(Duration::from_secs(150 + 120 * drivers.len() as u64));
    if nics == 2 {
        b = b.env("KERNEL_IF", "eth0");
    }
    let mut g = b
        .start(&guest_script(&engine.to_string_lossy(), nic))
        .expect("the guest boots");
    // The host side: the tap itself, or the bridge both taps are on.
    let host_dev = if nics == 2 {
        format!("{}br", g.name)
    } else {
        format!("{}t0", g.name)
    };
    for (i, drv) in drivers.iter().enumerate() {
        g.wait_for_file(&format!("ready-{drv}"), Duration::from_secs(240))
            .unwrap_or_else(|e| panic!("{test}: engine on {drv}: {e}"));
        // The engine's stack answers ARP itself; a static entry keeps an
        // emulated hiccup from turning into a lost first SYN.
        let neigh = g
            .host_command("ip")
            .args(["neigh", "replace", &guest_addr(nic)])
            .args([
                "lladdr",
                &guest_mac(nic),
                "dev",
                &host_dev,
                "nud",
                "permanent",
            ])
            .output()
            .expect("ip neigh");
        assert!(neigh.status.success(), "{neigh:?}");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if nics == 2 && i == 0 {
                // The kernel's NIC beside the bound one still works.
                let what = format!("{test}: kernel engine on eth0");
                load(&g, &what, &guest_addr(0), 7001, 200);
            }
            let what = format!("{test}: dpdk engine on {drv}");
            load(&g, &what, &guest_addr(nic), 7000, MESSAGES);
        }));
        // Let the guest go on (or end) whatever the outcome.
        g.write_file(&format!("done-{drv}"), "")
            .expect("tell the guest");
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
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
            after.starts_with("virtio-pci\n") && after.contains(&format!("eth{nic}")),
            "after {drv} the NIC is not back on virtio-pci with eth{nic}: {after}"
        );
        let code = g
            .read_file(&format!("engine-{drv}.code"))
            .expect("engine code");
        assert_eq!(code.trim(), "0", "the engine on {drv} exited with {code}");
    }
    if nics == 2 {
        let code = g
            .read_file("engine-kernel.code")
            .expect("kernel engine code");
        assert_eq!(code.trim(), "0", "the kernel engine exited with {code}");
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
        1,
        &["uio_pci_generic", "igb_uio"],
    );
}

#[test]
fn guest_dpdk_engine_serves_on_second_nic_bound_to_vfio_pci_behind_an_iommu() {
    if !guest::can_run_or_skip("guest_dpdk vfio") {
        return;
    }
    serve_on_bound_nic("guest_dpdk vfio", Machine::Q35Iommu, 2, &["vfio-pci"]);
}
