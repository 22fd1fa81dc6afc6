//! An AF_PACKET socket bound to one interface with a TPACKET_V2 receive ring.
//!
//! The ring doubles as the emulator's delay queue: a frame stays in its slot,
//! owned by user space, until its release time, then is sent from the slot
//! and the slot is handed back to the kernel. Slots are consumed strictly in
//! order, so frame order is kept for free, and no frame is copied in user
//! space.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use libc::{c_int, c_void};

/// One received frame, borrowed from the ring.
pub struct Frame<'a> {
    /// The bytes captured (the whole frame unless `truncated`).
    pub data: &'a [u8],
    /// Kernel receive timestamp, nanoseconds of CLOCK_REALTIME.
    pub rx_ns: i64,
    /// The frame was longer than a ring slot.
    pub truncated: bool,
    /// The sender left the checksum to offload (it would leave incomplete).
    pub csum_not_ready: bool,
}

/// A bound AF_PACKET socket and its mapped RX ring.
pub struct PacketRing {
    fd: OwnedFd,
    map: NonNull<u8>,
    map_len: usize,
    frame_size: usize,
    frame_nr: usize,
    head: usize,
    ifname: String,
}

fn setsockopt<T>(fd: RawFd, level: c_int, name: c_int, value: &T, what: &str) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: `value` points to a live `T` of exactly `len` bytes for the
    // duration of the call; the kernel only reads it.
    let rc =
        unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast::<c_void>(), len) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setsockopt {what}: {e}")));
    }
    Ok(())
}

