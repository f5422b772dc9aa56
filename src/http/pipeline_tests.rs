//! Property test: a stream of pipelined requests parses the same however
//! it is split into reads.
//!
//! A deterministic generator (xorshift, many seeds) builds streams of
//! GET/HEAD/DELETE requests without body, Content-Length bodies and chunked
//! bodies (random chunk sizes, hex case, leading zeros, extensions,
//! trailers). A small driver does what the worker does: append each read
//! to a buffer, look for the head end with [`find_head_end`] (resuming),
//! call [`check_partial_head`] (resuming) while the head is incomplete,
//! [`parse_head`] once it is complete, then take the body by
//! Content-Length or with a [`ChunkedDecoder`], and drop what it consumed.
//! The stream in one read must give exactly the generated requests, and
//! random split sets and one byte per read must give the same sequence.

use super::{
    check_partial_head, find_head_end, new_header_slots, parse_head, BodyFraming, ChunkedDecoder,
    HeadLimits, ScanState,
};

/// What the driver (or the generator) says a request was.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    target: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const TCHARS: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn token(rng: &mut Rng, max: usize) -> Vec<u8> {
    (0..1 + rng.below(max)).map(|_| *rng.pick(TCHARS)).collect()
}

/// A header value: visible ASCII, obs-text, inner SP/HTAB; no OWS at the ends.
fn value(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(40);
    let mut v: Vec<u8> = (0..len)
        .map(|_| match rng.below(10) {
            0 => b' ',
            1 => b'\t',
            2 => 0x80 + rng.below(0x80) as u8,
            _ => 0x21 + rng.below(0x7f - 0x21) as u8,
        })
        .collect();
    while matches!(v.first(), Some(b' ' | b'\t')) {
        v.remove(0);
    }
    while matches!(v.last(), Some(b' ' | b'\t')) {
        v.pop();
    }
    v
}

fn target(rng: &mut Rng) -> Vec<u8> {
    let mut t = match rng.below(8) {
        0 => b"http://example.com".to_vec(),
        _ => Vec::new(),
    };
    for _ in 0..1 + rng.below(4) {
        t.push(b'/');
        t.extend((0..rng.below(8)).map(|_| 0x21 + rng.below(0x7f - 0x21) as u8));
    }
    t
}

/// Body bytes, any value, with CRLFs and whole heads mixed in to tempt a
/// sloppy driver.
fn body(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(4) {
        0 => 0,
        1 => rng.below(8),
        2 => rng.below(200),
        _ => rng.below(3000),
    };
    let mut b = Vec::with_capacity(len + 32);
    while b.len() < len {
        match rng.below(20) {
            0 => b.extend_from_slice(b"\r\n\r\n"),
            1 => b.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            2 => b.extend_from_slice(b"0\r\n\r\n"),
            _ => b.push(rng.next() as u8),
        }
    }
    b.truncate(len);
    b
}

fn hex(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut s = vec![b'0'; rng.below(3) * rng.below(2)];
    let digits = format!("{n:x}");
    s.extend(digits.bytes().map(|c| {
        if rng.chance(50) {
            c.to_ascii_uppercase()
        } else {
            c
        }
    }));
    s
}

fn extensions(rng: &mut Rng, wire: &mut Vec<u8>) {
    for _ in 0..rng.below(3) {
        match rng.below(4) {
            0 => wire.push(b';'),
            1 => wire.extend_from_slice(b" ; "),
            2 => wire.extend_from_slice(b"\t;"),
            _ => wire.extend_from_slice(b";"),
        }
        wire.extend(token(rng, 6));
        match rng.below(3) {
            0 => {}
            1 => {
                wire.push(b'=');
                wire.extend(token(rng, 6));
            }
            _ => wire.extend_from_slice(b"=\"q \\\" ;=x\""),
        }
    }
}

