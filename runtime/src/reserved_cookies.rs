//! Cookies that belong to the platform, never to guests.
//!
//! Cookies ignore ports: a dashboard session cookie set for `127.0.0.1` reaches every app
//! on `127.0.0.1:8080` too, and an app's `Set-Cookie` for that name would overwrite the
//! session. So every cookie named `platform_*` (also with the `__Host-` or `__Secure-`
//! prefix) is the platform's: the runtime removes those from requests before a guest sees
//! them and drops a guest's `Set-Cookie` for them. Guests must pick other names
//! (documented in `sdk/go/README.md`).

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

/// True for a cookie name reserved for the platform.
pub fn is_reserved(name: &str) -> bool {
    let name = name.trim();
    let name = name
        .strip_prefix("__Host-")
        .or_else(|| name.strip_prefix("__Secure-"))
        .unwrap_or(name);
    name.len() >= 9 && name[..9].eq_ignore_ascii_case("platform_")
}

/// Removes reserved cookies from a request's `Cookie` headers (dropping a header left empty).
/// Does nothing, and allocates nothing, when no reserved cookie is present.
pub fn strip_from_request(headers: &mut HeaderMap) {
    let reserved_present = headers.get_all(COOKIE).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b';')
            .any(|pair| cookie_name(pair).is_some_and(is_reserved))
    });
    if !reserved_present {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| {
            let pairs: Vec<&[u8]> = v
                .as_bytes()
                .split(|b| *b == b';')
                .filter(|pair| !cookie_name(pair).is_some_and(is_reserved))
                .map(trim)
                .filter(|p| !p.is_empty())
                .collect();
            if pairs.is_empty() {
                return None;
            }
            HeaderValue::from_bytes(&pairs.join(&b"; "[..])).ok()
        })
        .collect();
    headers.remove(COOKIE);
    for v in kept {
        headers.append(COOKIE, v);
    }
}

/// Removes a guest's `Set-Cookie` headers that would set a reserved cookie, and nameless
/// ones (`=platform_session=x`, which some browsers send back as `platform_session=x`).
/// Returns how many were dropped (for the log).
pub fn strip_from_response(headers: &mut HeaderMap) -> usize {
    let reserved = |v: &HeaderValue| {
        let first = v
            .as_bytes()
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default();
        cookie_name(first).is_none_or(|n| n.is_empty() || is_reserved(n))
    };
    if !headers.get_all(SET_COOKIE).iter().any(reserved) {
        return 0;
    }
    let all: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
    headers.remove(SET_COOKIE);
    let mut dropped = 0;
    for v in all {
        if reserved(&v) {
            dropped += 1;
        } else {
            headers.append(SET_COOKIE, v);
        }
    }
    dropped
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// The name of a `name=value` pair, if it is text.
fn cookie_name(pair: &[u8]) -> Option<&str> {
    let name = pair.split(|b| *b == b'=').next()?;
    std::str::from_utf8(trim(name)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for n in [
            "platform_session",
            "__Host-platform_session",
            "__Secure-platform_x",
            "Platform_Login",
            " platform_oidc",
        ] {
            assert!(is_reserved(n), "{n}");
        }
        for n in ["session", "platform", "myplatform_x", "__Host-app"] {
            assert!(!is_reserved(n), "{n}");
        }
    }

    #[test]
    fn request_cookies_lose_only_the_platforms() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; platform_session=secret; b=2".parse().unwrap());
        h.append(COOKIE, "__Host-platform_session=s2".parse().unwrap());
        strip_from_request(&mut h);
        let all: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2"]);

        let mut untouched = HeaderMap::new();
        untouched.append(COOKIE, "a=1;b=2".parse().unwrap());
        strip_from_request(&mut untouched);
        assert_eq!(untouched.get(COOKIE).unwrap(), "a=1;b=2");
    }

    #[test]
    fn guests_cannot_set_platform_cookies() {
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, "platform_session=evil; Path=/".parse().unwrap());
        h.append(SET_COOKIE, "cart=3; Path=/".parse().unwrap());
        h.append(
            SET_COOKIE,
            "__Host-platform_session=x; Secure".parse().unwrap(),
        );
        h.append(SET_COOKIE, "=platform_session=evil".parse().unwrap());
        assert_eq!(strip_from_response(&mut h), 3);
        let left: Vec<_> = h.get_all(SET_COOKIE).iter().collect();
        assert_eq!(left, ["cart=3; Path=/"]);
    }
}
