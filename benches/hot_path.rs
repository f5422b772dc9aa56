//! Criterion benches of the request hot path, piece by piece and whole.
//!
//! Run with `PYO3_PYTHON=$PWD/.venv/bin/python cargo bench --bench hot_path` (the whole-cycle
//! benches embed CPython 3.13 and run the app in an own-GIL subinterpreter, as the server does).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput};
use pyo3::prelude::*;
use ringwsgi::http::{self, ChunkedDecoder, DateCache, Framing, HeadLimits, HeadWriter, Version};
use ringwsgi::io::SharedMemory;
use ringwsgi::worker::access_log::{AccessLog, Entry, DEFAULT_FORMAT};
use ringwsgi::worker::in_memory::{with_in_memory_worker, with_subinterpreter, InMemoryWorker};
use ringwsgi::worker::stats::{Stats, SLOT_WORDS};
use ringwsgi::wsgi::{EnvironBuilder, EnvironSettings, Input};

const SMALL_GET: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: localhost:8000\r\n\r\n";

const BROWSER_GET: &[u8] = b"GET /articles/2026/11/ringwsgi?utm_source=feed&page=2 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/\r\n\
Connection: keep-alive\r\n\
Cookie: session=8a7c1e2f9b0d4c3a; theme=dark; consent=granted; _ga=GA1.2.1234567890.1732579200\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-User: ?1\r\n\
Priority: u=0, i\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
DNT: 1\r\n\
If-None-Match: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"\r\n\
If-Modified-Since: Tue, 25 Nov 2026 08:00:00 GMT\r\n\
X-Requested-With: XMLHttpRequest\r\n\r\n";

const PLAINTEXT_APP: &str = r#"
BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]

def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
"#;

/// Parsing a request head out of the read buffer: what every request pays before Python.
fn parse(c: &mut Criterion) {
    let limits = HeadLimits::default();
    let mut group = c.benchmark_group("parse");
    for (name, head) in [
        ("small_get", SMALL_GET),
        ("browser_get_20_headers", BROWSER_GET),
    ] {
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let end = http::find_head_end(head, 0).expect("complete head");
                let mut slots = http::new_header_slots();
                let req = http::parse_head(&head[..end], &mut slots, &limits).expect("valid head");
                std::hint::black_box(req.headers.len())
            })
        });
    }
    // A pipelined burst: 16 heads parsed one after the other from one buffer.
    let burst: Vec<u8> = SMALL_GET.repeat(16);
    group.throughput(Throughput::Elements(16));
    group.bench_function("pipelined_burst_16", |b| {
        b.iter(|| {
            let mut pos = 0;
            while pos < burst.len() {
                let end = http::find_head_end(&burst[pos..], 0).expect("complete head");
                let mut slots = http::new_header_slots();
                let req = http::parse_head(&burst[pos..pos + end], &mut slots, &limits)
                    .expect("valid head");
                pos += req.head_len;
            }
            pos
        })
    });
    group.finish();
}

