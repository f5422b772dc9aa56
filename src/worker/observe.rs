//! Counting (`--metrics-bind`, `--stats`) and logging (`--access-logfile`) answered requests.
//!
//! A response queued whole in the request's round is observed in that round, from what the
//! worker already knows (the status at the head's start, the head's length from the call); so
//! are the answers the server gives itself. Any other — a streamed body, a `--threads` pool's
//! reply — becomes an [`Unfinished`] record kept with its connection, fed the bytes as they are
//! queued, and observed when the response is complete or the connection closes.
//!
//! Those queued whole by the app's inline calls are [`Kept`] (as positions in the connection's
//! buffers) until the connection's batch of requests is answered, then observed together:
//! between two app calls the observing code is cold (the app's code has pushed it out of the
//! instruction cache), and observing a batch in one go runs it cold once, not per request.
//! Only a custom access-log format, which needs the parsed request, has them observed one by
//! one.

use std::net::IpAddr;
use std::ops::Range;

use super::access_log::{response_status, AccessLog, Combined, Entry, Wanted};
use super::clock::{Clock, Tick};
use super::stats::{self, Stats};
use crate::http::{self, DateCache, HeadLimits, Request, Version};

/// The statistics block and the access log, either of which may be off, the clock that
/// times requests from the start of their round, and the requests kept for observing.
pub struct Observers<'w> {
    pub stats: &'w mut Option<Stats>,
    pub log: &'w mut Option<AccessLog>,
    pub clock: &'w Clock,
    pub round: Tick,
    pub kept: &'w mut Vec<Kept>,
}

/// An inline request whose response was queued whole, kept as positions in its connection's
/// buffers until the batch it came in is answered (see the module's doc).
pub struct Kept {
    method: usize,
    remote: Option<IpAddr>,
    /// In the connection's input: the request line and the headers the combined format shows.
    line: Range<usize>,
    authorization: Option<Range<usize>>,
    referer: Option<Range<usize>>,
    user_agent: Option<Range<usize>>,
    /// In the connection's output: the response head (`head_len` bytes) and the body bytes
    /// queued with it; `file_len` more follow from a file.
    response: Range<usize>,
    head_len: usize,
    file_len: u64,
    /// When the app was called and when it returned (None: not timed).
    call: Option<(Tick, Tick)>,
}

/// Counts an app call made at `called` and returned at `returned`, in a round that started
/// at `round`.
fn count_call(stats: &mut Stats, clock: &Clock, round: Tick, (called, returned): (Tick, Tick)) {
    let queue_ns = clock.nanos_between(round, called);
    stats.called(queue_ns, clock.nanos_between(called, returned));
}

/// Where `part`, a slice of `whole`, lies in it.
fn position_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    start..start.wrapping_add(part.len())
}

impl Observers<'_> {
    pub fn any(&self) -> bool {
        self.stats.is_some() || self.log.is_some()
    }

    /// Whether a response can be [`Kept`]: a custom log format needs the parsed request.
    pub fn keeps(&self) -> bool {
        self.log.as_ref().is_none_or(AccessLog::in_combined_format)
    }

    /// Keeps an inline request (`req`, parsed from the connection's `input`) whose response
    /// lies at `response` in the connection's output, to observe it with its batch.
    pub fn keep(
        &mut self,
        (input, req, remote): (&[u8], &Request<'_, '_>, Option<IpAddr>),
        (response, head_len, file_len): (Range<usize>, usize, u64),
        call: Option<(Tick, Tick)>,
    ) {
        let wanted = match self.log {
            Some(_) => Wanted::find(req),
            None => Wanted::default(),
        };
        let at = |part| position_in(input, part);
        self.kept.push(Kept {
            method: stats::method_index(req.method),
            remote,
            line: at(req.line),
            authorization: wanted.authorization.map(at),
            referer: wanted.referer.map(at),
            user_agent: wanted.user_agent.map(at),
            response,
            head_len,
            file_len,
            call,
        });
    }

    /// Observes the kept requests, in order, from the connection's buffers they lie in. Their
    /// responses count as in flight until then: they are not handed to the kernel before.
    pub fn observe_kept(&mut self, input: &[u8], output: &[u8], date: &DateCache) {
        for kept in self.kept.iter() {
            let response = output.get(kept.response.clone()).unwrap_or_default();
            let head = response.get(..kept.head_len).unwrap_or(response);
            let duration_ns = kept.call.map_or(0, |(_, returned)| {
                self.clock.nanos_between(self.round, returned)
            });
            if let Some(stats) = self.stats {
                if let Some(call) = kept.call {
                    count_call(stats, self.clock, self.round, call);
                }
                stats.finished();
                stats.answered(kept.method, response_status(head), duration_ns);
            }
            if let Some(log) = self.log {
                let part = |at: &Option<Range<usize>>| at.clone().and_then(|at| input.get(at));
                let line = Combined {
                    remote: kept.remote,
                    line: input.get(kept.line.clone()),
                    wanted: Wanted {
                        authorization: part(&kept.authorization),
                        referer: part(&kept.referer),
                        user_agent: part(&kept.user_agent),
                    },
                    head,
                    body_len: (response.len() - head.len()) as u64 + kept.file_len,
                };
                log.log_combined(&line, date);
            }
        }
        self.kept.clear();
    }

    /// Counts an app call made and returned at `call` (if it was timed).
    pub fn called(&mut self, call: Option<(Tick, Tick)>) {
        if let (Some(stats), Some(call)) = (&mut *self.stats, call) {
            count_call(stats, self.clock, self.round, call);
        }
    }

    /// Counts and logs a complete response: `response` holds its head (`head_len` bytes, the
    /// status at its start) and the body bytes queued with it, `more` the body bytes that
    /// follow from a file.
    pub fn answered(
        &mut self,
        req: Option<&Request<'_, '_>>,
        remote: Option<IpAddr>,
        (response, head_len, more): (&[u8], usize, u64),
        duration_ns: u64,
        date: &DateCache,
    ) {
        if let Some(stats) = self.stats {
            let method = req.map_or(stats::OTHER_METHOD, |r| stats::method_index(r.method));
            stats.answered(method, response_status(response), duration_ns);
        }
        if let Some(log) = self.log {
            let entry = Entry {
                req,
                remote,
                head: &response[..head_len],
                body_len: (response.len() - head_len) as u64 + more,
                duration_ns,
            };
            log.log(&entry, date);
        }
    }

    /// Writes the server's own answer `status` to a request the app is not called for
    /// (`req`: None when its head could not be parsed), and counts and logs it.
    pub fn refused(
        &mut self,
        out: &mut Vec<u8>,
        status: u16,
        version: Version,
        (req, remote): (Option<&Request<'_, '_>>, Option<IpAddr>),
        date: &DateCache,
    ) {
        let mark = out.len();
        http::write_error_response(out, status, version, date);
        if self.any() {
            let response = &out[mark..];
            let head_len = http::find_head_end(response, 0).unwrap_or(response.len());
            let duration_ns = self.clock.nanos_since(self.round);
            self.answered(req, remote, (response, head_len, 0), duration_ns, date);
        }
    }
}

