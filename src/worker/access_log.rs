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
    /// The response's head, which starts with its status (empty: no response was sent).
    pub head: &'a [u8],
    /// Body bytes sent (for a streamed or pool-answered response, once it is complete).
    pub body_len: u64,
    /// From the start of the round that completed the request until the response was
    /// complete (zero unless [`AccessLog::timed`]).
    pub duration_ns: u64,
}

/// The status code at the start of a response head (`HTTP/1.1 200 OK`); 0 if there is none.
pub fn response_status(response: &[u8]) -> u16 {
    match status_digits(response) {
        Some(&[a, b, c]) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => 0,
    }
}

/// The three digits of the status code at the start of a response head, if it has them.
fn status_digits(response: &[u8]) -> Option<&[u8]> {
    response
        .get(9..12)
        .filter(|digits| digits.iter().all(u8::is_ascii_digit))
}

/// What a line in the default (combined) format shows: what [`Entry`] gives, taken out of the
/// request already (so it can be kept in a batch as positions in the connection's buffers).
pub struct Combined<'a> {
    pub remote: Option<IpAddr>,
    /// The request line (None: the request could not be parsed).
    pub line: Option<&'a [u8]>,
    pub wanted: Wanted<'a>,
    /// The response's head, which starts with its status (empty: no response was sent).
    pub head: &'a [u8],
    pub body_len: u64,
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
        if self.format.combined {
            let wanted = entry.req.map_or_else(Wanted::default, Wanted::find);
            let line = Combined {
                remote: entry.remote,
                line: entry.req.map(|req| req.line),
                wanted,
                head: entry.head,
                body_len: entry.body_len,
            };
            self.log_combined(&line, date);
            return;
        }
        self.start_line(date);
        self.remember_host(entry.remote);
        self.formatted_line(entry);
    }

    /// Whether lines are in the default format (they can then be made from [`Combined`]).
    pub fn in_combined_format(&self) -> bool {
        self.format.combined
    }

    /// Formats a line in the default format (see [`AccessLog::in_combined_format`]).
    pub fn log_combined(&mut self, line: &Combined<'_>, date: &DateCache) {
        self.start_line(date);
        self.combined_line(line);
    }

    fn start_line(&mut self, date: &DateCache) {
        if self.lines.is_empty() {
            self.lines_since = date.unix_secs();
        }
        if self.format.needs_time {
            self.refresh_time(date);
        }
    }

    /// Keeps the text of the remote address (most lines repeat the one before).
    fn remember_host(&mut self, remote: Option<IpAddr>) {
        if let Some(addr) = remote {
            if self.host.as_ref().is_none_or(|(last, _)| *last != addr) {
                self.host = Some((addr, addr.to_string().into_bytes()));
            }
        }
    }

    /// What a line's fields are taken from.
    fn fields<'f, 'b>(&'f self, entry: &'f Entry<'f, 'b, 'f>) -> Fields<'f, 'b> {
        Fields {
            entry,
            wanted: match entry.req {
                Some(req) if self.format.needs_headers => Wanted::find(req),
                _ => Wanted::default(),
            },
            host: match (entry.remote, &self.host) {
                (Some(_), Some((_, text))) => text,
                _ => b"-",
            },
            time: &self.time,
            pid: self.pid,
        }
    }

    /// The default format spelled out: a line costs no dispatch and no [`Fields`], only the
    /// copies and the few checks it needs (a measurable share of a pipelined request's time).
    /// Kept out of line: it runs between app calls.
    #[inline(never)]
    fn combined_line(&mut self, line: &Combined<'_>) {
        if self.prefix_for != Some((line.remote, self.time_secs)) {
            self.render_prefix(line.remote);
        }
        let out = &mut self.lines;
        match line.wanted.authorization.and_then(basic_user) {
            None => out.extend_from_slice(&self.prefix),
            Some(user) => {
                // In place of the `-` before ` [time] "`.
                let dash = self.prefix.len() - self.time.len() - 4;
                out.extend_from_slice(&self.prefix[..dash]);
                escaped(out, &user);
                out.extend_from_slice(&self.prefix[dash + 1..]);
            }
        }
        match line.line {
            Some(request_line) => escaped(out, request_line),
            None => out.push(b'-'),
        }
        // The rest in as few appends as it can: `" 200 `, the length, then each header with
        // the text around it (usually a constant: no Referer, say).
        match status_digits(line.head) {
            Some(&[a, b, c]) => out.extend_from_slice(&[b'"', b' ', a, b, c, b' ']),
            _ => out.extend_from_slice(b"\" - "),
        }
        push_bytes_or_dash(out, line.body_len);
        match shown(line.wanted.referer) {
            Some(referer) => {
                out.extend_from_slice(b" \"");
                escaped(out, referer);
                out.extend_from_slice(b"\" \"");
            }
            None => out.extend_from_slice(b" \"-\" \""),
        }
        match shown(line.wanted.user_agent) {
            Some(agent) => {
                escaped(out, agent);
                out.extend_from_slice(b"\"\n");
            }
            None => out.extend_from_slice(b"-\"\n"),
        }
    }

    /// Renders the combined format's start, `{host} - - [time] "`, for address `remote` and
    /// the current second.
    #[cold]
    fn render_prefix(&mut self, remote: Option<IpAddr>) {
        self.remember_host(remote);
        self.prefix.clear();
        match (remote, &self.host) {
            (Some(_), Some((_, text))) => self.prefix.extend_from_slice(text),
            _ => self.prefix.push(b'-'),
        }
        self.prefix.extend_from_slice(b" - - ");
        self.prefix.extend_from_slice(&self.time);
        self.prefix.extend_from_slice(b" \"");
        self.prefix_for = Some((remote, self.time_secs));
    }

    /// Any other format: its segments in turn.
    #[inline(never)]
    fn formatted_line(&mut self, entry: &Entry<'_, '_, '_>) {
        // Taken out for the line: the fields borrow the rest of the log.
        let mut out = std::mem::take(&mut self.lines);
        let fields = self.fields(entry);
        for Segment { literal, atom } in &self.format.segments {
            out.extend_from_slice(literal);
            push_field(&mut out, atom, &fields);
        }
        out.extend_from_slice(&self.format.tail);
        self.lines = out;
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
#[derive(Default, Clone, Copy)]
pub struct Wanted<'b> {
    pub authorization: Option<&'b [u8]>,
    pub referer: Option<&'b [u8]>,
    pub user_agent: Option<&'b [u8]>,
}

