//! The transport layer: an io_uring completion loop (`Uring`), its epoll fallback (`Epoll`, for
//! where io_uring is blocked or too old: `probe_uring` tells) and an in-memory stand-in
//! (`Memory`) behind one poll-style `Transport` trait. This module knows nothing of HTTP or
//! Python: the worker calls `wait()`, reacts to the round's `Event`s by queueing operations
//! (`receive`, appending to `output`, `close`, ...), and calls `wait()` again, which submits
//! everything queued in one go. All io_uring `unsafe` of the crate lives under `src/io/`.

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::eventfd::EventFd;
use socket2::SockRef;

#[cfg(test)]
mod conformance;
mod epoll;
mod listener;
mod memory;
mod outgoing;
mod shm;
mod slots;
mod uring;

pub use listener::{adopt_fd, adopt_listener, bind_reuseport, bind_unix, set_inheritable};
pub use memory::Memory;
pub use shm::SharedMemory;

pub use epoll::Epoll;
pub use uring::{probe_uring, Uring};

/// Identifies a connection: a dense slab index plus a generation, so a stale id (one whose
/// `Closed` was already reported) never reaches the connection that later reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    index: u32,
    gen: u32,
}

impl ConnId {
    pub(crate) fn new(index: u32, gen: u32) -> ConnId {
        ConnId { index, gen }
    }

    /// Dense slab index (small, reused after `Closed`): usable by the caller to index its own
    /// `Vec` of per-connection state.
    pub fn index(self) -> usize {
        self.index as usize
    }

    pub(crate) fn gen(self) -> u32 {
        self.gen
    }
}

/// Who is on the other end of an accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A unix-domain socket's peer: it has no address.
    Unix,
}

impl Peer {
    /// The peer's address (None for a unix-domain peer).
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Peer::Tcp(addr) => Some(addr),
            Peer::Unix => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => addr.fmt(f),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// The peer of a just-accepted socket, with TCP_NODELAY set on TCP; None if the socket is
/// already unusable (then the caller just drops it).
fn accepted_peer(fd: &OwnedFd) -> Option<Peer> {
    let sock = SockRef::from(fd);
    // A unix-domain peer has no socket address; a TCP one must have one.
    let peer = match sock.peer_addr() {
        Ok(addr) if addr.is_unix() => Peer::Unix,
        Ok(addr) => Peer::Tcp(addr.as_socket()?),
        Err(e) => {
            tracing::debug!("accepted socket unusable: {e}");
            return None;
        }
    };
    if peer != Peer::Unix {
        if let Err(e) = sock.set_tcp_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    }
    Some(peer)
}

/// Makes a listening socket blocking or not, as the transport waits; true if it is shared:
/// without SO_REUSEPORT (a unix, `fd://` or systemd socket) every worker thread accepts on it
/// (each through its own dup), so each should take one connection per turn. An SO_REUSEPORT
/// socket is the worker's own.
fn prepare_listener(fd: &OwnedFd, nonblocking: bool) -> std::io::Result<bool> {
    let sock = SockRef::from(fd);
    sock.set_nonblocking(nonblocking)?;
    Ok(!sock.reuse_port()?)
}

/// What the caller asked of accepting (`pause_accepting`, `resume_accepting`,
/// `stop_accepting`), for the socket transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accepting {
    On,
    Paused,
    /// Final: `resume_accepting` does nothing any more.
    Stopped,
}

impl Accepting {
    /// `pause_accepting`: true if accepting was on (and is paused now).
    fn pause(&mut self) -> bool {
        let was_on = *self == Accepting::On;
        if was_on {
            *self = Accepting::Paused;
        }
        was_on
    }

    /// `resume_accepting`: on again, unless stopped for good.
    fn resume(&mut self) {
        if *self == Accepting::Paused {
            *self = Accepting::On;
        }
    }
}

/// What happened during one `wait()` round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new connection (TCP_NODELAY already set on TCP). No receive is armed yet: the caller
    /// calls `receive`.
    Accepted { conn: ConnId, peer: Peer },
    /// A receive completed: `n` new bytes were appended to the connection's input (`n == 0`: the
    /// peer half-closed, EOF). No receive is in flight now.
    Received { conn: ConnId, n: usize },
    /// Everything queued on the connection's output has been written to the socket.
    Sent { conn: ConnId },
    /// The connection is gone (reset, error, or after the caller's `close`/`abort`). Emitted
    /// exactly once per connection; the id is dead afterwards and no other event for it follows.
    /// Until the next `wait()`, calls on the id (say, for an event before `Closed` in the same
    /// batch) do not panic: buffers are empty or stale and operations are no-ops.
    Closed { conn: ConnId },
    /// About once a second: callers check their deadlines on it.
    Tick,
    /// A `Waker` was woken (one event per round however many wakes).
    Woken,
    /// A `write_file` completed: `Ok(bytes written)` (always the whole buffer) or
    /// `Err(errno)` (a positive raw OS error: `std::io::Error::from_raw_os_error(e)`; the file
    /// may then hold part of the data). One per `write_file` call, reported only while the
    /// connection is open (not after `close`/`abort` or once it failed).
    FileWritten {
        conn: ConnId,
        result: Result<usize, i32>,
    },
}

