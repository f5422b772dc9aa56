//! One core's worker: joins the transport (`io`), the parser and encoder (`http`) and the
//! interpreter (`wsgi`).
//!
//! The loop is: wait for a round of completions (detached from the interpreter, so app threads
//! run meanwhile), then handle the whole round attached. Every request that completed in the
//! round is parsed straight from its connection's input buffer and handed to the app back to
//! back, and each response is queued as its call returns; the transport sends all of the
//! round's responses in the one submission that starts the next wait. Nothing waits to fill a
//! batch: a round holds whatever completed together.

pub mod access_log;
mod body;
mod clock;
mod conn;
pub mod in_memory;
mod observe;
mod pool;
pub mod stats;
mod timeouts;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use pyo3::Python;

use crate::http::{self, BodyFraming, DateCache, HeadLimits, Version};
use crate::io::{ConnId, Event, Peer, Transport};
use crate::wsgi::{self, FileBody, Input, Respond, Wsgi};
use access_log::AccessLog;
pub use body::SpoolSettings;
use body::{Body, Incoming};
use clock::{Clock, Tick};
use conn::Conn;
pub use conn::Proxies;
use observe::{Kept, Observers, Unfinished};
pub use pool::Pool;
use pool::{Job, OwnedBody, Reply, ReplyEnd};
use stats::Stats;
pub use timeouts::Timeouts;
use timeouts::{Expired, Waiting};

/// What a worker enforces on requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted (0: no limit); the body is read completely before the app
    /// is called, and a larger declared body is refused with 413 before it is read.
    pub max_body: u64,
    pub spool: SpoolSettings,
    /// Request line, header fields, whole head (and chunked trailers).
    pub head: HeadLimits,
    pub timeouts: Timeouts,
    /// Open connections per worker; beyond it new ones wait in the listener's backlog.
    pub max_connections: usize,
    /// Requests after which this worker asks for its process to be replaced (0: never).
    pub max_requests: u64,
    /// Who may name the client (PROXY protocol, X-Forwarded-*).
    pub proxies: Proxies,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 1 << 30,
            spool: SpoolSettings {
                threshold: 1 << 20,
                dir: None,
            },
            head: HeadLimits::default(),
            timeouts: Timeouts::default(),
            max_connections: 10_000,
            max_requests: 0,
            proxies: Proxies::default(),
        }
    }
}

/// Unsent response bytes per connection beyond which no further pipelined request is answered
/// until the output drains.
const MAX_UNSENT: usize = 4 << 20;
/// Pipelined requests answered per connection before waiting for their responses to drain.
const MAX_PIPELINED: usize = 64;
/// Requests answered in a round from which on the access log's lines wait for the next round.
const BUSY_ROUND: usize = 8;
/// The room `Transport::receive` gives a read, at least.
const RECEIVE_RESERVE: usize = 16 * 1024;
/// How long after a graceful stop began idle connections are kept open, at least (closed at the
/// next tick after it).
const DRAIN_LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// Requests from the worker process's main thread to its worker threads (read on `Woken`, and
/// `drain` once per round; never per request).
#[derive(Debug, Default)]
pub struct Control {
    /// Quick stop (SIGINT, SIGQUIT): abort the connections and end the loop.
    pub stop: AtomicBool,
    /// Graceful stop (SIGTERM): stop accepting, answer every request already received, close the
    /// connections as they fall idle, end the loop (at `Timeouts::graceful` at the latest).
    pub drain: AtomicBool,
    /// Incremented for each statistics report asked for (SIGUSR2).
    pub report: AtomicU64,
    /// `--timeout`: interrupts app calls that run too long.
    pub watchdog: wsgi::Watchdog,
    /// Asks the master for a replacement of this worker process (once per process).
    pub replacement: Arc<Replacement>,
}

/// Asks (once) for this worker process to be replaced: the master starts a new one and, once it
/// serves, stops this one gracefully.
#[derive(Default)]
pub struct Replacement {
    asked: AtomicBool,
    ask: Option<AskReplacement>,
}

/// How a replacement is asked for (the status pipe to the master).
type AskReplacement = Box<dyn Fn(&str) + Send + Sync>;

impl Replacement {
    /// `ask` sends the request (the status pipe).
    pub fn new(ask: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Replacement {
            asked: AtomicBool::new(false),
            ask: Some(Box::new(ask)),
        }
    }