impl<'b> Wanted<'b> {
    pub fn find(req: &Request<'b, '_>) -> Self {
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
        (Atom::Status, _) => push_status(out, entry.head),
        (Atom::Bytes, _) => push_decimal(out, entry.body_len),
        (Atom::BytesOrDash, _) => push_bytes_or_dash(out, entry.body_len),
        (Atom::Referer, _) => header_or_dash(out, fields.wanted.referer),
        (Atom::UserAgent, _) => header_or_dash(out, fields.wanted.user_agent),
        (Atom::Seconds, _) => push_decimal(out, entry.duration_ns / 1_000_000_000),
        (Atom::Micros, _) => push_decimal(out, entry.duration_ns / 1_000),
        (Atom::Millis, _) => push_decimal(out, entry.duration_ns / 1_000_000),
        (Atom::DecimalSeconds, _) => {
            // As gunicorn: "%d.%06d" (integers: no float work for the other atoms).
            push_decimal(out, entry.duration_ns / 1_000_000_000);
            let micros = entry.duration_ns % 1_000_000_000 / 1_000;
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

/// The status code as the response head has it (no formatting), or `-` if none was sent.
#[inline(always)]
fn push_status(out: &mut Vec<u8>, head: &[u8]) {
    match status_digits(head) {
        Some(digits) => out.extend_from_slice(digits),
        None => out.push(b'-'),
    }
}

/// Body bytes, or `-` for none (`%(b)s`).
#[inline(always)]
fn push_bytes_or_dash(out: &mut Vec<u8>, len: u64) {
    if len != 0 {
        push_decimal(out, len);
    } else {
        out.push(b'-');
    }
}

/// A header value as a line shows it: an empty one is shown as missing (`-`).
#[inline(always)]
fn shown(value: Option<&[u8]>) -> Option<&[u8]> {
    value.filter(|v| !v.is_empty())
}

#[inline(always)]
fn header_or_dash(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match shown(value) {
        Some(v) => escaped(out, v),
        None => out.push(b'-'),
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
            date.refresh(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
            let entry = Entry {
                req: Some(&req),
                remote: remote.map(|r| r.parse().unwrap()),
                head: &response[..head_len],
                body_len: (response.len() - head_len) as u64,
                duration_ns: 1_500_000,
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
    fn combined_code_agrees_with_the_generic_one_on_every_field_shape() {
        let heads: [&[u8]; 4] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /r HTTP/1.1\r\nHost: x\r\nReferer: https://a.example/?q=\"x\"\r\nUser-Agent:\r\n\r\n",
            b"GET /e HTTP/1.1\r\nHost: x\r\nReferer:\r\nUser-Agent: Mozilla/5.0\r\n\r\n",
            b"GET /q\\\" HTTP/1.0\r\n\r\n",
        ];
        let responses: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"",
        ];
        let spelled = DEFAULT_FORMAT.replace("%(l)s", "-");
        let line = |format: &str, head: Option<&[u8]>, response: &[u8]| {
            let mut log = AccessLog::open(Path::new("/dev/null"), format).unwrap();
            let mut slots = http::new_header_slots();
            let req =
                head.map(|h| http::parse_head(h, &mut slots, &HeadLimits::default()).unwrap());
            let head_len = http::find_head_end(response, 0).unwrap_or(response.len());
            let entry = Entry {
                req: req.as_ref(),
                remote: None,
                head: &response[..head_len],
                body_len: (response.len() - head_len) as u64,
                duration_ns: 0,
            };
            log.log(&entry, &DateCache::new());
            String::from_utf8(std::mem::take(&mut log.lines)).unwrap()
        };
        for response in responses {
            for head in heads.map(Some).into_iter().chain([None]) {
                let combined = line(DEFAULT_FORMAT, head, response);
                assert_eq!(combined, line(&spelled, head, response));
                assert!(combined.ends_with("\n") && combined.matches('\n').count() == 1);
            }
        }
        let none = line(DEFAULT_FORMAT, None, b"");
        assert!(none.ends_with(" \"-\" - - \"-\" \"-\"\n"), "{none}");
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
            head: b"HTTP/1.1 204 No Content\r\n\r\n",
            body_len: 0,
            duration_ns: 0,
        };
        let at = |secs| {
            let mut date = DateCache::new();
            date.refresh(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
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