/// What the worker needs from a transport; implemented by `Uring` and `Epoll` (real sockets)
/// and `Memory` (tests/benches).
pub trait Transport {
    /// Submits all queued operations and sends, waits until at least one completion (or a
    /// wake/tick) is there, and appends this round's events to `events` (in completion order).
    /// Returns Err only if the ring itself fails.
    fn wait(&mut self, events: &mut Vec<Event>) -> std::io::Result<()>;
    /// The connection's input buffer: received bytes accumulate at its end; the caller consumes
    /// from the front once it parsed them. Panics if a receive is in flight (caller bug) or if
    /// the id is dead.
    fn input(&mut self, conn: ConnId) -> &mut Vec<u8>;
    /// Input and output at once (same rules as `input` and `output`).
    fn buffers(&mut self, conn: ConnId) -> (&mut Vec<u8>, &mut Vec<u8>);
    /// The connection's output queue: bytes appended here are sent at the next `wait()`.
    /// Appending is always allowed (in-flight bytes live in a separate, transport-owned buffer).
    /// Panics if the id is dead.
    fn output(&mut self, conn: ConnId) -> &mut Vec<u8>;
    /// Bytes queued or in flight on this connection's output (for backpressure); 0 for a dead id.
    fn pending_output(&self, conn: ConnId) -> usize;
    /// Arms one receive into the input's spare capacity (reserving at least 16 KiB first).
    /// No-op if one is already in flight, the connection is closing, or the id is dead.
    fn receive(&mut self, conn: ConnId);
    /// Graceful close: queued output is sent first, then `shutdown(SHUT_WR)`, then input is
    /// drained until EOF, an error, ~2 s or 256 KiB, then the fd is closed and `Closed` is
    /// reported. No other event for the connection follows `close`. Output appended after
    /// `close` is sent only if the flush is still under way. The ~2 s deadline starts once the
    /// flush is done: a peer that never reads keeps the flush pending until the caller `abort`s
    /// (write timeouts are the caller's). An in-flight receive is kept and reused for draining.
    fn close(&mut self, conn: ConnId);
    /// Immediate close: queued output is dropped, in-flight operations are cancelled, `Closed`
    /// follows once they completed.
    fn abort(&mut self, conn: ConnId);
    /// Sends `len` bytes of `file` from `offset` after everything already queued on the
    /// connection's output; bytes appended to `output()` after this call go after the file's.
    /// The transport owns `file` and closes it once sent or when the connection closes.
    /// `Sent` follows once the file and everything queued before and after it (by then) are
    /// sent (also for `len == 0`). A file shorter than `len` (EOF before it) or a read error
    /// closes the connection (the peer sees a truncated body, then EOF), as does a network
    /// error. On a closing or dead connection the file is just closed.
    /// `Uring` splices file → pipe → socket (zero-copy) in pieces of at most 1 MiB, with a
    /// pipe taken from a per-transport pool while the file is being sent.
    fn send_file(&mut self, conn: ConnId, file: std::fs::File, offset: u64, len: u64);
    /// Writes all of `data` to `file` at `offset` without blocking the thread (short writes are
    /// continued), then reports `Event::FileWritten`. The transport keeps `data` and a clone of
    /// the `Arc` (so the fd stays open) until the write completed, even if the connection
    /// closes meanwhile (then no event is reported). Several writes may be in flight for one
    /// connection; their order of completion is not specified (use disjoint ranges).
    fn write_file(&mut self, conn: ConnId, file: &Arc<std::fs::File>, offset: u64, data: Vec<u8>);
    /// Stops accepting new connections for good (shutdown); the listener fds stay open, later
    /// connections wait in the kernel's backlog. Idempotent. A connection the kernel accepted
    /// just before is still reported (`Accepted`).
    fn stop_accepting(&mut self);
    /// Stops taking new connections off the listeners for now (they wait in the kernel's
    /// backlog); `resume_accepting` starts again. Used for --worker-connections (a per-worker
    /// connection cap). Unlike `stop_accepting` (final, for shutdown), this can be undone; both
    /// are idempotent, and after `stop_accepting`, `resume_accepting` does nothing.
    /// A connection the kernel accepted just before the pause took effect is still reported
    /// (`Accepted`, possibly in a later round): callers must not assume none follows a pause.
    fn pause_accepting(&mut self);
    /// Undoes `pause_accepting`: accepting starts again at the next `wait()` (`Uring` re-arms
    /// its accepts once the cancelled ones have finished). No-op unless paused.
    fn resume_accepting(&mut self);
    /// Number of open connections (accepted, `Closed` not yet reported).
    fn connections(&self) -> usize;
    /// A handle other threads use to wake this loop (`Event::Woken`).
    fn waker(&self) -> Waker;
    /// Kernel entries (io_uring_enter or epoll_wait calls) so far, for statistics.
    fn enters(&self) -> u64;
}

/// Wakes a transport's loop from any thread (`Event::Woken` at its next round).
#[derive(Clone)]
pub struct Waker {
    fd: Arc<EventFd>,
    /// Set before each wake, so a transport that polls (Memory) reads the eventfd only when
    /// there is something to read.
    pending: Arc<AtomicBool>,
}

impl Waker {
    pub(crate) fn new(fd: Arc<EventFd>) -> Waker {
        Waker {
            fd,
            pending: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Adds 1 to the eventfd counter. Errors are ignored (the only possible one is a counter
    /// overflow, which still leaves the loop woken).
    pub fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        let _ = self.fd.write(1);
    }

    /// Whether a wake happened since the last call.
    pub(crate) fn take_pending(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waker").finish_non_exhaustive()
    }
}
