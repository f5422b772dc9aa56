//! The access log (`--access-logfile`, `--access-logformat`): one line per answered request,
//! in gunicorn's format language (Apache combined format by default).
//!
//! A worker formats the round's lines into one buffer and writes it with one write(2) at the
//! end of the round (under load, at the end of the round that brings it past [`FLUSH_AT`]
//! bytes, or of the first round in a later second), to a descriptor opened with O_APPEND:
//! the other worker threads and processes append to the same file, and an appending write is
//! never interleaved with another, so a line is never split. On a pipe or socket (`-` when stdout is one) only writes
//! of at most PIPE_BUF bytes are atomic, so the buffer is written in pieces of whole lines up
//! to that size. The descriptor is blocking: a consumer that does not keep up stalls the
//! worker for as long as a write(2) to a full pipe takes, never longer (nothing else waits on
//! it). A failed write drops the round's lines and is reported once.

use std::fs::File;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use crate::http::response::push_decimal;
use crate::http::{DateCache, Request};

/// Apache combined log format, gunicorn's default.
pub const DEFAULT_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// Writes to a pipe of at most this many bytes are atomic (POSIX PIPE_BUF on Linux).
const PIPE_BUF: usize = 4096;
/// Under load, lines gather up to this many bytes (or for up to a second) before they are
/// written: fewer, larger writes. The kernel's cost is mostly per page touched, and less per
/// page in large writes (large folios): appending 512 MiB to ext4 took 0.28 s of system time
/// in 32 KB writes, 0.16 s in 256 KB writes.
pub const FLUSH_AT: usize = 256 * 1024;

/// A field of a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    /// h: the remote address.
    Host,
    /// l, and atoms that have no value here: `-` (merged into the literal runs).
    Dash,
    /// u: the user of Basic authentication.
    User,
    /// t: `[10/Oct/2000:13:55:36 +0000]` (UTC).
    Time,
    /// r: the request line.
    RequestLine,
    /// m, U, q, H.
    Method,
    Path,
    Query,
    Protocol,
    /// s: the status code.
    Status,
    /// B, b: body bytes (b: `-` for none).
    Bytes,
    BytesOrDash,
    /// f, a.
    Referer,
    UserAgent,
    /// T seconds, D microseconds, M milliseconds, L decimal seconds.
    Seconds,
    Micros,
    Millis,
    DecimalSeconds,
    /// p: `<pid>`.
    Pid,
    /// {name}i, {name}o (lowercase).
    RequestHeader(String),
    ResponseHeader(String),
}

/// The format string is not one gunicorn would accept either.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("--access-logformat: unterminated '%(' at byte {0}")]
    Unterminated(usize),
    #[error("--access-logformat: unknown atom '%({0})s' (supported: h l u t r m U q H s B b f a T D M L p {{header}}i {{header}}o)")]
    Unknown(String),
}

/// A field and the literal text before it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    literal: Box<[u8]>,
    atom: Atom,
}

/// A parsed `--access-logformat`: segments, each a literal run (constant atoms such as `%(l)s`
/// merged into it) and the field after it, then the line's end, so a line costs one dispatch
/// per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    segments: Vec<Segment>,
    /// The literal after the last field, with the newline.
    tail: Box<[u8]>,
    /// Whether an atom needs the time, the request's duration, or the request headers that
    /// are looked up in one pass (Authorization, Referer, User-Agent).
    needs_time: bool,
    needs_duration: bool,
    needs_headers: bool,
    /// The default format, formatted by code written for it.
    combined: bool,
}

