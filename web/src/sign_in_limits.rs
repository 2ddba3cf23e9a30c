//! `SignInLimits`: how often anyone may try to sign in, per client and per user name, so
//! tokens and passwords cannot be guessed at speed (governor's keyed GCRA limiters).
//!
//! The client is the connection's peer address, or, behind a proxy that sets it (and is the
//! dashboard's only entry), the last entry of the configured client-address header.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use axum::http::HeaderMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Sign-in attempts allowed per client and per user name.
pub struct SignInLimits {
    per_client: DefaultKeyedRateLimiter<String>,
    per_user: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for SignInLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignInLimits")
    }
}

impl Default for SignInLimits {
    /// 20 attempts at once per client then one every 3 s; 5 per user name then one every
    /// 12 s.
    fn default() -> Self {
        Self::new(20, 20, 5, 5)
    }
}

fn quota(burst: u32, per_minute: u32) -> Quota {
    let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(burst)
}

impl SignInLimits {
    /// Limits with these bursts and sustained rates (attempts per minute).
    pub fn new(
        client_burst: u32,
        client_per_minute: u32,
        user_burst: u32,
        user_per_minute: u32,
    ) -> Self {
        SignInLimits {
            per_client: RateLimiter::keyed(quota(client_burst, client_per_minute)),
            per_user: RateLimiter::keyed(quota(user_burst, user_per_minute)),
        }
    }

    /// Counts one attempt from `client` (for `user`, when a user name was given); false when
    /// either is over its limit.
    pub fn allow(&self, client: &str, user: Option<&str>) -> bool {
        self.forget_old();
        let client_ok = self.per_client.check_key(&client.to_string()).is_ok();
        let user_ok = match user.map(|u| u.trim().to_ascii_lowercase()) {
            Some(u) if !u.is_empty() => self.per_user.check_key(&u).is_ok(),
            _ => true,
        };
        client_ok && user_ok
    }

    fn forget_old(&self) {
        // Keys whose limit has fully replenished carry no state worth keeping.
        if self.per_client.len() > 10_000 {
            self.per_client.retain_recent();
        }
        if self.per_user.len() > 10_000 {
            self.per_user.retain_recent();
        }
    }
}

/// The client a sign-in attempt comes from: the last entry of `header` (when configured and
/// present), else the peer's IP, else "unknown".
pub fn client_key(headers: &HeaderMap, header: Option<&str>, peer: Option<SocketAddr>) -> String {
    if let Some(name) = header
        && let Some(last) = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|s| !s.is_empty())
    {
        return match last.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => last.chars().take(64).collect(),
        };
    }
    peer.map_or_else(|| "unknown".into(), |p| p.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_client_and_per_user() {
        let l = SignInLimits::new(3, 1, 2, 1);
        assert!(l.allow("1.2.3.4", Some("alice")));
        assert!(l.allow("1.2.3.4", Some("Alice ")));
        // alice is out of attempts, from any client.
        assert!(!l.allow("5.6.7.8", Some("alice")));
        // The first client has one left, for tokens or other users.
        assert!(l.allow("1.2.3.4", None));
        assert!(!l.allow("1.2.3.4", Some("bob")));
        assert!(l.allow("9.9.9.9", Some("bob")));
    }

    #[test]
    fn client_key_prefers_the_configured_header() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "10.0.0.1, 203.0.113.7".parse().unwrap());
        let peer = Some("127.0.0.1:9".parse().unwrap());
        assert_eq!(client_key(&h, Some("x-forwarded-for"), peer), "203.0.113.7");
        assert_eq!(client_key(&h, None, peer), "127.0.0.1");
        assert_eq!(
            client_key(&HeaderMap::new(), Some("x-forwarded-for"), None),
            "unknown"
        );
    }
}