    /// Sends `reason` unless a request was sent already.
    pub fn ask(&self, reason: &str) {
        if !self.asked.swap(true, Ordering::AcqRel) {
            if let Some(ask) = &self.ask {
                ask(reason);
            }
        }
    }
}

impl std::fmt::Debug for Replacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replacement")
            .field("asked", &self.asked)
            .finish_non_exhaustive()
    }
}

/// A worker's event loop over transport `T`.
pub struct Worker<T: Transport> {
    io: T,
    wsgi: Wsgi,
    conns: Vec<Option<Conn>>,
    date: DateCache,
    limits: Limits,
    /// `--threads N > 1`: the app runs on these threads instead of inline.
    pool: Option<Pool>,
    /// When the current round started (deadlines are measured against it).
    now: Instant,
    /// The same on the request clock (request times are measured from it).
    round_start: Tick,
    clock: Clock,
    /// Open connections, and whether accepting is paused because of `max_connections`.
    open: usize,
    accept_paused: bool,
    control: Arc<Control>,
    stopping: bool,
    /// The graceful stop under way, if any.
    drain: Option<Drain>,
    /// Rounds so far (a drain tells reads made before it from reads made after it by them).
    rounds: u64,
    /// The round had a `Tick`: deadlines are checked once its other events are handled.
    ticked: bool,
    /// Requests answered in the current round (the batch size).
    answered: usize,
    /// Requests taken on so far (inline or handed to the pool), for `max_requests`.
    served: u64,
    /// `--stats` or `--metrics-bind`: this worker's statistics block.
    stats: Option<Stats>,
    /// `--stats`: who this worker is (index, CPU), the last report asked for.
    report: Option<(usize, usize, u64)>,
    access_log: Option<AccessLog>,
    /// Requests answered in the connection batch under way, to observe together.
    kept: Vec<Kept>,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A graceful stop under way.
#[derive(Debug, Clone, Copy)]
struct Drain {
    /// The round in which it began. A read completed in a later round was made after the
    /// signal, so it holds every byte the kernel had for that connection by then (unless it
    /// filled the buffer).
    round: u64,
    /// When idle connections may be closed: one tick on, every byte sent before the signal has
    /// been read, and a request racing the close gets a moment to arrive and be answered.
    close_idle_after: Instant,
    /// `--graceful-timeout`: whatever is left then is aborted.
    deadline: Instant,
}

/// What to do with a connection after its input was processed.
enum Next {
    /// Read more requests.
    Receive,
    /// Close after the queued output.
    Close,
    /// Nothing to do until something else happens: a streaming response drains, a spooled body's
    /// writes land, the pool replies.
    Wait,
    /// Too much output is queued: answer the rest once it has drained.
    Drain,
    /// Send this file after the queued output, then go on with the requests behind it.
    SendFile { body: FileBody, keep_alive: bool },
}

impl<T: Transport> Worker<T> {
    /// `control` is set (and the transport's waker woken) by whoever wants the loop to end or
    /// report.
    pub fn new(io: T, wsgi: Wsgi, limits: Limits, control: Arc<Control>) -> Self {
        Worker {
            io,
            wsgi,
            conns: Vec::new(),
            date: DateCache::new(),
            limits,
            pool: None,
            now: Instant::now(),
            round_start: Tick::default(),
            clock: Clock::new(),
            open: 0,
            accept_paused: false,
            control,
            stopping: false,
            drain: None,
            rounds: 0,
            ticked: false,
            answered: 0,
            served: 0,
            stats: None,
            report: None,
            access_log: None,
            kept: Vec::new(),
        }
    }

    /// Keeps statistics in `stats`. `report`: the worker's index and CPU when the block is to
    /// be printed (`--stats`), at exit and when asked through `Control::report`.
    pub fn with_stats(mut self, stats: Stats, report: Option<(usize, usize)>) -> Self {
        // The call's parts cost three more clock reads per request: only for --stats.
        if report.is_some() {
            self.wsgi.enable_timing();
        }
        let asked = self.control.report.load(Ordering::Acquire);
        self.stats = Some(stats);
        self.report = report.map(|(index, cpu)| (index, cpu, asked));
        self
    }

