//! `Uring`: the real transport, one io_uring per worker thread, driven directly (no runtime).
//!
//! One accept per listener (multishot on the ring's own SO_REUSEPORT sockets, re-armed per
//! connection on shared ones; each cancelled by `pause_accepting`/`stop_accepting`, re-armed by
//! `resume_accepting` only after the cancelled one's final completion; the `user_data` index
//! says which listener), one read on an eventfd (the `Waker`), one re-armed
//! 1-second timeout (`Tick`), and per connection at most one receive, one send and one shutdown
//! in flight. Each SQE's `user_data` encodes the operation kind, the slot generation and the
//! slot index (`encode`), so every completion finds its connection and a stale one is ignored.
//!
//! Memory rule (what makes the `unsafe` below sound): a buffer handed to the kernel is a heap
//! allocation owned by this struct (a slot's `input` spare capacity, a slot's `inflight` send
//! buffer, the boxed eventfd read buffer and timespec). While the op is in flight, its flag
//! (`Slot::recv`, `Slot::send`, `wake_armed`, `timeout_armed`) is set and the buffer is neither
//! handed out, resized, moved nor freed: `input()`/`buffers()` panic while `recv` is set, the
//! `inflight` buffer is never exposed, a slot is only recycled once no op is in flight on it,
//! and `Drop` cancels everything and waits for every outstanding completion before any field
//! is freed (it leaks the buffers rather than free them if the ring fails meanwhile).
//!
//! Files: `send_file` queues a `Segment::File` behind the bytes already in the output (which
//! become a `Segment::Bytes`); segments go out strictly in order, then the output again. A file
//! is spliced file → pipe (`SpliceIn`) then pipe → socket (`SpliceOut`, repeated on short
//! counts), one piece of at most the pipe's size (1 MiB if F_SETPIPE_SZ allows) at a time, with
//! at most one splice in flight per connection (`Slot::splice`). The pipe comes from a small
//! per-transport pool of empty pipes and goes back once the file is done; a pipe left holding
//! data (error, abort) is closed instead. Splices reference no memory, only fds: the file, the
//! pipe and the socket are owned by the slot and kept until the splice's completion (the slot is
//! busy meanwhile). `write_file` buffers live in `Uring::writes`, independent of connections:
//! an entry (with its data and an `Arc` of the file) is freed only by its final completion, so
//! a closed or recycled connection never frees a buffer the kernel still reads.
//!
//! Connection lifecycle: `Open` → (`close`) `Flushing` → `ShuttingDown` → `Draining` →
//! `Finishing` → fd closed, `Closed` reported (`Closed` state) → slot `Free` at the next `wait`. Errors and `abort` jump to
//! `Finishing` (in-flight ops cancelled). Only `Open` connections report events besides `Closed`.

use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::outgoing::{Outgoing, Segment};
use super::slots;
use super::{Accepting, ConnId, Event, Transport, Waker};

/// Room reserved in the input before each receive.
const RECV_RESERVE: usize = 16 * 1024;
/// Initial input capacity of a slot.
const INPUT_INITIAL: usize = 16 * 1024;
/// Buffers larger than this are shrunk back when a slot is recycled.
const BUFFER_KEEP: usize = 1024 * 1024;
/// Graceful close: stop draining after this many discarded bytes...
const DRAIN_LIMIT: usize = 256 * 1024;
/// ...or after this many ticks since `shutdown(SHUT_WR)` completed (2–3 s).
const DRAIN_TICKS: u8 = 3;
/// Largest length given to one send/recv SQE.
const MAX_OP_LEN: usize = 1 << 30;
/// Pipe size asked for with F_SETPIPE_SZ, and largest piece of a file spliced at once.
const PIPE_SIZE: usize = 1024 * 1024;
/// Empty pipes kept for later `send_file`s; more are closed when given back.
const PIPE_POOL: usize = 16;

const INDEX_BITS: u32 = 32;
const GEN_BITS: u32 = 24;
const GEN_MASK: u32 = (1 << GEN_BITS) - 1;

/// The kind of operation a completion belongs to (top byte of `user_data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Cancel = 4,
    Timeout = 5,
    Wake = 6,
    Shutdown = 7,
    /// File → pipe (`send_file`).
    SpliceIn = 8,
    /// Pipe → socket (`send_file`).
    SpliceOut = 9,
    /// `write_file`; the index is the `Uring::writes` entry, not a slot.
    Write = 10,
    /// A cancel aimed at the accept of listener `index`.
    CancelAccept = 11,
}

impl Op {
    fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            1 => Op::Accept,
            2 => Op::Recv,
            3 => Op::Send,
            4 => Op::Cancel,
            5 => Op::Timeout,
            6 => Op::Wake,
            7 => Op::Shutdown,
            8 => Op::SpliceIn,
            9 => Op::SpliceOut,
            10 => Op::Write,
            11 => Op::CancelAccept,
            _ => return None,
        })
    }
}

fn encode(op: Op, index: u32, gen: u32) -> u64 {
    ((op as u64) << 56) | (((gen & GEN_MASK) as u64) << INDEX_BITS) | index as u64
}

fn decode(user_data: u64) -> (Option<Op>, u32, u32) {
    let op = Op::from_u8((user_data >> 56) as u8);
    let gen = ((user_data >> INDEX_BITS) as u32) & GEN_MASK;
    (op, user_data as u32, gen)
}

/// A completion copied out of the CQ ring.
#[derive(Clone, Copy, Debug)]
struct Cqe {
    user_data: u64,
    result: i32,
    flags: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Open,
    /// `close` called: sending what is queued.
    Flushing,
    /// `shutdown(SHUT_WR)` in flight.
    ShuttingDown,
    /// Reading and discarding until EOF / limit / deadline.
    Draining,
    /// Waiting for in-flight ops to complete, then the fd is closed and `Closed` reported.
    Finishing,
    /// fd closed and `Closed` reported; the slot is recycled at the start of the next `wait`,
    /// so calls for events that preceded `Closed` in the same batch find it (and do nothing)
    /// instead of a free or reused slot.
    Closed,
}

