//! Fuzz target: `ChunkedDecoder` on arbitrary bytes, in one call and in two
//! pieces split at a point taken from the input; both must agree (body,
//! bytes consumed, done, or the same error). The first input byte picks the
//! body limit and trailer limits, the second the split point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwsgi::http::{ChunkError, ChunkedDecoder, HeadLimits};

const SMALL: HeadLimits = HeadLimits {
    request_line: 40,
    fields: 2,
    field_size: 16,
    head: 48,
};

type Outcome = Result<(Vec<u8>, usize, bool), ChunkError>;

/// Feeds `pieces` like a server: append, decode, drop what was consumed.
fn feed(pieces: &[&[u8]], limit: u64, head: &HeadLimits) -> Outcome {
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

fuzz_target!(|data: &[u8]| {
    let [mode, cut, input @ ..] = data else {
        return;
    };
    let limit = match mode & 3 {
        0 => 0,
        1 => 16,
        2 => 1 << 20,
        _ => u64::from(*cut),
    };
    let head = if mode & 4 == 0 { HeadLimits::default() } else { SMALL };
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
});
