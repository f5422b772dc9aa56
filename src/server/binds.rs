//! The listening sockets: bound (or inherited) in the master before any worker starts, handed
//! to the worker process (which fds each worker thread accepts on), and the privilege drop that
//! follows binding (`--user`/`--group`).
//!
//! A TCP bind gets one SO_REUSEPORT socket per worker thread (the kernel spreads connections);
//! a unix socket, an `fd://N` or a systemd-activated socket is one socket that every worker
//! thread accepts on (each through its own dup).

use std::ffi::CString;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{umask, Mode};
use nix::unistd::{Gid, Group, Uid, User};
use socket2::SockRef;

use super::systemd;
use crate::config::{self, BindSpec};
use crate::io;

/// Why a socket could not be bound or adopted, or privileges not dropped; one line each.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot bind {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("cannot bind unix:{0}: another server is listening on it")]
    InUse(PathBuf),
    #[error("cannot bind unix:{0}: the file exists and is not a socket")]
    NotSocket(PathBuf),
    #[error("cannot use fd://{0}: {1}")]
    Fd(RawFd, std::io::Error),
    #[error("systemd socket activation: {0}")]
    Systemd(String),
    #[error("--user {0}: no such user")]
    NoUser(String),
    #[error("--group {0}: no such group")]
    NoGroup(String),
    #[error("cannot switch to --user/--group: {0}: {1}")]
    Switch(&'static str, nix::Error),
}

/// The sockets of one bind.
enum Sockets {
    /// One SO_REUSEPORT socket per worker thread.
    PerThread(Vec<TcpListener>),
    /// One socket that all worker threads accept on.
    Shared(OwnedFd),
}

struct Bound {
    /// As logged: `http://127.0.0.1:8000` or `unix:/path`.
    shown: String,
    sockets: Sockets,
    /// The socket file this master created (removed when the master exits).
    unix_path: Option<PathBuf>,
}

/// What one worker process inherits from the master.
pub(super) struct HandOver<'a> {
    /// The listening fds to inherit, each once.
    pub fds: Vec<BorrowedFd<'a>>,
    /// `WORKER_FDS_ENV`: per worker thread, the fds it accepts on, comma-separated; threads
    /// separated by `;`. A shared socket appears in every thread's list.
    pub env: String,
}

impl Bound {
    /// The socket worker thread `thread` accepts on.
    fn fd_for(&self, thread: usize) -> BorrowedFd<'_> {
        match &self.sockets {
            Sockets::PerThread(sockets) => sockets[thread].as_fd(),
            Sockets::Shared(socket) => socket.as_fd(),
        }
    }
}

/// Every listening socket of the server, in the order of the binds.
pub(super) struct Listeners {
    binds: Vec<Bound>,
}

/// Binds `specs` (or adopts systemd's sockets, if it passed any) for `threads` worker threads.
pub(super) fn bind_all(
    specs: &[String],
    threads: usize,
    backlog: i32,
    unix_umask: u32,
) -> Result<Listeners, super::StartError> {
    let mut listeners = Listeners { binds: Vec::new() };
    if let Some(fds) = systemd::listen_fds()? {
        tracing::info!(
            "systemd socket activation: {} socket(s), --bind ignored",
            fds.len()
        );
        for systemd::ListenFd { fd, name } in fds {
            let socket = io::adopt_listener(fd).map_err(|e| BindError::Fd(fd, e))?;
            listeners.binds.push(shared(socket, name.as_deref())?);
        }
        return Ok(listeners);
    }
    for spec in specs {
        let bound = match config::parse_bind(spec)? {
            BindSpec::Tcp(addr) => bind_tcp(addr, threads, backlog)?,
            BindSpec::Unix(path) => {
                let socket = bind_unix(&path, backlog, unix_umask)?;
                Bound {
                    shown: format!("unix:{}", path.display()),
                    sockets: Sockets::Shared(socket),
                    unix_path: Some(path),
                }
            }
            BindSpec::Fd(fd) => {
                let socket = io::adopt_listener(fd).map_err(|e| BindError::Fd(fd, e))?;
                shared(socket, None)?
            }
        };
        listeners.binds.push(bound);
    }
    Ok(listeners)
}

/// Binds one SO_REUSEPORT listener per worker. A plain bind first checks the address is free,
/// so a second server on the same port fails instead of silently sharing its traffic.
fn bind_tcp(addr: SocketAddr, n: usize, backlog: i32) -> Result<Bound, BindError> {
    let err = |e| BindError::Bind(addr.to_string(), e);
    let probe = TcpListener::bind(addr).map_err(err)?;
    let addr = probe.local_addr().map_err(err)?;
    drop(probe);
    let sockets = (0..n)
        .map(|_| io::bind_reuseport(addr, backlog).map_err(err))
        .collect::<Result<_, _>>()?;
    Ok(Bound {
        shown: format!("http://{addr}"),
        sockets: Sockets::PerThread(sockets),
        unix_path: None,
    })
}

