//! Hand-written declarations of the F-Stack 1.24 functions the engine uses
//! (`ff_api.h`, `ff_epoll.h`, `ff_config.h`; `build.rs` refuses any other
//! release). F-Stack's socket calls take Linux constants and layouts: its
//! `struct linux_sockaddr` is laid out as `libc::sockaddr`, its epoll
//! events are `libc::epoll_event` (`<sys/epoll.h>`, packed on x86_64 as in
//! glibc), and errors come back as -1 with a Linux `errno`.
//!
//! Everything here is `unsafe` to call and must be called on the one thread
//! that initialised F-Stack and runs `ff_run`; [`super::api`] is the safe
//! interface.

use libc::{c_char, c_int, c_ulong, c_void, epoll_event, size_t, sockaddr, socklen_t, ssize_t};

/// `DPDK_CONFIG_NUM` in `ff_config.h`: `dpdk_argv` has this many slots
/// plus a terminating null.
pub const DPDK_CONFIG_NUM: usize = 16;

/// `loop_func_t`: called by `ff_run` once per iteration of its poll loop.
pub type LoopFn = unsafe extern "C" fn(arg: *mut c_void) -> c_int;

extern "C" {
    /// `ff_config.h`: parses `--conf`, `--proc-type`, `--proc-id` and the
    /// config file into `ff_global_cfg`, and builds `dpdk_argc`/`dpdk_argv`.
    pub fn ff_load_config(argc: c_int, argv: *const *mut c_char) -> c_int;
    /// EAL init, mempools and ports, from the given EAL argv.
    pub fn ff_dpdk_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
    /// Boots the FreeBSD kernel subsystems (sysctls from `[freebsd.*]`).
    pub fn ff_freebsd_init() -> c_int;
    /// Attaches each DPDK port as a FreeBSD interface with its address.
    pub fn ff_dpdk_if_up() -> c_int;
    /// Runs the poll loop on the calling (main) lcore until `ff_stop_run`.
    pub fn ff_run(loop_fn: LoopFn, arg: *mut c_void);
    /// Makes `ff_run` return after its current iteration.
    pub fn ff_stop_run();

    /// `socket(2)` with Linux constants.
    pub fn ff_socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
    /// `setsockopt(2)` with Linux levels and names.
    pub fn ff_setsockopt(
        s: c_int,
        level: c_int,
        optname: c_int,
        optval: *const c_void,
        optlen: socklen_t,
    ) -> c_int;
    /// `ioctl(2)` with Linux request numbers (`FIONBIO`).
    pub fn ff_ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
    /// `bind(2)`; `addr` is a `struct linux_sockaddr`.
    pub fn ff_bind(s: c_int, addr: *const sockaddr, addrlen: socklen_t) -> c_int;
    /// `listen(2)`.
    pub fn ff_listen(s: c_int, backlog: c_int) -> c_int;
    /// `accept(2)`.
    pub fn ff_accept(s: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> c_int;
    /// `close(2)`.
    pub fn ff_close(fd: c_int) -> c_int;
    /// `read(2)`.
    pub fn ff_read(fd: c_int, buf: *mut c_void, nbytes: size_t) -> ssize_t;
    /// `write(2)`.
    pub fn ff_write(fd: c_int, buf: *const c_void, nbytes: size_t) -> ssize_t;

    /// `epoll_create(2)` over F-Stack's kqueue.
    pub fn ff_epoll_create(size: c_int) -> c_int;
    /// `epoll_ctl(2)`.
    pub fn ff_epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut epoll_event) -> c_int;
    /// `epoll_wait(2)`; timeout 0 polls.
    pub fn ff_epoll_wait(
        epfd: c_int,
        events: *mut epoll_event,
        maxevents: c_int,
        timeout: c_int,
    ) -> c_int;

    /// `ff_config.h`: EAL's argc as `ff_load_config` built it.
    pub static mut dpdk_argc: c_int;
    /// `ff_config.h`: EAL's argv (strdup'ed strings, null-terminated).
    pub static mut dpdk_argv: [*mut c_char; DPDK_CONFIG_NUM + 1];
}
