//! Fuzz target: request heads through `find_head_end`, `check_partial_head`
//! (fed in three pieces, as a server receives) and `parse_head`, under the
//! default limits and under small ones. Never panics; a parsed head lies
//! inside the buffer; a head refused while arriving is refused complete.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwsgi::http::{
    check_partial_head, find_head_end, new_header_slots, parse_head, HeadLimits, ScanState,
};

const SMALL: HeadLimits = HeadLimits {
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

fn check(data: &[u8], limits: &HeadLimits) {
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
    let b = data.last().map_or(0, |&b| a + usize::from(b) * (n - a) / 256);
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
            assert_eq!(check_partial_head(buf, limits, &mut ScanState::default()), None);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, &HeadLimits::default());
    check(data, &SMALL);
});
