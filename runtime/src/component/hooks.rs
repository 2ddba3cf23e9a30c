//! How a component's outgoing `wasi:http` requests leave the host: with the same policy as
//! SDK guests ([`crate::sdk::outbound`]).
//!
//! 1. The release's `allowed_outbound_hosts` ([`check_url`]): anything else is refused
//!    before any lookup or connection.
//! 2. The operator's address policy, applied by the runtime's one [`OutboundClient`] to
//!    the address actually connected to (private ranges, the platform's own listeners).
//!
//! A refusal reaches the guest as the `wasi:http` error code `HTTP-request-denied` (not a
//! trap), and the reason goes to the app's log with the request id. The request body is
//! read whole within the release's `max_body` before sending (as for the SDK); the
//! response body streams back to the guest. Each exchange is bounded by the guest
//! request's own deadline.

use std::sync::Arc;
use std::time::Instant;

use futures::TryStreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, Limited, StreamBody};
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

use crate::app::AppSpec;
use crate::logs::{LogBus, LogEvent, LogStream};
use crate::sdk::outbound::{OutboundClient, OutboundError, OutboundRequest, check_url};

/// The host's `wasi:http` hooks for one component request.
#[derive(Clone)]
pub struct PlatformHooks {
    client: Option<Arc<OutboundClient>>,
    spec: Arc<AppSpec>,
    logs: Arc<LogBus>,
    request_id: String,
    deadline: Instant,
}

impl PlatformHooks {
    /// Hooks for a request of `spec` that must end by `deadline`; without a `client`
    /// every outgoing request is refused.
    pub fn new(
        client: Option<Arc<OutboundClient>>,
        spec: Arc<AppSpec>,
        logs: Arc<LogBus>,
        request_id: String,
        deadline: Instant,
    ) -> Self {
        PlatformHooks {
            client,
            spec,
            logs,
            request_id,
            deadline,
        }
    }

    /// Moves the hooks to another request of the same release (a reused instance): the
    /// request id its log lines carry and the deadline its exchanges end by.
    pub fn bind(&mut self, request_id: String, deadline: Instant) {
        self.request_id = request_id;
        self.deadline = deadline;
    }

    /// Puts the reason for a refused or failed request in the app's log.
    fn log(&self, line: String) {
        tracing::info!(target: "platform::guest", app = %self.spec.app, request_id = %self.request_id, "{line}");
        self.logs.publish(LogEvent {
            ts_ms: LogEvent::now_ms(),
            tenant: self.spec.tenant.clone(),
            app: self.spec.app.clone(),
            request_id: self.request_id.clone(),
            stream: LogStream::Stderr,
            status: None,
            line,
        });
    }

    async fn send(
        self,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let Some(client) = self.client.clone() else {
            self.log("[platform] outbound HTTP is not configured on this host".into());
            return Err(Error::HttpRequestDenied);
        };
        let (parts, body) = request.into_parts();
        let url =
            url::Url::parse(&parts.uri.to_string()).map_err(|_| Error::HttpRequestUriInvalid)?;
        let target = match check_url(&self.spec.allowed_outbound_hosts, &url) {
            Ok(t) => t,
            Err(e) => {
                self.log(format!("[platform] outbound request to {url}: {e}"));
                return Err(to_wasi_error(&e));
            }
        };
        let max_body = self.spec.limits.max_body;
        let body = Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX))
            .collect()
            .await
            .map_err(|_| Error::HttpRequestBodySize(Some(max_body)))?
            .to_bytes();
        let mut headers = parts.headers;
        headers.remove(http::header::HOST);
        let req = OutboundRequest {
            method: parts.method,
            url: url.clone(),
            headers,
            body,
            timeout: self.deadline.saturating_duration_since(Instant::now()),
        };
        let resp = match client.send(target, req).await {
            Ok(r) => r,
            Err(e) => {
                self.log(format!("[platform] outbound request to {url}: {e}"));
                return Err(to_wasi_error(&e));
            }
        };
        let mut out = http::Response::builder().status(resp.status());
        if let Some(h) = out.headers_mut() {
            *h = resp.headers().clone();
        }
        let stream = resp
            .bytes_stream()
            .map_ok(Frame::data)
            .map_err(|_| Error::ConnectionTerminated);
        out.body(StreamBody::new(stream).boxed_unsync())
            .map_err(|e| Error::InternalError(Some(e.to_string())))
    }
}

/// What the guest sees for each outbound failure.
fn to_wasi_error(e: &OutboundError) -> Error {
    match e {
        OutboundError::BadUrl(_) => Error::HttpRequestUriInvalid,
        OutboundError::NotAllowed(_) | OutboundError::Refused(_) | OutboundError::RefusedAll(_) => {
            Error::HttpRequestDenied
        }
        OutboundError::Resolve(m) => Error::DnsError {
            rcode: Some(m.chars().take(200).collect()),
            info_code: None,
        },
        OutboundError::Timeout(_) => Error::ConnectionTimeout,
        OutboundError::Failed(_) => Error::ConnectionRefused,
        OutboundError::Client(m) => Error::InternalError(Some(m.clone())),
    }
}

/// The future `send_request` answers with (its shape is `wasmtime-wasi-http`'s).
type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for PlatformHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let hooks = self.clone();
        Box::new(async move {
            let resp = hooks.send(request).await?;
            // reqwest drives its connections itself: nothing more to await.
            let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async { Ok(()) });
            Ok((resp, io))
        })
    }
}