impl Format {
    /// Parses gunicorn's `%(name)s` syntax (`%%` is a literal `%`). `{var}e` (the WSGI
    /// environ) is accepted and written as `-`: the environ is not kept past the call.
    pub fn parse(format: &str) -> Result<Format, FormatError> {
        let mut segments: Vec<Segment> = Vec::new();
        let mut literal = Vec::new();
        let bytes = format.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && bytes.get(i + 1) == Some(&b'%') {
                literal.push(b'%');
                i += 2;
                continue;
            }
            if bytes[i] != b'%' || bytes.get(i + 1) != Some(&b'(') {
                literal.push(bytes[i]);
                i += 1;
                continue;
            }
            let end = format[i..]
                .find(")s")
                .map(|e| i + e)
                .ok_or(FormatError::Unterminated(i))?;
            let name = &format[i + 2..end];
            i = end + 2;
            let atom = atom(name)?;
            if atom == Atom::Dash {
                // A constant: part of the literal run around it.
                literal.push(b'-');
                continue;
            }
            segments.push(Segment {
                literal: std::mem::take(&mut literal).into(),
                atom,
            });
        }
        literal.push(b'\n');
        let atoms: Vec<&Atom> = segments.iter().map(|s| &s.atom).collect();
        Ok(Format {
            combined: format == DEFAULT_FORMAT,
            needs_time: atoms.contains(&&Atom::Time),
            needs_duration: atoms.iter().any(|a| {
                matches!(
                    a,
                    Atom::Seconds | Atom::Micros | Atom::Millis | Atom::DecimalSeconds
                )
            }),
            needs_headers: atoms
                .iter()
                .any(|a| matches!(a, Atom::User | Atom::Referer | Atom::UserAgent)),
            segments,
            tail: literal.into(),
        })
    }
}

fn atom(name: &str) -> Result<Atom, FormatError> {
    let header = |suffix: char| {
        name.strip_prefix('{')
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|n| n.strip_suffix('}'))
            .map(str::to_ascii_lowercase)
    };
    Ok(match name {
        "h" => Atom::Host,
        "l" => Atom::Dash,
        "u" => Atom::User,
        "t" => Atom::Time,
        "r" => Atom::RequestLine,
        "m" => Atom::Method,
        "U" => Atom::Path,
        "q" => Atom::Query,
        "H" => Atom::Protocol,
        "s" => Atom::Status,
        "B" => Atom::Bytes,
        "b" => Atom::BytesOrDash,
        "f" => Atom::Referer,
        "a" => Atom::UserAgent,
        "T" => Atom::Seconds,
        "D" => Atom::Micros,
        "M" => Atom::Millis,
        "L" => Atom::DecimalSeconds,
        "p" => Atom::Pid,
        _ => {
            if let Some(h) = header('i') {
                Atom::RequestHeader(h)
            } else if let Some(h) = header('o') {
                Atom::ResponseHeader(h)
            } else if header('e').is_some() {
                Atom::Dash
            } else {
                return Err(FormatError::Unknown(name.to_owned()));
            }
        }
    })
}

/// What a line is made of: the request (None when it could not be parsed) and its response.
pub struct Entry<'a, 'b, 'h> {
    pub req: Option<&'a Request<'b, 'h>>,
    /// The address the app saw as REMOTE_ADDR (None: a unix-domain peer, or unknown).
    pub remote: Option<IpAddr>,
    /// The response's status code (0: none was sent).
    pub status: u16,
    /// The response's head (for `{name}o`; may be empty when the format does not need it).
    pub head: &'a [u8],
    /// Body bytes sent (for a streamed or pool-answered response, once it is complete).
    pub body_len: u64,
    /// From the start of the round that completed the request until the response was
    /// complete (zero unless [`AccessLog::timed`]).
    pub duration: Duration,
}

/// The status code at the start of a response head (`HTTP/1.1 200 OK`); 0 if there is none.
pub fn response_status(response: &[u8]) -> u16 {
    match response.get(9..12) {
        Some(&[a, b, c]) if [a, b, c].iter().all(u8::is_ascii_digit) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => 0,
    }
}

/// One worker's access log.
pub struct AccessLog {
    format: Format,
    file: File,
    /// A pipe or socket: writes are limited to PIPE_BUF bytes.
    pipe: bool,
    /// The round's lines, and the second the first of them was formatted in.
    lines: Vec<u8>,
    lines_since: u64,
    /// `[06/Nov/1994:08:49:37 +0000]` for the second `time_secs`.
    time: Vec<u8>,
    time_secs: u64,
    /// The last remote address and its text (most lines repeat the one before: keep-alive
    /// connections, a proxy in front).
    host: Option<(IpAddr, Vec<u8>)>,
    /// The combined format's start, `{host} - - [time] "`, and the address and second it is
    /// for: the same for every line from one address within a second (keep-alive
    /// connections, a proxy in front), so it is kept rendered.
    prefix: Vec<u8>,
    prefix_for: Option<(Option<IpAddr>, u64)>,
    pid: u32,
    failed: bool,
}

