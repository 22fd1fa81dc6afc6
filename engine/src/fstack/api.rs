//! A safe interface to F-Stack: one [`Stack`] per process, created and used
//! on one thread (it is neither `Send` nor `Sync`, nor are the sockets it
//! hands out), because F-Stack's FreeBSD stack has no locking of its own:
//! every `ff_*` call must come from the thread that runs `ff_run`.

use std::ffi::{CString, OsStr};
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddrV4;
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use libc::{c_int, c_void, epoll_event};

use super::ffi;

/// Set once F-Stack was initialised in this process (it cannot be twice).
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Errors of F-Stack's initialisation.
#[derive(Debug, thiserror::Error)]
pub enum FstackError {
    /// F-Stack was already initialised in this process.
    #[error("F-Stack is already initialised in this process")]
    AlreadyInitialised,
    /// An argument holds a NUL byte.
    #[error("argument {0:?} holds a NUL byte")]
    Nul(String),
    /// EAL's argv would not fit F-Stack's fixed array.
    #[error("EAL needs {needed} arguments but F-Stack 1.24 holds {max}")]
    TooManyEalArgs {
        /// Arguments wanted.
        needed: usize,
        /// `DPDK_CONFIG_NUM`.
        max: usize,
    },
    /// An initialisation step returned an error.
    #[error("{step} failed (F-Stack's messages above say why)")]
    Step {
        /// The `ff_*` function.
        step: &'static str,
    },
}

/// A port's cumulative counters (DPDK's `rte_eth_stats`: F-Stack keeps no
/// count of its own transmit drops that the API exposes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Frames the port dropped because its receive queue was full
    /// (`imissed`).
    pub rx_missed: u64,
    /// Frames the port dropped for want of a receive mbuf (`rx_nombuf`).
    pub rx_nombuf: u64,
    /// Erroneous frames received (`ierrors`).
    pub rx_errors: u64,
    /// Failed transmissions (`oerrors`).
    pub tx_errors: u64,
}

/// What the loop body of [`Stack::run`] may use while `ff_run` runs: the
/// stack's calls except `run` itself. F-Stack's loop is not reentrant, and
/// `run` holds the `Stack` mutably for its whole duration, so the body can
/// neither be handed nor capture a way to start it again.
#[derive(Debug, Clone, Copy)]
pub struct InLoop<'a> {
    stack: &'a Stack,
}

impl InLoop<'_> {
    /// The DPDK port's counters (see [`Stack::port_stats`]).
    #[must_use]
    pub fn port_stats(&self, port_id: u16) -> Option<PortStats> {
        self.stack.port_stats(port_id)
    }
}

/// What the loop body asks of `ff_run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Call again on the next iteration.
    Continue,
    /// Return from [`Stack::run`].
    Stop,
}

/// F-Stack, initialised on this thread.
#[derive(Debug)]
pub struct Stack {
    /// The EAL arguments it was started with.
    eal_args: Vec<String>,
    _single_thread: PhantomData<*mut ()>,
}

fn cstring(s: &str) -> Result<CString, FstackError> {
    CString::new(s).map_err(|_| FstackError::Nul(s.to_owned()))
}

