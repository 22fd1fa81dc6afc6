//! The environment abstraction layer: once per process.

use std::ffi::{c_char, CStr, CString};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{rte_errno, strerror};
use crate::{ffi, DpdkError};

/// Set by the first `Eal::init`, never cleared: DPDK cannot initialise twice
/// in one process, even after `rte_eal_cleanup`.
static EAL_USED: AtomicBool = AtomicBool::new(false);

/// An initialised EAL. Dropping it runs `rte_eal_cleanup` (after every
/// `Mempool` and `Port` borrowing it is gone).
///
/// The thread that called [`Eal::init`] is the main lcore: EAL pins it to
/// the first core of `-l`/`--lcores`. Not `Send`: per-lcore state (the
/// mempool caches, `rte_errno`) belongs to that thread.
#[derive(Debug)]
pub struct Eal {
    _main_lcore_thread: PhantomData<*const ()>,
}

impl Eal {
    /// Initialises EAL with `args` (without the program name; one is
    /// prepended).
    ///
    /// # Errors
    /// [`DpdkError::AlreadyInitialized`] on a second call in this process,
    /// [`DpdkError::NulInArgument`], or [`DpdkError::EalInit`].
    pub fn init(args: &[String]) -> Result<Self, DpdkError> {
        let mut argv: Vec<CString> = Vec::with_capacity(args.len() + 1);
        argv.push(CString::from(c"bypasslab"));
        for arg in args {
            argv.push(
                CString::new(arg.as_str()).map_err(|_| DpdkError::NulInArgument(arg.clone()))?,
            );
        }
        if EAL_USED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::AlreadyInitialized);
        }
        // EAL permutes argv and may keep pointers into it for the life of the
        // process, so the strings and the array are leaked (once per
        // process, a few hundred bytes).
        let mut ptrs: Vec<*mut c_char> = argv.into_iter().map(CString::into_raw).collect();
        let argc = i32::try_from(ptrs.len()).unwrap_or(i32::MAX);
        ptrs.push(std::ptr::null_mut());
        let ptrs = ptrs.leak();
        // SAFETY: argc counts the NUL-terminated strings in `ptrs`, which is
        // NULL-terminated like a C argv; both are leaked so they outlive
        // EAL. EAL_USED guarantees this is the process's only call.
        let parsed = unsafe { ffi::rte_eal_init(argc, ptrs.as_mut_ptr()) };
        if parsed < 0 {
            let errno = rte_errno();
            return Err(DpdkError::EalInit {
                errno,
                message: strerror(errno),
            });
        }
        Ok(Self {
            _main_lcore_thread: PhantomData,
        })
    }

    /// EAL's runtime directory (`/var/run/dpdk/<file-prefix>` for root);
    /// `rte_eal_cleanup` leaves files there, so whoever chose the prefix
    /// removes it after the process ends.
    #[must_use]
    pub fn runtime_dir(&self) -> PathBuf {
        // SAFETY: EAL is initialised (self exists); the returned string is
        // owned by EAL and NUL-terminated, copied out at once.
        unsafe {
            let dir = ffi::rte_eal_get_runtime_dir();
            if dir.is_null() {
                return PathBuf::new();
            }
            PathBuf::from(CStr::from_ptr(dir).to_string_lossy().into_owned())
        }
    }

    /// The NUMA socket of the calling lcore.
    #[must_use]
    pub fn socket_id(&self) -> u32 {
        // SAFETY: EAL is initialised; reads per-lcore state.
        unsafe { ffi::rte_socket_id() }
    }

    /// The calling thread's lcore id (`u32::MAX` off an EAL thread).
    #[must_use]
    pub fn lcore_id(&self) -> u32 {
        // SAFETY: reads a thread-local variable; no preconditions.
        unsafe { ffi::shim_lcore_id() }
    }

    /// How many Ethernet ports EAL found (probed vdevs and bound PCI devices).
    #[must_use]
    pub fn port_count(&self) -> u16 {
        // SAFETY: EAL is initialised; reads the device table.
        unsafe { ffi::rte_eth_dev_count_avail() }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: EAL was initialised by `init`, and every Mempool and Port
        // (which borrow self) is already dropped. The return value only
        // reports that EAL was not initialised, which cannot be.
        unsafe {
            ffi::rte_eal_cleanup();
        }
    }
}
