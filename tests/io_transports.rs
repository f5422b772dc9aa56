//! Process-wide checks of the socket transports (`Uring`, `Epoll`) that need a quiet process
//! (the fd count in /proc/self/fd), hence their own test binary, and one test at a time
//! (`QUIET`). Each check is generic over the transport and instantiated for both.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use std::net::TcpListener;

use ringwsgi::io::{bind_reuseport, Epoll, Event, Transport, Uring};

/// Held by each test: fd counts are only meaningful with nothing else running.
static QUIET: Mutex<()> = Mutex::new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// How many of our fds refer to a file whose path contains `name`.
fn fds_on(name: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|p| p.to_string_lossy().contains(name))
        .count()
}

fn no_fd_leak_over_200_connections<T: Transport>(serve: fn(TcpListener) -> T) {
    let _quiet = QUIET.lock().unwrap_or_else(|e| e.into_inner());
    let before = open_fds();
    {
        let listener = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut u = serve(listener);
        let clients = thread::spawn(move || {
            for i in 0..200 {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.write_all(format!("req {i}").as_bytes()).unwrap();
                if i % 3 == 0 {
                    s.shutdown(Shutdown::Write).unwrap();
                }
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got); // aborted ones may see a reset
            }
            // A few left open while the Uring is dropped with receives in flight.
            (0..5)
                .map(|_| TcpStream::connect(addr).unwrap())
                .collect::<Vec<_>>()
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut closed, mut accepted) = (0, 0);
        let mut events = Vec::new();
        while closed < 200 || accepted < 205 {
            assert!(
                Instant::now() < deadline,
                "timed out: {accepted} accepted, {closed} closed"
            );
            events.clear();
            u.wait(&mut events).unwrap();
            for &ev in &events {
                match ev {
                    Event::Accepted { conn, .. } => {
                        accepted += 1;
                        u.receive(conn);
                    }
                    Event::Received { conn, n } if n > 0 => {
                        let (i, o) = u.buffers(conn);
                        o.extend_from_slice(i);
                        i.clear();
                        // Alternate graceful close and abort.
                        if conn.index() % 2 == 0 {
                            u.close(conn);
                        } else {
                            u.abort(conn);
                        }
                    }
                    Event::Received { conn, .. } => u.close(conn),
                    Event::Closed { .. } => closed += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(u.connections(), 5);
        let open_clients = clients.join().unwrap();
        drop(u);
        drop(open_clients);
    }
    // Give the kernel nothing to do: all our fds are closed synchronously.
    assert_eq!(open_fds(), before);
}

fn peer_reset_during_send_file_one_closed_no_fd_leak<T: Transport>(serve: fn(TcpListener) -> T) {
    let _quiet = QUIET.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("ringwsgi-sendfile-reset-{}", std::process::id());
    let before = open_fds();
    {
        let path = std::env::temp_dir().join(&name);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let len = 48 * 1024 * 1024;
        file.write_all(&vec![0x5a; len]).unwrap();
        assert_eq!(fds_on(&name), 1);

        let listener = bind_reuseport("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut u = serve(listener);
        let peer = thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            s.read_exact(&mut buf).unwrap();
            assert!(buf[6..].iter().all(|&b| b == 0x5a));
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s); // RST while the file is being spliced
        });
        let mut file = Some(file);
        let (mut closed, mut the_conn) = (0, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut events = Vec::new();
        while closed == 0 {
            assert!(Instant::now() < deadline, "timed out");
            events.clear();
            u.wait(&mut events).unwrap();
            for &ev in &events {
                match ev {
                    Event::Accepted { conn, .. } => {
                        the_conn = Some(conn);
                        u.output(conn).extend_from_slice(b"head\r\n");
                        u.send_file(conn, file.take().unwrap(), 0, len as u64);
                        u.output(conn).extend_from_slice(b"tail");
                        u.receive(conn);
                    }
                    // The RST may first surface on the receive as EOF.
                    Event::Received { conn, n } => {
                        assert_eq!(n, 0);
                        u.receive(conn);
                    }
                    Event::Closed { conn } => {
                        assert_eq!(Some(conn), the_conn);
                        closed += 1;
                    }
                    Event::Tick => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        peer.join().unwrap();
        // The file is closed with the connection, before the transport goes.
        assert_eq!(fds_on(&name), 0);
        assert_eq!(u.connections(), 0);
        for _ in 0..2 {
            events.clear();
            u.wait(&mut events).unwrap();
            assert!(
                events
                    .iter()
                    .all(|e| matches!(e, Event::Tick | Event::Woken)),
                "{events:?}"
            );
        }
        drop(u);
    }
    assert_eq!(open_fds(), before);
}

fn pause_resume_many_times_each_client_accepted_once_no_fd_leak<T: Transport>(
    serve: fn(TcpListener) -> T,
) {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let _quiet = QUIET.lock().unwrap_or_else(|e| e.into_inner());
    const CLIENTS: usize = 300;
    let before = open_fds();
    {
        let listener = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut u = serve(listener);
        // Keeps `wait()` returning while paused (nothing else would for up to a second).
        let stop = Arc::new(AtomicBool::new(false));
        let pinger = {
            let (w, stop) = (u.waker(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    w.wake();
                    thread::sleep(Duration::from_millis(1));
                }
            })
        };
        // Clients connect throughout, a few at a time, each sending its number; they read the
        // echo only at the end (connect succeeds from the backlog while the server is paused).
        let clients = thread::spawn(move || {
            let mut streams = Vec::new();
            for i in 0..CLIENTS {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                s.write_all(format!("client {i}\n").as_bytes()).unwrap();
                streams.push((i, s));
                if i % 4 == 3 {
                    thread::sleep(Duration::from_millis(2));
                }
            }
            for (i, mut s) in streams {
                let mut got = String::new();
                s.read_to_string(&mut got).unwrap();
                assert_eq!(got, format!("client {i}\n"));
            }
        });

        let mut seen: HashMap<usize, usize> = HashMap::new();
        let (mut accepted, mut closed, mut rounds, mut toggles) = (0, 0, 0u64, 0);
        let mut paused = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut events = Vec::new();
        while closed < CLIENTS {
            assert!(
                Instant::now() < deadline,
                "timed out: {accepted} accepted, {closed} closed, {} distinct",
                seen.len()
            );
            // Flip between paused and accepting every few rounds, sometimes twice in a row
            // without a wait in between.
            rounds += 1;
            if rounds % 3 == 0 {
                if paused {
                    u.resume_accepting();
                } else {
                    u.pause_accepting();
                }
                paused = !paused;
                toggles += 1;
                if rounds % 7 == 0 {
                    u.pause_accepting();
                    u.resume_accepting();
                    paused = false;
                }
            }
            events.clear();
            u.wait(&mut events).unwrap();
            for &ev in &events {
                match ev {
                    Event::Accepted { conn, .. } => {
                        accepted += 1;
                        u.receive(conn);
                    }
                    Event::Received { conn, n } if n > 0 => {
                        let line = u.input(conn).clone();
                        if !line.ends_with(b"\n") {
                            u.receive(conn);
                            continue;
                        }
                        let text = String::from_utf8(line.clone()).unwrap();
                        let i: usize = text.trim_end()["client ".len()..].parse().unwrap();
                        *seen.entry(i).or_default() += 1;
                        u.input(conn).clear();
                        u.output(conn).extend_from_slice(&line);
                        u.close(conn);
                    }
                    Event::Received { conn, .. } => u.abort(conn),
                    Event::Closed { .. } => closed += 1,
                    _ => {}
                }
            }
        }
        assert!(toggles > 50, "only {toggles} pause/resume toggles");
        assert_eq!(accepted, CLIENTS);
        assert_eq!(seen.len(), CLIENTS);
        assert!(seen.values().all(|&n| n == 1), "a client was served twice");
        assert_eq!(u.connections(), 0);
        clients.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        pinger.join().unwrap();
        // Paused at the end or not, drop waits for the accept (cancelled) and closes everything.
        u.pause_accepting();
        drop(u);
    }
    assert_eq!(open_fds(), before);
}

/// The checks above as tests, for one transport.
macro_rules! transport_tests {
    ($module:ident, $serve:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn no_fd_leak_over_200_connections() {
                super::no_fd_leak_over_200_connections($serve);
            }

            #[test]
            fn peer_reset_during_send_file_one_closed_no_fd_leak() {
                super::peer_reset_during_send_file_one_closed_no_fd_leak($serve);
            }

            #[test]
            fn pause_resume_many_times_each_client_accepted_once_no_fd_leak() {
                super::pause_resume_many_times_each_client_accepted_once_no_fd_leak($serve);
            }
        }
    };
}

transport_tests!(uring, |l| Uring::new(vec![l.into()], 256).unwrap());
transport_tests!(epoll, |l| Epoll::new(vec![l.into()]).unwrap());
