//! What backs the segment: hugetlbfs when it can, /dev/shm otherwise, and
//! never silently.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{scratch_opts, TempDir};
use shm_layout::{Backing, PeriodicRecord, ProducerInfo, ProducerState, Role, Segment, ShmError};

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";
/// In-use pages above the persistent count (a shrink while mapped); writing
/// `NR_HUGEPAGES` sets the persistent count, reading it gives both.
const SURPLUS_HUGEPAGES: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/surplus_hugepages";
/// `HeaderInfo::flags` bit of the /dev/shm fallback.
const FLAG_DEVSHM: u32 = 1;

#[test]
fn fallback_to_devshm_is_recorded_and_reported() {
    let dir = TempDir::new("fallback");
    let seg = Segment::create(&scratch_opts(dir.path(), "fallback")).unwrap();
    assert_eq!(seg.backing(), Backing::DevShm);
    let why = seg.fallback_reason().expect("a reason");
    assert!(why.contains("is not a hugetlbfs mount"), "{why}");
    let h = seg.header();
    assert_eq!(h.flags & FLAG_DEVSHM, FLAG_DEVSHM);
    assert_eq!(h.backing, Backing::DevShm);
    assert_eq!(h.fallback_reason.as_deref(), Some(why));
    // Another process opening it learns the same from the header.
    let other = Segment::open(seg.path()).unwrap();
    assert_eq!(other.backing(), Backing::DevShm);
    assert_eq!(other.fallback_reason(), Some(why));
    let json = serde_json::to_value(seg.snapshot()).unwrap();
    assert_eq!(json["segment"]["backing"], "devshm");
    assert_eq!(json["segment"]["fallback_reason"], why);
}

#[test]
fn fallback_can_be_refused() {
    let dir = TempDir::new("nofallback");
    let mut opts = scratch_opts(dir.path(), "nofallback");
    opts.allow_fallback = false;
    let err = Segment::create(&opts).err().unwrap();
    assert!(matches!(err, ShmError::NoHugepages { .. }), "{err:?}");
    assert!(err.to_string().contains("bypasslab-nofallback"), "{err}");
    assert!(!dir.path().join("bypasslab-nofallback").exists());
}

/// A hugetlbfs mount and a raised hugepage count, undone on drop.
struct Hugetlbfs {
    dir: PathBuf,
    restore_nr: Option<(u64, u64)>,
}

impl Hugetlbfs {
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        let out = Command::new("mount")
            .args(["-t", "hugetlbfs", "-o", &format!("size={size}"), "none"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t hugetlbfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self {
            dir: dir.to_owned(),
            restore_nr: None,
        })
    }

    /// Makes sure `pages` more pages than now exist; `false` if the kernel
    /// cannot give them. Undone on drop to the persistent count of before.
    fn add_pages(&mut self, pages: u64) -> bool {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        };
        let Some(old) = read(NR_HUGEPAGES) else {
            return false;
        };
        let surplus = read(SURPLUS_HUGEPAGES).unwrap_or(0);
        let want = old + pages;
        if std::fs::write(NR_HUGEPAGES, want.to_string()).is_err() {
            return false;
        }
        // Growing turns surplus pages persistent: restoring the persistent
        // count of before lets them leave when their users unmap them.
        self.restore_nr = Some((old - surplus.min(old), want));
        read(NR_HUGEPAGES) == Some(want)
    }
}

impl Drop for Hugetlbfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        if let Some((old, set)) = self.restore_nr {
            // Only undo our own change, not one someone made since.
            let now = std::fs::read_to_string(NR_HUGEPAGES).unwrap_or_default();
            if now.trim() == set.to_string() {
                let _ = std::fs::write(NR_HUGEPAGES, old.to_string());
            }
        }
    }
}

#[test]
fn hugetlbfs_when_pages_are_free_devshm_when_not() {
    let mnt = TempDir::new("hugemnt");
    let fallback = TempDir::new("hugefallback");
    // 4 MiB limit on the mount: a segment needing more finds no free pages.
    let mut huge = match Hugetlbfs::mount(mnt.path(), "4M") {
        Ok(h) => h,
        Err(why) => {
            println!("SKIPPED hugetlbfs test: {why}");
            return;
        }
    };
    let mut opts = scratch_opts(fallback.path(), "huge-big");
    opts.hugetlbfs_dir = Some(mnt.path().to_owned());
    opts.ring_capacity = 1 << 16; // 16 MiB of rings per slot
    let seg = Segment::create(&opts).unwrap();
    assert_eq!(seg.backing(), Backing::DevShm);
    let why = seg.fallback_reason().unwrap().to_owned();
    assert!(why.contains("not enough free huge pages"), "{why}");
    assert_eq!(seg.header().flags & FLAG_DEVSHM, FLAG_DEVSHM);
    assert!(seg.path().starts_with(fallback.path()));
    assert!(
        !mnt.path().join("bypasslab-huge-big").exists(),
        "the failed file is removed"
    );
    println!("no free pages: fell back to /dev/shm because {why}");
    seg.unlink().unwrap();

    if !huge.add_pages(2) {
        println!("SKIPPED hugetlbfs success case: the kernel would not allocate 2 huge pages");
        return;
    }
    let mut opts = scratch_opts(fallback.path(), "huge-ok");
    opts.hugetlbfs_dir = Some(mnt.path().to_owned());
    let seg = Segment::create(&opts).unwrap();
    assert_eq!(
        seg.backing(),
        Backing::Hugetlbfs,
        "{:?}",
        seg.fallback_reason()
    );
    assert_eq!(seg.fallback_reason(), None);
    assert_eq!(seg.header().flags & FLAG_DEVSHM, 0);
    assert!(seg.path().starts_with(mnt.path()));
    assert_eq!(seg.header().total_size % (2 << 20), 0);
    let other = Segment::open(seg.path()).unwrap();
    assert_eq!(other.backing(), Backing::Hugetlbfs);
    let info = ProducerInfo {
        pid: std::process::id(),
        core: None,
        kind: "huge".into(),
        state: ProducerState::Running,
    };
    let mut p = other.producer(Role::Engine, &info).unwrap();
    let mut c = seg.consumer(Role::Engine).unwrap();
    let r = PeriodicRecord::new(1, 2, [3; 5]);
    assert!(p.push_record(&r));
    assert_eq!(c.pop(), Some(r));
    drop((p, c));
    drop(other);
    println!(
        "hugetlbfs segment of {} bytes works",
        seg.header().total_size
    );
    seg.unlink().unwrap();
}
