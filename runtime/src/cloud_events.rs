//! CloudEvents in over HTTP: Knative Eventing (or anyone) POSTs events to
//! [`EVENTS_PATH`] on the traffic listener, and the event's `type` picks the app.
//!
//! Both content modes of the CloudEvents HTTP binding (v1.0) are accepted:
//! - binary: attributes in `ce-*` headers, the data as the body;
//! - structured: an `application/cloudevents+json` body holding attributes and data.
//!
//! The app always receives the binary form, a POST to its trigger's path: Go handlers read
//! `Ce-Type`, `Ce-Id`... headers and the data as a plain body, whichever mode the sender
//! used. Its response goes back to the sender as is (a binary-mode reply event, for
//! Knative, when it sets `Ce-*` headers). Batched mode is refused with 415.

use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Limited};

use crate::host::{BoxError, ConnInfo, ResponseBody, Runtime, plain};

/// Where events are posted; no route may claim it (control reserves `/.platform`).
pub const EVENTS_PATH: &str = "/.platform/events";

/// Largest structured-mode event read before the app (and its own body limit) is known.
pub const MAX_STRUCTURED_EVENT: usize = 16 << 20;

/// The attributes every CloudEvent must carry.
const REQUIRED: [&str; 4] = ["specversion", "id", "source", "type"];
/// The same, as binary-mode headers.
const REQUIRED_HEADERS: [&str; 4] = ["ce-specversion", "ce-id", "ce-source", "ce-type"];

/// Why an event was refused before reaching an app.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CloudEventError {
    /// Required attributes are missing.
    #[error("not a CloudEvent: missing {0}")]
    Missing(String),
    /// A spec version other than 1.0.
    #[error("CloudEvents specversion {0:?} is not supported (use 1.0)")]
    Version(String),
    /// Batched mode.
    #[error("batched CloudEvents are not supported: send one event per request")]
    Batch,
    /// The structured body is not a JSON object, or `data_base64` is not base64.
    #[error("malformed structured CloudEvent: {0}")]
    Malformed(String),
    /// The structured event is larger than [`MAX_STRUCTURED_EVENT`].
    #[error("the event is larger than {MAX_STRUCTURED_EVENT} bytes")]
    TooLarge,
    /// The body could not be read.
    #[error("the event body could not be read")]
    Body,
}

impl CloudEventError {
    fn status(&self) -> StatusCode {
        match self {
            CloudEventError::Batch => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            CloudEventError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// How the event arrived, told by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentMode {
    /// `ce-*` headers.
    Binary,
    /// `application/cloudevents+json`.
    Structured,
    /// `application/cloudevents-batch+json`.
    Batch,
}

/// The content mode of a request.
pub fn content_mode(headers: &HeaderMap) -> ContentMode {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if ct.starts_with("application/cloudevents-batch") {
        ContentMode::Batch
    } else if ct.starts_with("application/cloudevents") {
        ContentMode::Structured
    } else {
        ContentMode::Binary
    }
}

/// Checks a binary-mode event's headers and returns its type.
pub fn binary_event_type(headers: &HeaderMap) -> Result<String, CloudEventError> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let missing: Vec<&str> = REQUIRED_HEADERS
        .iter()
        .copied()
        .filter(|h| get(h).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(CloudEventError::Missing(missing.join(", ")));
    }
    let version = get("ce-specversion").unwrap_or_default();
    if version != "1.0" {
        return Err(CloudEventError::Version(version.to_string()));
    }
    Ok(get("ce-type").unwrap_or_default().to_string())
}

/// A structured-mode event turned into binary mode.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryEvent {
    /// The `type` attribute.
    pub event_type: String,
    /// `ce-*` headers and `content-type`.
    pub headers: HeaderMap,
    /// The data.
    pub body: Bytes,
}