/// An inherited socket, shown by its address (and systemd's name for it, if any).
fn shared(socket: OwnedFd, name: Option<&str>) -> Result<Bound, BindError> {
    let fd = socket.as_raw_fd();
    let local = SockRef::from(&socket)
        .local_addr()
        .map_err(|e| BindError::Fd(fd, e))?;
    let mut shown = match (local.as_socket(), local.as_pathname()) {
        (Some(addr), _) => format!("http://{addr}"),
        (None, Some(path)) => format!("unix:{}", path.display()),
        (None, None) => format!("fd://{fd}"),
    };
    if let Some(name) = name {
        shown.push_str(&format!(" (systemd: {name})"));
    }
    Ok(Bound {
        shown,
        sockets: Sockets::Shared(socket),
        unix_path: None,
    })
}

/// Binds a unix socket at `path` with the file mode `0o777 & !unix_umask` (gunicorn's --umask).
/// A socket file left by a dead server is removed first; one a live server answers on is not.
fn bind_unix(path: &Path, backlog: i32, unix_umask: u32) -> Result<OwnedFd, BindError> {
    let err = |e| BindError::Bind(format!("unix:{}", path.display()), e);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(BindError::NotSocket(path.to_owned()))
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::InUse(path.to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                tracing::info!("removing the stale socket {}", path.display());
                std::fs::remove_file(path).map_err(err)?;
            }
            Err(e) => return Err(err(e)),
        },
    }
    // The master is single-threaded here: the umask change is seen by this bind only.
    let old = umask(Mode::from_bits_truncate(unix_umask));
    let socket = io::bind_unix(path, backlog);
    umask(old);
    socket.map_err(err)
}

impl Listeners {
    /// One `Listening at: ...` line per bind (gunicorn's wording).
    pub(super) fn log(&self, workers: usize) {
        for bind in &self.binds {
            tracing::info!("Listening at: {} ({workers} workers)", bind.shown);
        }
    }

    /// SERVER_NAME/SERVER_PORT for requests without a Host header: the first TCP socket's
    /// address (127.0.0.1:80 with unix sockets only).
    pub(super) fn server_address(&self) -> SocketAddr {
        self.binds
            .iter()
            .find_map(|bind| match &bind.sockets {
                Sockets::PerThread(sockets) => sockets.first()?.local_addr().ok(),
                Sockets::Shared(socket) => SockRef::from(socket).local_addr().ok()?.as_socket(),
            })
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 80)))
    }

    /// What the worker process serving worker threads `threads` (indices among all the
    /// server's worker threads) inherits.
    pub(super) fn hand_over(&self, threads: &[usize]) -> HandOver<'_> {
        let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
        let lists: Vec<String> = threads
            .iter()
            .map(|&thread| {
                let list: Vec<String> = self
                    .binds
                    .iter()
                    .map(|bind| {
                        let fd = bind.fd_for(thread);
                        if !fds.iter().any(|f| f.as_raw_fd() == fd.as_raw_fd()) {
                            fds.push(fd);
                        }
                        fd.as_raw_fd().to_string()
                    })
                    .collect();
                list.join(",")
            })
            .collect();
        HandOver {
            fds,
            env: lists.join(";"),
        }
    }

    fn unix_paths(&self) -> impl Iterator<Item = &Path> {
        self.binds.iter().filter_map(|b| b.unix_path.as_deref())
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for path in self.unix_paths() {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::debug!("cannot remove {}: {e}", path.display());
            }
        }
    }
}

/// The worker process's side of [`Listeners::hand_over`]: adopts each inherited fd once and
/// gives every thread its own fds (dups of a shared socket). `threads` lists are expected.
pub(super) fn adopt_worker_fds(
    hand_over: &str,
    threads: usize,
) -> Result<Vec<Vec<OwnedFd>>, String> {
    let lists: Vec<Vec<RawFd>> = hand_over
        .split(';')
        .map(|list| list.split(',').map(str::parse).collect())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad fd list '{hand_over}': {e}"))?;
    if lists.len() != threads {
        return Err(format!(
            "{} fd lists for {threads} worker threads",
            lists.len()
        ));
    }
    let mut adopted: Vec<(RawFd, OwnedFd)> = Vec::new();
    for &fd in lists.iter().flatten() {
        if !adopted.iter().any(|(raw, _)| *raw == fd) {
            let socket = io::adopt_listener(fd).map_err(|e| format!("fd {fd}: {e}"))?;
            adopted.push((fd, socket));
        }
    }
    lists
        .iter()
        .map(|list| {
            list.iter()
                .map(|fd| {
                    let (_, socket) = adopted.iter().find(|(raw, _)| raw == fd).expect("adopted");
                    socket
                        .try_clone()
                        .map_err(|e| format!("dup of fd {fd}: {e}"))
                })
                .collect()
        })
        .collect()
}

