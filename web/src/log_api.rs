//! `LogService/TailLogs`: the apps' logs over the API, as a Connect server stream, for
//! `platform logs APP [-f]`.
//!
//! It lives beside the dashboard because both read the same source of log lines (the
//! runtime in this process, or every runtime over NATS). The request is one enveloped
//! JSON message (`application/connect+json`: a flags byte, a 4-byte big-endian length,
//! the message); the answer is a stream of enveloped `TailLogsResponse` messages ending
//! with an end-of-stream envelope (flags `0x02`) that carries an error, if any. Callers
//! authenticate with a bearer token, like every API call, and see their tenant's apps only.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use platform_control::error::ApiError;
use platform_proto::v1::{GetAppRequest, LogEntry, TailLogsRequest, TailLogsResponse};
use platform_runtime::logs::{LogEvent, LogStream};

use crate::WebState;

/// The content type of Connect streams with JSON messages.
pub const CONNECT_JSON: &str = "application/connect+json";
const END_STREAM: u8 = 0x02;

/// One enveloped message.
pub fn envelope(flags: u8, msg: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + msg.len());
    out.push(flags);
    out.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(msg);
    Bytes::from(out)
}

/// The first message of an enveloped body, or the whole body when it is plain JSON.
fn unenvelope(body: &[u8]) -> &[u8] {
    match body {
        [0, a, b, c, d, rest @ ..] => {
            let n = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            rest.get(..n).unwrap_or(rest)
        }
        _ => body,
    }
}

fn end_of_stream(err: Option<&ApiError>) -> Bytes {
    let body = match err {
        Some(e) => {
            serde_json::json!({ "error": { "code": e.code.as_str(), "message": e.message } })
        }
        None => serde_json::json!({}),
    };
    envelope(END_STREAM, body.to_string().as_bytes())
}

fn stream_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONNECT_JSON));
    resp
}

/// A stream holding only an end-of-stream error (Connect sends errors of a stream so).
fn stream_error(e: &ApiError) -> Response {
    stream_response(Body::from(end_of_stream(Some(e))))
}

/// Which lines a request wants.
struct Filter {
    tenant: String,
    app: Option<String>,
    status: String,
    since_ms: u64,
}

impl Filter {
    fn matches(&self, e: &LogEvent) -> bool {
        if e.tenant != self.tenant
            || self.app.as_deref().is_some_and(|a| a != e.app)
            || e.ts_ms < self.since_ms
        {
            return false;
        }
        let class = match e.status {
            Some(s) if s >= 500 => "5xx",
            Some(s) if s >= 400 => "4xx",
            Some(s) if s >= 300 => "3xx",
            Some(_) => "2xx",
            None => "output",
        };
        match self.status.as_str() {
            "" => true,
            "errors" => matches!(class, "4xx" | "5xx"),
            s => class == s,
        }
    }
}

fn entry(e: &LogEvent) -> LogEntry {
    LogEntry {
        time: Some(platform_control::store::timestamp(
            i64::try_from(e.ts_ms).unwrap_or(i64::MAX),
        )),
        app: e.app.clone(),
        request_id: e.request_id.clone(),
        stream: match e.stream {
            LogStream::Request => "request",
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
        .into(),
        status: e.status.map_or(0, u32::from),
        line: e.line.clone(),
    }
}

fn message(e: &LogEvent) -> Bytes {
    let msg = TailLogsResponse {
        entry: Some(entry(e)),
    };
    envelope(0, &serde_json::to_vec(&msg).unwrap_or_default())
}

/// `POST /platform.v1.LogService/TailLogs`.
pub async fn tail_logs(State(state): State<WebState>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match state.ctl.authenticate(&headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let req: TailLogsRequest = match serde_json::from_slice(unenvelope(&body)) {
        Ok(r) => r,
        Err(e) => {
            return stream_error(&ApiError::new(
                platform_control::error::Code::InvalidArgument,
                format!("the request is not valid JSON for TailLogs: {e}"),
            ));
        }
    };
    if !matches!(
        req.status.as_str(),
        "" | "2xx" | "3xx" | "4xx" | "5xx" | "errors"
    ) {
        return stream_error(&ApiError::invalid(
            "status",
            "status is one of 2xx, 3xx, 4xx, 5xx, errors",
        ));
    }
    let app = if req.app.is_empty() {
        None
    } else {
        match platform_control::api::apps::get_app(
            state.ctl.clone(),
            caller.clone(),
            GetAppRequest {
                app: req.app.clone(),
            },
        )
        .await
        {
            Ok(r) => r.app.map(|a| a.name),
            Err(e) => return stream_error(&e),
        }
    };
    let now = platform_runtime::logs::LogEvent::now_ms();
    let filter = Arc::new(Filter {
        tenant: caller.tenant.clone(),
        app,
        status: req.status.clone(),
        since_ms: match req.since_seconds {
            0 => 0,
            s => now.saturating_sub(u64::from(s) * 1000),
        },
    });
    // Subscribe before reading the recent lines, so none falls between the two.
    let live = if req.follow {
        match state.obs.subscribe_logs() {
            Some(rx) => Some(rx),
            None => {
                return stream_error(&ApiError::failed(
                    "no logs here: this control plane hears from no runtime (start it with --nats-url)",
                ));
            }
        }
    } else {
        None
    };
    let limit = match req.limit {
        0 => 100,
        n => n as usize,
    };
    let mut recent: Vec<Arc<LogEvent>> = state
        .obs
        .recent_logs(&caller.tenant, filter.app.as_deref())
        .into_iter()
        .filter(|e| filter.matches(e))
        .collect();
    recent.sort_by_key(|e| e.ts_ms);
    let skip = recent.len().saturating_sub(limit);
    let last_ts = recent.last().map_or(0, |e| e.ts_ms);
    let head = futures::stream::iter(
        recent
            .into_iter()
            .skip(skip)
            .map(|e| Ok::<_, Infallible>(message(&e)))
            .collect::<Vec<_>>(),
    );
    let Some(rx) = live else {
        let all = head.chain(futures::stream::once(async {
            Ok::<_, Infallible>(end_of_stream(None))
        }));
        return stream_response(Body::from_stream(all));
    };
    let f = filter.clone();
    let tail = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((e, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    })
    // A line may be both in the recent ones and in the stream: skip what was sent.
    .filter(move |e| {
        let keep = f.matches(e) && e.ts_ms >= last_ts;
        async move { keep }
    })
    .map(|e| Ok::<_, Infallible>(message(&e)))
    .chain(futures::stream::once(async {
        Ok::<_, Infallible>(end_of_stream(None))
    }));
    let mut resp = stream_response(Body::from_stream(head.chain(tail)));
    *resp.status_mut() = StatusCode::OK;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let e = envelope(0, b"{\"a\":1}");
        assert_eq!(&e[..5], &[0, 0, 0, 0, 7]);
        assert_eq!(unenvelope(&e), b"{\"a\":1}");
        assert_eq!(unenvelope(b"{}"), b"{}");
    }
}
