//! The built-in deny-list: every address range that is not a public destination.
//!
//! From the IANA IPv4 and IPv6 special-purpose address registries, plus the ranges that
//! lead somewhere private through translation (NAT64, 6to4, Teredo, IPv4-mapped and
//! IPv4-compatible IPv6). Matching is by [`ipnet`] containment; the first match wins, so
//! narrower ranges come before the ranges that hold them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A range of the built-in deny-list an address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    /// The range.
    pub range: IpNet,
    /// What it is, for messages ("loopback").
    pub what: &'static str,
}

impl std::fmt::Display for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.what, self.range)
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

#[expect(
    clippy::too_many_arguments,
    reason = "the eight groups of an IPv6 address"
)]
const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16, len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len)
}

const LINK_LOCAL: &str = "link-local (where cloud metadata services answer)";

/// IPv4 ranges, narrow before wide.
const V4: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 32), "unspecified"),
    (v4(0, 0, 0, 0, 8), "\"this network\""),
    (v4(10, 0, 0, 0, 8), "private (RFC 1918)"),
    (v4(100, 64, 0, 0, 10), "shared address space (CGNAT)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), LINK_LOCAL),
    (v4(172, 16, 0, 0, 12), "private (RFC 1918)"),
    (v4(192, 0, 0, 0, 24), "IETF protocol assignments"),
    (v4(192, 0, 2, 0, 24), "documentation"),
    (v4(192, 88, 99, 0, 24), "6to4 relay anycast"),
    (v4(192, 168, 0, 0, 16), "private (RFC 1918)"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(198, 51, 100, 0, 24), "documentation"),
    (v4(203, 0, 113, 0, 24), "documentation"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(255, 255, 255, 255, 32), "broadcast"),
    (v4(240, 0, 0, 0, 4), "reserved"),
];

