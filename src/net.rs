//! Addresses against networks, one way everywhere.
//!
//! A socket bound to `[::]` sees IPv4 clients as IPv4-mapped IPv6
//! addresses (`::ffff:192.0.2.7`), and Dovecot and Postfix log them so when
//! they listen that way. An operator writes IPv4 networks for them
//! (`192.0.2.0/24`), which such an address is not in. So every check of an
//! address against configured networks, and every key that counts one
//! client, uses the address in its canonical form: the IPv4 address for a
//! mapped one, anything else as it is.

use std::net::IpAddr;

use ipnet::IpNet;

/// `ip` as the client it is: the IPv4 address of an IPv4-mapped IPv6
/// address (`::ffff:a.b.c.d`), any other address unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// True when `ip` is in one of `nets`, an IPv4-mapped address counting as
/// its IPv4 address. A network written in the mapped form itself
/// (`::ffff:192.0.2.0/120`) still matches the address as it came.
pub fn in_networks(nets: &[IpNet], ip: IpAddr) -> bool {
    let c = canonical(ip);
    nets.iter().any(|n| n.contains(&c) || n.contains(&ip))
}

/// Reads an address as logged (`192.0.2.7`, `2001:db8::1`,
/// `::ffff:192.0.2.7`) and gives it in canonical form; `None` when it is
/// not an address.
pub fn parse_canonical(text: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(text).ok()?;
    s.trim().parse::<IpAddr>().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn a_mapped_address_is_its_ipv4_address() {
        assert_eq!(canonical(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(canonical(ip("::FFFF:c000:207")), ip("192.0.2.7"));
        // Not mapped: unchanged, including the deprecated compatible form
        // and IPv6 loopback.
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(canonical(ip("::1")), ip("::1"));
        assert_eq!(canonical(ip("::192.0.2.7")), ip("::192.0.2.7"));
        assert_eq!(parse_canonical(b"::ffff:10.1.2.3"), Some(ip("10.1.2.3")));
        assert_eq!(parse_canonical(b"10.1.2.x"), None);
        assert_eq!(parse_canonical(b"\xff"), None);
    }

    #[test]
    fn networks_match_a_mapped_client_as_ipv4() {
        let v4 = nets(&["192.0.2.0/24"]);
        assert!(in_networks(&v4, ip("::ffff:192.0.2.7")));
        assert!(in_networks(&v4, ip("192.0.2.7")));
        assert!(!in_networks(&v4, ip("::ffff:198.51.100.7")));
        // An IPv6 address that merely ends in the same bits is not in it.
        assert!(!in_networks(&v4, ip("2001:db8::c000:207")));
        // A network written in the mapped form keeps matching.
        let mapped = nets(&["::ffff:192.0.2.0/120"]);
        assert!(in_networks(&mapped, ip("::ffff:192.0.2.7")));
        assert!(!in_networks(&[], ip("192.0.2.7")));
    }
}
