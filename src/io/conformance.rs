//! The transport contract, checked over real sockets: each test here is generic over a
//! [`Harness`] (a `Transport` the test can build) and instantiated for `Uring` and `Epoll` by
//! [`suite!`] in their own test modules, so both keep the same semantics.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::{adopt_listener, bind_reuseport, bind_unix, ConnId, Event, Peer, Transport};

/// A transport under test, with a look at internals the contract leaves open.
pub(super) trait Harness: Transport + Sized {
    fn serve(listeners: Vec<OwnedFd>) -> Self;
    /// No accept is still on its way out after a pause or stop (`Uring`: its cancelled
    /// accepts have completed).
    fn accept_settled(&self) -> bool {
        true
    }
    /// Empty pipes pooled for later `send_file`s, for a transport that splices through pipes.
    fn pooled_pipes(&self) -> Option<usize> {
        None
    }
    /// `write_file`s not yet completed (0 for a transport that writes at once).
    fn writes_in_flight(&self) -> usize {
        0
    }
    /// Of 20 connections to a listener shared by two idle loops, the fewest each must take.
    /// Strict turns give about 10; epoll wakes whichever loop waits at that moment, so under
    /// load (tests running in parallel) it only promises that neither loop is left out.
    const TURNS_AT_LEAST: usize = 5;
}

pub(super) fn server<T: Harness>() -> (T, SocketAddr) {
    let listener = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
    let addr = listener.local_addr().unwrap();
    (T::serve(vec![listener.into()]), addr)
}

pub(super) fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Drives `u` until `f` returns true; panics after `secs` seconds.
pub(super) fn run<T: Transport>(u: &mut T, secs: u64, mut f: impl FnMut(&mut T, Event) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut events = Vec::new();
    while Instant::now() < deadline {
        events.clear();
        u.wait(&mut events).unwrap();
        for &ev in &events {
            if f(u, ev) {
                return;
            }
        }
    }
    panic!("test loop timed out");
}

/// Echo server (closes on EOF) until `done` returns true for an event; returns the
/// connections accepted.
fn echo_until<T: Transport>(u: &mut T, secs: u64, mut done: impl FnMut(Event) -> bool) -> usize {
    let mut accepted = 0;
    run(u, secs, |u, ev| {
        match ev {
            Event::Accepted { conn, .. } => {
                accepted += 1;
                u.receive(conn);
            }
            Event::Received { conn, n: 0 } => u.close(conn),
            Event::Received { conn, .. } => {
                let (i, o) = u.buffers(conn);
                o.extend_from_slice(i);
                i.clear();
                u.receive(conn);
            }
            _ => {}
        }
        done(ev)
    });
    accepted
}

/// Echo server until `closed` connections were reported `Closed`. Closes on EOF.
fn echo<T: Transport>(u: &mut T, closed: usize, secs: u64) {
    let mut n_closed = 0;
    echo_until(u, secs, |ev| {
        n_closed += usize::from(matches!(ev, Event::Closed { .. }));
        n_closed == closed
    });
}

pub(super) fn echo_and_peer_address<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let t = thread::spawn(move || {
        let mut s = client(addr);
        let local = s.local_addr().unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        s.write_all(b"wor").unwrap();
        s.write_all(b"ld").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"world");
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        local
    });
    let mut peer = None;
    let mut closed = false;
    run(&mut u, 10, |u, ev| {
        match ev {
            Event::Accepted { conn, peer: p } => {
                peer = Some(p);
                assert_eq!(u.connections(), 1);
                u.receive(conn);
            }
            Event::Received { conn, n: 0 } => u.close(conn),
            Event::Received { conn, n } => {
                assert_eq!(u.input(conn).len(), n);
                let (i, o) = u.buffers(conn);
                o.extend_from_slice(i);
                i.clear();
                u.receive(conn);
            }
            Event::Closed { .. } => closed = true,
            _ => {}
        }
        closed
    });
    assert_eq!(peer, Some(Peer::Tcp(t.join().unwrap())));
    assert_eq!(u.connections(), 0);
}

