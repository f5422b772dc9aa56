//! Counting (`--metrics-bind`, `--stats`) and logging (`--access-logfile`) answered requests.
//!
//! A response queued whole in the request's round is observed at once, from what the worker
//! already knows (the status at the head's start, the head's length from the call). Any other
//! — a streamed body, a `--threads` pool's reply — becomes an [`Unfinished`] record kept with
//! its connection, fed the bytes as they are queued, and observed when the response is
//! complete or the connection closes. So are the answers the server gives itself.

use std::net::IpAddr;
use std::time::Duration;

use super::access_log::{response_status, AccessLog, Entry};
use super::clock::{Clock, Tick};
use super::stats::Stats;
use crate::http::{self, DateCache, HeadLimits, Request, Version};

/// The statistics block and the access log, either of which may be off, and the clock that
/// times requests from the start of their round.
pub struct Observers<'w> {
    pub stats: &'w mut Option<Stats>,
    pub log: &'w mut Option<AccessLog>,
    pub clock: &'w Clock,
    pub round: Tick,
}

impl Observers<'_> {
    pub fn any(&self) -> bool {
        self.stats.is_some() || self.log.is_some()
    }

    /// Counts and logs a complete response: `response` holds its head (`head_len` bytes, the
    /// status at its start) and the body bytes queued with it, `more` the body bytes that
    /// follow from a file.
    pub fn answered(
        &mut self,
        req: Option<&Request<'_, '_>>,
        remote: Option<IpAddr>,
        (response, head_len, more): (&[u8], usize, u64),
        duration: Duration,
        date: &DateCache,
    ) {
        let status = response_status(response);
        if let Some(stats) = self.stats {
            stats.answered(req.map(|r| r.method), status, duration);
        }
        if let Some(log) = self.log {
            let entry = Entry {
                req,
                remote,
                status,
                head: &response[..head_len],
                body_len: (response.len() - head_len) as u64 + more,
                duration,
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
            let duration = self.clock.since(self.round);
            self.answered(req, remote, (response, head_len, 0), duration, date);
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
        let duration = observers.clock.since(self.round);
        let response = (
            &self.response_head[..],
            self.response_head.len(),
            self.body_len,
        );
        observers.answered(req.as_ref(), self.remote, response, duration, date);
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
