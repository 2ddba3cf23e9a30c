//! Dedicated apps keep their URLs: a shared runtime forwards a dedicated app's requests to
//! the app's own Service instead of running the guest itself.
//!
//! An app made dedicated runs in a Knative Service of its own (`platform runtime
//! --only-app ID`), but its routes stay in every shared runtime's table, pointing at the
//! Service's address carried in the feed ([`ServiceAddress`]). Going dedicated therefore
//! never changes a user's URLs; the shared runtime becomes a proxy for that app.
//!
//! What is forwarded, and how:
//! - method, the routed path (dot segments resolved) and query, and the headers minus the
//!   hop-by-hop ones and the platform's reserved cookies;
//! - `x-request-id`: the request id this runtime assigned (or the client's), so both
//!   runtimes' log lines and the response carry one id;
//! - the host: Knative's ingress routes on `Host`, so `Host` becomes the Service's own
//!   authority, and the host the client asked for travels in `X-Forwarded-Host` (always
//!   overwritten here, never passed on from the client). The dedicated runtime runs with
//!   `--trust-forwarded-host`, so it routes by that host exactly as the shared runtime did
//!   (host routes and the app's own address included) and hands it to the guest as `Host`;
//! - the body, streamed (never held whole) within the release's `max_body` (413 beyond);
//! - the response head within the release's time limit plus [`COLD_START_ALLOWANCE`]
//!   (Knative may have to start a pod first; the dedicated runtime enforces the guest's own
//!   limit and answers 504 itself), then the response body streamed back.
//!
//! A Service that cannot be reached is a 502 saying so, a warning in the host log, a line in
//! the app's log and `platform_dedicated_forwards_total{outcome="unreachable"}`. Requests
//! that reach the Service are counted there, by the runtime that served them (so `status`
//! counts each once); here only in `platform_dedicated_forwards_total{outcome="ok"}`.
//!
//! Not an SSRF path: the address comes only from the control plane's serving feed, built
//! from the operator's `--dedicated-address-template`; no tenant input (route, header,
//! manifest) can set or change where a request is forwarded.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::{BodyExt, Limited, combinators::UnsyncBoxBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body_timeout::BodyIdle;
use crate::host::{BoxError, ConnInfo, ResponseBody, Runtime};
use crate::logs::{LogEvent, LogStream};
use crate::metrics::{ForwardLabels, RequestLabels};
use crate::request_target::X_FORWARDED_HOST;
use crate::route_table::RouteMatch;

/// Longest time to open a connection to a Service.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time allowed on top of the release's time limit for the response head: Knative may
/// have to start the Service's first pod (scale from zero) before the guest runs.
pub const COLD_START_ALLOWANCE: Duration = Duration::from_secs(10);

/// Why a Service address from the feed cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid dedicated Service address {address:?}: {reason}")]
pub struct AddressError {
    address: String,
    reason: &'static str,
}

/// Where a dedicated app's requests go: `http://host[:port]`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddress {
    authority: http::uri::Authority,
}

