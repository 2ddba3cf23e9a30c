//! The Connect protocol (unary calls) on axum: `POST /<package>.<Service>/<Method>` with a
//! JSON (`application/json`) or binary protobuf (`application/proto`) body, answered in the
//! same encoding; errors as Connect's JSON error object with the mapped HTTP status.
//!
//! So `curl -H 'Content-Type: application/json' -d '{}' .../platform.v1.AppService/ListApps`
//! works, and so do generated Connect clients.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Control;
use crate::auth::Caller;
use crate::error::{ApiError, Code};

/// Request/response encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Proto3 JSON mapping.
    Json,
    /// Binary protobuf.
    Proto,
}

impl Codec {
    /// Picks the codec from `Content-Type`.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, UnsupportedMediaType> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match ct.as_str() {
            "application/json" => Ok(Codec::Json),
            "application/proto" | "application/protobuf" | "application/x-protobuf" => {
                Ok(Codec::Proto)
            }
            other => Err(UnsupportedMediaType(other.to_string())),
        }
    }

    /// Decodes a request body.
    pub fn decode<T: prost::Message + Default + DeserializeOwned>(
        self,
        body: &[u8],
    ) -> Result<T, ApiError> {
        match self {
            Codec::Json => {
                let body = if body.is_empty() { &b"{}"[..] } else { body };
                serde_json::from_slice(body).map_err(|e| {
                    ApiError::new(
                        Code::InvalidArgument,
                        format!("the request is not valid JSON for this call: {e}"),
                    )
                })
            }
            Codec::Proto => T::decode(body).map_err(|e| {
                ApiError::new(
                    Code::InvalidArgument,
                    format!("the request is not valid protobuf: {e}"),
                )
            }),
        }
    }

    /// Encodes a response.
    pub fn encode<T: prost::Message + Serialize>(self, msg: &T) -> Response {
        match self {
            Codec::Json => match serde_json::to_vec(msg) {
                Ok(v) => (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    v,
                )
                    .into_response(),
                Err(e) => ApiError::internal("encoding response", e).into_response(),
            },
            Codec::Proto => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/proto"),
                )],
                msg.encode_to_vec(),
            )
                .into_response(),
        }
    }
}

/// A request whose `Content-Type` is neither JSON nor protobuf (HTTP 415, as Connect says).
#[derive(Debug)]
pub struct UnsupportedMediaType(pub String);

impl IntoResponse for UnsupportedMediaType {
    fn into_response(self) -> Response {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [("accept-post", "application/json, application/proto")],
            format!(
                "unsupported content type {:?}: use application/json or application/proto",
                self.0
            ),
        )
            .into_response()
    }
}

/// A unary Connect method whose handler gets the control plane, the authenticated caller
/// and the decoded request. Runtime tokens are refused before the handler runs.
pub fn unary<Req, Resp, F, Fut>(f: F) -> MethodRouter<Arc<Control>>
where
    Req: prost::Message + Default + DeserializeOwned + Send + 'static,
    Resp: prost::Message + Serialize + 'static,
    F: Fn(Arc<Control>, Caller, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    unary_for(false, f)
}

/// Like [`unary`], but runtime tokens reach the handler too (the serving feed).
pub fn unary_runtime<Req, Resp, F, Fut>(f: F) -> MethodRouter<Arc<Control>>
where
    Req: prost::Message + Default + DeserializeOwned + Send + 'static,
    Resp: prost::Message + Serialize + 'static,
    F: Fn(Arc<Control>, Caller, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    unary_for(true, f)
}

fn unary_for<Req, Resp, F, Fut>(runtime_ok: bool, f: F) -> MethodRouter<Arc<Control>>
where
    Req: prost::Message + Default + DeserializeOwned + Send + 'static,
    Resp: prost::Message + Serialize + 'static,
    F: Fn(Arc<Control>, Caller, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    post(
        move |State(ctl): State<Arc<Control>>, headers: HeaderMap, body: Bytes| {
            let f = f.clone();
            async move {
                let codec = match Codec::from_headers(&headers) {
                    Ok(c) => c,
                    Err(unsupported) => return unsupported.into_response(),
                };
                if let Some(v) = headers.get("connect-protocol-version")
                    && v.as_bytes() != b"1"
                {
                    return ApiError::new(
                        Code::InvalidArgument,
                        "unsupported connect-protocol-version; this server speaks 1",
                    )
                    .into_response();
                }
                let caller = if runtime_ok {
                    ctl.authenticate_reader(&headers).await
                } else {
                    ctl.authenticate(&headers).await
                };
                let caller = match caller {
                    Ok(c) => c,
                    Err(e) => return e.into_response(),
                };
                let req = match codec.decode::<Req>(&body) {
                    Ok(r) => r,
                    Err(e) => return e.into_response(),
                };
                match f(ctl, caller, req).await {
                    Ok(resp) => codec.encode(&resp),
                    Err(e) => e.into_response(),
                }
            }
        },
    )
}
