//! `Memory`: an in-process `Transport` without sockets, for unit tests and criterion benches.
//! The test plays the peer (`connect`, `push_input`, `push_eof`, `take_output`); the worker code
//! under test drives it exactly like `Uring`. `wait()` never blocks: with nothing to report it
//! returns `Tick`. Close semantics match `Uring`: after `close`/`abort` no event but the one
//! `Closed` is reported for the connection. `send_file` reads the file range at once (pread)
//! into the output, in order; `write_file` pwrites at once and reports `FileWritten` at the
//! next `wait()`. `pause_accepting`/`stop_accepting` make `connect` hold new connections in a
//! backlog (the peer may already push bytes); `resume_accepting` reports them `Accepted`.

use std::collections::VecDeque;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::{ConnId, Event, Peer, Transport, Waker};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Unused slot.
    Free,
    /// Connected while accepting was paused/stopped: not yet reported `Accepted` (the caller
    /// cannot use the id yet; the peer can push input and EOF).
    Backlog,
    Open,
    /// `close` was called: output is flushed at the next `wait`, then `Closed`.
    Closing,
    /// `Closed` was queued/reported; the slot is kept until `take_output` collected what was sent.
    Closed,
}

#[derive(Debug)]
struct Slot {
    gen: u32,
    state: State,
    input: Vec<u8>,
    output: Vec<u8>,
    sent: Vec<u8>,
    /// Peer bytes not yet delivered (no receive armed when they were pushed).
    pending: Vec<u8>,
    eof: bool,
    recv: bool,
    dirty: bool,
    /// A `send_file` happened: report `Sent` at the next `wait` even if the output is empty.
    notify: bool,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            gen: 0,
            state: State::Free,
            input: Vec::new(),
            output: Vec::new(),
            sent: Vec::new(),
            pending: Vec::new(),
            eof: false,
            recv: false,
            dirty: false,
            notify: false,
        }
    }
}

/// In-memory transport (see module docs).
pub struct Memory {
    slots: Vec<Slot>,
    free: Vec<u32>,
    queued: Vec<Event>,
    dirty: Vec<u32>,
    open: usize,
    /// `wait` calls so far (each stands for one kernel entry).
    enters: u64,
    /// Handed out by `waker()`; its eventfd is read only after a wake.
    waker: Waker,
    wake: Arc<EventFd>,
    paused: bool,
    stopped: bool,
    /// Connections waiting to be accepted (state `Backlog`), oldest first.
    backlog: VecDeque<(ConnId, SocketAddr)>,
}

impl Default for Memory {
    fn default() -> Self {
        Memory::new()
    }
}

impl Memory {
    /// An empty transport. Panics only if no eventfd can be created (for tests and benches).
    pub fn new() -> Memory {
        let wake: Arc<EventFd> = Arc::new(
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .expect("eventfd for Memory transport"),
        );
        Memory {
            slots: Vec::new(),
            free: Vec::new(),
            queued: Vec::new(),
            dirty: Vec::new(),
            open: 0,
            enters: 0,
            waker: Waker::new(wake.clone()),
            wake,
            paused: false,
            stopped: false,
            backlog: VecDeque::new(),
        }
    }

