//! Process-wide checks of the io_uring transport that need a quiet process (the fd count in
//! /proc/self/fd), hence a single test in its own test binary.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ringwsgi::io::{bind_reuseport, Event, Transport, Uring};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn no_fd_leak_over_200_connections() {
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