/// Converts a structured-mode (JSON) event to binary mode, as the HTTP binding defines:
/// every attribute but `data`, `data_base64` and `datacontenttype` becomes a `ce-` header
/// (percent-encoded where needed), `datacontenttype` the `content-type`.
pub fn structured_to_binary(json: &[u8]) -> Result<BinaryEvent, CloudEventError> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| CloudEventError::Malformed(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(CloudEventError::Malformed(
            "the body is not a JSON object".into(),
        ));
    };
    let attr = |name: &str| match map.get(name) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    };
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|a| attr(a).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(CloudEventError::Missing(missing.join(", ")));
    }
    let version = attr("specversion").unwrap_or_default();
    if version != "1.0" {
        return Err(CloudEventError::Version(version));
    }
    let mut headers = HeaderMap::new();
    for (name, v) in &map {
        if matches!(name.as_str(), "data" | "data_base64" | "datacontenttype") {
            continue;
        }
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => continue,
            other => other.to_string(),
        };
        let (Ok(hn), Ok(hv)) = (
            HeaderName::from_bytes(format!("ce-{}", name.to_ascii_lowercase()).as_bytes()),
            HeaderValue::from_str(&percent_encode_header(&text)),
        ) else {
            return Err(CloudEventError::Malformed(format!(
                "attribute {name:?} cannot be carried in a header"
            )));
        };
        headers.insert(hn, hv);
    }
    let content_type = attr("datacontenttype");
    let body = match (map.get("data_base64"), map.get("data")) {
        (Some(serde_json::Value::String(b64)), _) => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| CloudEventError::Malformed(format!("data_base64: {e}")))?,
        ),
        (Some(_), _) => {
            return Err(CloudEventError::Malformed(
                "data_base64 must be a string".into(),
            ));
        }
        (None, None) => Bytes::new(),
        (None, Some(data)) => {
            let is_json = content_type.as_deref().is_none_or(is_json_media_type);
            match data {
                serde_json::Value::String(s) if !is_json => Bytes::from(s.clone()),
                other => Bytes::from(other.to_string()),
            }
        }
    };
    let has_data = map.contains_key("data") || map.contains_key("data_base64");
    let content_type = content_type.or_else(|| {
        (has_data && !map.contains_key("data_base64")).then(|| "application/json".to_string())
    });
    if let Some(ct) = content_type
        && let Ok(v) = HeaderValue::from_str(&ct)
    {
        headers.insert(header::CONTENT_TYPE, v);
    }
    Ok(BinaryEvent {
        event_type: attr("type").unwrap_or_default(),
        headers,
        body,
    })
}

