//! Outbound HTTP for SDK guests, under the release's policy.
//!
//! A request goes out only when its host matches `allowed_outbound_hosts` (`host`,
//! `host:port`, or `*.domain`). The host resolves the name itself and refuses loopback,
//! private, link-local and other non-public addresses unless the host is listed
//! explicitly (not by a wildcard); the connection then goes to exactly the addresses it
//! checked, so DNS cannot be swapped between check and use.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// Not a valid absolute http(s) URL.
    #[error("invalid URL {0:?}: use an absolute http:// or https:// URL")]
    BadUrl(String),
    /// The host is not on the allow-list.
    #[error("{0} is not in this release's allowed_outbound_hosts")]
    NotAllowed(String),
    /// It resolves to an address only explicit listing allows.
    #[error(
        "{host} resolves to the non-public address {addr}; list \"{host}\" explicitly to allow it"
    )]
    PrivateAddress {
        /// Host name.
        host: String,
        /// Refused address.
        addr: IpAddr,
    },
    /// DNS failed.
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
}

/// How a host matched the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Named exactly (`host` or `host:port`): private addresses allowed.
    Explicit,
    /// Through a `*.domain` wildcard: public addresses only.
    Wildcard,
}

/// Matches `host` (lower-case) and `port` against the allow-list.
pub fn allowed(list: &[String], host: &str, port: u16) -> Option<Allowed> {
    let mut found = None;
    for entry in list {
        let entry = entry.trim().to_ascii_lowercase();
        let (pat, pat_port) = split_host_port(&entry);
        if pat_port.is_some_and(|p| p != port) {
            continue;
        }
        if let Some(domain) = pat.strip_prefix("*.") {
            if host.len() > domain.len() + 1
                && host.ends_with(domain)
                && host[..host.len() - domain.len()].ends_with('.')
            {
                found = found.or(Some(Allowed::Wildcard));
            }
        } else if pat == host {
            return Some(Allowed::Explicit);
        }
    }
    found
}

fn split_host_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        // [v6]:port
        if let Some((h, p)) = rest.split_once("]:") {
            return (h, p.parse().ok());
        }
        return (rest.trim_end_matches(']'), None);
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

/// True for addresses on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..=127).contains(&o[1])) // shared address space (CGNAT)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80) // link local
        }
    }
}

/// Checks `url` against the policy and resolves it to the addresses to connect to.
pub async fn check(
    list: &[String],
    url: &url::Url,
) -> Result<(String, Vec<SocketAddr>), OutboundError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OutboundError::BadUrl(url.to_string()));
    }
    let host = url
        .host_str()
        .ok_or_else(|| OutboundError::BadUrl(url.to_string()))?
        .to_ascii_lowercase();
    let port = url.port_or_known_default().unwrap_or(80);
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let how = allowed(list, &bare, port)
        .ok_or_else(|| OutboundError::NotAllowed(format!("{bare}:{port}")))?;
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare.as_str(), port))
            .await
            .map_err(|e| OutboundError::Resolve(bare.clone(), e.to_string()))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(OutboundError::Resolve(bare, "no addresses".into()));
    }
    if how == Allowed::Wildcard
        && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
    {
        return Err(OutboundError::PrivateAddress {
            host: bare,
            addr: bad.ip(),
        });
    }
    Ok((bare, addrs))
}

/// A client for one checked request: connects only to `addrs`.
pub fn client(
    host: &str,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .resolve_to_addrs(host, addrs)
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn allow_list_matching() {
        let l = list(&[
            "api.example.com",
            "*.stripe.com",
            "127.0.0.1:9000",
            "local.test:8080",
        ]);
        assert_eq!(allowed(&l, "api.example.com", 443), Some(Allowed::Explicit));
        assert_eq!(allowed(&l, "x.stripe.com", 443), Some(Allowed::Wildcard));
        assert_eq!(allowed(&l, "stripe.com", 443), None);
        assert_eq!(allowed(&l, "evilstripe.com", 443), None);
        assert_eq!(allowed(&l, "127.0.0.1", 9000), Some(Allowed::Explicit));
        assert_eq!(allowed(&l, "127.0.0.1", 9001), None);
        assert_eq!(allowed(&l, "local.test", 8080), Some(Allowed::Explicit));
        assert_eq!(allowed(&l, "other.com", 80), None);
    }

    #[test]
    fn public_addresses() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(bad.parse().unwrap()), "{bad}");
        }
        for good in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(good.parse().unwrap()), "{good}");
        }
    }

    #[tokio::test]
    async fn policy_check() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        let l = list(&["127.0.0.1:9000", "*.example.com"]);
        assert!(check(&l, &url("http://127.0.0.1:9000/x")).await.is_ok());
        assert!(matches!(
            check(&l, &url("http://127.0.0.1:9001/")).await,
            Err(OutboundError::NotAllowed(_))
        ));
        assert!(matches!(
            check(&l, &url("ftp://127.0.0.1:9000/")).await,
            Err(OutboundError::BadUrl(_))
        ));
        assert!(matches!(
            check(&list(&["*.localhost"]), &url("http://a.localhost/")).await,
            Err(OutboundError::PrivateAddress { .. }) | Err(OutboundError::Resolve(..))
        ));
    }
}