    /// A new connection from `peer`: queues `Accepted`, or, while accepting is paused or
    /// stopped, keeps it in the backlog (`Accepted` follows `resume_accepting`).
    pub fn connect(&mut self, peer: SocketAddr) -> ConnId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::new());
                (self.slots.len() - 1) as u32
            }
        };
        let conn = ConnId::new(index, self.slots[index as usize].gen);
        if self.paused || self.stopped {
            self.slots[index as usize].state = State::Backlog;
            self.backlog.push_back((conn, peer));
        } else {
            self.accept(conn, peer);
        }
        conn
    }

    /// Connections waiting in the backlog (connected while paused/stopped, not yet `Accepted`).
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    fn accept(&mut self, conn: ConnId, peer: SocketAddr) {
        self.slots[conn.index()].state = State::Open;
        self.open += 1;
        self.queued.push(Event::Accepted {
            conn,
            peer: Peer::Tcp(peer),
        });
    }

    /// The peer's side of a connection: open or still in the backlog.
    fn peer_mut(&mut self, conn: ConnId) -> Option<&mut Slot> {
        self.slots
            .get_mut(conn.index())
            .filter(|s| s.gen == conn.gen() && matches!(s.state, State::Open | State::Backlog))
    }

    /// The peer sends `bytes`: delivered at once if a receive is armed (`Received`), otherwise
    /// buffered until `receive`. Ignored once the connection is closing or dead.
    pub fn push_input(&mut self, conn: ConnId, bytes: &[u8]) {
        let Some(slot) = self.peer_mut(conn) else {
            return;
        };
        if slot.eof {
            return;
        }
        if slot.recv && !bytes.is_empty() {
            slot.recv = false;
            slot.input.extend_from_slice(bytes);
            self.queued.push(Event::Received {
                conn,
                n: bytes.len(),
            });
        } else {
            slot.pending.extend_from_slice(bytes);
        }
    }

    /// The peer half-closes: every later receive (after buffered bytes) yields `Received { n: 0 }`.
    pub fn push_eof(&mut self, conn: ConnId) {
        let Some(slot) = self.peer_mut(conn) else {
            return;
        };
        slot.eof = true;
        if slot.recv && slot.pending.is_empty() {
            slot.recv = false;
            self.queued.push(Event::Received { conn, n: 0 });
        }
    }

    /// Everything sent so far on `conn` (and forgets it). Works after `Closed` too, once.
    pub fn take_output(&mut self, conn: ConnId) -> Vec<u8> {
        let Some(slot) = self.live_mut(conn) else {
            return Vec::new();
        };
        let out = std::mem::take(&mut slot.sent);
        if slot.state == State::Closed {
            self.release(conn.index);
        }
        out
    }

    /// True once `Closed` was queued for `conn` (or the id is stale); false while in the backlog.
    pub fn is_closed(&self, conn: ConnId) -> bool {
        match self.slots.get(conn.index()) {
            Some(s) if s.gen == conn.gen() => matches!(s.state, State::Closed | State::Free),
            _ => true,
        }
    }

    /// Whether a receive is armed on `conn` (handy in tests).
    pub fn receive_armed(&self, conn: ConnId) -> bool {
        self.live(conn).is_some_and(|s| s.recv)
    }

    /// The caller's view: a backlog connection is not live yet (its id was never reported).
    fn live(&self, conn: ConnId) -> Option<&Slot> {
        self.slots
            .get(conn.index())
            .filter(|s| s.gen == conn.gen() && !matches!(s.state, State::Free | State::Backlog))
    }

    fn live_mut(&mut self, conn: ConnId) -> Option<&mut Slot> {
        self.slots
            .get_mut(conn.index())
            .filter(|s| s.gen == conn.gen() && !matches!(s.state, State::Free | State::Backlog))
    }

    fn live_or_panic(&mut self, conn: ConnId, what: &str) -> &mut Slot {
        match self.live_mut(conn) {
            Some(s) => s,
            None => panic!("ringwsgi io: {what}({conn:?}) on a dead connection id (caller bug)"),
        }
    }

    fn mark_dirty(&mut self, conn: ConnId) {
        let slot = &mut self.slots[conn.index()];
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(conn.index);
        }
    }

    fn finish(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        slot.state = State::Closed;
        slot.recv = false;
        slot.input.clear();
        slot.output.clear();
        slot.pending.clear();
        self.open -= 1;
        self.queued.push(Event::Closed {
            conn: ConnId::new(index, slot.gen),
        });
        if slot.sent.is_empty() {
            self.release(index);
        }
    }

    fn release(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        slot.state = State::Free;
        slot.gen = slot.gen.wrapping_add(1);
        slot.eof = false;
        slot.notify = false;
        slot.sent.clear();
        slot.output.clear();
        self.free.push(index);
    }
}

impl Transport for Memory {
    fn enters(&self) -> u64 {
        self.enters
    }

