//! One core's worker: joins the transport (`io`), the parser and encoder (`http`) and the
//! interpreter (`wsgi`).
//!
//! The loop is: wait for a round of completions (detached from the interpreter, so app threads
//! run meanwhile), then handle the whole round attached. Every request that completed in the
//! round is parsed straight from its connection's input buffer and handed to the app back to
//! back, and each response is queued as its call returns; the transport sends all of the
//! round's responses in the one submission that starts the next wait. Nothing waits to fill a
//! batch: a round holds whatever completed together.

mod conn;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use pyo3::Python;

use crate::http::{self, BodyFraming, DateCache, Version};
use crate::io::{ConnId, Event, Transport};
use crate::wsgi::{self, Respond, Wsgi};
use conn::{ChunkedBody, Conn};

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted (the body is read completely before the app is called).
pub const MAX_BODY: u64 = 1 << 30;

/// A worker's event loop over transport `T`.
pub struct Worker<T: Transport> {
    io: T,
    wsgi: Wsgi,
    conns: Vec<Option<Conn>>,
    date: DateCache,
    stop: Arc<AtomicBool>,
    stopping: bool,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What to do with a connection after its input was processed.
enum Next {
    /// Read more requests.
    Receive,
    /// A streaming response is in progress: resume it when the output has drained.
    Stream,
    /// Close after the queued output.
    Close,
}

impl<T: Transport> Worker<T> {
    /// `stop` is set (and the transport's waker woken) by whoever wants the loop to end.
    pub fn new(io: T, wsgi: Wsgi, stop: Arc<AtomicBool>) -> Self {
        Worker { io, wsgi, conns: Vec::new(), date: DateCache::new(), stop, stopping: false }
    }

    /// Runs until stopped and every connection is closed.
    pub fn run(&mut self, py: Python<'_>) -> std::io::Result<()> {
        let mut events = Vec::with_capacity(256);
        while self.round(py, &mut events)? {}
        Ok(())
    }

    /// One round: waits (detached) for the transport's next completions, then handles them all
    /// attached. Returns false once the worker has stopped and every connection is closed.
    pub fn round(&mut self, py: Python<'_>, events: &mut Vec<Event>) -> std::io::Result<bool> {
        events.clear();
        let io = &mut self.io;
        wsgi::detached(py, || io.wait(events))?;
        self.date.refresh(SystemTime::now());
        for &event in events.iter() {
            self.handle(py, event);
        }
        Ok(!(self.stopping && self.io.connections() == 0))
    }

    /// The transport (tests and benches feed the in-memory one through this).
    pub fn transport(&mut self) -> &mut T {
        &mut self.io
    }

    /// Ends the worker, giving back the WSGI state to be released while attached.
    pub fn into_wsgi(self) -> Wsgi {
        self.wsgi
    }

    fn handle(&mut self, py: Python<'_>, event: Event) {
        match event {
            Event::Accepted { conn, peer } => self.accepted(conn, peer),
            Event::Received { conn, n } => {
                if let Some(c) = self.conn_mut(conn) {
                    c.read_eof |= n == 0;
                    self.process(py, conn);
                }
            }
            Event::Sent { conn } => self.sent(py, conn),
            Event::Closed { conn } => self.closed(py, conn),
            Event::Tick | Event::FileWritten { .. } => {}
            Event::Woken => {
                if self.stop.load(Ordering::Acquire) && !self.stopping {
                    self.begin_stop();
                }
            }
        }
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id.index())?.as_mut().filter(|c| c.id == id && !c.closing)
    }

    fn accepted(&mut self, id: ConnId, peer: SocketAddr) {
        if self.stopping {
            self.io.abort(id);
            return;
        }
        let index = id.index();
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        self.conns[index] = Some(Conn::new(id, peer));
        self.io.receive(id);
    }

