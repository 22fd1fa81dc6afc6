//! The listening socket, with the backlog the testbed configures (std and
//! mio only ever ask for a fixed one).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn, SockaddrIn6,
};

/// A non-blocking TCP socket bound to `addr` and listening with `backlog`
/// pending connections (the kernel caps it at `net.core.somaxconn`).
///
/// # Errors
/// The socket cannot be made, bound (address in use, not ours) or set
/// listening; `backlog` is outside what `listen(2)` takes.
pub fn bind_listener(addr: SocketAddr, backlog: u32) -> io::Result<mio::net::TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // As std and mio do: a restarted engine rebinds at once.
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    match addr {
        SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(v4))?,
        SocketAddr::V6(v6) => bind(fd.as_raw_fd(), &SockaddrIn6::from(v6))?,
    }
    let backlog = i32::try_from(backlog)
        .ok()
        .and_then(|b| Backlog::new(b).ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("listen backlog {backlog} is outside 1..{}", libc::SOMAXCONN),
            )
        })?;
    listen(&fd, backlog)?;
    Ok(mio::net::TcpListener::from_std(
        std::net::TcpListener::from(fd),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_takes_its_backlog_and_accepts() {
        let listener = bind_listener("127.0.0.1:0".parse().unwrap(), 8).expect("bind");
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        // Non-blocking: the connection is in the backlog, accepted within a
        // bounded number of tries.
        let accepted = (0..200).find_map(|_| match listener.accept() {
            Ok(pair) => Some(pair),
            Err(_) => {
                std::thread::sleep(std::time::Duration::from_millis(5));
                None
            }
        });
        assert!(accepted.is_some(), "accepted from the backlog");
    }

    #[test]
    fn a_backlog_out_of_range_is_refused_by_name() {
        let e = bind_listener("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("listen backlog"), "{e}");
    }
}
