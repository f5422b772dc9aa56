//! `Epoll`: the fallback transport for where io_uring is unavailable (a container's seccomp
//! profile, kernel.io_uring_disabled, an old kernel), with the same semantics as `Uring`.
//!
//! Readiness instead of completions: every socket is non-blocking and registered once,
//! edge-triggered, for input and output; `Slot::readable`/`writable` remember what the kernel
//! last said, so a receive or a send is tried only when it can make progress. Queued work
//! (output, a receive asked for, a close) is done at the next `wait()` before it blocks, so the
//! data goes out (and often comes in) without an extra epoll round; a send that fills the
//! socket waits for `EPOLLOUT`. A short receive or send means the socket ran dry or full, so
//! the flag is cleared without a syscall that would only see EAGAIN (the kernel signals the
//! next edge; a FIN already signalled keeps the socket readable). All events of one
//! `epoll_wait` form one round; a round whose events all came from queued work is handed over
//! without polling, but never two in a row, so no connection waits behind a busy one.
//!
//! Each listener is level-triggered and registered only while accepting (taken out on pause,
//! stop, or a resource error until the next tick). An SO_REUSEPORT socket is this loop's own:
//! each readiness accepts up to a batch. Any other socket (unix, `fd://`, systemd) is shared by
//! every worker thread: it is registered with `EPOLLEXCLUSIVE`, so a connection wakes one idle
//! worker rather than all, and each readiness accepts one connection, after which the listener
//! is taken out and added again at the next `wait`, which puts this loop at the back of the
//! socket's queue of waiters: idle workers take turns (as `Uring`'s re-armed single accept). The waker is the same eventfd `Waker` as
//! `Uring`'s; `Tick` comes from the `epoll_wait` timeout. Files go out with sendfile(2) from
//! the connection's current segment; `write_file` is a plain pwrite (a regular file never
//! blocks in the epoll sense) whose result is reported at the next round.
//!
//! Connection lifecycle: `Open` → (`close`) `Flushing` → (shutdown(SHUT_WR)) `Draining` → fd
//! closed, `Closed` reported (`Closed` state) → slot `Free` at the next `wait`. Errors and
//! `abort` close at once (nothing is ever in flight in the kernel).

use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll as EpollFd, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{accept4, shutdown, Shutdown, SockFlag};
use socket2::SockRef;

use super::outgoing::{Outgoing, Segment};
use super::slots;
use super::{Accepting, ConnId, Event, Transport, Waker};

/// Room reserved in the input before each receive.
const RECV_RESERVE: usize = 16 * 1024;
/// Initial input capacity of a slot.
const INPUT_INITIAL: usize = 16 * 1024;
/// A receive buffer above this capacity is trimmed back once empty (after a large body).
const KEEP_BUFFER: usize = 64 * 1024;
/// Buffers larger than this are shrunk back when a slot is recycled.
const BUFFER_KEEP: usize = 1024 * 1024;
/// Graceful close: stop draining after this many discarded bytes...
const DRAIN_LIMIT: usize = 256 * 1024;
/// ...or after this many ticks since `shutdown(SHUT_WR)` (2–3 s).
const DRAIN_TICKS: u8 = 3;
/// Largest piece of a file given to one sendfile(2) (its own limit is just under 2 GiB).
const SENDFILE_MAX: u64 = 1 << 30;
/// Connections accepted per readiness of an own listener at most (the level-triggered
/// listener reports the rest).
const ACCEPT_BATCH: usize = 128;
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 256;
const TICK: Duration = Duration::from_secs(1);

/// epoll `data` of the waker and of listener `i` (`LISTENER | i`); a connection's is
/// `gen << 32 | index`.
const WAKER: u64 = u64::MAX;
const LISTENER: u64 = 1 << 63;
/// Generations stay below 2^31 so a connection's `data` never has the `LISTENER` bit.
const GEN_MASK: u32 = (1 << 31) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Open,
    /// `close` called: sending what is queued.
    Flushing,
    /// shutdown(SHUT_WR) done: reading and discarding until EOF / limit / deadline.
    Draining,
    /// fd closed and `Closed` reported; recycled at the start of the next `wait`, so calls for
    /// events that preceded `Closed` in the same batch find it (and do nothing).
    Closed,
}

/// The file a connection is sending (its current segment).
struct FileSend {
    file: File,
    offset: u64,
    remaining: u64,
}