/// Where a listener's accept stands in the kernel. At most one is ever in flight: a new one
/// is armed only from `Idle`, which is reached only through the final completion (no MORE flag;
/// a single-shot accept's only one) of the previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accept {
    /// Not in flight: armed at the next `wait` if `Accepting::On`.
    Idle,
    /// Accept in flight.
    Armed,
    /// In flight with a cancel requested (pause/stop): waiting for its final completion.
    /// Connections it accepted meanwhile are still reported (`Accepted`).
    Cancelling,
    /// Failed with a resource error (EMFILE...): back to `Idle` at the next tick.
    Backoff,
}

/// One listening socket (TCP or unix-domain) and its multishot accept.
struct Listener {
    fd: OwnedFd,
    /// A multishot accept (an SO_REUSEPORT socket: this ring's own) or one accept per
    /// connection (a socket every worker thread shares; see `Uring::new`).
    multishot: bool,
    accept: Accept,
    /// The accept's cancel found it executing (EALREADY): asked again at the next tick.
    recancel: bool,
}

impl Listener {
    fn in_flight(&self) -> bool {
        matches!(self.accept, Accept::Armed | Accept::Cancelling)
    }
}

/// A pipe used to splice a file to a socket; empty whenever it is in the pool.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Capacity in bytes (the most spliced in at once).
    size: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let size = match fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as libc::c_int)) {
            Ok(n) => n as usize,
            // Above /proc/sys/fs/pipe-max-size or the user's pipe quota: keep the default.
            Err(_) => fcntl(&write, FcntlArg::F_GETPIPE_SZ).map_or(64 * 1024, |n| n as usize),
        };
        Ok(Pipe {
            read,
            write,
            size: size.clamp(4096, PIPE_SIZE),
        })
    }
}

/// The file a connection is splicing to its socket.
struct FileSend {
    file: File,
    /// File offset of the next splice in.
    offset: u64,
    /// Bytes not yet spliced into the pipe.
    remaining: u64,
    /// Bytes in the pipe not yet spliced to the socket.
    in_pipe: usize,
    pipe: Pipe,
}

/// One `write_file` in flight (its data and fd are kernel-visible until its final completion).
struct FileWrite {
    conn: ConnId,
    file: Arc<File>,
    offset: u64,
    data: Vec<u8>,
    done: usize,
}

struct Slot {
    gen: u32,
    state: State,
    fd: Option<OwnedFd>,
    input: Vec<u8>,
    /// Output queue, buffer being sent (kernel-visible while `send`) and segments.
    out: Outgoing,
    recv: bool,
    send: bool,
    shutdown: bool,
    /// The peer's EOF was seen while closing.
    eof: bool,
    drained: usize,
    ticks: u8,
    /// Queued in `Uring::todo`.
    queued: bool,
    /// The file being spliced (the current segment).
    file: Option<FileSend>,
    /// The splice in flight (`SpliceIn` or `SpliceOut`).
    splice: Option<Op>,
}

impl slots::Slot for Slot {
    fn generation(&self) -> u32 {
        self.gen
    }

    fn is_free(&self) -> bool {
        self.state == State::Free
    }

    fn receiving(&self) -> bool {
        self.recv
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
            recv: false,
            send: false,
            shutdown: false,
            eof: false,
            drained: 0,
            ticks: 0,
            queued: false,
            file: None,
            splice: None,
        }
    }

    fn busy(&self) -> bool {
        self.recv || self.send || self.shutdown || self.splice.is_some()
    }

    fn raw_fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |fd| fd.as_raw_fd())
    }
}

/// The io_uring transport (see module docs). Not `Send`: the ring is set up
/// `IORING_SETUP_SINGLE_ISSUER`, so it must stay on the thread that created it.
/// A receive buffer above this capacity is trimmed back once empty (after a large body).
const KEEP_BUFFER: usize = 64 * 1024;

pub struct Uring {
    ring: IoUring,
    /// io_uring_enter calls so far (statistics).
    enters: u64,
    /// The listening sockets, each with its own accept (`Op::Accept`'s index).
    listeners: Vec<Listener>,
    wake_fd: Arc<EventFd>,
    /// Target of the eventfd read (kernel-written while `wake_armed`).
    wake_buf: Box<u64>,
    /// Tick interval (kernel-read while `timeout_armed`).
    timespec: Box<types::Timespec>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots in state `Closed`, recycled at the start of the next `wait`.
    released: Vec<u32>,
    open: usize,
    /// Slots whose output / close needs looking at before the next submit.
    todo: Vec<u32>,
    cqes: Vec<Cqe>,
    /// Events produced so far this round (or between rounds, e.g. by `abort`).
    ready: Vec<Event>,
    accepting: Accepting,
    wake_armed: bool,
    wake_paused: bool,
    timeout_armed: bool,
    woken: bool,
    /// Empty pipes for `send_file`.
    pipes: Vec<Pipe>,
    /// `write_file`s in flight (`None`: a free entry, listed in `free_writes`).
    writes: Vec<Option<FileWrite>>,
    free_writes: Vec<u32>,
    writes_inflight: usize,
    /// A ring error hit where it could not be returned (pushing an SQE); returned by `wait`.
    fatal: Option<io::Error>,
    /// The ring failed at some point: in-flight bookkeeping can no longer be trusted, so Drop
    /// leaks the buffers instead of waiting for completions that may never come.
    broken: bool,
    _not_send: PhantomData<*const ()>,
}

