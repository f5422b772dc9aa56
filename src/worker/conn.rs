//! What a worker remembers about one connection between rounds of I/O, and who the connection
//! speaks for: its peer, or the client a PROXY header (`--proxy-protocol`) or a trusted proxy's
//! `X-Forwarded-*` headers (`--forwarded-allow-ips`) name.

use std::time::Instant;

use httparse::Header;

use super::body::Incoming;
use super::timeouts::{Clock, Waiting};
use super::Worker;
use crate::http::forwarded::{self, AllowList, Client, ForwardedError};
use crate::http::proxy_protocol::{self, Parsed, Versions};
use crate::http::ScanState;
use crate::io::{ConnId, Peer, Transport};
use crate::wsgi::Handle;

/// Which peers may name the client: `--forwarded-allow-ips`, `--proxy-protocol`,
/// `--proxy-allow-from`.
#[derive(Debug, Clone)]
pub struct Proxies {
    /// Peers whose X-Forwarded-For and scheme headers are believed.
    pub forwarded_allow: AllowList,
    /// Every connection starts with a PROXY header of these versions (`None`: off).
    pub protocol: Option<Versions>,
    /// Peers allowed to connect when `protocol` is on.
    pub protocol_allow: AllowList,
}

impl Default for Proxies {
    fn default() -> Self {
        Proxies {
            forwarded_allow: AllowList::localhost(),
            protocol: None,
            protocol_allow: AllowList::localhost(),
        }
    }
}

/// Per-connection state. The bytes themselves (input and output) are owned by the transport.
pub struct Conn {
    pub id: ConnId,
    /// The client's address: the socket's peer, or the source a PROXY header gave.
    pub peer: Peer,
    /// The peer is in `--forwarded-allow-ips`: requests' X-Forwarded-* headers are believed.
    pub trusted: bool,
    /// `--proxy-protocol`: the PROXY header has not been read yet.
    pub awaiting_proxy_header: bool,
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
    /// The response being streamed or answered by the pool, to be counted and logged once it
    /// is complete (`--metrics-bind`, `--stats`, `--access-logfile`).
    pub unfinished: Option<super::observe::Unfinished>,
}

impl Conn {
    /// A connection just accepted, or `None` when `--proxy-protocol` refuses its peer.
    /// Whether the peer is trusted is decided here, once (after the PROXY header with
    /// `--proxy-protocol`), so an untrusted connection's requests cost nothing more.
    pub fn admit(id: ConnId, peer: Peer, now: Instant, proxies: &Proxies) -> Option<Self> {
        let ip = peer.addr().map(|a| a.ip());
        let awaiting_proxy_header = proxies.protocol.is_some();
        if awaiting_proxy_header && !proxies.protocol_allow.allows(ip) {
            tracing::info!(%peer, "refused: not in --proxy-allow-from");
            return None;
        }
        let mut conn = Conn::new(id, peer, now);
        conn.trusted = !awaiting_proxy_header && proxies.forwarded_allow.allows(ip);
        conn.awaiting_proxy_header = awaiting_proxy_header;
        // The PROXY header is held to the request head's deadline.
        if awaiting_proxy_header {
            conn.clock.head_started = Some(now);
        }
        Some(conn)
    }

    fn new(id: ConnId, peer: Peer, now: Instant) -> Self {
        Conn {
            id,
            peer,
            trusted: false,
            awaiting_proxy_header: false,
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
            unfinished: None,
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

    /// The client of a request on this connection (its headers are read only if the peer is
    /// trusted).
    pub fn client(
        &self,
        headers: &[Header<'_>],
        proxies: &Proxies,
    ) -> Result<Client, ForwardedError> {
        let peer = self.peer.addr();
        if self.trusted {
            forwarded::resolve(headers, peer, &proxies.forwarded_allow)
        } else {
            Ok(Client::direct(peer))
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

impl<T: Transport> Worker<T> {
    /// Reads the PROXY header a connection awaiting one (`Conn::awaiting_proxy_header`) starts
    /// with. True once the connection is past it: the rest of the input is HTTP. False while
    /// more of the header is awaited (a receive is armed) or when the connection was closed
    /// because it does not start with a valid header.
    pub(super) fn proxy_header_read(&mut self, id: ConnId) -> bool {
        let Some(conn) = self
            .conns
            .get_mut(id.index())
            .and_then(|c| c.as_mut())
            .filter(|c| c.id == id && !c.closing)
        else {
            return false;
        };
        let (true, Some(versions)) = (conn.awaiting_proxy_header, self.limits.proxies.protocol)
        else {
            return true;
        };
        let input = self.io.input(id);
        let refusal: Option<String> = match proxy_protocol::parse(input, versions) {
            Ok(Parsed::Header { len, source }) => {
                input.drain(..len);
                if let Some(source) = source {
                    conn.peer = Peer::Tcp(source);
                }
                // Trust follows the address the header names: a TCP proxy passes its clients'
                // bytes unchanged, so their own X-Forwarded-For must not be believed.
                let ip = conn.peer.addr().map(|a| a.ip());
                conn.trusted = self.limits.proxies.forwarded_allow.allows(ip);
                conn.awaiting_proxy_header = false;
                conn.clock.head_started = None;
                return true;
            }
            Ok(Parsed::Incomplete) if !conn.read_eof => {
                self.io.receive(id);
                return false;
            }
            // Closed before sending anything (a TCP health check): nothing to report.
            Ok(Parsed::Incomplete) if input.is_empty() => None,
            Ok(Parsed::Incomplete) => Some("the connection ended inside its PROXY header".into()),
            Err(err) => Some(err.to_string()),
        };
        if let Some(refusal) = refusal {
            tracing::info!(peer = %conn.peer, "refused: {refusal}");
        }
        conn.closing = true;
        self.io.close(id);
        false
    }
}