pub(super) fn pipelined_writes_accumulate<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let expected: Vec<u8> = (0..200u32)
        .flat_map(|i| format!("GET /{i} HTTP/1.1\r\n\r\n").into_bytes())
        .collect();
    let payload = expected.clone();
    let t = thread::spawn(move || {
        let mut s = client(addr);
        for chunk in payload.chunks(37) {
            s.write_all(chunk).unwrap();
        }
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
    });
    let mut got = Vec::new();
    let mut rounds = 0;
    run(&mut u, 10, |u, ev| match ev {
        Event::Accepted { conn, .. } => {
            u.receive(conn);
            false
        }
        Event::Received { conn, n: 0 } => {
            u.close(conn);
            false
        }
        Event::Received { conn, n } => {
            rounds += 1;
            let input = u.input(conn);
            assert_eq!(input.len(), n);
            got.extend_from_slice(input);
            input.drain(..n);
            u.receive(conn);
            false
        }
        Event::Closed { .. } => true,
        _ => false,
    });
    t.join().unwrap();
    assert_eq!(got, expected);
    assert!(rounds >= 1);
}

pub(super) fn large_output_partial_sends_then_close<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let body: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let expected = body.clone();
    let t = thread::spawn(move || {
        let mut s = client(addr);
        // Junk the server never reads: close() must drain it instead of sending a RST.
        s.write_all(&vec![b'x'; 100 * 1024]).unwrap();
        thread::sleep(Duration::from_millis(200)); // let the socket buffers fill
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let mut saw_pending = 0;
    run(&mut u, 20, |u, ev| match ev {
        Event::Accepted { conn, .. } => {
            u.output(conn).extend_from_slice(&body);
            saw_pending = u.pending_output(conn);
            u.close(conn);
            false
        }
        Event::Closed { .. } => true,
        Event::Tick => false,
        other => panic!("unexpected event after close: {other:?}"),
    });
    assert_eq!(saw_pending, body.len());
    let got = t.join().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "response corrupted");
}

pub(super) fn sent_reported_and_output_appendable_while_sending<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let t = thread::spawn(move || {
        let mut s = client(addr);
        thread::sleep(Duration::from_millis(100));
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let big = 32 * 1024 * 1024;
    let mut appended = false;
    let mut sent = 0;
    run(&mut u, 20, |u, ev| match ev {
        Event::Accepted { conn, .. } => {
            u.output(conn).resize(big, b'a');
            u.waker().wake(); // next round: the send goes out, then Woken
            false
        }
        Event::Woken => {
            // The send is in flight now; appending is still allowed.
            let conn = ConnId::new(0, 0);
            assert!(u.pending_output(conn) > 0);
            u.output(conn).extend_from_slice(b"xyz");
            appended = true;
            false
        }
        Event::Tick => false,
        Event::Sent { conn } => {
            assert!(appended, "Sent before the appended bytes went out");
            assert_eq!(u.pending_output(conn), 0);
            sent += 1;
            u.close(conn);
            false
        }
        Event::Closed { .. } => true,
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(sent, 1);
    let got = t.join().unwrap();
    assert_eq!(got.len(), big + 3);
    assert!(got[..big].iter().all(|&b| b == b'a'));
    assert_eq!(&got[big..], b"xyz");
}

pub(super) fn peer_reset_mid_send_gives_one_closed<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let t = thread::spawn(move || {
        let mut s = client(addr);
        let mut buf = [0u8; 1000];
        s.read_exact(&mut buf).unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s); // RST
    });
    let mut closed = 0;
    let mut the_conn = None;
    run(&mut u, 20, |u, ev| {
        match ev {
            Event::Accepted { conn, .. } => {
                the_conn = Some(conn);
                u.output(conn).resize(16 * 1024 * 1024, b'z');
                u.receive(conn);
            }
            Event::Closed { conn } => {
                assert_eq!(Some(conn), the_conn);
                closed += 1;
            }
            // The RST may first surface on the receive as EOF or as an error.
            Event::Received { conn, n } => {
                assert_eq!(n, 0);
                u.receive(conn);
            }
            Event::Sent { .. } => panic!("Sent after a reset"),
            _ => {}
        }
        closed == 1
    });
    t.join().unwrap();
    // A couple more rounds: nothing else for that connection.
    let mut events = Vec::new();
    for _ in 0..2 {
        u.wait(&mut events).unwrap();
    }
    assert!(
        events
            .iter()
            .all(|e| matches!(e, Event::Tick | Event::Woken)),
        "{events:?}"
    );
    assert_eq!(u.connections(), 0);
    // Calls on the dead id are no-ops.
    let conn = the_conn.unwrap();
    u.receive(conn);
    u.close(conn);
    u.abort(conn);
    assert_eq!(u.pending_output(conn), 0);
}

pub(super) fn abort_with_ops_in_flight<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let t = thread::spawn(move || {
        let mut s = client(addr);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
    });
    let mut accepted = None;
    run(&mut u, 10, |u, ev| match ev {
        Event::Accepted { conn, .. } => {
            accepted = Some(conn);
            u.receive(conn);
            u.output(conn).resize(8 * 1024 * 1024, b'q');
            u.waker().wake();
            false
        }
        Event::Woken => {
            let conn = accepted.unwrap();
            u.abort(conn);
            u.abort(conn);
            false
        }
        Event::Closed { conn } => {
            assert_eq!(Some(conn), accepted);
            true
        }
        // A client reading fast may take all 8 MiB before the wake is seen (epoll writes in
        // the same round); the abort then finds nothing in flight, which must work too.
        Event::Tick | Event::Sent { .. } => false,
        other => panic!("unexpected {other:?}"),
    });
    t.join().unwrap();
    assert_eq!(u.connections(), 0);
}

