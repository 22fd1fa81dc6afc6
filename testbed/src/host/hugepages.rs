//! 2 MB hugepages for the shared-memory segment and the DPDK engines:
//! reserve what is missing, mount hugetlbfs if nothing is mounted, and give
//! back exactly what was taken.
//!
//! The accounting is in *persistent* pages. Writing N to `nr_hugepages`
//! asks for N persistent pages; the file reads back the total, persistent
//! plus *surplus* (pages in use above the persistent count: what a shrink
//! leaves while someone still maps them, freed when they are unmapped).
//! Growing the pool turns surplus pages into persistent ones first, so a
//! grant counted in totals would miss them, and the release would leave
//! them in the pool for good.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const POOL_DIR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";

/// What a run took from the host, recorded in the run state so that a later
/// `stop` or `start` can give it back after a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugepageGrant {
    /// Persistent pages this run added to the 2 MB pool (0 when enough
    /// were free), surplus pages it made persistent included.
    pub added_pages: u64,
    /// hugetlbfs mount this run created, if any.
    pub mounted_at: Option<PathBuf>,
    /// The hugetlbfs directory the run uses (ours or a pre-existing one).
    pub dir: Option<PathBuf>,
    /// Why hugepages could not be had, if they could not (the segment then
    /// falls back to /dev/shm and says so).
    pub unavailable: Option<String>,
    /// Pages the mount holds for the run (hugetlbfs `min_size`): no other
    /// mount's process can take them while it stands, so two runs started
    /// together cannot both count the same free pages.
    #[serde(default)]
    pub reserved_pages: u64,
}

