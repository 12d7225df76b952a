//! The client's IP address, for the sign-in throttle and the audit log: the socket's peer, or,
//! when that peer is one of the reverse proxies the operator named (`serve --trusted-proxy
//! CIDR[,CIDR…]`), the address `X-Forwarded-For` gives for the client.
//!
//! Each proxy appends the address it received the request from, so the header is read from the
//! right: entries inside the trusted ranges are proxies and are skipped, and the first entry
//! outside them is the client. Everything left of it was written by the client (or by a proxy
//! nobody vouches for) and is never believed. A peer outside the trusted ranges is the client,
//! whatever the header says: anybody can write it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A range of addresses in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Whether `address` lies inside the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                u32::from(address) & v4_mask(self.prefix) == u32::from(network)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                u128::from(address) & v6_mask(self.prefix) == u128::from(network)
            }
            _ => false,
        }
    }
}

fn v4_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpRange {
    type Err = String;

    /// Parses `ADDRESS/PREFIX` or a bare `ADDRESS` (a range of one). Host bits past the prefix
    /// are refused rather than cleared: `10.0.0.1/8` is more likely a typo than a wish to trust
    /// all of `10.0.0.0/8`.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{raw:?} is not an IP address or a CIDR range"))?;
        let network = network.to_canonical();
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{raw:?}: the prefix length must be 0 to {bits}"))?,
        };
        let host_bits_clear = match network {
            IpAddr::V4(v4) => u32::from(v4) & !v4_mask(prefix) == 0,
            IpAddr::V6(v6) => u128::from(v6) & !v6_mask(prefix) == 0,
        };
        if !host_bits_clear {
            return Err(format!(
                "{raw:?} has address bits set past /{prefix}; write the range's first address"
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed (none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpRange>);

impl TrustedProxies {
    pub fn new(ranges: Vec<IpRange>) -> Self {
        Self(ranges)
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(address))
    }
}

/// One `X-Forwarded-For` entry: `ip`, `ip:port` (IPv4) or `[ipv6]` / `[ipv6]:port`, with
/// surrounding spaces. An IPv4-mapped IPv6 address is read as IPv4.
pub fn parse_entry(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    let address = if let Some(rest) = raw.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(inside.parse::<Ipv6Addr>().ok()?)
    } else if let Ok(address) = raw.parse::<IpAddr>() {
        address
    } else {
        let (host, port) = raw.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    };
    Some(address.to_canonical())
}

fn is_port(raw: &str) -> bool {
    !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) && raw.parse::<u16>().is_ok()
}

