//! The Prometheus endpoint: `GET /metrics` in the text exposition format (0.0.4), summed over
//! the workers' slots as they are at the moment of the scrape.
//!
//! It runs on one thread of the master, one connection at a time (scrapes are rare and small);
//! a client gets [`CLIENT_TIMEOUT`] to send its request.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::WORKER_RESTARTS;
use crate::io::SharedMemory;
use crate::worker::stats::{word, BATCH_BUCKETS, CLASSES, METHODS, SLOT_WORDS, TIME_BUCKETS};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_HEAD: usize = 8192;

/// Answers scrapes until the process ends.
pub(super) fn serve(listener: TcpListener, memory: &SharedMemory, slots: usize) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream, memory, slots) {
                    tracing::debug!("metrics request: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("metrics endpoint: cannot accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut stream: TcpStream, memory: &SharedMemory, slots: usize) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let (method, path) = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or_default().to_owned();
                let path = req.path.unwrap_or_default();
                let path = path.split_once('?').map_or(path, |(p, _)| p).to_owned();
                break (method, path);
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => {}
            _ => return respond(&mut stream, "400 Bad Request", "bad request\n", false),
        }
    };
    match (method.as_str(), path.as_str()) {
        ("GET" | "HEAD", "/metrics") => {
            let text = render(memory, slots);
            respond(&mut stream, "200 OK", &text, method == "HEAD")
        }
        (_, "/metrics") => respond(&mut stream, "405 Method Not Allowed", "GET only\n", false),
        _ => respond(&mut stream, "404 Not Found", "see /metrics\n", false),
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str, head: bool) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes())
}

/// The metrics text: every slot's word `i` summed.
fn render(memory: &SharedMemory, slots: usize) -> String {
    let words = memory.words();
    let sum = |i: usize| -> u64 {
        (0..slots)
            .map(|s| words[s * SLOT_WORDS + i].load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    };
    let secs = |i: usize| sum(i) as f64 / 1e9;
    let mut out = String::with_capacity(8192);
    let mut requests = 0;
    header(
        &mut out,
        "ringwsgi_requests_total",
        "counter",
        "Requests answered, by method and status class.",
    );
    for (m, method) in METHODS.iter().enumerate() {
        for (c, class) in CLASSES.iter().enumerate() {
            let n = sum(word::REQUESTS + m * CLASSES.len() + c);
            requests += n;
            let _ = writeln!(
                out,
                "ringwsgi_requests_total{{method=\"{method}\",status=\"{class}\"}} {n}"
            );
        }
    }
    let time_histogram = |out: &mut String, name: &str, help: &str, first: usize, sum_ns: usize| {
        header(out, name, "histogram", help);
        let mut cumulative = 0;
        for (b, le) in TIME_BUCKETS.iter().enumerate() {
            cumulative += sum(first + b);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += sum(first + TIME_BUCKETS.len());
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", secs(sum_ns));
        let _ = writeln!(out, "{name}_count {cumulative}");
    };
    time_histogram(
        &mut out,
        "ringwsgi_request_duration_seconds",
        "From the start of the round that completed the request until its response was complete (queued whole, or, streamed or from --threads, sent).",
        word::DURATION,
        word::DURATION_SUM_NS,
    );
    time_histogram(
        &mut out,
        "ringwsgi_request_queue_seconds",
        "From the start of the round that completed the request (its last byte arrived) to the app being called.",
        word::QUEUE,
        word::QUEUE_SUM_NS,
    );
    header(&mut out, "ringwsgi_batch_size", "histogram", "Requests answered per round of io_uring completions (rounds without requests are not counted).");
    let mut cumulative = 0;
    for (b, le) in BATCH_BUCKETS.iter().enumerate() {
        cumulative += sum(word::BATCHES + b);
        let _ = writeln!(
            out,
            "ringwsgi_batch_size_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    cumulative += sum(word::BATCHES + BATCH_BUCKETS.len());
    let _ = writeln!(
        out,
        "ringwsgi_batch_size_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(out, "ringwsgi_batch_size_sum {requests}");
    let _ = writeln!(out, "ringwsgi_batch_size_count {cumulative}");
    let counters = [
        (
            "ringwsgi_rounds_total",
            "Rounds of io_uring completions handled.",
            sum(word::ROUNDS),
        ),
        (
            "ringwsgi_io_uring_enters_total",
            "io_uring_enter system calls (submissions and waits).",
            sum(word::ENTERS),
        ),
        (
            "ringwsgi_sends_total",
            "Responses (or parts) the transport reported written.",
            sum(word::SENDS),
        ),
        (
            "ringwsgi_worker_restarts_total",
            "Worker processes the master started again after one ended.",
            WORKER_RESTARTS.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let per_request = if requests == 0 {
        0.0
    } else {
        sum(word::ENTERS) as f64 / requests as f64
    };
    let gauges = [
        (
            "ringwsgi_io_uring_enters_per_request",
            "io_uring_enter calls per answered request since start.",
            per_request,
        ),
        (
            "ringwsgi_requests_in_flight",
            "Requests handed to the app whose response is not completely queued yet.",
            sum(word::IN_FLIGHT) as f64,
        ),
        (
            "ringwsgi_open_connections",
            "Open client connections.",
            sum(word::OPEN) as f64,
        ),
    ];
    for (name, help, value) in gauges {
        header(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    header(&mut out, "ringwsgi_stage_seconds_total", "counter", "Worker time by stage: receive and parse, the app's call (environ, app, body: split in those three with --stats only), send (queued until written).");
    let stages = [
        ("parse", word::PARSE_NS),
        ("call", word::CALL_NS),
        ("environ", word::ENVIRON_NS),
        ("app", word::APP_NS),
        ("body", word::BODY_NS),
        ("send", word::SEND_NS),
    ];
    for (stage, i) in stages {
        let _ = writeln!(
            out,
            "ringwsgi_stage_seconds_total{{stage=\"{stage}\"}} {}",
            secs(i)
        );
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