    /// Writes a line per answered request to `log`.
    pub fn with_access_log(mut self, log: AccessLog) -> Self {
        self.access_log = Some(log);
        self
    }

    /// Prints the statistics block to stderr (if `--stats`).
    pub fn report_stats(&mut self) {
        if let (Some(stats), Some((index, cpu, _))) = (&self.stats, self.report) {
            let mut report = stats.report(index, cpu);
            report.push('\n');
            let _ = std::io::Write::write_all(&mut std::io::stderr(), report.as_bytes());
        }
    }

    /// Hands requests to `pool` instead of calling the app inline.
    pub fn with_pool(mut self, pool: Pool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Runs until stopped and every connection is closed. `py`: the interpreter this thread is
    /// attached to, when the app runs inline; `None` with a thread pool (this thread then never
    /// holds the interpreter's GIL, which the pool's threads need).
    pub fn run(&mut self, py: Option<Python<'_>>) -> std::io::Result<()> {
        let mut events = Vec::with_capacity(256);
        while self.round(py, &mut events)? {}
        Ok(())
    }

    /// One round: waits (detached) for the transport's next completions, then handles them all
    /// attached. Returns false once the worker has stopped and every connection is closed.
    pub fn round(
        &mut self,
        py: Option<Python<'_>>,
        events: &mut Vec<Event>,
    ) -> std::io::Result<bool> {
        events.clear();
        if self.drain.is_none() && !self.stopping && self.control.drain.load(Ordering::Acquire) {
            // Seen before the wait (one load per round, not per request): every read of this
            // round then happens after the signal, so its responses can already say close.
            self.begin_drain();
        }
        let io = &mut self.io;
        match py {
            Some(py) => wsgi::detached(py, || io.wait(events))?,
            None => io.wait(events)?,
        }
        self.date.refresh(SystemTime::now());
        self.now = Instant::now();
        if self.stats.is_some() || self.access_log.is_some() {
            self.round_start = self.clock.now();
        }
        self.rounds += 1;
        for &event in events.iter() {
            self.handle(py, event);
        }
        if self.served >= self.limits.max_requests && self.limits.max_requests != 0 {
            self.max_requests_reached();
        }
        if std::mem::take(&mut self.ticked) {
            // After the round's other events: a connection is not taken for idle while a read
            // for it waits further down the list.
            self.check_deadlines();
        }
        if let Some(stats) = &mut self.stats {
            let elapsed = self.now.elapsed();
            stats.round(self.answered, elapsed, self.wsgi.times(), self.io.enters());
        }
        let more = !(self.stopping && self.io.connections() == 0);
        if let Some(log) = &mut self.access_log {
            // A large round is followed at once by another (its responses' sends complete):
            // the lines wait for the load's last, smaller round, FLUSH_AT bytes or a second.
            log.end_round(self.answered >= BUSY_ROUND && more, &self.date);
        }
        self.answered = 0;
        Ok(more)
    }

    /// The transport (tests and benches feed the in-memory one through this).
    pub fn transport(&mut self) -> &mut T {
        &mut self.io
    }

    /// Ends the worker, giving back the WSGI state (to be released while attached) and the pool
    /// (to be shut down while detached).
    pub fn into_parts(self) -> (Wsgi, Option<Pool>) {
        (self.wsgi, self.pool)
    }

    fn handle(&mut self, py: Option<Python<'_>>, event: Event) {
        match event {
            Event::Accepted { conn, peer } => self.accepted(conn, peer),
            Event::Received { conn, n } => {
                let now = self.now;
                if self.drain.is_some() {
                    self.read_while_draining(conn, n);
                }
                if let Some(c) = self.conn_mut(conn) {
                    c.read_eof |= n == 0;
                    c.clock.activity = now;
                    if !c.awaiting_proxy_header || self.proxy_header_read(conn) {
                        self.process(py, conn);
                    }
                }
            }
            Event::Sent { conn } => self.sent(py, conn),
            Event::FileWritten { conn, result } => self.spool_written(py, conn, result),
            Event::Closed { conn } => self.closed(py, conn),
            Event::Tick => self.ticked = true,
            Event::Woken => {
                self.replies(py);
                if self.control.stop.load(Ordering::Acquire) {
                    self.quick_stop();
                } else if self.control.drain.load(Ordering::Acquire) && !self.stopping {
                    self.begin_drain();
                }
                let asked = self.control.report.load(Ordering::Acquire);
                if let Some((_, _, seen)) = &mut self.report {
                    if *seen != asked {
                        *seen = asked;
                        self.report_stats();
                    }
                }
            }
        }
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.index())?
            .as_mut()
            .filter(|c| c.id == id && !c.closing)
    }