/// Decoding a chunked request body (16 chunks of 4 KiB): what a chunked upload costs per byte.
fn chunked(c: &mut Criterion) {
    let chunk = vec![b'a'; 4096];
    let mut encoded = Vec::new();
    for _ in 0..16 {
        encoded.extend_from_slice(b"1000\r\n");
        encoded.extend_from_slice(&chunk);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    let mut group = c.benchmark_group("chunked");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("decode_64k", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(65536),
            |body| {
                let mut decoder = ChunkedDecoder::new(0);
                decoder.decode(&encoded, body).expect("valid body")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Encoding a response head (status, two app headers, Date, Server, Content-Length).
fn response_head(c: &mut Criterion) {
    let date = DateCache::new();
    let mut out = Vec::with_capacity(256);
    c.bench_function("response_head", |b| {
        b.iter(|| {
            out.clear();
            let mut head =
                HeadWriter::new(&mut out, Version::Http11, b"200 OK").expect("valid status");
            head.header(b"Content-Type", b"text/plain")
                .expect("valid header");
            head.header(b"X-Request-Id", b"4f1c2a")
                .expect("valid header");
            head.finish(Framing::Length(13), true, Version::Http11, &date);
            out.len()
        })
    });
}

/// Formatting one access-log line in the default (combined) format, gathered as the worker
/// does; lines reach /dev/null in writes of `FLUSH_AT` bytes.
fn access_log(c: &mut Criterion) {
    let limits = HeadLimits::default();
    let mut date = DateCache::new();
    date.refresh(std::time::SystemTime::now());
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!";
    let head_len = response.len() - 13;
    let mut log = AccessLog::open(Path::new("/dev/null"), DEFAULT_FORMAT).expect("open /dev/null");
    let mut group = c.benchmark_group("access_log");
    for (name, head) in [
        ("small_get", SMALL_GET),
        ("browser_get_20_headers", BROWSER_GET),
    ] {
        let mut slots = http::new_header_slots();
        let req = http::parse_head(head, &mut slots, &limits).expect("valid head");
        let entry = Entry {
            req: Some(&req),
            remote: Some([127, 0, 0, 1].into()),
            head: &response[..head_len],
            body_len: 13,
            duration_ns: 0,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                log.log(std::hint::black_box(&entry), &date);
                log.end_round(true, &date);
            })
        });
    }
    group.finish();
}

/// Building the environ of a 20-header browser GET in a real own-GIL subinterpreter: the
/// interned keys, the copied template, a str per value, the BytesIO for wsgi.input.
fn environ(c: &mut Criterion, py: Python<'_>) {
    let settings = EnvironSettings {
        script_name: String::new(),
        multiprocess: false,
        multithread: false,
        bound: SocketAddr::from(([127, 0, 0, 1], 8000)),
    };
    let mut builder =
        EnvironBuilder::new(py, &settings, &py.None().into_bound(py)).expect("environ builder");
    let end = http::find_head_end(BROWSER_GET, 0).expect("complete head");
    let limits = HeadLimits::default();
    let client = http::Client::direct(Some(SocketAddr::from(([127, 0, 0, 1], 40000))));
    c.bench_function("environ/browser_get_20_headers", |b| {
        b.iter(|| {
            let mut slots = http::new_header_slots();
            let req =
                http::parse_head(&BROWSER_GET[..end], &mut slots, &limits).expect("valid head");
            let env = builder
                .build(py, &req, Input::Bytes(b""), client)
                .expect("environ");
            env.len()
        })
    });
}

/// One whole request through the worker: bytes in, parse, environ in a real own-GIL
/// subinterpreter, the hello-world app, response encoding, bytes out (in-memory transport);
/// and a pipelined batch of 16 handled in one round.
fn request_cycle(c: &mut Criterion, worker: &mut InMemoryWorker<'_>) {
    let mut group = c.benchmark_group("request_cycle");
    let conn = worker.connect();
    group.throughput(Throughput::Elements(1));
    group.bench_function("plaintext_1", |b| {
        b.iter(|| {
            worker.transport().push_input(conn, SMALL_GET);
            worker.rounds(2);
            worker.transport().take_output(conn).len()
        })
    });
    let burst = SMALL_GET.repeat(16);
    group.throughput(Throughput::Elements(16));
    let mut batch_16 = |name: &str, worker: &mut InMemoryWorker<'_>| {
        group.bench_function(name, |b| {
            b.iter(|| {
                worker.transport().push_input(conn, &burst);
                worker.rounds(2);
                worker.transport().take_output(conn).len()
            })
        });
    };
    batch_16("plaintext_batch_16", worker);
    // The same with the access log on (combined format): what formatting the lines costs. The
    // lines go to /dev/null; the kernel's write to a real file is in scripts/bench's variant.
    let log = AccessLog::open(Path::new("/dev/null"), DEFAULT_FORMAT).expect("open /dev/null");
    worker.set_access_log(log);
    batch_16("plaintext_batch_16_access_log", worker);
    // And with the metrics too (`--access-logfile` and `--metrics-bind`).
    let memory = SharedMemory::create(c"ringwsgi-bench-stats", SLOT_WORDS).expect("shared memory");
    worker.set_stats(Stats::new(Arc::new(memory), 0).expect("one slot"));
    batch_16("plaintext_batch_16_observed", worker);
    group.finish();
}

/// What a request from a trusted peer (`--forwarded-allow-ips`, 127.0.0.1 by default) pays on
/// top: the scan of its headers for X-Forwarded-*, without them and with a two-hop chain and a
/// scheme header. Requests from other peers skip it.
fn forwarded(c: &mut Criterion) {
    let mut group = c.benchmark_group("forwarded");
    let trusted = http::AllowList::parse("127.0.0.1,::1,10.0.0.0/8").expect("allow list");
    let peer = Some(SocketAddr::from(([127, 0, 0, 1], 40000)));
    let limits = HeadLimits::default();
    let mut with_chain = BROWSER_GET[..BROWSER_GET.len() - 2].to_vec();
    with_chain.extend_from_slice(
        b"X-Forwarded-For: 203.0.113.7, 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n",
    );
    for (name, input) in [
        ("browser_get_20_headers", BROWSER_GET),
        ("browser_get_xff_chain", &with_chain[..]),
    ] {
        let mut slots = http::new_header_slots();
        let req = http::parse_head(input, &mut slots, &limits).expect("valid head");
        group.bench_function(name, |b| {
            b.iter(|| http::forwarded::resolve(std::hint::black_box(req.headers), peer, &trusted))
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    parse(&mut c);
    forwarded(&mut c);
    chunked(&mut c);
    response_head(&mut c);
    access_log(&mut c);
    // An interpreter lives on its own thread: so does the Criterion of the parts that use one.
    with_subinterpreter(|py| {
        let mut c = Criterion::default().configure_from_args();
        environ(&mut c, py);
    });
    with_in_memory_worker(PLAINTEXT_APP, "bench_plaintext:app", |worker| {
        let mut c = Criterion::default().configure_from_args();
        request_cycle(&mut c, worker);
    });
    c.final_summary();
}