struct Slot {
    gen: u32,
    state: State,
    fd: Option<OwnedFd>,
    input: Vec<u8>,
    /// Output queue, buffer being sent and segments.
    out: Outgoing,
    /// The caller asked for a receive (`receive`); cleared by `Received`.
    want_recv: bool,
    /// The kernel said the socket has input (or EOF, or an error) not yet read.
    readable: bool,
    /// The kernel said the socket has room for output.
    writable: bool,
    /// The kernel reported the peer's FIN, a hang-up or an error: input never runs dry again
    /// (receives return EOF or the error at once), so `readable` stays set.
    hup: bool,
    drained: usize,
    ticks: u8,
    /// Queued in `Epoll::todo`.
    queued: bool,
    /// The file being sent (the current segment).
    file: Option<FileSend>,
}

impl slots::Slot for Slot {
    fn generation(&self) -> u32 {
        self.gen
    }

    fn is_free(&self) -> bool {
        self.state == State::Free
    }

    fn receiving(&self) -> bool {
        self.want_recv
    }
}

impl Slot {
    fn new() -> Slot {
        Slot {
            gen: 0,
            state: State::Free,
            fd: None,
            input: Vec::with_capacity(INPUT_INITIAL),
            out: Outgoing::default(),
            want_recv: false,
            readable: false,
            writable: false,
            hup: false,
            drained: 0,
            ticks: 0,
            queued: false,
            file: None,
        }
    }

    fn conn(&self, index: usize) -> ConnId {
        ConnId::new(index as u32, self.gen)
    }
}

/// One listening socket (TCP or unix-domain), non-blocking.
struct Listener {
    fd: OwnedFd,
    /// Not SO_REUSEPORT: every worker thread accepts on this socket (see module docs).
    shared: bool,
    /// In the epoll set.
    registered: bool,
}

/// What one attempt to move bytes achieved.
enum Progress {
    /// Everything queued is sent.
    Done,
    /// The socket is full: wait for `EPOLLOUT`.
    Blocked,
    /// The connection failed (already closed).
    Failed,
}

/// The epoll transport (see module docs). Not `Send`, like `Uring`: one per worker thread.
pub struct Epoll {
    epoll: EpollFd,
    /// epoll_wait calls so far (statistics).
    enters: u64,
    listeners: Vec<Listener>,
    accepting: Accepting,
    /// accept failed for lack of resources (EMFILE...): not listening until the next tick.
    backoff: bool,
    wake_fd: Arc<EventFd>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots in state `Closed`, recycled at the start of the next `wait`.
    released: Vec<u32>,
    open: usize,
    /// Slots whose output / receive / close needs looking at before the next `epoll_wait`.
    todo: Vec<u32>,
    /// `write_file` results, reported at the next round if the connection is still open.
    written: Vec<(ConnId, Result<usize, i32>)>,
    /// Events produced so far this round (or between rounds, e.g. by `abort`).
    ready: Vec<Event>,
    polled: Vec<EpollEvent>,
    /// The previous round returned without polling (its events came from queued work): poll
    /// this time even if there are events already, so no connection waits behind a busy one.
    skipped_poll: bool,
    next_tick: Instant,
    woken: bool,
    _not_send: PhantomData<*const ()>,
}

fn conn_interest() -> EpollFlags {
    EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET
}

