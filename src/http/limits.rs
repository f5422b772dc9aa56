//! Size limits on request heads and the line scanner that enforces them.
//!
//! [`HeadLimits`] carries gunicorn's defaults (`limit_request_line`,
//! `limit_request_fields`, `limit_request_field_size`, plus a cap on the
//! whole head). One scanner walks the head line by line (one `memchr` for
//! LF per line) and is used twice:
//!
//! - by [`parse_head`](super::parse_head), on a complete head, to find the
//!   request line and the head's end, refuse bare LF and leading whitespace,
//!   and apply the limits;
//! - by [`check_partial_head`], on every receive of a head that is not yet
//!   complete, to refuse an oversized request line or header block as soon
//!   as it is known to be one, without buffering it whole. It resumes from a
//!   [`ScanState`], so each call costs only the newly received bytes.
//!
//! Both apply the same rules, line by line, so a head refused while it
//! arrives is refused once complete as well.

use memchr::memchr;

use super::request::{ParseError, MAX_HEADERS};

/// Limits on a request head (gunicorn's defaults).
///
/// Line lengths exclude the line's CRLF. `fields` is clamped to
/// [`MAX_HEADERS`] (the size of the header slot array): configuring more
/// has the effect of [`MAX_HEADERS`], see [`HeadLimits::max_fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request line (method, target, version); over it: 414.
    pub request_line: usize,
    /// Most header fields; over it: 431. Clamped to [`MAX_HEADERS`].
    pub fields: usize,
    /// Longest header line (name, colon, whitespace, value and its CRLF, as gunicorn counts
    /// it); over it: 431.
    pub field_size: usize,
    /// Longest head, request line to final CRLFCRLF inclusive; over it: 431.
    pub head: usize,
}

impl Default for HeadLimits {
    /// 8190-byte request line, 100 fields of at most 8190 bytes, 64 KiB head.
    fn default() -> Self {
        HeadLimits {
            request_line: 8190,
            fields: 100,
            field_size: 8190,
            head: 64 * 1024,
        }
    }
}

impl HeadLimits {
    /// The number of header fields actually allowed: `fields`, at most
    /// [`MAX_HEADERS`].
    pub fn max_fields(&self) -> usize {
        self.fields.min(MAX_HEADERS)
    }
}

pub(crate) const REQUEST_LINE_TOO_LONG: ParseError = ParseError {
    status: 414,
    reason: "request line too long",
};
pub(crate) const TOO_MANY_FIELDS: ParseError = ParseError {
    status: 431,
    reason: "too many header fields",
};
pub(crate) const FIELD_TOO_LARGE: ParseError = ParseError {
    status: 431,
    reason: "header field too large",
};
pub(crate) const HEAD_TOO_LARGE: ParseError = ParseError {
    status: 431,
    reason: "request head too large",
};
const BARE_LF: ParseError = ParseError::bad("bare LF in request head");
const EMPTY_REQUEST_LINE: ParseError = ParseError::bad("empty request line");
const LEADING_WHITESPACE: ParseError =
    ParseError::bad("obs-fold or whitespace at the start of a header line");

/// How far [`check_partial_head`] got through a head; resume point for the
/// next call.
///
/// Positions are relative to the start of the buffer passed in, which must
/// be the start of the request head. Start each request with
/// `ScanState::default()` (and start again if the head moves in memory
/// *relative to its own start*, which compaction of the buffer does not
/// do). A state whose positions lie past the end of the buffer is reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanState {
    /// Bytes already examined.
    scanned: usize,
    /// Start of the line being read.
    line_start: usize,
    /// Complete lines so far, the request line included (a skipped leading
    /// empty line is not counted).
    lines: usize,
    /// The request line, without CRLF, once complete.
    request_line: (usize, usize),
    /// Length of the head, once its final CRLF was seen.
    head_len: Option<usize>,
}

impl ScanState {
    /// Nothing scanned yet (same as `ScanState::default()`, usable in
    /// `const` contexts).
    pub const fn new() -> Self {
        ScanState {
            scanned: 0,
            line_start: 0,
            lines: 0,
            request_line: (0, 0),
            head_len: None,
        }
    }
}

/// Result of scanning a (possibly incomplete) head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// No empty line yet.
    Partial,
    /// The head is complete.
    Complete {
        /// `buf[start..end]` is the request line, without CRLF.
        request_line: (usize, usize),
        /// Bytes of the head, including the final CRLFCRLF (and a skipped
        /// leading CRLF, if any).
        head_len: usize,
    },
}

