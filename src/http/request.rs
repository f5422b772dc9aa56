//! Request head parsing and the framing decisions that follow from it.
//!
//! The request line is parsed here, strictly (RFC 9112 §3: token method,
//! one SP, visible-ASCII target, one SP, `HTTP/` DIGIT `.` DIGIT); the
//! header block after it goes to `httparse::parse_headers`. Around that,
//! this file adds what `httparse` leaves to us: the line rules and size
//! limits ([`super::limits`]), the body framing (Content-Length /
//! Transfer-Encoding, RFC 9112 §6), the persistence rules (Connection,
//! §9.3), `Expect`, `Host` (RFC 3986 authority syntax), and a backstop
//! against control bytes in values. All results borrow the caller's buffer
//! and the caller's header slots, so parsing allocates nothing.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use httparse::Header;
use memchr::{memchr, memmem};

use super::limits::{self, HeadLimits, Scan, ScanState};

/// Size of the header slot array. [`HeadLimits::fields`] is clamped to it
/// (the default limit is 100 fields).
pub const MAX_HEADERS: usize = 128;

/// Storage for the parsed headers, filled by [`parse_head`].
pub type HeaderSlots<'b> = [Header<'b>; MAX_HEADERS];

/// Fresh header storage (a 4 KiB array on the stack; no heap allocation).
pub fn new_header_slots<'b>() -> HeaderSlots<'b> {
    [httparse::EMPTY_HEADER; MAX_HEADERS]
}

/// The HTTP versions we speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    /// HTTP/1.1, and any later HTTP/1.x (served as 1.1, RFC 9110 §2.5).
    Http11,
}

impl Version {
    /// The version as written on the wire, e.g. `"HTTP/1.1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no Content-Length and no Transfer-Encoding).
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head that could not be accepted.
///
/// Every value means: answer with `status` and close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct ParseError {
    /// 400, 414, 417, 431, 501 or 505.
    pub status: u16,
    /// Short human-readable cause, for logs.
    pub reason: &'static str,
}

impl ParseError {
    pub(crate) const fn bad(reason: &'static str) -> Self {
        ParseError {
            status: 400,
            reason,
        }
    }
}

const VERSION_NOT_SUPPORTED: ParseError = ParseError {
    status: 505,
    reason: "HTTP version not supported",
};

/// A parsed request head; every slice borrows the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'b, 'h> {
    /// The request line as sent, without its CRLF: `method SP target SP version`, each part
    /// checked (a token, visible ASCII, `HTTP/` and digits).
    pub line: &'b [u8],
    pub method: &'b str,
    /// Raw request-target, as sent (RAW_URI).
    pub target: &'b [u8],
    /// Still percent-encoded. For absolute-form targets (`http://host/p?q`)
    /// only the path part, `/` if empty. Any `#fragment` is dropped.
    pub path: &'b [u8],
    /// After the first `?`, without it (and without any `#fragment`); empty if none.
    pub query: &'b [u8],
    pub version: Version,
    pub headers: &'h [Header<'b>],
    /// Bytes of the head, including the final CRLFCRLF.
    pub head_len: usize,
    pub body: BodyFraming,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub expect_continue: bool,
    /// Value of the Host header, without surrounding whitespace; a valid
    /// RFC 3986 authority without userinfo (possibly empty).
    pub host: Option<&'b [u8]>,
}

impl<'b> Request<'b, '_> {
    /// Value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

static HEAD_END: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));

/// Index just past the first `\r\n\r\n` in `buf`.
///
/// The search starts at `from - 3`, so a caller that remembers how far it
/// already looked (`buf.len()` of the previous failed call) never rescans:
/// a client trickling bytes costs linear, not quadratic, time.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3).min(buf.len());
    HEAD_END.find(&buf[start..]).map(|i| start + i + 4)
}

/// Parses the request head at the start of `buf`, within `limits`.
///
/// Call once [`find_head_end`] found the end (before that, call
/// [`check_partial_head`](super::check_partial_head) on each receive);
/// `buf` may continue with body bytes or further pipelined requests, which
/// are left alone. An incomplete head is refused (400, or the limit it is
/// already over). `head_len` equals what `find_head_end(buf, 0)` returns.
pub fn parse_head<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut HeaderSlots<'b>,
    limits: &HeadLimits,
) -> Result<Request<'b, 'h>, ParseError> {
    let mut st = ScanState::default();
    let ((line_start, line_end), head_len) = match limits::scan(buf, limits, &mut st)? {
        Scan::Complete {
            request_line,
            head_len,
        } => (request_line, head_len),
        Scan::Partial => {
            return Err(limits::partial_line_error(buf, limits, &st)
                .unwrap_or(ParseError::bad("incomplete request head")))
        }
    };
    let line = &buf[line_start..line_end];
    let (method, target, version) = parse_request_line(line)?;

    // The scanner counted the header lines against the limit already.
    let block = &buf[line_end + 2..head_len];
    let slots = &mut slots[..limits.max_fields()];
    let headers: &'h [Header<'b>] = match httparse::parse_headers(block, slots) {
        Ok(httparse::Status::Complete((n, headers))) if n == block.len() => headers,
        Ok(_) => return Err(ParseError::bad("malformed header block")),
        Err(e) => return Err(map_httparse_error(e)),
    };

    let mut content_length: Option<u64> = None;
    let mut te = TeState::default();
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    let mut expect_bad = false;
    let mut host: Option<&'b [u8]> = None;

    for h in headers {
        let value = h.value;
        // Backstop for httparse's SIMD paths: only HTAB among the controls.
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(ParseError::bad("control character in header value"));
        }
        let name = h.name.as_bytes();
        // Dispatch on length first: most headers match none of these.
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                if host.is_some() {
                    return Err(ParseError::bad("duplicate Host header"));
                }
                let value = trim_ows(value);
                if !is_valid_host(value) {
                    return Err(ParseError::bad("invalid Host header"));
                }
                host = Some(value);
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if trim_ows(value).eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    expect_bad = true;
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in list_items(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        conn_keep_alive = true;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // RFC 9110 §8.6 lets a recipient accept `5, 5` or a repeated
                // equal header; we do not: any repetition is a smuggling risk.
                if content_length.is_some() {
                    return Err(ParseError::bad("repeated Content-Length"));
                }
                let n = parse_u64_digits(trim_ows(value))
                    .ok_or(ParseError::bad("invalid Content-Length"))?;
                content_length = Some(n);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => te.add(value),
            _ => {}
        }
    }

    let body = if te.present {
        // RFC 9112 §6.1: TE is unknown to 1.0 and, together with
        // Content-Length, a smuggling attempt; both are refused outright.
        if version == Version::Http10 {
            return Err(ParseError::bad("Transfer-Encoding in HTTP/1.0 request"));
        }
        if content_length.is_some() {
            return Err(ParseError::bad("both Content-Length and Transfer-Encoding"));
        }
        te.framing()?
    } else {
        match content_length {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::None,
        }
    };

    if version == Version::Http11 && host.is_none() {
        return Err(ParseError::bad("missing Host header"));
    }
    if expect_bad {
        return Err(ParseError {
            status: 417,
            reason: "unsupported expectation",
        });
    }
    let keep_alive = match version {
        Version::Http11 => !conn_close,
        Version::Http10 => conn_keep_alive && !conn_close,
    };
    // RFC 9110 §10.1.1: a 100-continue expectation from 1.0 is ignored.
    let expect_continue = expect_continue && version == Version::Http11;
    let (path, query) = split_target(target);

    Ok(Request {
        line,
        method,
        target,
        path,
        query,
        version,
        headers,
        head_len,
        body,
        keep_alive,
        expect_continue,
        host,
    })
}

