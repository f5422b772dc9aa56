//! Percent-decoding of request paths (for WSGI's `PATH_INFO`).
//!
//! Behaves like Python's `urllib.parse.unquote_to_bytes`: `%XX` with two hex
//! digits becomes one byte, anything else (including `+` and malformed or
//! truncated escapes) is copied unchanged.

use memchr::memchr;

/// Whether `input` contains a `%`, i.e. whether decoding could change it.
/// Lets callers borrow the raw path in the common case instead of copying.
pub fn needs_decoding(input: &[u8]) -> bool {
    memchr(b'%', input).is_some()
}

/// Appends the percent-decoded form of `input` to `out`.
pub fn percent_decode_into(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(input.len());
    let mut rest = input;
    // Copy whole runs between '%' signs at once rather than byte by byte.
    while let Some(i) = memchr(b'%', rest) {
        out.extend_from_slice(&rest[..i]);
        let escape = &rest[i..];
        match escape {
            [_, hi, lo, ..] if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                out.push(hex_value(*hi) << 4 | hex_value(*lo));
                rest = &escape[3..];
            }
            _ => {
                out.push(b'%');
                rest = &escape[1..];
            }
        }
    }
    out.extend_from_slice(rest);
}

/// Value of an ASCII hex digit (caller checked it is one).
fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        percent_decode_into(input, &mut out);
        out
    }

    #[test]
    fn plain_input_is_copied() {
        assert_eq!(decode(b""), b"");
        assert_eq!(decode(b"/a/b.html"), b"/a/b.html");
        assert_eq!(decode(b"/a+b"), b"/a+b");
    }

    #[test]
    fn valid_escapes() {
        assert_eq!(decode(b"/a%20b"), b"/a b");
        assert_eq!(decode(b"%2F%2f"), b"//");
        assert_eq!(decode(b"%C3%A9t%c3%a9"), "été".as_bytes());
        assert_eq!(decode(b"%00%ff%FF"), b"\x00\xff\xff");
        assert_eq!(decode(b"%252F"), b"%2F");
        assert_eq!(decode(b"%41%42%43"), b"ABC");
    }

    #[test]
    fn invalid_escapes_are_kept() {
        assert_eq!(decode(b"%"), b"%");
        assert_eq!(decode(b"a%"), b"a%");
        assert_eq!(decode(b"%4"), b"%4");
        assert_eq!(decode(b"%zz"), b"%zz");
        assert_eq!(decode(b"%4g"), b"%4g");
        assert_eq!(decode(b"%g4"), b"%g4");
        assert_eq!(decode(b"%%41"), b"%A");
        assert_eq!(decode(b"100%"), b"100%");
        assert_eq!(decode(b"%%%"), b"%%%");
        assert_eq!(decode(b"%-1"), b"%-1");
        assert_eq!(decode(b"%+1"), b"%+1");
    }

    #[test]
    fn appends_to_existing_output() {
        let mut out = b"prefix:".to_vec();
        percent_decode_into(b"%41", &mut out);
        assert_eq!(out, b"prefix:A");
    }

    #[test]
    fn needs_decoding_detects_percent() {
        assert!(!needs_decoding(b"/plain/path"));
        assert!(!needs_decoding(b""));
        assert!(needs_decoding(b"/a%20b"));
        assert!(needs_decoding(b"%"));
    }

    #[test]
    fn matches_python_unquote_on_all_two_byte_escapes() {
        // Exhaustive over "%" followed by any two bytes.
        for hi in 0..=255u8 {
            for lo in 0..=255u8 {
                let input = [b'%', hi, lo];
                let got = decode(&input);
                if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() {
                    let s = std::str::from_utf8(&input[1..]).unwrap();
                    assert_eq!(got, vec![u8::from_str_radix(s, 16).unwrap()]);
                } else {
                    assert_eq!(got, input);
                }
            }
        }
    }
}
