//! `RoutingTarget`: the one host and path a request is routed by, or why the request could
//! be routed two ways.
//!
//! A proxy in front of the runtime and the runtime itself must agree on which app a request
//! is for, or a client can reach one tenant's app through a URL that looks like another's.
//! So requests that could be read two ways are refused with 400 rather than guessed at:
//! - more than one `Host` header (or `X-Forwarded-Host`, where trusted);
//! - an absolute-form target (`GET http://a.example/ HTTP/1.1`, or HTTP/2's `:authority`)
//!   whose host differs from the `Host` header;
//! - a host that is not a plain host name or IP literal;
//! - a path with a percent-encoded dot segment (`/shop/%2e%2e/admin`), which some servers
//!   decode before resolving and some after.
//!
//! Literal dot segments (`/shop/../admin`) are resolved as RFC 3986 §5.2.4 says, and the
//! guest is handed the resolved path, so routing and the guest see the same path.

use std::borrow::Cow;

use http::{HeaderMap, Uri, header};

use crate::host_name::request_host;

/// The header a trusted front proxy puts the original host in.
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// Why a request was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ambiguity {
    /// Several `Host` headers.
    #[error("the request has more than one Host header")]
    SeveralHosts,
    /// The request target's authority names another host than `Host`.
    #[error("the request target's host differs from the Host header")]
    AuthorityMismatch,
    /// The host is not a host name or IP literal.
    #[error("the request's host is not a valid host name")]
    BadHost,
    /// A `.` or `..` segment written with percent-encoding.
    #[error("the request path has a percent-encoded '.' or '..' segment")]
    EncodedDotSegment,
}

/// Where a request goes: its canonical host (if any) and its path with dot segments
/// resolved (owned only when resolution changed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTarget<'a> {
    /// Canonical host ([`request_host`]), `None` when the request names none.
    pub host: Option<Cow<'a, str>>,
    /// The path to route by and to hand to the guest.
    pub path: Cow<'a, str>,
}

impl<'a> RoutingTarget<'a> {
    /// Reads the target of a request with `uri` and `headers`. With `trust_forwarded_host`
    /// (set only when a proxy that overwrites the header is the runtime's sole entry), a
    /// single `X-Forwarded-Host` names the host instead of `Host`.
    pub fn of(
        uri: &'a Uri,
        headers: &'a HeaderMap,
        trust_forwarded_host: bool,
    ) -> Result<Self, Ambiguity> {
        let host = if trust_forwarded_host && headers.contains_key(X_FORWARDED_HOST) {
            Some(single_host(headers, X_FORWARDED_HOST)?)
        } else {
            let from_header = if headers.contains_key(header::HOST) {
                Some(single_host(headers, header::HOST.as_str())?)
            } else {
                None
            };
            let from_target = match uri.authority() {
                Some(a) => Some(request_host(a.as_str()).ok_or(Ambiguity::BadHost)?),
                None => None,
            };
            match (from_header, from_target) {
                (Some(h), Some(t)) if h != t => return Err(Ambiguity::AuthorityMismatch),
                (Some(h), _) => Some(h),
                (None, t) => t,
            }
        };
        let path = resolve_dot_segments(uri.path())?;
        Ok(RoutingTarget { host, path })
    }
}

fn single_host<'a>(headers: &'a HeaderMap, name: &str) -> Result<Cow<'a, str>, Ambiguity> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(Ambiguity::BadHost)?;
    if values.next().is_some() {
        return Err(Ambiguity::SeveralHosts);
    }
    let text = value.to_str().map_err(|_| Ambiguity::BadHost)?;
    if text.contains(',') {
        // "a.example, b.example": a list where one host is expected.
        return Err(Ambiguity::SeveralHosts);
    }
    request_host(text.trim()).ok_or(Ambiguity::BadHost)
}

/// Resolves `.` and `..` segments of an absolute path (RFC 3986 §5.2.4); `..` never climbs
/// above `/`. Percent-encoded dot segments are refused. Borrows when nothing changes.
pub fn resolve_dot_segments(path: &str) -> Result<Cow<'_, str>, Ambiguity> {
    let mut has_dots = false;
    for seg in path.split('/') {
        match seg {
            "." | ".." => has_dots = true,
            s if s.contains('%') && is_encoded_dot_segment(s) => {
                return Err(Ambiguity::EncodedDotSegment);
            }
            _ => {}
        }
    }
    if !has_dots {
        return Ok(Cow::Borrowed(path));
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut resolved = String::with_capacity(path.len());
    for seg in &out {
        resolved.push('/');
        resolved.push_str(seg);
    }
    if trailing_slash || resolved.is_empty() {
        resolved.push('/');
    }
    Ok(Cow::Owned(resolved))
}