fn check(rc: c_int) -> io::Result<c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Stack {
    /// Performs F-Stack's initialisation steps (what `ff_init` does), with
    /// EAL's argv adjusted between them: `--file-prefix=<file_prefix>`
    /// replaces F-Stack's `container-` prefixed one (so runtime and hugepage
    /// files carry the name the supervisor cleans up), and `extra_eal_args`
    /// are appended (the vdev on a Linux interface, `--no-pci`, which
    /// F-Stack 1.24's config.ini cannot express).
    ///
    /// # Errors
    /// [`FstackError`] naming the step. Some failures inside DPDK end the
    /// process (F-Stack calls `rte_exit`).
    pub fn init(
        config: &Path,
        file_prefix: Option<&str>,
        extra_eal_args: &[String],
    ) -> Result<Self, FstackError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(FstackError::AlreadyInitialised);
        }
        let conf = CString::new(config.as_os_str().as_bytes())
            .map_err(|_| FstackError::Nul(config.display().to_string()))?;
        let owned = [
            cstring("engine")?,
            cstring("--conf")?,
            conf,
            cstring("--proc-type=primary")?,
            cstring("--proc-id=0")?,
        ];
        let mut argv: Vec<*mut libc::c_char> =
            owned.iter().map(|s| s.as_ptr().cast_mut()).collect();
        argv.push(std::ptr::null_mut());
        let argc = c_int::try_from(owned.len()).unwrap_or(c_int::MAX);
        // SAFETY: argv holds argc valid NUL-terminated strings (kept alive by
        // `owned` for the call; F-Stack strdup's what it keeps) and a null.
        if unsafe { ffi::ff_load_config(argc, argv.as_ptr()) } < 0 {
            return Err(FstackError::Step {
                step: "ff_load_config",
            });
        }

        let mut args = eal_argv();
        if let Some(prefix) = file_prefix {
            args.retain(|a| !a.starts_with("--file-prefix="));
            args.push(format!("--file-prefix={prefix}"));
        }
        args.extend(extra_eal_args.iter().cloned());
        if args.len() > ffi::DPDK_CONFIG_NUM {
            return Err(FstackError::TooManyEalArgs {
                needed: args.len(),
                max: ffi::DPDK_CONFIG_NUM,
            });
        }
        let mut new_argv = [std::ptr::null_mut(); ffi::DPDK_CONFIG_NUM + 1];
        for (slot, arg) in new_argv.iter_mut().zip(&args) {
            // Leaked on purpose: EAL keeps pointers into argv for the
            // process's life.
            *slot = cstring(arg)?.into_raw();
        }
        let new_argc = c_int::try_from(args.len()).unwrap_or(c_int::MAX);
        // SAFETY: this thread is the only one touching F-Stack (INITIALISED
        // admits one caller); the array has F-Stack's declared size and every
        // entry is a leaked, NUL-terminated string or null. F-Stack's own
        // strings in the old array are simply no longer referenced.
        unsafe {
            ffi::dpdk_argv = new_argv;
            ffi::dpdk_argc = new_argc;
        }
        // SAFETY: as above; argv points at the static array just written,
        // which outlives the call (EAL may keep pointers into it).
        let rc = unsafe {
            ffi::ff_dpdk_init(
                ffi::dpdk_argc,
                std::ptr::addr_of_mut!(ffi::dpdk_argv).cast(),
            )
        };
        if rc < 0 {
            return Err(FstackError::Step {
                step: "ff_dpdk_init",
            });
        }
        // SAFETY: called once, after ff_dpdk_init, on the same thread.
        if unsafe { ffi::ff_freebsd_init() } < 0 {
            return Err(FstackError::Step {
                step: "ff_freebsd_init",
            });
        }
        // F-Stack reports a refused [freebsd.*] setting only with printf;
        // flushed now, its lines are in the engine's log before the engine
        // says it serves, where the supervisor looks for them.
        // SAFETY: fflush(NULL) flushes every open C output stream; this is
        // the only thread using C stdio here, and no stream is being closed.
        unsafe { libc::fflush(std::ptr::null_mut()) };
        // SAFETY: called once, after ff_freebsd_init, on the same thread.
        if unsafe { ffi::ff_dpdk_if_up() } < 0 {
            return Err(FstackError::Step {
                step: "ff_dpdk_if_up",
            });
        }
        flush_c_stdio();
        Ok(Self {
            eal_args: args,
            _single_thread: PhantomData,
        })
    }

    /// The EAL arguments F-Stack was started with.
    #[must_use]
    pub fn eal_args(&self) -> &[String] {
        &self.eal_args
    }

    /// Runs F-Stack's poll loop on this thread, calling `body` once per
    /// iteration (after received frames were processed) until it returns
    /// [`Flow::Stop`]. A panic in `body` stops the loop and resumes here.
    /// `body` gets an [`InLoop`], which cannot run the loop again; taking
    /// `&mut self` keeps it from capturing the `Stack` itself.
    pub fn run<F: FnMut(InLoop<'_>) -> Flow>(&mut self, body: F) {
        struct Loop<'a, F> {
            stack: &'a Stack,
            body: F,
            panic: Option<Box<dyn std::any::Any + Send>>,
        }
        unsafe extern "C" fn trampoline<F: FnMut(InLoop<'_>) -> Flow>(arg: *mut c_void) -> c_int {
            // SAFETY: `arg` is the `&mut Loop<F>` passed to ff_run below,
            // alive for the whole ff_run call, and ff_run calls back on
            // this thread only. Never reentrantly: the body only gets an
            // InLoop, which has no `run`, and cannot reach the Stack, which
            // `run` holds mutably while ff_run runs.
            let state = unsafe { &mut *arg.cast::<Loop<'_, F>>() };
            if state.panic.is_some() {
                return 0;
            }
            let in_loop = InLoop { stack: state.stack };
            let body = &mut state.body;
            match panic::catch_unwind(AssertUnwindSafe(|| body(in_loop))) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => {
                    // SAFETY: on the F-Stack thread, inside ff_run.
                    unsafe { ffi::ff_stop_run() };
                }
                Err(payload) => {
                    state.panic = Some(payload);
                    // SAFETY: on the F-Stack thread, inside ff_run.
                    unsafe { ffi::ff_stop_run() };
                }
            }
            0
        }
        let mut state = Loop {
            stack: &*self,
            body,
            panic: None,
        };
        // SAFETY: F-Stack is initialised (a Stack exists) on this thread
        // (Stack is !Send); the trampoline matches `loop_func_t` and its
        // argument outlives the call.
        unsafe {
            ffi::ff_run(
                trampoline::<F>,
                std::ptr::addr_of_mut!(state).cast::<c_void>(),
            );
        }
        flush_c_stdio();
        if let Some(payload) = state.panic {
            panic::resume_unwind(payload);
        }
    }

    /// The DPDK port's counters (F-Stack's port `port_id` is DPDK's).
    #[must_use]
    pub fn port_stats(&self, port_id: u16) -> Option<PortStats> {
        let mut stats = dpdk_sys::ffi::rte_eth_stats::default();
        // SAFETY: EAL is initialised (a Stack exists) and this is its main
        // thread; `stats` is a valid out-parameter for the call.
        let rc = unsafe { dpdk_sys::ffi::rte_eth_stats_get(port_id, &mut stats) };
        (rc == 0).then_some(PortStats {
            rx_packets: stats.ipackets,
            tx_packets: stats.opackets,
            rx_missed: stats.imissed,
            rx_nombuf: stats.rx_nombuf,
            rx_errors: stats.ierrors,
            tx_errors: stats.oerrors,
        })
    }

    /// A non-blocking TCP socket listening on `addr`.
    ///
    /// # Errors
    /// The failing call's errno.
    pub fn listen(&self, addr: SocketAddrV4, backlog: u32) -> io::Result<Socket> {
        // SAFETY: plain syscall-like call on the F-Stack thread.
        let fd = check(unsafe { ffi::ff_socket(libc::AF_INET, libc::SOCK_STREAM, 0) })?;
        let socket = Socket::from_fd(fd);
        socket.set_nonblocking()?;
        let one: c_int = 1;
        socket.setsockopt(libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)?;
        let sin = libc::sockaddr_in {
            sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap_or_default(),
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = socklen_t_of::<libc::sockaddr_in>();
        // SAFETY: `sin` is a valid sockaddr_in of `len` bytes for the call.
        check(unsafe {
            ffi::ff_bind(
                socket.fd,
                std::ptr::addr_of!(sin).cast::<libc::sockaddr>(),
                len,
            )
        })?;
        let backlog = c_int::try_from(backlog).unwrap_or(c_int::MAX);
        // SAFETY: plain call on an open socket, on the F-Stack thread.
        check(unsafe { ffi::ff_listen(socket.fd, backlog) })?;
        Ok(socket)
    }

    /// A new epoll instance.
    ///
    /// # Errors
    /// The failing call's errno.
    pub fn epoll(&self) -> io::Result<Epoll> {
        // SAFETY: plain call on the F-Stack thread.
        let fd = check(unsafe { ffi::ff_epoll_create(64) })?;
        Ok(Epoll {
            fd,
            _single_thread: PhantomData,
        })
    }
}