pub(super) fn waker_from_another_thread_and_tick<T: Harness>() {
    let (mut u, _addr) = server::<T>();
    let w = u.waker();
    w.wake(); // before the first wait: reported at the first round
    let start = Instant::now();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        w.wake();
        w.wake();
        w.wake();
    });
    let mut events = Vec::new();
    while !events.contains(&Event::Woken) {
        assert!(start.elapsed() < Duration::from_secs(5));
        u.wait(&mut events).unwrap();
    }
    assert_eq!(events.iter().filter(|e| **e == Event::Woken).count(), 1);
    t.join().unwrap();
    events.clear();
    while !events.contains(&Event::Tick) {
        assert!(start.elapsed() < Duration::from_secs(5));
        u.wait(&mut events).unwrap();
    }
}

pub(super) fn stop_accepting_keeps_listener_open<T: Harness>() {
    // Stopped before the first round: nothing is ever accepted.
    let (mut u, addr) = server::<T>();
    u.stop_accepting();
    // The kernel still completes handshakes into the backlog: the listener is open.
    let _c = client(addr);
    no_accept_for_ticks(&mut u, 2);
    assert_eq!(u.connections(), 0);

    // Stopped while the multishot accept is armed: later connections stay in the backlog.
    let (mut u, addr) = server::<T>();
    let _c1 = client(addr);
    run(&mut u, 10, |_, ev| matches!(ev, Event::Accepted { .. }));
    u.stop_accepting();
    u.waker().wake();
    run(&mut u, 10, |_, ev| ev == Event::Woken); // the cancel went through
    let _c2 = client(addr);
    no_accept_for_ticks(&mut u, 1);
    assert_eq!(u.connections(), 1);
}

/// Runs the loop for `ticks` ticks, failing on any `Accepted`.
fn no_accept_for_ticks<T: Transport>(u: &mut T, ticks: usize) {
    let mut seen = 0;
    run(u, 10, |_, ev| {
        match ev {
            Event::Accepted { .. } => panic!("accepted after stop_accepting"),
            Event::Tick => seen += 1,
            _ => {}
        }
        seen == ticks
    });
}

/// Wakes `u` every 10 ms from a helper thread (so `wait()` returns often) until dropped.
pub(super) struct Pinger {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Pinger {
    pub(super) fn new(u: &impl Transport) -> Pinger {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (w, s) = (u.waker(), stop.clone());
        let thread = thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                w.wake();
                thread::sleep(Duration::from_millis(10));
            }
        });
        Pinger {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.take().unwrap().join();
    }
}

/// Runs rounds for `ms` milliseconds; panics on `Accepted`.
fn none_accepted_for<T: Transport>(u: &mut T, ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    let mut events = Vec::new();
    while Instant::now() < until {
        events.clear();
        u.wait(&mut events).unwrap();
        for ev in &events {
            assert!(
                !matches!(ev, Event::Accepted { .. }),
                "accepted while paused: {ev:?}"
            );
        }
    }
}