fn ifindex(name: &str) -> io::Result<c_int> {
    let c = CString::new(name).map_err(|_| io::Error::other("interface name holds a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("interface {name}: {e}")));
    }
    c_int::try_from(idx).map_err(|_| io::Error::other("interface index out of range"))
}

const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

impl PacketRing {
    /// Opens a ring of `frame_nr` slots of `frame_size` bytes on `ifname`.
    /// `frame_size` must be a power of two ≥ 2048.
    pub fn open(ifname: &str, frame_size: usize, frame_nr: usize) -> io::Result<PacketRing> {
        let index = ifindex(ifname)?;
        // Protocol 0: the socket receives nothing until it is bound below,
        // after the ring exists, so no frame of another interface slips in.
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("socket(AF_PACKET): {e}")));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();

        let version: c_int = libc::tpacket_versions::TPACKET_V2 as c_int;
        setsockopt(
            s,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &version,
            "PACKET_VERSION",
        )?;
        let one: c_int = 1;
        // Our own transmissions on this interface must not come back to us.
        setsockopt(
            s,
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &one,
            "PACKET_IGNORE_OUTGOING",
        )?;
        // Send straight to the driver: the emulator is the queue.
        setsockopt(
            s,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &one,
            "PACKET_QDISC_BYPASS",
        )?;

        let block_size = frame_size.max(1 << 16);
        let frames_per_block = block_size / frame_size;
        let block_nr = frame_nr.div_ceil(frames_per_block).max(1);
        let frame_nr = block_nr * frames_per_block;
        let to_u32 = |v: usize| u32::try_from(v).map_err(|_| io::Error::other("ring too large"));
        let req = libc::tpacket_req {
            tp_block_size: to_u32(block_size)?,
            tp_block_nr: to_u32(block_nr)?,
            tp_frame_size: to_u32(frame_size)?,
            tp_frame_nr: to_u32(frame_nr)?,
        };
        setsockopt(
            s,
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            &req,
            "PACKET_RX_RING",
        )?;
        let map_len = block_size * block_nr;
        // SAFETY: maps the ring the kernel just allocated for this socket;
        // the result is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                s,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("mmap packet ring: {e}")));
        }
        let map =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        let ring = PacketRing {
            fd,
            map,
            map_len,
            frame_size,
            frame_nr,
            head: 0,
            ifname: ifname.to_string(),
        };

        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL_BE;
        addr.sll_ifindex = index;
        let len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or(0);
        // SAFETY: `addr` is a valid sockaddr_ll of `len` bytes.
        let rc = unsafe {
            libc::bind(
                s,
                (&addr as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
                len,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("bind to {ifname}: {e}")));
        }
        Ok(ring)
    }

    /// The interface this ring is bound to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    fn slot(&self, i: usize) -> *mut u8 {
        debug_assert!(i < self.frame_nr);
        // SAFETY: i < frame_nr, and frame_nr * frame_size ≤ map_len because
        // every block holds a whole number of frames.
        unsafe { self.map.as_ptr().add(i * self.frame_size) }
    }

    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: every slot starts with a tpacket2_hdr whose first field is
        // the u32 `tp_status`, 16-byte aligned and shared with the kernel; it
        // is only ever accessed atomically from this side.
        unsafe { AtomicU32::from_ptr(self.slot(i).cast::<u32>()) }
    }

    /// Whether a frame is waiting at the head of the ring.
    pub fn ready(&self) -> bool {
        self.status(self.head).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// The frame at the head of the ring, if the kernel has filled it.
    pub fn peek(&self) -> Option<Frame<'_>> {
        // SYNC: Acquire pairs with the kernel's barrier before it publishes
        // TP_STATUS_USER, so the header and data below are complete.
        let st = self.status(self.head).load(Ordering::Acquire);
        if st & libc::TP_STATUS_USER == 0 {
            return None;
        }
        let base = self.slot(self.head);
        // SAFETY: the slot is owned by user space (TP_STATUS_USER) and starts
        // with a tpacket2_hdr; read_unaligned avoids assuming more alignment
        // than TPACKET_ALIGNMENT gives.
        let hdr = unsafe { base.cast::<libc::tpacket2_hdr>().read_unaligned() };
        let mac = usize::from(hdr.tp_mac);
        let snap = usize::try_from(hdr.tp_snaplen).unwrap_or(0);
        let snap = snap.min(self.frame_size.saturating_sub(mac));
        // SAFETY: mac + snap ≤ frame_size (clamped above), so the slice lies
        // inside this slot, which stays user-owned until `release`, and the
        // borrow of `self` keeps `release` from running meanwhile.
        let data = unsafe { std::slice::from_raw_parts(base.add(mac), snap) };
        let rx_ns = i64::from(hdr.tp_sec) * 1_000_000_000 + i64::from(hdr.tp_nsec);
        Some(Frame {
            data,
            rx_ns,
            truncated: hdr.tp_snaplen < hdr.tp_len,
            csum_not_ready: st & libc::TP_STATUS_CSUMNOTREADY != 0,
        })
    }

    /// Hands the head slot back to the kernel and moves on.
    pub fn release(&mut self) {
        // SYNC: Release orders our reads of the slot before the kernel may
        // overwrite it.
        self.status(self.head)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.head = (self.head + 1) % self.frame_nr;
    }

    /// Sends one frame out of this ring's interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is a valid readable buffer of `frame.len()` bytes.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast::<c_void>(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Frames the kernel dropped because the ring was full since the last
    /// call (reading resets the kernel's counter).
    pub fn take_kernel_drops(&self) -> u64 {
        // SAFETY: tpacket_stats is plain old data; all-zero is valid.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = libc::socklen_t::try_from(size_of::<libc::tpacket_stats>()).unwrap_or(0);
        // SAFETY: `st` is a writable tpacket_stats of `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast::<c_void>(),
                &mut len,
            )
        };
        if rc != 0 {
            return 0;
        }
        u64::from(st.tp_drops)
    }

    /// The socket, for poll(2).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        // SAFETY: `map`/`map_len` are exactly what mmap returned, and no
        // borrow of the ring outlives `self`.
        unsafe {
            libc::munmap(self.map.as_ptr().cast::<c_void>(), self.map_len);
        }
    }
}
