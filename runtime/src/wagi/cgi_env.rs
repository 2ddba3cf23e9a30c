//! CGI/1.1 meta-variables (RFC 3875 §4.1) for one request.
//!
//! Beyond the RFC, `REQUEST_URI` is set as Apache does, because Go's `net/http/cgi` builds
//! the request URL from it (raw path and query, exactly as the client sent them).
//! `PATH_INFO` is percent-decoded, as the RFC requires.

use std::net::SocketAddr;

use http::request::Parts;
use http::{HeaderMap, header};

/// Request facts the CGI environment is made from.
#[derive(Debug, Clone)]
pub struct CgiRequest<'a> {
    /// Method, URI, version and headers of the request.
    pub parts: &'a Parts,
    /// The matched route prefix (`/` for a root route).
    pub route_prefix: &'a str,
    /// Length of the (fully read) body.
    pub content_length: usize,
    /// The client's address.
    pub remote: SocketAddr,
    /// The listener's address (fallback for `SERVER_NAME`/`SERVER_PORT`).
    pub local: SocketAddr,
    /// The request id, also passed as `HTTP_X_REQUEST_ID`.
    pub request_id: &'a str,
}

/// Builds the environment: the app's own variables first, then the CGI variables (which
/// win, so configuration cannot spoof request facts).
pub fn build_env(req: &CgiRequest<'_>, app_env: &[(String, String)]) -> Vec<(String, String)> {
    let parts = req.parts;
    let mut env: Vec<(String, String)> = Vec::with_capacity(app_env.len() + 24);
    env.extend(app_env.iter().cloned());

    let raw_path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let script_name = if req.route_prefix == "/" {
        ""
    } else {
        req.route_prefix
    };
    let path_info = percent_decode(strip_prefix_segments(raw_path, script_name));
    let (server_name, server_port) =
        server_name_port(&parts.headers, parts.uri.authority(), req.local);
    let request_uri = match parts.uri.query() {
        Some(q) => format!("{raw_path}?{q}"),
        None => raw_path.to_string(),
    };

    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set(
        "SERVER_SOFTWARE",
        concat!("platform/", env!("CARGO_PKG_VERSION")).into(),
    );
    set("SERVER_PROTOCOL", protocol(parts.version).into());
    set("SERVER_NAME", server_name);
    set("SERVER_PORT", server_port);
    set("REQUEST_METHOD", parts.method.as_str().into());
    set("SCRIPT_NAME", script_name.into());
    set("PATH_INFO", path_info);
    set("QUERY_STRING", query.into());
    set("REQUEST_URI", request_uri);
    set("REMOTE_ADDR", req.remote.ip().to_string());
    set("REMOTE_PORT", req.remote.port().to_string());
    set("CONTENT_LENGTH", req.content_length.to_string());
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        set(
            "CONTENT_TYPE",
            String::from_utf8_lossy(ct.as_bytes()).into_owned(),
        );
    }
    set("HTTP_X_REQUEST_ID", req.request_id.into());

    // HTTP_* for request headers; repeated headers joined (cookies with "; ").
    let mut names: Vec<&header::HeaderName> = parts.headers.keys().collect();
    names.dedup();
    for name in names {
        if name == header::CONTENT_TYPE
            || name == header::CONTENT_LENGTH
            || name.as_str() == "proxy" // httpoxy: never let a client set HTTP_PROXY
            || name.as_str() == "x-request-id"
        {
            continue;
        }
        let sep = if name == header::COOKIE { "; " } else { ", " };
        let value = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect::<Vec<_>>()
            .join(sep);
        let key = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        env.push((key, value));
    }
    // Later entries override earlier ones of the same name in WASI's environ, but not in
    // every guest's lookup: drop app variables shadowed by CGI ones.
    dedup_last_wins(env)
}

fn dedup_last_wins(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::with_capacity(env.len());
    let mut out: Vec<(String, String)> = env
        .into_iter()
        .rev()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect();
    out.reverse();
    out
}

fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn server_name_port(
    headers: &HeaderMap,
    authority: Option<&http::uri::Authority>,
    local: SocketAddr,
) -> (String, String) {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| authority.map(|a| a.as_str().to_string()));
    match host {
        Some(h) => match h.parse::<http::uri::Authority>() {
            Ok(a) => (
                a.host().to_string(),
                a.port_u16().unwrap_or(local.port()).to_string(),
            ),
            Err(_) => (local.ip().to_string(), local.port().to_string()),
        },
        None => (local.ip().to_string(), local.port().to_string()),
    }
}

