//! Body adapters between hyper and `wasmtime-wasi-http`.
//!
//! - [`incoming`]: the client's body for the guest, cut at the release's `max_body`.
//! - [`OutgoingBody`]: the guest's streamed response for hyper, cut at `max_response`,
//!   and `Sync` (the runtime's response body type is), without locking per frame.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::body_timeout::BodyIdle;
use crate::host::BoxError;

/// The request body as the guest reads it: at most `max_body` bytes, then an error the
/// guest sees as `HTTP-request-body-size`.
pub fn incoming<B>(
    body: B,
    max_body: u64,
) -> impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX)).map_err(move |e| {
        if e.downcast_ref::<LengthLimitError>().is_some() {
            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max_body))
        } else if e.downcast_ref::<BodyIdle>().is_some() {
            wasmtime_wasi_http::Error::ConnectionReadTimeout
        } else {
            wasmtime_wasi_http::Error::ConnectionTerminated
        }
    })
}

/// The body a component's response streams through.
pub struct OutgoingBody {
    // Never locked: `get_mut` reaches the body through `&mut self`. The mutex only makes
    // the `Send` body `Sync`.
    inner: std::sync::Mutex<HyperOutgoingBody>,
    sent: u64,
    max: u64,
}

impl OutgoingBody {
    /// Wraps the guest's body, allowing at most `max` bytes.
    pub fn new(body: HyperOutgoingBody, max: u64) -> Self {
        OutgoingBody {
            inner: std::sync::Mutex::new(body),
            sent: 0,
            max,
        }
    }
}

/// The guest's response went past the release's `max_response`.
#[derive(Debug, thiserror::Error)]
#[error("the function's response is larger than the limit of {0} bytes; cut")]
pub struct ResponseTooLarge(pub u64);

impl Body for OutgoingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.sent > this.max {
            return Poll::Ready(None);
        }
        let inner = this.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent = this.sent.saturating_add(data.len() as u64);
                    if this.sent > this.max {
                        return Poll::Ready(Some(Err(Box::new(ResponseTooLarge(this.max)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.inner.try_lock() {
            Ok(b) => b.is_end_stream(),
            Err(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.inner.try_lock() {
            Ok(b) => b.size_hint(),
            Err(_) => SizeHint::default(),
        }
    }
}