/// Parses a request line (without its CRLF):
/// `method SP request-target SP HTTP-version`.
fn parse_request_line(line: &[u8]) -> Result<(&str, &[u8], Version), ParseError> {
    let sp = memchr(b' ', line).ok_or(ParseError::bad("malformed request line"))?;
    let (method, rest) = (&line[..sp], &line[sp + 1..]);
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(ParseError::bad("invalid method"));
    }
    let method = std::str::from_utf8(method).map_err(|_| ParseError::bad("invalid method"))?;
    // `GET /` with no version at all is an HTTP/0.9 simple request: a version we do not speak.
    let sp = memchr(b' ', rest).ok_or(VERSION_NOT_SUPPORTED)?;
    let (target, version) = (&rest[..sp], &rest[sp + 1..]);
    if target.is_empty() {
        return Err(ParseError::bad("empty request-target"));
    }
    // Visible ASCII only: no controls, no DEL, no raw non-ASCII bytes.
    if target.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
        return Err(ParseError::bad("invalid byte in request-target"));
    }
    if !valid_target_form(method, target) {
        return Err(ParseError::bad("malformed request-target"));
    }
    Ok((method, target, parse_version(version)?))
}

/// RFC 9112 §3.2: origin-form (`/path?query`), asterisk-form (`*`, OPTIONS only),
/// authority-form (`host:port`, CONNECT only) or absolute-form (`scheme://authority/path`,
/// whose authority must be a valid Host).
fn valid_target_form(method: &str, target: &[u8]) -> bool {
    match target {
        [b'/', ..] => true,
        b"*" => method == "OPTIONS",
        _ if method == "CONNECT" => !target.is_empty() && is_valid_host(target),
        _ => {
            let Some(colon) = memchr(b':', target) else {
                return false;
            };
            let (scheme, rest) = (&target[..colon], &target[colon + 1..]);
            let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
                && scheme
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
            let Some(hier) = rest.strip_prefix(b"//") else {
                return false;
            };
            let end = hier
                .iter()
                .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(hier.len());
            scheme_ok && end > 0 && is_valid_host(&hier[..end])
        }
    }
}

