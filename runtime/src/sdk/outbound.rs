//! Outbound HTTP for SDK guests: the tenant says where, the operator says what is private.
//!
//! Two lists decide, in this order:
//!
//! 1. The release's `allowed_outbound_hosts` ([`check_url`]): `host`, `host:port` or
//!    `*.domain`. A request to anything else is refused before any lookup.
//! 2. The operator's address policy ([`policy`]), which tenants cannot change: the
//!    built-in deny-list of non-public ranges ([`reserved`]), the operator's
//!    `--outbound-deny` ranges, the platform's own listeners, and the private destinations
//!    the operator opened with `--outbound-allow-private`. Listing a host never lifts it:
//!    `allowed_outbound_hosts = ["127.0.0.1:8081"]` does not reach the control plane.
//!
//! The address policy is applied to the address actually connected to: an address literal
//! before the request is sent, a name in the client's resolver on every new connection
//! ([`resolver`]), so DNS cannot answer one address for a check and another for the
//! connection. Redirects are not followed by the host; a guest that follows one sends a
//! new request, checked again.
//!
//! One pooled client serves the whole runtime ([`OutboundClient`]); connections are reused
//! per scheme, host and port, and every request's timeout is bounded by its guest
//! request's deadline.

pub mod policy;
pub mod reserved;
pub mod resolver;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use ipnet::IpNet;
pub use policy::{AddrPolicy, OutboundConfig, PrivateAllow, Refusal, parse_deny};
pub use reserved::{Reserved, classify};

use self::resolver::{Destination, Lookup, PolicyResolver, ResolveError};
use super::abi::code;

/// Longest time to connect, within the request's own timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an outbound request failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// Not a valid absolute http(s) URL.
    #[error("invalid URL {0:?}: use an absolute http:// or https:// URL")]
    BadUrl(String),
    /// The host is not on the release's allow-list.
    #[error("denied: {0} is not in this release's allowed_outbound_hosts")]
    NotAllowed(String),
    /// The address (a literal in the URL) is refused by the operator's policy.
    #[error("denied: {0}")]
    Refused(Refusal),
    /// Every address the name resolves to is refused by the operator's policy.
    #[error("denied: {0}")]
    RefusedAll(String),
    /// DNS failed, or found nothing.
    #[error("{0}")]
    Resolve(String),
    /// The exchange ran out of time.
    #[error("{0}: timed out")]
    Timeout(String),
    /// Connection or protocol failure.
    #[error("{0}")]
    Failed(String),
    /// The client could not be built.
    #[error("cannot set up the outbound HTTP client: {0}")]
    Client(String),
}

impl OutboundError {
    /// The ABI error code a guest gets (`sdk/ABI.md` §7.8): a refusal is `DENIED`; a name
    /// that does not resolve is `UNAVAILABLE`, like a connection that fails.
    pub fn code(&self) -> i32 {
        match self {
            OutboundError::BadUrl(_) => code::INVALID,
            OutboundError::NotAllowed(_)
            | OutboundError::Refused(_)
            | OutboundError::RefusedAll(_) => code::DENIED,
            OutboundError::Resolve(_) | OutboundError::Failed(_) => code::UNAVAILABLE,
            OutboundError::Timeout(_) => code::TIMEOUT,
            OutboundError::Client(_) => code::INTERNAL,
        }
    }
}

/// Whether `host` (lower-case, IPv6 without brackets) and `port` are on the allow-list.
pub fn allowed(list: &[String], host: &str, port: u16) -> bool {
    list.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        let (pat, pat_port) = split_host_port(&entry);
        if pat_port.is_some_and(|p| p != port) {
            return false;
        }
        match pat.strip_prefix("*.") {
            Some(domain) => {
                host.len() > domain.len() + 1
                    && host.ends_with(domain)
                    && host[..host.len() - domain.len()].ends_with('.')
            }
            None => pat == host,
        }
    })
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

