//! What a worker remembers about one connection between rounds of I/O.

use std::net::SocketAddr;

use crate::http::{ChunkError, ChunkedDecoder};
use crate::io::ConnId;
use crate::wsgi::Handle;

/// Per-connection state. The bytes themselves (input and output) are owned by the transport.
pub struct Conn {
    pub id: ConnId,
    pub peer: SocketAddr,
    /// How far the input was searched for the end of a head, so a slow client does not make
    /// every new byte rescan (and re-parse) what came before.
    pub scanned: usize,
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
    /// The chunked body of the request being received, decoded so far.
    pub chunked: Option<ChunkedBody>,
}

/// A chunked request body being received. The encoded bytes stay in the connection's input
/// (behind the head, which is parsed again as more arrives); the decoded bytes collect here.
pub struct ChunkedBody {
    decoder: ChunkedDecoder,
    /// Encoded bytes (after the head) consumed so far.
    pub consumed: usize,
    pub body: Vec<u8>,
}

impl ChunkedBody {
    pub fn new(limit: u64) -> Self {
        ChunkedBody { decoder: ChunkedDecoder::new(limit), consumed: 0, body: Vec::new() }
    }

    /// Decodes what arrived of `encoded` (everything after the head). True once complete.
    pub fn decode(&mut self, encoded: &[u8]) -> Result<bool, ChunkError> {
        self.consumed += self.decoder.decode(&encoded[self.consumed..], &mut self.body)?;
        Ok(self.decoder.is_done())
    }
}

impl Conn {
    pub fn new(id: ConnId, peer: SocketAddr) -> Self {
        Conn {
            id,
            peer,
            scanned: 0,
            need: 0,
            continue_sent: false,
            read_eof: false,
            stream: None,
            closing: false,
            chunked: None,
        }
    }

    /// Forget the progress of the request just answered.
    pub fn request_done(&mut self) {
        self.scanned = 0;
        self.need = 0;
        self.continue_sent = false;
    }
}
