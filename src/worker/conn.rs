//! What a worker remembers about one connection between rounds of I/O.

use std::time::Instant;

use super::body::Incoming;
use super::timeouts::{Clock, Waiting};
use crate::http::ScanState;
use crate::io::{ConnId, Peer};
use crate::wsgi::Handle;

/// Per-connection state. The bytes themselves (input and output) are owned by the transport.
pub struct Conn {
    pub id: ConnId,
    pub peer: Peer,
    /// How far the input was searched for the end of a head, so a slow client does not make
    /// every new byte rescan (and re-parse) what came before.
    pub scanned: usize,
    /// Where the limit checks of an incomplete head resume.
    pub scan: ScanState,
    /// Input bytes needed before the pending request is complete (head + body); 0 when unknown.
    pub need: usize,
    /// `100 Continue` was sent for the request being received.
    pub continue_sent: bool,
    /// The peer half-closed: answer what is complete, then close.
    pub read_eof: bool,
    /// A response whose body is still being pulled from the app; later pipelined requests wait.
    pub stream: Option<Handle>,
    /// `close` was called; only `Closed` is expected now.
    pub closing: bool,
    /// The body being received, when it is chunked or spooled.
    pub incoming: Option<Incoming>,
    /// A request was handed to the thread pool; later pipelined requests wait for its reply.
    pub in_pool: bool,
    /// The pool thread streaming this connection's response waits for this acknowledgement.
    pub ack: Option<crossbeam_channel::Sender<bool>>,
    /// Too much output was queued: the requests behind it wait until it has drained.
    pub draining: bool,
    /// Timestamps for the connection's deadlines.
    pub clock: Clock,
    /// `--stats`: when the output now being sent was queued.
    pub queued_at: Option<Instant>,
    /// During a graceful stop: a read made after it began has taken in everything the client
    /// sent before it.
    pub read_after_drain: bool,
}

impl Conn {
    pub fn new(id: ConnId, peer: Peer, now: Instant) -> Self {
        Conn {
            id,
            peer,
            scanned: 0,
            scan: ScanState::default(),
            need: 0,
            continue_sent: false,
            read_eof: false,
            stream: None,
            closing: false,
            incoming: None,
            in_pool: false,
            ack: None,
            draining: false,
            clock: Clock::new(now),
            queued_at: None,
            read_after_drain: false,
        }
    }

    /// What the connection waits for, for its deadline; `pending`: its unsent output.
    pub fn waiting(&self, pending: usize) -> Waiting {
        if self.in_pool && self.ack.is_none() {
            Waiting::App
        } else if pending > 0 || self.stream.is_some() || self.ack.is_some() {
            Waiting::Write
        } else if self.incoming.is_some() || self.need > 0 {
            Waiting::Body
        } else if self.clock.head_started.is_some() {
            Waiting::Head
        } else {
            Waiting::Idle
        }
    }

    /// Forget the progress of the request just answered.
    pub fn request_done(&mut self) {
        self.scanned = 0;
        self.scan = ScanState::default();
        self.need = 0;
        self.continue_sent = false;
    }
}
