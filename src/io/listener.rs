//! Listening sockets: `bind_reuseport` creates a TCP one (SO_REUSEADDR + SO_REUSEPORT, CLOEXEC),
//! `bind_unix` a unix-domain one, `adopt_listener` takes over one inherited from a parent (the
//! master, systemd, or whoever passed `fd://N`: the one place a raw fd becomes owned here), and
//! `set_inheritable` toggles CLOEXEC for handing fds to a child.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// A TCP listener bound to `addr` with SO_REUSEADDR and SO_REUSEPORT, listening with
/// `backlog`, close-on-exec, in blocking mode (io_uring does the waiting). An IPv6 address
/// gets IPV6_V6ONLY (`[::]` does not take IPv4 too: bind `0.0.0.0` as well for that).
pub fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    // socket2 creates sockets with SOCK_CLOEXEC on Linux.
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// A unix-domain stream socket bound to `path` (which must not exist) and listening with
/// `backlog`, close-on-exec. The file's mode comes from the process umask.
pub fn bind_unix(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Sets (`yes == true`) or clears close-on-exec's opposite: an inheritable fd survives `exec`.
pub fn set_inheritable(fd: BorrowedFd<'_>, yes: bool) -> io::Result<()> {
    let bits = fcntl(fd, FcntlArg::F_GETFD)?;
    let mut flags = FdFlag::from_bits_truncate(bits);
    flags.set(FdFlag::FD_CLOEXEC, !yes);
    fcntl(fd, FcntlArg::F_SETFD(flags))?;
    Ok(())
}

/// Takes ownership of an inherited listening socket (`fd` must be owned by nobody else in this
/// process). Checks that it is open, SO_ACCEPTCONN, SOCK_STREAM, and TCP or unix-domain, and
/// sets CLOEXEC again. On error the fd is left open (if it was) and ownership is not taken.
pub fn adopt_listener(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "negative listener fd",
        ));
    }
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with EBADF (checked) when
    // `fd` is not open, so no fd that does not exist becomes owned.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the caller hands over an inherited fd, open (checked above), that nothing else in
    // this process owns (documented contract; this is the single place a raw listener fd
    // becomes owned). On the error paths below ownership is given back with `into_raw_fd`, so
    // the fd is never closed behind the caller's back.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    match check_listener(&owned) {
        Ok(()) => Ok(owned),
        Err(e) => {
            let _ = owned.into_raw_fd();
            Err(e)
        }
    }
}

/// Takes ownership of an inherited fd that is not a listener (a pipe from the master): `fd`
/// must be open and owned by nobody else in this process. Sets CLOEXEC so it is not passed on.
pub fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "negative fd"));
    }
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with EBADF (checked) when
    // `fd` is not open, so no fd that does not exist becomes owned.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked above) and, by the caller's contract, owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_inheritable(owned.as_fd(), false)?;
    Ok(owned)
}

fn check_listener(fd: &OwnedFd) -> io::Result<()> {
    let sock = SockRef::from(fd);
    let bad =
        |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("inherited fd: {what}"));
    if sock.r#type()? != Type::STREAM {
        return Err(bad("not a stream socket"));
    }
    let domain = sock.domain()?;
    if domain != Domain::UNIX {
        if domain != Domain::IPV4 && domain != Domain::IPV6 {
            return Err(bad("not a TCP or unix-domain socket"));
        }
        if sock.protocol()? != Some(Protocol::TCP) {
            return Err(bad("not a TCP socket"));
        }
    }
    if !sock.is_listener()? {
        return Err(bad("not listening"));
    }
    sock.set_cloexec(true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};

    fn cloexec(fd: BorrowedFd<'_>) -> bool {
        FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap())
            .contains(FdFlag::FD_CLOEXEC)
    }

    #[test]
    fn bind_is_cloexec_and_inheritable_toggles() {
        let l = bind_reuseport("127.0.0.1:0".parse().unwrap(), 128).unwrap();
        assert!(cloexec(l.as_fd()));
        set_inheritable(l.as_fd(), true).unwrap();
        assert!(!cloexec(l.as_fd()));
        set_inheritable(l.as_fd(), false).unwrap();
        assert!(cloexec(l.as_fd()));
        // SO_REUSEPORT: a second socket can bind the same port.
        let addr = l.local_addr().unwrap();
        let l2 = bind_reuseport(addr, 128).unwrap();
        assert_eq!(l2.local_addr().unwrap(), addr);
    }

    #[test]
    fn adopt_dup_and_reject_non_listener() {
        let l = bind_reuseport("127.0.0.1:0".parse().unwrap(), 128).unwrap();
        let dup = l.as_fd().try_clone_to_owned().unwrap();
        set_inheritable(dup.as_fd(), true).unwrap();
        let adopted = TcpListener::from(adopt_listener(dup.into_raw_fd()).unwrap());
        assert!(cloexec(adopted.as_fd()));
        assert_eq!(adopted.local_addr().unwrap(), l.local_addr().unwrap());

        // A connected (non-listening) socket is refused and left open.
        let stream = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let raw = stream.as_raw_fd();
        assert!(adopt_listener(raw).is_err());
        assert!(fcntl(stream.as_fd(), FcntlArg::F_GETFD).is_ok());
        // A UDP socket is refused too.
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(adopt_listener(udp.as_raw_fd()).is_err());
        assert!(adopt_listener(-1).is_err());
        // An fd that is not open is refused (no fd table is that large here).
        assert!(adopt_listener(1 << 30).is_err());
    }

    #[test]
    fn unix_listener_is_adoptable_and_v6_is_v6only() {
        let dir = std::env::temp_dir().join(format!("ringwsgi-listener-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let unix = bind_unix(&path, 16).unwrap();
        assert!(cloexec(unix.as_fd()));
        let dup = unix.as_fd().try_clone_to_owned().unwrap();
        assert!(adopt_listener(dup.into_raw_fd()).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
        if let Ok(v6) = bind_reuseport("[::1]:0".parse().unwrap(), 16) {
            assert!(SockRef::from(&v6).only_v6().unwrap());
        }
    }
}