/// The part of `path` after the route prefix; `""` when the path is the prefix itself.
fn strip_prefix_segments<'a>(path: &'a str, prefix: &str) -> &'a str {
    if prefix.is_empty() {
        return path;
    }
    // Routes match on segments after collapsing slashes; compare the same way.
    let mut rest = path;
    for seg in prefix.split('/').filter(|s| !s.is_empty()) {
        rest = rest.trim_start_matches('/');
        match rest.strip_prefix(seg) {
            Some(r) => rest = r,
            None => return path,
        }
    }
    rest
}

/// Decodes `%XX` escapes, except `%00`: a NUL cannot travel in an environment variable
/// (the guest's C-string view of its environment would end `PATH_INFO` there and hide the
/// rest), so it stays encoded.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
            && h << 4 | l != 0
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(uri: &str, prefix: &str, headers: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut b = http::Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        build_env(
            &CgiRequest {
                parts: &parts,
                route_prefix: prefix,
                content_length: 5,
                remote: "10.1.2.3:5555".parse().unwrap(),
                local: "127.0.0.1:8080".parse().unwrap(),
                request_id: "rid-1",
            },
            &[
                ("GREETING".into(), "hi".into()),
                ("REQUEST_METHOD".into(), "spoofed".into()),
            ],
        )
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn rfc3875_variables() {
        let env = env_of(
            "/shop/items/a%20b?x=1&y=%20",
            "/shop",
            &[
                ("host", "api.example.com:9000"),
                ("content-type", "application/json"),
                ("authorization", "Bearer t"),
                ("cookie", "a=1"),
                ("cookie", "b=2"),
                ("x-multi", "1"),
                ("x-multi", "2"),
                ("proxy", "http://evil"),
            ],
        );
        assert_eq!(get(&env, "REQUEST_METHOD"), Some("POST"));
        assert_eq!(get(&env, "SCRIPT_NAME"), Some("/shop"));
        assert_eq!(get(&env, "PATH_INFO"), Some("/items/a b"));
        assert_eq!(get(&env, "QUERY_STRING"), Some("x=1&y=%20"));
        assert_eq!(
            get(&env, "REQUEST_URI"),
            Some("/shop/items/a%20b?x=1&y=%20")
        );
        assert_eq!(get(&env, "SERVER_NAME"), Some("api.example.com"));
        assert_eq!(get(&env, "SERVER_PORT"), Some("9000"));
        assert_eq!(get(&env, "SERVER_PROTOCOL"), Some("HTTP/1.1"));
        assert_eq!(get(&env, "REMOTE_ADDR"), Some("10.1.2.3"));
        assert_eq!(get(&env, "CONTENT_TYPE"), Some("application/json"));
        assert_eq!(get(&env, "CONTENT_LENGTH"), Some("5"));
        assert_eq!(get(&env, "HTTP_AUTHORIZATION"), Some("Bearer t"));
        assert_eq!(get(&env, "HTTP_COOKIE"), Some("a=1; b=2"));
        assert_eq!(get(&env, "HTTP_X_MULTI"), Some("1, 2"));
        assert_eq!(get(&env, "HTTP_X_REQUEST_ID"), Some("rid-1"));
        assert_eq!(get(&env, "HTTP_PROXY"), None);
        assert_eq!(get(&env, "HTTP_CONTENT_TYPE"), None);
        assert_eq!(get(&env, "GREETING"), Some("hi"));
        assert_eq!(env.iter().filter(|(k, _)| k == "REQUEST_METHOD").count(), 1);
    }

    /// Found by `properties_inputs::cgi_env_from_odd_requests`: `/%00` decoded into a
    /// PATH_INFO holding a NUL.
    #[test]
    fn an_encoded_nul_stays_encoded_in_path_info() {
        let env = env_of("/shop/a%00b%2e", "/shop", &[]);
        assert_eq!(get(&env, "PATH_INFO"), Some("/a%00b."));
        assert!(env.iter().all(|(_, v)| !v.contains('\0')));
    }

    #[test]
    fn root_route_has_empty_script_name() {
        let env = env_of("/a/b", "/", &[]);
        assert_eq!(get(&env, "SCRIPT_NAME"), Some(""));
        assert_eq!(get(&env, "PATH_INFO"), Some("/a/b"));
        assert_eq!(get(&env, "SERVER_NAME"), Some("127.0.0.1"));
        let env = env_of("/shop", "/shop", &[]);
        assert_eq!(get(&env, "PATH_INFO"), Some(""));
    }
}
