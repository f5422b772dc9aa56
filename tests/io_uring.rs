//! Process-wide checks of the io_uring transport that need a quiet process (the fd count in
//! /proc/self/fd), hence their own test binary, and one test at a time (`QUIET`).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use ringwsgi::io::{bind_reuseport, Event, Transport, Uring};

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

#[test]
fn no_fd_leak_over_200_connections() {
    let _quiet = QUIET.lock().unwrap_or_else(|e| e.into_inner());
    let before = open_fds();
    {
        let listener = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut u = Uring::new(listener, 256).unwrap();
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

#[test]
fn peer_reset_during_send_file_one_closed_no_fd_leak() {
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
        let mut u = Uring::new(listener, 64).unwrap();
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