    /// Parses and answers every complete request in the connection's input, in order.
    fn process(&mut self, py: Python<'_>, id: ConnId) {
        let Worker { io, wsgi, conns, date, .. } = self;
        let Some(conn) = conns.get_mut(id.index()).and_then(|c| c.as_mut()) else { return };
        if conn.stream.is_some() || conn.closing {
            return;
        }
        let (input, output) = io.buffers(id);
        let mut pos = 0;
        let next = loop {
            let buf = &input[pos..];
            if buf.is_empty() || buf.len() < conn.need {
                break Next::Receive;
            }
            let Some(head_end) = http::find_head_end(buf, conn.scanned) else {
                conn.scanned = buf.len();
                if buf.len() > MAX_HEAD {
                    tracing::warn!(peer = %conn.peer, "request head over {MAX_HEAD} bytes");
                    http::write_error_response(output, 431, Version::Http11, date);
                    break Next::Close;
                }
                break Next::Receive;
            };
            let mut slots = http::new_header_slots();
            let req = match http::parse_head(&buf[..head_end], &mut slots) {
                Ok(req) => req,
                Err(err) => {
                    tracing::info!(peer = %conn.peer, "bad request: {err}");
                    http::write_error_response(output, err.status, Version::Http11, date);
                    break Next::Close;
                }
            };
            let body_len = match req.body {
                BodyFraming::None => 0,
                BodyFraming::Length(n) if n <= MAX_BODY => n as usize,
                BodyFraming::Length(_) => {
                    http::write_error_response(output, 413, req.version, date);
                    break Next::Close;
                }
                BodyFraming::Chunked => {
                    let chunked = conn.chunked.get_or_insert_with(|| ChunkedBody::new(MAX_BODY));
                    match chunked.decode(&buf[req.head_len..]) {
                        Ok(true) => chunked.consumed,
                        Ok(false) => {
                            if req.expect_continue && !conn.continue_sent {
                                output.extend_from_slice(CONTINUE);
                                conn.continue_sent = true;
                            }
                            conn.scanned = 0;
                            break Next::Receive;
                        }
                        Err(err) => {
                            tracing::info!(peer = %conn.peer, "bad chunked body: {err}");
                            http::write_error_response(output, err.status, req.version, date);
                            break Next::Close;
                        }
                    }
                }
            };
            let total = req.head_len + body_len;
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
            let chunked = conn.chunked.take();
            let body = match &chunked {
                Some(chunked) => &chunked.body[..],
                None => &buf[req.head_len..total],
            };
            let respond = wsgi.call(py, &req, body, conn.peer, output, date);
            pos += total;
            conn.request_done();
            match respond {
                Respond::Done { keep_alive: true } => continue,
                Respond::Done { keep_alive: false } | Respond::Abort => break Next::Close,
                Respond::Streaming(handle) => {
                    conn.stream = Some(handle);
                    break Next::Stream;
                }
            }
        };
        input.drain(..pos);
        match next {
            Next::Receive if conn.read_eof => {
                conn.closing = true;
                io.close(id);
            }
            Next::Receive => io.receive(id),
            Next::Stream => {}
            Next::Close => {
                conn.closing = true;
                io.close(id);
            }
        }
    }

    /// The output drained: pull more of a streaming body, or go back to the requests that
    /// were pipelined behind it.
    fn sent(&mut self, py: Python<'_>, id: ConnId) {
        let Some(handle) = self.conn_mut(id).and_then(|c| c.stream) else { return };
        let respond = self.wsgi.resume(py, handle, self.io.output(id));
        let Some(conn) = self.conn_mut(id) else { return };
        match respond {
            Respond::Streaming(_) => {}
            Respond::Done { keep_alive: true } => {
                conn.stream = None;
                self.process(py, id);
            }
            Respond::Done { keep_alive: false } | Respond::Abort => {
                conn.stream = None;
                conn.closing = true;
                self.io.close(id);
            }
        }
    }

    fn closed(&mut self, py: Python<'_>, id: ConnId) {
        let Some(slot) = self.conns.get_mut(id.index()) else { return };
        if slot.as_ref().is_some_and(|c| c.id == id) {
            if let Some(handle) = slot.take().and_then(|c| c.stream) {
                self.wsgi.abandon(py, handle);
            }
        }
    }

    /// Stop accepting and close every connection (graceful draining comes with the lifecycle work).
    fn begin_stop(&mut self) {
        self.stopping = true;
        self.io.stop_accepting();
        for conn in self.conns.iter_mut().flatten() {
            if !conn.closing {
                conn.closing = true;
                self.io.abort(conn.id);
            }
        }
    }
}