fn is_json_media_type(ct: &str) -> bool {
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

/// Percent-encodes what a header value cannot hold (the HTTP binding's rule for `ce-`
/// values): controls, space is kept, `"` and `%`, and every non-ASCII byte.
fn percent_encode_header(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'"').add(b'%');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

impl Runtime {
    /// Serves a POST to [`EVENTS_PATH`]: finds the app by event type and hands it the event
    /// in binary mode.
    pub(crate) async fn handle_cloud_event<B>(
        &self,
        req: Request<B>,
        conn: ConnInfo,
        request_id: String,
        started: Instant,
    ) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let refuse = |status: StatusCode, msg: &str| {
            let mut resp = plain(status, msg);
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert(crate::host::REQUEST_ID, v);
            }
            resp
        };
        if req.method() != Method::POST {
            let mut resp = refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "CloudEvents are delivered with POST",
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return resp;
        }
        let table = self.routes.load();
        match content_mode(req.headers()) {
            ContentMode::Batch => {
                let e = CloudEventError::Batch;
                refuse(e.status(), &e.to_string())
            }
            ContentMode::Binary => {
                let event_type = match binary_event_type(req.headers()) {
                    Ok(t) => t,
                    Err(e) => return refuse(e.status(), &e.to_string()),
                };
                let Some(trigger) = table.event_target(&event_type) else {
                    return refuse(
                        StatusCode::NOT_FOUND,
                        &format!("no app takes CloudEvents of type {event_type:?}"),
                    );
                };
                let (mut parts, body) = req.into_parts();
                match trigger.path.parse() {
                    Ok(uri) => parts.uri = uri,
                    Err(_) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, "bad trigger path"),
                }
                let matched = trigger.route_match();
                self.dispatch(
                    Request::from_parts(parts, body),
                    conn,
                    matched,
                    request_id,
                    started,
                )
                .await
            }
            ContentMode::Structured => {
                let (parts, body) = req.into_parts();
                let bytes = match Limited::new(body, MAX_STRUCTURED_EVENT).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => {
                        let e = if e
                            .downcast_ref::<http_body_util::LengthLimitError>()
                            .is_some()
                        {
                            CloudEventError::TooLarge
                        } else {
                            CloudEventError::Body
                        };
                        return refuse(e.status(), &e.to_string());
                    }
                };
                let event = match structured_to_binary(&bytes) {
                    Ok(ev) => ev,
                    Err(e) => return refuse(e.status(), &e.to_string()),
                };
                let Some(trigger) = table.event_target(&event.event_type) else {
                    return refuse(
                        StatusCode::NOT_FOUND,
                        &format!("no app takes CloudEvents of type {:?}", event.event_type),
                    );
                };
                let mut builder = Request::builder()
                    .method(Method::POST)
                    .uri(trigger.path.as_str())
                    .version(parts.version);
                if let Some(h) = builder.headers_mut() {
                    for (name, value) in &parts.headers {
                        // The sender's own headers (host, tracing, auth) stay; the
                        // structured envelope's content type and length do not.
                        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                            h.append(name, value.clone());
                        }
                    }
                    for (name, value) in &event.headers {
                        h.insert(name, value.clone());
                    }
                    h.insert(header::CONTENT_LENGTH, HeaderValue::from(event.body.len()));
                }
                let Ok(binary) = builder.body(crate::host::full(event.body)) else {
                    return refuse(StatusCode::INTERNAL_SERVER_ERROR, "bad trigger path");
                };
                let matched = trigger.route_match();
                self.dispatch_built(binary, conn, matched, request_id, started)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_events_become_binary() {
        let ev = structured_to_binary(
            br#"{"specversion":"1.0","id":"1","source":"/shop","type":"order.created",
                "subject":"caf\u00e9 \"x\"","comexampleext":7,
                "datacontenttype":"application/json","data":{"n":1}}"#,
        )
        .unwrap();
        assert_eq!(ev.event_type, "order.created");
        assert_eq!(ev.headers["ce-id"], "1");
        assert_eq!(ev.headers["ce-comexampleext"], "7");
        assert_eq!(ev.headers["ce-subject"], "caf%C3%A9 %22x%22");
        assert_eq!(ev.headers["content-type"], "application/json");
        assert_eq!(&ev.body[..], br#"{"n":1}"#);

        let text = structured_to_binary(
            br#"{"specversion":"1.0","id":"2","source":"s","type":"t","datacontenttype":"text/plain","data":"hello"}"#,
        )
        .unwrap();
        assert_eq!(&text.body[..], b"hello");

        let b64 = structured_to_binary(
            br#"{"specversion":"1.0","id":"3","source":"s","type":"t","datacontenttype":"application/octet-stream","data_base64":"AAEC"}"#,
        )
        .unwrap();
        assert_eq!(&b64.body[..], &[0, 1, 2]);
        assert_eq!(b64.headers["content-type"], "application/octet-stream");
    }

    #[test]
    fn bad_events_are_refused_with_reasons() {
        assert_eq!(
            structured_to_binary(br#"{"specversion":"1.0","type":"t"}"#),
            Err(CloudEventError::Missing("id, source".into()))
        );
        assert_eq!(
            structured_to_binary(br#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#),
            Err(CloudEventError::Version("0.3".into()))
        );
        assert!(matches!(
            structured_to_binary(b"[1]"),
            Err(CloudEventError::Malformed(_))
        ));
        assert!(matches!(
            structured_to_binary(
                br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"!!"}"#
            ),
            Err(CloudEventError::Malformed(_))
        ));
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", HeaderValue::from_static("1.0"));
        h.insert("ce-type", HeaderValue::from_static("t"));
        assert_eq!(
            binary_event_type(&h),
            Err(CloudEventError::Missing("ce-id, ce-source".into()))
        );
        h.insert("ce-id", HeaderValue::from_static("1"));
        h.insert("ce-source", HeaderValue::from_static("s"));
        assert_eq!(binary_event_type(&h).unwrap(), "t");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents-batch+json"),
        );
        assert_eq!(content_mode(&h), ContentMode::Batch);
    }
}