impl ServiceAddress {
    /// Parses the feed's `service_url`: an absolute `http://` URL with a host, an optional
    /// port, and no user, path, query or fragment (a cluster-local Knative address is
    /// plain HTTP; TLS to it is not supported).
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let fail = |reason| AddressError {
            address: text.to_string(),
            reason,
        };
        let url = url::Url::parse(text).map_err(|_| fail("not an absolute URL"))?;
        if url.scheme() != "http" {
            return Err(fail("only http:// is supported"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(fail("it must not carry credentials"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(fail("it must not have a path, query or fragment"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err(fail("it has no host")),
        };
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let authority = authority
            .parse()
            .map_err(|_| fail("its host is not valid in a URL"))?;
        Ok(ServiceAddress { authority })
    }

    /// `host[:port]`, the `Host` the Service is reached by.
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }
}

impl std::fmt::Display for ServiceAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

/// The request body type the forwarding client sends.
type ForwardBody = UnsyncBoxBody<Bytes, BoxError>;

/// The runtime's one client to dedicated Services: pooled keep-alive connections per
/// Service, HTTP/1.1, no proxy, no redirects followed.
#[derive(Clone)]
pub struct Forwarder {
    client: Client<HttpConnector, ForwardBody>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarder {
    /// A client; connections are made lazily, so this needs no running Service.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .build(connector);
        Forwarder { client }
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
}

/// Sets the headers a forwarded request carries: `Host` for the Service, the client's
/// host in `X-Forwarded-Host` (replacing any the client sent), the request id, and the
/// client's address appended to `X-Forwarded-For`.
pub fn forwarded_headers(
    headers: &mut HeaderMap,
    to: &ServiceAddress,
    original_host: Option<&HeaderValue>,
    request_id: &str,
    client: IpAddr,
) {
    strip_hop_by_hop(headers);
    crate::reserved_cookies::strip_from_request(headers);
    if let Ok(v) = HeaderValue::from_str(to.authority()) {
        headers.insert(header::HOST, v);
    }
    headers.remove(X_FORWARDED_HOST);
    if let Some(h) = original_host {
        headers.insert(X_FORWARDED_HOST, h.clone());
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(crate::host::REQUEST_ID, v);
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(before) if !before.trim().is_empty() => format!("{before}, {client}"),
        _ => client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
}

/// How a forward ended, for the metric and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Unreachable,
    Timeout,
    TooLarge,
    BodyTimeout,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unreachable => "unreachable",
            Outcome::Timeout => "timeout",
            Outcome::TooLarge => "too_large",
            Outcome::BodyTimeout => "body_timeout",
        }
    }
}

/// Finds the cause of a failed exchange in the error's chain: the request body over its
/// limit or stalled (the client's doing), else the Service (unreachable or broken).
fn classify(e: &(dyn std::error::Error + 'static)) -> Outcome {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            return Outcome::TooLarge;
        }
        if c.downcast_ref::<BodyIdle>().is_some() {
            return Outcome::BodyTimeout;
        }
        cause = c.source();
    }
    Outcome::Unreachable
}

/// The whole error chain on one line, for the host log.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// One request to forward, as routed by the shared runtime.
pub(crate) struct Forward<'a> {
    /// The route match (its target has the Service address).
    pub matched: &'a RouteMatch,
    /// Where to.
    pub to: &'a ServiceAddress,
    /// The host the request was routed by, as the client sent it.
    pub original_host: Option<HeaderValue>,
    /// The request id.
    pub request_id: &'a str,
    /// When the request arrived.
    pub started: Instant,
}

/// Forwards `req` to the dedicated app's Service and returns its response (or the
/// failure's), without the request id header (the caller adds it).
pub(crate) async fn forward<B>(
    rt: &Runtime,
    req: Request<B>,
    conn: ConnInfo,
    f: Forward<'_>,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let target = &f.matched.target;
    // The releases' largest limits: the Service picks the release itself and enforces
    // that release's own limits.
    let max_body = target
        .releases
        .iter()
        .map(|(_, s)| s.limits.max_body)
        .max()
        .unwrap_or_default();
    let timeout = target
        .releases
        .iter()
        .map(|(_, s)| s.limits.timeout)
        .max()
        .unwrap_or_default()
        + COLD_START_ALLOWANCE;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let done = |outcome: Outcome, status: StatusCode, detail: Option<String>| {
        rt.metrics
            .forwards
            .get_or_create(&ForwardLabels {
                tenant: target.tenant().to_string(),
                app: target.app.clone(),
                outcome: outcome.as_str().into(),
            })
            .inc();
        let Some(detail) = detail else { return };
        // The Service never saw this request: count it, and log it, here.
        let elapsed = f.started.elapsed();
        tracing::warn!(
            target: "platform::request",
            app = %target.app,
            request_id = f.request_id,
            service = %f.to,
            status = status.as_u16(),
            error = %detail,
            "request for a dedicated app not forwarded"
        );
        rt.metrics
            .requests
            .get_or_create(&RequestLabels {
                tenant: target.tenant().to_string(),
                app: target.app.clone(),
                release: "-".into(),
                status: status.as_u16(),
            })
            .inc();
        rt.traffic.record(
            target.tenant(),
            &target.app,
            status.as_u16(),
            elapsed,
            false,
        );
        rt.logs.publish(LogEvent {
            ts_ms: LogEvent::now_ms(),
            tenant: target.tenant().to_string(),
            app: target.app.clone(),
            request_id: f.request_id.to_string(),
            stream: LogStream::Request,
            status: Some(status.as_u16()),
            line: format!(
                "{method} {path} {} in {:.2} ms (dedicated Service {}: {})",
                status.as_u16(),
                elapsed.as_secs_f64() * 1000.0,
                f.to,
                outcome_text(outcome),
            ),
        });
    };

    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max_body
    {
        done(
            Outcome::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(format!("declared body of {len} bytes")),
        );
        return crate::host::too_large(max_body);
    }

    let (mut parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = match Uri::builder()
        .scheme("http")
        .authority(f.to.authority())
        .path_and_query(path_and_query)
        .build()
    {
        Ok(u) => u,
        Err(e) => {
            done(
                Outcome::Unreachable,
                StatusCode::BAD_GATEWAY,
                Some(e.to_string()),
            );
            return crate::host::plain(
                StatusCode::BAD_GATEWAY,
                "this app's dedicated Service address is not usable",
            );
        }
    };
    parts.version = Version::HTTP_11;
    forwarded_headers(
        &mut parts.headers,
        f.to,
        f.original_host.as_ref(),
        f.request_id,
        conn.remote.ip(),
    );
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let body: ForwardBody = Limited::new(body, limit).boxed_unsync();
    let sending = rt
        .forwarder
        .client
        .request(Request::from_parts(parts, body));

    match tokio::time::timeout(timeout, sending).await {
        Ok(Ok(resp)) => {
            done(Outcome::Ok, resp.status(), None);
            tracing::debug!(app = %target.app, request_id = f.request_id, service = %f.to, status = resp.status().as_u16(), "request forwarded to the dedicated Service");
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.map_err(BoxError::from).boxed())
        }
        Ok(Err(e)) => {
            let outcome = classify(&e);
            let (status, message) = match outcome {
                Outcome::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, None),
                Outcome::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, None),
                _ => (
                    StatusCode::BAD_GATEWAY,
                    Some("this app's dedicated Service is unreachable"),
                ),
            };
            done(outcome, status, Some(chain(&e)));
            match message {
                Some(m) => crate::host::plain(status, m),
                None if outcome == Outcome::TooLarge => crate::host::too_large(max_body),
                None => crate::host::body_timeout("the request body stalled"),
            }
        }
        Err(_) => {
            done(
                Outcome::Timeout,
                StatusCode::GATEWAY_TIMEOUT,
                Some(format!("no response within {} s", timeout.as_secs())),
            );
            crate::host::plain(
                StatusCode::GATEWAY_TIMEOUT,
                "this app's dedicated Service did not answer in time",
            )
        }
    }
}

