//! systemd integration: socket activation (`LISTEN_FDS`, the sockets a `.socket` unit passes,
//! as sd_listen_fds reads them) and readiness notification (`READY=1` to `$NOTIFY_SOCKET`, for
//! `Type=notify` services, as sd_notify sends it). See tuning/systemd/.

use std::os::fd::RawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use super::binds::BindError;

/// The first fd systemd passes, and the variables describing them.
const SD_LISTEN_FDS_START: RawFd = 3;
const LISTEN_PID: &str = "LISTEN_PID";
const LISTEN_FDS: &str = "LISTEN_FDS";
const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
/// Where a `Type=notify` service reports its state (a path, or `@` for an abstract name).
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// A socket systemd passed.
pub(super) struct ListenFd {
    pub fd: RawFd,
    /// Its `FileDescriptorName=` (LISTEN_FDNAMES), if set.
    pub name: Option<String>,
}

/// The sockets systemd passed (LISTEN_FDS for this pid); the variables are removed so that the
/// worker process does not see them.
pub(super) fn listen_fds() -> Result<Option<Vec<ListenFd>>, BindError> {
    let (Ok(pid), Ok(count)) = (std::env::var(LISTEN_PID), std::env::var(LISTEN_FDS)) else {
        return Ok(None);
    };
    let names = std::env::var(LISTEN_FDNAMES).ok();
    for var in [LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES] {
        std::env::remove_var(var);
    }
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    let count: RawFd = count
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| BindError::Systemd(format!("LISTEN_FDS={count} is not a count")))?;
    let mut names = names.as_deref().unwrap_or("").split(':');
    Ok(Some(
        (SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + count)
            .map(|fd| ListenFd {
                fd,
                name: names.next().filter(|n| !n.is_empty()).map(str::to_owned),
            })
            .collect(),
    ))
}

/// Tells systemd the service's state (`READY=1`); nothing without
/// `$NOTIFY_SOCKET`. Failures are logged, never fatal.
pub(super) fn notify(state: &str) {
    if let Ok(target) = std::env::var(NOTIFY_SOCKET) {
        notify_to(&target, state);
    }
}

fn notify_to(target: &str, state: &str) {
    let sent = UnixDatagram::unbound().and_then(|socket| match target.strip_prefix('@') {
        Some(name) => {
            let addr = SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)
        }
        None => socket.send_to(state.as_bytes(), target),
    });
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd ({NOTIFY_SOCKET}={target}): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_sends_one_datagram() {
        let path = std::env::temp_dir().join(format!("ringwsgi-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let systemd = UnixDatagram::bind(&path).unwrap();
        notify_to(path.to_str().unwrap(), "READY=1");
        let mut buf = [0u8; 64];
        let n = systemd.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_file(&path).unwrap();
    }
}
