//! Body adapters between hyper and `wasmtime-wasi-http`.
//!
//! - [`incoming`]: the client's body for the guest, cut at the release's `max_body`
//!   (flagging [`BodyOverflow`] when it is).
//! - [`OutgoingBody`]: the guest's streamed response for hyper, cut at `max_response`,
//!   or as soon as the request body overflowed; and `Sync` (the runtime's response body
//!   type is), without locking per frame.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::body_timeout::BodyIdle;
use crate::host::BoxError;

/// Set once a request body went past the release's `max_body`. A body without a declared
/// length (chunked) is only found too large while the guest reads it; whoever answers
/// the client looks here: 413 before the head, a cut body after.
#[derive(Debug, Clone, Default)]
pub struct BodyOverflow(Arc<AtomicBool>);

impl BodyOverflow {
    /// True once the body went past the limit.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The request body as the guest reads it: at most `max_body` bytes, then an error the
/// guest sees as `HTTP-request-body-size`, with `overflow` set.
pub fn incoming<B>(
    body: B,
    max_body: u64,
    overflow: BodyOverflow,
) -> impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX)).map_err(move |e| {
        if e.downcast_ref::<LengthLimitError>().is_some() {
            overflow.set();
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
    /// The request's overflow flag and limit: once set, the response is cut.
    request: Option<(BodyOverflow, u64)>,
    cut: bool,
}

impl OutgoingBody {
    /// Wraps the guest's body, allowing at most `max` bytes.
    pub fn new(body: HyperOutgoingBody, max: u64) -> Self {
        OutgoingBody {
            inner: std::sync::Mutex::new(body),
            sent: 0,
            max,
            request: None,
            cut: false,
        }
    }

    /// Also cuts the response as soon as the request body overflows its `max_body`
    /// (the guest was answering a request the platform refuses).
    pub fn cut_on_overflow(mut self, overflow: BodyOverflow, max_body: u64) -> Self {
        self.request = Some((overflow, max_body));
        self
    }
}

/// The guest's response went past the release's `max_response`.
#[derive(Debug, thiserror::Error)]
#[error("the function's response is larger than the limit of {0} bytes; cut")]
pub struct ResponseTooLarge(pub u64);

/// The request body went past the release's `max_body` after the response head was sent.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than this function's limit of {0} bytes; response cut")]
pub struct RequestTooLarge(pub u64);

impl Body for OutgoingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.cut || this.sent > this.max {
            return Poll::Ready(None);
        }
        // Checked before every frame, the end included: a guest that finishes its body
        // after its read failed must not look like a complete answer.
        if let Some((overflow, limit)) = &this.request
            && overflow.is_set()
        {
            this.cut = true;
            return Poll::Ready(Some(Err(Box::new(RequestTooLarge(*limit)))));
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
            Poll::Ready(None) => match &this.request {
                Some((overflow, limit)) if overflow.is_set() => {
                    this.cut = true;
                    Poll::Ready(Some(Err(Box::new(RequestTooLarge(*limit)))))
                }
                _ => Poll::Ready(None),
            },
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.request.as_ref().is_some_and(|(o, _)| o.is_set()) && !self.cut {
            return false;
        }
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