impl AccessLog {
    /// Opens `path` for appending (created if missing; `-` is standard output) to write lines
    /// in `format`.
    pub fn open(path: &Path, format: &str) -> std::io::Result<AccessLog> {
        let format = Format::parse(format)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let file = if path.as_os_str() == "-" {
            File::from(nix::unistd::dup(std::io::stdout())?)
        } else {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o644)
                .open(path)?
        };
        let kind = file.metadata()?.file_type();
        Ok(AccessLog {
            format,
            file,
            pipe: kind.is_fifo() || kind.is_socket(),
            lines: Vec::with_capacity(FLUSH_AT + PIPE_BUF),
            lines_since: 0,
            time: Vec::new(),
            time_secs: u64::MAX,
            host: None,
            prefix: Vec::new(),
            prefix_for: None,
            pid: std::process::id(),
            failed: false,
        })
    }

    /// Whether lines show the request's duration (it then has to be measured).
    pub fn timed(&self) -> bool {
        self.format.needs_duration
    }

    /// Formats the line of one request into the round's buffer.
    pub fn log(&mut self, entry: &Entry<'_, '_, '_>, date: &DateCache) {
        if self.lines.is_empty() {
            self.lines_since = date.unix_secs();
        }
        if self.format.needs_time {
            self.refresh_time(date);
        }
        if let Some(addr) = entry.remote {
            if self.host.as_ref().is_none_or(|(last, _)| *last != addr) {
                self.host = Some((addr, addr.to_string().into_bytes()));
            }
        }
        let AccessLog {
            format,
            lines: out,
            time,
            time_secs,
            host,
            prefix,
            prefix_for,
            pid,
            ..
        } = self;
        let fields = Fields {
            entry,
            wanted: match entry.req {
                Some(req) if format.needs_headers => Wanted::find(req),
                _ => Wanted::default(),
            },
            host: match (entry.remote, host) {
                (Some(_), Some((_, text))) => text,
                _ => b"-",
            },
            time,
            pid: *pid,
        };
        if format.combined {
            // The default format spelled out: with each atom a constant, the compiler keeps
            // only that atom's code, and a line costs no dispatch (a measurable share of a
            // pipelined request's time).
            let key = (entry.remote, *time_secs);
            if *prefix_for != Some(key) {
                prefix.clear();
                push_field(prefix, &Atom::Host, &fields);
                prefix.extend_from_slice(b" - - ");
                push_field(prefix, &Atom::Time, &fields);
                prefix.extend_from_slice(b" \"");
                *prefix_for = Some(key);
            }
            match fields.wanted.authorization.and_then(basic_user) {
                None => out.extend_from_slice(prefix),
                Some(user) => {
                    // In place of the `-` before ` [time] "`.
                    let dash = prefix.len() - time.len() - 4;
                    out.extend_from_slice(&prefix[..dash]);
                    escaped(out, &user);
                    out.extend_from_slice(&prefix[dash + 1..]);
                }
            }
            push_field(out, &Atom::RequestLine, &fields);
            out.extend_from_slice(b"\" ");
            push_field(out, &Atom::Status, &fields);
            out.push(b' ');
            push_field(out, &Atom::BytesOrDash, &fields);
            out.extend_from_slice(b" \"");
            push_field(out, &Atom::Referer, &fields);
            out.extend_from_slice(b"\" \"");
            push_field(out, &Atom::UserAgent, &fields);
            out.extend_from_slice(b"\"\n");
            return;
        }
        for Segment { literal, atom } in &format.segments {
            out.extend_from_slice(literal);
            push_field(out, atom, &fields);
        }
        out.extend_from_slice(&format.tail);
    }

    /// The round ended: writes its lines unless `busy` (more rounds with requests follow
    /// at once), fewer than [`FLUSH_AT`] bytes gathered, and the first of them this second.
    pub fn end_round(&mut self, busy: bool, date: &DateCache) {
        if !busy || self.lines.len() >= FLUSH_AT || date.unix_secs() != self.lines_since {
            self.flush();
        }
    }

    /// Writes the gathered lines: one write(2), or pieces of whole lines of at most PIPE_BUF
    /// bytes on a pipe.
    fn flush(&mut self) {
        if self.lines.is_empty() {
            return;
        }
        let result = if self.pipe {
            let mut rest = &self.lines[..];
            let mut result = Ok(());
            while !rest.is_empty() && result.is_ok() {
                let piece = whole_lines(rest, PIPE_BUF);
                result = (&self.file).write_all(&rest[..piece]);
                rest = &rest[piece..];
            }
            result
        } else {
            (&self.file).write_all(&self.lines)
        };
        self.lines.clear();
        if let Err(e) = result {
            if !self.failed {
                self.failed = true;
                tracing::error!("cannot write the access log: {e} (lines are dropped)");
            }
        }
    }

    fn refresh_time(&mut self, date: &DateCache) {
        if date.unix_secs() == self.time_secs {
            return;
        }
        // Rearranged from the Date header's `Sun, 06 Nov 1994 08:49:37 GMT`.
        let d = date.header_value();
        self.time.clear();
        self.time.push(b'[');
        self.time.extend_from_slice(&d[5..7]);
        self.time.push(b'/');
        self.time.extend_from_slice(&d[8..11]);
        self.time.push(b'/');
        self.time.extend_from_slice(&d[12..16]);
        self.time.push(b':');
        self.time.extend_from_slice(&d[17..25]);
        self.time.extend_from_slice(b" +0000]");
        self.time_secs = date.unix_secs();
    }
}