/// The IPv4-compatible IPv6 range (`::a.b.c.d`, deprecated), after `::` and `::1`.
const V4_COMPATIBLE: Ipv6Net = v6(0, 0, 0, 0, 0, 0, 0, 0, 96);
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`): judged as the IPv4 address inside.
const V4_MAPPED: Ipv6Net = v6(0, 0, 0, 0, 0, 0xffff, 0, 0, 96);

/// IPv6 ranges, narrow before wide.
const V6: &[(Ipv6Net, &str)] = &[
    (v6(0, 0, 0, 0, 0, 0, 0, 0, 128), "unspecified"),
    (v6(0, 0, 0, 0, 0, 0, 0, 1, 128), "loopback"),
    (V4_COMPATIBLE, "IPv4-compatible IPv6 (deprecated)"),
    (v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0, 96), "NAT64"),
    (v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0, 48), "local-use NAT64"),
    (v6(0x100, 0, 0, 0, 0, 0, 0, 0, 64), "discard-only"),
    (v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 32), "Teredo"),
    (v6(0x2001, 2, 0, 0, 0, 0, 0, 0, 48), "benchmarking"),
    (v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0, 32), "documentation"),
    (v6(0x2002, 0, 0, 0, 0, 0, 0, 0, 16), "6to4"),
    (v6(0x3fff, 0, 0, 0, 0, 0, 0, 0, 20), "documentation"),
    (v6(0xfc00, 0, 0, 0, 0, 0, 0, 0, 7), "unique local (ULA)"),
    (v6(0xfe80, 0, 0, 0, 0, 0, 0, 0, 10), LINK_LOCAL),
    (
        v6(0xfec0, 0, 0, 0, 0, 0, 0, 0, 10),
        "site-local (deprecated)",
    ),
    (v6(0xff00, 0, 0, 0, 0, 0, 0, 0, 8), "multicast"),
];

/// The built-in range `ip` is in, or `None` for a public address. An IPv4-mapped IPv6
/// address is judged as the IPv4 address inside it; an IPv4-compatible one as well, and is
/// refused even when that address is public (the form is deprecated and never a real
/// destination).
pub fn classify(ip: IpAddr) -> Option<Reserved> {
    match ip {
        IpAddr::V4(a) => V4
            .iter()
            .find(|(net, _)| net.contains(&a))
            .map(|(net, what)| Reserved {
                range: IpNet::V4(*net),
                what,
            }),
        IpAddr::V6(a) => {
            if V4_MAPPED.contains(&a) {
                let [.., w, x, y, z] = a.octets();
                return classify(IpAddr::V4(Ipv4Addr::new(w, x, y, z)));
            }
            let (net, what) = V6.iter().find(|(net, _)| net.contains(&a))?;
            if *net == V4_COMPATIBLE {
                let [.., w, x, y, z] = a.octets();
                return classify(IpAddr::V4(Ipv4Addr::new(w, x, y, z))).or(Some(Reserved {
                    range: IpNet::V6(*net),
                    what,
                }));
            }
            Some(Reserved {
                range: IpNet::V6(*net),
                what,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> Option<&'static str> {
        classify(ip.parse().unwrap()).map(|r| r.what)
    }

    #[test]
    fn every_ipv4_range() {
        for (ip, what) in [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "\"this network\""),
            ("10.0.0.1", "private (RFC 1918)"),
            ("10.255.255.255", "private (RFC 1918)"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("100.127.255.254", "shared address space (CGNAT)"),
            ("100.100.100.200", "shared address space (CGNAT)"), // Alibaba Cloud metadata
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("169.254.169.254", LINK_LOCAL), // AWS, GCP, Azure, OpenStack metadata
            ("169.254.0.1", LINK_LOCAL),
            ("172.16.0.1", "private (RFC 1918)"),
            ("172.31.255.255", "private (RFC 1918)"),
            ("192.0.0.8", "IETF protocol assignments"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "6to4 relay anycast"),
            ("192.168.1.1", "private (RFC 1918)"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
        ] {
            assert_eq!(class(ip), Some(what), "{ip}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "169.253.255.255",
        ] {
            assert_eq!(class(public), None, "{public}");
        }
    }

    #[test]
    fn every_ipv6_range() {
        for (ip, what) in [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("64:ff9b::a00:1", "NAT64"),
            ("64:ff9b::808:808", "NAT64"), // even to a public IPv4 address
            ("64:ff9b:1::1", "local-use NAT64"),
            ("100::1", "discard-only"),
            ("2001::1", "Teredo"),
            ("2001:2::1", "benchmarking"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("2002::1", "6to4"),
            ("2002:7f00:1::", "6to4"),
            ("fc00::1", "unique local (ULA)"),
            ("fd00::1", "unique local (ULA)"),
            ("fd00:ec2::254", "unique local (ULA)"), // AWS metadata over IPv6
            ("fe80::1", LINK_LOCAL),
            ("febf::1", LINK_LOCAL),
            ("fec0::1", "site-local (deprecated)"),
            ("ff02::1", "multicast"),
        ] {
            assert_eq!(class(ip), Some(what), "{ip}");
        }
        for public in [
            "2606:4700::1111",
            "2a00:1450::1",
            "2001:4860::8888",
            "64:ff9a::1",
        ] {
            assert_eq!(class(public), None, "{public}");
        }
    }

    #[test]
    fn embedded_ipv4_is_judged_as_ipv4() {
        // IPv4-mapped: exactly the class of the address inside.
        for (ip, what) in [
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some(LINK_LOCAL)),
            ("::ffff:10.1.2.3", Some("private (RFC 1918)")),
            ("::ffff:100.64.0.1", Some("shared address space (CGNAT)")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("::ffff:8.8.8.8", None),
        ] {
            assert_eq!(class(ip), what, "{ip}");
        }
        let r = classify("::ffff:127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(r.range.to_string(), "127.0.0.0/8");
        // IPv4-compatible: the class inside, and refused even around a public address.
        for (ip, what) in [
            ("::127.0.0.1", "loopback"),
            ("::169.254.169.254", LINK_LOCAL),
            ("::192.168.0.1", "private (RFC 1918)"),
            ("::8.8.8.8", "IPv4-compatible IPv6 (deprecated)"),
        ] {
            assert_eq!(class(ip), Some(what), "{ip}");
        }
    }
}
