//! The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2) that a load
//! balancer sends at the start of a connection to say who the client is.
//!
//! [`parse`] looks at the start of a connection's input, which may hold only part of the
//! header: it answers [`Parsed::Incomplete`] until the header is whole, and refuses input as
//! soon as it cannot become a valid header (a wrong first byte, a v1 line longer than 107
//! bytes, a v2 length above [`MAX_V2_LEN`]). The bytes after the header are not looked at: they
//! are the first HTTP request. Type-length-value extensions of v2 are skipped unread.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 1 header starts with this.
const V1_PREFIX: &[u8] = b"PROXY ";
/// A version 1 header is at most this long, CRLF included.
pub const V1_MAX: usize = 107;
/// The version 2 header starts with these 12 bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Length of the fixed part of a version 2 header (signature, command, family, length).
const V2_FIXED: usize = 16;
/// Largest variable part of a v2 header accepted (addresses and extensions): load balancers send
/// a few hundred bytes of extensions at most; the format allows 64 KiB.
pub const MAX_V2_LEN: usize = 4096;

/// What the start of a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a valid header: read more.
    Incomplete,
    /// A whole header of `len` bytes. `source`: the client the proxy speaks for; `None` when the
    /// header carries no TCP address (v1 `UNKNOWN`, v2 `LOCAL`, an unspecified or unix-domain
    /// family): the connection's own peer stands.
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Why the start of a connection is not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("the connection does not start with a PROXY protocol header")]
    NotProxy,
    #[error("PROXY v1 line longer than 107 bytes")]
    V1TooLong,
    #[error("malformed PROXY v1 line")]
    V1Malformed,
    #[error("PROXY v2 header with an unknown version or command")]
    V2Command,
    #[error("PROXY v2 header for a datagram or unknown transport")]
    V2Transport,
    #[error("PROXY v2 header with an unknown address family")]
    V2Family,
    #[error("PROXY v2 addresses longer than the header")]
    V2Short,
    #[error("PROXY v2 header longer than {MAX_V2_LEN} bytes")]
    V2TooLong,
}

/// Which versions a server accepts (gunicorn's `--proxy-protocol` modes, `off` aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    V1,
    V2,
    /// Either, told apart by the first byte.
    Any,
}

/// Parses the PROXY header at the start of `input` (see the module docs).
pub fn parse(input: &[u8], versions: Versions) -> Result<Parsed, ProxyError> {
    let Some(&first) = input.first() else {
        return Ok(Parsed::Incomplete);
    };
    match (first, versions) {
        (b'P', Versions::V1 | Versions::Any) => parse_v1(input),
        (b'\r', Versions::V2 | Versions::Any) => parse_v2(input),
        _ => Err(ProxyError::NotProxy),
    }
}

fn parse_v1(input: &[u8]) -> Result<Parsed, ProxyError> {
    let seen = &input[..input.len().min(V1_PREFIX.len())];
    if !V1_PREFIX.starts_with(seen) {
        return Err(ProxyError::NotProxy);
    }
    let window = &input[..input.len().min(V1_MAX)];
    let Some(end) = memchr::memchr(b'\n', window) else {
        return if window.len() == V1_MAX {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line = window[..end]
        .strip_suffix(b"\r")
        .ok_or(ProxyError::V1Malformed)?;
    let rest = line.strip_prefix(V1_PREFIX).ok_or(ProxyError::NotProxy)?;
    let len = end + 1;
    // "UNKNOWN" may be followed by anything up to the CRLF, which is ignored.
    if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
        return Ok(Parsed::Header { len, source: None });
    }
    let text = std::str::from_utf8(rest).map_err(|_| ProxyError::V1Malformed)?;
    let mut fields = text.split(' ');
    let (Some(proto), Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ProxyError::V1Malformed);
    };
    // The destination is checked, not kept: the server knows where it listens.
    let src: IpAddr = match proto {
        "TCP4" => {
            v1_addr::<Ipv4Addr>(dst)?;
            v1_addr::<Ipv4Addr>(src)?.into()
        }
        "TCP6" => {
            v1_addr::<Ipv6Addr>(dst)?;
            v1_addr::<Ipv6Addr>(src)?.into()
        }
        _ => return Err(ProxyError::V1Malformed),
    };
    let sport = v1_port(sport)?;
    v1_port(dport)?;
    Ok(Parsed::Header {
        len,
        source: Some(SocketAddr::new(src, sport)),
    })
}

fn v1_addr<A: std::str::FromStr>(s: &str) -> Result<A, ProxyError> {
    s.parse().map_err(|_| ProxyError::V1Malformed)
}

/// A port: 1 to 5 decimal digits, at most 65535.
fn v1_port(s: &str) -> Result<u16, ProxyError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProxyError::V1Malformed);
    }
    s.parse().map_err(|_| ProxyError::V1Malformed)
}

