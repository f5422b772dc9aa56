//! Binding the listening sockets (in the master, before any worker starts).

use std::net::{SocketAddr, TcpListener};

use super::StartError;
use crate::io;

/// Binds one SO_REUSEPORT listener per worker. A plain bind first checks the address is free,
/// so a second server on the same port fails instead of silently sharing its traffic.
pub(super) fn bind_listeners(
    addr: SocketAddr,
    n: usize,
    backlog: i32,
) -> Result<Vec<TcpListener>, StartError> {
    let probe = TcpListener::bind(addr).map_err(|e| StartError::Bind(addr, e))?;
    let addr = probe.local_addr().map_err(|e| StartError::Bind(addr, e))?;
    drop(probe);
    (0..n)
        .map(|_| io::bind_reuseport(addr, backlog).map_err(|e| StartError::Bind(addr, e)))
        .collect()
}
