//! HTTP/1.x wire format, independent of Python and sockets.
//!
//! Modelled on hyper's `proto/h1`: this module only knows bytes. It parses
//! request heads (borrowing the read buffer, no per-request allocation),
//! decides how bodies are framed, encodes response heads and chunks, and
//! keeps the preformatted `Date` header. Heads are held to [`HeadLimits`]
//! while they arrive ([`check_partial_head`]) and once complete
//! ([`parse_head`]). Every parse failure is a value
//! ([`ParseError`], [`ResponseError`]) that tells the caller what to answer. Before the first
//! request, [`proxy_protocol`] reads a load balancer's PROXY header; [`forwarded`] decides which
//! peers' `X-Forwarded-*` headers say who the client is.

// Parsing untrusted bytes: keep it provably memory-safe.
#![forbid(unsafe_code)]

pub mod chunked;
pub mod date;
pub mod forwarded;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod limits;
pub mod percent;
#[cfg(test)]
mod pipeline_tests;
pub mod proxy_protocol;
pub mod request;
pub mod response;

pub use chunked::{ChunkError, ChunkedDecoder};
pub use date::DateCache;
pub use forwarded::{AllowList, Client};
pub use limits::{check_partial_head, HeadLimits, ScanState};
pub use request::{
    find_head_end, new_header_slots, parse_head, split_host, BodyFraming, HeaderSlots, ParseError,
    Request, Version, MAX_HEADERS,
};
pub use response::{
    choose_framing, reason_phrase, status_has_body, write_chunk, write_error_response,
    write_last_chunk, Framing, HeadWriter, ResponseError,
};