    fn accepted(&mut self, id: ConnId, peer: Peer) {
        // Accepted while a drain began: served like the others (its client may have sent a
        // request already); a quick stop aborts it.
        if self.stopping && self.drain.is_none() {
            self.io.abort(id);
            return;
        }
        let Some(conn) = Conn::admit(id, peer, self.now, &self.limits.proxies) else {
            self.io.abort(id);
            return;
        };
        let index = id.index();
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        self.conns[index] = Some(conn);
        self.open += 1;
        if let Some(stats) = &self.stats {
            stats.open(self.open);
        }
        if self.open >= self.limits.max_connections && !self.accept_paused {
            self.accept_paused = true;
            self.io.pause_accepting();
        }
        self.io.receive(id);
    }

    /// Parses and answers every complete request in the connection's input, in order.
    fn process(&mut self, py: Option<Python<'_>>, id: ConnId) {
        loop {
            let next = self.answer_requests(py, id);
            if self.stats.is_some() && self.io.pending_output(id) > 0 {
                let now = self.now;
                if let Some(conn) = self.conn_mut(id) {
                    conn.queued_at.get_or_insert(now);
                }
            }
            let Some(conn) = self.conn_mut(id) else {
                return;
            };
            if let Some(incoming) = &mut conn.incoming {
                for (file, offset, data) in incoming.queued_writes() {
                    self.io.write_file(id, &file, offset, data);
                }
            }
            let Some(conn) = self.conn_mut(id) else {
                return;
            };
            match next {
                Next::Receive if conn.read_eof => self.close(id),
                Next::Receive => self.io.receive(id),
                Next::Wait => {}
                Next::Drain => conn.draining = true,
                Next::Close => self.close(id),
                Next::SendFile { body, keep_alive } => {
                    self.io.send_file(id, body.file, body.offset, body.len);
                    if keep_alive {
                        continue;
                    }
                    self.close(id);
                }
            }
            return;
        }
    }

    /// Closes the connection once its queued output is sent.
    fn close(&mut self, id: ConnId) {
        if let Some(conn) = self.conn_mut(id) {
            conn.closing = true;
            self.io.close(id);
        }
    }