/// A response that is complete only after its request's round: what is needed to count and
/// log it then.
pub struct Unfinished {
    /// The request's head, parsed again when the response is complete.
    request_head: Vec<u8>,
    remote: Option<IpAddr>,
    /// The start of the round that completed the request.
    round: Tick,
    /// The response's head once it was queued, with its status at the start.
    response_head: Vec<u8>,
    /// Body bytes queued after the head (without chunked framing), or sent from a file.
    body_len: u64,
    /// The body is sent in chunks.
    chunked: bool,
}

impl Unfinished {
    pub fn new(request_head: &[u8], remote: Option<IpAddr>, round: Tick) -> Self {
        Unfinished {
            request_head: request_head.to_vec(),
            remote,
            round,
            response_head: Vec::new(),
            body_len: 0,
            chunked: false,
        }
    }

    /// Response bytes queued for the request (the first ones start with the head).
    pub fn queued(&mut self, mut bytes: &[u8]) {
        if self.response_head.is_empty() && !bytes.is_empty() {
            let head_len = http::find_head_end(bytes, 0).unwrap_or(bytes.len());
            self.response_head = bytes[..head_len].to_vec();
            self.chunked =
                memchr::memmem::find(&self.response_head, b"\r\nTransfer-Encoding: chunked\r\n")
                    .is_some();
            bytes = &bytes[head_len..];
        }
        self.body_len += if self.chunked {
            chunk_data_len(bytes)
        } else {
            bytes.len() as u64
        };
    }

    /// Body bytes sent from a file.
    pub fn sent_from_file(&mut self, len: u64) {
        self.body_len += len;
    }

    /// The response is complete (or its connection closed): count and log it.
    pub fn finish(self, observers: &mut Observers<'_>, limits: &HeadLimits, date: &DateCache) {
        let mut slots = http::new_header_slots();
        let req = http::parse_head(&self.request_head, &mut slots, limits).ok();
        let duration_ns = observers.clock.nanos_since(self.round);
        let response = (
            &self.response_head[..],
            self.response_head.len(),
            self.body_len,
        );
        observers.answered(req.as_ref(), self.remote, response, duration_ns, date);
    }
}

/// The data bytes in `bytes`, whole chunks as the server writes them (`size\r\ndata\r\n`;
/// each piece of queued output holds whole chunks); the last chunk ends the count.
fn chunk_data_len(mut bytes: &[u8]) -> u64 {
    let mut total = 0;
    while let Some(eol) = memchr::memmem::find(bytes, b"\r\n") {
        let size = std::str::from_utf8(&bytes[..eol])
            .ok()
            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        let Some(size @ 1..) = size else { break };
        total += size;
        let next = (eol as u64 + 2 + size + 2).min(bytes.len() as u64) as usize;
        bytes = &bytes[next..];
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_count_their_data_only() {
        let mut unfinished = Unfinished::new(b"GET / HTTP/1.1\r\n\r\n", None, Tick::default());
        unfinished.queued(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
        unfinished.queued(b"10\r\n0123456789abcdef\r\n3\r\nxyz\r\n0\r\n\r\n");
        assert_eq!(unfinished.body_len, 24);
        let mut plain = Unfinished::new(b"GET / HTTP/1.1\r\n\r\n", None, Tick::default());
        plain.queued(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc");
        plain.queued(b"def");
        plain.sent_from_file(3);
        assert_eq!(plain.body_len, 9);
    }
}
