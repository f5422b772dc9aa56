//! Response encoding: status line and headers, body framing, chunks, and
//! the server's own small error responses.
//!
//! Everything is appended straight to the connection's output `Vec<u8>`;
//! numbers are formatted on the stack. What the WSGI application hands us
//! (status, header names and values) is validated first, because a CR or LF
//! slipping through would let it forge responses (response splitting).

use super::date::DateCache;
use super::request::{is_tchar, parse_u64_digits, trim_ows, Version};

/// How the response body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 only).
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 fallback).
    UntilClose,
    /// No body follows and its length is unknown (HEAD of a streamed response): neither
    /// Content-Length nor Transfer-Encoding is sent.
    NoBody,
}

/// Picks the body framing: the application's Content-Length wins; else a
/// body whose whole length is already known gets a Content-Length; else
/// chunked on HTTP/1.1 and close-delimited on HTTP/1.0.
pub fn choose_framing(
    version: Version,
    app_content_length: Option<u64>,
    known_body_len: Option<u64>,
) -> Framing {
    match (app_content_length, known_body_len, version) {
        (Some(n), _, _) | (None, Some(n), _) => Framing::Length(n),
        (None, None, Version::Http11) => Framing::Chunked,
        (None, None, Version::Http10) => Framing::UntilClose,
    }
}

/// Whether a response with this status carries a body on the wire:
/// never for HEAD, 1xx, 204 and 304 (RFC 9110 §6.4.1).
pub fn status_has_body(status: u16, head_request: bool) -> bool {
    !(head_request || (100..200).contains(&status) || status == 204 || status == 304)
}

/// Reason phrase for the status codes the server itself produces (and a
/// few more); generic "Client Error" / "Server Error" for the rest.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ if status < 400 => "Unknown",
        _ if status < 500 => "Client Error",
        _ => "Server Error",
    }
}

/// Something the application put in its response head that we refuse to
/// send. Nothing has been written when one of these is returned.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ResponseError {
    #[error("invalid status {0:?}: expected three digits (200-999), a space and a reason phrase without control characters")]
    BadStatus(String),
    #[error("invalid header name {0:?}: must be a non-empty RFC 9110 token")]
    BadHeaderName(String),
    #[error(
        "invalid value for header {0:?}: CR, LF, NUL and other control characters are not allowed"
    )]
    BadHeaderValue(String),
    #[error("hop-by-hop header {0:?} is not allowed in a WSGI response (PEP 3333)")]
    HopByHop(String),
    #[error("invalid Content-Length header value {0:?}: must be digits, fit in 64 bits and agree with earlier ones")]
    BadContentLength(String),
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes one response head into an output buffer, validating as it goes.
///
/// Created with the status line, fed the application's headers, then
/// either [`finish`](Self::finish)ed (server headers and the blank line are
/// added) or [`abort`](Self::abort)ed (the buffer is restored).
pub struct HeadWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    status: u16,
    has_date: bool,
    has_server: bool,
    content_length: Option<u64>,
}