    /// Answers the complete requests at the front of the connection's input, until one needs
    /// the connection to do something else first.
    fn answer_requests(&mut self, py: Option<Python<'_>>, id: ConnId) -> Next {
        let Worker {
            io,
            wsgi,
            conns,
            date,
            limits,
            pool,
            now,
            drain,
            answered: answered_in_round,
            served,
            stats,
            access_log,
            clock,
            round_start,
            kept,
            ..
        } = self;
        let Some(conn) = conns.get_mut(id.index()).and_then(|c| c.as_mut()) else {
            return Next::Wait;
        };
        if conn.stream.is_some() || conn.in_pool || conn.closing {
            return Next::Wait;
        }
        let mut observers = Observers {
            stats,
            log: access_log,
            clock,
            round: *round_start,
            kept,
        };
        let peer = conn.peer.addr().map(|a| a.ip());
        let (input, output) = io.buffers(id);
        let mut pos = 0;
        let mut answered = 0;
        let next = loop {
            if answered >= MAX_PIPELINED || output.len() >= MAX_UNSENT {
                break Next::Drain;
            }
            let buf = &input[pos..];
            if buf.is_empty() || buf.len() < conn.need {
                break Next::Receive;
            }
            let Some(head_end) = http::find_head_end(buf, conn.scanned) else {
                conn.scanned = buf.len();
                // Refuse an oversized or broken head as soon as it is one, without buffering it whole.
                if let Some(err) = http::check_partial_head(buf, &limits.head, &mut conn.scan) {
                    tracing::info!(peer = %conn.peer, "bad request: {err}");
                    let unparsed = (None, peer);
                    observers.observe_kept(input, output, date);
                    observers.refused(output, err.status, Version::Http11, unparsed, date);
                    break Next::Close;
                }
                break Next::Receive;
            };
            let mut slots = http::new_header_slots();
            let mut req = match http::parse_head(&buf[..head_end], &mut slots, &limits.head) {
                Ok(req) => req,
                Err(err) => {
                    tracing::info!(peer = %conn.peer, "bad request: {err}");
                    let unparsed = (None, peer);
                    observers.observe_kept(input, output, date);
                    observers.refused(output, err.status, Version::Http11, unparsed, date);
                    break Next::Close;
                }
            };
            let client = match conn.client(req.headers, &limits.proxies) {
                Ok(client) => client,
                Err(err) => {
                    tracing::info!(peer = %conn.peer, "bad request: {err}");
                    observers.observe_kept(input, output, date);
                    observers.refused(output, 400, req.version, (Some(&req), peer), date);
                    break Next::Close;
                }
            };
            let body_len = match req.body {
                BodyFraming::None => 0,
                BodyFraming::Length(n) if limits.max_body != 0 && n > limits.max_body => {
                    let request = (Some(&req), client.addr);
                    observers.observe_kept(input, output, date);
                    observers.refused(output, 413, req.version, request, date);
                    break Next::Close;
                }
                BodyFraming::Length(n) if n as usize <= limits.spool.threshold => n as usize,
                // Chunked, or too large to keep in memory: taken out of the input as it arrives.
                framing => {
                    // Taking the body may move the input: kept requests are observed first.
                    observers.observe_kept(input, output, date);
                    if conn.incoming.as_ref().is_none_or(|i| !i.done()) {
                        let (head_len, version, expect_continue) =
                            (req.head_len, req.version, req.expect_continue);
                        let incoming = match &mut conn.incoming {
                            Some(incoming) => Ok(incoming),
                            None => match framing {
                                BodyFraming::Length(n) => {
                                    Incoming::spooled(n, limits.spool.clone())
                                }
                                _ => Ok(Incoming::chunked(
                                    limits.max_body,
                                    &limits.head,
                                    limits.spool.clone(),
                                )),
                            }
                            .map(|incoming| conn.incoming.insert(incoming)),
                        };
                        match incoming.and_then(|incoming| incoming.take(input, pos + head_len)) {
                            Err(err) => {
                                tracing::info!(peer = %conn.peer, "cannot receive the request body: {err}");
                                let request = (None, client.addr);
                                observers.refused(output, err.status(), version, request, date);
                                break Next::Close;
                            }
                            Ok(false) => {
                                if expect_continue && !conn.continue_sent {
                                    output.extend_from_slice(CONTINUE);
                                    conn.continue_sent = true;
                                }
                                conn.scanned = 0;
                                break Next::Receive;
                            }
                            Ok(true) => {
                                conn.scanned = 0;
                                // Parse the head again; spooled writes may still have to land.
                                continue;
                            }
                        }
                    }
                    if !conn.incoming.as_ref().is_some_and(|i| i.settled()) {
                        break Next::Wait;
                    }
                    0
                }
            };
            let total = req.head_len + body_len;
            if drain.is_some() && conn.read_after_drain && buf.len() == total {
                // Draining, and nothing of a further request was sent before the signal: this
                // response says the connection closes, so the client sends nothing more on it.
                req.keep_alive = false;
            }
            if buf.len() < total {
                // Wait for the body; the head is found again (from its start) once it is here.
                conn.need = total;
                conn.scanned = 0;
                if req.expect_continue && !conn.continue_sent {
                    output.extend_from_slice(CONTINUE);
                    conn.continue_sent = true;
                }
                break Next::Receive;
            }
            let received = conn.incoming.take().map(Incoming::into_body);
            let body = match received {
                None => Input::Bytes(&buf[req.head_len..total]),
                Some(Body::Memory(ref bytes)) => Input::Bytes(bytes),
                Some(Body::File(file)) => Input::File(file),
            };
            if let Some(pool) = pool {
                let body = match body {
                    Input::Bytes(bytes) => OwnedBody::Bytes(bytes.to_vec()),
                    Input::File(file) => OwnedBody::File(file),
                };
                if observers.any() {
                    let head = &buf[..req.head_len];
                    conn.unfinished = Some(Unfinished::new(head, client.addr, *round_start));
                    if let Some(stats) = observers.stats {
                        stats.started();
                    }
                }
                pool.submit(Job {
                    conn: id,
                    head: buf[..req.head_len].to_vec(),
                    body,
                    client,
                    keep_alive: req.keep_alive,
                });
                pos += total;
                *served += 1;
                conn.request_done();
                conn.in_pool = true;
                break Next::Wait;
            }
            let timed =
                observers.stats.is_some() || observers.log.as_ref().is_some_and(AccessLog::timed);
            let called = timed.then(|| clock.now());
            if let Some(stats) = observers.stats {
                stats.started();
            }
            let mark = output.len();
            let respond = wsgi.call(inline(py), &req, body, client, output, date);
            if observers.any() {
                let call = called.map(|called| (called, clock.now()));
                let response = &output[mark..];
                if let Respond::Streaming(_) = respond {
                    // Observed once the stream ends.
                    observers.called(call);
                    let mut unfinished =
                        Unfinished::new(&buf[..req.head_len], client.addr, *round_start);
                    unfinished.queued(response);
                    conn.unfinished = Some(unfinished);
                } else {
                    let head_len = wsgi.head_len().unwrap_or_else(|| {
                        http::find_head_end(response, 0).unwrap_or(response.len())
                    });
                    let file_len = match &respond {
                        Respond::SendFile { body, .. } => body.len,
                        _ => 0,
                    };
                    if observers.keeps() {
                        let request = (&input[..], &req, client.addr);
                        let response = (mark..output.len(), head_len, file_len);
                        observers.keep(request, response, call);
                    } else {
                        if let Some(stats) = observers.stats {
                            stats.finished();
                        }
                        observers.called(call);
                        let duration_ns =
                            call.map_or(0, |(_, r)| clock.nanos_between(*round_start, r));
                        let answer = (response, head_len, file_len);
                        observers.answered(Some(&req), client.addr, answer, duration_ns, date);
                    }
                }
            }
            pos += total;
            answered += 1;
            *answered_in_round += 1;
            *served += 1;
            conn.request_done();
            match respond {
                Respond::Done { keep_alive: true } => continue,
                Respond::Done { keep_alive: false } | Respond::Abort => break Next::Close,
                Respond::Streaming(handle) => {
                    conn.stream = Some(handle);
                    break Next::Wait;
                }
                Respond::SendFile { body, keep_alive } => {
                    break Next::SendFile { body, keep_alive }
                }
            }
        };
        observers.observe_kept(input, output, date);
        input.drain(..pos);
        // The header deadline runs from the first byte of a head.
        if input.is_empty() {
            conn.clock.head_started = None;
        } else if conn.incoming.is_none() && conn.need == 0 {
            conn.clock.head_started.get_or_insert(*now);
        }
        next
    }

