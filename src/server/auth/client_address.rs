//! The client's IP address, for the sign-in throttle and the audit log: the socket's peer, or,
//! behind reverse proxies the operator declared (`serve --trusted-proxy-hops N`), the address
//! the outermost trusted proxy saw. Each proxy appends the address it received the request from
//! to `X-Forwarded-For`, so with N trusted proxies that is the N-th entry from the right; the
//! entries left of it are written by the client and are never believed.

use std::net::IpAddr;

/// The address to throttle and audit. `forwarded_for` holds the `X-Forwarded-For` header values
/// in the order they arrived; with `trusted_hops` 0 they are ignored. A header that is missing,
/// too short or malformed falls back to the peer (the nearest proxy then takes the blame).
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted_hops: u8,
) -> Option<IpAddr> {
    if trusted_hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = forwarded_for
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    entries
        .len()
        .checked_sub(usize::from(trusted_hops))
        .and_then(|index| entries[index].parse().ok())
        .or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> Option<IpAddr> {
        Some(raw.parse().unwrap())
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let peer = ip("10.0.0.9");
        assert_eq!(client_address(peer, &["203.0.113.7"], 0), peer);
    }

    #[test]
    fn one_trusted_proxy_takes_the_last_entry() {
        let peer = ip("10.0.0.9");
        assert_eq!(client_address(peer, &["203.0.113.7"], 1), ip("203.0.113.7"));
        // The client wrote "6.6.6.6" itself; the proxy appended what it saw.
        assert_eq!(
            client_address(peer, &["6.6.6.6, 203.0.113.7"], 1),
            ip("203.0.113.7")
        );
        // Several header lines count as one list, in order.
        assert_eq!(
            client_address(peer, &["6.6.6.6", "2001:db8::1"], 1),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn two_trusted_proxies_take_the_second_entry_from_the_right() {
        let peer = ip("10.0.0.9");
        assert_eq!(
            client_address(peer, &["6.6.6.6, 203.0.113.7, 10.0.0.5"], 2),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn missing_short_or_malformed_headers_fall_back_to_the_peer() {
        let peer = ip("10.0.0.9");
        assert_eq!(client_address(peer, &[], 1), peer);
        assert_eq!(client_address(peer, &["203.0.113.7"], 2), peer);
        assert_eq!(client_address(peer, &["not-an-address"], 1), peer);
        assert_eq!(client_address(peer, &[""], 1), peer);
    }
}