/// The address to throttle and audit (see the module docs). `forwarded_for` holds the
/// `X-Forwarded-For` header values in the order they arrived. A malformed entry ends the walk:
/// the nearest trusted proxy, which passed it on, takes the blame.
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !trusted.trusts(peer) {
        return Some(peer);
    }
    let mut nearest = peer;
    let entries = forwarded_for.iter().flat_map(|value| value.split(','));
    for entry in entries.rev() {
        match parse_entry(entry) {
            Some(address) if trusted.trusts(address) => nearest = address,
            Some(address) => return Some(address),
            None => return Some(nearest),
        }
    }
    Some(nearest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    fn trusted(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(ranges.iter().map(|r| r.parse().unwrap()).collect())
    }

    #[test]
    fn ranges_parse_and_refuse_what_they_should() {
        let table: &[(&str, Option<&str>)] = &[
            ("10.0.0.0/8", Some("10.0.0.0/8")),
            (" 192.168.1.0/24 ", Some("192.168.1.0/24")),
            ("127.0.0.1", Some("127.0.0.1/32")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("::1", Some("::1/128")),
            ("2001:db8::/32", Some("2001:db8::/32")),
            ("::/0", Some("::/0")),
            ("::ffff:10.0.0.0/8", Some("10.0.0.0/8")),
            ("10.0.0.1/8", None),
            ("10.0.0.0/33", None),
            ("2001:db8::/129", None),
            ("10.0.0.0/", None),
            ("10.0.0.0/-1", None),
            ("10.0.0/8", None),
            ("proxy.internal", None),
            ("", None),
        ];
        for (raw, expected) in table {
            let parsed = raw.parse::<IpRange>().map(|r| r.to_string()).ok();
            assert_eq!(parsed.as_deref(), *expected, "{raw:?}");
        }
    }

    #[test]
    fn entries_read_mapped_addresses_as_ipv4_and_refuse_the_malformed() {
        // Every well-formed entry is covered by `every_written_address_parses_back` below.
        assert_eq!(parse_entry("::ffff:203.0.113.7"), Some(ip("203.0.113.7")));
        assert_eq!(
            parse_entry("[::ffff:203.0.113.7]:80"),
            Some(ip("203.0.113.7"))
        );
        let malformed = [
            "203.0.113.7:",
            "203.0.113.7:99999",
            "203.0.113.7:+80",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[203.0.113.7]:80",
            "2001:db8::1:443:x",
            "unknown",
            "_hidden",
            "",
        ];
        for raw in malformed {
            assert_eq!(parse_entry(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let peer = Some(ip("10.0.0.9"));
        let none = TrustedProxies::default();
        assert_eq!(client_address(peer, &["203.0.113.7"], &none), peer);
        // A peer outside the trusted ranges is the client, whatever it writes.
        let other = trusted(&["192.168.0.0/16"]);
        assert_eq!(client_address(peer, &["203.0.113.7"], &other), peer);
    }

    #[test]
    fn the_first_untrusted_entry_from_the_right_is_the_client() {
        let proxies = trusted(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let peer = Some(ip("10.0.0.9"));
        let cases: &[(&[&str], &str)] = &[
            (&["203.0.113.7"], "203.0.113.7"),
            // The client wrote "6.6.6.6" itself; the proxy appended what it saw.
            (&["6.6.6.6, 203.0.113.7"], "203.0.113.7"),
            // A chain of trusted proxies is skipped, with or without ports.
            (
                &["6.6.6.6, 203.0.113.7, 10.1.1.1:3456, 10.2.2.2"],
                "203.0.113.7",
            ),
            (&["203.0.113.7", "[2001:db8:ffff::5]:443"], "203.0.113.7"),
            // Several header lines count as one list, in order.
            (&["6.6.6.6", "2001:db8::1"], "2001:db8::1"),
            // Only proxies: the outermost one is as far as anything can be known.
            (&["10.3.3.3, 10.2.2.2"], "10.3.3.3"),
            // Garbage: the nearest trusted proxy passed it on.
            (&["6.6.6.6, not-an-address, 10.2.2.2"], "10.2.2.2"),
            (&[""], "10.0.0.9"),
            (&[], "10.0.0.9"),
        ];
        for (header, expected) in cases {
            assert_eq!(
                client_address(peer, header, &proxies),
                Some(ip(expected)),
                "{header:?}"
            );
        }
        assert_eq!(client_address(None, &["203.0.113.7"], &proxies), None);
    }

    #[test]
    fn a_dual_stack_peer_is_read_as_ipv4() {
        let proxies = trusted(&["127.0.0.1"]);
        assert_eq!(
            client_address(Some(ip("::ffff:127.0.0.1")), &["203.0.113.7"], &proxies),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_address(Some(ip("::ffff:192.0.2.1")), &[], &proxies),
            Some(ip("192.0.2.1"))
        );
    }

    /// An address as it may be written in the header.
    fn written(address: IpAddr, port: Option<u16>, brackets: bool) -> String {
        match (address, port) {
            (IpAddr::V4(v4), Some(port)) => format!("{v4}:{port}"),
            (IpAddr::V4(v4), None) => v4.to_string(),
            (IpAddr::V6(v6), Some(port)) => format!("[{v6}]:{port}"),
            (IpAddr::V6(v6), None) if brackets => format!("[{v6}]"),
            (IpAddr::V6(v6), None) => v6.to_string(),
        }
    }

    /// An IPv4, an IPv6 or an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack
    /// socket or proxy writes an IPv4 peer), which random IPv6 addresses almost never are.
    fn any_address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
            any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
            any::<u32>().prop_map(|n| IpAddr::V6(Ipv4Addr::from(n).to_ipv6_mapped())),
        ]
    }

    /// `address`, or its IPv4-mapped IPv6 form when `mapped` (an IPv4 address only).
    fn maybe_mapped(address: Ipv4Addr, mapped: bool) -> IpAddr {
        if mapped {
            IpAddr::V6(address.to_ipv6_mapped())
        } else {
            IpAddr::V4(address)
        }
    }

    fn any_writing() -> impl Strategy<Value = (Option<u16>, bool)> {
        (proptest::option::of(any::<u16>()), any::<bool>())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// An address written as a proxy may write it (a port, brackets, spaces around) is read
        /// back as itself, an IPv4-mapped IPv6 address as its IPv4 address.
        #[test]
        fn every_written_address_parses_back(
            address in any_address(),
            (port, brackets) in any_writing(),
            padded in any::<bool>(),
        ) {
            let text = written(address, port, brackets);
            let text = if padded { format!(" {text} ") } else { text };
            prop_assert_eq!(parse_entry(&text), Some(address.to_canonical()));
        }

        /// Whatever the client writes and however many trusted proxies append to the header,
        /// the address the outermost proxy saw is the one used.
        #[test]
        fn spoofed_entries_never_win(
            spoofed in proptest::collection::vec(any_address(), 0..4),
            client in any_address(),
            proxies in proptest::collection::vec((0u32..=0xFF_FFFF, any::<bool>()), 0..4),
            writing in proptest::collection::vec(any_writing(), 8),
            split_lines in any::<bool>(),
            peer_mapped in any::<bool>(),
        ) {
            let trusted_ranges = trusted(&["10.0.0.0/8"]);
            prop_assume!(!trusted_ranges.trusts(client));
            // Each proxy writes its IPv4 address plain or mapped, as its stack has it.
            let proxies: Vec<IpAddr> = proxies
                .iter()
                .map(|(n, mapped)| maybe_mapped(Ipv4Addr::from(0x0A00_0000 | n), *mapped))
                .collect();
            let chain: Vec<String> = spoofed
                .iter()
                .chain(std::iter::once(&client))
                .chain(&proxies)
                .zip(writing.iter().cycle())
                .map(|(address, (port, brackets))| written(*address, *port, *brackets))
                .collect();
            let joined = chain.join(", ");
            let header: Vec<&str> = if split_lines {
                chain.iter().map(String::as_str).collect()
            } else {
                vec![joined.as_str()]
            };
            let peer = Some(maybe_mapped(Ipv4Addr::new(10, 255, 0, 1), peer_mapped));
            prop_assert_eq!(
                client_address(peer, &header, &trusted_ranges),
                Some(client.to_canonical())
            );
        }

        /// A peer outside the trusted ranges is the answer, whatever the header holds.
        #[test]
        fn an_untrusted_peer_is_always_the_client(
            peer in any_address(),
            header in proptest::collection::vec(".{0,40}", 0..3),
        ) {
            let trusted_ranges = trusted(&["10.0.0.0/8", "fd00::/8"]);
            prop_assume!(!trusted_ranges.trusts(peer));
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            prop_assert_eq!(
                client_address(Some(peer), &header, &trusted_ranges),
                Some(peer.to_canonical())
            );
        }

        /// Every address written in any of the accepted forms reads back as itself.
        #[test]
        fn entries_read_back(address in any_address(), (port, brackets) in any_writing()) {
            prop_assert_eq!(
                parse_entry(&written(address, port, brackets)),
                Some(address.to_canonical())
            );
        }

        /// A range holds exactly the addresses that share its first `prefix` bits.
        #[test]
        fn ranges_hold_what_shares_their_prefix(
            network in any::<u128>(),
            prefix in 0u8..=128,
            probe in any::<u128>(),
        ) {
            let network = network & v6_mask(prefix);
            let member = network | (probe & !v6_mask(prefix));
            // Mapped IPv4 addresses are read as IPv4; this property is about IPv6 ones.
            for address in [network, probe, member] {
                prop_assume!(Ipv6Addr::from(address).to_ipv4_mapped().is_none());
            }
            let range: IpRange = format!("{}/{prefix}", Ipv6Addr::from(network)).parse().unwrap();
            let inside = probe & v6_mask(prefix) == network;
            prop_assert_eq!(range.contains(IpAddr::V6(Ipv6Addr::from(probe))), inside);
            prop_assert!(range.contains(IpAddr::V6(Ipv6Addr::from(member))));
        }
    }
}