/// Walks the complete lines of `buf` not examined yet, applying the line
/// rules and limits; stops at the empty line that ends the head.
///
/// Rules: every LF is preceded by CR; one empty line before the request
/// line is ignored (RFC 9112 §2.2), a second one is an error; no header
/// line starts with SP or HTAB (obs-fold, RFC 9112 §5.2).
pub(crate) fn scan(
    buf: &[u8],
    limits: &HeadLimits,
    st: &mut ScanState,
) -> Result<Scan, ParseError> {
    if let Some(head_len) = st.head_len {
        if head_len <= buf.len() {
            return Ok(Scan::Complete {
                request_line: st.request_line,
                head_len,
            });
        }
    }
    if st.scanned > buf.len() || st.line_start > st.scanned || st.head_len.is_some() {
        *st = ScanState::default();
    }
    let max_fields = limits.max_fields();
    let mut from = st.scanned;
    while let Some(off) = memchr(b'\n', &buf[from..]) {
        let lf = from + off;
        from = lf + 1;
        st.scanned = from;
        // The byte before a line start is LF, so a CR before this LF lies
        // inside the line: `cr >= start` below.
        if lf == 0 || buf[lf - 1] != b'\r' {
            return Err(BARE_LF);
        }
        let start = st.line_start;
        let cr = lf - 1;
        let len = cr - start;
        st.line_start = from;
        if st.lines == 0 {
            if len == 0 {
                if start == 0 {
                    continue;
                }
                return Err(EMPTY_REQUEST_LINE);
            }
            if len > limits.request_line {
                return Err(REQUEST_LINE_TOO_LONG);
            }
            st.request_line = (start, cr);
            st.lines = 1;
        } else if len == 0 {
            if from > limits.head {
                return Err(HEAD_TOO_LARGE);
            }
            st.head_len = Some(from);
            return Ok(Scan::Complete {
                request_line: st.request_line,
                head_len: from,
            });
        } else {
            if matches!(buf[start], b' ' | b'\t') {
                return Err(LEADING_WHITESPACE);
            }
            if len + 2 > limits.field_size {
                return Err(FIELD_TOO_LARGE);
            }
            st.lines += 1;
            if st.lines - 1 > max_fields {
                return Err(TOO_MANY_FIELDS);
            }
        }
        if from > limits.head {
            return Err(HEAD_TOO_LARGE);
        }
    }
    st.scanned = buf.len();
    Ok(Scan::Partial)
}

/// For an incomplete head (no CRLFCRLF yet): whether it is already known
/// to be unacceptable, so the caller can answer and close without
/// buffering more of it.
///
/// `buf` starts at the request head and holds everything received of it;
/// `state` is this head's resume point (see [`ScanState`]); each call
/// examines only the bytes added since the previous one.
///
/// Returns:
/// - `Some` 414 when the request line (complete or not, CRLF excluded) is
///   longer than `limits.request_line`: a 1 MiB request line is refused
///   after `request_line` bytes;
/// - `Some` 431 when a header line (complete or not) is longer than
///   `limits.field_size`, when there are more than
///   [`HeadLimits::max_fields`] header lines, or when `buf` is longer than
///   `limits.head`;
/// - `Some` 400 when a line rule is already broken (bare LF, a second empty
///   line before the request line, a header line starting with whitespace):
///   such a head can never be accepted, and a bare-LF head would otherwise
///   never be found complete by [`find_head_end`](super::find_head_end);
/// - `None` otherwise, including when `buf` holds a complete head (then
///   call [`parse_head`](super::parse_head)).
///
/// Once this returns an error, `parse_head` refuses the completed head
/// too, whatever follows (normally with the same status; a head breaking
/// two rules may be refused for the other one). Resuming gives the same
/// answer as one call on the same bytes with a fresh state, as long as the
/// earlier calls returned `None`.
pub fn check_partial_head(
    buf: &[u8],
    limits: &HeadLimits,
    state: &mut ScanState,
) -> Option<ParseError> {
    match scan(buf, limits, state) {
        Err(e) => Some(e),
        Ok(Scan::Complete { .. }) => None,
        Ok(Scan::Partial) => partial_line_error(buf, limits, state),
    }
}

