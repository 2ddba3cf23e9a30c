//! `IdleTimeoutBody`: a request body that fails when the client stops sending.
//!
//! A client that opens a request and then trickles (or stops sending) its body would
//! otherwise hold whatever the request holds for as long as it likes. The clock runs only
//! while someone waits for the next frame: a guest that reads its body late is not
//! penalised, a client that makes it wait longer than the idle timeout is cut off.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::host::BoxError;

/// The error a stalled body ends with.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body stalled: no data for {} s", .0.as_secs_f64())]
pub struct BodyIdle(pub Duration);

/// A body whose frames must each arrive within `idle` of being asked for.
pub struct IdleTimeoutBody<B> {
    inner: B,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    waiting: bool,
}

impl<B> IdleTimeoutBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeoutBody {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
        }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = Instant::now() + this.idle;
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdle(this.idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_and_a_late_reader_does_not() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
        let mut body =
            IdleTimeoutBody::new(StreamBody::new(Box::pin(stream)), Duration::from_secs(5));
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        // Read late: the data was already there, so no timeout.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "a");
        // Now the client stalls.
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.downcast_ref::<BodyIdle>().is_some(), "{err}");
        drop(tx);
    }
}