/// Hugepage failures that are worth a specific message.
#[derive(Debug, thiserror::Error)]
pub enum HugepageError {
    /// Writing the pool size failed.
    #[error("step `hugepages`: reserving 2 MB hugepages: writing {path}: {source}; this needs root (or reserve them at boot: hugepagesz=2M hugepages=N on the kernel command line)")]
    Reserve {
        /// The sysfs file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Mounting hugetlbfs failed.
    #[error("step `hugetlbfs mount`: mounting hugetlbfs at {path}: {source}; this needs root and a kernel with hugetlbfs (see `supervisor doctor`)")]
    Mount {
        /// Mount point.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `supervisor hugepages reserve` twice without a release.
    #[error("a reservation is already recorded in {path} ({pages} pages added): `supervisor hugepages release` first")]
    AlreadyReserved {
        /// The record.
        path: PathBuf,
        /// What it added.
        pages: u64,
    },
    /// The reservation's record cannot be written.
    #[error("recording the reservation in {path}: {source}")]
    Record {
        /// The record.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The pool's lock cannot be taken.
    #[error("locking the hugepage pool ({path}): {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Serialises changes of the 2 MB pool between processes (two testbeds
/// starting at once would otherwise read the same pool and each grow it
/// by the other's pages too): held for the read-modify-write of
/// `nr_hugepages` only, never across a run.
struct PoolLock {
    _file: nix::fcntl::Flock<fs::File>,
}

fn pool_lock_path() -> PathBuf {
    Path::new(crate::state::STATE_ROOT).join("hugepage-pool.lock")
}

impl PoolLock {
    fn take() -> Result<Self, HugepageError> {
        let path = pool_lock_path();
        let err = |source| HugepageError::Lock {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(crate::state::STATE_ROOT).map_err(err)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| err(io::Error::from(e)))?;
        Ok(Self { _file: file })
    }
}

/// Where `supervisor hugepages reserve` records what it took.
#[must_use]
pub fn reservation_path() -> PathBuf {
    Path::new(crate::state::STATE_ROOT).join("hugepages.json")
}

/// The recorded reservation of `supervisor hugepages reserve`, if any.
#[must_use]
pub fn reservation() -> Option<HugepageGrant> {
    crate::state::read_json(&reservation_path()).ok().flatten()
}

/// `supervisor hugepages reserve`: [`acquire`], recorded so that
/// [`release_reservation`] gives back exactly that.
///
/// # Errors
/// A reservation is already recorded, or [`acquire`] fails, or the record
/// cannot be written (what was taken is given back then).
pub fn reserve(pages: u64, mount_point: &Path) -> Result<HugepageGrant, HugepageError> {
    let path = reservation_path();
    if let Some(previous) = reservation() {
        return Err(HugepageError::AlreadyReserved {
            path,
            pages: previous.added_pages,
        });
    }
    let grant = acquire(pages, mount_point)?;
    if let Err(source) = crate::state::write_json(&path, &grant) {
        release(&grant);
        return Err(HugepageError::Record { path, source });
    }
    Ok(grant)
}

/// `supervisor hugepages release`: gives back the recorded reservation;
/// `None` when there is none, else it and the problems met.
#[must_use]
pub fn release_reservation() -> Option<(HugepageGrant, Vec<String>)> {
    let grant = reservation()?;
    let problems = release(&grant);
    let _ = fs::remove_file(reservation_path());
    Some((grant, problems))
}

/// The 2 MB pool's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolState {
    /// Pages in the pool (`nr_hugepages`: persistent and surplus).
    pub total: u64,
    /// Pages not in use.
    pub free: u64,
    /// In-use pages above the persistent count, freed when unmapped.
    pub surplus: u64,
    /// Free pages promised to a mapping or a mount (`resv_hugepages`):
    /// nobody else gets them.
    #[serde(default)]
    pub reserved: u64,
}

impl PoolState {
    /// Pages that stay in the pool when unused: what writing
    /// `nr_hugepages` sets.
    #[must_use]
    pub fn persistent(&self) -> u64 {
        self.total.saturating_sub(self.surplus)
    }

    /// Free pages nobody holds: what a new mapping or mount can have.
    #[must_use]
    pub fn available(&self) -> u64 {
        self.free.saturating_sub(self.reserved)
    }

    /// More surplus pages than pages in use: some surplus page is free and
    /// will never be given back by itself (see [`release`]).
    #[must_use]
    pub fn has_free_surplus(&self) -> bool {
        self.surplus > self.total.saturating_sub(self.free)
    }
}

fn read_u64(path: &Path) -> io::Result<u64> {
    fs::read_to_string(path)?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The 2 MB pool, or `None` where the kernel has no such pool.
///
/// The three counters are separate files: a surplus page freed between two
/// reads would make the persistent count (total − surplus) off by one, so
/// the reading is repeated until the total is the same before and after.
#[must_use]
pub fn pool() -> Option<PoolState> {
    let dir = Path::new(POOL_DIR);
    let total = || read_u64(&dir.join("nr_hugepages")).ok();
    let mut state = None;
    for _ in 0..16 {
        let before = total()?;
        let read = PoolState {
            total: before,
            free: read_u64(&dir.join("free_hugepages")).ok()?,
            surplus: read_u64(&dir.join("surplus_hugepages")).unwrap_or(0),
            reserved: read_u64(&dir.join("resv_hugepages")).unwrap_or(0),
        };
        let stable = total()? == before;
        state = Some(read);
        if stable {
            break;
        }
    }
    state
}

/// A `/proc/meminfo` field, in its unit (kB for sizes, a count for
/// `HugePages_*`).
#[must_use]
pub fn meminfo(key: &str) -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The original Case 2 setup's reservation: 1024 pages of 2 MB.
pub const CASE2_PAGES: u64 = 1024;

/// Memory the default reservation must leave to everything else, kB.
const CASE2_HEADROOM_KB: u64 = 1 << 20;

/// How many pages a run on a PCI NIC reserves, and why, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCount {
    /// Free 2 MB pages to have.
    pub pages: u64,
    /// Why that many.
    pub why: String,
}

/// The Case 2 count: `configured` (`dpdk.hugepages`) when given, else
/// [`CASE2_PAGES`] when the host can add what the pool lacks of them
/// (`free` pages) from `available_kb` (MemAvailable) with 1 GB to spare,
/// else `needed`, what the run itself needs. Never below `needed`.
#[must_use]
pub fn case2_pages(
    configured: Option<u64>,
    needed: u64,
    free: u64,
    available_kb: Option<u64>,
) -> PageCount {
    if let Some(n) = configured {
        return if n >= needed {
            PageCount {
                pages: n,
                why: format!("{n} × 2 MB, as dpdk.hugepages says"),
            }
        } else {
            PageCount {
                pages: needed,
                why: format!("{needed} × 2 MB, what the run needs (dpdk.hugepages = {n} is less)"),
            }
        };
    }
    let adding_kb = CASE2_PAGES.saturating_sub(free) * 2048;
    match available_kb {
        Some(kb) if kb >= adding_kb + CASE2_HEADROOM_KB => PageCount {
            pages: CASE2_PAGES,
            why: format!(
                "{CASE2_PAGES} × 2 MB, as the original setup ({} MB available)",
                kb / 1024
            ),
        },
        Some(kb) => PageCount {
            pages: needed.max(1),
            why: format!(
                "{needed} × 2 MB, what the run needs: the original setup's {CASE2_PAGES} would leave less than 1 GB of the {} MB available (set dpdk.hugepages to choose)",
                kb / 1024
            ),
        },
        None => PageCount {
            pages: needed.max(1),
            why: format!(
                "{needed} × 2 MB, what the run needs: /proc/meminfo has no MemAvailable to judge {CASE2_PAGES} by"
            ),
        },
    }
}

/// A mounted hugetlbfs with 2 MB pages, if any.
#[must_use]
pub fn find_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_2m = fields
            .get(3)
            .is_some_and(|o| !o.contains("pagesize=") || o.contains("pagesize=2M"));
        (fields.get(2) == Some(&"hugetlbfs") && is_2m).then(|| PathBuf::from(fields[1]))
    })
}