pub(super) fn pause_keeps_connections_in_backlog_until_resume<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let _ping = Pinger::new(&u);
    run(&mut u, 10, |_, ev| ev == Event::Woken); // accepting
    u.pause_accepting();
    u.pause_accepting(); // idempotent
    run(&mut u, 10, |u, _| u.accept_settled());
    let mut c = client(addr); // connect succeeds thanks to the backlog
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    none_accepted_for(&mut u, 300);
    assert_eq!(u.connections(), 0);

    u.resume_accepting();
    u.resume_accepting(); // idempotent
    let mut got = Vec::new();
    let mut the_conn = None;
    run(&mut u, 10, |u, ev| {
        match ev {
            Event::Accepted { conn, .. } => {
                assert!(the_conn.is_none(), "accepted twice");
                the_conn = Some(conn);
                u.receive(conn);
            }
            Event::Received { conn, n } => {
                assert!(n > 0);
                got.extend_from_slice(u.input(conn));
                u.input(conn).clear();
                u.receive(conn);
            }
            _ => {}
        }
        got.len() == 18
    });
    assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(u.connections(), 1);
}

pub(super) fn pause_before_first_wait_and_pause_resume_between_waits<T: Harness>() {
    // Paused before the accept was ever armed: nothing armed, nothing cancelled.
    let (mut u, addr) = server::<T>();
    let _ping = Pinger::new(&u);
    u.pause_accepting();
    let _c1 = client(addr);
    none_accepted_for(&mut u, 300);
    u.resume_accepting();
    run(&mut u, 10, |_, ev| matches!(ev, Event::Accepted { .. }));

    // Pause and resume with no wait in between: the cancelled accept finishes first, then
    // a single new one is armed (never two in flight), and it accepts.
    u.pause_accepting();
    u.resume_accepting();
    run(&mut u, 10, |u, _| u.accept_settled());
    let _c2 = client(addr);
    run(&mut u, 10, |_, ev| matches!(ev, Event::Accepted { .. }));
    assert_eq!(u.connections(), 2);
}

pub(super) fn resume_after_stop_does_nothing<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let _ping = Pinger::new(&u);
    run(&mut u, 10, |_, ev| ev == Event::Woken);
    u.pause_accepting();
    u.stop_accepting();
    u.resume_accepting();
    u.pause_accepting();
    u.resume_accepting();
    run(&mut u, 10, |u, _| u.accept_settled());
    let _c = client(addr);
    none_accepted_for(&mut u, 300);
    assert_eq!(u.connections(), 0);
}