    /// The output drained: pull more of a streaming body, or go back to the requests that
    /// were pipelined behind it.
    fn sent(&mut self, py: Option<Python<'_>>, id: ConnId) {
        let now = self.now;
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        conn.clock.activity = now;
        if let (Some(queued), Some(stats)) = (conn.queued_at.take(), &self.stats) {
            stats.sent(queued, now);
        }
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if conn.draining {
            conn.draining = false;
            return self.process(py, id);
        }
        if let Some(ack) = self.conn_mut(id).and_then(|c| c.ack.take()) {
            let _ = ack.send(true);
            return;
        }
        let Some(handle) = self.conn_mut(id).and_then(|c| c.stream) else {
            return;
        };
        let output = self.io.output(id);
        let before = output.len();
        let respond = self.wsgi.resume(inline(py), handle, output);
        let queued = &self.io.output(id)[before..];
        let conn = self.conns.get_mut(id.index()).and_then(|c| c.as_mut());
        if let Some(unfinished) = conn.and_then(|c| c.unfinished.as_mut()) {
            unfinished.queued(queued);
        }
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if !matches!(respond, Respond::Streaming(_)) {
            conn.stream = None;
            let unfinished = conn.unfinished.take();
            if let Some(stats) = &self.stats {
                stats.finished();
            }
            if let Some(unfinished) = unfinished {
                self.observe_unfinished(unfinished);
            }
        }
        match respond {
            Respond::Streaming(_) => {}
            Respond::Done { keep_alive: true } => self.process(py, id),
            Respond::Done { keep_alive: false } | Respond::Abort => self.close(id),
            // A stream never turns into a file.
            Respond::SendFile { .. } => self.close(id),
        }
    }

