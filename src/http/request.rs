//! Request head parsing and the framing decisions that follow from it.
//!
//! `httparse` does the tokenising; this file adds what it leaves to us: the
//! body framing (Content-Length / Transfer-Encoding, RFC 9112 §6), the
//! persistence rules (Connection, §9.3), `Expect`, `Host`, and a few strictness
//! checks `httparse` is deliberately lax about (bare LF, non-ASCII targets,
//! control bytes in values). All results borrow the caller's buffer and the
//! caller's header slots, so parsing allocates nothing.

use std::mem::MaybeUninit;
use std::sync::LazyLock;

use httparse::Header;
use memchr::{memchr, memchr_iter, memmem, memrchr};

/// Most request headers accepted; more is answered with 431.
pub const MAX_HEADERS: usize = 100;

/// Storage for the parsed headers, filled by [`parse_head`].
pub type HeaderSlots<'b> = [MaybeUninit<Header<'b>>; MAX_HEADERS];

/// Fresh, uninitialised header storage (no initialisation cost).
pub fn new_header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// The HTTP versions we speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
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
    /// 400, 417, 431, 501 or 505.
    pub status: u16,
    /// Short human-readable cause, for logs.
    pub reason: &'static str,
}

impl ParseError {
    const fn bad(reason: &'static str) -> Self {
        ParseError {
            status: 400,
            reason,
        }
    }
}

/// A parsed request head; every slice borrows the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'b, 'h> {
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
    /// Value of the Host header.
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

/// Parses the request head at the start of `buf`.
///
/// Call once [`find_head_end`] found the end; `buf` may continue with body
/// bytes or further pipelined requests, which are left alone.
pub fn parse_head<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut HeaderSlots<'b>,
) -> Result<Request<'b, 'h>, ParseError> {
    let slots: &'h mut [MaybeUninit<Header<'b>>] = slots;
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        // The caller saw CRLFCRLF, so "partial" means the head is malformed.
        Ok(httparse::Status::Partial) => return Err(ParseError::bad("incomplete request head")),
        Err(e) => return Err(map_httparse_error(e, buf)),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(ParseError::bad("incomplete request line"));
    };
    let headers: &'h [Header<'b>] = req.headers;
    let target = target.as_bytes();
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => {
            return Err(ParseError {
                status: 505,
                reason: "HTTP version not supported",
            })
        }
    };

    // httparse lets UTF-8 through; a request-target is ASCII VCHARs only.
    if target.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
        return Err(ParseError::bad("invalid byte in request-target"));
    }
    // httparse accepts bare LF line endings; RFC 9112 §2.2 lets us refuse
    // them, and refusing closes a request-smuggling door with proxies.
    let head = &buf[..head_len];
    if memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r') {
        return Err(ParseError::bad("bare LF in request head"));
    }

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
                parse_content_length(value, &mut content_length)?;
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

/// Maps httparse's error onto the status to answer with.
fn map_httparse_error(e: httparse::Error, buf: &[u8]) -> ParseError {
    match e {
        httparse::Error::TooManyHeaders => ParseError {
            status: 431,
            reason: "too many header fields",
        },
        httparse::Error::Version if is_other_major_version(buf) => ParseError {
            status: 505,
            reason: "HTTP version not supported",
        },
        httparse::Error::Version => ParseError::bad("invalid HTTP version"),
        httparse::Error::HeaderName => ParseError::bad("invalid header name"),
        httparse::Error::HeaderValue => ParseError::bad("invalid header value"),
        httparse::Error::NewLine => ParseError::bad("invalid line ending"),
        httparse::Error::Status | httparse::Error::Token => ParseError::bad("invalid request line"),
    }
}

/// Whether the request line ends in `HTTP/<major>...` with a major other
/// than 1: a well-formed request we merely do not speak (505, not 400).
fn is_other_major_version(buf: &[u8]) -> bool {
    // httparse skips empty lines before the request line; so do we.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let line = match memchr(b'\n', line) {
        Some(i) => &line[..i],
        None => line,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = match memrchr(b' ', line) {
        Some(i) => &line[i + 1..],
        None => return false,
    };
    let Some(rest) = version.strip_prefix(b"HTTP/") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && &rest[..digits] != b"1"
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
        if self.unknown {
            return Err(ParseError {
                status: 501,
                reason: "unsupported transfer coding",
            });
        }
        // Only "chunked" remains; applied twice, or not last, is malformed.
        if self.chunked_count != 1 || !self.last_is_chunked {
            return Err(ParseError::bad("malformed Transfer-Encoding"));
        }
        Ok(BodyFraming::Chunked)
    }
}

/// Parses one Content-Length header into `acc`, which holds the value of
/// earlier ones. A list of equal values (`5, 5`) is accepted as one value
/// (RFC 9110 §8.6); anything else that disagrees is an error.
fn parse_content_length(value: &[u8], acc: &mut Option<u64>) -> Result<(), ParseError> {
    const BAD: ParseError = ParseError::bad("invalid Content-Length");
    for item in value.split(|&b| b == b',') {
        let n = parse_u64_digits(trim_ows(item)).ok_or(BAD)?;
        match *acc {
            Some(prev) if prev != n => {
                return Err(ParseError::bad("conflicting Content-Length values"))
            }
            _ => *acc = Some(n),
        }
    }
    Ok(())
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
        parse_head(buf, slots)
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
            let r = parse_head(&buf[pos..], &mut slots).unwrap();
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
            parse_head(&buf, &mut slots).unwrap().keep_alive
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
            parse_head(buf.as_bytes(), &mut slots).map(|r| r.body)
        };
        assert_eq!(cl("Content-Length: 0"), Ok(BodyFraming::Length(0)));
        assert_eq!(cl("content-length: 42"), Ok(BodyFraming::Length(42)));
        assert_eq!(cl("Content-Length:  7  "), Ok(BodyFraming::Length(7)));
        assert_eq!(
            cl("Content-Length: 18446744073709551615"),
            Ok(BodyFraming::Length(u64::MAX))
        );
        assert_eq!(
            cl("Content-Length: 5\r\nContent-Length: 5"),
            Ok(BodyFraming::Length(5))
        );
        assert_eq!(cl("Content-Length: 5, 5"), Ok(BodyFraming::Length(5)));
        for bad in [
            "Content-Length: 5\r\nContent-Length: 6",
            "Content-Length: 5, 6",
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
            parse_head(buf.as_bytes(), &mut slots).map(|r| r.body)
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
        assert_eq!(err("Transfer-Encoding: identity", "1.1"), 501);
        assert_eq!(err("Transfer-Encoding: chunked, gzip", "1.1"), 501);
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
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
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
        assert_eq!(status(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTPS/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/x\r\n\r\n"), 400);
    }

    #[test]
    fn too_many_headers() {
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS - 1 {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut ok = buf.clone();
        ok.extend_from_slice(b"\r\n");
        assert_eq!(parse(&ok).unwrap().headers.len(), MAX_HEADERS);
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
}