pub(super) fn connections_accepted_just_before_pause_are_reported<T: Harness>() {
    // Clients connect in a burst; the server pauses right after the first `Accepted`, so
    // some accepts may already sit in the CQ (or be in progress) when the cancel goes out.
    // Each must still be reported, once; the rest wait for `resume_accepting`.
    for _ in 0..20 {
        let (mut u, addr) = server::<T>();
        let _ping = Pinger::new(&u);
        run(&mut u, 10, |_, ev| ev == Event::Woken);
        let clients = thread::spawn(move || (0..16).map(|_| client(addr)).collect::<Vec<_>>());
        let (mut accepted, mut events) = (0, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        while accepted == 0 {
            assert!(Instant::now() < deadline);
            events.clear();
            u.wait(&mut events).unwrap();
            accepted += events
                .iter()
                .filter(|e| matches!(e, Event::Accepted { .. }))
                .count();
        }
        u.pause_accepting();
        let _clients = clients.join().unwrap();
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until || !u.accept_settled() {
            events.clear();
            u.wait(&mut events).unwrap();
            accepted += events
                .iter()
                .filter(|e| matches!(e, Event::Accepted { .. }))
                .count();
        }
        assert_eq!(accepted, u.connections());
        u.resume_accepting();
        if accepted < 16 {
            run(&mut u, 10, |_, ev| {
                accepted += usize::from(matches!(ev, Event::Accepted { .. }));
                accepted == 16
            });
        }
        none_accepted_for(&mut u, 30);
        assert_eq!(u.connections(), 16);
    }
}

pub(super) fn adopted_listener_accepts<T: Harness>() {
    let listener = bind_reuseport("127.0.0.1:0".parse().unwrap(), 128).unwrap();
    let addr = listener.local_addr().unwrap();
    let dup = listener.as_fd().try_clone_to_owned().unwrap();
    drop(listener);
    let mut u = T::serve(vec![adopt_listener(dup.into_raw_fd()).unwrap()]);
    let t = thread::spawn(move || {
        let mut s = client(addr);
        s.write_all(b"ping").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    echo(&mut u, 1, 10);
    assert_eq!(t.join().unwrap(), b"ping");
}

/// A unix socket path of its own for test `name` of transport `T` (both transports' tests run
/// at once in one process).
fn socket_path<T>(name: &str) -> PathBuf {
    let transport = std::any::type_name::<T>().rsplit("::").next().unwrap();
    let path = std::env::temp_dir().join(format!(
        "ringwsgi-{name}-{transport}-{}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

pub(super) fn accepts_on_every_listener_and_pauses_them_all<T: Harness>() {
    let tcp = bind_reuseport("127.0.0.1:0".parse().unwrap(), 128).unwrap();
    let addr = tcp.local_addr().unwrap();
    let path = socket_path::<T>("listeners");
    let unix = bind_unix(&path, 128).unwrap();
    let mut u = T::serve(vec![tcp.into(), unix]);
    let mut peers = Vec::new();
    let _tcp_client = client(addr);
    let _unix_client = UnixStream::connect(&path).unwrap();
    run(&mut u, 10, |_, ev| {
        if let Event::Accepted { peer, .. } = ev {
            peers.push(peer);
        }
        peers.len() == 2
    });
    assert!(peers.contains(&Peer::Unix));
    assert!(peers.iter().any(|p| matches!(p, Peer::Tcp(_))));
    u.pause_accepting();
    run(&mut u, 10, |u, _| u.accept_settled());
    let _late_tcp = client(addr);
    let _late_unix = UnixStream::connect(&path).unwrap();
    none_accepted_for(&mut u, 50);
    u.resume_accepting();
    let mut late = 0;
    run(&mut u, 10, |_, ev| {
        late += usize::from(matches!(ev, Event::Accepted { .. }));
        late == 2
    });
    std::fs::remove_file(&path).unwrap();
}

pub(super) fn idle_loops_take_turns_on_a_shared_listener<T: Harness>() {
    // A unix socket (no SO_REUSEPORT) shared by two loops, each through its own dup, as
    // worker threads share one: even with one client at a time, both loops accept.
    let path = socket_path::<T>("shared");
    let shared = bind_unix(&path, 128).unwrap();
    let stop = AtomicBool::new(false);
    let (wakers_tx, wakers) = mpsc::channel();
    let counts: Vec<usize> = thread::scope(|scope| {
        let loops: Vec<_> = (0..2)
            .map(|_| {
                let (fd, wakers_tx, stop) = (shared.try_clone().unwrap(), wakers_tx.clone(), &stop);
                scope.spawn(move || {
                    let mut u = T::serve(vec![fd]);
                    wakers_tx.send(u.waker()).unwrap();
                    echo_until(&mut u, 60, |_| stop.load(Ordering::Acquire))
                })
            })
            .collect();
        let wakers: Vec<_> = wakers.iter().take(2).collect();
        for _ in 0..20 {
            let mut c = UnixStream::connect(&path).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(b"ping").unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"ping");
        }
        stop.store(true, Ordering::Release);
        wakers.iter().for_each(|w| w.wake());
        loops.into_iter().map(|l| l.join().unwrap()).collect()
    });
    std::fs::remove_file(&path).unwrap();
    assert_eq!(counts.iter().sum::<usize>(), 20);
    // One loop first in line would take (nearly) all.
    assert!(
        counts.iter().all(|&n| n >= T::TURNS_AT_LEAST),
        "the loops did not take turns: {counts:?}"
    );
}

/// Pseudo-random bytes (xorshift), reproducible from `seed`.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A temporary file holding `content`, already unlinked, opened read-write.
fn temp_file(content: &[u8]) -> File {
    use std::io::Write;
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(content).unwrap();
    f
}

/// A client that reads everything until EOF (after `delay`).
fn reader(addr: SocketAddr, delay: Duration) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut s = client(addr);
        thread::sleep(delay);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    })
}

pub(super) fn send_file_10mib_between_queued_bytes<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let content = random_bytes(10 * 1024 * 1024, 7);
    let mut file = Some(temp_file(&content));
    let t = reader(addr, Duration::from_millis(100));
    let (mut sent, mut appended_while_splicing) = (0, false);
    run(&mut u, 30, |u, ev| match ev {
        Event::Accepted { conn, .. } => {
            u.output(conn).extend_from_slice(b"before|");
            u.send_file(conn, file.take().unwrap(), 0, content.len() as u64);
            assert_eq!(u.pending_output(conn), 7 + content.len());
            u.output(conn).extend_from_slice(b"|after");
            u.waker().wake();
            false
        }
        Event::Woken => {
            // The file is under way now; later output still goes after it.
            let conn = ConnId::new(0, 0);
            assert!(u.pending_output(conn) > 0);
            u.output(conn).extend_from_slice(b"|later");
            appended_while_splicing = true;
            false
        }
        Event::Sent { conn } => {
            assert!(appended_while_splicing);
            assert_eq!(u.pending_output(conn), 0);
            sent += 1;
            u.close(conn);
            false
        }
        Event::Closed { .. } => true,
        Event::Tick => false,
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(sent, 1);
    let got = t.join().unwrap();
    assert_eq!(got.len(), 7 + content.len() + 12);
    assert_eq!(&got[..7], b"before|");
    assert!(
        got[7..7 + content.len()] == content[..],
        "file bytes corrupted"
    );
    assert_eq!(&got[7 + content.len()..], b"|after|later");
    // The pipe went back to the pool.
    assert!(u.pooled_pipes().is_none_or(|n| n == 1));
}

pub(super) fn send_file_ranges_back_to_back<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let content = random_bytes(4 * 1024 * 1024 + 99, 11);
    let file = temp_file(&content);
    let ranges = [
        (12_345u64, 3 * 1024 * 1024 + 7),
        (0, 10),
        (content.len() as u64 - 5, 5),
        (77, 0),
    ];
    let t = reader(addr, Duration::ZERO);
    let mut sent = 0;
    run(&mut u, 30, |u, ev| match ev {
        Event::Accepted { conn, .. } => {
            for (i, &(off, len)) in ranges.iter().enumerate() {
                u.output(conn)
                    .extend_from_slice(format!("<{i}>").as_bytes());
                u.send_file(conn, file.try_clone().unwrap(), off, len as u64);
            }
            false
        }
        Event::Sent { conn } => {
            sent += 1;
            u.close(conn);
            false
        }
        Event::Closed { .. } => true,
        Event::Tick => false,
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(sent, 1);
    let mut expected = Vec::new();
    for (i, &(off, len)) in ranges.iter().enumerate() {
        expected.extend_from_slice(format!("<{i}>").as_bytes());
        expected.extend_from_slice(&content[off as usize..(off + len as u64) as usize]);
    }
    let got = t.join().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "range bytes corrupted");
    // One pipe served every file of the connection.
    assert!(u.pooled_pipes().is_none_or(|n| n == 1));
}

pub(super) fn send_file_zero_length_alone_still_reports_sent<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let file = temp_file(b"abc");
    let t = reader(addr, Duration::ZERO);
    let mut file = Some(file);
    let mut sent = 0;
    run(&mut u, 10, |u, ev| match ev {
        Event::Accepted { conn, .. } => {
            u.send_file(conn, file.take().unwrap(), 0, 0);
            false
        }
        Event::Sent { conn } => {
            sent += 1;
            u.close(conn);
            false
        }
        Event::Closed { .. } => true,
        _ => false,
    });
    assert_eq!(sent, 1);
    assert!(t.join().unwrap().is_empty());
}

pub(super) fn send_file_short_file_closes_with_truncated_body<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let content = random_bytes(100 * 1024 + 3, 5);
    let mut file = Some(temp_file(&content));
    let t = reader(addr, Duration::ZERO);
    let mut closed = 0;
    run(&mut u, 10, |u, ev| {
        match ev {
            Event::Accepted { conn, .. } => {
                u.output(conn).extend_from_slice(b"head");
                // Declares 1 MiB, the file has ~100 KiB.
                u.send_file(conn, file.take().unwrap(), 0, 1024 * 1024);
                u.output(conn).extend_from_slice(b"never sent");
            }
            Event::Closed { .. } => closed += 1,
            Event::Tick => {}
            other => panic!("unexpected {other:?}"),
        }
        closed == 1
    });
    let got = t.join().unwrap(); // EOF, not a hang
    assert_eq!(&got[..4], b"head");
    assert!(got[4..] == content[..], "truncated body differs");
    // Nothing else for the dead connection afterwards.
    let mut events = Vec::new();
    u.wait(&mut events).unwrap();
    assert!(events
        .iter()
        .all(|e| matches!(e, Event::Tick | Event::Woken)));
    assert_eq!(u.connections(), 0);
    // A pipe that may hold data is closed, never pooled.
    assert!(u.pooled_pipes().is_none_or(|n| n == 0));
}

pub(super) fn send_file_on_closing_or_dead_connection_just_closes_the_file<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let t = reader(addr, Duration::ZERO);
    let mut the_conn = None;
    run(&mut u, 10, |u, ev| match ev {
        Event::Accepted { conn, .. } => {
            the_conn = Some(conn);
            u.abort(conn);
            u.send_file(conn, temp_file(b"x"), 0, 1);
            false
        }
        Event::Closed { .. } => true,
        other => panic!("unexpected {other:?}"),
    });
    u.send_file(the_conn.unwrap(), temp_file(b"y"), 0, 1); // dead id: no panic
    t.join().unwrap();
}