fn is_encoded_dot_segment(seg: &str) -> bool {
    let lower = seg.to_ascii_lowercase();
    let decoded = lower.replace("%2e", ".");
    decoded != lower && (decoded == "." || decoded == "..")
}

/// `uri` with its path replaced by `path` (query kept), for handing a resolved path on.
pub fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(
        uri: &str,
        hosts: &[(&str, &str)],
        trust: bool,
    ) -> Result<(String, String), Ambiguity> {
        let uri: Uri = uri.parse().unwrap();
        let mut headers = HeaderMap::new();
        for (k, v) in hosts {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        RoutingTarget::of(&uri, &headers, trust).map(|t| {
            (
                t.host.map(|h| h.into_owned()).unwrap_or_default(),
                t.path.into_owned(),
            )
        })
    }

    #[test]
    fn one_host_one_path() {
        assert_eq!(
            target("/a", &[("host", "Example.COM:8080")], false),
            Ok(("example.com".into(), "/a".into()))
        );
        assert_eq!(target("/a", &[], false), Ok((String::new(), "/a".into())));
        assert_eq!(
            target("http://a.example/x", &[], false),
            Ok(("a.example".into(), "/x".into()))
        );
        assert_eq!(
            target("http://a.example:80/x", &[("host", "A.example")], false),
            Ok(("a.example".into(), "/x".into()))
        );
    }

    #[test]
    fn ambiguous_requests_are_refused() {
        assert_eq!(
            target("/a", &[("host", "a.example"), ("host", "b.example")], false),
            Err(Ambiguity::SeveralHosts)
        );
        assert_eq!(
            target("/a", &[("host", "a.example,b.example")], false),
            Err(Ambiguity::SeveralHosts)
        );
        assert_eq!(
            target("http://b.example/a", &[("host", "a.example")], false),
            Err(Ambiguity::AuthorityMismatch)
        );
        assert_eq!(
            target("/a", &[("host", "a b")], false),
            Err(Ambiguity::BadHost)
        );
        for p in ["/shop/%2e%2e/x", "/shop/%2E./x", "/shop/.%2e", "/%2e/x"] {
            assert_eq!(
                target(p, &[], false),
                Err(Ambiguity::EncodedDotSegment),
                "{p}"
            );
        }
        assert!(target("/shop/%2e%2ex/y", &[], false).is_ok());
    }

    #[test]
    fn forwarded_host_only_when_trusted() {
        let h = [
            ("host", "internal.svc"),
            ("x-forwarded-host", "Shop.Example"),
        ];
        assert_eq!(
            target("/a", &h, true),
            Ok(("shop.example".into(), "/a".into()))
        );
        assert_eq!(
            target("/a", &h, false),
            Ok(("internal.svc".into(), "/a".into()))
        );
        let two = [
            ("x-forwarded-host", "a.example"),
            ("x-forwarded-host", "b.example"),
        ];
        assert_eq!(target("/a", &two, true), Err(Ambiguity::SeveralHosts));
    }

    #[test]
    fn dot_segments_resolve() {
        let r = |p: &str| resolve_dot_segments(p).unwrap().into_owned();
        assert_eq!(r("/shop/../x"), "/x");
        assert_eq!(r("/shop/./x"), "/shop/x");
        assert_eq!(r("/../../x"), "/x");
        assert_eq!(r("/a/b/.."), "/a/");
        assert_eq!(r("/a/."), "/a/");
        assert_eq!(r("/.."), "/");
        assert_eq!(r("/a//b"), "/a//b");
        assert!(matches!(
            resolve_dot_segments("/plain/path"),
            Ok(Cow::Borrowed(_))
        ));
        let uri: Uri = "/shop/../x?q=1".parse().unwrap();
        assert_eq!(with_path(&uri, "/x").unwrap().to_string(), "/x?q=1");
    }
}