fn socklen_t_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// EAL's argv as `ff_load_config` built it.
fn eal_argv() -> Vec<String> {
    // SAFETY: read on the F-Stack thread after ff_load_config filled them;
    // the first `dpdk_argc` entries are NUL-terminated strings.
    let (argc, argv) = unsafe { (ffi::dpdk_argc, ffi::dpdk_argv) };
    let argc = usize::try_from(argc).unwrap_or(0).min(argv.len());
    argv[..argc]
        .iter()
        .filter(|p| !p.is_null())
        // SAFETY: non-null entries below argc are F-Stack's strdup'ed strings.
        .map(|&p| unsafe { std::ffi::CStr::from_ptr(p) })
        .map(|s| {
            OsStr::from_bytes(s.to_bytes())
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// F-Stack and DPDK print with C's stdio, fully buffered when stdout is a
/// file: flush so their lines come before the engine's own.
fn flush_c_stdio() {
    // SAFETY: fflush(NULL) flushes every open C stream; no Rust state.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// A socket of F-Stack's, closed on drop (on the F-Stack thread: it is not
/// `Send`).
#[derive(Debug)]
pub struct Socket {
    fd: c_int,
    _single_thread: PhantomData<*mut ()>,
}

impl Socket {
    fn from_fd(fd: c_int) -> Self {
        Self {
            fd,
            _single_thread: PhantomData,
        }
    }

    /// F-Stack's descriptor (for epoll registration and logging).
    #[must_use]
    pub fn fd(&self) -> c_int {
        self.fd
    }

    fn setsockopt(&self, level: c_int, name: c_int, value: &c_int) -> io::Result<()> {
        // SAFETY: `value` is a valid c_int for the call's duration.
        check(unsafe {
            ffi::ff_setsockopt(
                self.fd,
                level,
                name,
                std::ptr::from_ref(value).cast::<c_void>(),
                socklen_t_of::<c_int>(),
            )
        })
        .map(drop)
    }

    /// `FIONBIO`: F-Stack's sockets must be non-blocking to be polled.
    fn set_nonblocking(&self) -> io::Result<()> {
        let mut on: c_int = 1;
        // SAFETY: FIONBIO reads one c_int through the pointer, valid here.
        check(unsafe {
            ffi::ff_ioctl(
                self.fd,
                libc::FIONBIO,
                std::ptr::addr_of_mut!(on).cast::<c_void>(),
            )
        })
        .map(drop)
    }

    /// Turns Nagle off: every reply leaves at once.
    ///
    /// # Errors
    /// The call's errno.
    pub fn set_nodelay(&self) -> io::Result<()> {
        self.setsockopt(libc::IPPROTO_TCP, libc::TCP_NODELAY, &1)
    }

    /// A pending connection, non-blocking, or `None`.
    ///
    /// # Errors
    /// The call's errno (other than "would block").
    pub fn accept(&self) -> io::Result<Option<Self>> {
        // SAFETY: null address pointers are allowed by accept(2).
        let fd = unsafe { ffi::ff_accept(self.fd, std::ptr::null_mut(), std::ptr::null_mut()) };
        match check(fd) {
            Ok(fd) => {
                let socket = Self::from_fd(fd);
                socket.set_nonblocking()?;
                Ok(Some(socket))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads into `buf`; `Ok(0)` at end of stream.
    ///
    /// # Errors
    /// The call's errno (`WouldBlock` when nothing is there).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { ffi::ff_read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Writes from `buf`, returning how much was taken.
    ///
    /// # Errors
    /// The call's errno (`WouldBlock` when the send buffer is full).
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of its length.
        let n = unsafe { ffi::ff_write(self.fd, buf.as_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once; the type is !Send,
        // so this runs on the F-Stack thread.
        unsafe { ffi::ff_close(self.fd) };
    }
}

/// An epoll instance of F-Stack's (over its kqueue).
#[derive(Debug)]
pub struct Epoll {
    fd: c_int,
    _single_thread: PhantomData<*mut ()>,
}

impl Epoll {
    fn ctl(&self, op: c_int, socket: &Socket, events: u32, token: u64) -> io::Result<()> {
        let mut event = epoll_event { events, u64: token };
        // SAFETY: `event` is a valid epoll_event for the call.
        check(unsafe { ffi::ff_epoll_ctl(self.fd, op, socket.fd, &mut event) }).map(drop)
    }

    /// Watches `socket` for `events` (`libc::EPOLLIN`...), reporting `token`.
    ///
    /// # Errors
    /// The call's errno.
    pub fn add(&self, socket: &Socket, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, socket, events, token)
    }

    /// Changes what `socket` is watched for.
    ///
    /// # Errors
    /// The call's errno.
    pub fn modify(&self, socket: &Socket, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, socket, events, token)
    }

    /// Stops watching `socket`.
    ///
    /// # Errors
    /// The call's errno.
    pub fn delete(&self, socket: &Socket) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, socket, 0, 0)
    }

    /// Ready events, without waiting.
    ///
    /// # Errors
    /// The call's errno.
    pub fn poll<'a>(&self, events: &'a mut [epoll_event]) -> io::Result<&'a [epoll_event]> {
        let max = c_int::try_from(events.len()).unwrap_or(c_int::MAX);
        // SAFETY: `events` is valid for writes of `max` entries.
        let n = check(unsafe { ffi::ff_epoll_wait(self.fd, events.as_mut_ptr(), max, 0) })?;
        Ok(&events[..usize::try_from(n).unwrap_or(0)])
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: ours, closed once, on the F-Stack thread (!Send).
        unsafe { ffi::ff_close(self.fd) };
    }
}
