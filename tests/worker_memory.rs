//! A real worker (own-GIL subinterpreter, real WSGI apps, batching loop) driven through the
//! in-memory transport: request bytes in, response bytes out, no sockets.

use ringwsgi::io::Transport;
use ringwsgi::worker::in_memory::{with_in_memory_worker, InMemoryWorker};

const APPS: &str = r#"
import json

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!"]

def environ(environ, start_response):
    body = environ["wsgi.input"].read()
    keep = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int))}
    keep["body"] = body.decode("latin-1")
    keep["version"] = list(environ["wsgi.version"])
    data = json.dumps(keep, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]

def stream(environ, start_response):
    start_response("200 OK", [])
    for i in range(4):
        yield (b"%d" % i) * 50000

def broken(environ, start_response):
    raise ValueError("boom")
"#;

fn with_worker(app: &str, f: impl FnOnce(&mut InMemoryWorker<'_>) + Send) {
    with_in_memory_worker(APPS, &format!("memapps:{app}"), f);
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn hello_world_round_trip() {
    with_worker("hello", |h| {
        let conn = h.connect();
        let out = text(&h.exchange(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Length: 13\r\n"), "{out}");
        assert!(out.contains("\r\nDate: "), "{out}");
        assert!(out.ends_with("\r\n\r\nHello, World!"), "{out}");
        assert!(!h.transport().is_closed(conn));
    });
}

#[test]
fn pipelined_requests_answered_in_order_in_one_round() {
    with_worker("environ", |h| {
        let conn = h.connect();
        let mut burst = Vec::new();
        for i in 0..16 {
            burst.extend_from_slice(
                format!("GET /p{i}?i={i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            );
        }
        h.transport().push_input(conn, &burst);
        h.rounds(1);
        // All 16 answered in the round their bytes arrived, queued for one submission...
        let queued = text(h.transport().output(conn));
        assert_eq!(queued.matches("HTTP/1.1 200 OK").count(), 16, "{queued}");
        // ...which the next wait sends.
        h.rounds(1);
        let out = text(&h.transport().take_output(conn));
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 16, "{out}");
        let positions: Vec<usize> = (0..16)
            .map(|i| out.find(&format!("\"PATH_INFO\": \"/p{i}\"")).unwrap())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "responses out of order"
        );
    });
}

#[test]
fn environ_from_request_bytes() {
    with_worker("environ", |h| {
        let conn = h.connect();
        let out = text(&h.exchange(
            conn,
            b"POST /a%20b/%C3%A9?x=%20&y=2 HTTP/1.1\r\nHost: example.com:8080\r\nX-Multi: a\r\nX-Multi: b\r\n\
              X_Spoof: evil\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        ));
        let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
        let env: std::collections::HashMap<String, serde_json::Value> =
            serde_json::from_str(body).unwrap();
        let s = |k: &str| {
            env.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("<missing>")
                .to_owned()
        };
        assert_eq!(s("REQUEST_METHOD"), "POST");
        assert_eq!(s("PATH_INFO"), "/a b/Ã©");
        assert_eq!(s("QUERY_STRING"), "x=%20&y=2");
        assert_eq!(s("RAW_URI"), "/a%20b/%C3%A9?x=%20&y=2");
        assert_eq!(s("SERVER_NAME"), "example.com");
        assert_eq!(s("SERVER_PORT"), "8080");
        assert_eq!(s("SERVER_PROTOCOL"), "HTTP/1.1");
        assert_eq!(s("REMOTE_ADDR"), "127.0.0.1");
        assert_eq!(s("REMOTE_PORT"), "40000");
        assert_eq!(s("CONTENT_TYPE"), "text/plain");
        assert_eq!(s("CONTENT_LENGTH"), "5");
        assert_eq!(s("HTTP_X_MULTI"), "a, b");
        assert_eq!(s("body"), "hello");
        assert!(!env.contains_key("HTTP_X_SPOOF"));
        assert!(!env.contains_key("HTTP_CONTENT_TYPE"));
        assert_eq!(env["wsgi.multithread"], serde_json::Value::Bool(false));
        assert_eq!(env["wsgi.input_terminated"], serde_json::Value::Bool(true));
        assert_eq!(s("wsgi.url_scheme"), "http");
    });
}

#[test]
fn streaming_body_is_pulled_as_output_drains() {
    with_worker("stream", |h| {
        let conn = h.connect();
        let out = h.exchange(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let text = text(&out);
        assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
        assert!(text.ends_with("0\r\n\r\n"));
        let payload: usize = (0..4).map(|_| 50000).sum();
        // 4 chunks of 50000 bytes plus framing.
        assert!(
            out.len() > payload && out.len() < payload + 300,
            "{}",
            out.len()
        );
    });
}

#[test]
fn app_exception_gives_500_and_the_worker_goes_on() {
    with_worker("broken", |h| {
        let conn = h.connect();
        let out = text(&h.exchange(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(out.starts_with("HTTP/1.1 500 "), "{out}");
        assert!(out.contains("Connection: close"), "{out}");
        let again = h.connect();
        let out = text(&h.exchange(again, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(out.starts_with("HTTP/1.1 500 "), "{out}");
    });
}

#[test]
fn incomplete_body_never_reaches_the_app() {
    with_worker("environ", |h| {
        let conn = h.connect();
        h.transport().push_input(
            conn,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        );
        h.transport().push_eof(conn);
        h.rounds(6);
        assert!(h.transport().take_output(conn).is_empty());
        assert!(h.transport().is_closed(conn));
    });
}

#[test]
fn body_larger_than_a_head_arriving_in_pieces() {
    with_worker("environ", |h| {
        let conn = h.connect();
        let body = vec![b'z'; 200_000];
        h.transport().push_input(
            conn,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n",
        );
        h.rounds(2);
        for piece in body.chunks(30_000) {
            h.transport().push_input(conn, piece);
            h.rounds(2);
        }
        h.rounds(4);
        let out = text(&h.transport().take_output(conn));
        assert!(
            out.starts_with("HTTP/1.1 200 OK"),
            "{}",
            &out[..out.len().min(200)]
        );
        assert!(out.contains(&"z".repeat(200_000)));
    });
}

#[test]
fn chunked_body_split_anywhere_reaches_the_app_whole() {
    with_worker("environ", |h| {
        let request: &[u8] = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n";
        for split in [1, 20, 60, 75, 90, request.len() - 5] {
            let conn = h.connect();
            h.transport().push_input(conn, &request[..split]);
            h.rounds(2);
            let out = text(&h.exchange(conn, &request[split..]));
            assert!(
                out.contains("\"body\": \"hello, world\""),
                "split {split}: {out}"
            );
            assert!(
                out.contains("\"PATH_INFO\": \"/next\""),
                "split {split}: pipelined request lost"
            );
        }
    });
}

#[test]
fn bad_chunk_size_is_400_and_close() {
    with_worker("environ", |h| {
        let conn = h.connect();
        let out = text(&h.exchange(conn, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"));
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        assert!(out.contains("Connection: close"), "{out}");
        assert!(h.transport().is_closed(conn));
    });
}
