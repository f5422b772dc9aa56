//! Decoder of `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! Our own rather than `httparse::parse_chunk_size`, which is too lax (it
//! accepts bare LF, arbitrary extension bytes, and leaves trailers to us).
//! [`ChunkedDecoder`] is a resumable byte-level state machine: it consumes
//! every byte it is given up to the end of the body, remembers where it is
//! between calls, and appends the chunk data to the caller's `Vec`. Feeding
//! the input split at any byte boundary gives the same result, and no byte
//! is ever examined twice, so a trickling client costs linear time.
//! Bytes after the final CRLF (a pipelined request) are never consumed.

use super::limits::HeadLimits;
use super::request::is_tchar;

/// Most chunk-extension bytes accepted over the whole body (then 400).
pub const MAX_EXTENSION_BYTES: u64 = 4096;

/// Most hex digits in a chunk-size.
const MAX_SIZE_DIGITS: u8 = 16;

/// A chunked body that could not be accepted.
///
/// Every value means: answer with `status` and close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct ChunkError {
    /// 400 (malformed), 413 (body over the limit) or 431 (trailers over
    /// the [`HeadLimits`]).
    pub status: u16,
    /// Short human-readable cause, for logs.
    pub reason: &'static str,
}

impl ChunkError {
    const fn bad(reason: &'static str) -> Self {
        ChunkError {
            status: 400,
            reason,
        }
    }

    const TOO_LARGE: ChunkError = ChunkError {
        status: 413,
        reason: "chunked body over the size limit",
    };

    const TRAILERS_TOO_LARGE: ChunkError = ChunkError {
        status: 431,
        reason: "chunked trailer section too large",
    };

    const TRAILER_FIELD_TOO_LARGE: ChunkError = ChunkError {
        status: 431,
        reason: "chunked trailer field too large",
    };

    const TOO_MANY_TRAILER_FIELDS: ChunkError = ChunkError {
        status: 431,
        reason: "too many chunked trailer fields",
    };
}

/// Where the decoder is within the chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first hex digit of a chunk-size.
    SizeStart,
    /// Inside the chunk-size digits.
    Size,
    /// After the size, a value or BWS: expecting BWS, `;` or CR.
    /// `ws` tells whether BWS was just seen (then CR is not allowed).
    ExtAfterItem { ws: bool },
    /// After `;`: expecting BWS or the first byte of an extension name.
    ExtBeforeName,
    /// Inside an extension name.
    ExtName,
    /// BWS after an extension name: expecting BWS, `=` or `;`.
    ExtAfterName,
    /// After `=`: expecting BWS or the first byte of the value.
    ExtBeforeValue,
    /// Inside a token extension value.
    ExtTokenValue,
    /// Inside a quoted-string extension value.
    ExtQuoted,
    /// Just after a backslash inside a quoted-string.
    ExtQuotedPair,
    /// Seen the CR that ends the size line.
    SizeLf,
    /// Inside chunk data with `remaining` bytes still to come.
    Data { remaining: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// Seen the CR ending a trailer line.
    TrailerLf,
    /// Seen the CR of the final CRLF.
    FinalLf,
    /// The whole body, trailers and final CRLF were consumed.
    Done,
    /// A previous call failed; every later call fails the same way.
    Failed(ChunkError),
}

/// Resumable decoder of one chunked request body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Largest decoded body accepted; 0 means no limit.
    limit: u64,
    /// Body bytes decoded so far.
    decoded: u64,
    /// Value of the chunk-size being read (or just read).
    size: u64,
    /// Hex digits read for the current chunk-size.
    digits: u8,
    /// Extension bytes seen so far, over the whole body.
    ext_bytes: u64,
    /// Trailer-section bytes seen so far (line CRLFs included, the final
    /// CRLF not).
    trailer_bytes: u64,
    /// Bytes of the current trailer line (CRLF excluded).
    trailer_line: u64,
    /// Trailer fields seen so far.
    trailer_fields: u64,
    /// Limits on the trailer section: `head` bytes in all, `field_size`
    /// per line, `fields` lines (as for a request head).
    max_trailer_bytes: u64,
    max_trailer_line: u64,
    max_trailer_fields: u64,
}