/// The request headers the combined format shows, found in one pass over the headers.
#[derive(Default)]
struct Wanted<'b> {
    authorization: Option<&'b [u8]>,
    referer: Option<&'b [u8]>,
    user_agent: Option<&'b [u8]>,
}

impl<'b> Wanted<'b> {
    fn find(req: &Request<'b, '_>) -> Self {
        let mut wanted = Wanted::default();
        for h in req.headers {
            // The length first: most headers are none of these.
            let slot = match h.name.len() {
                13 if h.name.eq_ignore_ascii_case("authorization") => &mut wanted.authorization,
                7 if h.name.eq_ignore_ascii_case("referer") => &mut wanted.referer,
                10 if h.name.eq_ignore_ascii_case("user-agent") => &mut wanted.user_agent,
                _ => continue,
            };
            slot.get_or_insert(h.value);
        }
        wanted
    }
}

/// What the fields of one line are taken from.
struct Fields<'f, 'b> {
    entry: &'f Entry<'f, 'b, 'f>,
    wanted: Wanted<'b>,
    /// The remote address as text, or `-`.
    host: &'f [u8],
    /// `[06/Nov/1994:08:49:37 +0000]`.
    time: &'f [u8],
    pid: u32,
}

/// Appends the field `atom` of a line. Inlined: called with a constant atom (the combined
/// format), only that atom's arm is left.
#[inline(always)]
fn push_field(out: &mut Vec<u8>, atom: &Atom, fields: &Fields<'_, '_>) {
    let entry = fields.entry;
    match (atom, entry.req) {
        (Atom::Host, _) => out.extend_from_slice(fields.host),
        (Atom::User, _) => match fields.wanted.authorization.and_then(basic_user) {
            Some(user) => escaped(out, &user),
            None => out.push(b'-'),
        },
        (Atom::Time, _) => out.extend_from_slice(fields.time),
        // As sent (Apache's %r): only `"` and `\` in the target can need escaping.
        (Atom::RequestLine, Some(req)) => escaped(out, req.line),
        // A token (the parser checked): nothing to escape.
        (Atom::Method, Some(req)) => out.extend_from_slice(req.method.as_bytes()),
        (Atom::Path, Some(req)) => escaped(out, req.path),
        (Atom::Query, Some(req)) => escaped(out, req.query),
        (Atom::Protocol, Some(req)) => out.extend_from_slice(req.version.as_str().as_bytes()),
        (Atom::Status, _) if (100..1000).contains(&entry.status) => {
            let digit = |place: u16| b'0' + (entry.status / place % 10) as u8;
            out.extend_from_slice(&[digit(100), digit(10), digit(1)]);
        }
        (Atom::Bytes, _) => push_decimal(out, entry.body_len),
        (Atom::BytesOrDash, _) if entry.body_len != 0 => push_decimal(out, entry.body_len),
        (Atom::Referer, _) => header_or_dash(out, fields.wanted.referer),
        (Atom::UserAgent, _) => header_or_dash(out, fields.wanted.user_agent),
        (Atom::Seconds, _) => push_decimal(out, entry.duration.as_secs()),
        (Atom::Micros, _) => push_decimal(out, entry.duration.as_micros() as u64),
        (Atom::Millis, _) => push_decimal(out, entry.duration.as_millis() as u64),
        (Atom::DecimalSeconds, _) => {
            // As gunicorn: "%d.%06d" (integers: no float work for the other atoms).
            push_decimal(out, entry.duration.as_secs());
            let micros = entry.duration.subsec_micros();
            let _ = write!(out, ".{micros:06}");
        }
        (Atom::Pid, _) => {
            let _ = write!(out, "<{}>", fields.pid);
        }
        (Atom::RequestHeader(name), Some(req)) => header_or_dash(out, req.header(name)),
        (Atom::ResponseHeader(name), _) => header_or_dash(out, response_header(entry.head, name)),
        // A request that could not be parsed, a status that was not sent, no body
        // (and `l`, `{name}e`, merged into the literal runs by the parser).
        _ => out.push(b'-'),
    }
}