/// Appends one request to `wire`; returns what a parser must see.
fn request(rng: &mut Rng, wire: &mut Vec<u8>) -> Seen {
    let kind = rng.below(3);
    let method = match kind {
        0 => rng.pick(&["GET", "HEAD", "DELETE", "OPTIONS"]).to_string(),
        _ => rng.pick(&["POST", "PUT", "PATCH"]).to_string(),
    };
    // The asterisk-form is for OPTIONS only.
    let target = if method == "OPTIONS" && rng.chance(3) {
        b"*".to_vec()
    } else {
        target(rng)
    };
    let http10 = kind != 2 && rng.chance(15);
    wire.extend_from_slice(method.as_bytes());
    wire.push(b' ');
    wire.extend_from_slice(&target);
    wire.extend_from_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else if rng.chance(10) {
        b" HTTP/1.7\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let host = rng
        .pick(&["example.com", "a:8080", "[::1]:1", "127.0.0.1", ""])
        .as_bytes()
        .to_vec();
    let host_at = rng.below(3);
    let extra = rng.below(6);
    let mut body_bytes = Vec::new();
    let mut chunked = Vec::new();
    for i in 0..=extra {
        if i == host_at.min(extra) && !(http10 && rng.chance(50)) {
            headers.push(("Host".into(), host.clone()));
        }
        if i < extra {
            let mut name = token(rng, 12);
            // Keep clear of the headers with framing meaning.
            name.insert(0, b'X');
            name.insert(1, b'-');
            headers.push((String::from_utf8(name).unwrap(), value(rng)));
        }
    }
    match kind {
        1 => {
            body_bytes = body(rng);
            headers.push((
                (*rng.pick(&["Content-Length", "content-length"])).into(),
                body_bytes.len().to_string().into_bytes(),
            ));
        }
        2 => {
            body_bytes = body(rng);
            headers.push(("Transfer-Encoding".into(), b"chunked".to_vec()));
            let mut rest = &body_bytes[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len().min(700));
                chunked.extend(hex(rng, n));
                extensions(rng, &mut chunked);
                chunked.extend_from_slice(b"\r\n");
                chunked.extend_from_slice(&rest[..n]);
                chunked.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            chunked.extend(hex(rng, 0));
            extensions(rng, &mut chunked);
            chunked.extend_from_slice(b"\r\n");
            for _ in 0..rng.below(3) {
                chunked.extend(token(rng, 10));
                chunked.extend_from_slice(b": ");
                chunked.extend(value(rng));
                chunked.extend_from_slice(b"\r\n");
            }
            chunked.extend_from_slice(b"\r\n");
        }
        _ => {}
    }
    for (name, value) in &headers {
        wire.extend_from_slice(name.as_bytes());
        wire.extend_from_slice(if rng.chance(20) { b":\t " } else { b": " });
        wire.extend_from_slice(value);
        wire.extend_from_slice(if rng.chance(10) { b" \r\n" } else { b"\r\n" });
    }
    wire.extend_from_slice(b"\r\n");
    if kind == 2 {
        wire.extend_from_slice(&chunked);
    } else {
        wire.extend_from_slice(&body_bytes);
    }
    Seen {
        method,
        target,
        headers,
        body: body_bytes,
    }
}

enum Phase {
    Head { searched: usize, scan: ScanState },
    Length { seen: Seen, remaining: u64 },
    Chunked { seen: Seen, decoder: ChunkedDecoder },
}

const HEAD: Phase = Phase::Head {
    searched: 0,
    scan: ScanState::new(),
};

/// Feeds `reads` through find_head_end / check_partial_head / parse_head /
/// body framing, like the worker; returns the requests in order.
fn drive<'a>(reads: impl IntoIterator<Item = &'a [u8]>) -> Vec<Seen> {
    let limits = HeadLimits::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut phase = HEAD;
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            phase = match phase {
                Phase::Head { searched, mut scan } => {
                    if buf.is_empty() {
                        phase = Phase::Head { searched, scan };
                        break;
                    }
                    let Some(end) = find_head_end(&buf, searched) else {
                        let refused = check_partial_head(&buf, &limits, &mut scan);
                        assert_eq!(refused, None);
                        phase = Phase::Head {
                            searched: buf.len(),
                            scan,
                        };
                        break;
                    };
                    let mut slots = new_header_slots();
                    let r = parse_head(&buf, &mut slots, &limits).unwrap();
                    assert_eq!(r.head_len, end);
                    // The worker passes the head alone: same result.
                    let mut slots2 = new_header_slots();
                    let r2 = parse_head(&buf[..end], &mut slots2, &limits).unwrap();
                    assert_eq!(
                        (r2.head_len, r2.body, r2.headers),
                        (r.head_len, r.body, r.headers)
                    );
                    let seen = Seen {
                        method: r.method.to_string(),
                        target: r.target.to_vec(),
                        headers: r
                            .headers
                            .iter()
                            .map(|h| (h.name.to_string(), h.value.to_vec()))
                            .collect(),
                        body: Vec::new(),
                    };
                    let framing = r.body;
                    buf.drain(..end);
                    match framing {
                        BodyFraming::None => {
                            out.push(seen);
                            HEAD
                        }
                        BodyFraming::Length(remaining) => Phase::Length { seen, remaining },
                        BodyFraming::Chunked => Phase::Chunked {
                            seen,
                            decoder: ChunkedDecoder::with_limits(0, &limits),
                        },
                    }
                }
                Phase::Length {
                    mut seen,
                    remaining,
                } => {
                    let take = usize::try_from(remaining).unwrap().min(buf.len());
                    seen.body.extend(buf.drain(..take));
                    let remaining = remaining - take as u64;
                    if remaining == 0 {
                        out.push(seen);
                        HEAD
                    } else {
                        phase = Phase::Length { seen, remaining };
                        break;
                    }
                }
                Phase::Chunked {
                    mut seen,
                    mut decoder,
                } => {
                    let n = decoder.decode(&buf, &mut seen.body).unwrap();
                    buf.drain(..n);
                    if decoder.is_done() {
                        out.push(seen);
                        HEAD
                    } else {
                        assert!(buf.is_empty());
                        phase = Phase::Chunked { seen, decoder };
                        break;
                    }
                }
            };
        }
    }
    assert!(buf.is_empty(), "bytes left over");
    assert!(
        matches!(phase, Phase::Head { searched: 0, .. }),
        "stream ends mid-request"
    );
    out
}