/// Limits on the line still being received (after [`scan`] returned
/// `Partial` with `st`) and on the bytes buffered so far.
pub(crate) fn partial_line_error(
    buf: &[u8],
    limits: &HeadLimits,
    st: &ScanState,
) -> Option<ParseError> {
    let line = buf.get(st.line_start..).unwrap_or_default();
    // A CR at the very end may be the line's own CR: not counted.
    let len = line.len() - usize::from(line.last() == Some(&b'\r'));
    if st.lines == 0 {
        if len > limits.request_line {
            return Some(REQUEST_LINE_TOO_LONG);
        }
    } else if let Some(&first) = line.first() {
        if matches!(first, b' ' | b'\t') {
            return Some(LEADING_WHITESPACE);
        }
        if len + 2 > limits.field_size {
            return Some(FIELD_TOO_LARGE);
        }
        // A line not starting with CR is a header line, not the end.
        if first != b'\r' && st.lines > limits.max_fields() {
            return Some(TOO_MANY_FIELDS);
        }
    }
    if buf.len() > limits.head {
        return Some(HEAD_TOO_LARGE);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(buf: &[u8], limits: &HeadLimits) -> Option<u16> {
        check_partial_head(buf, limits, &mut ScanState::default()).map(|e| e.status)
    }

    /// Feeds `data` in `piece`-byte steps; returns (bytes fed when refused, status).
    fn feed(data: &[u8], piece: usize, limits: &HeadLimits) -> Option<(usize, u16)> {
        let mut st = ScanState::default();
        let mut len = 0;
        while len < data.len() {
            len = (len + piece).min(data.len());
            if let Some(e) = check_partial_head(&data[..len], limits, &mut st) {
                return Some((len, e.status));
            }
        }
        None
    }

    #[test]
    fn defaults() {
        let l = HeadLimits::default();
        assert_eq!(
            (l.request_line, l.fields, l.field_size, l.head),
            (8190, 100, 8190, 65536)
        );
        assert_eq!(l.max_fields(), 100);
        let many = HeadLimits {
            fields: 10_000,
            ..l
        };
        assert_eq!(many.max_fields(), MAX_HEADERS);
    }

    #[test]
    fn partial_heads_within_limits() {
        let l = HeadLimits::default();
        assert_eq!(check(b"", &l), None);
        assert_eq!(check(b"\r", &l), None);
        assert_eq!(check(b"\r\n", &l), None);
        assert_eq!(check(b"GET / HTTP/1.1\r", &l), None);
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\nX", &l), None);
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\n\r", &l), None);
        // A complete head is left to parse_head.
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", &l), None);
    }

    #[test]
    fn partial_heads_already_broken() {
        let l = HeadLimits::default();
        assert_eq!(check(b"GET / HTTP/1.1\nHost: a\n", &l), Some(400));
        assert_eq!(check(b"\n", &l), Some(400));
        assert_eq!(check(b"\r\n\r\n", &l), Some(400));
        assert_eq!(check(b"GET / HTTP/1.1\r\n Host: a", &l), Some(400));
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\n\tfold", &l), Some(400));
    }

    #[test]
    fn request_line_limit_exact() {
        let l = HeadLimits {
            request_line: 20,
            ..HeadLimits::default()
        };
        // "GET /" + padding + " HTTP/1.1": exactly 20 bytes is fine.
        let line = |n: usize| {
            let mut v = b"GET /".to_vec();
            v.resize(n - 9, b'a');
            v.extend_from_slice(b" HTTP/1.1");
            v
        };
        assert_eq!(check(&line(20), &l), None);
        assert_eq!(check(&[line(20).as_slice(), b"\r"].concat(), &l), None);
        assert_eq!(check(&[line(20).as_slice(), b"\r\n"].concat(), &l), None);
        assert_eq!(check(&line(21), &l), Some(414));
        assert_eq!(
            check(&[line(21).as_slice(), b"\r\n"].concat(), &l),
            Some(414)
        );
        // A skipped leading CRLF does not count.
        assert_eq!(
            check(&[b"\r\n".as_slice(), &line(20), b"\r"].concat(), &l),
            None
        );
    }

    #[test]
    fn field_size_limit_exact() {
        let l = HeadLimits {
            field_size: 10,
            ..HeadLimits::default()
        };
        let head = b"GET / HTTP/1.1\r\n";
        // The CRLF counts, as in gunicorn: 8 bytes + CRLF fit in 10.
        assert_eq!(check(&[head.as_slice(), b"X: 45678\r"].concat(), &l), None);
        assert_eq!(
            check(&[head.as_slice(), b"X: 45678\r\n"].concat(), &l),
            None
        );
        assert_eq!(
            check(&[head.as_slice(), b"X: 456789"].concat(), &l),
            Some(431)
        );
        assert_eq!(
            check(&[head.as_slice(), b"X: 456789\r\n"].concat(), &l),
            Some(431)
        );
    }

    #[test]
    fn fields_limit_exact() {
        let l = HeadLimits {
            fields: 3,
            ..HeadLimits::default()
        };
        let three = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n";
        assert_eq!(check(three, &l), None);
        assert_eq!(check(&[three.as_slice(), b"\r"].concat(), &l), None);
        assert_eq!(check(&[three.as_slice(), b"D"].concat(), &l), Some(431));
        assert_eq!(
            check(&[three.as_slice(), b"D: 4\r\n"].concat(), &l),
            Some(431)
        );
    }

    #[test]
    fn head_limit_exact() {
        let l = HeadLimits {
            head: 30,
            ..HeadLimits::default()
        };
        let mut v = b"GET / HTTP/1.1\r\nX: ".to_vec();
        v.resize(30, b'v');
        assert_eq!(check(&v, &l), None);
        v.push(b'v');
        assert_eq!(check(&v, &l), Some(431));
    }

    #[test]
    fn one_mib_request_line_in_16k_pieces() {
        let mut data = b"GET /".to_vec();
        data.resize(1 << 20, b'a');
        // Refused at the first receive past 8190 bytes: the second piece.
        assert_eq!(
            feed(&data, 16 * 1024, &HeadLimits::default()),
            Some((16 * 1024, 414))
        );
        // Byte by byte: at byte 8191.
        assert_eq!(feed(&data, 1, &HeadLimits::default()), Some((8191, 414)));
    }

    #[test]
    fn one_mib_header_block_in_16k_pieces() {
        let l = HeadLimits::default();
        // Many small fields: refused at the 101st field.
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        let mut i = 0;
        while many.len() < 1 << 20 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
            i += 1;
        }
        let (at, status) = feed(&many, 16 * 1024, &l).unwrap();
        assert_eq!((at, status), (16 * 1024, 431));
        // One huge field: refused once it passes 8190 bytes.
        let mut huge = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        huge.resize(1 << 20, b'v');
        assert_eq!(feed(&huge, 16 * 1024, &l), Some((16 * 1024, 431)));
        // Fields of legal size, but 1 MiB of them, with a high field count:
        // the head limit refuses it after 64 KiB.
        let l2 = HeadLimits { fields: 1000, ..l };
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        let line = {
            let mut v = b"X: ".to_vec();
            v.resize(8000, b'v');
            v.extend_from_slice(b"\r\n");
            v
        };
        while big.len() < 1 << 20 {
            big.extend_from_slice(&line);
        }
        assert_eq!(feed(&big, 16 * 1024, &l2), Some((5 * 16 * 1024, 431)));
    }

    /// Resuming gives the same verdict as one call on the whole buffer,
    /// for every split point.
    #[test]
    fn resume_matches_one_shot() {
        let l = HeadLimits {
            request_line: 20,
            fields: 2,
            field_size: 12,
            head: 60,
        };
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n",
            b"GET /aaaaaaaaaaaaaaaaaaaa HTTP/1.1",
            b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC",
            b"GET / HTTP/1.1\r\nA: 123456789012\r\n",
            b"GET / HTTP/1.1\r\nA: 1\nB",
            b"\r\nGET / HTTP/1.1\r\nA: 1234567\r\nB: 1234567\r\nC",
        ];
        for &c in cases {
            let want = check(c, &l);
            for split in 0..=c.len() {
                let mut st = ScanState::default();
                let first = check_partial_head(&c[..split], &l, &mut st);
                let got = first.or_else(|| check_partial_head(c, &l, &mut st));
                assert_eq!(got.map(|e| e.status), want, "{split} {:?}", c);
            }
        }
    }

    #[test]
    fn stale_state_is_reset() {
        let l = HeadLimits::default();
        let mut st = ScanState::default();
        assert_eq!(
            check_partial_head(b"GET / HTTP/1.1\r\nA: 1", &l, &mut st),
            None
        );
        // A shorter buffer (a new request) starts over instead of panicking.
        assert_eq!(check_partial_head(b"GE", &l, &mut st), None);
        assert_eq!(
            check_partial_head(b"\n", &l, &mut st).map(|e| e.status),
            Some(400)
        );
    }
}