/// Makes sure `pages` free 2 MB pages nobody holds exist, taking only what
/// is missing, and mounts a hugetlbfs of the caller's own at `mount_point`
/// that holds them (`min_size`) until it is unmounted.
///
/// The mount is always the caller's, never one found on the host: another
/// testbed's mount vanishes with that testbed, taking this run's segment and
/// DPDK files with it. Several hugetlbfs mounts share one page pool.
///
/// A host that cannot give hugepages is not an error: the grant says why,
/// and the segment falls back to /dev/shm visibly.
///
/// # Errors
/// When a step that should work fails half-way (mount after reservation),
/// after giving back what this call took.
pub fn acquire(pages: u64, mount_point: &Path) -> Result<HugepageGrant, HugepageError> {
    let _pool = PoolLock::take()?;
    let mut grant = HugepageGrant::default();
    let Some(before) = pool() else {
        grant.unavailable = Some("this kernel has no 2 MB hugepage pool".into());
        return Ok(grant);
    };
    if before.available() < pages {
        // Surplus pages are in use: they turn persistent before any free
        // page is added, so the target counts them.
        let want = before.total + (pages - before.available());
        let path = Path::new(POOL_DIR).join("nr_hugepages");
        fs::write(&path, want.to_string())
            .map_err(|source| HugepageError::Reserve { path, source })?;
        let after = pool().unwrap_or(before);
        grant.added_pages = after.persistent().saturating_sub(before.persistent());
        if after.available() < pages {
            grant.unavailable = Some(format!(
                "asked the kernel for {pages} free 2 MB pages, it could give {} (memory fragmented or limited)",
                after.available()
            ));
        }
    }
    let hold = if grant.unavailable.is_none() {
        pages
    } else {
        0
    };
    if let Err(source) = mount_hugetlbfs(mount_point, hold) {
        release_locked(&grant);
        return Err(HugepageError::Mount {
            path: mount_point.to_owned(),
            source,
        });
    }
    grant.mounted_at = Some(mount_point.to_owned());
    grant.dir = Some(mount_point.to_owned());
    grant.reserved_pages = hold;
    Ok(grant)
}

