//! A graceful stop (SIGTERM) driven through the in-memory transport: which responses say
//! `Connection: close`, when idle connections close, when the loop ends.

use std::time::Duration;

use ringwsgi::worker::in_memory::{with_in_memory_worker, InMemoryWorker};

const APP: &str = r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["PATH_INFO"].encode()]
"#;

const GET_A: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
const GET_B: &[u8] = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n";

fn with_worker(f: impl FnOnce(&mut InMemoryWorker<'_>) + Send) {
    with_in_memory_worker(APP, "drainapp:app", f);
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn pipelined_requests_read_after_the_stop_end_with_connection_close() {
    with_worker(|w| {
        let conn = w.connect();
        w.begin_graceful_stop();
        w.rounds(2);
        let mut both = GET_A.to_vec();
        both.extend_from_slice(GET_B);
        let out = text(&w.exchange(conn, &both));
        let (first, second) = out.split_once("\r\n\r\n/a").expect("two responses");
        assert!(!first.contains("Connection: close"), "{out}");
        assert!(second.contains("Connection: close"), "{out}");
        assert!(second.ends_with("/b"), "{out}");
        assert!(w.transport().is_closed(conn));
        assert!(!w.running(), "the loop goes on with no connection left");
    });
}

#[test]
fn a_request_arriving_while_the_drain_lingers_is_answered_with_close() {
    with_worker(|w| {
        let conn = w.connect();
        let out = text(&w.exchange(conn, GET_A));
        assert!(
            out.ends_with("/a") && !out.contains("Connection: close"),
            "{out}"
        );
        w.begin_graceful_stop();
        w.rounds(4);
        assert!(
            !w.transport().is_closed(conn),
            "an idle connection closed before the linger"
        );
        let out = text(&w.exchange(conn, GET_B));
        assert!(
            out.contains("Connection: close") && out.ends_with("/b"),
            "{out}"
        );
        assert!(w.transport().is_closed(conn));
        assert!(!w.running());
    });
}

#[test]
fn idle_connections_close_a_tick_after_the_linger() {
    with_worker(|w| {
        let idle = w.connect();
        w.begin_graceful_stop();
        w.rounds(4);
        assert!(!w.transport().is_closed(idle));
        std::thread::sleep(Duration::from_millis(600));
        w.rounds(4);
        assert!(w.transport().is_closed(idle));
        assert!(!w.running());
    });
}
