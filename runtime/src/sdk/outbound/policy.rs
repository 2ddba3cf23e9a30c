//! The operator's address policy: which resolved addresses outbound requests may connect
//! to, whatever the tenants list.
//!
//! ```text
//!  (address, port) ─► one of the platform's own listeners? ── yes ─► refused, always
//!                  ─► in --outbound-deny?                  ── yes ─► refused
//!                  ─► in the built-in deny-list?           ── no ──► allowed (public)
//!                  ─► named by --outbound-allow-private?   ── yes ─► allowed
//!                                                          ── no ──► refused
//! ```
//!
//! Addresses are compared in canonical form: an IPv4-mapped IPv6 address is its IPv4
//! address, so `::ffff:127.0.0.1` is `127.0.0.1` everywhere here.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

use super::reserved::{Reserved, classify};

/// The operator's outbound settings (`platform runtime` / `platform up` flags).
#[derive(Debug, Clone, Default)]
pub struct OutboundConfig {
    /// Always refused, on top of the built-in list (`--outbound-deny`: the cluster's pod and
    /// service ranges, say), even when `allow_private` names them.
    pub deny: Vec<IpNet>,
    /// Private destinations guests may reach after all (`--outbound-allow-private`).
    pub allow_private: Vec<PrivateAllow>,
    /// The platform's own listeners (traffic, admin), never reachable from a guest. A
    /// listener on an unspecified address (`0.0.0.0:8080`) covers its port on every
    /// non-public address.
    pub platform_listeners: Vec<SocketAddr>,
}

/// One `--outbound-allow-private` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateAllow {
    /// An address range, any port (`10.20.0.0/16`; a bare address is a one-address range).
    Net(IpNet),
    /// One address and port (`127.0.0.1:9000`, `[fd00::1]:443`).
    Addr(SocketAddr),
    /// A host name and port (`db.internal:5432`): the addresses that name resolves to, on
    /// that port, when a request names it.
    Host(String, u16),
}

impl PrivateAllow {
    fn matches(&self, host: Option<&str>, ip: IpAddr, port: u16) -> bool {
        match self {
            PrivateAllow::Net(net) => net.contains(&ip),
            PrivateAllow::Addr(a) => a.ip().to_canonical() == ip && a.port() == port,
            PrivateAllow::Host(name, p) => {
                *p == port && host.is_some_and(|h| h.eq_ignore_ascii_case(name))
            }
        }
    }
}

impl FromStr for PrivateAllow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "invalid private destination {s:?}: use HOST:PORT (db.internal:5432), \
                 IP:PORT (10.0.0.5:443, [fd00::5]:443) or a CIDR (10.20.0.0/16)"
            )
        };
        if s.contains('/') {
            return s
                .parse::<IpNet>()
                .map(|n| PrivateAllow::Net(n.trunc()))
                .map_err(|_| bad());
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(PrivateAllow::Net(IpNet::from(ip)));
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(PrivateAllow::Addr(a));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse::<u16>().map_err(|_| bad())?;
        let host = host.to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(bad());
        }
        Ok(PrivateAllow::Host(host, port))
    }
}

impl std::fmt::Display for PrivateAllow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrivateAllow::Net(n) => write!(f, "{n}"),
            PrivateAllow::Addr(a) => write!(f, "{a}"),
            PrivateAllow::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// Parses an `--outbound-deny` entry: a CIDR, or one address.
pub fn parse_deny(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("invalid address range {s:?}: use a CIDR such as 10.96.0.0/12"))
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// One of the platform's own listeners.
    PlatformListener,
    /// In the operator's `--outbound-deny` list.
    OperatorDenied(IpNet),
    /// In the built-in deny-list, and not named by `--outbound-allow-private`.
    Reserved(Reserved),
}

/// A refused destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{addr} is {}", match reason {
    RefusalReason::PlatformListener => "the platform's own listener".to_string(),
    RefusalReason::OperatorDenied(net) => format!("in the operator's deny-list ({net})"),
    RefusalReason::Reserved(r) => format!("{r}, not open to guests unless the operator allows it"),
})]
pub struct Refusal {
    /// The address, as it was asked for.
    pub addr: SocketAddr,
    /// Why.
    pub reason: RefusalReason,
}

/// [`OutboundConfig`], ready to judge addresses.
#[derive(Debug, Clone, Default)]
pub struct AddrPolicy {
    config: OutboundConfig,
}