impl<'a> HeadWriter<'a> {
    /// Validates `status` (`"200 OK"`) and writes the status line.
    pub fn new(
        out: &'a mut Vec<u8>,
        version: Version,
        status: &[u8],
    ) -> Result<HeadWriter<'a>, ResponseError> {
        let code = parse_status(status).ok_or_else(|| ResponseError::BadStatus(lossy(status)))?;
        let start = out.len();
        out.reserve(256);
        out.extend_from_slice(version.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status);
        out.extend_from_slice(b"\r\n");
        Ok(HeadWriter {
            out,
            start,
            status: code,
            has_date: false,
            has_server: false,
            content_length: None,
        })
    }

    /// The numeric status code.
    pub fn status_code(&self) -> u16 {
        self.status
    }

    /// The application's Content-Length, if it sent one.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Validates and appends `name: value`. On error nothing is written, so
    /// a caller may choose to skip a header (e.g. a hop-by-hop one, as
    /// gunicorn does) instead of failing the response.
    ///
    /// A repeated Content-Length with the same value is accepted once and
    /// not written twice.
    pub fn header(&mut self, name: &[u8], value: &[u8]) -> Result<(), ResponseError> {
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(ResponseError::BadHeaderName(lossy(name)));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(ResponseError::BadHeaderValue(lossy(name)));
        }
        if is_hop_by_hop(name) {
            return Err(ResponseError::HopByHop(lossy(name)));
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_u64_digits(trim_ows(value))
                .ok_or_else(|| ResponseError::BadContentLength(lossy(value)))?;
            match self.content_length {
                Some(prev) if prev != n => {
                    return Err(ResponseError::BadContentLength(lossy(value)))
                }
                Some(_) => return Ok(()),
                None => self.content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"date") {
            self.has_date = true;
        } else if name.eq_ignore_ascii_case(b"server") {
            self.has_server = true;
        }
        let out = &mut *self.out;
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Adds the server's headers and the blank line that ends the head.
    ///
    /// `Date` and `Server` are added unless the application sent them.
    /// `Framing::Length(n)` adds `Content-Length: n` unless the application
    /// sent one; `Chunked` adds `Transfer-Encoding: chunked`.
    /// For 1xx, 204 and 304 no Content-Length or Transfer-Encoding is added
    /// at all, whatever `framing` says (those responses never have a body).
    /// `!keep_alive` adds `Connection: close`, and so does `UntilClose`
    /// framing, since only the close can end such a body; a kept-alive
    /// HTTP/1.0 connection gets `Connection: keep-alive`.
    ///
    /// For HEAD, pass the framing a GET would get and send no body.
    pub fn finish(self, framing: Framing, keep_alive: bool, version: Version, date: &DateCache) {
        let has_body = status_has_body(self.status, false);
        let out = self.out;
        if !self.has_date {
            out.extend_from_slice(b"Date: ");
            out.extend_from_slice(date.header_value());
            out.extend_from_slice(b"\r\n");
        }
        if !self.has_server {
            out.extend_from_slice(b"Server: ringwsgi\r\n");
        }
        if has_body {
            match framing {
                Framing::Length(n) if self.content_length.is_none() => {
                    out.extend_from_slice(b"Content-Length: ");
                    push_decimal(out, n);
                    out.extend_from_slice(b"\r\n");
                }
                Framing::Length(_) | Framing::UntilClose | Framing::NoBody => {}
                Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            }
        }
        let keep_alive = keep_alive && !(has_body && framing == Framing::UntilClose);
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if version == Version::Http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Drops everything written since [`new`](Self::new).
    pub fn abort(self) {
        self.out.truncate(self.start);
    }
}

/// `NNN reason` → NNN, for 200..=999 and a reason of VCHAR / SP / HTAB /
/// obs-text (RFC 9112 §4). 1xx is refused: interim responses are the
/// server's business, not the application's.
fn parse_status(status: &[u8]) -> Option<u16> {
    let [a, b, c, b' ', reason @ ..] = status else {
        return None;
    };
    if !(a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit()) {
        return None;
    }
    let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    if code < 200
        || reason
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return None;
    }
    Some(code)
}