/// A connected client kept open (the server side is what matters).
fn connected<T: Transport>(u: &mut T, addr: SocketAddr) -> (TcpStream, ConnId) {
    let c = client(addr);
    let mut id = None;
    run(u, 10, |_, ev| match ev {
        Event::Accepted { conn, .. } => {
            id = Some(conn);
            true
        }
        _ => false,
    });
    (c, id.unwrap())
}

pub(super) fn write_file_8mib_in_64k_pieces_several_in_flight<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let (_c, conn) = connected(&mut u, addr);
    let content = random_bytes(8 * 1024 * 1024, 3);
    let file = Arc::new(temp_file(b""));
    const PIECE: usize = 64 * 1024;
    let pieces = content.len() / PIECE;
    let mut next = 0;
    let issue = |u: &mut T, next: &mut usize| {
        let off = *next * PIECE;
        u.write_file(conn, &file, off as u64, content[off..off + PIECE].to_vec());
        *next += 1;
    };
    while next < 8 {
        issue(&mut u, &mut next);
    }
    // Written at once, or all 8 under way.
    let async_writes = u.writes_in_flight() > 0;
    assert!(!async_writes || u.writes_in_flight() == 8);
    let mut done = 0;
    let mut max_in_flight = 0;
    run(&mut u, 30, |u, ev| {
        if let Event::FileWritten { conn: c, result } = ev {
            assert_eq!(c, conn);
            assert_eq!(result, Ok(PIECE));
            done += 1;
            if next < pieces {
                issue(u, &mut next);
            }
            max_in_flight = max_in_flight.max(u.writes_in_flight());
        }
        done == pieces
    });
    assert_eq!(u.writes_in_flight(), 0);
    assert!(!async_writes || max_in_flight >= 2);
    let mut got = vec![0u8; content.len() + 1];
    use std::os::unix::fs::FileExt;
    let n = file.read_at(&mut got, 0).unwrap();
    assert_eq!(n, content.len());
    assert!(got[..n] == content[..], "file content differs");
    // An empty write and a failing one (read-only fd: EBADF) are reported too.
    u.write_file(conn, &file, 0, Vec::new());
    let ro = Arc::new(File::open("/proc/self/exe").unwrap());
    u.write_file(conn, &ro, 0, vec![1, 2, 3]);
    let mut results = Vec::new();
    run(&mut u, 10, |_, ev| {
        if let Event::FileWritten { result, .. } = ev {
            results.push(result);
        }
        results.len() == 2
    });
    results.sort();
    assert_eq!(results, vec![Ok(0), Err(libc::EBADF)]);
}