/// `HTTP/` DIGIT `.` DIGIT. Any `HTTP/1.x` is served as 1.1 (RFC 9110
/// §2.5: same major version, a minor we may not know); another major is
/// 505. For 505 a looser form (`HTTP/2`, `HTTP/10.0`) is recognised too,
/// as a version we merely do not speak; anything else is 400.
fn parse_version(v: &[u8]) -> Result<Version, ParseError> {
    if let [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] = *v {
        if major.is_ascii_digit() && minor.is_ascii_digit() {
            return match (major, minor) {
                (b'1', b'0') => Ok(Version::Http10),
                (b'1', _) => Ok(Version::Http11),
                _ => Err(VERSION_NOT_SUPPORTED),
            };
        }
    }
    if let Some(rest) = v.strip_prefix(b"HTTP/") {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let after = &rest[digits..];
        let minor_ok = match after {
            [] => true,
            [b'.', minor @ ..] => !minor.is_empty() && minor.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        if digits > 0 && minor_ok && &rest[..digits] != b"1" {
            return Err(VERSION_NOT_SUPPORTED);
        }
    }
    Err(ParseError::bad("invalid HTTP version"))
}

/// Whether `h` is a valid Host value (RFC 9110 §7.2, RFC 3986 §3.2):
/// `uri-host [ ":" port ]` where uri-host is an IP-literal (`[IPv6]`,
/// optionally with an RFC 6874 zone `%25...`, or `[vX.…]`) or a reg-name
/// (which covers IPv4); no userinfo. A colon needs port digits after it,
/// and the port is at most 65535. An empty value is allowed (§7.2).
pub(crate) fn is_valid_host(h: &[u8]) -> bool {
    let (host_ok, port) = if let Some(inner) = h.strip_prefix(b"[") {
        let Some(close) = memchr(b']', inner) else {
            return false;
        };
        let port = match &inner[close + 1..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return false,
        };
        (is_ip_literal(&inner[..close]), port)
    } else {
        match memchr(b':', h) {
            Some(i) => (is_reg_name(&h[..i]), Some(&h[i + 1..])),
            None => (is_reg_name(h), None),
        }
    };
    host_ok
        && match port {
            None => true,
            Some(p) => p.len() <= 5 && parse_u64_digits(p).is_some_and(|n| n <= 65535),
        }
}

/// RFC 3986 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `sub-delims`.
fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// `*( allowed / pct-encoded )`.
fn is_pct_run(s: &[u8], allowed: impl Fn(u8) -> bool) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            match s.get(i + 1..i + 3) {
                Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if allowed(s[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// RFC 3986 `reg-name` (an IPv4 address is one too).
fn is_reg_name(s: &[u8]) -> bool {
    is_pct_run(s, |b| is_unreserved(b) || is_sub_delim(b))
}

/// Inside the brackets of an RFC 3986 `IP-literal`.
fn is_ip_literal(s: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = s {
        // IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        let hex = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        return match &rest[hex..] {
            [b'.', tail @ ..] => {
                hex > 0
                    && !tail.is_empty()
                    && tail
                        .iter()
                        .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':')
            }
            _ => false,
        };
    }
    // IPv6address [ "%25" ZoneID ] (RFC 6874).
    let (addr, zone) = match memmem::find(s, b"%25") {
        Some(i) => (&s[..i], Some(&s[i + 3..])),
        None => (s, None),
    };
    let addr_ok = std::str::from_utf8(addr).is_ok_and(|a| a.parse::<Ipv6Addr>().is_ok());
    addr_ok && zone.is_none_or(|z| !z.is_empty() && is_pct_run(z, is_unreserved))
}

/// Splits a Host value into name and port: `example.com:8080`,
/// `[::1]:8080` and `[::1]` (brackets stay in the name, as in gunicorn).
/// An empty port (`host:`) gives `None`.
pub fn split_host(host: &[u8]) -> (&[u8], Option<&[u8]>) {
    let (name, port) = if host.first() == Some(&b'[') {
        match memchr(b']', host) {
            Some(i) => {
                let (name, rest) = host.split_at(i + 1);
                (name, rest.strip_prefix(b":"))
            }
            None => (host, None),
        }
    } else {
        match memchr(b':', host) {
            Some(i) => (&host[..i], Some(&host[i + 1..])),
            None => (host, None),
        }
    };
    (name, port.filter(|p| !p.is_empty()))
}

/// Maps an error of `httparse::parse_headers` onto the status to answer with.
fn map_httparse_error(e: httparse::Error) -> ParseError {
    match e {
        httparse::Error::TooManyHeaders => limits::TOO_MANY_FIELDS,
        httparse::Error::HeaderName => ParseError::bad("invalid header name"),
        httparse::Error::HeaderValue => ParseError::bad("invalid header value"),
        httparse::Error::NewLine => ParseError::bad("invalid line ending"),
        httparse::Error::Version | httparse::Error::Status | httparse::Error::Token => {
            ParseError::bad("malformed header block")
        }
    }
}

/// Transfer-Encoding codings seen so far, across all TE headers (which
/// together form one list, RFC 9110 §5.3).
#[derive(Default)]
struct TeState {
    present: bool,
    codings: u32,
    chunked_count: u32,
    last_is_chunked: bool,
    unknown: bool,
    malformed: bool,
}

impl TeState {
    fn add(&mut self, value: &[u8]) {
        self.present = true;
        for coding in list_items(value) {
            self.codings += 1;
            if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked_count += 1;
                self.last_is_chunked = true;
            } else {
                self.last_is_chunked = false;
                if coding.iter().all(|&b| is_tchar(b)) {
                    self.unknown = true;
                } else {
                    // Parameters or junk: not a coding we could even name.
                    self.malformed = true;
                }
            }
        }
    }

    fn framing(&self) -> Result<BodyFraming, ParseError> {
        if self.malformed || self.codings == 0 {
            return Err(ParseError::bad("malformed Transfer-Encoding"));
        }
        // A final coding other than chunked leaves the body's end unknowable, and chunked
        // twice is malformed, whatever the other codings (RFC 9112 §6.3): 400.
        if self.chunked_count != 1 || !self.last_is_chunked {
            return Err(ParseError::bad("malformed Transfer-Encoding"));
        }
        // Framed by chunked, but with a coding before it that this server does not decode.
        if self.unknown {
            return Err(ParseError {
                status: 501,
                reason: "unsupported transfer coding",
            });
        }
        Ok(BodyFraming::Chunked)
    }
}

/// Pure ASCII digits (no sign, no space, not empty) into a u64, or `None`
/// on overflow.
pub(crate) fn parse_u64_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Non-empty, OWS-trimmed elements of a comma-separated list. Empty
/// elements are skipped, as RFC 9110 §5.6.1 asks of recipients.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty())
}

/// Strips optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits a request-target into (path, query), dropping any fragment and,
/// for absolute-form, the scheme and authority.
fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let target = match memchr(b'#', target) {
        Some(i) => &target[..i],
        None => target,
    };
    let (before_query, query) = match memchr(b'?', target) {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, &b""[..]),
    };
    let path = if before_query.first() == Some(&b'/') {
        before_query
    } else if let Some(rest) = strip_scheme(before_query) {
        match memchr(b'/', rest) {
            Some(i) => &rest[i..],
            None => b"/",
        }
    } else {
        // asterisk-form (`*`) or authority-form (`host:port`): keep as is.
        before_query
    };
    (path, query)
}

