//! Who the client is when a trusted proxy speaks for it: the allow lists of
//! `--forwarded-allow-ips` and `--proxy-allow-from`, and the client address and scheme a
//! request's `X-Forwarded-*` headers give.
//!
//! Whether a connection's peer is trusted is decided once per connection ([`AllowList`]); only
//! then are a request's headers looked at ([`resolve`]). `X-Forwarded-For` is read from the
//! right: each proxy appends the address it received the request from, so the rightmost entry
//! that is not a trusted proxy is the client (anything left of it may be forged by that client).
//! The scheme comes from gunicorn's `secure_scheme_headers`: `X-Forwarded-Proto: https`,
//! `X-Forwarded-Protocol: ssl`, `X-Forwarded-Ssl: on`; headers that disagree are refused (400),
//! as gunicorn does.

use std::net::{IpAddr, SocketAddr};

use httparse::Header;
use ipnet::IpNet;

/// The default of `--forwarded-allow-ips` and `--proxy-allow-from` (gunicorn's): this host.
pub const LOCALHOST: &str = "127.0.0.1,::1";

/// Addresses and networks allowed to do something (`*`: every address).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AllowList {
    any: bool,
    nets: Vec<IpNet>,
}

/// An entry of an allow list that is neither an address, a network nor `*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an IP address or a network (e.g. 10.0.0.0/8; host bits must be 0)")]
pub struct AllowListError(pub String);

impl AllowList {
    /// Parses gunicorn's format: comma-separated IP addresses or CIDR networks, or `*`.
    pub fn parse(list: &str) -> Result<AllowList, AllowListError> {
        let mut allow = AllowList {
            any: false,
            nets: Vec::new(),
        };
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                allow.any = true;
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                allow.nets.push(IpNet::from(ip.to_canonical()));
            } else {
                // Strict, as gunicorn: 10.0.0.1/8 is a typo, not a network.
                let net = entry
                    .parse::<IpNet>()
                    .ok()
                    .filter(|net| net.trunc() == *net)
                    .ok_or_else(|| AllowListError(entry.to_owned()))?;
                allow.nets.push(net);
            }
        }
        Ok(allow)
    }

    /// This host only ([`LOCALHOST`]).
    pub fn localhost() -> AllowList {
        AllowList::parse(LOCALHOST).expect("valid addresses")
    }

    /// Whether `ip` is allowed (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.any || self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether a connection's peer is allowed; a unix-domain peer (`None`) is, as gunicorn
    /// treats it: only local processes can reach it.
    pub fn allows(&self, peer: Option<IpAddr>) -> bool {
        peer.is_none_or(|ip| self.contains(ip))
    }
}

/// The client of a request, as the environ shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// REMOTE_ADDR; `None` for a unix-domain peer (an empty REMOTE_ADDR).
    pub addr: Option<IpAddr>,
    /// REMOTE_PORT; `None` when unknown (a unix-domain peer, an address from X-Forwarded-For).
    pub port: Option<u16>,
    /// wsgi.url_scheme is https.
    pub https: bool,
}

impl Client {
    /// The peer itself, over plain http (an untrusted peer, or no forwarding headers).
    pub fn direct(peer: Option<SocketAddr>) -> Client {
        Client {
            addr: peer.map(|p| p.ip()),
            port: peer.map(|p| p.port()),
            https: false,
        }
    }
}

/// Why a trusted peer's forwarding headers are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedError {
    #[error("contradictory scheme headers")]
    ContradictoryScheme,
}