/// Mounts hugetlbfs at `at`, holding `pages` pages for it (none: 0).
fn mount_hugetlbfs(at: &Path, pages: u64) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    fs::create_dir_all(at)?;
    let options = if pages > 0 {
        format!("pagesize=2M,min_size={}", pages * 2 * 1024 * 1024)
    } else {
        "pagesize=2M".to_owned()
    };
    mount(
        Some("hugetlbfs"),
        at,
        Some("hugetlbfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(io::Error::from)
}

/// Gives back what `grant` took: unmounts our mount, shrinks the pool by the
/// pages we added (leaving no free page counted as surplus). Best effort;
/// returns the problems met, if any.
pub fn release(grant: &HugepageGrant) -> Vec<String> {
    match PoolLock::take() {
        Ok(_pool) => release_locked(grant),
        // Giving back without the lock beats keeping the pages.
        Err(e) => {
            let mut problems = release_locked(grant);
            problems.insert(0, e.to_string());
            problems
        }
    }
}

/// [`release`], with the pool's lock held by the caller.
fn release_locked(grant: &HugepageGrant) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(at) = &grant.mounted_at {
        if let Err(e) = nix::mount::umount2(at, nix::mount::MntFlags::MNT_DETACH) {
            if e != nix::errno::Errno::EINVAL && e != nix::errno::Errno::ENOENT {
                problems.push(format!("unmounting {}: {e}", at.display()));
            }
        }
        let _ = fs::remove_dir(at);
    }
    if grant.added_pages > 0 {
        if let Some(now) = pool() {
            // Pages of ours still mapped become surplus and leave the pool
            // when unmapped.
            let target = now.persistent().saturating_sub(grant.added_pages);
            if let Err(e) = shrink_to(target) {
                problems.push(format!("shrinking the hugepage pool to {target}: {e}"));
            }
        }
    }
    problems
}