fn parse_v2(input: &[u8]) -> Result<Parsed, ProxyError> {
    let seen = &input[..input.len().min(V2_SIGNATURE.len())];
    if !V2_SIGNATURE.starts_with(seen) {
        return Err(ProxyError::NotProxy);
    }
    // The fixed part is checked byte by byte as it arrives.
    if let Some(&ver_cmd) = input.get(12) {
        if ver_cmd >> 4 != 2 || ver_cmd & 0x0f > 1 {
            return Err(ProxyError::V2Command);
        }
    }
    if let Some(&fam) = input.get(13) {
        if fam >> 4 > 3 {
            return Err(ProxyError::V2Family);
        }
        if fam & 0x0f > 2 {
            return Err(ProxyError::V2Transport);
        }
    }
    let [_, _, _, _, _, _, _, _, _, _, _, _, ver_cmd, fam, hi, lo, ..] = *input else {
        return Ok(Parsed::Incomplete);
    };
    let body_len = usize::from(u16::from_be_bytes([hi, lo]));
    if body_len > MAX_V2_LEN {
        return Err(ProxyError::V2TooLong);
    }
    let len = V2_FIXED + body_len;
    let Some(body) = input.get(V2_FIXED..len) else {
        return Ok(Parsed::Incomplete);
    };
    // LOCAL: the proxy speaks for itself (health checks); the family is ignored.
    if ver_cmd & 0x0f == 0 {
        return Ok(Parsed::Header { len, source: None });
    }
    let source = match (fam >> 4, fam & 0x0f) {
        // AF_INET over a stream.
        (1, 1) => {
            let a: &[u8; 12] = first_bytes(body)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        // AF_INET6 over a stream.
        (2, 1) => {
            let a: &[u8; 36] = first_bytes(body)?;
            let mut ip = [0; 16];
            ip.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port))
        }
        // AF_UNIX over a stream: 108-byte paths, no address to show.
        (3, 1) => {
            let _: &[u8; 216] = first_bytes(body)?;
            None
        }
        // AF_UNSPEC: an unknown protocol; the socket's peer stands.
        (0, _) => None,
        // A PROXY command over an unspecified or datagram transport: not an HTTP connection.
        _ => return Err(ProxyError::V2Transport),
    };
    Ok(Parsed::Header { len, source })
}