/// Connection-specific headers PEP 3333 forbids applications to send.
fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 8] = [
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Appends `n` in decimal (itoa: two digits per step).
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `n` in lowercase hex, formatted on the stack.
fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16]; // u64::MAX has 16 hex digits
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends one chunk (`<hex size>\r\n<data>\r\n`); nothing for empty data,
/// since an empty chunk would end the body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.reserve(data.len() + 20);
    push_hex(out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and the empty trailer section.
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Appends a complete small plain-text response for a server-side error,
/// e.g. `400 Bad Request\n`, with `Connection: close`. Codes outside
/// 100..=999 are sent as 500.
pub fn write_error_response(out: &mut Vec<u8>, status: u16, version: Version, date: &DateCache) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let reason = reason_phrase(status).as_bytes();
    // "NNN reason\n"
    let body_len = 3 + 1 + reason.len() + 1;
    out.reserve(160 + body_len);
    out.extend_from_slice(version.as_str().as_bytes());
    out.push(b' ');
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    push_decimal(out, body_len as u64);
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date.header_value());
    out.extend_from_slice(b"\r\nServer: ringwsgi\r\nConnection: close\r\n\r\n");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn date() -> DateCache {
        let mut d = DateCache::new();
        d.refresh(UNIX_EPOCH + Duration::from_secs(784_111_777));
        d
    }

    const DATE: &str = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

    fn head(
        status: &str,
        headers: &[(&str, &str)],
        framing: Framing,
        keep_alive: bool,
        version: Version,
    ) -> String {
        let mut out = Vec::new();
        let mut w = HeadWriter::new(&mut out, version, status.as_bytes()).unwrap();
        for (n, v) in headers {
            w.header(n.as_bytes(), v.as_bytes()).unwrap();
        }
        w.finish(framing, keep_alive, version, &date());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn basic_head_with_length() {
        let h = head(
            "200 OK",
            &[("Content-Type", "text/plain")],
            Framing::Length(5),
            true,
            Version::Http11,
        );
        assert_eq!(
            h,
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{DATE}Server: ringwsgi\r\nContent-Length: 5\r\n\r\n")
        );
    }

    #[test]
    fn chunked_and_close() {
        let h = head("201 Created", &[], Framing::Chunked, false, Version::Http11);
        assert_eq!(
            h,
            format!("HTTP/1.1 201 Created\r\n{DATE}Server: ringwsgi\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        );
    }

    #[test]
    fn http10_keep_alive_and_until_close() {
        let h = head("200 OK", &[], Framing::Length(0), true, Version::Http10);
        assert_eq!(
            h,
            format!("HTTP/1.0 200 OK\r\n{DATE}Server: ringwsgi\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n")
        );
        // UntilClose forces the close even if the caller asked for keep-alive.
        let h = head("200 OK", &[], Framing::UntilClose, true, Version::Http10);
        assert_eq!(
            h,
            format!("HTTP/1.0 200 OK\r\n{DATE}Server: ringwsgi\r\nConnection: close\r\n\r\n")
        );
    }

    #[test]
    fn app_date_server_and_content_length_win() {
        let h = head(
            "200 OK",
            &[
                ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
                ("SERVER", "app"),
                ("content-length", "3"),
            ],
            Framing::Length(3),
            true,
            Version::Http11,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\nSERVER: app\r\ncontent-length: 3\r\n\r\n"
        );
    }

    #[test]
    fn content_length_tracking() {
        let mut out = Vec::new();
        let mut w = HeadWriter::new(&mut out, Version::Http11, b"200 OK").unwrap();
        assert_eq!(w.content_length(), None);
        w.header(b"Content-Length", b" 12 ").unwrap();
        assert_eq!(w.content_length(), Some(12));
        // Same value again: accepted, written once.
        w.header(b"content-length", b"12").unwrap();
        for bad in [
            &b"13"[..],
            b"",
            b"-1",
            b"1.0",
            b"18446744073709551616",
            b"1,1",
        ] {
            assert!(matches!(
                w.header(b"Content-Length", bad),
                Err(ResponseError::BadContentLength(_))
            ));
        }
        assert_eq!(w.content_length(), Some(12));
        w.finish(Framing::Length(12), true, Version::Http11, &date());
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.matches("ontent-").count(), 1, "{s}");
    }

    #[test]
    fn bodyless_statuses_get_no_framing_headers() {
        for status in ["204 No Content", "304 Not Modified"] {
            let h = head(status, &[], Framing::Length(0), true, Version::Http11);
            assert!(!h.contains("Content-Length"), "{h}");
            let h = head(status, &[], Framing::Chunked, true, Version::Http11);
            assert!(!h.contains("Transfer-Encoding"), "{h}");
            // No body, so nothing to delimit by closing either.
            let h = head(status, &[], Framing::UntilClose, true, Version::Http11);
            assert!(!h.contains("Connection"), "{h}");
        }
        // HEAD keeps the GET framing: the caller passes it and sends no body.
        let h = head("200 OK", &[], Framing::Length(1234), true, Version::Http11);
        assert!(h.contains("Content-Length: 1234\r\n"));
    }

    #[test]
    fn status_validation() {
        let mut out = b"keep".to_vec();
        for bad in [
            &b"100 Continue"[..],
            b"101 Switching Protocols",
            b"199 x",
            b"099 x",
            b"000 x",
            b"200",
            b"200OK",
            b"20 OK",
            b"2000 OK",
            b"20x OK",
            b"abc OK",
            b"",
            b" 200 OK",
            b"200 OK\r\nX: y",
            b"200 OK\n",
            b"200 O\x00K",
            b"200 O\x7fK",
        ] {
            assert!(
                matches!(
                    HeadWriter::new(&mut out, Version::Http11, bad),
                    Err(ResponseError::BadStatus(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(out, b"keep");
        for (good, code) in [
            (&b"200 "[..], 200),
            (b"404 Not Found", 404),
            (b"999 x\ty", 999),
            (b"200 \xc3\xa9", 200),
        ] {
            let w = HeadWriter::new(&mut out, Version::Http11, good).unwrap();
            assert_eq!(w.status_code(), code);
            w.abort();
        }
        assert_eq!(out, b"keep");
    }

    #[test]
    fn header_validation() {
        let mut out = Vec::new();
        let mut w = HeadWriter::new(&mut out, Version::Http11, b"200 OK").unwrap();
        let cases: &[(&[u8], &[u8])] = &[
            (b"X-A", b"a\r\nSet-Cookie: evil"),
            (b"X-A", b"a\rb"),
            (b"X-A", b"a\nb"),
            (b"X-A", b"a\x00b"),
            (b"X-A", b"a\x1bb"),
            (b"X-A", b"a\x7fb"),
        ];
        for (n, v) in cases {
            assert_eq!(
                w.header(n, v),
                Err(ResponseError::BadHeaderValue("X-A".into()))
            );
        }
        for n in [&b""[..], b"X A", b"X:A", b"X\r\nA", b"X(A)", b"\xc3\xa9"] {
            assert!(matches!(
                w.header(n, b"v"),
                Err(ResponseError::BadHeaderName(_))
            ));
        }
        for n in [
            &b"Connection"[..],
            b"keep-alive",
            b"Proxy-Authenticate",
            b"proxy-authorization",
            b"TE",
            b"Trailer",
            b"Transfer-Encoding",
            b"UPGRADE",
        ] {
            assert_eq!(w.header(n, b"x"), Err(ResponseError::HopByHop(lossy(n))));
        }
        // Allowed: HTAB, obs-text, empty value, token punctuation in names.
        w.header(b"X-Tab", b"a\tb").unwrap();
        w.header(b"X-Utf8", "é".as_bytes()).unwrap();
        w.header(b"X-Empty", b"").unwrap();
        w.header(b"X!#$%&'*+-.^_`|~1", b"v").unwrap();
        w.header(b"TEx", b"v").unwrap();
        w.finish(Framing::Length(0), true, Version::Http11, &date());
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("HTTP/1.1 200 OK\r\nX-Tab: a\tb\r\nX-Utf8: é\r\nX-Empty: \r\n"),
            "{s}"
        );
    }

    #[test]
    fn error_messages_name_the_header() {
        let msg = ResponseError::BadHeaderValue("X-Foo".into()).to_string();
        assert!(msg.contains("X-Foo"), "{msg}");
        let msg = ResponseError::HopByHop("Connection".into()).to_string();
        assert!(msg.contains("Connection"), "{msg}");
        let msg = ResponseError::BadContentLength("abc".into()).to_string();
        assert!(
            msg.contains("Content-Length") && msg.contains("abc"),
            "{msg}"
        );
    }

    #[test]
    fn abort_restores_buffer() {
        let mut out = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        let before = out.clone();
        let mut w = HeadWriter::new(&mut out, Version::Http11, b"500 Oops").unwrap();
        w.header(b"X-A", b"1").unwrap();
        assert!(w.header(b"X-B", b"\n").is_err());
        w.abort();
        assert_eq!(out, before);
    }

    #[test]
    fn framing_choice() {
        use Version::*;
        assert_eq!(choose_framing(Http11, Some(5), Some(7)), Framing::Length(5));
        assert_eq!(choose_framing(Http10, Some(5), None), Framing::Length(5));
        assert_eq!(choose_framing(Http11, None, Some(7)), Framing::Length(7));
        assert_eq!(choose_framing(Http10, None, Some(0)), Framing::Length(0));
        assert_eq!(choose_framing(Http11, None, None), Framing::Chunked);
        assert_eq!(choose_framing(Http10, None, None), Framing::UntilClose);
    }

    #[test]
    fn body_presence() {
        assert!(status_has_body(200, false));
        assert!(status_has_body(404, false));
        assert!(!status_has_body(200, true));
        assert!(!status_has_body(100, false));
        assert!(!status_has_body(199, false));
        assert!(!status_has_body(204, false));
        assert!(!status_has_body(304, false));
        assert!(status_has_body(205, false));
    }

    #[test]
    fn chunk_encoding() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"");
        assert!(out.is_empty());
        write_chunk(&mut out, b"hello");
        write_chunk(&mut out, &[b'x'; 26]);
        write_last_chunk(&mut out);
        let mut expected = b"5\r\nhello\r\n1a\r\n".to_vec();
        expected.extend_from_slice(&[b'x'; 26]);
        expected.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, expected);
        let mut out = Vec::new();
        write_chunk(&mut out, &vec![0u8; 0x10000]);
        assert!(out.starts_with(b"10000\r\n"));
        assert!(out.ends_with(b"\x00\r\n"));
    }

    #[test]
    fn number_formatting() {
        for n in [
            0u64,
            1,
            9,
            10,
            99,
            100,
            12345,
            99_999_999,
            100_000_000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            let mut out = Vec::new();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
    }

    #[test]
    fn error_responses() {
        let mut out = b"prev".to_vec();
        write_error_response(&mut out, 400, Version::Http11, &date());
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            format!(
                "prevHTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\n{DATE}Server: ringwsgi\r\nConnection: close\r\n\r\n400 Bad Request\n"
            )
        );
        for status in [
            400u16, 404, 408, 413, 414, 417, 431, 500, 501, 503, 504, 505, 418, 0, 1000,
        ] {
            let mut out = Vec::new();
            write_error_response(&mut out, status, Version::Http10, &date());
            let s = String::from_utf8(out).unwrap();
            assert!(s.starts_with("HTTP/1.0 "), "{s}");
            let (head, body) = s.split_once("\r\n\r\n").unwrap();
            let cl: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(cl, body.len());
            assert!(body.ends_with('\n'));
            assert!(head.contains("\r\nConnection: close"));
        }
        assert_eq!(reason_phrase(505), "HTTP Version Not Supported");
        assert_eq!(reason_phrase(418), "Client Error");
        assert_eq!(reason_phrase(599), "Server Error");
        assert_eq!(reason_phrase(299), "Unknown");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    }

    #[test]
    fn finish_uses_current_date() {
        let d = DateCache::new();
        let mut out = Vec::new();
        HeadWriter::new(&mut out, Version::Http11, b"200 OK")
            .unwrap()
            .finish(Framing::Length(0), true, Version::Http11, &d);
        let needle = [b"Date: ", d.header_value()].concat();
        assert!(out.windows(needle.len()).any(|w| w == needle.as_slice()));
    }
}