    /// Takes the pool's replies: response bytes, then what follows them.
    fn replies(&mut self, py: Option<Python<'_>>) {
        let Some(pool) = &self.pool else { return };
        let replies: Vec<Reply> = pool.replies.try_iter().collect();
        for Reply {
            conn: id,
            bytes,
            end,
        } in replies
        {
            if self.conn_mut(id).is_none() {
                if let ReplyEnd::More { ack } = end {
                    let _ = ack.send(false);
                }
                continue;
            }
            self.io.output(id).extend_from_slice(&bytes);
            let Some(conn) = self.conn_mut(id) else {
                continue;
            };
            let complete = !matches!(end, ReplyEnd::More { .. });
            let mut finished = None;
            if let Some(unfinished) = &mut conn.unfinished {
                unfinished.queued(&bytes);
                if let ReplyEnd::File { body, .. } = &end {
                    unfinished.sent_from_file(body.len);
                }
                if complete {
                    finished = conn.unfinished.take();
                }
            }
            if let Some(unfinished) = finished {
                if let Some(stats) = &self.stats {
                    stats.finished();
                }
                self.observe_unfinished(unfinished);
            }
            let Some(conn) = self.conn_mut(id) else {
                continue;
            };
            match end {
                ReplyEnd::More { ack } => conn.ack = Some(ack),
                ReplyEnd::Done { keep_alive: true } => {
                    conn.in_pool = false;
                    self.process(py, id);
                }
                ReplyEnd::File { body, keep_alive } => {
                    conn.in_pool = false;
                    self.io.send_file(id, body.file, body.offset, body.len);
                    if keep_alive {
                        self.process(py, id);
                    } else {
                        self.close(id);
                    }
                }
                ReplyEnd::Done { keep_alive: false } | ReplyEnd::Abort => {
                    conn.in_pool = false;
                    self.close(id);
                }
            }
        }
    }

    /// A write of a spooled request body landed; once the last one has, the app is called.
    fn spool_written(&mut self, py: Option<Python<'_>>, id: ConnId, result: Result<usize, i32>) {
        let Some(incoming) = self.conn_mut(id).and_then(|c| c.incoming.as_mut()) else {
            return;
        };
        if !incoming.written(result.is_ok()) {
            if let Err(errno) = result {
                tracing::error!(
                    "cannot spool a request body: {}",
                    std::io::Error::from_raw_os_error(errno)
                );
            }
            self.refuse_unparsed(id, 500);
        } else if incoming.done() && incoming.settled() {
            self.process(py, id);
        }
    }

    /// Answers `status` on a connection whose request head was never parsed (so it is counted
    /// and logged with what is known: the peer), then closes it.
    fn refuse_unparsed(&mut self, id: ConnId, status: u16) {
        let peer = self
            .conn_mut(id)
            .and_then(|c| c.peer.addr())
            .map(|a| a.ip());
        let mut observers = Observers {
            stats: &mut self.stats,
            log: &mut self.access_log,
            clock: &self.clock,
            round: self.round_start,
            kept: &mut self.kept,
        };
        let output = self.io.output(id);
        observers.refused(output, status, Version::Http11, (None, peer), &self.date);
        self.close(id);
    }

    /// Closes the connections whose deadline passed (about once a second).
    fn check_deadlines(&mut self) {
        let (now, timeouts) = (self.now, self.limits.timeouts);
        if let Some(drain) = self.drain {
            if now >= drain.deadline {
                let aborted = self.abort_all();
                if aborted > 0 {
                    tracing::warn!("--graceful-timeout passed: aborted {aborted} connections");
                }
                return;
            }
        }
        let close_idle = self
            .drain
            .is_some_and(|d| self.rounds > d.round && now >= d.close_idle_after);
        let mut expired = Vec::new();
        for conn in self.conns.iter_mut().flatten().filter(|c| !c.closing) {
            let pending = self.io.pending_output(conn.id);
            let waiting = conn.waiting(pending);
            if close_idle && waiting == Waiting::Idle {
                expired.push((conn.id, Expired::Idle));
            } else if let Some(what) = conn.clock.check(waiting, pending, now, &timeouts) {
                expired.push((conn.id, what));
            }
        }
        for (id, what) in expired {
            tracing::debug!(?what, "connection deadline passed");
            match what {
                Expired::Head => {
                    self.refuse_unparsed(id, 408);
                }
                Expired::Idle | Expired::Body => self.close(id),
                Expired::Write => {
                    if let Some(conn) = self.conn_mut(id) {
                        conn.closing = true;
                    }
                    self.io.abort(id);
                }
            }
        }
    }