impl Epoll {
    /// Creates the epoll set and makes `listeners` (listening TCP or unix-domain sockets)
    /// non-blocking; accepting starts at the first `wait`.
    pub fn new(listeners: Vec<OwnedFd>) -> io::Result<Epoll> {
        let listeners = listeners
            .into_iter()
            .map(|fd| {
                Ok(Listener {
                    shared: super::prepare_listener(&fd, true)?,
                    fd,
                    registered: false,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let epoll = EpollFd::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let wake_fd =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        epoll.add(&wake_fd, EpollEvent::new(EpollFlags::EPOLLIN, WAKER))?;
        Ok(Epoll {
            epoll,
            enters: 0,
            listeners,
            accepting: Accepting::On,
            backoff: false,
            wake_fd: Arc::new(wake_fd),
            slots: Vec::new(),
            free: Vec::new(),
            released: Vec::new(),
            open: 0,
            todo: Vec::new(),
            written: Vec::new(),
            ready: Vec::new(),
            polled: vec![EpollEvent::empty(); EVENTS],
            skipped_poll: false,
            next_tick: Instant::now() + TICK,
            woken: false,
            _not_send: PhantomData,
        })
    }

    // ----- listener and waker -----

    /// Puts the listeners in or takes them out of the epoll set, as accepting calls for.
    fn sync_listeners(&mut self) -> io::Result<()> {
        let want = self.accepting == Accepting::On && !self.backoff;
        for (index, listener) in self.listeners.iter_mut().enumerate() {
            if want && !listener.registered {
                let mut flags = EpollFlags::EPOLLIN;
                if listener.shared {
                    flags |= EpollFlags::EPOLLEXCLUSIVE;
                }
                let ev = EpollEvent::new(flags, LISTENER | index as u64);
                self.epoll.add(&listener.fd, ev)?;
            } else if !want && listener.registered {
                self.epoll.delete(&listener.fd)?;
            }
            listener.registered = want;
        }
        Ok(())
    }

    /// Accepts what listener `index` has: a batch from an own listener, one connection from a
    /// shared one, which then leaves the epoll set until the next `wait` (module docs; one that
    /// found the connection taken by another worker keeps its place in the socket's queue).
    fn accept_some(&mut self, index: usize) -> io::Result<()> {
        if self.accepting != Accepting::On || self.backoff {
            return Ok(());
        }
        let Some(listener) = self.listeners.get(index) else {
            return Ok(());
        };
        let (fd, shared) = (listener.fd.as_raw_fd(), listener.shared);
        let batch = if shared { 1 } else { ACCEPT_BATCH };
        for _ in 0..batch {
            let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
            match accept4(fd, flags) {
                Ok(fd) => {
                    // SAFETY: a successful accept4 returns a new fd the kernel just installed
                    // in our table; nothing else owns it.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    self.adopt(fd);
                    if shared {
                        let listener = &mut self.listeners[index];
                        listener.registered = false;
                        self.epoll.delete(&listener.fd)?;
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(e @ (Errno::ECONNABORTED | Errno::EINTR | Errno::EPROTO)) => {
                    tracing::debug!("accept: {e}");
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e} (retrying at the next tick)");
                    self.backoff = true;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Registers an accepted socket as a connection (`Accepted`), or drops (closes) it if it
    /// is already unusable.
    fn adopt(&mut self, fd: OwnedFd) {
        let Some(peer) = super::accepted_peer(&fd) else {
            return;
        };
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::new());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        let data = (u64::from(slot.gen) << 32) | u64::from(index);
        if let Err(e) = self.epoll.add(&fd, EpollEvent::new(conn_interest(), data)) {
            tracing::warn!("epoll_ctl(ADD) of an accepted socket: {e} (closing it)");
            self.free.push(index);
            return;
        }
        slot.state = State::Open;
        slot.fd = Some(fd);
        // Try a receive at once when asked: the request often came with the handshake.
        slot.readable = true;
        slot.writable = true;
        self.open += 1;
        self.ready.push(Event::Accepted {
            conn: slot.conn(index as usize),
            peer,
        });
    }

    fn on_wake(&mut self) {
        // Non-blocking: one read resets the counter; EAGAIN means another round took it.
        if self.wake_fd.read().is_ok() && !self.woken {
            self.woken = true;
            self.ready.push(Event::Woken);
        }
    }

    fn on_tick(&mut self) {
        self.ready.push(Event::Tick);
        self.backoff = false;
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            if slot.state == State::Draining {
                slot.ticks = slot.ticks.saturating_add(1);
                if slot.ticks >= DRAIN_TICKS {
                    self.finish(index);
                }
            }
        }
    }

    // ----- connections -----

    fn enqueue(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if !slot.queued {
            slot.queued = true;
            self.todo.push(index as u32);
        }
    }

    fn on_ready(&mut self, index: usize, gen: u32, flags: EpollFlags) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if slot.gen != gen || matches!(slot.state, State::Free | State::Closed) {
            return; // an event for a connection closed earlier in this round
        }
        let trouble = EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP;
        if flags.intersects(EpollFlags::EPOLLRDHUP | trouble) {
            slot.hup = true;
        }
        if flags.intersects(EpollFlags::EPOLLIN) || slot.hup {
            slot.readable = true;
        }
        if flags.intersects(EpollFlags::EPOLLOUT | trouble) {
            slot.writable = true;
        }
        self.advance(index);
    }

    /// Does whatever the connection's state calls for and the socket allows now.
    fn advance(&mut self, index: usize) {
        match self.slots[index].state {
            State::Free | State::Closed => {}
            State::Open => {
                if let Progress::Done = self.pump(index) {
                    let slot = &mut self.slots[index];
                    if std::mem::take(&mut slot.out.notify) {
                        self.ready.push(Event::Sent {
                            conn: slot.conn(index),
                        });
                    }
                }
                let slot = &self.slots[index];
                if slot.state == State::Open && slot.want_recv && slot.readable {
                    self.recv(index);
                }
            }
            State::Flushing => {
                if let Progress::Done = self.pump(index) {
                    let slot = &mut self.slots[index];
                    let fd = slot.fd.as_ref().map_or(-1, |fd| fd.as_raw_fd());
                    if let Err(e) = shutdown(fd, Shutdown::Write) {
                        tracing::debug!("connection {index}: shutdown: {e} (closing)");
                        return self.finish(index);
                    }
                    slot.state = State::Draining;
                    slot.ticks = 0;
                    self.drain(index);
                }
            }
            State::Draining => self.drain(index),
        }
    }

    /// One receive into the input's spare capacity (`Received`), if the socket has something.
    fn recv(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let Some(fd) = slot.fd.as_ref() else { return };
        if slot.input.is_empty() && slot.input.capacity() > KEEP_BUFFER {
            // The large body that grew it is gone: give the memory back.
            slot.input.shrink_to(RECV_RESERVE);
        }
        slot.input.reserve(RECV_RESERVE);
        let spare = slot.input.spare_capacity_mut();
        let room = spare.len();
        let result = loop {
            match SockRef::from(fd).recv(spare) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(n) => {
                let n = n.min(room);
                // SAFETY: recv(2) initialized the first `n` bytes of the spare capacity it was
                // given (`n` is clamped to its length).
                unsafe { slot.input.set_len(slot.input.len() + n) };
                slot.want_recv = false;
                // A short read emptied the socket: the next data brings a new edge. After EOF
                // or a FIN already reported, it stays readable: a later receive sees the EOF
                // at once (the FIN brings no new edge).
                if n > 0 && n < room && !slot.hup {
                    slot.readable = false;
                }
                let conn = slot.conn(index);
                self.ready.push(Event::Received { conn, n });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.readable = false,
            Err(e) => self.fail(index, &e),
        }
    }

    /// Reads and discards input (closing): finishes on EOF, an error or the limit.
    fn drain(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let Some(fd) = slot.fd.as_ref() else { return };
        slot.input.clear();
        slot.input.reserve(RECV_RESERVE);
        while slot.readable {
            match SockRef::from(fd).recv(slot.input.spare_capacity_mut()) {
                Ok(0) => return self.finish(index),
                Ok(n) => {
                    slot.drained += n;
                    if slot.drained >= DRAIN_LIMIT {
                        return self.finish(index);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.readable = false,
                Err(_) => return self.finish(index),
            }
        }
    }

    /// Sends what is queued (segments, then the output) until done or the socket is full.
    fn pump(&mut self, index: usize) -> Progress {
        loop {
            let slot = &mut self.slots[index];
            if slot.out.sent < slot.out.inflight.len() || slot.file.is_some() {
                if !slot.writable {
                    return Progress::Blocked;
                }
                let step = if slot.file.is_some() {
                    self.send_file_piece(index)
                } else {
                    self.send_bytes(index)
                };
                match step {
                    Ok(true) => continue,
                    Ok(false) => {
                        self.slots[index].writable = false;
                        return Progress::Blocked;
                    }
                    Err(e) => {
                        self.fail(index, &e);
                        return Progress::Failed;
                    }
                }
            }
            match slot.out.segments.pop_front() {
                Some(Segment::Bytes(mut bytes)) => {
                    std::mem::swap(&mut slot.out.inflight, &mut bytes);
                    slot.out.sent = 0;
                }
                Some(Segment::File { len: 0, .. }) => {} // the file is closed here
                Some(Segment::File { file, offset, len }) => {
                    slot.file = Some(FileSend {
                        file,
                        offset,
                        remaining: len,
                    });
                }
                None if !slot.out.output.is_empty() => {
                    std::mem::swap(&mut slot.out.output, &mut slot.out.inflight);
                    slot.out.output.clear();
                    slot.out.sent = 0;
                }
                None => return Progress::Done,
            }
        }
    }

    /// One send of the rest of `inflight`: Ok(true) if all of it went out (or the send was
    /// interrupted), Ok(false) if the socket is full. A short send means full too (a stream
    /// socket sends less only when it ran out of room, and then signals `EPOLLOUT` once it has
    /// room again), which saves the send that would only see EAGAIN.
    fn send_bytes(&mut self, index: usize) -> io::Result<bool> {
        let slot = &mut self.slots[index];
        let Some(fd) = slot.fd.as_ref() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        match SockRef::from(fd)
            .send_with_flags(&slot.out.inflight[slot.out.sent..], libc::MSG_NOSIGNAL)
        {
            // 0 bytes for a non-empty send would loop forever: treat it as a dead peer.
            Ok(0) => Err(io::ErrorKind::BrokenPipe.into()),
            Ok(n) => {
                slot.out.sent += n;
                if slot.out.sent < slot.out.inflight.len() {
                    return Ok(false);
                }
                slot.out.inflight.clear();
                slot.out.sent = 0;
                slot.out.notify = true;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// One sendfile(2) of the current file: Ok(true) if some went out, Ok(false) if the socket
    /// is full. A file shorter than announced is an error (the body is truncated).
    fn send_file_piece(&mut self, index: usize) -> io::Result<bool> {
        let slot = &mut self.slots[index];
        let (Some(fd), Some(f)) = (slot.fd.as_ref(), slot.file.as_mut()) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let Ok(mut offset) = i64::try_from(f.offset) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        let count = f.remaining.min(SENDFILE_MAX) as usize;
        match nix::sys::sendfile::sendfile64(fd.as_fd(), f.file.as_fd(), Some(&mut offset), count) {
            Ok(0) => {
                tracing::debug!("connection {index}: send_file: file shorter than its length");
                Err(io::ErrorKind::UnexpectedEof.into())
            }
            Ok(n) => {
                f.offset += n as u64;
                f.remaining -= n as u64;
                if f.remaining == 0 {
                    slot.file = None; // closes the file
                    slot.out.notify = true;
                }
                Ok(true)
            }
            Err(Errno::EAGAIN) => Ok(false),
            Err(Errno::EINTR) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    fn fail(&mut self, index: usize, e: &io::Error) {
        tracing::debug!("connection {index}: {e} (closing)");
        self.finish(index);
    }

    /// Closes the fd (which takes it out of the epoll set) and reports `Closed`; the slot is
    /// recycled at the next `wait`.
    fn finish(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if matches!(slot.state, State::Closed | State::Free) {
            return;
        }
        slot.fd = None;
        slot.state = State::Closed;
        slot.out.reset(BUFFER_KEEP);
        slot.file = None;
        self.released.push(index as u32);
        self.open -= 1;
        self.ready.push(Event::Closed {
            conn: slot.conn(index),
        });
    }

    /// Recycles the slots whose `Closed` was handed out by the previous `wait`.
    fn release(&mut self) {
        for index in std::mem::take(&mut self.released) {
            let slot = &mut self.slots[index as usize];
            slot.state = State::Free;
            slot.gen = (slot.gen + 1) & GEN_MASK;
            slot.input.clear();
            if slot.input.capacity() > BUFFER_KEEP {
                slot.input.shrink_to(INPUT_INITIAL);
            }
            // Calls after `Closed` may have queued something: it is dropped.
            slot.out.reset(BUFFER_KEEP);
            slot.want_recv = false;
            slot.hup = false;
            slot.drained = 0;
            slot.ticks = 0;
            self.free.push(index);
        }
    }

    fn run_todo(&mut self) {
        let mut todo = std::mem::take(&mut self.todo);
        for &index in &todo {
            self.slots[index as usize].queued = false;
            self.advance(index as usize);
        }
        todo.clear();
        self.todo = todo;
    }

    /// Reports the `write_file` results of connections still open.
    fn report_writes(&mut self) {
        for (conn, result) in self.written.drain(..) {
            if slots::live(&self.slots, conn).is_some_and(|s| s.state == State::Open) {
                self.ready.push(Event::FileWritten { conn, result });
            }
        }
    }

    fn poll(&mut self, timeout: u16) -> io::Result<()> {
        self.enters += 1;
        let mut polled = std::mem::take(&mut self.polled);
        let n = match self.epoll.wait(&mut polled, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => {
                self.polled = polled;
                return Err(e.into());
            }
        };
        let mut result = Ok(());
        for ev in &polled[..n] {
            match ev.data() {
                WAKER => self.on_wake(),
                data if data & LISTENER != 0 => {
                    let listener = (data & !LISTENER) as usize;
                    if let Err(e) = self.accept_some(listener) {
                        result = Err(e);
                    }
                }
                data => self.on_ready(data as u32 as usize, (data >> 32) as u32, ev.events()),
            }
        }
        self.polled = polled;
        result
    }
}

impl Transport for Epoll {
    fn enters(&self) -> u64 {
        self.enters
    }

    fn wait(&mut self, events: &mut Vec<Event>) -> io::Result<()> {
        self.woken = false;
        self.release();
        loop {
            self.report_writes();
            self.run_todo();
            self.sync_listeners()?;
            if !self.ready.is_empty() && !self.skipped_poll {
                // Events from queued work: hand them over without polling this once.
                self.skipped_poll = true;
                events.append(&mut self.ready);
                return Ok(());
            }
            self.skipped_poll = false;
            let now = Instant::now();
            let timeout = if self.ready.is_empty() {
                // Milliseconds to the next tick, rounded up (at most 1000).
                let left = self.next_tick.saturating_duration_since(now);
                left.as_micros().div_ceil(1000).min(1000) as u16
            } else {
                0
            };
            self.poll(timeout)?;
            if Instant::now() >= self.next_tick {
                self.next_tick = Instant::now() + TICK;
                self.on_tick();
            }
            if !self.ready.is_empty() {
                events.append(&mut self.ready);
                return Ok(());
            }
        }
    }

    fn input(&mut self, conn: ConnId) -> &mut Vec<u8> {
        &mut slots::not_receiving(&mut self.slots, conn, "input").input
    }

    fn buffers(&mut self, conn: ConnId) -> (&mut Vec<u8>, &mut Vec<u8>) {
        slots::not_receiving(&mut self.slots, conn, "buffers");
        self.enqueue(conn.index());
        let slot = &mut self.slots[conn.index()];
        (&mut slot.input, &mut slot.out.output)
    }

    fn output(&mut self, conn: ConnId) -> &mut Vec<u8> {
        slots::live_or_panic(&mut self.slots, conn, "output");
        self.enqueue(conn.index());
        &mut self.slots[conn.index()].out.output
    }

    fn pending_output(&self, conn: ConnId) -> usize {
        slots::live(&self.slots, conn).map_or(0, |s| {
            let file = s
                .file
                .as_ref()
                .map_or(0, |f| usize::try_from(f.remaining).unwrap_or(usize::MAX));
            s.out.pending(file)
        })
    }

    fn receive(&mut self, conn: ConnId) {
        if let Some(slot) = slots::live_mut(&mut self.slots, conn) {
            if slot.state == State::Open && !slot.want_recv {
                slot.want_recv = true;
                self.enqueue(conn.index());
            }
        }
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(slot) = slots::live_mut(&mut self.slots, conn) {
            if slot.state == State::Open {
                slot.state = State::Flushing;
                self.enqueue(conn.index());
            }
        }
    }

    fn abort(&mut self, conn: ConnId) {
        if slots::live(&self.slots, conn).is_some() {
            self.finish(conn.index());
        }
    }

    fn send_file(&mut self, conn: ConnId, file: File, offset: u64, len: u64) {
        let Some(slot) = slots::live_mut(&mut self.slots, conn) else {
            tracing::debug!("send_file({conn:?}) on a dead connection id (file closed)");
            return;
        };
        if !matches!(slot.state, State::Open | State::Flushing) {
            return; // closing: the file is closed here, like output appended too late
        }
        slot.out.queue_file(file, offset, len);
        self.enqueue(conn.index());
    }

    fn write_file(&mut self, conn: ConnId, file: &Arc<File>, offset: u64, data: Vec<u8>) {
        if slots::live(&self.slots, conn).is_none_or(|s| s.state != State::Open) {
            return;
        }
        let result = match file.write_all_at(&data, offset) {
            Ok(()) => Ok(data.len()),
            Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        self.written.push((conn, result));
    }

    fn stop_accepting(&mut self) {
        self.accepting = Accepting::Stopped;
    }

    fn pause_accepting(&mut self) {
        self.accepting.pause();
    }

    fn resume_accepting(&mut self) {
        self.accepting.resume();
    }

    fn connections(&self) -> usize {
        self.open
    }

    fn waker(&self) -> Waker {
        Waker::new(self.wake_fd.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::conformance::{suite, Harness};

    impl Harness for Epoll {
        const TURNS_AT_LEAST: usize = 1;

        fn serve(listeners: Vec<OwnedFd>) -> Self {
            Epoll::new(listeners).unwrap()
        }
    }

    suite!(Epoll);
}
