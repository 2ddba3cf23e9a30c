//! `EventBus`: how serving changes reach runtimes and uploads reach workers.
//!
//! In one process (`platform up`) it is a tokio broadcast channel; in a cluster it is NATS:
//! feed events on `platform.feed.v1` (binary protobuf `FeedEvent`), upload notices on
//! `platform.modules.v1`. Events are hints on top of a consistent snapshot: a runtime that
//! sees a revision gap, reconnects, or misses everything while NATS is down resyncs from
//! `FeedService/GetSnapshot`, so a lost event costs latency, never correctness.

use futures::StreamExt;
use futures::stream::BoxStream;
use platform_proto::v1::FeedEvent;
use prost::Message;
use tokio::sync::broadcast;

/// NATS subject of feed events.
pub const FEED_SUBJECT: &str = "platform.feed.v1";
/// NATS subject of "a module was uploaded" notices (payload: the digest).
pub const MODULES_SUBJECT: &str = "platform.modules.v1";

/// The bus.
#[derive(Clone)]
pub enum EventBus {
    /// Everything in this process.
    InProcess {
        /// Feed events.
        feed: broadcast::Sender<FeedEvent>,
        /// Module upload notices.
        modules: broadcast::Sender<String>,
    },
    /// A NATS server.
    Nats(async_nats::Client),
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventBus::InProcess { .. } => f.write_str("EventBus::InProcess"),
            EventBus::Nats(_) => f.write_str("EventBus::Nats"),
        }
    }
}

impl EventBus {
    /// An in-process bus.
    pub fn in_process() -> Self {
        EventBus::InProcess {
            feed: broadcast::channel(1024).0,
            modules: broadcast::channel(256).0,
        }
    }

    /// Connects to NATS (retrying in the background if the server is not up yet), with
    /// the credentials in `options`. `reconnected` is notified on every (re)connection,
    /// when events may have been missed.
    pub async fn nats(
        url: &str,
        options: async_nats::ConnectOptions,
        name: &str,
        reconnected: Option<std::sync::Arc<tokio::sync::Notify>>,
    ) -> Result<Self, async_nats::ConnectError> {
        let client = options
            .name(name)
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let reconnected = reconnected.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("connected to NATS");
                            if let Some(n) = reconnected {
                                n.notify_one();
                            }
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("disconnected from NATS; serving the last known state")
                        }
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            })
            .connect(url)
            .await?;
        Ok(EventBus::Nats(client))
    }

    /// Publishes a feed event (best effort: runtimes resync on gaps).
    pub async fn publish_feed(&self, event: &FeedEvent) {
        match self {
            EventBus::InProcess { feed, .. } => {
                let _ = feed.send(event.clone());
            }
            EventBus::Nats(c) => {
                // Never hold an API call hostage to NATS: while it is down, the event is
                // dropped and runtimes catch up by resyncing when it returns.
                let send = async {
                    c.publish(FEED_SUBJECT, event.encode_to_vec().into())
                        .await
                        .map_err(|e| e.to_string())?;
                    c.flush().await.map_err(|e| e.to_string())
                };
                match tokio::time::timeout(std::time::Duration::from_millis(500), send).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, revision = event.revision, "cannot publish feed event; runtimes will resync")
                    }
                    Err(_) => tracing::warn!(
                        revision = event.revision,
                        "NATS is not answering; feed event dropped, runtimes will resync"
                    ),
                }
            }
        }
    }

    /// Tells workers a module awaits compilation.
    pub async fn publish_module(&self, digest: &str) {
        match self {
            EventBus::InProcess { modules, .. } => {
                let _ = modules.send(digest.to_string());
            }
            EventBus::Nats(c) => {
                let send = c.publish(MODULES_SUBJECT, digest.to_string().into());
                match tokio::time::timeout(std::time::Duration::from_millis(500), send).await {
                    Ok(Ok(())) => {}
                    _ => tracing::warn!("cannot publish module notice; workers poll anyway"),
                }
            }
        }
    }

    /// Feed events from now on.
    pub async fn subscribe_feed(&self) -> Result<BoxStream<'static, FeedEvent>, String> {
        match self {
            EventBus::InProcess { feed, .. } => {
                let rx = feed.subscribe();
                Ok(tokio_stream_from(rx).boxed())
            }
            EventBus::Nats(c) => {
                let sub = c.subscribe(FEED_SUBJECT).await.map_err(|e| e.to_string())?;
                Ok(sub
                    .filter_map(|m| async move { FeedEvent::decode(m.payload).ok() })
                    .boxed())
            }
        }
    }

    /// Module upload notices from now on.
    pub async fn subscribe_modules(&self) -> Result<BoxStream<'static, String>, String> {
        match self {
            EventBus::InProcess { modules, .. } => {
                Ok(tokio_stream_from(modules.subscribe()).boxed())
            }
            EventBus::Nats(c) => {
                let sub = c
                    .subscribe(MODULES_SUBJECT)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(sub
                    .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
                    .boxed())
            }
        }
    }
}

/// A broadcast receiver as a stream; a lagging receiver skips ahead (the consumer notices
/// the revision gap and resyncs).
fn tokio_stream_from<T: Clone + Send + 'static>(
    rx: broadcast::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => return Some((v, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
