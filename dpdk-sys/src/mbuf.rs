//! Packet buffers: the pool and one owned buffer.

use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::error::{rte_errno, strerror};
use crate::{ffi, DpdkError, Eal};

/// A pool of packet buffers (`rte_pktmbuf_pool_create`), freed on drop.
#[derive(Debug)]
pub struct Mempool<'eal> {
    raw: NonNull<ffi::rte_mempool>,
    _eal: PhantomData<&'eal Eal>,
}

impl<'eal> Mempool<'eal> {
    /// Creates a pool of `count` mbufs with `data_room` bytes each (headroom
    /// included; [`crate::MBUF_DEFAULT_BUF_SIZE`] fits a 1500-byte MTU
    /// frame), and a per-lcore cache of `cache` mbufs.
    ///
    /// # Errors
    /// [`DpdkError::MempoolCreate`], e.g. when EAL has too little memory
    /// (`-m`) or the name is taken.
    pub fn create(
        eal: &'eal Eal,
        name: &str,
        count: u32,
        cache: u32,
        data_room: u16,
    ) -> Result<Self, DpdkError> {
        let c_name = CString::new(name).map_err(|_| DpdkError::MempoolCreate {
            name: name.to_owned(),
            errno: libc::EINVAL,
            message: "name contains a NUL byte".to_owned(),
        })?;
        let socket = i32::try_from(eal.socket_id()).unwrap_or(ffi::SOCKET_ID_ANY);
        // SAFETY: EAL is initialised (borrowed); the name is NUL-terminated
        // and copied by DPDK; the other arguments are plain values.
        let raw = unsafe {
            ffi::rte_pktmbuf_pool_create(c_name.as_ptr(), count, cache, 0, data_room, socket)
        };
        NonNull::new(raw).map_or_else(
            || {
                let errno = rte_errno();
                Err(DpdkError::MempoolCreate {
                    name: name.to_owned(),
                    errno,
                    message: strerror(errno),
                })
            },
            |raw| {
                Ok(Self {
                    raw,
                    _eal: PhantomData,
                })
            },
        )
    }

    /// Takes one empty mbuf from the pool, or `None` when it is exhausted.
    #[must_use]
    pub fn alloc(&self) -> Option<Mbuf<'_>> {
        // SAFETY: the pool is alive (self); the shim calls
        // rte_pktmbuf_alloc, which returns NULL or a reset mbuf we now own.
        let raw = unsafe { ffi::shim_pktmbuf_alloc(self.raw.as_ptr()) };
        NonNull::new(raw).map(|raw| Mbuf {
            raw,
            _pool: PhantomData,
        })
    }

    /// Mbufs currently free in the pool (caches included).
    #[must_use]
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive; reads its counters.
        unsafe { ffi::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.raw.as_ptr()
    }
}

impl Drop for Mempool<'_> {
    fn drop(&mut self) {
        // SAFETY: every Mbuf and Port borrowing this pool is gone (their
        // lifetimes are tied to &self), so no mbuf of it is still in use by
        // Rust; the pointer came from rte_pktmbuf_pool_create.
        unsafe { ffi::rte_mempool_free(self.raw.as_ptr()) }
    }
}

/// One packet buffer, owned: dropping it returns it to its pool.
///
/// Only the first segment is exposed ([`Mbuf::data`]); a frame of a
/// 1500-byte MTU always fits one segment of the default data room.
#[derive(Debug)]
pub struct Mbuf<'pool> {
    raw: NonNull<ffi::rte_mbuf>,
    _pool: PhantomData<&'pool ()>,
}

impl Mbuf<'_> {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf that nobody else owns or will free, from a
    /// pool that outlives the returned value's lifetime.
    pub(crate) unsafe fn from_raw(raw: NonNull<ffi::rte_mbuf>) -> Self {
        Self {
            raw,
            _pool: PhantomData,
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::rte_mbuf {
        self.raw.as_ptr()
    }

    /// Gives up ownership (the driver took it).
    pub(crate) fn into_raw(self) -> *mut ffi::rte_mbuf {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }

    /// Bytes in the first segment.
    #[must_use]
    pub fn len(&self) -> usize {
        // SAFETY: self owns a valid mbuf; reads one field.
        usize::from(unsafe { ffi::shim_data_len(self.raw.as_ptr()) })
    }

    /// Whether the first segment holds no data.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Segments in this packet (1 for every frame this crate produces).
    #[must_use]
    pub fn segments(&self) -> u16 {
        // SAFETY: self owns a valid mbuf; reads one field.
        unsafe { ffi::shim_nb_segs(self.raw.as_ptr()) }
    }

    /// The first segment's data.
    #[must_use]
    pub fn data(&self) -> &[u8] {
        // SAFETY: mtod points at data_len initialised bytes inside the
        // mbuf's buffer, which self owns exclusively; the borrow of self
        // keeps them alive and unmodified.
        unsafe {
            let ptr = ffi::shim_pktmbuf_mtod(self.raw.as_ptr());
            std::slice::from_raw_parts(ptr.cast::<u8>(), self.len())
        }
    }

    /// The first segment's data, writable.
    #[must_use]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and the exclusive borrow of self makes this
        // the only reference to those bytes.
        unsafe {
            let ptr = ffi::shim_pktmbuf_mtod(self.raw.as_ptr());
            std::slice::from_raw_parts_mut(ptr.cast::<u8>(), self.len())
        }
    }

    /// Grows the data by `len` bytes at its end and returns them, or `None`
    /// when the buffer's tailroom is too small. The new bytes hold whatever
    /// the buffer held before: write all of them.
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: self owns a valid mbuf; rte_pktmbuf_append returns NULL or
        // a pointer to `len` bytes inside its buffer that now belong to the
        // data, borrowed exclusively through &mut self. The bytes may be
        // stale but are initialised memory of the mempool, never unmapped
        // while the mbuf lives.
        unsafe {
            let ptr = ffi::shim_pktmbuf_append(self.raw.as_ptr(), len);
            if ptr.is_null() {
                return None;
            }
            Some(std::slice::from_raw_parts_mut(
                ptr.cast::<u8>(),
                usize::from(len),
            ))
        }
    }
}

impl Drop for Mbuf<'_> {
    fn drop(&mut self) {
        // SAFETY: self owns the mbuf (ownership passed to the driver goes
        // through into_raw, which skips this drop).
        unsafe { ffi::shim_pktmbuf_free(self.raw.as_ptr()) }
    }
}