/// `--user`/`--group`: gives the unix socket files to them, then switches the process to them
/// for good: the supplementary groups become the group alone (or, with `initgroups`, the user's
/// groups), then gid, then uid. Nothing to do without either flag.
pub(super) fn drop_privileges(
    user: Option<&str>,
    group: Option<&str>,
    initgroups: bool,
    listeners: &Listeners,
) -> Result<(), BindError> {
    if user.is_none() && group.is_none() {
        return Ok(());
    }
    let user = user.map(find_user).transpose()?;
    let gid = match group {
        Some(group) => Some(find_group(group)?),
        None => user.as_ref().map(|u| u.gid),
    };
    let uid = user.as_ref().map(|u| u.uid);
    for path in listeners.unix_paths() {
        nix::unistd::chown(path, uid, gid).map_err(|e| BindError::Switch("chown", e))?;
    }
    if let Some(gid) = gid {
        match user.as_ref().and_then(|u| u.name.as_deref()) {
            Some(name) if initgroups => {
                let name = CString::new(name).expect("user names have no NUL");
                nix::unistd::initgroups(&name, gid)
                    .map_err(|e| BindError::Switch("initgroups", e))?;
            }
            _ => nix::unistd::setgroups(&[gid]).map_err(|e| BindError::Switch("setgroups", e))?,
        }
        nix::unistd::setgid(gid).map_err(|e| BindError::Switch("setgid", e))?;
    }
    if let Some(uid) = uid {
        nix::unistd::setuid(uid).map_err(|e| BindError::Switch("setuid", e))?;
    }
    tracing::info!(
        "running as uid {} gid {}",
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
    Ok(())
}

/// Who `--user` names.
struct Target {
    /// The passwd name (for its supplementary groups), if the id has an entry.
    name: Option<String>,
    uid: Uid,
    gid: Gid,
}

/// A user by name or numeric id; a numeric id unknown to the system gets its own id as group.
fn find_user(user: &str) -> Result<Target, BindError> {
    let entry = match user.parse::<u32>() {
        Ok(id) => match User::from_uid(Uid::from_raw(id)).ok().flatten() {
            Some(entry) => entry,
            None => {
                return Ok(Target {
                    name: None,
                    uid: Uid::from_raw(id),
                    gid: Gid::from_raw(id),
                })
            }
        },
        Err(_) => User::from_name(user)
            .ok()
            .flatten()
            .ok_or_else(|| BindError::NoUser(user.to_owned()))?,
    };
    Ok(Target {
        name: Some(entry.name),
        uid: entry.uid,
        gid: entry.gid,
    })
}

fn find_group(group: &str) -> Result<Gid, BindError> {
    match group.parse::<u32>() {
        Ok(id) => Ok(Gid::from_raw(id)),
        Err(_) => Group::from_name(group)
            .ok()
            .flatten()
            .map(|g| g.gid)
            .ok_or_else(|| BindError::NoGroup(group.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_over_gives_each_thread_its_sockets() {
        let dir = std::env::temp_dir().join(format!("ringwsgi-binds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let unix = format!("unix:{}", dir.join("s.sock").display());
        let listeners = bind_all(&["127.0.0.1:0".into(), unix], 2, 16, 0o077).unwrap();
        let mode = std::fs::metadata(dir.join("s.sock")).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
        let hand_over = listeners.hand_over(&[0, 1]);
        assert_eq!(hand_over.fds.len(), 3, "two TCP sockets, one unix socket");
        let (first, second) = hand_over.env.split_once(';').unwrap();
        let (tcp0, unix0) = first.split_once(',').unwrap();
        let (tcp1, unix1) = second.split_once(',').unwrap();
        assert_ne!(tcp0, tcp1, "one reuseport socket per thread");
        assert_eq!(unix0, unix1, "one shared unix socket");
        // A second bind of the live socket is refused; the file survives.
        let again = bind_unix(&dir.join("s.sock"), 16, 0);
        assert!(matches!(again, Err(BindError::InUse(_))), "{again:?}");
        drop(listeners);
        assert!(!dir.join("s.sock").exists(), "removed at exit");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_socket_file_is_replaced() {
        let dir = std::env::temp_dir().join(format!("ringwsgi-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a dead server's socket file");
        let socket = bind_unix(&path, 16, 0).unwrap();
        drop(socket);
        std::fs::write(dir.join("plain"), b"x").unwrap();
        assert!(matches!(
            bind_unix(&dir.join("plain"), 16, 0),
            Err(BindError::NotSocket(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_hand_over_is_refused() {
        assert!(adopt_worker_fds("x", 1).is_err());
        assert!(adopt_worker_fds("1000000", 2).is_err());
        assert!(adopt_worker_fds("1000000", 1).is_err());
    }
}