/// The address block at the start of a v2 header's variable part (TLVs may follow it).
fn first_bytes<const N: usize>(body: &[u8]) -> Result<&[u8; N], ProxyError> {
    body.get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or(ProxyError::V2Short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(fam);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn v2_tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, tlvs: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&src);
        body.extend_from_slice(&dst);
        body.extend_from_slice(&sport.to_be_bytes());
        body.extend_from_slice(&dport.to_be_bytes());
        body.extend_from_slice(tlvs);
        v2(0x21, 0x11, &body)
    }

    /// Every proper prefix of a valid header is `Incomplete`; the whole is `header`.
    fn check_every_prefix(bytes: &[u8], versions: Versions, header: Parsed) {
        for n in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..n], versions),
                Ok(Parsed::Incomplete),
                "prefix of {n} bytes"
            );
        }
        assert_eq!(parse(bytes, versions), Ok(header));
    }

    fn sa(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn v1_tcp4_every_field() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
        let header = Parsed::Header {
            len: line.len(),
            source: sa("192.0.2.7:56324"),
        };
        check_every_prefix(line, Versions::V1, header);
        check_every_prefix(line, Versions::Any, header);
        // The request behind it is not part of the header.
        let mut with_request = line.to_vec();
        with_request.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(parse(&with_request, Versions::Any), Ok(header));
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
        check_every_prefix(
            line,
            Versions::Any,
            Parsed::Header {
                len: line.len(),
                source: sa("[2001:db8::1]:65535"),
            },
        );
        for line in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
        ] {
            check_every_prefix(
                line,
                Versions::Any,
                Parsed::Header {
                    len: line.len(),
                    source: None,
                },
            );
        }
    }

    #[test]
    fn v1_malformed_lines() {
        for line in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n"[..],
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 9\r\n",
            b"PROXY TCP4 192.0.2.7  198.51.100.1 56324 443\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.1 56324 443\r\n",
            b"PROXY TCP6 192.0.2.7 2001:db8::2 1 2\r\n",
            b"PROXY TCP4 192.0.2.07 198.51.100.1 56324 443\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 +1 443\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 443 \r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n",
            b"PROXY \xff\r\n",
            b"PROXY \r\n",
        ] {
            assert_eq!(
                parse(line, Versions::Any),
                Err(ProxyError::V1Malformed),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn v1_not_proxy_is_refused_at_the_first_wrong_byte() {
        assert_eq!(parse(b"G", Versions::Any), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"PRO", Versions::Any), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"PROXI", Versions::Any), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"PROXY", Versions::Any), Ok(Parsed::Incomplete));
        assert_eq!(
            parse(b"PROXYTCP4", Versions::Any),
            Err(ProxyError::NotProxy)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\n", Versions::Any),
            Err(ProxyError::NotProxy)
        );
    }

    #[test]
    fn v1_oversize() {
        // 107 bytes without a line end is refused; one fewer may still end.
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX - 1, b'x');
        assert_eq!(parse(&long, Versions::Any), Ok(Parsed::Incomplete));
        long.push(b'x');
        assert_eq!(parse(&long, Versions::Any), Err(ProxyError::V1TooLong));
        // The longest allowed line ends exactly at 107.
        let mut max = b"PROXY UNKNOWN ".to_vec();
        max.resize(V1_MAX - 2, b'x');
        max.extend_from_slice(b"\r\n");
        assert_eq!(
            parse(&max, Versions::Any),
            Ok(Parsed::Header {
                len: V1_MAX,
                source: None
            })
        );
    }

    #[test]
    fn v2_tcp4_every_field_and_tlvs() {
        let tlvs = [0x04, 0x00, 0x03, b'a', b'b', b'c', 0x20, 0x00, 0x00];
        let bytes = v2_tcp4([203, 0, 113, 9], [10, 0, 0, 1], 40000, 8000, &tlvs);
        let header = Parsed::Header {
            len: bytes.len(),
            source: sa("203.0.113.9:40000"),
        };
        check_every_prefix(&bytes, Versions::V2, header);
        check_every_prefix(&bytes, Versions::Any, header);
        let mut with_request = bytes.clone();
        with_request.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(parse(&with_request, Versions::Any), Ok(header));
    }

    #[test]
    fn v2_tcp6() {
        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&1234u16.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        let bytes = v2(0x21, 0x21, &body);
        check_every_prefix(
            &bytes,
            Versions::Any,
            Parsed::Header {
                len: bytes.len(),
                source: sa("[2001:db8::9]:1234"),
            },
        );
    }

    #[test]
    fn v2_without_a_client_address() {
        // LOCAL (whatever its family), UNSPEC, and unix-domain addresses.
        let unix = v2(0x21, 0x31, &[0; 216]);
        for bytes in [
            v2(0x20, 0x00, &[]),
            v2(0x20, 0x11, &[1; 12]),
            v2(0x20, 0x12, &[]),
            v2(0x21, 0x00, &[7; 5]),
            unix,
        ] {
            check_every_prefix(
                &bytes,
                Versions::Any,
                Parsed::Header {
                    len: bytes.len(),
                    source: None,
                },
            );
        }
    }

    #[test]
    fn v2_refusals() {
        let cases = [
            (v2(0x11, 0x11, &[0; 12]), ProxyError::V2Command),
            (v2(0x22, 0x11, &[0; 12]), ProxyError::V2Command),
            (v2(0x21, 0x41, &[0; 12]), ProxyError::V2Family),
            (v2(0x21, 0x13, &[0; 12]), ProxyError::V2Transport),
            (v2(0x21, 0x12, &[0; 12]), ProxyError::V2Transport),
            (v2(0x21, 0x10, &[0; 12]), ProxyError::V2Transport),
            (v2(0x21, 0x11, &[0; 11]), ProxyError::V2Short),
            (v2(0x21, 0x21, &[0; 35]), ProxyError::V2Short),
            (v2(0x21, 0x31, &[0; 215]), ProxyError::V2Short),
        ];
        for (bytes, err) in cases {
            assert_eq!(parse(&bytes, Versions::Any), Err(err), "{bytes:?}");
        }
        // A bad command or family is refused as soon as its byte arrives.
        let bad = v2(0x31, 0x11, &[0; 12]);
        assert_eq!(parse(&bad[..13], Versions::Any), Err(ProxyError::V2Command));
        let bad = v2(0x21, 0x51, &[0; 12]);
        assert_eq!(parse(&bad[..14], Versions::Any), Err(ProxyError::V2Family));
        // A wrong signature byte, at any position.
        let good = v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, &[]);
        for i in 1..12 {
            let mut bytes = good.clone();
            bytes[i] ^= 0x40;
            assert_eq!(
                parse(&bytes[..=i], Versions::Any),
                Err(ProxyError::NotProxy),
                "byte {i}"
            );
        }
    }

    #[test]
    fn v2_oversize_is_refused_from_its_length_field() {
        let mut fixed = V2_SIGNATURE.to_vec();
        fixed.extend_from_slice(&[0x21, 0x11]);
        fixed.extend_from_slice(&(MAX_V2_LEN as u16 + 1).to_be_bytes());
        assert_eq!(parse(&fixed, Versions::Any), Err(ProxyError::V2TooLong));
        let mut body = vec![0; MAX_V2_LEN];
        body[..4].copy_from_slice(&[9, 9, 9, 9]);
        let max = v2(0x21, 0x11, &body);
        assert_eq!(
            parse(&max, Versions::Any),
            Ok(Parsed::Header {
                len: 16 + MAX_V2_LEN,
                source: sa("9.9.9.9:0")
            })
        );
    }

    #[test]
    fn versions_restrict_what_is_accepted() {
        let v1 = b"PROXY UNKNOWN\r\n";
        let v2 = v2(0x20, 0x00, &[]);
        assert_eq!(parse(v1, Versions::V2), Err(ProxyError::NotProxy));
        assert_eq!(parse(&v2, Versions::V1), Err(ProxyError::NotProxy));
        assert!(parse(v1, Versions::V1).is_ok());
        assert!(parse(&v2, Versions::V2).is_ok());
    }
}
