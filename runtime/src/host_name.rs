//! Canonical host names: one spelling per host, so that ownership (in the control plane) and
//! routing (here) can never disagree about which host a request or a route names.
//!
//! `LOCALHOST.`, `localhost` and `localhost:8080` are one host; `Bücher.example` and
//! `xn--bcher-kva.example` are one host. A canonical host is lower-case ASCII (IDNA,
//! UTS #46 to ASCII), has no port and no trailing dot; an IPv6 literal keeps its brackets
//! (`[::1]`). A pattern is a host or a wildcard `*.example.com`, which matches every name
//! below `example.com` (one label or more, as in the Kubernetes Gateway API), not
//! `example.com` itself.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Why a host was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing was given.
    #[error("the host is empty")]
    Empty,
    /// Not a DNS name or IP literal.
    #[error("{0:?} is not a valid host name: {1}")]
    Invalid(String, &'static str),
}

/// A route's host: one name, or every name below a domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// Exactly this canonical host.
    Exact(String),
    /// Every host below this canonical domain (`*.example.com` holds `example.com` here).
    Wildcard(String),
}

impl HostPattern {
    /// Parses a host or `*.domain` pattern into canonical form.
    pub fn parse(input: &str) -> Result<Self, HostError> {
        let s = input.trim();
        match s.strip_prefix("*.") {
            Some(domain) => {
                let domain = canonical_host(domain).map_err(|e| match e {
                    HostError::Empty => HostError::Invalid(s.into(), "a wildcard needs a domain"),
                    other => other,
                })?;
                if domain.starts_with('[') || domain.parse::<IpAddr>().is_ok() {
                    return Err(HostError::Invalid(
                        s.into(),
                        "a wildcard must be followed by a domain name, not an IP address",
                    ));
                }
                if !domain.contains('.') {
                    return Err(HostError::Invalid(
                        s.into(),
                        "a wildcard must cover a domain with at least two labels (*.example.com)",
                    ));
                }
                Ok(HostPattern::Wildcard(domain))
            }
            None => Ok(HostPattern::Exact(canonical_host(s)?)),
        }
    }

    /// True when `host` (canonical) is this host or, for a wildcard, below its domain.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(d) => is_below(host, d),
        }
    }

    /// True when every host `other` matches is also matched by `self`.
    pub fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Exact(_), HostPattern::Wildcard(_)) => false,
            (HostPattern::Wildcard(d), HostPattern::Exact(h)) => is_below(h, d),
            (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => a == b || is_below(b, a),
        }
    }

    /// True when some host is matched by both patterns.
    pub fn overlaps(&self, other: &HostPattern) -> bool {
        self.covers(other) || other.covers(self)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(d) => write!(f, "*.{d}"),
        }
    }
}

/// True when `host` is a proper subdomain of `domain` (both canonical).
pub fn is_below(host: &str, domain: &str) -> bool {
    host.len() > domain.len() + 1
        && host.ends_with(domain)
        && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
}