pub(super) fn write_file_connection_closed_meanwhile<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let (c, conn) = connected(&mut u, addr);
    let content = random_bytes(4 * 1024 * 1024, 9);
    let file = Arc::new(temp_file(b""));
    for (i, piece) in content.chunks(64 * 1024).enumerate() {
        u.write_file(conn, &file, (i * 64 * 1024) as u64, piece.to_vec());
    }
    // Each write still under way holds the file.
    assert_eq!(Arc::strong_count(&file), 1 + u.writes_in_flight());
    u.abort(conn);
    run(&mut u, 10, |_, ev| match ev {
        Event::Closed { .. } => true,
        Event::FileWritten { .. } => panic!("FileWritten after abort"),
        _ => false,
    });
    // The writes still complete; their buffers and fd references go once they did.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = Vec::new();
    while u.writes_in_flight() > 0 {
        assert!(Instant::now() < deadline);
        events.clear();
        u.waker().wake();
        u.wait(&mut events).unwrap();
        assert!(!events
            .iter()
            .any(|e| matches!(e, Event::FileWritten { .. })));
    }
    assert_eq!(Arc::strong_count(&file), 1);
    let mut got = vec![0u8; content.len()];
    use std::os::unix::fs::FileExt;
    file.read_exact_at(&mut got, 0).unwrap();
    assert!(got == content);
    drop(c);

    // Dropping the transport with writes in flight waits for them.
    let (mut u, addr) = server::<T>();
    let (_c, conn) = connected(&mut u, addr);
    for (i, piece) in content.chunks(64 * 1024).enumerate() {
        u.write_file(conn, &file, (i * 64 * 1024) as u64, piece.to_vec());
    }
    u.waker().wake();
    let mut events = Vec::new();
    u.wait(&mut events).unwrap(); // submitted
    drop(u);
    assert_eq!(Arc::strong_count(&file), 1);
}