impl ChunkedDecoder {
    /// `limit`: the largest decoded body accepted (0 = no limit); a body
    /// announcing more fails with [`ChunkError`] 413. Trailers are held to
    /// `HeadLimits::default()`; see [`ChunkedDecoder::with_limits`].
    pub fn new(limit: u64) -> Self {
        Self::with_limits(limit, &HeadLimits::default())
    }

    /// Like [`ChunkedDecoder::new`], with the trailer section held to the
    /// same limits as a request head: at most `head.head` bytes (line CRLFs
    /// included), at most [`HeadLimits::max_fields`] fields, each line at
    /// most `head.field_size` bytes (CRLF excluded). Over any: 431.
    pub fn with_limits(limit: u64, head: &HeadLimits) -> Self {
        let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        ChunkedDecoder {
            state: State::SizeStart,
            limit,
            decoded: 0,
            size: 0,
            digits: 0,
            ext_bytes: 0,
            trailer_bytes: 0,
            trailer_line: 0,
            trailer_fields: 0,
            max_trailer_bytes: wide(head.head),
            max_trailer_line: wide(head.field_size),
            max_trailer_fields: wide(head.max_fields()),
        }
    }

    /// True once the last chunk and the trailer section (and its final
    /// CRLF) were consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes decoded so far.
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    /// Decodes as much of `input` as possible, appending body bytes to `body`.
    ///
    /// Returns how many bytes of `input` were consumed. This decoder keeps
    /// its own state, so it consumes all of `input` until the body ends;
    /// once done it consumes nothing more, leaving any pipelined bytes to
    /// the caller. Call again with the unconsumed rest plus new bytes.
    /// After an error, every later call returns the same error.
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, ChunkError> {
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        match self.run(input, body) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.state = State::Failed(e);
                Err(e)
            }
        }
    }

    fn run(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data { remaining } = self.state {
                // Bulk copy: the only place chunk data goes is `body`.
                let avail = input.len() - i;
                let take = usize::try_from(remaining).map_or(avail, |r| r.min(avail));
                body.extend_from_slice(&input[i..i + take]);
                i += take;
                // `take` <= `remaining`, so neither can wrap.
                let take = take as u64;
                self.decoded += take;
                let left = remaining - take;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining: left }
                };
                continue;
            }
            if self.state == State::Done {
                break;
            }
            self.step(input[i])?;
            i += 1;
        }
        Ok(i)
    }

    /// Advances the state machine by one byte (never in `Data`).
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        self.state = match self.state {
            SizeStart => {
                let Some(d) = hex_value(b) else {
                    return Err(ChunkError::bad("chunk size is not a hex number"));
                };
                self.size = 0;
                self.digits = 0;
                self.push_digit(d)?;
                Size
            }
            Size => {
                if let Some(d) = hex_value(b) {
                    self.push_digit(d)?;
                    Size
                } else {
                    // The size is complete: a well-formed one over the limit is 413 (a malformed
                    // one, e.g. 17 digits, was 400 above).
                    self.check_limit()?;
                    match b {
                        b'\r' => SizeLf,
                        b';' => {
                            self.count_ext()?;
                            ExtBeforeName
                        }
                        b' ' | b'\t' => {
                            self.count_ext()?;
                            ExtAfterItem { ws: true }
                        }
                        b'\n' => return Err(ChunkError::bad("bare LF in chunk size line")),
                        _ => return Err(ChunkError::bad("chunk size is not a hex number")),
                    }
                }
            }
            ExtAfterItem { ws } => match b {
                b'\r' if ws => return Err(ChunkError::bad("whitespace at end of chunk size line")),
                b'\r' => SizeLf,
                b' ' | b'\t' => {
                    self.count_ext()?;
                    ExtAfterItem { ws: true }
                }
                b';' => {
                    self.count_ext()?;
                    ExtBeforeName
                }
                b'\n' => return Err(ChunkError::bad("bare LF in chunk size line")),
                _ => return Err(ChunkError::bad("malformed chunk extension")),
            },
            ExtBeforeName => {
                self.count_ext()?;
                match b {
                    b' ' | b'\t' => ExtBeforeName,
                    _ if is_tchar(b) => ExtName,
                    _ => return Err(ChunkError::bad("malformed chunk extension name")),
                }
            }
            ExtName => match b {
                b'\r' => SizeLf,
                b'\n' => return Err(ChunkError::bad("bare LF in chunk size line")),
                _ => {
                    self.count_ext()?;
                    match b {
                        _ if is_tchar(b) => ExtName,
                        b'=' => ExtBeforeValue,
                        b';' => ExtBeforeName,
                        b' ' | b'\t' => ExtAfterName,
                        _ => return Err(ChunkError::bad("malformed chunk extension name")),
                    }
                }
            },
            ExtAfterName => {
                self.count_ext()?;
                match b {
                    b' ' | b'\t' => ExtAfterName,
                    b'=' => ExtBeforeValue,
                    b';' => ExtBeforeName,
                    b'\r' => return Err(ChunkError::bad("whitespace at end of chunk size line")),
                    _ => return Err(ChunkError::bad("malformed chunk extension")),
                }
            }
            ExtBeforeValue => {
                self.count_ext()?;
                match b {
                    b' ' | b'\t' => ExtBeforeValue,
                    b'"' => ExtQuoted,
                    _ if is_tchar(b) => ExtTokenValue,
                    _ => return Err(ChunkError::bad("malformed chunk extension value")),
                }
            }
            ExtTokenValue => match b {
                b'\r' => SizeLf,
                b'\n' => return Err(ChunkError::bad("bare LF in chunk size line")),
                _ => {
                    self.count_ext()?;
                    match b {
                        _ if is_tchar(b) => ExtTokenValue,
                        b';' => ExtBeforeName,
                        b' ' | b'\t' => ExtAfterItem { ws: true },
                        _ => return Err(ChunkError::bad("malformed chunk extension value")),
                    }
                }
            },
            ExtQuoted => {
                self.count_ext()?;
                match b {
                    b'"' => ExtAfterItem { ws: false },
                    b'\\' => ExtQuotedPair,
                    // qdtext: HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                    b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => ExtQuoted,
                    _ => return Err(ChunkError::bad("control byte in chunk extension")),
                }
            }
            ExtQuotedPair => {
                self.count_ext()?;
                match b {
                    // quoted-pair: "\" ( HTAB / SP / VCHAR / obs-text )
                    b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => ExtQuoted,
                    _ => return Err(ChunkError::bad("control byte in chunk extension")),
                }
            }
            SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError::bad("bare CR in chunk size line"));
                }
                if self.size == 0 {
                    TrailerStart
                } else {
                    Data {
                        remaining: self.size,
                    }
                }
            }
            DataCr => match b {
                b'\r' => DataLf,
                _ => return Err(ChunkError::bad("chunk data not followed by CRLF")),
            },
            DataLf => match b {
                b'\n' => SizeStart,
                _ => return Err(ChunkError::bad("chunk data not followed by CRLF")),
            },
            TrailerStart => match b {
                b'\r' => FinalLf,
                b' ' | b'\t' => return Err(ChunkError::bad("obs-fold or whitespace in trailers")),
                _ if is_tchar(b) => {
                    self.trailer_fields += 1;
                    if self.trailer_fields > self.max_trailer_fields {
                        return Err(ChunkError::TOO_MANY_TRAILER_FIELDS);
                    }
                    self.trailer_line = 0;
                    self.count_trailer()?;
                    self.count_trailer_line()?;
                    TrailerName
                }
                _ => return Err(ChunkError::bad("malformed trailer field name")),
            },
            TrailerName => {
                self.count_trailer()?;
                self.count_trailer_line()?;
                match b {
                    b':' => TrailerValue,
                    _ if is_tchar(b) => TrailerName,
                    _ => return Err(ChunkError::bad("malformed trailer field name")),
                }
            }
            TrailerValue => {
                self.count_trailer()?;
                if b != b'\r' {
                    self.count_trailer_line()?;
                }
                match b {
                    b'\r' => TrailerLf,
                    b'\t' | b' '..=0x7e | 0x80..=0xff => TrailerValue,
                    b'\n' => return Err(ChunkError::bad("bare LF in trailers")),
                    _ => return Err(ChunkError::bad("control byte in trailer value")),
                }
            }
            TrailerLf => {
                self.count_trailer()?;
                match b {
                    b'\n' => TrailerStart,
                    _ => return Err(ChunkError::bad("bare CR in trailers")),
                }
            }
            FinalLf => match b {
                b'\n' => Done,
                _ => return Err(ChunkError::bad("bare CR at end of chunked body")),
            },
            // `run` never steps in these states.
            Data { .. } | Done => return Err(ChunkError::bad("internal decoder state")),
            Failed(e) => return Err(e),
        };
        Ok(())
    }

    /// Appends one hex digit to the chunk-size, checking length and limit.
    fn push_digit(&mut self, d: u8) -> Result<(), ChunkError> {
        if self.digits >= MAX_SIZE_DIGITS {
            return Err(ChunkError::bad("chunk size has too many digits"));
        }
        self.digits += 1;
        self.size = self
            .size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(d)))
            .ok_or(ChunkError::bad("chunk size overflows"))?;
        Ok(())
    }

    /// Whether the chunk just announced fits within the body limit.
    fn check_limit(&self) -> Result<(), ChunkError> {
        if self.limit != 0 {
            match self.decoded.checked_add(self.size) {
                Some(total) if total <= self.limit => {}
                _ => return Err(ChunkError::TOO_LARGE),
            }
        }
        Ok(())
    }

    fn count_ext(&mut self) -> Result<(), ChunkError> {
        self.ext_bytes += 1;
        if self.ext_bytes > MAX_EXTENSION_BYTES {
            return Err(ChunkError::bad("chunk extensions too long"));
        }
        Ok(())
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.max_trailer_bytes {
            return Err(ChunkError::TRAILERS_TOO_LARGE);
        }
        Ok(())
    }

    fn count_trailer_line(&mut self) -> Result<(), ChunkError> {
        self.trailer_line += 1;
        if self.trailer_line > self.max_trailer_line {
            return Err(ChunkError::TRAILER_FIELD_TOO_LARGE);
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` in one call; returns (body, consumed, done).
    fn once(input: &[u8], limit: u64) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new(limit);
        let mut body = Vec::new();
        let n = d.decode(input, &mut body)?;
        Ok((body, n, d.is_done()))
    }

    fn status(input: &[u8]) -> u16 {
        status_with_limit(input, 0)
    }

    fn status_with_limit(input: &[u8], limit: u64) -> u16 {
        match once(input, limit) {
            Ok((_, _, done)) => panic!(
                "accepted (done: {done}): {:?}",
                String::from_utf8_lossy(input)
            ),
            Err(e) => e.status,
        }
    }

    /// Feeds `pieces` in turn like a caller would (see `fuzz_checks::feed`), default limits.
    fn feed(pieces: &[&[u8]], limit: u64) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        crate::http::fuzz_checks::feed(pieces, limit, &crate::http::HeadLimits::default())
    }

    fn decoded(input: &[u8]) -> Vec<u8> {
        let (body, n, done) = once(input, 0).unwrap();
        assert!(done);
        assert_eq!(n, input.len());
        body
    }

    #[test]
    fn simple_body() {
        assert_eq!(decoded(b"5\r\nhello\r\n0\r\n\r\n"), b"hello");
    }

    #[test]
    fn empty_body() {
        assert_eq!(decoded(b"0\r\n\r\n"), b"");
    }

    #[test]
    fn several_chunks() {
        assert_eq!(
            decoded(b"5\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"),
            b"hello world!"
        );
    }

    #[test]
    fn hex_case_and_leading_zeros() {
        let data = vec![b'x'; 0xab];
        let mut lower = b"ab\r\n".to_vec();
        lower.extend_from_slice(&data);
        lower.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(decoded(&lower), data);
        let upper = [b"AB".as_slice(), &lower[2..]].concat();
        assert_eq!(decoded(&upper), data);
        let mixed = [b"00aB".as_slice(), &lower[2..]].concat();
        assert_eq!(decoded(&mixed), data);
        // 16 digits is the most.
        assert_eq!(decoded(b"0000000000000003\r\nabc\r\n0\r\n\r\n"), b"abc");
    }

    #[test]
    fn last_chunk_of_several_zeros() {
        assert_eq!(decoded(b"3\r\nabc\r\n000\r\n\r\n"), b"abc");
        assert_eq!(decoded(b"0000000000000000\r\n\r\n"), b"");
    }

    #[test]
    fn extensions_skipped() {
        let cases: &[&[u8]] = &[
            b"3;a\r\nabc\r\n0\r\n\r\n",
            b"3;a=b\r\nabc\r\n0\r\n\r\n",
            b"3;a=b;c;d=e\r\nabc\r\n0;last=yes\r\n\r\n",
            b"3 ; a = b ;c\t;\td\t=\t\"x y\"\r\nabc\r\n0\r\n\r\n",
            b"3;name=\"quoted \\\"esc\\\" ;=\xff\"\r\nabc\r\n0\r\n\r\n",
            b"3;a=\"\"\r\nabc\r\n0\r\n\r\n",
            b"3;a=\"x\" ;b\r\nabc\r\n0\r\n\r\n",
            b"3;!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~\r\nabc\r\n0\r\n\r\n",
        ];
        for c in cases {
            assert_eq!(decoded(c), b"abc", "{:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn trailers_skipped() {
        assert_eq!(
            decoded(b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum:\t1 2\t3 \r\nEmpty:\r\n\r\n"),
            b"abc"
        );
        assert_eq!(decoded(b"0\r\nA:\xff\x80\r\n\r\n"), b"");
    }

    #[test]
    fn bad_chunk_sizes() {
        for c in [
            b"\r\nabc\r\n0\r\n\r\n".as_slice(),
            b"-3\r\nabc\r\n0\r\n\r\n",
            b"+3\r\nabc\r\n0\r\n\r\n",
            b" 3\r\nabc\r\n0\r\n\r\n",
            b"0x3\r\nabc\r\n0\r\n\r\n",
            b"g\r\n",
            b"3g\r\n",
            b";a\r\n",
            b"00000000000000003\r\nabc\r\n0\r\n\r\n",
            b"ffffffffffffffff0\r\n",
            b"\xff\r\n",
        ] {
            assert_eq!(status(c), 400, "{:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn huge_size_without_limit_is_accepted_as_announced() {
        let mut d = ChunkedDecoder::new(0);
        let mut body = Vec::new();
        let input = b"ffffffffffffffff\r\nabc";
        assert_eq!(d.decode(input, &mut body), Ok(input.len()));
        assert_eq!(body, b"abc");
        assert!(!d.is_done());
    }

    #[test]
    fn bad_extensions() {
        for c in [
            b"3;\r\nabc\r\n0\r\n\r\n".as_slice(),
            b"3; \r\n",
            b"3;=b\r\n",
            b"3;a=\r\n",
            b"3;a= \r\n",
            b"3;a=b c\r\n",
            b"3;a b\r\n",
            b"3;a=\"b\r\n",
            b"3;a=\"b\"c\r\n",
            b"3;a=\"b\x01\"\r\n",
            b"3;a=\"b\x7f\"\r\n",
            b"3;a=\"\\\x00\"\r\n",
            b"3;a=b@\r\n",
            b"3;a@\r\n",
            b"3;a=\xff\r\n",
            b"3 \r\n",
            b"3;a \r\n",
            b"3;a=b \r\n",
            b"3;a=\"b\" \r\n",
            b"3 x\r\n",
            b"3;a\x00\r\n",
        ] {
            assert_eq!(status(c), 400, "{:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn extension_bytes_limit() {
        // Exactly 4096 extension bytes over the body are fine...
        let ext = |n: usize| {
            let mut v = b";".to_vec();
            v.resize(n, b'a');
            v
        };
        let mut ok = b"3".to_vec();
        ok.extend_from_slice(&ext(2048));
        ok.extend_from_slice(b"\r\nabc\r\n0");
        ok.extend_from_slice(&ext(2048));
        ok.extend_from_slice(b"\r\n\r\n");
        assert_eq!(decoded(&ok), b"abc");
        // ...one more is not, even split over two chunk lines.
        let mut bad = b"3".to_vec();
        bad.extend_from_slice(&ext(2048));
        bad.extend_from_slice(b"\r\nabc\r\n0");
        bad.extend_from_slice(&ext(2049));
        bad.extend_from_slice(b"\r\n\r\n");
        assert_eq!(status(&bad), 400);
        // A long extension trickled one byte at a time.
        let mut d = ChunkedDecoder::new(0);
        let mut body = Vec::new();
        let mut line = b"1".to_vec();
        line.extend_from_slice(&ext(4096));
        for &b in &line {
            assert_eq!(d.decode(&[b], &mut body), Ok(1));
        }
        assert_eq!(d.decode(b"a", &mut body).unwrap_err().status, 400);
    }

    #[test]
    fn size_line_crlf() {
        assert_eq!(status(b"3\nabc\r\n0\r\n\r\n"), 400);
        assert_eq!(status(b"3\rabc\r\n0\r\n\r\n"), 400);
        assert_eq!(status(b"3\r\rabc"), 400);
        assert_eq!(status(b"3;a\nabc"), 400);
        assert_eq!(status(b"3;a=b\nabc"), 400);
        assert_eq!(status(b"3;a=\"b\"\nabc"), 400);
        assert_eq!(status(b"3;a=b\rabc"), 400);
        assert_eq!(status(b"0\n\r\n"), 400);
    }

    #[test]
    fn data_crlf() {
        assert_eq!(status(b"3\r\nabcd\r\n0\r\n\r\n"), 400);
        assert_eq!(status(b"3\r\nabc\n0\r\n\r\n"), 400);
        assert_eq!(status(b"3\r\nabc\r0\r\n\r\n"), 400);
        assert_eq!(status(b"3\r\nabc\r\r\n0\r\n\r\n"), 400);
        assert_eq!(status(b"3\r\nabc0\r\n\r\n"), 400);
    }

    #[test]
    fn bad_trailers() {
        for c in [
            b"0\r\nA: b\n\r\n".as_slice(),
            b"0\r\nA: b\rx\r\n",
            b"0\r\nA: b\r\n\n",
            b"0\r\nA: b\r\n\rx",
            b"0\r\n\n",
            b"0\r\n\rx",
            b"0\r\nA: b\r\n continued\r\n\r\n",
            b"0\r\nA: b\r\n\tcontinued\r\n\r\n",
            b"0\r\n A: b\r\n\r\n",
            b"0\r\nA : b\r\n\r\n",
            b"0\r\n: b\r\n\r\n",
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\nA@: b\r\n\r\n",
            b"0\r\nA: b\x00c\r\n\r\n",
            b"0\r\nA: b\x1bc\r\n\r\n",
            b"0\r\nA: b\x7fc\r\n\r\n",
        ] {
            assert_eq!(status(c), 400, "{:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn trailer_size_limit() {
        // 64 KiB of trailer bytes, line CRLFs included, is the most.
        let line = |len: usize| {
            let mut v = b"X:".to_vec();
            v.resize(len - 2, b'v');
            v.extend_from_slice(b"\r\n");
            v
        };
        let mut ok = b"0\r\n".to_vec();
        for _ in 0..8 {
            ok.extend_from_slice(&line(8192));
        }
        ok.extend_from_slice(b"\r\n");
        assert_eq!(decoded(&ok), b"");
        let mut bad = b"0\r\n".to_vec();
        for _ in 0..8 {
            bad.extend_from_slice(&line(8192));
        }
        bad.extend_from_slice(b"Y:\r\n\r\n");
        assert_eq!(status(&bad), 431);
    }

    #[test]
    fn body_limit() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(once(body, 11).unwrap().0, b"hello world");
        assert_eq!(once(body, 0).unwrap().0, b"hello world");
        assert_eq!(status_with_limit(body, 10), 413);
        assert_eq!(status_with_limit(body, 4), 413);
        // Detected from the size line alone, before any data arrives.
        let mut d = ChunkedDecoder::new(1000);
        let mut v = Vec::new();
        assert_eq!(d.decode(b"3e9", &mut v), Ok(3));
        assert_eq!(d.decode(b"\r", &mut v).unwrap_err().status, 413);
        assert!(v.is_empty());
        // Huge sizes against a limit: 413, not overflow.
        assert_eq!(status_with_limit(b"ffffffffffffffff\r\n", 1 << 40), 413);
        let mut two = b"1\r\na\r\nffffffffffffffff\r\n".to_vec();
        two.extend_from_slice(b"x");
        assert_eq!(status_with_limit(&two, u64::MAX), 413);
    }

    #[test]
    fn error_is_sticky_and_displays() {
        let mut d = ChunkedDecoder::new(0);
        let mut v = Vec::new();
        let e = d.decode(b"x", &mut v).unwrap_err();
        assert_eq!(e.to_string(), "400 chunk size is not a hex number");
        assert_eq!(d.decode(b"0\r\n\r\n", &mut v), Err(e));
        assert!(!d.is_done());
    }

    #[test]
    fn partial_input_is_not_done() {
        let full = b"3;a=b\r\nabc\r\n0\r\nT: v\r\n\r\n";
        for len in 0..full.len() {
            let (_, n, done) = once(&full[..len], 0).unwrap();
            assert!(!done, "{len}");
            assert_eq!(n, len);
        }
        assert!(once(full, 0).unwrap().2);
    }

    #[test]
    fn pipelined_bytes_left_unconsumed() {
        let enc = b"5\r\nhello\r\n0\r\nT: 1\r\n\r\n";
        let next = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let input = [enc.as_slice(), next].concat();
        let mut d = ChunkedDecoder::new(0);
        let mut body = Vec::new();
        assert_eq!(d.decode(&input, &mut body), Ok(enc.len()));
        assert!(d.is_done());
        assert_eq!(body, b"hello");
        // Once done, nothing more is consumed.
        assert_eq!(d.decode(next, &mut body), Ok(0));
        assert_eq!(d.decode(b"", &mut body), Ok(0));
        assert_eq!(body, b"hello");
    }

    const ENCODED: &[(&[u8], &[u8])] = &[
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (
            b"5 ;a=b\r\nhello\r\nA;x=\"q\\\"s;=\" ; y\r\n world!!!!\r\n000;z\r\nT: v\r\nU:\tw x\r\n\r\n",
            b"hello world!!!!",
        ),
        (
            b"1\r\nx\r\n00010\t;\tk\t=\tv\r\n0123456789abcdef\r\n0\r\nLong-Trailer: some value here\r\n\r\n",
            b"x0123456789abcdef",
        ),
        (b"0;only=ext\r\nA:b\r\n\r\n", b""),
    ];

    const PIPELINED: &[u8] = b"POST /next HTTP/1.1\r\n\r\n";

    /// Every split point and byte-at-a-time feeding give the same body and
    /// the same consumed total, leaving the pipelined request alone.
    #[test]
    fn any_split_gives_identical_results() {
        for &(enc, want) in ENCODED {
            let input = [enc, PIPELINED].concat();
            let (body, n, done) = once(&input, 0).unwrap();
            assert!(done);
            assert_eq!(body, want);
            assert_eq!(n, enc.len());
            for split in 0..=input.len() {
                let got = feed(&[&input[..split], &input[split..]], 0).unwrap();
                assert_eq!(got, (want.to_vec(), enc.len(), true), "split at {split}");
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(feed(&bytes, 0).unwrap(), (want.to_vec(), enc.len(), true));
            // Two splits, a sample of them.
            for a in (0..input.len()).step_by(3) {
                for b in (a..input.len()).step_by(5) {
                    let got = feed(&[&input[..a], &input[a..b], &input[b..]], 0).unwrap();
                    assert_eq!(got, (want.to_vec(), enc.len(), true), "splits {a} {b}");
                }
            }
        }
    }

    /// Errors, too, do not depend on where the input is split.
    #[test]
    fn any_split_gives_identical_errors() {
        let bad: &[(&[u8], u64)] = &[
            (b"3\r\nabc\r\n0\r\nA : b\r\n\r\n", 0),
            (b"3;a=\"b\r\nabc\r\n0\r\n\r\n", 0),
            (b"3\r\nabc\n0\r\n\r\n", 0),
            (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 10),
        ];
        for &(input, limit) in bad {
            let want = once(input, limit).unwrap_err();
            for split in 0..=input.len() {
                let got = feed(&[&input[..split], &input[split..]], limit);
                assert_eq!(got, Err(want), "split at {split}");
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(feed(&bytes, limit), Err(want));
        }
    }

    /// Every prefix and single-byte mutation gives a result, never a panic.
    #[test]
    fn no_panics_on_mutations() {
        let base = ENCODED[1].0;
        let interesting = [
            0u8, b'\r', b'\n', b' ', b'\t', b';', b'=', b'"', b'\\', b':', b'0', b'f', 0x7f, 0xff,
        ];
        let mut buf = base.to_vec();
        for i in 0..base.len() {
            for &b in &interesting {
                buf[i] = b;
                for limit in [0, 7, u64::MAX] {
                    let _ = once(&buf, limit);
                }
            }
            buf[i] = base[i];
        }
        let alphabet = b"0123abcF\r\n;= \t\":xZ\\\x00\xff";
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..3000 {
            let len = (x % 48) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                v.push(alphabet[x as usize % alphabet.len()]);
            }
            let _ = feed(&v.chunks(3).collect::<Vec<_>>(), u64::from(x % 64));
        }
    }

    fn trailer_status(trailers: &[u8], head: &HeadLimits) -> Result<(), u16> {
        let mut input = b"1\r\na\r\n0\r\n".to_vec();
        input.extend_from_slice(trailers);
        input.extend_from_slice(b"\r\n");
        let mut d = ChunkedDecoder::with_limits(0, head);
        let mut body = Vec::new();
        match d.decode(&input, &mut body) {
            Ok(n) => {
                assert!(d.is_done());
                assert_eq!(n, input.len());
                Ok(())
            }
            Err(e) => Err(e.status),
        }
    }

    #[test]
    fn trailer_limits_follow_head_limits() {
        let l = HeadLimits::default();
        // field_size: line length without CRLF.
        let line = |len: usize| {
            let mut v = b"X:".to_vec();
            v.resize(len, b'v');
            v.extend_from_slice(b"\r\n");
            v
        };
        assert_eq!(trailer_status(&line(8190), &l), Ok(()));
        assert_eq!(trailer_status(&line(8191), &l), Err(431));
        let mut name = vec![b'n'; 8191];
        name.extend_from_slice(b":\r\n");
        assert_eq!(trailer_status(&name, &l), Err(431));
        // fields.
        let fields = |n: usize| line(4).repeat(n);
        assert_eq!(trailer_status(&fields(100), &l), Ok(()));
        assert_eq!(trailer_status(&fields(101), &l), Err(431));
        let few = HeadLimits { fields: 2, ..l };
        assert_eq!(trailer_status(&fields(2), &few), Ok(()));
        assert_eq!(trailer_status(&fields(3), &few), Err(431));
        // head: total bytes, line CRLFs included.
        let small = HeadLimits { head: 12, ..l };
        assert_eq!(trailer_status(&line(4).repeat(2), &small), Ok(()));
        assert_eq!(
            trailer_status(&[line(4).repeat(2), b"Y:\r\n".to_vec()].concat(), &small),
            Err(431)
        );
        let tight = HeadLimits { field_size: 4, ..l };
        assert_eq!(trailer_status(&line(4), &tight), Ok(()));
        assert_eq!(trailer_status(&line(5), &tight), Err(431));
        // new() uses the defaults.
        let mut d = ChunkedDecoder::new(0);
        let mut input = b"0\r\n".to_vec();
        input.extend_from_slice(&line(8191));
        assert_eq!(d.decode(&input, &mut Vec::new()).unwrap_err().status, 431);
    }

    /// A trailer line over the limit is refused as it arrives, byte by byte.
    #[test]
    fn trailer_line_limit_while_trickling() {
        let l = HeadLimits {
            field_size: 100,
            ..HeadLimits::default()
        };
        let mut d = ChunkedDecoder::with_limits(0, &l);
        let mut body = Vec::new();
        assert_eq!(d.decode(b"0\r\nX:", &mut body), Ok(5));
        for _ in 0..98 {
            assert_eq!(d.decode(b"v", &mut body), Ok(1));
        }
        assert_eq!(d.decode(b"v", &mut body).unwrap_err().status, 431);
    }
}