fn outcome_text(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "answered",
        Outcome::Unreachable => "unreachable",
        Outcome::Timeout => "no answer in time",
        Outcome::TooLarge => "request body over the limit",
        Outcome::BodyTimeout => "request body stalled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_plain_http_authorities() {
        let a =
            ServiceAddress::parse("http://fn-orders-1a2b3c4d.platform.svc.cluster.local").unwrap();
        assert_eq!(
            a.authority(),
            "fn-orders-1a2b3c4d.platform.svc.cluster.local"
        );
        assert_eq!(
            ServiceAddress::parse("http://127.0.0.1:9000/")
                .unwrap()
                .authority(),
            "127.0.0.1:9000"
        );
        assert_eq!(
            ServiceAddress::parse("http://[::1]:9000")
                .unwrap()
                .authority(),
            "[::1]:9000"
        );
        for bad in [
            "",
            "fn-orders.platform",
            "https://fn.platform.svc.cluster.local",
            "http://user:pw@fn.platform",
            "http://fn.platform/shop",
            "http://fn.platform/?x=1",
            "ftp://fn.platform",
        ] {
            assert!(ServiceAddress::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn forwarded_headers_replace_host_and_a_client_forged_forwarded_host() {
        let to = ServiceAddress::parse("http://127.0.0.1:9000").unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("shop.example.com"));
        h.insert(X_FORWARDED_HOST, HeaderValue::from_static("victim.example"));
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-secret, close"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("platform_session=s; mine=1"),
        );
        h.insert("x-request-id", HeaderValue::from_static("client-chosen"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        let original = HeaderValue::from_static("shop.example.com");
        forwarded_headers(
            &mut h,
            &to,
            Some(&original),
            "rid-1",
            "198.51.100.7".parse().unwrap(),
        );
        assert_eq!(h[header::HOST], "127.0.0.1:9000");
        assert_eq!(h[X_FORWARDED_HOST], "shop.example.com");
        assert_eq!(h.get_all(X_FORWARDED_HOST).iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.51.100.7");
        assert_eq!(h["x-request-id"], "rid-1");
        assert_eq!(h["x-keep"], "yes");
        assert_eq!(h[header::COOKIE], "mine=1");
        for gone in ["connection", "x-secret", "te"] {
            assert!(!h.contains_key(gone), "{gone} forwarded");
        }

        // Without a host to pass on, a client's X-Forwarded-Host is still dropped.
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_HOST, HeaderValue::from_static("victim.example"));
        forwarded_headers(&mut h, &to, None, "rid-2", "::1".parse().unwrap());
        assert!(!h.contains_key(X_FORWARDED_HOST));
        assert_eq!(h["x-forwarded-for"], "::1");
    }
}