    fn closed(&mut self, py: Option<Python<'_>>, id: ConnId) {
        let Some(slot) = self.conns.get_mut(id.index()) else {
            return;
        };
        if slot.as_ref().is_some_and(|c| c.id == id) {
            let Some(conn) = slot.take() else { return };
            self.open -= 1;
            if let Some(stats) = &self.stats {
                stats.open(self.open);
                if conn.stream.is_some() || (conn.in_pool && conn.unfinished.is_some()) {
                    stats.finished();
                }
            }
            if self.accept_paused && self.open < self.limits.max_connections {
                self.accept_paused = false;
                self.io.resume_accepting();
            }
            if let Some(handle) = conn.stream {
                self.wsgi.abandon(inline(py), handle);
            }
            if let Some(ack) = conn.ack {
                let _ = ack.send(false);
            }
            if let Some(unfinished) = conn.unfinished {
                // Cut short: observed with what was queued.
                self.observe_unfinished(unfinished);
            }
        }
    }

    /// Counts and logs a streamed or pool-answered response that is complete.
    fn observe_unfinished(&mut self, unfinished: Unfinished) {
        let mut observers = Observers {
            stats: &mut self.stats,
            log: &mut self.access_log,
            clock: &self.clock,
            round: self.round_start,
            kept: &mut self.kept,
        };
        unfinished.finish(&mut observers, &self.limits.head, &self.date);
    }

    /// Quick stop: stop accepting and abort every connection (also in the middle of a drain).
    fn quick_stop(&mut self) {
        if self.stopping && self.drain.is_none() {
            return;
        }
        self.stopping = true;
        self.drain = None;
        self.io.stop_accepting();
        self.abort_all();
    }

    /// Graceful stop: stop accepting (later clients wait in the listener's backlog for the next
    /// worker process) and let every connection finish what it has received; connections close
    /// as their last response goes out or, idle, at the next tick; see [`Drain`].
    fn begin_drain(&mut self) {
        self.stopping = true;
        self.io.stop_accepting();
        self.drain = Some(Drain {
            round: self.rounds,
            close_idle_after: self.now + DRAIN_LINGER,
            deadline: self.now + self.limits.timeouts.graceful,
        });
        tracing::debug!(
            "draining {} connections (at most {:?})",
            self.io.connections(),
            self.limits.timeouts.graceful
        );
    }

    /// Notes that a connection's read of `n` bytes happened after the drain began (see
    /// [`Drain::round`]).
    fn read_while_draining(&mut self, id: ConnId, n: usize) {
        let Some(drain) = self.drain else { return };
        if self.rounds <= drain.round || self.conn_mut(id).is_none() {
            return;
        }
        let input = self.io.input(id);
        // A receive has at least RECEIVE_RESERVE of room: a shorter read took all there was.
        let filled = n >= RECEIVE_RESERVE && input.len() == input.capacity();
        if let Some(conn) = self.conn_mut(id) {
            conn.read_after_drain |= !filled;
        }
    }

    /// `max_requests` reached: ask for a replacement (once) and serve on until the master stops
    /// this process.
    fn max_requests_reached(&mut self) {
        tracing::info!(
            "{} requests served (--max-requests): asking for a replacement",
            self.served
        );
        self.control.replacement.ask("max-requests");
        self.limits.max_requests = 0;
    }

    /// Aborts every connection still open; returns how many.
    fn abort_all(&mut self) -> usize {
        let mut aborted = 0;
        for conn in self.conns.iter_mut().flatten() {
            if !conn.closing {
                conn.closing = true;
                self.io.abort(conn.id);
                aborted += 1;
            }
        }
        aborted
    }
}

/// The interpreter token of a worker whose app runs inline. Only the inline paths call the app,
/// and they run only when the worker was started attached.
fn inline(py: Option<Python<'_>>) -> Python<'_> {
    py.expect("the app is called inline only by a worker running attached")
}