impl Drop for AccessLog {
    /// The lines still gathered when the worker ends.
    fn drop(&mut self) {
        self.flush();
    }
}

/// Length of the longest run of whole lines of at most `max` bytes at the start of `buf` (a
/// single longer line is taken whole).
fn whole_lines(buf: &[u8], max: usize) -> usize {
    if buf.len() <= max {
        return buf.len();
    }
    match memchr::memrchr(b'\n', &buf[..max]) {
        Some(i) => i + 1,
        None => memchr::memchr(b'\n', buf).map_or(buf.len(), |i| i + 1),
    }
}

/// The value of header `name` (lowercase) in a response head.
fn response_header<'r>(head: &'r [u8], name: &str) -> Option<&'r [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = memchr::memchr(b':', line)?;
        line[..colon]
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| line[colon + 1..].trim_ascii())
    })
}

fn header_or_dash(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) if !v.is_empty() => escaped(out, v),
        _ => out.push(b'-'),
    }
}

/// Copies `bytes`, escaping what could break a line or a quoted field (as Apache does): `"`
/// and `\` with a backslash, control and non-ASCII bytes as `\xHH`.
#[inline(always)]
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    if needs_escaping(bytes) {
        escape(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
}

#[cold]
fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

/// Whether `bytes` holds a byte [`escaped`] rewrites: a control byte, DEL or beyond, `"` or
/// `\`. Eight bytes at a time: almost every field is plain, and a byte-by-byte check was a
/// measurable part of a line's cost.
#[inline(always)]
fn needs_escaping(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    if bytes.len() < 8 {
        return bytes
            .iter()
            .any(|&b| !(0x20..=0x7e).contains(&b) || b == b'"' || b == b'\\');
    }
    // Each test is exact as to whether any byte of the word matches (a borrow or carry
    // between bytes only ever follows a byte that matches).
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let special = |at: usize| {
        let w = u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let above_tilde = (w.wrapping_add(ONES) | w) & HIGH;
        below_space
            | above_tilde
            | has_zero(w ^ (ONES * u64::from(b'"')))
            | has_zero(w ^ (ONES * u64::from(b'\\')))
    };
    // Whole words, then the last eight bytes (overlapping the words before).
    let found = (0..bytes.len() / 8).fold(0, |found, word| found | special(word * 8));
    found | special(bytes.len() - 8) != 0
}

/// The user name of `Authorization: Basic base64(user:password)`.
fn basic_user(value: &[u8]) -> Option<Vec<u8>> {
    let (scheme, token) = value.trim_ascii().split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = decode_base64(token.trim_ascii())?;
    let end = memchr::memchr(b':', &decoded).unwrap_or(decoded.len());
    Some(decoded[..end].to_vec())
}

fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let text = text
        .strip_suffix(b"==")
        .or(text.strip_suffix(b"="))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut n) = (0u32, 0);
    for &c in text {
        bits = bits << 6 | u32::from(value(c)?);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{self, HeadLimits};

    fn line(format: &str, head: &[u8], response: &[u8]) -> String {
        lines(format, &[(head, Some("10.1.2.3"), 784_111_777)], response)
    }

    /// The lines of requests `(head, remote address, unix second)` answered with `response`.
    fn lines(format: &str, requests: &[(&[u8], Option<&str>, u64)], response: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut log = AccessLog::open(&path, format).unwrap();
        let head_len = http::find_head_end(response, 0).unwrap();
        for &(head, remote, secs) in requests {
            let mut slots = http::new_header_slots();
            let req = http::parse_head(head, &mut slots, &HeadLimits::default()).unwrap();
            let mut date = DateCache::new();
            date.refresh(std::time::UNIX_EPOCH + Duration::from_secs(secs));
            let entry = Entry {
                req: Some(&req),
                remote: remote.map(|r| r.parse().unwrap()),
                status: response_status(response),
                head: &response[..head_len],
                body_len: (response.len() - head_len) as u64,
                duration: Duration::from_micros(1500),
            };
            log.log(&entry, &date);
        }
        log.flush();
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn combined_format() {
        let head = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: curl \"7\"\r\nAuthorization: Basic dXNlcjpwdw==\r\n\r\n";
        let response = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!";
        let expected = "10.1.2.3 - user [06/Nov/1994:08:49:37 +0000] \"GET /a?b=1 HTTP/1.1\" 404 5 \"-\" \"curl \\\"7\\\"\"\n";
        assert_eq!(line(DEFAULT_FORMAT, head, response), expected);
        // The same format in other words takes the generic path: both give the same line.
        let spelled = DEFAULT_FORMAT.replace("%(l)s", "-");
        assert!(!Format::parse(&spelled).unwrap().combined);
        assert!(Format::parse(DEFAULT_FORMAT).unwrap().combined);
        assert_eq!(line(&spelled, head, response), expected);
        let bare = b"POST / HTTP/1.0\r\n\r\n";
        let empty = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            line(DEFAULT_FORMAT, bare, empty),
            line(&spelled, bare, empty)
        );
    }

    #[test]
    fn combined_lines_follow_address_user_and_second() {
        let plain: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let user: &[u8] = b"GET /u HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Ym9iOng=\r\n\r\n";
        let requests = [
            (plain, Some("10.1.2.3"), 784_111_777),
            (user, Some("10.1.2.3"), 784_111_777),
            (plain, Some("10.1.2.3"), 784_111_777),
            (plain, Some("::1"), 784_111_777),
            (plain, Some("::1"), 784_111_778),
            (user, None, 784_111_778),
        ];
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let combined = lines(DEFAULT_FORMAT, &requests, response);
        assert_eq!(
            combined,
            "10.1.2.3 - - [06/Nov/1994:08:49:37 +0000] \"GET / HTTP/1.1\" 200 2 \"-\" \"-\"\n\
             10.1.2.3 - bob [06/Nov/1994:08:49:37 +0000] \"GET /u HTTP/1.1\" 200 2 \"-\" \"-\"\n\
             10.1.2.3 - - [06/Nov/1994:08:49:37 +0000] \"GET / HTTP/1.1\" 200 2 \"-\" \"-\"\n\
             ::1 - - [06/Nov/1994:08:49:37 +0000] \"GET / HTTP/1.1\" 200 2 \"-\" \"-\"\n\
             ::1 - - [06/Nov/1994:08:49:38 +0000] \"GET / HTTP/1.1\" 200 2 \"-\" \"-\"\n\
             - - bob [06/Nov/1994:08:49:38 +0000] \"GET /u HTTP/1.1\" 200 2 \"-\" \"-\"\n"
        );
        let spelled = DEFAULT_FORMAT.replace("%(l)s", "-");
        assert_eq!(lines(&spelled, &requests, response), combined);
    }

    #[test]
    fn busy_rounds_gather_lines_for_up_to_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut log = AccessLog::open(&path, DEFAULT_FORMAT).unwrap();
        let mut slots = http::new_header_slots();
        let req = http::parse_head(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            &mut slots,
            &HeadLimits::default(),
        );
        let entry = Entry {
            req: Some(&req.unwrap()),
            remote: None,
            status: 204,
            head: b"",
            body_len: 0,
            duration: Duration::ZERO,
        };
        let at = |secs| {
            let mut date = DateCache::new();
            date.refresh(std::time::UNIX_EPOCH + Duration::from_secs(secs));
            date
        };
        let written = || std::fs::read_to_string(&path).unwrap().lines().count();
        log.log(&entry, &at(100));
        log.end_round(true, &at(100));
        assert_eq!(written(), 0, "a busy round's line waits");
        log.log(&entry, &at(100));
        log.end_round(true, &at(101));
        assert_eq!(written(), 2, "lines from an earlier second are written");
        log.log(&entry, &at(101));
        log.end_round(false, &at(101));
        assert_eq!(written(), 3, "a quiet round writes its lines");
    }

    #[test]
    fn other_atoms() {
        let head = b"POST /p?q=2 HTTP/1.0\r\nX-Id: \xe9z\r\n\r\n";
        let response = b"HTTP/1.1 204 No Content\r\nX-Out: yes\r\n\r\n";
        let format = "%(m)s %(U)s %(q)s %(H)s %(b)s %(B)s %(T)s %(D)s %(M)s %(L)s %({x-id}i)s %({X-Out}o)s %({nope}o)s %({HOME}e)s 100%%";
        assert_eq!(
            line(format, head, response),
            "POST /p q=2 HTTP/1.0 - 0 0 1500 1 0.001500 \\xe9z yes - - 100%\n"
        );
    }

    #[test]
    fn escaping_is_found_at_every_byte_value_and_position() {
        let special = |b: u8| !(0x20..=0x7e).contains(&b) || b == b'"' || b == b'\\';
        for len in 1..=17 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut field = vec![b'a'; len];
                    field[at] = b;
                    assert_eq!(
                        needs_escaping(&field),
                        special(b),
                        "byte {b:#x} at {at} of {len}"
                    );
                }
            }
        }
        assert!(!needs_escaping(b""));
        let mut out = Vec::new();
        escaped(&mut out, b"a\"b\\c\x7f\xe9\t");
        assert_eq!(out, b"a\\\"b\\\\c\\x7f\\xe9\\x09");
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(matches!(
            Format::parse("%(h"),
            Err(FormatError::Unterminated(0))
        ));
        assert!(matches!(
            Format::parse("%(zz)s"),
            Err(FormatError::Unknown(_))
        ));
        assert!(Format::parse("100% plain").is_ok());
    }

    #[test]
    fn pipe_writes_are_whole_lines_within_pipe_buf() {
        let lines = "x".repeat(99) + "\n";
        let buf = lines.repeat(100);
        let first = whole_lines(buf.as_bytes(), PIPE_BUF);
        assert_eq!(first, 4000);
        let long = "y".repeat(5000) + "\nz\n";
        assert_eq!(whole_lines(long.as_bytes(), PIPE_BUF), 5001);
        assert_eq!(response_status(b"HTTP/1.1 503 X\r\n"), 503);
        assert_eq!(response_status(b"junk"), 0);
    }
}