    fn wait(&mut self, events: &mut Vec<Event>) -> std::io::Result<()> {
        self.enters += 1;
        let start = events.len();
        if self.waker.take_pending() && self.wake.read().is_ok() {
            events.push(Event::Woken);
        }
        // Events queued by the peer side; anything but `Closed` for a connection the caller
        // closed meanwhile is dropped (no event follows `close`).
        let slots = &self.slots;
        events.extend(self.queued.drain(..).filter(|e| match *e {
            Event::Accepted { conn, .. }
            | Event::Received { conn, .. }
            | Event::Sent { conn }
            | Event::FileWritten { conn, .. } => {
                slots[conn.index()].gen == conn.gen() && slots[conn.index()].state == State::Open
            }
            _ => true,
        }));
        // "Send" everything queued, then report Sent / Closed.
        let dirty = std::mem::take(&mut self.dirty);
        for &index in &dirty {
            let slot = &mut self.slots[index as usize];
            slot.dirty = false;
            let conn = ConnId::new(index, slot.gen);
            match slot.state {
                State::Open if !slot.output.is_empty() || slot.notify => {
                    slot.notify = false;
                    slot.sent.append(&mut slot.output);
                    events.push(Event::Sent { conn });
                }
                State::Closing => {
                    slot.sent.append(&mut slot.output);
                    self.finish(index);
                    events.append(&mut self.queued);
                }
                _ => {}
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
        if events.len() == start {
            events.push(Event::Tick);
        }
        Ok(())
    }

    fn input(&mut self, conn: ConnId) -> &mut Vec<u8> {
        let slot = self.live_or_panic(conn, "input");
        assert!(
            !slot.recv,
            "ringwsgi io: input({conn:?}) while a receive is in flight (caller bug)"
        );
        &mut slot.input
    }

    fn buffers(&mut self, conn: ConnId) -> (&mut Vec<u8>, &mut Vec<u8>) {
        self.mark_dirty_checked(conn, "buffers");
        let slot = self.live_or_panic(conn, "buffers");
        assert!(
            !slot.recv,
            "ringwsgi io: buffers({conn:?}) while a receive is in flight (caller bug)"
        );
        (&mut slot.input, &mut slot.output)
    }

    fn output(&mut self, conn: ConnId) -> &mut Vec<u8> {
        self.mark_dirty_checked(conn, "output");
        &mut self.live_or_panic(conn, "output").output
    }

    fn pending_output(&self, conn: ConnId) -> usize {
        self.live(conn).map_or(0, |s| s.output.len())
    }

    fn receive(&mut self, conn: ConnId) {
        let Some(slot) = self.live_mut(conn) else {
            return;
        };
        if slot.state != State::Open || slot.recv {
            return;
        }
        if !slot.pending.is_empty() {
            let n = slot.pending.len();
            slot.input.append(&mut slot.pending);
            self.queued.push(Event::Received { conn, n });
        } else if slot.eof {
            self.queued.push(Event::Received { conn, n: 0 });
        } else {
            slot.recv = true;
        }
    }

    fn close(&mut self, conn: ConnId) {
        let Some(slot) = self.live_mut(conn) else {
            return;
        };
        if slot.state != State::Open {
            return;
        }
        slot.state = State::Closing;
        slot.recv = false;
        self.mark_dirty(conn);
    }

    fn abort(&mut self, conn: ConnId) {
        let Some(slot) = self.live_mut(conn) else {
            return;
        };
        if !matches!(slot.state, State::Open | State::Closing) {
            return;
        }
        self.finish(conn.index);
    }

    fn send_file(&mut self, conn: ConnId, file: File, offset: u64, len: u64) {
        let Some(slot) = self.live_mut(conn) else {
            return;
        };
        if slot.state != State::Open && slot.state != State::Closing {
            return;
        }
        let want = usize::try_from(len).unwrap_or(usize::MAX);
        let start = slot.output.len();
        let mut done = 0usize;
        let short = loop {
            if done == want {
                break false;
            }
            let piece = (want - done).min(1 << 20);
            slot.output.resize(start + done + piece, 0);
            match file.read_at(&mut slot.output[start + done..], offset + done as u64) {
                Ok(0) | Err(_) => break true,
                Ok(n) => done += n,
            }
        };
        slot.output.truncate(start + done);
        slot.notify = true;
        self.mark_dirty(conn);
        if short {
            // Like `Uring`: what was read is sent, then the connection closes.
            let slot = &mut self.slots[conn.index()];
            slot.sent.append(&mut slot.output);
            self.finish(conn.index);
        }
    }

    fn write_file(&mut self, conn: ConnId, file: &Arc<File>, offset: u64, data: Vec<u8>) {
        if self.live(conn).is_none_or(|s| s.state != State::Open) {
            return;
        }
        let result = match file.write_all_at(&data, offset) {
            Ok(()) => Ok(data.len()),
            Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        self.queued.push(Event::FileWritten { conn, result });
    }

    fn stop_accepting(&mut self) {
        self.stopped = true;
    }

    fn pause_accepting(&mut self) {
        self.paused = true;
    }

    fn resume_accepting(&mut self) {
        if self.stopped {
            return;
        }
        self.paused = false;
        while let Some((conn, peer)) = self.backlog.pop_front() {
            self.accept(conn, peer);
        }
    }

    fn connections(&self) -> usize {
        self.open
    }

    fn waker(&self) -> Waker {
        self.waker.clone()
    }
}

impl Memory {
    fn mark_dirty_checked(&mut self, conn: ConnId, what: &str) {
        self.live_or_panic(conn, what);
        self.mark_dirty(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "10.0.0.1:4242".parse().unwrap()
    }

    fn round(m: &mut Memory) -> Vec<Event> {
        let mut ev = Vec::new();
        m.wait(&mut ev).unwrap();
        ev
    }

    #[test]
    fn accept_receive_echo() {
        let mut m = Memory::new();
        let c = m.connect(peer());
        assert_eq!(
            round(&mut m),
            vec![Event::Accepted {
                conn: c,
                peer: Peer::Tcp(peer())
            }]
        );
        assert_eq!(m.connections(), 1);
        // Bytes before a receive are buffered.
        m.push_input(c, b"hel");
        assert_eq!(round(&mut m), vec![Event::Tick]);
        m.receive(c);
        m.push_input(c, b"lo"); // not delivered: the receive already completed with "hel"
        assert_eq!(round(&mut m), vec![Event::Received { conn: c, n: 3 }]);
        assert_eq!(m.input(c), b"hel");
        m.receive(c);
        assert_eq!(round(&mut m), vec![Event::Received { conn: c, n: 2 }]);
        let (i, o) = m.buffers(c);
        o.extend_from_slice(i);
        i.clear();
        assert_eq!(m.pending_output(c), 5);
        assert_eq!(round(&mut m), vec![Event::Sent { conn: c }]);
        assert_eq!(m.take_output(c), b"hello");
        assert_eq!(m.pending_output(c), 0);
        m.receive(c);
        assert!(m.receive_armed(c));
        m.push_input(c, b"x");
        assert_eq!(round(&mut m), vec![Event::Received { conn: c, n: 1 }]);
        m.receive(c);
        m.push_eof(c);
        assert_eq!(round(&mut m), vec![Event::Received { conn: c, n: 0 }]);
        m.receive(c);
        assert_eq!(round(&mut m), vec![Event::Received { conn: c, n: 0 }]);
    }

    #[test]
    #[should_panic(expected = "receive is in flight")]
    fn input_while_receiving_panics() {
        let mut m = Memory::new();
        let c = m.connect(peer());
        m.receive(c);
        m.input(c);
    }

    #[test]
    fn close_flushes_then_closed_once() {
        let mut m = Memory::new();
        let c = m.connect(peer());
        round(&mut m);
        m.receive(c);
        m.output(c).extend_from_slice(b"bye");
        m.close(c);
        m.push_input(c, b"ignored");
        m.receive(c);
        assert_eq!(round(&mut m), vec![Event::Closed { conn: c }]);
        assert!(m.is_closed(c));
        assert_eq!(m.connections(), 0);
        assert_eq!(m.take_output(c), b"bye");
        assert_eq!(round(&mut m), vec![Event::Tick]);
        // The slot is reused with a new generation; the old id stays dead.
        let c2 = m.connect(peer());
        assert_eq!(c2.index(), c.index());
        assert_ne!(c2, c);
        assert!(m.is_closed(c));
        assert!(!m.is_closed(c2));
        m.close(c); // stale: no-op
        m.abort(c);
        assert_eq!(
            round(&mut m),
            vec![Event::Accepted {
                conn: c2,
                peer: Peer::Tcp(peer())
            }]
        );
    }

    #[test]
    fn abort_drops_output_and_pending_events() {
        let mut m = Memory::new();
        let c = m.connect(peer());
        m.receive(c);
        m.push_input(c, b"data"); // queued Received
        m.output(c).extend_from_slice(b"never");
        m.abort(c);
        assert_eq!(round(&mut m), vec![Event::Closed { conn: c }]);
        assert!(m.take_output(c).is_empty());
        assert_eq!(m.connections(), 0);
        m.abort(c);
        assert_eq!(round(&mut m), vec![Event::Tick]);
    }

    fn temp_file(content: &[u8]) -> File {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        f
    }

    #[test]
    fn send_file_in_order_and_ranges() {
        let mut m = Memory::new();
        let c = m.connect(peer());
        round(&mut m);
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let file = temp_file(&content);
        m.output(c).extend_from_slice(b"<");
        m.send_file(c, file.try_clone().unwrap(), 0, content.len() as u64);
        m.output(c).extend_from_slice(b"|");
        m.send_file(c, file, 1000, 10);
        m.output(c).extend_from_slice(b">");
        assert_eq!(round(&mut m), vec![Event::Sent { conn: c }]);
        let mut expected = b"<".to_vec();
        expected.extend_from_slice(&content);
        expected.extend_from_slice(b"|");
        expected.extend_from_slice(&content[1000..1010]);
        expected.extend_from_slice(b">");
        assert!(m.take_output(c) == expected);
        // Zero length with nothing queued: still one Sent.
        m.send_file(c, temp_file(b"abc"), 0, 0);
        assert_eq!(round(&mut m), vec![Event::Sent { conn: c }]);
        assert!(m.take_output(c).is_empty());
    }

    #[test]
    fn send_file_short_file_sends_what_exists_then_closes() {
        let mut m = Memory::new();
        let c = m.connect(peer());
        round(&mut m);
        m.output(c).extend_from_slice(b"head:");
        m.send_file(c, temp_file(b"only this"), 0, 1000);
        m.output(c).extend_from_slice(b"never"); // no panic, never sent
        assert_eq!(round(&mut m), vec![Event::Closed { conn: c }]);
        assert_eq!(m.take_output(c), b"head:only this");
        assert_eq!(round(&mut m), vec![Event::Tick]);
        m.send_file(c, temp_file(b"x"), 0, 1); // dead id: ignored
    }

    #[test]
    fn write_file_reports_next_round() {
        use std::os::unix::fs::FileExt;
        let mut m = Memory::new();
        let c = m.connect(peer());
        round(&mut m);
        let file = Arc::new(temp_file(b""));
        m.write_file(c, &file, 5, b"world".to_vec());
        m.write_file(c, &file, 0, b"hello".to_vec());
        assert_eq!(
            round(&mut m),
            vec![
                Event::FileWritten {
                    conn: c,
                    result: Ok(5)
                },
                Event::FileWritten {
                    conn: c,
                    result: Ok(5)
                }
            ]
        );
        let mut got = [0u8; 10];
        file.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(&got, b"helloworld");
        // An error is reported as errno.
        let ro = Arc::new(File::open("/proc/self/exe").unwrap());
        m.write_file(c, &ro, 0, vec![1]);
        assert_eq!(
            round(&mut m),
            vec![Event::FileWritten {
                conn: c,
                result: Err(libc::EBADF)
            }]
        );
        // Closed meanwhile: written, but no event.
        m.write_file(c, &file, 10, b"!".to_vec());
        m.abort(c);
        assert_eq!(round(&mut m), vec![Event::Closed { conn: c }]);
        let mut got = [0u8; 11];
        file.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(&got, b"helloworld!");
        assert_eq!(Arc::strong_count(&file), 1);
    }

    #[test]
    fn pause_holds_connections_until_resume() {
        let mut m = Memory::new();
        let a = m.connect(peer());
        m.pause_accepting();
        m.pause_accepting(); // idempotent
                             // Connected before the pause: still reported.
        assert_eq!(
            round(&mut m),
            vec![Event::Accepted {
                conn: a,
                peer: Peer::Tcp(peer())
            }]
        );
        let b = m.connect(peer());
        m.push_input(b, b"GET / HTTP/1.1\r\n\r\n"); // the peer may send before accept
        let c = m.connect(peer());
        m.push_input(c, b"x");
        m.push_eof(c);
        assert_eq!(m.backlog(), 2);
        assert_eq!(m.connections(), 1);
        assert!(!m.is_closed(b));
        // Not usable by the caller yet: operations are no-ops.
        m.receive(b);
        assert!(!m.receive_armed(b));
        m.close(b);
        m.abort(b);
        assert_eq!(m.pending_output(b), 0);
        for _ in 0..3 {
            assert_eq!(round(&mut m), vec![Event::Tick]);
        }
        m.resume_accepting();
        m.resume_accepting(); // idempotent
        assert_eq!(m.backlog(), 0);
        assert_eq!(m.connections(), 3);
        assert_eq!(
            round(&mut m),
            vec![
                Event::Accepted {
                    conn: b,
                    peer: Peer::Tcp(peer())
                },
                Event::Accepted {
                    conn: c,
                    peer: Peer::Tcp(peer())
                }
            ]
        );
        m.receive(b);
        m.receive(c);
        assert_eq!(
            round(&mut m),
            vec![
                Event::Received { conn: b, n: 18 },
                Event::Received { conn: c, n: 1 }
            ]
        );
        assert_eq!(m.input(b), b"GET / HTTP/1.1\r\n\r\n");
        m.receive(c);
        assert_eq!(round(&mut m), vec![Event::Received { conn: c, n: 0 }]);
        // Accepting again: a new connection is reported at once.
        let d = m.connect(peer());
        assert_eq!(
            round(&mut m),
            vec![Event::Accepted {
                conn: d,
                peer: Peer::Tcp(peer())
            }]
        );
    }

    #[test]
    fn pause_resume_many_times_each_accepted_once() {
        let mut m = Memory::new();
        let mut connected = Vec::new();
        let mut accepted = std::collections::HashSet::new();
        for i in 0..200 {
            if i % 3 == 0 {
                m.pause_accepting();
            }
            if i % 5 == 0 {
                m.resume_accepting();
            }
            connected.push(m.connect(peer()));
            for ev in round(&mut m) {
                if let Event::Accepted { conn, .. } = ev {
                    assert!(accepted.insert(conn), "{conn:?} accepted twice");
                }
            }
        }
        m.resume_accepting();
        for ev in round(&mut m) {
            if let Event::Accepted { conn, .. } = ev {
                assert!(accepted.insert(conn), "{conn:?} accepted twice");
            }
        }
        assert_eq!(accepted.len(), 200);
        assert!(connected.iter().all(|c| accepted.contains(c)));
        assert_eq!(m.connections(), 200);
    }

    #[test]
    fn stop_is_final() {
        let mut m = Memory::new();
        m.pause_accepting();
        m.stop_accepting();
        m.resume_accepting(); // does nothing after stop
        let a = m.connect(peer());
        m.stop_accepting(); // idempotent
        m.resume_accepting();
        assert_eq!(round(&mut m), vec![Event::Tick]);
        assert_eq!(m.backlog(), 1);
        assert_eq!(m.connections(), 0);
        assert!(!m.is_closed(a));
        // Stopped without a pause: the same.
        let mut m = Memory::new();
        m.stop_accepting();
        m.connect(peer());
        m.resume_accepting();
        assert_eq!(round(&mut m), vec![Event::Tick]);
    }

    #[test]
    fn waker_gives_one_woken() {
        let mut m = Memory::new();
        let w = m.waker();
        let t = std::thread::spawn(move || {
            w.wake();
            w.wake();
        });
        t.join().unwrap();
        assert_eq!(round(&mut m), vec![Event::Woken]);
        assert_eq!(round(&mut m), vec![Event::Tick]);
    }
}
