//! A fake sysfs tree in a directory of the test's own, with a thread that
//! plays the kernel's part: it answers writes to `unbind`, `bind` and
//! `drivers_probe` by moving the function's `driver` link, as the kernel
//! would. Dropping it stops the thread and removes the tree, also when the
//! test failed.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use contract::PciAddress;

use super::links::{LinkState, LinkView};
use super::ops::Host;
use super::record::Records;
use super::sysfs::Sysfs;
use crate::host::command::CommandError;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Interfaces as a fake iproute2 describes them.
#[derive(Default)]
pub struct FakeLinks(pub Mutex<HashMap<String, LinkState>>);

impl FakeLinks {
    /// `name` up with `address` and the kernel's route for its subnet.
    pub fn addressed(&self, name: &str, address: &str, route: &str) {
        self.0.lock().unwrap().insert(
            name.to_owned(),
            LinkState {
                name: name.to_owned(),
                up: true,
                addresses: vec![address.to_owned()],
                routes: vec![route.to_owned()],
            },
        );
    }
}

impl LinkView for FakeLinks {
    fn link(&self, name: &str) -> Result<LinkState, CommandError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or(LinkState {
                name: name.to_owned(),
                up: false,
                addresses: Vec::new(),
                routes: Vec::new(),
            }))
    }
}

/// The tree, its record directory and the kernel thread.
pub struct FakeHost {
    dir: PathBuf,
    /// The fake sysfs.
    pub sysfs: Sysfs,
    /// The fake iproute2.
    pub links: FakeLinks,
    stop: Arc<AtomicBool>,
    kernel: Option<JoinHandle<()>>,
}

impl FakeHost {
    /// An empty PCI bus, its kernel running.
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "bypasslab-fakesys-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        let root = dir.join("sys");
        for d in [
            "bus/pci/devices",
            "bus/pci/drivers",
            "kernel/iommu_groups",
            "module",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("bus/pci/drivers_probe"), "").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let kernel = {
            let root = root.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || play_kernel(&root, &stop))
        };
        Self {
            sysfs: Sysfs::at(&root),
            links: FakeLinks::default(),
            dir,
            stop,
            kernel: Some(kernel),
        }
    }

    /// The NIC commands' view of it.
    pub fn host(&self) -> Host<'_> {
        Host {
            sysfs: self.sysfs.clone(),
            links: &self.links,
            records: Records::at(self.dir.join("state")),
        }
    }

    fn root(&self) -> &Path {
        self.sysfs.root()
    }

    /// A registered PCI driver.
    pub fn driver(&self, name: &str) {
        let d = self.root().join("bus/pci/drivers").join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("bind"), "").unwrap();
        fs::write(d.join("unbind"), "").unwrap();
    }

    /// A driver that takes no device (its probe fails).
    pub fn refusing_driver(&self, name: &str) {
        self.driver(name);
        fs::write(
            self.root()
                .join("bus/pci/drivers")
                .join(name)
                .join(".refuses"),
            "",
        )
        .unwrap();
    }

    /// A PCI function of `class` on `driver`, with interfaces `ifaces`
    /// under a virtio child device (as virtio-net has them).
    pub fn function(
        &self,
        addr: &str,
        class: &str,
        driver: Option<&str>,
        ifaces: &[&str],
    ) -> PciAddress {
        let a: PciAddress = addr.parse().unwrap();
        let d = self.sysfs.device_dir(&a);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("class"), format!("{class}\n")).unwrap();
        fs::write(d.join("vendor"), "0x1af4\n").unwrap();
        fs::write(d.join("device"), "0x1000\n").unwrap();
        fs::write(d.join("driver_override"), "(null)\n").unwrap();
        for i in ifaces {
            fs::create_dir_all(d.join("virtio0/net").join(i)).unwrap();
        }
        if let Some(drv) = driver {
            self.driver(drv);
            link_driver(self.root(), &a, drv);
        }
        a
    }

    /// Puts the function in IOMMU group `group`.
    pub fn iommu_group(&self, addr: &PciAddress, group: &str) {
        let g = self.root().join("kernel/iommu_groups").join(group);
        fs::create_dir_all(&g).unwrap();
        std::os::unix::fs::symlink(&g, self.sysfs.device_dir(addr).join("iommu_group")).unwrap();
    }

    /// Writes a function's override as a crashed bind would have left it.
    pub fn set_override(&self, addr: &PciAddress, driver: &str) {
        fs::write(
            self.sysfs.device_dir(addr).join("driver_override"),
            format!("{driver}\n"),
        )
        .unwrap();
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(k) = self.kernel.take() {
            let _ = k.join();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn device_dir(root: &Path, addr: &str) -> PathBuf {
    root.join("bus/pci/devices").join(addr)
}

fn link_driver(root: &Path, addr: &PciAddress, driver: &str) {
    let drv = root.join("bus/pci/drivers").join(driver);
    let dev = device_dir(root, addr.as_str());
    let _ = fs::remove_file(dev.join("driver"));
    std::os::unix::fs::symlink(&drv, dev.join("driver")).unwrap();
    let _ = std::os::unix::fs::symlink(&dev, drv.join(addr.as_str()));
}

fn unlink_driver(root: &Path, addr: &str, driver: &str) {
    let dev = device_dir(root, addr);
    let _ = fs::remove_file(dev.join("driver"));
    let _ = fs::remove_file(root.join("bus/pci/drivers").join(driver).join(addr));
}

fn current(root: &Path, addr: &str) -> Option<String> {
    fs::read_link(device_dir(root, addr).join("driver"))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Takes a write out of `file`, if one is there.
fn take(file: &Path) -> Option<String> {
    let text = fs::read_to_string(file).ok()?;
    let value = text.trim().to_owned();
    if value.is_empty() {
        return None;
    }
    fs::write(file, "").ok()?;
    Some(value)
}

/// The kernel's part, until `stop` (and at most a minute): every
/// millisecond, the pending writes of each driver's `unbind` and `bind`,
/// then `drivers_probe`.
fn play_kernel(root: &Path, stop: &AtomicBool) {
    let drivers_dir = root.join("bus/pci/drivers");
    let end = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let drivers: Vec<String> = fs::read_dir(&drivers_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        for d in &drivers {
            let dir = drivers_dir.join(d);
            if let Some(addr) = take(&dir.join("unbind")) {
                // Writes reach this thread in any order: an unbind from a
                // driver the function has already left is stale.
                if current(root, &addr).as_deref() == Some(d) {
                    unlink_driver(root, &addr, d);
                }
            }
            if let Some(addr) = take(&dir.join("bind")) {
                if !dir.join(".refuses").exists() {
                    if let Ok(a) = addr.parse() {
                        link_driver(root, &a, d);
                    }
                }
            }
        }
        if let Some(addr) = take(&root.join("bus/pci/drivers_probe")) {
            let dev = device_dir(root, &addr);
            let wanted = fs::read_to_string(dev.join("driver_override"))
                .unwrap_or_default()
                .trim()
                .to_owned();
            let ok = !wanted.is_empty()
                && wanted != "(null)"
                && drivers_dir.join(&wanted).is_dir()
                && !drivers_dir.join(&wanted).join(".refuses").exists();
            if ok {
                if let Ok(a) = addr.parse() {
                    link_driver(root, &a, &wanted);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