/// For `scheme://rest`, returns `rest` (RFC 3986 scheme syntax).
fn strip_scheme(s: &[u8]) -> Option<&[u8]> {
    let colon = memchr(b':', s)?;
    let (scheme, rest) = s.split_at(colon);
    let (first, others) = scheme.split_first()?;
    let valid = first.is_ascii_alphabetic()
        && others
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !valid {
        return None;
    }
    rest.strip_prefix(b"://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Request<'_, '_>, ParseError> {
        // Leak the slots so tests can return a Request; fine in tests.
        let slots = Box::leak(Box::new(new_header_slots()));
        parse_head(buf, slots, &HeadLimits::default())
    }

    fn status(buf: &[u8]) -> u16 {
        match parse(buf) {
            Ok(_) => 0,
            Err(e) => e.status,
        }
    }

    #[test]
    fn simple_get() {
        let buf = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let r = parse(buf).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, b"/index.html");
        assert_eq!(r.path, b"/index.html");
        assert_eq!(r.query, b"");
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.head_len, buf.len());
        assert_eq!(r.body, BodyFraming::None);
        assert!(r.keep_alive);
        assert!(!r.expect_continue);
        assert_eq!(r.host, Some(&b"example.com"[..]));
        // Zero-copy: results point into the read buffer.
        let range = buf.as_ptr_range();
        assert!(range.contains(&r.path.as_ptr()));
        assert!(range.contains(&r.headers[0].value.as_ptr()));
    }

    #[test]
    fn version_as_str() {
        assert_eq!(Version::Http10.as_str(), "HTTP/1.0");
        assert_eq!(Version::Http11.as_str(), "HTTP/1.1");
    }

    #[test]
    fn error_display() {
        let e = ParseError::bad("x");
        assert_eq!(e.to_string(), "400 x");
    }

    #[test]
    fn pipelined_heads() {
        let buf = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
                    POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\
                    GET /c HTTP/1.0\r\n\r\n";
        let mut pos = 0;
        let mut paths = Vec::new();
        while pos < buf.len() {
            let end = find_head_end(&buf[pos..], 0).unwrap();
            let mut slots = new_header_slots();
            let r = parse_head(&buf[pos..], &mut slots, &HeadLimits::default()).unwrap();
            assert_eq!(r.head_len, end);
            paths.push(r.path.to_vec());
            pos += r.head_len;
            if let BodyFraming::Length(n) = r.body {
                assert_eq!(&buf[pos..pos + n as usize], b"abc");
                pos += n as usize;
            }
        }
        assert_eq!(paths, vec![b"/a".to_vec(), b"/b".to_vec(), b"/c".to_vec()]);
    }

    #[test]
    fn browser_get_with_20_headers() {
        let buf = b"GET /search?q=rust+wsgi&lang=en HTTP/1.1\r\n\
            Host: www.example.com\r\n\
            Connection: keep-alive\r\n\
            Cache-Control: max-age=0\r\n\
            sec-ch-ua: \"Chromium\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
            sec-ch-ua-mobile: ?0\r\n\
            sec-ch-ua-platform: \"Linux\"\r\n\
            Upgrade-Insecure-Requests: 1\r\n\
            User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n\
            Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
            Sec-Fetch-Site: none\r\n\
            Sec-Fetch-Mode: navigate\r\n\
            Sec-Fetch-User: ?1\r\n\
            Sec-Fetch-Dest: document\r\n\
            Accept-Encoding: gzip, deflate, br, zstd\r\n\
            Accept-Language: en-US,en;q=0.9\r\n\
            Cookie: session=abc123; theme=dark\r\n\
            If-None-Match: \"xyz\"\r\n\
            If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
            DNT: 1\r\n\
            Priority: u=0, i\r\n\r\n";
        let r = parse(buf).unwrap();
        assert_eq!(r.headers.len(), 20);
        assert_eq!(r.path, b"/search");
        assert_eq!(r.query, b"q=rust+wsgi&lang=en");
        assert_eq!(r.header("cookie"), Some(&b"session=abc123; theme=dark"[..]));
        assert_eq!(r.header("PRIORITY"), Some(&b"u=0, i"[..]));
        assert_eq!(r.header("missing"), None);
        assert!(r.keep_alive);
        assert_eq!(r.head_len, buf.len());
    }

    #[test]
    fn header_returns_first_match() {
        let r = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n").unwrap();
        assert_eq!(r.header("X-a"), Some(&b"1"[..]));
    }

    #[test]
    fn absolute_form_target() {
        let r =
            parse(b"GET http://example.com/p/q?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n").unwrap();
        assert_eq!(r.target, b"http://example.com/p/q?x=1");
        assert_eq!(r.path, b"/p/q");
        assert_eq!(r.query, b"x=1");
        let r = parse(b"GET https://example.com:8443 HTTP/1.1\r\nHost: e\r\n\r\n").unwrap();
        assert_eq!(r.path, b"/");
        assert_eq!(r.query, b"");
        let r = parse(b"GET http://example.com?a HTTP/1.1\r\nHost: e\r\n\r\n").unwrap();
        assert_eq!(r.path, b"/");
        assert_eq!(r.query, b"a");
    }

    #[test]
    fn other_target_forms() {
        let r = parse(b"OPTIONS * HTTP/1.1\r\nHost: e\r\n\r\n").unwrap();
        assert_eq!(r.path, b"*");
        let r = parse(b"CONNECT example.com:443 HTTP/1.1\r\nHost: e\r\n\r\n").unwrap();
        assert_eq!(r.path, b"example.com:443");
        // Origin-form whose query looks like a URL is not absolute-form.
        let r = parse(b"GET //x?u=http://a/b HTTP/1.1\r\nHost: e\r\n\r\n").unwrap();
        assert_eq!(r.path, b"//x");
        assert_eq!(r.query, b"u=http://a/b");
    }

    #[test]
    fn query_splitting() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (b"/a", b"/a", b""),
            (b"/a?", b"/a", b""),
            (b"/a?b=1&c=2", b"/a", b"b=1&c=2"),
            (b"/a?x?y", b"/a", b"x?y"),
            (b"/a%3Fb?c", b"/a%3Fb", b"c"),
            (b"/a#frag", b"/a", b""),
            (b"/a?q#frag", b"/a", b"q"),
            (b"/?", b"/", b""),
        ];
        for &(target, path, query) in cases {
            let mut buf = b"GET ".to_vec();
            buf.extend_from_slice(target);
            buf.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
            let r = parse(&buf).unwrap();
            assert_eq!(r.target, target);
            assert_eq!((r.path, r.query), (path, query), "{:?}", target);
        }
    }

    #[test]
    fn http10_keep_alive_rules() {
        let r = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(r.version, Version::Http10);
        assert!(!r.keep_alive);
        assert_eq!(r.host, None);
        let r = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(r.keep_alive);
        let r = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
        let r = parse(b"GET / HTTP/1.0\r\nConnection: foo\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
    }

    #[test]
    fn connection_token_lists() {
        let ka = |conn: &[&str]| {
            let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
            for c in conn {
                buf.extend_from_slice(format!("Connection: {c}\r\n").as_bytes());
            }
            buf.extend_from_slice(b"\r\n");
            let mut slots = new_header_slots();
            parse_head(&buf, &mut slots, &HeadLimits::default())
                .unwrap()
                .keep_alive
        };
        assert!(ka(&[]));
        assert!(ka(&["keep-alive"]));
        assert!(ka(&["Upgrade, HTTP2-Settings"]));
        assert!(ka(&["closed"]));
        assert!(!ka(&["close"]));
        assert!(!ka(&["CLOSE"]));
        assert!(!ka(&["Upgrade,close"]));
        assert!(!ka(&["TE ,\t close ,"]));
        assert!(!ka(&["Upgrade", "close"]));
        assert!(!ka(&[",,close"]));
    }

    #[test]
    fn content_length() {
        let cl = |h: &str| {
            let buf = format!("POST / HTTP/1.1\r\nHost: h\r\n{h}\r\n\r\n");
            let mut slots = new_header_slots();
            parse_head(buf.as_bytes(), &mut slots, &HeadLimits::default()).map(|r| r.body)
        };
        assert_eq!(cl("Content-Length: 0"), Ok(BodyFraming::Length(0)));
        assert_eq!(cl("content-length: 42"), Ok(BodyFraming::Length(42)));
        assert_eq!(cl("Content-Length:  7  "), Ok(BodyFraming::Length(7)));
        assert_eq!(
            cl("Content-Length: 18446744073709551615"),
            Ok(BodyFraming::Length(u64::MAX))
        );
        for bad in [
            "Content-Length: 5\r\nContent-Length: 6",
            "Content-Length: 5\r\nContent-Length: 5",
            "Content-Length: 5\r\ncontent-length: 5",
            "Content-Length: 5, 5",
            "Content-Length: 5, 6",
            "Content-Length: 0\r\nContent-Length: 0",
            "Content-Length: 5 5",
            "Content-Length: 5\t5",
            "Content-Length: 5a",
            "Content-Length: ٣",
            "Content-Length: 1_0",
            "Content-Length: 1e3",
            "Content-Length: 5,",
            "Content-Length: ",
            "Content-Length: +5",
            "Content-Length: -1",
            "Content-Length: 0x10",
            "Content-Length: 1 2",
            "Content-Length: 18446744073709551616",
            "Content-Length: 99999999999999999999999999",
        ] {
            assert_eq!(cl(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn transfer_encoding() {
        let te = |v: &str, version: &str| {
            let buf = format!("POST / HTTP/{version}\r\nHost: h\r\n{v}\r\n\r\n");
            let mut slots = new_header_slots();
            parse_head(buf.as_bytes(), &mut slots, &HeadLimits::default()).map(|r| r.body)
        };
        assert_eq!(
            te("Transfer-Encoding: chunked", "1.1"),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            te("transfer-encoding: Chunked", "1.1"),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            te("Transfer-Encoding: chunked, ", "1.1"),
            Ok(BodyFraming::Chunked)
        );
        let err = |v: &str, version: &str| te(v, version).unwrap_err().status;
        assert_eq!(err("Transfer-Encoding: gzip, chunked", "1.1"), 501);
        assert_eq!(
            err(
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
                "1.1"
            ),
            501
        );
        assert_eq!(err("Transfer-Encoding: identity", "1.1"), 400);
        assert_eq!(err("Transfer-Encoding: identity, chunked", "1.1"), 501);
        assert_eq!(err("Transfer-Encoding: chunked, gzip", "1.1"), 400);
        assert_eq!(err("Transfer-Encoding: chunked, chunked", "1.1"), 400);
        assert_eq!(
            err(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                "1.1"
            ),
            400
        );
        assert_eq!(err("Transfer-Encoding: ", "1.1"), 400);
        assert_eq!(err("Transfer-Encoding: chunked;x=1", "1.1"), 400);
        assert_eq!(err("Transfer-Encoding: \"chunked\"", "1.1"), 400);
        // TE on 1.0 and CL+TE: refused, whatever the coding.
        assert_eq!(err("Transfer-Encoding: chunked", "1.0"), 400);
        assert_eq!(
            err("Transfer-Encoding: chunked\r\nContent-Length: 5", "1.1"),
            400
        );
        assert_eq!(
            err("Content-Length: 5\r\nTransfer-Encoding: chunked", "1.1"),
            400
        );
    }

    #[test]
    fn expect_header() {
        let r = parse(
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        )
        .unwrap();
        assert!(r.expect_continue);
        let r = parse(b"PUT / HTTP/1.1\r\nHost: h\r\nexpect: 100-Continue\r\n\r\n").unwrap();
        assert!(r.expect_continue);
        let r = parse(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").unwrap();
        assert!(!r.expect_continue);
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: foo\r\n\r\n"),
            417
        );
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\n\r\n"),
            417
        );
        assert_eq!(status(b"PUT / HTTP/1.0\r\nExpect: 200-ok\r\n\r\n"), 417);
    }

    #[test]
    fn host_rules() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"), 400);
        let r = parse(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").unwrap();
        assert_eq!(r.host, Some(&b""[..]));
        let r = parse(b"GET / HTTP/1.0\r\nHost: a:81\r\n\r\n").unwrap();
        assert_eq!(r.host, Some(&b"a:81"[..]));
    }

    #[test]
    fn bare_lf_rejected() {
        assert_eq!(status(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\nHost: a\n\n"), 400);
        assert_eq!(status(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        // A body after the head may contain bare LFs freely.
        let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n\n\n").unwrap();
        assert_eq!(r.body, BodyFraming::Length(2));
    }

    #[test]
    fn leading_empty_line_skipped() {
        let buf = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let r = parse(buf).unwrap();
        assert_eq!(r.head_len, buf.len());
    }

    #[test]
    fn bad_target_bytes() {
        assert_eq!(status(b"GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(
            status("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes()),
            400
        );
        assert_eq!(status(b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn control_chars_in_header_values() {
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x1bb\r\n\r\n"),
            400
        );
        let r = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb \xc3\xa9\r\n\r\n").unwrap();
        assert_eq!(r.header("x"), Some(&b"a\tb \xc3\xa9"[..]));
    }

    #[test]
    fn malformed_heads() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n"), 400);
        assert_eq!(status(b"GE T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        // HTTP/0.9 simple request: a version not spoken.
        assert_eq!(status(b"GET /\r\n\r\n"), 505);
        assert_eq!(status(b"GET / \r\n\r\n"), 400);
        assert_eq!(status(b"GET s://]ufd/: HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n"), 400);
        assert_eq!(status(b""), 400);
        assert_eq!(status(b"\r\n\r\n"), 400);
    }

    #[test]
    fn unsupported_versions() {
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/3\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/0.9\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/10.0\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTPS/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/x\r\n\r\n"), 400);
    }

    #[test]
    fn too_many_headers() {
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        let fields = HeadLimits::default().fields;
        for i in 0..fields - 1 {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut ok = buf.clone();
        ok.extend_from_slice(b"\r\n");
        assert_eq!(parse(&ok).unwrap().headers.len(), fields);
        buf.extend_from_slice(b"X-last: v\r\n\r\n");
        assert_eq!(status(&buf), 431);
    }

    #[test]
    fn find_head_end_basic() {
        assert_eq!(find_head_end(b"", 0), None);
        assert_eq!(find_head_end(b"\r\n\r\n", 0), Some(4));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\n", 100), None);
        assert_eq!(find_head_end(b"a\r\n\r\nb\r\n\r\n", 0), Some(5));
        assert_eq!(find_head_end(b"a\n\nb", 0), None);
        // Resuming at the length seen before still finds a terminator that
        // started before that point.
        assert_eq!(find_head_end(b"ab\r\n\r\n", 3), Some(6));
        assert_eq!(find_head_end(b"ab\r\n\r\n", 5), Some(6));
    }

    #[test]
    fn find_head_end_resumes_byte_by_byte() {
        let full = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody";
        let expected = find_head_end(full, 0).unwrap();
        let mut searched = 0;
        let mut found = None;
        for len in 1..=full.len() {
            let buf = &full[..len];
            match find_head_end(buf, searched) {
                Some(end) => {
                    found = Some((len, end));
                    break;
                }
                None => searched = buf.len(),
            }
        }
        // Found as soon as the last byte of the terminator arrived.
        assert_eq!(found, Some((expected, expected)));
    }

    #[test]
    fn find_head_end_resumes_across_every_split() {
        let full = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        for split in 0..full.len() {
            let first = find_head_end(&full[..split], 0);
            assert_eq!(first, None, "split {split}");
            assert_eq!(
                find_head_end(full, split),
                Some(full.len()),
                "split {split}"
            );
        }
    }

    #[test]
    fn split_host_forms() {
        assert_eq!(split_host(b"example.com"), (&b"example.com"[..], None));
        assert_eq!(
            split_host(b"example.com:8080"),
            (&b"example.com"[..], Some(&b"8080"[..]))
        );
        assert_eq!(split_host(b"example.com:"), (&b"example.com"[..], None));
        assert_eq!(split_host(b"[::1]"), (&b"[::1]"[..], None));
        assert_eq!(
            split_host(b"[::1]:8080"),
            (&b"[::1]"[..], Some(&b"8080"[..]))
        );
        assert_eq!(
            split_host(b"[fe80::1%25eth0]:1"),
            (&b"[fe80::1%25eth0]"[..], Some(&b"1"[..]))
        );
        assert_eq!(split_host(b"[::1"), (&b"[::1"[..], None));
        assert_eq!(split_host(b""), (&b""[..], None));
    }

    #[test]
    fn helpers() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(parse_u64_digits(b"007"), Some(7));
        assert_eq!(parse_u64_digits(b""), None);
        assert_eq!(parse_u64_digits(b"1a"), None);
        assert_eq!(
            list_items(b" a, ,b ,").collect::<Vec<_>>(),
            vec![&b"a"[..], &b"b"[..]]
        );
    }

    /// Every prefix and every single-byte mutation of a valid head must
    /// give a result, never a panic.
    #[test]
    fn no_panics_on_mutations() {
        let base = b"POST http://h/p?q HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\
                     Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";
        for len in 0..=base.len() {
            let _ = parse(&base[..len]);
            let _ = find_head_end(&base[..len], len / 2);
        }
        let interesting = [
            0u8, b'\r', b'\n', b' ', b':', b',', b'/', b'?', b'[', b']', 0x7f, 0x80, 0xff,
        ];
        let mut buf = base.to_vec();
        for i in 0..base.len() {
            for &b in &interesting {
                buf[i] = b;
                let _ = parse(&buf);
            }
            buf[i] = base[i];
        }
        // A cheap deterministic pseudo-random soup as well.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let len = (x % 64) as usize;
            let mut v = Vec::with_capacity(len + 4);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                v.push(b"GET /HTP1.\r\n :,ab\x00\x80"[(x % 18) as usize]);
            }
            v.extend_from_slice(b"\r\n\r\n");
            let _ = parse(&v);
        }
    }

    fn status_with(buf: &[u8], limits: &HeadLimits) -> u16 {
        let mut slots = new_header_slots();
        match parse_head(buf, &mut slots, limits) {
            Ok(_) => 0,
            Err(e) => e.status,
        }
    }

    fn get_with(header_lines: &str) -> Vec<u8> {
        format!("GET / HTTP/1.1\r\n{header_lines}\r\n").into_bytes()
    }

    #[test]
    fn table_request_line_malformed() {
        for bad in [
            &b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"G\"T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GE\x80 / HTTP/1.1\r\nHost: a\r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n",
            b"GET\r\nHost: a\r\n\r\n",
            b"GET / \r\nHost: a\r\n\r\n",
            b"GET / HTTP/1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.x\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.10\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1,1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/\r\nHost: a\r\n\r\n",
            b"GET / HTTP/a.0\r\nHost: a\r\n\r\n",
            b"GET / HTTP/2.\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\rHost: a\r\n\r\n",
            b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(status(bad), 400, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn table_target_bytes() {
        for b in (0u8..0x21).chain(0x7f..=0xff) {
            if b == b' ' {
                continue;
            }
            let mut buf = b"GET /a".to_vec();
            buf.push(b);
            buf.extend_from_slice(b"b HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(status(&buf), 400, "byte {b:#x}");
        }
        // Every visible ASCII byte is fine.
        let mut buf = b"GET /".to_vec();
        buf.extend(0x21u8..0x7f);
        buf.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(parse(&buf).unwrap().target.len(), 1 + 0x7f - 0x21);
    }

    #[test]
    fn table_versions() {
        for (v, want) in [
            ("HTTP/1.0", Version::Http10),
            ("HTTP/1.1", Version::Http11),
            ("HTTP/1.2", Version::Http11),
            ("HTTP/1.9", Version::Http11),
        ] {
            let buf = format!("GET / {v}\r\nHost: a\r\n\r\n");
            let r = parse(buf.as_bytes()).unwrap();
            assert_eq!(r.version, want, "{v}");
            assert!(r.keep_alive || want == Version::Http10);
        }
        // 1.x > 1 is 1.1 in every way: Host is required.
        assert_eq!(status(b"GET / HTTP/1.2\r\n\r\n"), 400);
        for v in [
            "HTTP/2.0",
            "HTTP/3.0",
            "HTTP/0.9",
            "HTTP/9.9",
            "HTTP/2",
            "HTTP/10.0",
            "HTTP/01.1",
        ] {
            let buf = format!("GET / {v}\r\nHost: a\r\n\r\n");
            assert_eq!(status(buf.as_bytes()), 505, "{v}");
        }
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    }

    #[test]
    fn table_header_lines() {
        for bad in [
            "Host: a\r\nX y: 1\r\n",
            "Host: a\r\nX\x01: 1\r\n",
            "Host: a\r\nX\": 1\r\n",
            "Host: a\r\n: 1\r\n",
            "Host: a\r\nNoColon\r\n",
            "Host : a\r\n",
            "Host: a\r\nX\t: 1\r\n",
            "Host: a\r\nX: 1\r\n folded\r\n",
            "Host: a\r\nX: 1\r\n\tfolded\r\n",
            " Host: a\r\n",
            "\tHost: a\r\n",
            "Host: a\r\nX\u{e9}: 1\r\n",
        ] {
            assert_eq!(status(&get_with(bad)), 400, "{bad:?}");
        }
    }

    #[test]
    fn table_value_bytes() {
        for b in (0u8..0x20).chain([0x7f]) {
            if b == b'\t' {
                continue;
            }
            let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: a".to_vec();
            buf.push(b);
            buf.extend_from_slice(b"b\r\n\r\n");
            assert_eq!(status(&buf), 400, "byte {b:#x}");
            // Also as the first and last byte of the value.
            let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
            buf.push(b);
            buf.extend_from_slice(b"\r\n\r\n");
            assert_eq!(status(&buf), 400, "byte {b:#x} alone");
        }
        let r = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX: \ta\tb\x80\xff\r\n\r\n").unwrap();
        assert!(r.header("x").is_some());
    }

    #[test]
    fn table_bare_lf_anywhere() {
        let good = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
        let crlfs: Vec<usize> = good
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w == b"\r\n")
            .map(|(i, _)| i)
            .collect();
        for &i in &crlfs {
            let mut bad = good.to_vec();
            bad.remove(i);
            assert_eq!(status(&bad), 400, "{:?}", String::from_utf8_lossy(&bad));
        }
        assert_eq!(status(b"GET / HTTP/1.1\nHost: a\n\n"), 400);
    }

    #[test]
    fn table_host() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: a\r\n\r\n"), 400);
        assert_eq!(status(&get_with("Host: a\r\nHost: a\r\n")), 400);
        assert_eq!(status(&get_with("Host: a\r\nHOST: b\r\n")), 400);
        let ok = [
            "",
            "example.com",
            "example.com:80",
            "example.com:0",
            "example.com:65535",
            "EXAMPLE.com:08080",
            "127.0.0.1",
            "127.0.0.1:8000",
            "[::1]",
            "[::1]:8000",
            "[2001:db8::7]",
            "[::ffff:1.2.3.4]:1",
            "[fe80::1%25eth0]",
            "[fe80::1%25en%2F1]:80",
            "[v1.fe:80]",
            "[V7.a-b]:9",
            "a-b_c~d.e",
            "%41bc",
            "a!$&'()*+,;=b",
            "xn--bcher-kva.example",
            ":80",
        ];
        for h in ok {
            let buf = get_with(&format!("Host: {h}\r\n"));
            let r = parse(&buf).unwrap_or_else(|e| panic!("{h:?}: {e}"));
            assert_eq!(r.host, Some(h.as_bytes()), "{h:?}");
        }
        // Surrounding whitespace is not part of the value.
        let buf = get_with("Host: \t a:1 \t\r\n");
        let r = parse(&buf).unwrap();
        assert_eq!(r.host, Some(&b"a:1"[..]));
        let bad = [
            "user@example.com",
            "user:pw@example.com",
            "example.com:",
            "example.com:65536",
            "example.com:99999999999999999999999",
            "example.com:80:80",
            "example.com:+80",
            "example.com:8o",
            "exa mple.com",
            "example.com/path",
            "example.com?q",
            "example.com#f",
            "ex\"ample",
            "ex<ample>",
            "ex\\ample",
            "%4",
            "%zz",
            "a%",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[::1]:65536",
            "[::g]",
            "[1.2.3.4]",
            "[]",
            "[fe80::1%25]",
            "[fe80::1%eth0]",
            "[v.a]",
            "[v1.]",
            "[vg.a]",
            "::1",
            "[::1]]",
            "\u{e9}xample.com",
            "a,b c",
        ];
        for h in bad {
            let buf = get_with(&format!("Host: {h}\r\n"));
            assert_eq!(status(&buf), 400, "{h:?}");
        }
        // Validated on HTTP/1.0 too, where Host is optional.
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a@b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n"), 0);
    }

    #[test]
    fn table_framing_errors() {
        let st = |h: &str| status(&get_with(&format!("Host: a\r\n{h}\r\n")));
        assert_eq!(st("Content-Length: 1\r\nTransfer-Encoding: chunked"), 400);
        assert_eq!(st("Transfer-Encoding: chunked\r\nContent-Length: 1"), 400);
        // The final coding is not chunked: the body's end is unknowable.
        assert_eq!(st("Transfer-Encoding: gzip"), 400);
        assert_eq!(st("Transfer-Encoding: gzip, chunked"), 501);
        assert_eq!(st("Transfer-Encoding: chunked, chunked"), 400);
        assert_eq!(
            st("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"),
            400
        );
        assert_eq!(st("Transfer-Encoding: chunked, gzip"), 400);
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(st("Expect: 100-continue"), 0);
        assert_eq!(st("Expect: 200-ok"), 417);
        assert_eq!(st("Expect: "), 417);
    }

    #[test]
    fn limits_request_line() {
        let l = HeadLimits::default();
        let head = |line_len: usize| {
            let mut v = b"GET /".to_vec();
            v.resize(line_len - 9, b'a');
            v.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
            v
        };
        assert_eq!(status_with(&head(8190), &l), 0);
        assert_eq!(status_with(&head(8191), &l), 414);
        let small = HeadLimits {
            request_line: 16,
            ..l
        };
        assert_eq!(
            status_with(b"GET /ab HTTP/1.1\r\nHost: a\r\n\r\n", &small),
            0
        );
        assert_eq!(
            status_with(b"GET /abc HTTP/1.1\r\nHost: a\r\n\r\n", &small),
            414
        );
    }

    #[test]
    fn limits_field_size() {
        let l = HeadLimits::default();
        let head = |line_len: usize| {
            let mut v = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ".to_vec();
            let start = v.len() - 8;
            v.resize(start + line_len, b'v');
            v.extend_from_slice(b"\r\n\r\n");
            v
        };
        // 8190 with the line's CRLF, as gunicorn counts.
        assert_eq!(status_with(&head(8188), &l), 0);
        assert_eq!(status_with(&head(8189), &l), 431);
        // The name counts too.
        let mut name = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        name.resize(name.len() + 8190, b'n');
        name.extend_from_slice(b":\r\n\r\n");
        assert_eq!(status_with(&name, &l), 431);
    }

    #[test]
    fn limits_fields() {
        let head = |n: usize| {
            let mut v = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            for i in 1..n {
                v.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
            }
            v.extend_from_slice(b"\r\n");
            v
        };
        let l = HeadLimits::default();
        assert_eq!(status_with(&head(100), &l), 0);
        assert_eq!(status_with(&head(101), &l), 431);
        let few = HeadLimits { fields: 3, ..l };
        assert_eq!(status_with(&head(3), &few), 0);
        assert_eq!(status_with(&head(4), &few), 431);
        // Above the slot array: clamped to MAX_HEADERS.
        let many = HeadLimits { fields: 1000, ..l };
        let mut slots = new_header_slots();
        let buf = head(MAX_HEADERS);
        assert_eq!(
            parse_head(&buf, &mut slots, &many).unwrap().headers.len(),
            MAX_HEADERS
        );
        assert_eq!(status_with(&head(MAX_HEADERS + 1), &many), 431);
    }

    #[test]
    fn limits_head_total() {
        let head = |total: usize| {
            let mut v = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            let mut i = 0;
            while v.len() + 8002 + 2 <= total {
                v.extend_from_slice(format!("X-{i:03}: ").as_bytes());
                v.resize(v.len() + 7993, b'v');
                v.extend_from_slice(b"\r\n");
                i += 1;
            }
            let pad = total - v.len() - 2 - 2;
            v.extend_from_slice(b"P:");
            v.resize(v.len() + pad - 2, b'p');
            v.extend_from_slice(b"\r\n\r\n");
            assert_eq!(v.len(), total);
            v
        };
        let l = HeadLimits::default();
        assert_eq!(status_with(&head(65536), &l), 0);
        assert_eq!(status_with(&head(65537), &l), 431);
        let small = HeadLimits { head: 64, ..l };
        assert_eq!(status_with(&head(64), &small), 0);
        assert_eq!(status_with(&head(65), &small), 431);
    }

    #[test]
    fn incomplete_head_reports_limit_or_400() {
        let l = HeadLimits::default();
        assert_eq!(status_with(b"GET / HTTP/1.1\r\nHost: a\r\n", &l), 400);
        let mut long = b"GET /".to_vec();
        long.resize(10_000, b'a');
        assert_eq!(status_with(&long, &l), 414);
    }

    /// `head_len` is exactly what find_head_end reports, and the parse does
    /// not look past it.
    #[test]
    fn head_len_matches_find_head_end() {
        let buf = b"\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n\r\n\r\n";
        let r = parse(buf).unwrap();
        assert_eq!(Some(r.head_len), find_head_end(buf, 0));
        // Junk after the head (a body with bare LFs, NULs, anything).
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        let end = buf.len();
        buf.extend_from_slice(b"\n\x00\r\xff \tGET");
        assert_eq!(parse(&buf).unwrap().head_len, end);
    }
}