/// Sets the persistent count to `target`, and makes sure no *free* page is
/// left counted as surplus.
///
/// The kernel shrinks in two steps: it frees free pages down to the number
/// in use, then marks the rest surplus. A page unmapped between the two
/// (an engine's memory, freed as the engine exits) is free by then, yet
/// marked surplus: surplus pages are only given back when they are freed,
/// and this one already was, so it would stay in the pool for good. Growing
/// the pool to its total turns such pages persistent again, and shrinking
/// once more frees them; pages really in use are surplus afterwards as
/// before.
fn shrink_to(target: u64) -> io::Result<()> {
    let path = Path::new(POOL_DIR).join("nr_hugepages");
    fs::write(&path, target.to_string())?;
    for _ in 0..4 {
        let Some(now) = pool() else {
            break;
        };
        if !now.has_free_surplus() {
            break;
        }
        fs::write(&path, now.total.to_string())?;
        fs::write(&path, target.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests share the host's pool: one at a time, even under a
    /// parallel test runner.
    static POOL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The pool to this test alone; `None` (the test skips) without root.
    fn exclusive_pool() -> Option<std::sync::MutexGuard<'static, ()>> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root to reserve hugepages");
            return None;
        }
        Some(
            POOL.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// A grant given back once: by [`Held::give_back`], or when dropped
    /// (a failing assertion must not leave pages or a mount on the host).
    struct Held(Option<HugepageGrant>);

    impl Held {
        fn grant(&self) -> &HugepageGrant {
            self.0.as_ref().expect("not given back yet")
        }

        fn give_back(&mut self) -> Vec<String> {
            self.0.take().map(|g| release(&g)).unwrap_or_default()
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            let _ = self.give_back();
        }
    }

    #[test]
    fn case2_takes_the_original_count_only_with_memory_to_spare() {
        let gb = 1 << 20;
        // 2 GB to add and 1 GB left over: the original 1024.
        assert_eq!(case2_pages(None, 260, 0, Some(3 * gb)).pages, 1024);
        // Less: what the run needs, said with the figures.
        let small = case2_pages(None, 260, 0, Some(2 * gb));
        assert_eq!(small.pages, 260);
        assert!(small.why.contains("2048 MB available"), "{}", small.why);
        // Pages already free need no new memory.
        assert_eq!(case2_pages(None, 260, 1024, Some(gb)).pages, 1024);
        assert_eq!(case2_pages(None, 260, 0, None).pages, 260);
        // The configuration decides, never below the need.
        assert_eq!(case2_pages(Some(300), 260, 0, Some(0)).pages, 300);
        let low = case2_pages(Some(8), 260, 0, Some(100 * gb));
        assert_eq!(low.pages, 260);
        assert!(low.why.contains("dpdk.hugepages = 8"), "{}", low.why);
    }

    #[test]
    fn free_pages_counted_as_surplus_are_recognised() {
        let state = |total, free, surplus| PoolState {
            total,
            free,
            surplus,
            reserved: 0,
        };
        // Seen after a dpdk run's teardown: 1 page in use, 8 surplus.
        assert!(state(8, 7, 8).has_free_surplus());
        // A mapped page left surplus by a shrink: it leaves when unmapped.
        assert!(!state(1, 0, 1).has_free_surplus());
        assert!(!state(261, 251, 0).has_free_surplus());
        assert!(!state(0, 0, 0).has_free_surplus());
        assert_eq!(state(8, 7, 8).persistent(), 0);
    }

    #[test]
    fn acquire_then_release_restores_the_host() {
        let Some(_pool) = exclusive_pool() else {
            return;
        };
        let before = pool();
        let before_mount = find_mount();
        let dir = std::env::temp_dir().join(format!("bypasslab-huge-test-{}", std::process::id()));
        let mut held = Held(Some(acquire(2, &dir).unwrap()));
        if held.grant().unavailable.is_none() {
            assert!(pool().unwrap().free >= 2);
            assert!(held.grant().dir.is_some());
            // The mount holds its pages: others see them reserved.
            assert_eq!(held.grant().reserved_pages, 2);
            assert!(pool().unwrap().reserved >= 2);
        }
        assert!(held.give_back().is_empty());
        assert_eq!(pool().map(|p| p.total), before.map(|p| p.total));
        assert_eq!(find_mount(), before_mount);
        assert!(!dir.exists());
    }

    /// A run that reserves while another run's page is surplus (its pool
    /// was shrunk while the page was mapped) gives the pool back so that
    /// the page still leaves when it is unmapped.
    #[test]
    fn a_surplus_page_made_persistent_is_given_back() {
        let Some(_pool) = exclusive_pool() else {
            return;
        };
        let pid = std::process::id();
        let first_dir = std::env::temp_dir().join(format!("bypasslab-huge-s1-{pid}"));
        let second_dir = std::env::temp_dir().join(format!("bypasslab-huge-s2-{pid}"));
        let Some(start) = pool() else {
            eprintln!("skipped: no 2 MB pool");
            return;
        };
        // The first run takes a page into use, then gives its grant back
        // while the page is still mapped: the page turns surplus.
        let mut first = Held(Some(acquire(start.free + 1, &first_dir).unwrap()));
        if first.grant().unavailable.is_some() {
            eprintln!("skipped: the kernel gives no hugepages");
            return;
        }
        let file = first_dir.join("held");
        let held = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&file)
            .unwrap();
        let map = {
            // SAFETY: a fresh mapping of a file of our own; no other
            // reference to its memory exists.
            let mut m = unsafe {
                memmap2::MmapOptions::new()
                    .len(2 << 20)
                    .map_mut(&held)
                    .unwrap()
            };
            m[0] = 1;
            m
        };
        let _ = std::fs::remove_file(&file);
        drop(held);
        assert!(first.give_back().is_empty());
        let shrunk = pool().unwrap();
        assert!(
            shrunk.surplus >= 1,
            "the mapped page is surplus: {shrunk:?}"
        );
        // The second run reserves, turning that page persistent, and gives
        // back what it took.
        let mut second = Held(Some(acquire(shrunk.free + 2, &second_dir).unwrap()));
        assert!(second.give_back().is_empty());
        drop(map);
        let end = pool().unwrap();
        assert_eq!(
            end.persistent(),
            start.persistent(),
            "start {start:?}, shrunk {shrunk:?}, end {end:?}"
        );
        assert_eq!(end.total, start.total, "start {start:?}, end {end:?}");
    }
}