impl AddrPolicy {
    /// The policy of `config`.
    pub fn new(config: &OutboundConfig) -> Self {
        let mut config = config.clone();
        for n in &mut config.deny {
            *n = n.trunc();
        }
        AddrPolicy { config }
    }

    fn is_platform_listener(&self, ip: IpAddr, port: u16) -> bool {
        self.config.platform_listeners.iter().any(|l| {
            let lip = l.ip().to_canonical();
            l.port() == port && (lip == ip || (lip.is_unspecified() && classify(ip).is_some()))
        })
    }

    /// Whether a connection to `addr` is allowed; `host` is the name the request used
    /// (`None` for an address literal), for `HOST:PORT` entries of the allow list.
    pub fn check(&self, host: Option<&str>, addr: SocketAddr) -> Result<(), Refusal> {
        let ip = addr.ip().to_canonical();
        let port = addr.port();
        let refuse = |reason| Err(Refusal { addr, reason });
        if self.is_platform_listener(ip, port) {
            return refuse(RefusalReason::PlatformListener);
        }
        if let Some(net) = self.config.deny.iter().find(|n| n.contains(&ip)) {
            return refuse(RefusalReason::OperatorDenied(*net));
        }
        let Some(reserved) = classify(ip) else {
            return Ok(());
        };
        if self
            .config
            .allow_private
            .iter()
            .any(|a| a.matches(host, ip, port))
        {
            return Ok(());
        }
        refuse(RefusalReason::Reserved(reserved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn policy(deny: &[&str], allow: &[&str], listeners: &[&str]) -> AddrPolicy {
        AddrPolicy::new(&OutboundConfig {
            deny: deny.iter().map(|d| parse_deny(d).unwrap()).collect(),
            allow_private: allow.iter().map(|a| a.parse().unwrap()).collect(),
            platform_listeners: listeners.iter().map(|l| sa(l)).collect(),
        })
    }

    fn reason(p: &AddrPolicy, host: Option<&str>, addr: &str) -> Option<RefusalReason> {
        p.check(host, sa(addr)).err().map(|r| r.reason)
    }

    #[test]
    fn parses_allow_entries() {
        let parse = |s: &str| s.parse::<PrivateAllow>();
        assert_eq!(
            parse("10.1.2.0/24"),
            Ok(PrivateAllow::Net("10.1.2.0/24".parse().unwrap()))
        );
        assert_eq!(
            parse("10.1.2.9/24"),
            Ok(PrivateAllow::Net("10.1.2.0/24".parse().unwrap()))
        );
        assert_eq!(
            parse("10.1.2.9"),
            Ok(PrivateAllow::Net("10.1.2.9/32".parse().unwrap()))
        );
        assert_eq!(
            parse("127.0.0.1:9000"),
            Ok(PrivateAllow::Addr(sa("127.0.0.1:9000")))
        );
        assert_eq!(
            parse("[fd00::1]:443"),
            Ok(PrivateAllow::Addr(sa("[fd00::1]:443")))
        );
        assert_eq!(
            parse("fd00::/8"),
            Ok(PrivateAllow::Net("fd00::/8".parse().unwrap()))
        );
        assert_eq!(
            parse(" DB.internal:5432 "),
            Ok(PrivateAllow::Host("db.internal".into(), 5432))
        );
        for bad in [
            "",
            "db.internal",
            "db:port",
            "a b:1",
            "10.0.0.0/33",
            ":80",
            "x:70000",
            "a..b:1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        for s in [
            "10.1.2.0/24",
            "127.0.0.1:9000",
            "[fd00::1]:443",
            "db.internal:5432",
        ] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            parse_deny("10.96.0.1/12").unwrap().to_string(),
            "10.96.0.0/12"
        );
        assert_eq!(
            parse_deny("203.0.113.7").unwrap().to_string(),
            "203.0.113.7/32"
        );
        assert!(parse_deny("nope").is_err());
    }

    #[test]
    fn private_addresses_are_refused_by_default_public_ones_allowed() {
        let p = policy(&[], &[], &[]);
        for addr in [
            "127.0.0.1:8081",
            "[::1]:80",
            "169.254.169.254:80",
            "[fd00:ec2::254]:80",
            "10.0.0.1:443",
            "[::ffff:127.0.0.1]:8081",
            "[64:ff9b::7f00:1]:80",
        ] {
            assert!(
                matches!(reason(&p, None, addr), Some(RefusalReason::Reserved(_))),
                "{addr}"
            );
        }
        for addr in [
            "8.8.8.8:443",
            "[2606:4700::1111]:443",
            "[::ffff:8.8.8.8]:80",
        ] {
            assert_eq!(p.check(Some("example.com"), sa(addr)), Ok(()), "{addr}");
        }
        let msg = p.check(None, sa("127.0.0.1:8081")).unwrap_err().to_string();
        assert!(
            msg.contains("127.0.0.1:8081 is loopback (127.0.0.0/8)"),
            "{msg}"
        );
    }

    #[test]
    fn the_operator_opens_named_destinations_only() {
        let p = policy(
            &[],
            &["127.0.0.1:9000", "10.20.0.0/16", "db.internal:5432"],
            &[],
        );
        assert_eq!(p.check(None, sa("127.0.0.1:9000")), Ok(()));
        assert_eq!(p.check(Some("localhost"), sa("127.0.0.1:9000")), Ok(()));
        assert_eq!(
            p.check(None, sa("[::ffff:127.0.0.1]:9000")),
            Ok(()),
            "mapped is the same"
        );
        assert!(p.check(None, sa("127.0.0.1:9001")).is_err(), "other port");
        assert!(
            p.check(None, sa("127.0.0.2:9000")).is_err(),
            "other address"
        );
        assert_eq!(p.check(None, sa("10.20.3.4:1")), Ok(()));
        assert!(p.check(None, sa("10.21.0.1:1")).is_err());
        assert_eq!(p.check(Some("db.internal"), sa("10.9.9.9:5432")), Ok(()));
        assert_eq!(p.check(Some("DB.Internal"), sa("10.9.9.9:5432")), Ok(()));
        assert!(
            p.check(Some("db.internal"), sa("10.9.9.9:5433")).is_err(),
            "other port"
        );
        assert!(
            p.check(Some("evil.example"), sa("10.9.9.9:5432")).is_err(),
            "other name"
        );
        assert!(
            p.check(None, sa("10.9.9.9:5432")).is_err(),
            "a literal is not the name"
        );
        // Tunnels to an allowed address are not that address.
        assert!(p.check(None, sa("[64:ff9b::7f00:1]:9000")).is_err());
        assert!(p.check(None, sa("[2002:7f00:1::]:9000")).is_err());
    }

    #[test]
    fn operator_deny_wins_over_allow_and_covers_public_ranges() {
        let p = policy(
            &["10.96.0.0/12", "203.0.113.0/24", "8.8.4.4"],
            &["10.0.0.0/8"],
            &[],
        );
        assert_eq!(p.check(None, sa("10.1.0.1:80")), Ok(()));
        assert_eq!(
            reason(&p, None, "10.96.0.1:443"),
            Some(RefusalReason::OperatorDenied(
                "10.96.0.0/12".parse().unwrap()
            ))
        );
        assert_eq!(
            reason(&p, None, "[::ffff:10.96.0.1]:443"),
            Some(RefusalReason::OperatorDenied(
                "10.96.0.0/12".parse().unwrap()
            ))
        );
        assert!(matches!(
            reason(&p, None, "8.8.4.4:53"),
            Some(RefusalReason::OperatorDenied(_))
        ));
        assert_eq!(p.check(None, sa("8.8.8.8:53")), Ok(()));
    }

    #[test]
    fn the_platforms_own_listeners_stay_refused() {
        let p = policy(
            &[],
            &[
                "127.0.0.0/8",
                "127.0.0.1:8081",
                "localhost:8081",
                "0.0.0.0/0",
                "::/0",
            ],
            &["127.0.0.1:8081", "0.0.0.0:8080", "[::1]:9090"],
        );
        for (host, addr) in [
            (None, "127.0.0.1:8081"),
            (Some("localhost"), "127.0.0.1:8081"),
            (None, "[::ffff:127.0.0.1]:8081"),
            // A listener on every interface: its port on every non-public address.
            (None, "127.0.0.1:8080"),
            (None, "127.0.0.2:8080"),
            (None, "10.1.2.3:8080"),
            (None, "[::1]:8080"),
            (None, "[::1]:9090"),
        ] {
            assert_eq!(
                reason(&p, host, addr),
                Some(RefusalReason::PlatformListener),
                "{addr}"
            );
        }
        // Other ports on the same addresses are the operator's to open.
        assert_eq!(p.check(None, sa("127.0.0.1:8082")), Ok(()));
        assert_eq!(p.check(None, sa("10.1.2.3:8081")), Ok(()));
        let msg = p.check(None, sa("127.0.0.1:8081")).unwrap_err().to_string();
        assert!(msg.contains("the platform's own listener"), "{msg}");
    }
}