/// The client of a request from a trusted peer: the peer, unless `X-Forwarded-For` names an
/// address behind it, and https if a scheme header says so.
///
/// Several `X-Forwarded-For` headers are one comma-separated list (RFC 9110 5.3). The list is
/// walked from the right, past addresses in `trusted`; the first one not in it is the client.
/// When every address is trusted, the leftmost is. An entry that is not an address (`unknown`,
/// an obfuscated name, garbage) stops the walk: the client is then the last address walked (a
/// trusted proxy), or the peer when the rightmost entry is already malformed, so a forged
/// entry never hides the hop that received it. Entries may carry a port (`1.2.3.4:5`,
/// `[::1]:5`), which is dropped; REMOTE_PORT is absent for a forwarded address.
pub fn resolve(
    headers: &[Header<'_>],
    peer: Option<SocketAddr>,
    trusted: &AllowList,
) -> Result<Client, ForwardedError> {
    let mut client = Client::direct(peer);
    let mut scheme: Option<bool> = None;
    // One pass finds the scheme headers and whether there is an address list to walk at all.
    let mut forwarded_for = false;
    for header in headers {
        let verdict = match header.name.len() {
            15 if header.name.eq_ignore_ascii_case("x-forwarded-for") => {
                forwarded_for = true;
                None
            }
            15 if header.name.eq_ignore_ascii_case("x-forwarded-ssl") => {
                Some(header.value.trim_ascii().eq_ignore_ascii_case(b"on"))
            }
            17 if header.name.eq_ignore_ascii_case("x-forwarded-proto") => {
                let value = header.value.trim_ascii();
                if value.eq_ignore_ascii_case(b"https") {
                    Some(true)
                } else if value.eq_ignore_ascii_case(b"http") {
                    Some(false)
                } else {
                    None
                }
            }
            20 if header.name.eq_ignore_ascii_case("x-forwarded-protocol") => {
                Some(header.value.trim_ascii().eq_ignore_ascii_case(b"ssl"))
            }
            _ => None,
        };
        if let Some(https) = verdict {
            if scheme.is_some_and(|s| s != https) {
                return Err(ForwardedError::ContradictoryScheme);
            }
            scheme = Some(https);
        }
    }
    client.https = scheme.unwrap_or(false);
    if !forwarded_for {
        return Ok(client);
    }
    let entries = headers
        .iter()
        .rev()
        .filter(|h| h.name.len() == 15 && h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .flat_map(|h| h.value.rsplit(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|entry| !entry.is_empty());
    for entry in entries {
        let Some(ip) = forwarded_address(entry) else {
            break;
        };
        client.addr = Some(ip);
        client.port = None;
        if !trusted.contains(ip) {
            break;
        }
    }
    Ok(client)
}

/// An X-Forwarded-For entry: an address, possibly with a port.
fn forwarded_address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> Vec<Header<'a>> {
        pairs
            .iter()
            .map(|(name, value)| Header {
                name,
                value: value.as_bytes(),
            })
            .collect()
    }

    fn peer() -> Option<SocketAddr> {
        Some("127.0.0.1:5000".parse().unwrap())
    }

    fn local() -> AllowList {
        AllowList::localhost()
    }

    fn addr_of(pairs: &[(&str, &str)], trusted: &AllowList) -> Option<String> {
        let client = resolve(&headers(pairs), peer(), trusted).unwrap();
        client.addr.map(|a| a.to_string())
    }

    #[test]
    fn allow_lists() {
        let list = AllowList::parse(" 10.0.0.0/8, 192.0.2.7 ,::1,2001:db8::/32").unwrap();
        for ip in [
            "10.1.2.3",
            "192.0.2.7",
            "::1",
            "2001:db8::5",
            "::ffff:10.9.9.9",
        ] {
            assert!(list.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["11.0.0.1", "192.0.2.8", "::2", "127.0.0.1"] {
            assert!(!list.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(list.allows(None), "unix-domain peers are trusted");
        let all = AllowList::parse("*").unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        let none = AllowList::parse("").unwrap();
        assert!(!none.contains("127.0.0.1".parse().unwrap()));
        for bad in ["localhost", "10.0.0.1/8", "10.0.0.0/33", "1.2.3"] {
            assert_eq!(
                AllowList::parse(bad),
                Err(AllowListError(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn rightmost_untrusted_address_is_the_client() {
        let trusted = AllowList::parse("127.0.0.1,10.0.0.0/8").unwrap();
        let xff = |v| addr_of(&[("X-Forwarded-For", v)], &trusted);
        assert_eq!(xff("203.0.113.5").as_deref(), Some("203.0.113.5"));
        // The client forged the left entry; the proxies appended the rest.
        assert_eq!(
            xff("6.6.6.6, 203.0.113.5, 10.0.0.2").as_deref(),
            Some("203.0.113.5")
        );
        // Every entry trusted: the leftmost.
        assert_eq!(xff("10.0.0.3,10.0.0.2").as_deref(), Some("10.0.0.3"));
        // Ports and brackets are dropped; mapped IPv4 is IPv4.
        assert_eq!(xff("203.0.113.5:4711").as_deref(), Some("203.0.113.5"));
        assert_eq!(xff("[2001:db8::1]:80").as_deref(), Some("2001:db8::1"));
        assert_eq!(xff("[2001:db8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(xff("::ffff:203.0.113.5").as_deref(), Some("203.0.113.5"));
        // Empty list elements are skipped.
        assert_eq!(xff(" , 203.0.113.5 ,, ").as_deref(), Some("203.0.113.5"));
        assert_eq!(xff("").as_deref(), Some("127.0.0.1"));
        // With `*` every hop is trusted: the leftmost.
        let all = AllowList::parse("*").unwrap();
        assert_eq!(
            addr_of(&[("x-forwarded-for", "1.1.1.1, 2.2.2.2")], &all).as_deref(),
            Some("1.1.1.1")
        );
    }

    #[test]
    fn several_headers_are_one_list() {
        let trusted = AllowList::parse("127.0.0.1,10.0.0.2").unwrap();
        let pairs = [
            ("X-Forwarded-For", "6.6.6.6"),
            ("Accept", "*/*"),
            ("x-forwarded-for", "203.0.113.5, 10.0.0.2"),
        ];
        assert_eq!(addr_of(&pairs, &trusted).as_deref(), Some("203.0.113.5"));
        let pairs = [
            ("X-Forwarded-For", "203.0.113.5"),
            ("X-Forwarded-For", "10.0.0.2"),
        ];
        assert_eq!(addr_of(&pairs, &trusted).as_deref(), Some("203.0.113.5"));
    }

    #[test]
    fn a_malformed_entry_stops_the_walk() {
        let trusted = AllowList::parse("127.0.0.1,10.0.0.2").unwrap();
        let xff = |v| addr_of(&[("X-Forwarded-For", v)], &trusted);
        // Rightmost malformed: the peer.
        assert_eq!(xff("203.0.113.5, unknown").as_deref(), Some("127.0.0.1"));
        assert_eq!(xff("203.0.113.5, 1.2.3.999").as_deref(), Some("127.0.0.1"));
        // Behind a trusted hop: that hop.
        assert_eq!(
            xff("203.0.113.5, garbage, 10.0.0.2").as_deref(),
            Some("10.0.0.2")
        );
        // Left of the client: never reached.
        assert_eq!(xff("garbage, 203.0.113.5").as_deref(), Some("203.0.113.5"));
        let client = resolve(
            &headers(&[("X-Forwarded-For", "203.0.113.5")]),
            peer(),
            &trusted,
        )
        .unwrap();
        assert_eq!(client.port, None, "a forwarded address has no port");
        let client = resolve(
            &headers(&[("X-Forwarded-For", "bad\u{ff}")]),
            peer(),
            &trusted,
        )
        .unwrap();
        assert_eq!(client, Client::direct(peer()));
    }

    #[test]
    fn schemes() {
        let scheme = |pairs: &[(&str, &str)]| resolve(&headers(pairs), peer(), &local());
        let https = |pairs: &[(&str, &str)]| scheme(pairs).unwrap().https;
        assert!(!https(&[]));
        assert!(https(&[("X-Forwarded-Proto", "https")]));
        assert!(https(&[("x-forwarded-proto", " HTTPS ")]));
        assert!(!https(&[("X-Forwarded-Proto", "http")]));
        assert!(
            !https(&[("X-Forwarded-Proto", "wss")]),
            "other values are ignored"
        );
        assert!(https(&[("X-Forwarded-Protocol", "ssl")]));
        assert!(!https(&[("X-Forwarded-Protocol", "tls")]));
        assert!(https(&[("X-Forwarded-Ssl", "on")]));
        assert!(!https(&[("X-Forwarded-Ssl", "off")]));
        assert!(https(&[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Ssl", "on")
        ]));
        assert!(https(&[
            ("X-Forwarded-Proto", "wss"),
            ("X-Forwarded-Ssl", "on")
        ]));
        for pairs in [
            &[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")][..],
            &[
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Proto", "http"),
            ],
            &[
                ("X-Forwarded-Protocol", "ssl"),
                ("X-Forwarded-Proto", "http"),
            ],
        ] {
            assert_eq!(
                scheme(pairs),
                Err(ForwardedError::ContradictoryScheme),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn unix_domain_peers() {
        let client = resolve(
            &headers(&[("X-Forwarded-For", "203.0.113.5")]),
            None,
            &local(),
        )
        .unwrap();
        assert_eq!(client.addr, Some("203.0.113.5".parse().unwrap()));
        assert_eq!(resolve(&[], None, &local()).unwrap(), Client::direct(None));
    }
}
