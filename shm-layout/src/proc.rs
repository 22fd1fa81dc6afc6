//! What the segment needs from the system besides mapping: process identity
//! (pid + start time, against pid reuse) and hugetlbfs detection.

use std::path::{Path, PathBuf};

/// `statfs.f_type` of hugetlbfs.
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// State letter and start time (clock ticks after boot, field 22) of `pid`
/// from `/proc/<pid>/stat`.
pub(crate) fn stat_of(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<(char, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `fields` now starts at field 4; field 22 is 18 further.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Start time of this process, clock ticks after boot.
pub(crate) fn self_start_ticks() -> u64 {
    stat_of(std::process::id()).map_or(0, |(_, t)| t)
}

/// Whether `pid` runs and is the process that started at `start_ticks`
/// (compared on the bits in `mask`). Zombies count as dead.
pub(crate) fn is_alive(pid: u32, start_ticks: u64, mask: u64) -> bool {
    match stat_of(pid) {
        None => false,
        Some((state, _)) if state == 'Z' || state == 'X' => false,
        Some((_, t)) => t & mask == start_ticks & mask,
    }
}

/// The huge page size of `dir` if it is a hugetlbfs mount.
pub(crate) fn hugetlbfs_page_size(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statfs` is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path that outlives the call and `st`
    // is a valid, writable `statfs`.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let ftype = i64::from(st.f_type);
    if rc != 0 || ftype != HUGETLBFS_MAGIC {
        return None;
    }
    u64::try_from(st.f_bsize).ok()
}

/// The first hugetlbfs mount point in `/proc/mounts`.
pub(crate) fn find_hugetlbfs() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (_dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "hugetlbfs").then(|| PathBuf::from(unescape_mount(dir)))
    })
}

/// `/proc/mounts` writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Wall-clock time, nanoseconds since the Unix epoch.
pub(crate) fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 987_654)));
        assert!(self_start_ticks() > 0);
        assert!(is_alive(std::process::id(), self_start_ticks(), u64::MAX));
        assert!(!is_alive(
            std::process::id(),
            self_start_ticks() + 1,
            u64::MAX
        ));
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape_mount("/mnt/huge\\040pages"), "/mnt/huge pages");
        assert_eq!(unescape_mount("/dev/hugepages"), "/dev/hugepages");
    }
}