pub(super) fn calls_before_closed_is_handled_do_not_panic<T: Harness>() {
    // Events that precede `Closed` in one batch (say `Received` or `FileWritten`, then a
    // send failure in the same round) are handled while the connection is already gone.
    let (mut u, addr) = server::<T>();
    let (_c, conn) = connected(&mut u, addr);
    u.abort(conn); // nothing in flight: `Closed` is queued at once
    u.output(conn).extend_from_slice(b"dropped");
    u.input(conn).clear();
    let _ = u.buffers(conn);
    u.receive(conn);
    u.send_file(conn, temp_file(b"x"), 0, 1);
    u.write_file(conn, &Arc::new(temp_file(b"")), 0, vec![1]);
    u.close(conn);
    u.abort(conn);
    let mut events = Vec::new();
    u.wait(&mut events).unwrap();
    assert_eq!(events, vec![Event::Closed { conn }]);
    // The slot is reused from the next round on, clean, under a new generation.
    let (_c2, conn2) = connected(&mut u, addr);
    assert_eq!(conn2.index(), conn.index());
    assert_ne!(conn2, conn);
    assert_eq!(u.pending_output(conn2), 0);
    assert!(u.input(conn2).is_empty());
    assert_eq!(u.pending_output(conn), 0);
}

pub(super) fn drop_with_ops_in_flight_does_not_hang<T: Harness>() {
    let (mut u, addr) = server::<T>();
    let clients: Vec<TcpStream> = (0..5).map(|_| client(addr)).collect();
    let mut accepted = 0;
    run(&mut u, 10, |u, ev| {
        if let Event::Accepted { conn, .. } = ev {
            accepted += 1;
            u.receive(conn);
            u.output(conn).resize(8 * 1024 * 1024, b'd');
            u.waker().wake();
        }
        ev == Event::Woken && accepted == 5
    });
    let start = Instant::now();
    drop(u);
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(clients);
}

/// One `#[test]` per contract test above, for the transport `$t` (a `Harness`).
macro_rules! suite {
    ($t:ty) => {
        $crate::io::conformance::suite!(@tests $t: echo_and_peer_address, pipelined_writes_accumulate, large_output_partial_sends_then_close, sent_reported_and_output_appendable_while_sending, peer_reset_mid_send_gives_one_closed, abort_with_ops_in_flight, waker_from_another_thread_and_tick, stop_accepting_keeps_listener_open, pause_keeps_connections_in_backlog_until_resume, pause_before_first_wait_and_pause_resume_between_waits, resume_after_stop_does_nothing, connections_accepted_just_before_pause_are_reported, accepts_on_every_listener_and_pauses_them_all, idle_loops_take_turns_on_a_shared_listener, adopted_listener_accepts, send_file_10mib_between_queued_bytes, send_file_ranges_back_to_back, send_file_zero_length_alone_still_reports_sent, send_file_short_file_closes_with_truncated_body, send_file_on_closing_or_dead_connection_just_closes_the_file, write_file_8mib_in_64k_pieces_several_in_flight, write_file_connection_closed_meanwhile, calls_before_closed_is_handled_do_not_panic, drop_with_ops_in_flight_does_not_hang);
    };
    (@tests $t:ty: $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                $crate::io::conformance::$name::<$t>();
            }
        )*
    };
}
pub(super) use suite;
