//! The invariants the fuzz targets (`fuzz/`) check, as plain functions: the targets call them
//! on fuzzer input, and `tests/fuzz_corpus.rs` replays the committed corpus through them on the
//! stable toolchain (CI). Each panics when an invariant breaks.

use super::proxy_protocol::{self, Parsed, Versions, MAX_V2_LEN, V1_MAX};
use super::{
    check_partial_head, find_head_end, new_header_slots, parse_head, ChunkError, ChunkedDecoder,
    HeadLimits, ScanState,
};

/// Request heads through `find_head_end`, `check_partial_head` (fed in three pieces, as a
/// server receives) and `parse_head`, under the default limits and under small ones: a parsed
/// head lies inside the buffer; a head refused while arriving is refused complete.
pub fn parse_head_input(data: &[u8]) {
    check_head(data, &HeadLimits::default());
    check_head(data, &SMALL_HEAD);
}

/// `ChunkedDecoder` on arbitrary bytes, in one call and in two pieces split at a point taken
/// from the input: both agree (body, bytes consumed, done, or the same error). The first byte
/// picks the body and trailer limits, the second the split point.
pub fn chunked_input(data: &[u8]) {
    let [mode, cut, input @ ..] = data else {
        return;
    };
    let limit = match mode & 3 {
        0 => 0,
        1 => 16,
        2 => 1 << 20,
        _ => u64::from(*cut),
    };
    let head = if mode & 4 == 0 {
        HeadLimits::default()
    } else {
        SMALL_CHUNKED
    };
    let split = usize::from(*cut) * input.len() / 255;
    let once = feed(&[input], limit, &head);
    let twice = feed(&[&input[..split], &input[split..]], limit, &head);
    assert_eq!(once, twice, "split at {split}");
    if let Ok((body, n, _)) = &once {
        assert!(*n <= input.len());
        if limit != 0 {
            assert!(body.len() as u64 <= limit);
        }
    }
}

/// The PROXY header parser on arbitrary bytes, for each accepted set of versions, fed one byte
/// more at a time as a server receives it: every prefix is `Incomplete` until the first that is
/// not, and that answer is the whole input's (a header never depends on the bytes after it, a
/// refusal never turns into a header). A header lies inside the input and inside its version's
/// size bound.
pub fn proxy_header_input(data: &[u8]) {
    for versions in [Versions::V1, Versions::V2, Versions::Any] {
        let whole = proxy_protocol::parse(data, versions);
        let settled = (0..=data.len())
            .map(|n| proxy_protocol::parse(&data[..n], versions))
            .find(|r| *r != Ok(Parsed::Incomplete));
        assert_eq!(settled.unwrap_or(Ok(Parsed::Incomplete)), whole);
        if let Ok(Parsed::Header { len, .. }) = whole {
            assert!(len <= data.len());
            assert!(len <= V1_MAX.max(16 + MAX_V2_LEN));
            if data[0] == b'P' {
                assert!(len <= V1_MAX);
            }
        }
    }
}

const SMALL_CHUNKED: HeadLimits = HeadLimits {
    request_line: 40,
    fields: 2,
    field_size: 16,
    head: 48,
};

type Outcome = Result<(Vec<u8>, usize, bool), ChunkError>;

/// Feeds `pieces` like a server: append to a buffer, decode, drop the consumed prefix, keep
/// the rest; stops once done. Returns (body, total consumed, done).
pub(crate) fn feed(pieces: &[&[u8]], limit: u64, head: &HeadLimits) -> Outcome {
    let mut d = ChunkedDecoder::with_limits(limit, head);
    let mut body = Vec::new();
    let mut buf = Vec::new();
    let mut total = 0;
    for piece in pieces {
        if d.is_done() {
            break;
        }
        buf.extend_from_slice(piece);
        let n = d.decode(&buf, &mut body)?;
        assert!(n <= buf.len());
        assert_eq!(d.decoded_len(), body.len() as u64);
        buf.drain(..n);
        total += n;
    }
    Ok((body, total, d.is_done()))
}

const SMALL_HEAD: HeadLimits = HeadLimits {
    request_line: 40,
    fields: 4,
    field_size: 24,
    head: 128,
};

fn inside(buf: &[u8], part: &[u8]) -> bool {
    let b = buf.as_ptr_range();
    let p = part.as_ptr_range();
    part.is_empty() || (b.start <= p.start && p.end <= b.end)
}

fn check_head(data: &[u8], limits: &HeadLimits) {
    let end = find_head_end(data, 0);
    let mut slots = new_header_slots();
    let parsed = parse_head(data, &mut slots, limits);
    if let Ok(r) = &parsed {
        assert!(r.head_len <= data.len());
        assert_eq!(Some(r.head_len), end);
        assert!(r.headers.len() <= limits.max_fields());
        for h in r.headers {
            assert!(inside(data, h.name.as_bytes()));
            assert!(inside(data, h.value));
            assert!(h.name.as_ptr() as usize + h.name.len() <= data.as_ptr() as usize + r.head_len);
        }
        for part in [r.method.as_bytes(), r.target, r.path, r.query] {
            assert!(inside(&data[..r.head_len], part) || part == b"/");
        }
        if let Some(h) = r.host {
            assert!(inside(data, h));
        }
    }

    // Receive in three pieces, like a server: find_head_end on each, then
    // check_partial_head while the head is incomplete.
    let n = data.len();
    let a = data.first().map_or(0, |&b| usize::from(b) * n / 256);
    let b = data
        .last()
        .map_or(0, |&b| a + usize::from(b) * (n - a) / 256);
    let mut st = ScanState::default();
    let mut searched = 0;
    for len in [a, b, n] {
        let buf = &data[..len];
        if let Some(e) = find_head_end(buf, searched) {
            assert_eq!(Some(e), end);
            break;
        }
        searched = len;
        if let Some(err) = check_partial_head(buf, limits, &mut st) {
            // Refused while arriving: refused once complete, too.
            assert!(parsed.is_err(), "{err} on a prefix, accepted whole");
            // Resuming gave what a fresh scan of the same bytes gives.
            let fresh = check_partial_head(buf, limits, &mut ScanState::default());
            assert_eq!(fresh, Some(err));
            break;
        }
        if len == n {
            assert_eq!(
                check_partial_head(buf, limits, &mut ScanState::default()),
                None
            );
        }
    }
}