/// Where a request allowed by the release's list goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// Lower-case host (an IPv6 literal without brackets).
    pub host: String,
    /// The URL's port, or its scheme's.
    pub port: u16,
    /// The address, when the URL names one.
    pub literal: Option<IpAddr>,
}

/// Checks `url` against the release's allow-list (scheme, host, port). The address policy
/// comes later, in [`OutboundClient::send`].
pub fn check_url(list: &[String], url: &url::Url) -> Result<Target, OutboundError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OutboundError::BadUrl(url.to_string()));
    }
    let (host, literal) = match url.host() {
        Some(url::Host::Domain(d)) => (d.to_ascii_lowercase(), None),
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
        None => return Err(OutboundError::BadUrl(url.to_string())),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    if !allowed(list, &host, port) {
        let shown = match literal {
            Some(IpAddr::V6(_)) => format!("[{host}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        return Err(OutboundError::NotAllowed(shown));
    }
    Ok(Target {
        host,
        port,
        literal,
    })
}

/// One outbound request, as the guest asked for it.
#[derive(Debug)]
pub struct OutboundRequest {
    /// Method.
    pub method: http::Method,
    /// Absolute http(s) URL, already allowed by [`check_url`].
    pub url: url::Url,
    /// Headers (hop-by-hop and `host` already removed).
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// Time for the whole exchange, reading the body included.
    pub timeout: Duration,
}

/// The runtime's outbound HTTP client: pooled, no proxy, no redirects, and connecting
/// only where the operator's policy allows.
#[derive(Debug, Clone)]
pub struct OutboundClient {
    client: reqwest::Client,
    policy: Arc<AddrPolicy>,
}

impl OutboundClient {
    /// The client for `config`, resolving names with the system resolver.
    pub fn new(config: &OutboundConfig) -> Result<Self, OutboundError> {
        Self::with_lookup(config, resolver::system_lookup())
    }

    fn with_lookup(config: &OutboundConfig, lookup: Lookup) -> Result<Self, OutboundError> {
        let policy = Arc::new(AddrPolicy::new(config));
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PolicyResolver::new(policy.clone(), lookup)))
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| OutboundError::Client(e.to_string()))?;
        Ok(OutboundClient { client, policy })
    }

    /// The operator's address policy this client applies.
    pub fn policy(&self) -> &AddrPolicy {
        &self.policy
    }

    /// Sends `req` to `target` (from [`check_url`]) and waits for the response head.
    pub async fn send(
        &self,
        target: Target,
        req: OutboundRequest,
    ) -> Result<reqwest::Response, OutboundError> {
        if let Some(ip) = target.literal {
            // reqwest connects to a literal without asking the resolver: check it here.
            self.policy
                .check(None, SocketAddr::new(ip, target.port))
                .map_err(OutboundError::Refused)?;
        }
        let url = req.url.to_string();
        let sending = self
            .client
            .request(req.method, req.url)
            .headers(req.headers)
            .body(req.body)
            .timeout(req.timeout)
            .send();
        let dest = Destination {
            host: target.host,
            port: target.port,
        };
        resolver::with_destination(dest, sending)
            .await
            .map_err(|e| failure(&url, &e))
    }
}

/// Turns reqwest's error into ours, finding the resolver's refusal in its causes.
fn failure(url: &str, e: &reqwest::Error) -> OutboundError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<ResolveError>() {
            return match r {
                ResolveError::Refused { .. } => OutboundError::RefusedAll(r.to_string()),
                ResolveError::Dns { .. } | ResolveError::NoAddresses(_) => {
                    OutboundError::Resolve(r.to_string())
                }
                ResolveError::Unchecked(_) => OutboundError::Failed(r.to_string()),
            };
        }
        cause = c.source();
    }
    if e.is_timeout() {
        return OutboundError::Timeout(url.to_string());
    }
    let mut msg = url.to_string();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    OutboundError::Failed(msg)
}

#[cfg(test)]
mod tests;