fn build_ring(entries: u32) -> io::Result<IoUring> {
    let fast = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_submit_all()
        .build(entries);
    match fast {
        Ok(ring) => return Ok(ring),
        Err(e) => tracing::debug!("io_uring with COOP_TASKRUN|SUBMIT_ALL: {e}"),
    }
    if let Ok(ring) = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
    {
        tracing::info!(
            "io_uring: COOP_TASKRUN/SUBMIT_ALL unavailable, using SINGLE_ISSUER|DEFER_TASKRUN"
        );
        return Ok(ring);
    }
    let ring = IoUring::new(entries)?;
    tracing::warn!(
        "io_uring: SINGLE_ISSUER|DEFER_TASKRUN unavailable (old kernel?), using a default ring"
    );
    Ok(ring)
}

/// Whether a ring with the flags `Uring` asks for first can be set up here: Err says why not
/// (EPERM: a seccomp profile or kernel.io_uring_disabled; ENOSYS: no io_uring in the kernel;
/// EINVAL: a kernel before 6.1, without DEFER_TASKRUN; ENOMEM: RLIMIT_MEMLOCK). The ring is
/// dropped at once.
pub fn probe_uring() -> io::Result<()> {
    let ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(8)?;
    drop(ring);
    Ok(())
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

impl Uring {
    /// Sets up the ring on the calling thread (which must be the one driving it) and arms an
    /// accept on each of `listeners` (listening TCP or unix-domain sockets), the waker read and
    /// the tick timeout. An SO_REUSEPORT socket is this ring's own: one multishot accept takes
    /// all its connections. Any other socket may be shared by several rings (a unix socket, an
    /// inherited one): it gets one accept per connection, re-armed once that one completed, so
    /// each ring goes to the back of the socket's queue of waiters and idle rings take turns (a
    /// multishot accept would stay first in the queue and take every connection).
    pub fn new(listeners: Vec<OwnedFd>, entries: u32) -> io::Result<Uring> {
        let listeners = listeners
            .into_iter()
            .map(|fd| {
                // io_uring does the waiting; a non-blocking listener would make accept fail
                // with EAGAIN.
                Ok(Listener {
                    multishot: !super::prepare_listener(&fd, false)?,
                    fd,
                    accept: Accept::Idle,
                    recancel: false,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let ring = build_ring(entries.max(8))?;
        let wake_fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)?;
        let uring = Uring {
            enters: 0,
            ring,
            listeners,
            wake_fd: Arc::new(wake_fd),
            wake_buf: Box::new(0),
            timespec: Box::new(types::Timespec::new().sec(1)),
            slots: Vec::new(),
            free: Vec::new(),
            released: Vec::new(),
            open: 0,
            todo: Vec::new(),
            cqes: Vec::new(),
            ready: Vec::new(),
            accepting: Accepting::On,
            wake_armed: false,
            wake_paused: false,
            timeout_armed: false,
            woken: false,
            pipes: Vec::new(),
            writes: Vec::new(),
            free_writes: Vec::new(),
            writes_inflight: 0,
            fatal: None,
            broken: false,
            _not_send: PhantomData,
        };
        // Accept, waker read and tick timeout are pushed at the first `wait` (so a
        // `stop_accepting` before it never accepts anything).
        Ok(uring)
    }

    // ----- SQ / CQ plumbing -----

    /// Pushes one SQE, submitting first if the SQ is full.
    ///
    /// # Safety
    /// Every buffer the entry points at must stay valid, unmoved and not otherwise accessed
    /// until its completion has been reaped (see the module's memory rule).
    unsafe fn push(&mut self, entry: &squeue::Entry) {
        for _ in 0..64 {
            // SAFETY: forwarded from this function's contract.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            // SQ full: hand what is queued to the kernel.
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if retryable(&e) => self.reap(),
                Err(e) => {
                    tracing::error!("io_uring submit failed: {e}");
                    self.broken = true;
                    self.fatal.get_or_insert(e);
                    return;
                }
            }
        }
        self.broken = true;
        self.fatal
            .get_or_insert(io::Error::other("io_uring submission queue stays full"));
    }

    /// Copies every available completion into `self.cqes`.
    fn reap(&mut self) {
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            self.cqes.push(Cqe {
                user_data: cqe.user_data(),
                result: cqe.result(),
                flags: cqe.flags(),
            });
        }
    }

    fn enter(&mut self, want: usize) -> io::Result<()> {
        self.enters += 1;
        match self.ring.submitter().submit_and_wait(want) {
            Ok(_) => Ok(()),
            // Interrupted, out of kernel resources for a moment, or CQ overflow: reap and loop.
            Err(e) if retryable(&e) => Ok(()),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    fn cancel(&mut self, target: u64) {
        let (op, index, gen) = decode(target);
        let kind = if op == Some(Op::Accept) {
            Op::CancelAccept
        } else {
            Op::Cancel
        };
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(encode(kind, index, gen));
        // SAFETY: a cancel request references no memory (the target is matched by user_data).
        unsafe { self.push(&entry) };
    }

    // ----- background ops: accept, waker, tick -----

    fn arm_background(&mut self) {
        for index in 0..self.listeners.len() {
            let listener = &mut self.listeners[index];
            if listener.accept != Accept::Idle || self.accepting != Accepting::On {
                continue;
            }
            let fd = types::Fd(listener.fd.as_raw_fd());
            let entry = if listener.multishot {
                opcode::AcceptMulti::new(fd)
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            } else {
                opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            }
            .user_data(encode(Op::Accept, index as u32, 0));
            listener.accept = Accept::Armed;
            // SAFETY: the accept passes no address buffer; the listener outlives the ring's ops
            // (Drop cancels the accepts and waits for them before fields are dropped).
            unsafe { self.push(&entry) };
        }
        if !self.wake_armed && !self.wake_paused {
            let buf: *mut u64 = &mut *self.wake_buf;
            let entry = opcode::Read::new(types::Fd(self.wake_fd.as_raw_fd()), buf.cast::<u8>(), 8)
                .build()
                .user_data(encode(Op::Wake, 0, 0));
            self.wake_armed = true;
            // SAFETY: `wake_buf` is a Box of 8 bytes owned by self, never read or moved while
            // `wake_armed`; Drop waits for this completion before freeing it.
            unsafe { self.push(&entry) };
        }
        if !self.timeout_armed {
            let ts: *const types::Timespec = &*self.timespec;
            let entry = opcode::Timeout::new(ts)
                .build()
                .user_data(encode(Op::Timeout, 0, 0));
            self.timeout_armed = true;
            // SAFETY: `timespec` is a Box owned by self and never mutated; Drop waits for the
            // timeout's completion before freeing it.
            unsafe { self.push(&entry) };
        }
    }

    /// Cancels every armed multishot accept (pause/stop). Each final completion moves
    /// `Cancelling` to `Idle`; completions before it still carry accepted fds.
    fn cancel_accepts(&mut self) {
        for index in 0..self.listeners.len() {
            if self.listeners[index].accept == Accept::Armed {
                self.listeners[index].accept = Accept::Cancelling;
                self.cancel(encode(Op::Accept, index as u32, 0));
            }
        }
    }

    fn on_accept(&mut self, index: u32, c: Cqe) {
        let Some(listener) = self.listeners.get_mut(index as usize) else {
            return;
        };
        if !cqueue::more(c.flags) && matches!(listener.accept, Accept::Armed | Accept::Cancelling) {
            listener.accept = Accept::Idle;
            listener.recancel = false;
        }
        // Whatever the state (paused, stopping): an accepted fd is never dropped.
        if c.result >= 0 {
            // SAFETY: a successful accept completion's result is a new fd the kernel just
            // installed in our table; nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(c.result) };
            self.adopt(fd);
            return;
        }
        let err = -c.result;
        match err {
            libc::ECANCELED => {}
            libc::ECONNABORTED | libc::EINTR | libc::EAGAIN => {
                tracing::debug!("accept: {}", io::Error::from_raw_os_error(err));
            }
            _ => {
                tracing::warn!(
                    "accept failed: {} (retrying at the next tick)",
                    io::Error::from_raw_os_error(err)
                );
                if listener.accept == Accept::Idle {
                    listener.accept = Accept::Backoff;
                }
            }
        }
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
        slot.state = State::Open;
        slot.fd = Some(fd);
        self.open += 1;
        self.ready.push(Event::Accepted {
            conn: ConnId::new(index, slot.gen),
            peer,
        });
    }

    fn on_wake(&mut self, c: Cqe) {
        self.wake_armed = false;
        if c.result >= 0 {
            if !self.woken {
                self.woken = true;
                self.ready.push(Event::Woken);
            }
        } else if c.result != -libc::ECANCELED {
            tracing::warn!(
                "waker read failed: {}",
                io::Error::from_raw_os_error(-c.result)
            );
            self.wake_paused = true;
        }
    }

    fn on_timeout(&mut self, c: Cqe) {
        self.timeout_armed = false;
        if c.result == -libc::ECANCELED {
            return;
        }
        self.ready.push(Event::Tick);
        for index in 0..self.listeners.len() {
            let listener = &mut self.listeners[index];
            if listener.accept == Accept::Backoff {
                listener.accept = Accept::Idle;
            }
            if listener.recancel && listener.accept == Accept::Cancelling {
                listener.recancel = false;
                self.cancel(encode(Op::Accept, index as u32, 0));
            }
        }
        self.wake_paused = false;
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

    fn arm_recv(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if slot.input.is_empty() && slot.input.capacity() > KEEP_BUFFER {
            // The large body that grew it is gone: give the memory back.
            slot.input.shrink_to(RECV_RESERVE);
        }
        slot.input.reserve(RECV_RESERVE);
        let spare = slot.input.spare_capacity_mut();
        let len = spare.len().min(MAX_OP_LEN) as u32;
        let buf = spare.as_mut_ptr().cast::<u8>();
        let entry = opcode::Recv::new(types::Fd(slot.raw_fd()), buf, len)
            .build()
            .user_data(encode(Op::Recv, index as u32, slot.gen));
        slot.recv = true;
        // SAFETY: `buf..buf+len` is the input's spare capacity. While `recv` is set the input
        // is not handed out (`input`/`buffers` panic), not resized and not freed (the slot is
        // only recycled, and Drop only returns, once `recv` is cleared by the completion).
        unsafe { self.push(&entry) };
    }

    /// Starts sending the output queue (swapped into the kernel-owned `inflight` buffer).
    fn start_send(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        debug_assert!(!slot.send && slot.out.inflight.is_empty());
        std::mem::swap(&mut slot.out.output, &mut slot.out.inflight);
        slot.out.sent = 0;
        self.submit_send(index);
    }

    /// Sends the not yet sent rest of `inflight`.
    fn submit_send(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let rest = &slot.out.inflight[slot.out.sent..];
        let len = rest.len().min(MAX_OP_LEN) as u32;
        let entry = opcode::Send::new(types::Fd(slot.raw_fd()), rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(encode(Op::Send, index as u32, slot.gen));
        slot.send = true;
        // SAFETY: `inflight` is never exposed to the caller and is only modified in `on_send`,
        // after this send's completion cleared `send`; the slot is not recycled (and Drop does
        // not return) while `send` is set.
        unsafe { self.push(&entry) };
    }

    /// Starts sending whatever comes next (a segment, else the output), unless something is
    /// in flight. Returns true if everything is sent and nothing is in flight.
    fn pump(&mut self, index: usize) -> bool {
        loop {
            let slot = &mut self.slots[index];
            if slot.send || slot.splice.is_some() {
                return false;
            }
            match slot.out.segments.pop_front() {
                Some(Segment::Bytes(mut bytes)) => {
                    if bytes.is_empty() {
                        continue;
                    }
                    std::mem::swap(&mut slot.out.inflight, &mut bytes);
                    slot.out.sent = 0;
                    self.submit_send(index);
                    return false;
                }
                Some(Segment::File { len: 0, .. }) => continue, // the file is closed here
                Some(Segment::File { file, offset, len }) => {
                    let pipe = match self.pipes.pop() {
                        Some(p) => p,
                        None => match Pipe::new() {
                            Ok(p) => p,
                            Err(e) => {
                                tracing::warn!("send_file: no pipe ({e}); closing the connection");
                                self.finish(index);
                                return false;
                            }
                        },
                    };
                    self.slots[index].file = Some(FileSend {
                        file,
                        offset,
                        remaining: len,
                        in_pipe: 0,
                        pipe,
                    });
                    self.submit_splice(index, Op::SpliceIn);
                    return false;
                }
                None if !slot.out.output.is_empty() => {
                    self.start_send(index);
                    return false;
                }
                None => return true,
            }
        }
    }

    /// Submits the next splice of the connection's current file: `SpliceIn` (file → pipe, up
    /// to the pipe's size) or `SpliceOut` (everything in the pipe → socket).
    fn submit_splice(&mut self, index: usize, op: Op) {
        let slot = &mut self.slots[index];
        let sock = slot.raw_fd();
        let Some(f) = slot.file.as_ref() else {
            return;
        };
        let entry = if op == Op::SpliceIn {
            let len = f.remaining.min(f.pipe.size as u64) as u32;
            let Ok(off) = i64::try_from(f.offset) else {
                // Past what any file can hold: same as a short file.
                self.fail(index, -libc::EINVAL);
                return;
            };
            opcode::Splice::new(
                types::Fd(f.file.as_raw_fd()),
                off,
                types::Fd(f.pipe.write.as_raw_fd()),
                -1,
                len,
            )
            .flags(libc::SPLICE_F_MOVE)
        } else {
            let more = if f.remaining > 0 {
                libc::SPLICE_F_MORE
            } else {
                0
            };
            opcode::Splice::new(
                types::Fd(f.pipe.read.as_raw_fd()),
                -1,
                types::Fd(sock),
                -1,
                f.in_pipe.min(MAX_OP_LEN) as u32,
            )
            .flags(libc::SPLICE_F_MOVE | more)
        };
        let entry = entry.build().user_data(encode(op, index as u32, slot.gen));
        slot.splice = Some(op);
        // SAFETY: a splice references no memory, only fds: the file and the pipe (owned by
        // `slot.file`) and the socket (`slot.fd`) are closed only when the slot is finalized or
        // the file segment completes, both of which happen only after this splice's completion
        // cleared `splice` (the slot is busy meanwhile; Drop waits for it too).
        unsafe { self.push(&entry) };
    }

    fn on_splice(&mut self, index: usize, op: Op, res: i32) {
        let slot = &mut self.slots[index];
        slot.splice = None;
        if !matches!(slot.state, State::Open | State::Flushing) || slot.file.is_none() {
            self.advance(index);
            return;
        }
        if res == -libc::EINTR {
            self.submit_splice(index, op);
            return;
        }
        if res <= 0 {
            if op == Op::SpliceIn && res == 0 {
                tracing::debug!("connection {index}: send_file: file shorter than its length");
            }
            self.fail(index, if res == 0 { -libc::EPIPE } else { res });
            return;
        }
        let n = res as usize;
        let Some(f) = slot.file.as_mut() else { return };
        let next = if op == Op::SpliceIn {
            f.offset += n as u64;
            f.remaining = f.remaining.saturating_sub(n as u64);
            f.in_pipe += n;
            Some(Op::SpliceOut)
        } else {
            f.in_pipe = f.in_pipe.saturating_sub(n);
            if f.in_pipe > 0 {
                Some(Op::SpliceOut)
            } else if f.remaining > 0 {
                Some(Op::SpliceIn)
            } else {
                None
            }
        };
        match next {
            Some(op) => self.submit_splice(index, op),
            None => {
                // The file is done: close it, give the (empty) pipe back, go on.
                if let Some(f) = slot.file.take() {
                    if self.pipes.len() < PIPE_POOL {
                        self.pipes.push(f.pipe);
                    }
                }
                self.slots[index].out.notify = true;
                self.advance(index);
            }
        }
    }

    fn submit_shutdown(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let entry = opcode::Shutdown::new(types::Fd(slot.raw_fd()), libc::SHUT_WR)
            .build()
            .user_data(encode(Op::Shutdown, index as u32, slot.gen));
        slot.shutdown = true;
        slot.state = State::ShuttingDown;
        // SAFETY: shutdown references no memory; the fd stays open until the slot is finished,
        // which waits for this completion.
        unsafe { self.push(&entry) };
    }

    /// Moves a connection to `Finishing`: drops unsent output, cancels in-flight receive and
    /// send, and finalizes at once if nothing is in flight.
    fn finish(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if matches!(slot.state, State::Finishing | State::Closed | State::Free) {
            return;
        }
        slot.state = State::Finishing;
        slot.out.output.clear();
        slot.out.segments.clear(); // closes queued files (not kernel-visible yet)
        let (recv, send, splice, gen) = (slot.recv, slot.send, slot.splice, slot.gen);
        if recv {
            self.cancel(encode(Op::Recv, index as u32, gen));
        }
        if send {
            self.cancel(encode(Op::Send, index as u32, gen));
        }
        if let Some(op) = splice {
            self.cancel(encode(op, index as u32, gen));
        }
        self.advance(index);
    }

    /// Closes the fd and reports `Closed`; the slot is recycled at the next `wait`
    /// (`release`). Only with nothing in flight.
    fn finalize(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        debug_assert!(!slot.busy());
        slot.fd = None;
        let conn = ConnId::new(index as u32, slot.gen);
        slot.state = State::Closed;
        slot.out.reset(BUFFER_KEEP);
        // A file still being sent: its pipe may hold data, so it is closed, not pooled.
        slot.file = None;
        self.released.push(index as u32);
        self.open -= 1;
        self.ready.push(Event::Closed { conn });
    }

    /// Recycles the slots whose `Closed` was handed out by the previous `wait`.
    fn release(&mut self) {
        for index in std::mem::take(&mut self.released) {
            self.recycle(index as usize);
        }
    }

    fn recycle(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        debug_assert!(slot.state == State::Closed && !slot.busy());
        slot.state = State::Free;
        slot.gen = (slot.gen + 1) & GEN_MASK;
        slot.input.clear();
        if slot.input.capacity() > BUFFER_KEEP {
            slot.input.shrink_to(INPUT_INITIAL);
        }
        // Calls after `Closed` may have queued something: it is dropped.
        slot.out.reset(BUFFER_KEEP);
        slot.eof = false;
        slot.drained = 0;
        slot.ticks = 0;
        self.free.push(index as u32);
    }

    /// Queues whatever the connection's state calls for next.
    fn advance(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        match slot.state {
            State::Free | State::Closed | State::ShuttingDown => {}
            State::Open => {
                if self.pump(index) {
                    let slot = &mut self.slots[index];
                    if std::mem::take(&mut slot.out.notify) {
                        let conn = ConnId::new(index as u32, slot.gen);
                        self.ready.push(Event::Sent { conn });
                    }
                }
            }
            // Flushing with a send or splice in flight: its completion advances again.
            State::Flushing => {
                if self.pump(index) {
                    self.submit_shutdown(index);
                }
            }
            State::Draining => {
                if slot.eof || slot.drained >= DRAIN_LIMIT {
                    self.finish(index);
                } else if !slot.recv {
                    slot.input.clear();
                    self.arm_recv(index);
                }
            }
            State::Finishing => {
                if !slot.busy() {
                    self.finalize(index);
                }
            }
        }
    }

    fn on_recv(&mut self, index: usize, res: i32) {
        let slot = &mut self.slots[index];
        slot.recv = false;
        match slot.state {
            State::Open if res >= 0 => {
                let spare = slot.input.capacity() - slot.input.len();
                let n = (res as usize).min(spare);
                // SAFETY: the kernel wrote `n` bytes into the spare capacity this receive was
                // given (`n` is clamped to it; the capacity did not change while `recv` was set).
                unsafe { slot.input.set_len(slot.input.len() + n) };
                let conn = ConnId::new(index as u32, slot.gen);
                self.ready.push(Event::Received { conn, n });
            }
            State::Open => self.fail(index, res),
            // Closing: received bytes are discarded (never made part of the input).
            State::Flushing | State::ShuttingDown | State::Draining if res < 0 => {
                self.finish(index)
            }
            State::Flushing | State::ShuttingDown | State::Draining => {
                if res == 0 {
                    slot.eof = true;
                }
                slot.drained += res as usize;
                self.advance(index);
            }
            State::Finishing | State::Closed | State::Free => self.advance(index),
        }
    }

    fn on_send(&mut self, index: usize, res: i32) {
        let slot = &mut self.slots[index];
        slot.send = false;
        if !matches!(slot.state, State::Open | State::Flushing) {
            self.advance(index);
            return;
        }
        if res <= 0 {
            // 0 bytes for a non-empty send would loop forever: treat it as a dead peer.
            self.fail(index, if res == 0 { -libc::EPIPE } else { res });
            return;
        }
        slot.out.sent += res as usize;
        if slot.out.sent < slot.out.inflight.len() {
            self.submit_send(index);
            return;
        }
        slot.out.inflight.clear();
        slot.out.sent = 0;
        slot.out.notify = true;
        self.advance(index);
    }

    fn on_shutdown(&mut self, index: usize, res: i32) {
        let slot = &mut self.slots[index];
        slot.shutdown = false;
        if slot.state == State::ShuttingDown {
            if res < 0 {
                self.finish(index);
                return;
            }
            slot.state = State::Draining;
            slot.ticks = 0;
        }
        self.advance(index);
    }

    fn fail(&mut self, index: usize, res: i32) {
        tracing::debug!(
            "connection {index}: {} (closing)",
            io::Error::from_raw_os_error(-res)
        );
        self.finish(index);
    }

    // ----- write_file -----

    /// Submits the not yet written rest of write `id`.
    fn submit_write(&mut self, id: u32) {
        let Some(w) = self.writes.get(id as usize).and_then(Option::as_ref) else {
            return;
        };
        let rest = &w.data[w.done..];
        let entry = opcode::Write::new(
            types::Fd(w.file.as_raw_fd()),
            rest.as_ptr(),
            rest.len().min(MAX_OP_LEN) as u32,
        )
        .offset(w.offset + w.done as u64)
        .build()
        .user_data(encode(Op::Write, id, 0));
        // SAFETY: `rest` points into the entry's `data` and the fd is the entry's `Arc<File>`;
        // the entry stays in `writes`, unmodified, until this write's completion (`on_write` or
        // `retire`): nothing else removes it, connections closing do not touch it, and Drop
        // waits for it (or leaks `writes` if the ring fails).
        unsafe { self.push(&entry) };
    }

    /// Removes write `id` from the table.
    fn take_write(&mut self, id: u32) -> Option<FileWrite> {
        let w = self.writes.get_mut(id as usize)?.take()?;
        self.free_writes.push(id);
        self.writes_inflight -= 1;
        Some(w)
    }

    fn on_write(&mut self, id: u32, res: i32) {
        let Some(w) = self.writes.get_mut(id as usize).and_then(Option::as_mut) else {
            tracing::error!("io_uring: completion for unknown write {id} (ignored)");
            return;
        };
        let result = match res {
            n if n > 0 => {
                w.done += n as usize;
                if w.done < w.data.len() {
                    return self.submit_write(id);
                }
                Ok(w.done)
            }
            n if n == -libc::EINTR => return self.submit_write(id),
            0 => Err(libc::EIO), // no progress on a non-empty write: give up, do not spin
            n => Err(-n),
        };
        let Some(w) = self.take_write(id) else { return };
        let conn = w.conn;
        drop(w); // the data and this reference to the file
        if slots::live(&self.slots, conn).is_some_and(|s| s.state == State::Open) {
            self.ready.push(Event::FileWritten { conn, result });
        }
    }

    fn complete(&mut self, c: Cqe) {
        let (op, index, gen) = decode(c.user_data);
        let op = match op {
            Some(Op::Write) => return self.on_write(index, c.result),
            Some(Op::Accept) => return self.on_accept(index, c),
            Some(Op::Wake) => return self.on_wake(c),
            Some(Op::Timeout) => return self.on_timeout(c),
            Some(Op::CancelAccept) => {
                if let Some(listener) = self.listeners.get_mut(index as usize) {
                    if c.result == -libc::EALREADY && listener.accept == Accept::Cancelling {
                        listener.recancel = true;
                    }
                }
                return;
            }
            Some(Op::Cancel) => return,
            None => return,
            Some(op) => op,
        };
        let index = index as usize;
        match self.slots.get(index) {
            Some(s) if s.gen == gen && !matches!(s.state, State::Free | State::Closed) => {}
            _ => {
                tracing::error!(
                    "io_uring: completion {op:?} for a recycled slot {index} (ignored)"
                );
                return;
            }
        }
        match op {
            Op::Recv => self.on_recv(index, c.result),
            Op::Send => self.on_send(index, c.result),
            Op::Shutdown => self.on_shutdown(index, c.result),
            Op::SpliceIn | Op::SpliceOut => self.on_splice(index, op, c.result),
            _ => {}
        }
    }

    /// Processes every reaped completion (including ones reaped while processing).
    fn process(&mut self) {
        loop {
            let mut batch = std::mem::take(&mut self.cqes);
            if batch.is_empty() {
                self.cqes = batch;
                return;
            }
            for c in batch.drain(..) {
                self.complete(c);
            }
            batch.append(&mut self.cqes);
            self.cqes = batch;
        }
    }

    fn run_todo(&mut self) {
        let mut todo = std::mem::take(&mut self.todo);
        for &index in &todo {
            self.slots[index as usize].queued = false;
            self.advance(index as usize);
        }
        todo.clear();
        todo.append(&mut self.todo);
        // Anything enqueued while advancing is looked at next round.
        self.todo = todo;
    }

    // ----- shutdown -----

    /// Whether any op that references memory or an fd of ours is still in flight.
    fn outstanding(&self) -> bool {
        self.listeners.iter().any(Listener::in_flight)
            || self.wake_armed
            || self.timeout_armed
            || self.writes_inflight > 0
            || self.slots.iter().any(Slot::busy)
    }

    /// Records a completion during Drop: only clears in-flight flags (and closes accepted fds).
    fn retire(&mut self, c: Cqe) {
        let (op, index, gen) = decode(c.user_data);
        match op {
            Some(Op::Accept) => {
                if c.result >= 0 {
                    // SAFETY: a new fd from a successful accept, owned by nobody: closed here.
                    drop(unsafe { OwnedFd::from_raw_fd(c.result) });
                }
                if let Some(listener) = self.listeners.get_mut(index as usize) {
                    if !cqueue::more(c.flags) {
                        listener.accept = Accept::Idle;
                    }
                }
            }
            Some(Op::Wake) => self.wake_armed = false,
            Some(Op::Timeout) => self.timeout_armed = false,
            // Partly written or not: tearing down, the data is dropped with the entry.
            Some(Op::Write) => drop(self.take_write(index)),
            Some(op @ (Op::Recv | Op::Send | Op::Shutdown | Op::SpliceIn | Op::SpliceOut)) => {
                if let Some(slot) = self.slots.get_mut(index as usize).filter(|s| s.gen == gen) {
                    match op {
                        Op::Recv => slot.recv = false,
                        Op::Send => slot.send = false,
                        Op::Shutdown => slot.shutdown = false,
                        _ => slot.splice = None,
                    }
                }
            }
            Some(Op::Cancel | Op::CancelAccept) | None => {}
        }
    }
}

impl Transport for Uring {
    fn enters(&self) -> u64 {
        self.enters
    }

    fn wait(&mut self, events: &mut Vec<Event>) -> io::Result<()> {
        self.woken = false;
        self.release();
        loop {
            if let Some(e) = self.fatal.take() {
                return Err(e);
            }
            self.run_todo();
            self.arm_background();
            if let Some(e) = self.fatal.take() {
                return Err(e);
            }
            // Events already there (e.g. `Closed` after `abort`): submit without blocking.
            let want = usize::from(self.ready.is_empty() && self.cqes.is_empty());
            self.enter(want)?;
            self.reap();
            self.process();
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
            let file = s.file.as_ref().map_or(0, |f| {
                usize::try_from(f.remaining)
                    .unwrap_or(usize::MAX)
                    .saturating_add(f.in_pipe)
            });
            s.out.pending(file)
        })
    }

    fn receive(&mut self, conn: ConnId) {
        if slots::live(&self.slots, conn).is_some_and(|s| s.state == State::Open && !s.recv) {
            self.arm_recv(conn.index());
        }
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(slot) = slots::live_mut(&mut self.slots, conn) {
            if slot.state == State::Open {
                // An in-flight receive is kept and reused for the draining.
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
        if data.is_empty() {
            self.ready.push(Event::FileWritten {
                conn,
                result: Ok(0),
            });
            return;
        }
        let w = FileWrite {
            conn,
            file: Arc::clone(file),
            offset,
            data,
            done: 0,
        };
        let id = match self.free_writes.pop() {
            Some(id) => {
                self.writes[id as usize] = Some(w);
                id
            }
            None => {
                self.writes.push(Some(w));
                (self.writes.len() - 1) as u32
            }
        };
        self.writes_inflight += 1;
        self.submit_write(id);
    }

    fn stop_accepting(&mut self) {
        self.accepting = Accepting::Stopped;
        self.cancel_accepts();
    }

    fn pause_accepting(&mut self) {
        if self.accepting.pause() {
            self.cancel_accepts();
        }
    }

    fn resume_accepting(&mut self) {
        // Re-armed by the next `wait` once the accept is `Idle` (a cancelled one must have
        // delivered its final completion first: never two in flight).
        self.accepting.resume();
    }

    fn connections(&self) -> usize {
        self.open
    }

    fn waker(&self) -> Waker {
        Waker::new(self.wake_fd.clone())
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // 1. Cancel everything in flight (pushed SQEs not yet submitted go out first).
        self.fatal = self.broken.then(|| io::Error::other("ring failed earlier"));
        for index in 0..self.listeners.len() {
            if self.listeners[index].in_flight() {
                // Again for `Cancelling`: harmless (ENOENT) if the first cancel worked.
                self.cancel(encode(Op::Accept, index as u32, 0));
            }
        }
        if self.wake_armed {
            self.cancel(encode(Op::Wake, 0, 0));
        }
        if self.timeout_armed {
            self.cancel(encode(Op::Timeout, 0, 0));
        }
        for index in 0..self.slots.len() {
            let (recv, send, splice, gen) = {
                let s = &self.slots[index];
                (s.recv, s.send, s.splice, s.gen)
            };
            if recv {
                self.cancel(encode(Op::Recv, index as u32, gen));
            }
            if send {
                self.cancel(encode(Op::Send, index as u32, gen));
            }
            if let Some(op) = splice {
                self.cancel(encode(op, index as u32, gen));
            }
        }
        for id in 0..self.writes.len() as u32 {
            if self.writes[id as usize].is_some() {
                self.cancel(encode(Op::Write, id, 0));
            }
        }
        // 2. Wait for every outstanding completion before any buffer is freed.
        let mut failures = 0;
        while !self.broken && self.outstanding() && self.fatal.is_none() {
            if let Err(e) = self.ring.submitter().submit_and_wait(1) {
                if !retryable(&e) || failures > 1000 {
                    self.fatal = Some(e);
                    break;
                }
                failures += 1;
            }
            self.reap();
            for c in std::mem::take(&mut self.cqes) {
                self.retire(c);
            }
        }
        if let Some(e) = self.fatal.take() {
            // The kernel may still write into our buffers: leak them rather than free them.
            tracing::error!("io_uring teardown failed ({e}); leaking in-flight buffers");
            std::mem::forget(std::mem::take(&mut self.slots));
            std::mem::forget(std::mem::take(&mut self.writes));
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
            std::mem::forget(std::mem::replace(
                &mut self.timespec,
                Box::new(types::Timespec::new()),
            ));
        }
        // 3. Fields drop now: connection fds, listeners, eventfd, then the ring.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::conformance::{client, run, server, suite, Harness, Pinger};
    use crate::io::Peer;
    use std::io::Read;
    use std::os::fd::IntoRawFd;
    use std::thread;

    impl Harness for Uring {
        fn serve(listeners: Vec<OwnedFd>) -> Self {
            Uring::new(listeners, 256).unwrap()
        }

        fn accept_settled(&self) -> bool {
            self.listeners
                .iter()
                .all(|l| l.accept != Accept::Cancelling)
        }

        fn pooled_pipes(&self) -> Option<usize> {
            // A pooled pipe is usable: at least the default size.
            assert!(self.pipes.iter().all(|p| p.size >= 64 * 1024));
            Some(self.pipes.len())
        }

        fn writes_in_flight(&self) -> usize {
            self.writes_inflight
        }
    }

    suite!(Uring);

    #[test]
    fn fast_ring_flags_on_this_kernel() {
        let (u, _) = server::<Uring>();
        assert!(u.ring.params().is_setup_single_issuer());
    }

    #[test]
    fn user_data_roundtrip() {
        let ud = encode(Op::Send, 123_456, 0xAB_CDEF);
        assert_eq!(decode(ud), (Some(Op::Send), 123_456, 0xAB_CDEF));
        assert_eq!(decode(0).0, None);
    }

    #[test]
    fn accept_completion_after_pause_is_still_reported() {
        // A completion carrying an accepted fd that is reaped after the cancel was requested
        // (already in the CQ, or the accept raced the cancel) is adopted, not dropped; the
        // accept stays `Cancelling` until its final completion and is not re-armed before.
        let (mut u, addr) = server::<Uring>();
        let _ping = Pinger::new(&u);
        run(&mut u, 10, |_, ev| ev == Event::Woken);
        u.pause_accepting();
        u.resume_accepting();
        assert_eq!(u.listeners[0].accept, Accept::Cancelling);
        // A real connected socket (from another listener), as the kernel would hand it over.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = client(other.local_addr().unwrap());
        let (sock, _) = other.accept().unwrap();
        const CQE_F_MORE: u32 = 1 << 1;
        u.cqes.push(Cqe {
            user_data: encode(Op::Accept, 0, 0),
            result: sock.into_raw_fd(),
            flags: CQE_F_MORE,
        });
        let mut events = Vec::new();
        u.wait(&mut events).unwrap();
        let conn = match events.as_slice() {
            [Event::Accepted { conn, peer }, ..] => {
                assert_eq!(*peer, Peer::Tcp(c.local_addr().unwrap()));
                *conn
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(u.connections(), 1);
        // Then the cancel's final completion, then exactly one new accept.
        run(&mut u, 10, |u, _| u.listeners[0].accept == Accept::Armed);
        // The adopted connection works.
        u.output(conn).extend_from_slice(b"hi");
        u.close(conn);
        let reader = thread::spawn(move || {
            let mut c = c;
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            got
        });
        let _c2 = client(addr);
        let mut closed = false;
        let mut accepted = 0;
        run(&mut u, 10, |_, ev| {
            match ev {
                Event::Accepted { .. } => accepted += 1,
                Event::Closed { conn: gone } => closed = gone == conn,
                _ => {}
            }
            closed && accepted == 1
        });
        assert_eq!(reader.join().unwrap(), b"hi");
    }
}
