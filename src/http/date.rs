//! The `Date` response header, formatted at most once per second.
//!
//! Formatting an IMF-fixdate costs far more than copying 29 bytes, and every
//! response needs one, so each worker keeps a [`DateCache`] and refreshes it
//! from its event loop (about once a second and before each batch).

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LEN: usize = 29;

/// Last second httpdate can format (9999-12-31T23:59:59Z); it panics beyond.
const MAX_SECS: u64 = 253_402_300_799;

/// A preformatted HTTP-date and the unix second it stands for.
#[derive(Clone, Debug)]
pub struct DateCache {
    bytes: [u8; DATE_LEN],
    secs: u64,
}

impl DateCache {
    /// A cache holding the current time.
    pub fn new() -> Self {
        let mut cache = DateCache {
            bytes: [0; DATE_LEN],
            secs: u64::MAX, // never a real second, so the refresh formats
        };
        cache.refresh(SystemTime::now());
        cache
    }

    /// Updates the cache for `now`; formats only when the second changed.
    /// Clocks before 1970 or after 9999 are clamped, never a panic.
    pub fn refresh(&mut self, now: SystemTime) {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .min(MAX_SECS);
        if secs == self.secs {
            return;
        }
        let date = httpdate::HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs));
        let mut w = FixedWriter {
            buf: &mut self.bytes,
            len: 0,
        };
        // Cannot fail: httpdate always writes exactly DATE_LEN ASCII bytes.
        if write!(w, "{date}").is_ok() && w.len == DATE_LEN {
            self.secs = secs;
        }
    }

    /// The header value: 29 bytes such as `Sun, 06 Nov 1994 08:49:37 GMT`.
    pub fn header_value(&self) -> &[u8] {
        &self.bytes
    }

    /// The unix second the cached value was made for.
    pub fn unix_secs(&self) -> u64 {
        self.secs
    }
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

/// `fmt::Write` into a fixed array, so formatting allocates nothing.
struct FixedWriter<'a> {
    buf: &'a mut [u8; DATE_LEN],
    len: usize,
}

impl fmt::Write for FixedWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_rfc_example() {
        let mut c = DateCache::new();
        c.refresh(at(784_111_777));
        assert_eq!(c.header_value(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(c.unix_secs(), 784_111_777);
    }

    #[test]
    fn new_is_current_and_well_formed() {
        let c = DateCache::default();
        let v = c.header_value();
        assert_eq!(v.len(), 29);
        assert!(v.ends_with(b" GMT"));
        assert_eq!(v[3], b',');
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(c.unix_secs()) <= 2);
        let parsed = httpdate::parse_http_date(std::str::from_utf8(v).unwrap()).unwrap();
        assert_eq!(parsed, at(c.unix_secs()));
    }

    #[test]
    fn refresh_only_changes_on_new_second() {
        let mut c = DateCache::new();
        c.refresh(at(0));
        assert_eq!(c.header_value(), b"Thu, 01 Jan 1970 00:00:00 GMT");
        c.refresh(at(0) + Duration::from_millis(999));
        assert_eq!(c.header_value(), b"Thu, 01 Jan 1970 00:00:00 GMT");
        c.refresh(at(1));
        assert_eq!(c.header_value(), b"Thu, 01 Jan 1970 00:00:01 GMT");
        c.refresh(at(951_782_400)); // leap day 2000
        assert_eq!(c.header_value(), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn out_of_range_clocks_are_clamped() {
        let mut c = DateCache::new();
        c.refresh(UNIX_EPOCH - Duration::from_secs(10));
        assert_eq!(c.header_value(), b"Thu, 01 Jan 1970 00:00:00 GMT");
        c.refresh(at(MAX_SECS + 1_000_000));
        assert_eq!(c.header_value(), b"Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