/// A stream of 1..=8 requests for `seed`, and what parsing it must give.
fn stream(seed: u64) -> (Vec<u8>, Vec<Seen>) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut wire = Vec::new();
    let want = (0..1 + rng.below(8))
        .map(|_| request(&mut rng, &mut wire))
        .collect();
    (wire, want)
}

/// Cuts `wire` at `cuts` random points.
fn split_at_random<'a>(rng: &mut Rng, wire: &'a [u8], cuts: usize) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = (0..cuts).map(|_| rng.below(wire.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut at = 0;
    for p in points {
        pieces.push(&wire[at..p]);
        at = p;
    }
    pieces.push(&wire[at..]);
    pieces
}

#[test]
fn one_read_gives_the_generated_requests() {
    for seed in 0..400 {
        let (wire, want) = stream(seed);
        assert_eq!(drive([wire.as_slice()]), want, "seed {seed}");
    }
}

#[test]
fn any_split_gives_the_same_requests() {
    for seed in 0..400 {
        let (wire, want) = stream(seed);
        let whole = drive([wire.as_slice()]);
        assert_eq!(whole, want, "seed {seed}");
        let mut rng = Rng(seed + 1);
        for cuts in [1, 2, 5, 20, 100] {
            let pieces = split_at_random(&mut rng, &wire, cuts);
            assert_eq!(drive(pieces), whole, "seed {seed}, {cuts} cuts");
        }
    }
}

#[test]
fn one_byte_per_read_gives_the_same_requests() {
    for seed in 0..120 {
        let (wire, want) = stream(seed);
        assert_eq!(drive(wire.chunks(1)), want, "seed {seed}");
    }
}

/// Reads that split exactly at every CR, LF and head end (the boundaries
/// a resumable parser is most likely to get wrong).
#[test]
fn splits_at_line_boundaries_give_the_same_requests() {
    for seed in 0..100 {
        let (wire, want) = stream(seed);
        for delim in [b'\r', b'\n'] {
            let mut pieces = Vec::new();
            let mut at = 0;
            for (i, &b) in wire.iter().enumerate() {
                if b == delim {
                    pieces.push(&wire[at..i]);
                    pieces.push(&wire[i..i + 1]);
                    at = i + 1;
                }
            }
            pieces.push(&wire[at..]);
            assert_eq!(drive(pieces), want, "seed {seed}");
        }
    }
}