/// The canonical form of a host as a person writes it (a route, a domain assignment): port
/// and trailing dot removed, IDNA applied, lower case; IP literals in their standard form.
pub fn canonical_host(input: &str) -> Result<String, HostError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(HostError::Empty);
    }
    let bare = strip_port(s);
    if let Some(inner) = bare.strip_prefix('[').and_then(|b| b.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| format!("[{ip}]"))
            .map_err(|_| HostError::Invalid(s.into(), "bad IPv6 literal"));
    }
    if let Ok(ip) = bare.parse::<Ipv6Addr>() {
        return Ok(format!("[{ip}]"));
    }
    let bare = bare.strip_suffix('.').unwrap_or(bare);
    if bare.is_empty() {
        return Err(HostError::Empty);
    }
    if bare.contains(['/', ' ', '@', '?', '#', '\\', '*', ':', '%']) {
        return Err(HostError::Invalid(s.into(), "unexpected character"));
    }
    let ascii = idna::domain_to_ascii(bare)
        .map_err(|_| HostError::Invalid(s.into(), "not a valid internationalised name"))?;
    if ascii.is_empty() || ascii.len() > 253 {
        return Err(HostError::Invalid(
            s.into(),
            "names are 1 to 253 characters",
        ));
    }
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(HostError::Invalid(s.into(), "empty label"));
        }
        if label.len() > 63 {
            return Err(HostError::Invalid(
                s.into(),
                "labels are at most 63 characters",
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(HostError::Invalid(s.into(), "unexpected character"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostError::Invalid(
                s.into(),
                "labels cannot start or end with '-'",
            ));
        }
    }
    Ok(ascii)
}

/// The routing form of a request's `Host` (or `:authority`): port and trailing dot removed,
/// lower case. Borrows unless it must change the text. `None` for a value no client sends
/// (non-ASCII, spaces, a user part); such requests are refused rather than guessed at.
pub fn request_host(raw: &str) -> Option<Cow<'_, str>> {
    if raw.is_empty()
        || !raw.is_ascii()
        || raw
            .bytes()
            .any(|b| b.is_ascii_control() || matches!(b, b' ' | b'@' | b'/' | b'\\'))
    {
        return None;
    }
    let bare = strip_port(raw);
    let bare = bare.strip_suffix('.').unwrap_or(bare);
    if bare.is_empty() {
        return None;
    }
    if bare.starts_with('[') {
        // IPv6 literal: compare in its canonical form ("[0:0::1]" is "[::1]").
        let inner = bare.strip_prefix('[')?.strip_suffix(']')?;
        let ip = inner.parse::<Ipv6Addr>().ok()?;
        let canonical = format!("[{ip}]");
        return Some(if canonical == bare {
            Cow::Borrowed(bare)
        } else {
            Cow::Owned(canonical)
        });
    }
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(bare.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(bare))
    }
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        // A bare IPv6 address has several colons: not a port.
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_host() {
        for spelling in ["localhost", "LOCALHOST.", "localhost:8080", "LocalHost.:80"] {
            assert_eq!(canonical_host(spelling).unwrap(), "localhost", "{spelling}");
            assert_eq!(request_host(spelling).unwrap(), "localhost", "{spelling}");
        }
        assert_eq!(
            canonical_host("Bücher.Example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(canonical_host("127.0.0.1:8080").unwrap(), "127.0.0.1");
        assert_eq!(canonical_host("[0:0::1]:8080").unwrap(), "[::1]");
        assert_eq!(canonical_host("::1").unwrap(), "[::1]");
        assert_eq!(request_host("[0:0::1]:8080").unwrap(), "[::1]");
        assert_eq!(request_host("API.example.com").unwrap(), "api.example.com");
        assert!(matches!(
            request_host("api.example.com"),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn refuses_what_is_not_a_host() {
        for bad in [
            "",
            ".",
            "a b",
            "user@host",
            "-a.com",
            "a-.com",
            "a..b",
            "x/y",
            "[zz]",
            "*",
        ] {
            assert!(canonical_host(bad).is_err(), "{bad:?}");
        }
        assert!(request_host("bücher.example").is_none());
        assert!(request_host("evil@host").is_none());
        assert!(request_host("").is_none());
    }

    #[test]
    fn wildcards_match_below_their_domain() {
        let w = HostPattern::parse("*.Example.com.").unwrap();
        assert_eq!(w, HostPattern::Wildcard("example.com".into()));
        assert_eq!(w.to_string(), "*.example.com");
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("badexample.com"));
        assert!(HostPattern::parse("*.com").is_err());
        assert!(HostPattern::parse("*.127.0.0.1").is_err());
        assert!(HostPattern::parse("a.*.com").is_err());
    }

    #[test]
    fn coverage_and_overlap() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(p("*.example.com").covers(&p("shop.example.com")));
        assert!(p("*.example.com").covers(&p("*.eu.example.com")));
        assert!(!p("*.eu.example.com").covers(&p("*.example.com")));
        assert!(p("*.eu.example.com").overlaps(&p("*.example.com")));
        assert!(!p("shop.example.com").overlaps(&p("example.com")));
        assert!(!p("*.example.com").overlaps(&p("example.com")));
        assert!(!p("*.example.com").overlaps(&p("*.example.org")));
    }
}
