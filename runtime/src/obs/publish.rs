//! [`ObsPublisher`]: sends a runtime's log lines and traffic counts to NATS in batches.
//!
//! Log lines are read from the runtime's [`LogBus`] through a broadcast subscription: the
//! bus's bounded channel is the buffer. When NATS is slow or away, the oldest unsent lines
//! are overwritten there and counted (`dropped` in the next batch, [`PublishStats`]);
//! serving only ever does a non-blocking channel send, never waits for NATS. Lines go out
//! every [`PublishConfig::flush_every`], or sooner once a batch holds
//! [`PublishConfig::max_events`] lines or about [`PublishConfig::max_bytes`].
//!
//! Traffic is not sent per request: [`TrafficStats`] sums what it records per app
//! (requests, 5xx, cold starts, the latency histogram) and the publisher takes those sums
//! every tick. The control plane keeps the same histogram per bucket, so merging sums loses
//! nothing its charts show, and the message rate stays one per tick whatever the request
//! rate.
//!
//! The publisher uses its own NATS connection, so telemetry volume never queues ahead of
//! the feed events that change routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::wire;
use crate::Runtime;
use crate::logs::{LogBus, LogEvent};
use crate::traffic::TrafficStats;

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum ObsPublishError {
    /// The NATS URL or options were refused.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The server.
        url: String,
        /// What async-nats said.
        #[source]
        source: async_nats::ConnectError,
    },
}

/// How batches are made and where they go.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Subject prefix (see [`wire::logs_subject`]).
    pub prefix: String,
    /// This runtime's name in batches.
    pub source: String,
    /// Longest time a line or a request count waits before it is sent.
    pub flush_every: Duration,
    /// Most lines per log batch.
    pub max_events: usize,
    /// About the largest log batch, in bytes (well under NATS's 1 MiB default payload cap).
    pub max_bytes: usize,
    /// A batch NATS has not taken within this long is dropped.
    pub publish_timeout: Duration,
    /// How often the runtime says it is alive ([`wire::RuntimeHeartbeat`]); the first is
    /// sent at start.
    pub heartbeat_every: Duration,
    /// The version heartbeats report.
    pub version: String,
    /// The revision heartbeats report, kept current by whoever installs route tables
    /// ([`Runtime::served_revision`] when started by [`ObsPublisher::connect`]).
    pub served_revision: Arc<AtomicU64>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            prefix: wire::DEFAULT_PREFIX.to_string(),
            source: default_source(),
            flush_every: Duration::from_millis(250),
            max_events: 500,
            max_bytes: 256 * 1024,
            publish_timeout: Duration::from_secs(2),
            heartbeat_every: Duration::from_secs(10),
            version: env!("CARGO_PKG_VERSION").to_string(),
            served_revision: Arc::default(),
        }
    }
}

/// `$HOSTNAME` (the pod's name under Kubernetes) and the process id.
pub fn default_source() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "runtime".to_string());
    format!("{host}:{}", std::process::id())
}

/// What the publisher did so far.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Log batches handed to NATS.
    pub log_batches: AtomicU64,
    /// Traffic batches handed to NATS.
    pub traffic_batches: AtomicU64,
    /// Heartbeats handed to NATS.
    pub heartbeats: AtomicU64,
    /// Log lines dropped: overwritten while NATS was slow, or in a batch NATS refused.
    pub dropped_events: AtomicU64,
    /// Batches NATS refused or did not take in time (their content is lost).
    pub failed_batches: AtomicU64,
}

/// A running publisher; [`ObsPublisher::close`] sends what is left and stops it.
pub struct ObsPublisher {
    stats: Arc<PublishStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for ObsPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObsPublisher")
            .field("stats", &self.stats)
            .finish()
    }
}

impl ObsPublisher {
    /// Connects to NATS at `url` (retrying in the background while it is away) and starts
    /// publishing `runtime`'s logs and traffic. `options` carry the role's credentials.
    pub async fn connect(
        url: &str,
        options: async_nats::ConnectOptions,
        runtime: &Runtime,
        mut config: PublishConfig,
    ) -> Result<Self, ObsPublishError> {
        config.served_revision = runtime.served_revision.clone();
        let client = options
            .name("platform-runtime-telemetry")
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|source| ObsPublishError::Connect {
                url: url.to_string(),
                source,
            })?;
        Ok(Self::start(
            client,
            &runtime.logs,
            runtime.traffic.clone(),
            config,
        ))
    }

    /// Starts publishing what `logs` and `traffic` see from now on through `client`.
    pub fn start(
        client: async_nats::Client,
        logs: &LogBus,
        traffic: Arc<TrafficStats>,
        config: PublishConfig,
    ) -> Self {
        let rx = logs.subscribe();
        traffic.enable_delta();
        let stats = Arc::new(PublishStats::default());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(
            Worker {
                client,
                logs_subject: wire::logs_subject(&config.prefix),
                traffic_subject: wire::traffic_subject(&config.prefix),
                runtimes_subject: wire::runtimes_subject(&config.prefix),
                started_ms: crate::logs::LogEvent::now_ms(),
                config,
                stats: stats.clone(),
                events: Vec::new(),
                bytes: 0,
                dropped: 0,
                log_seq: 0,
                traffic_seq: 0,
                failing: false,
            }
            .run(rx, traffic, stopped),
        );
        ObsPublisher {
            stats,
            stop: Some(stop),
            task,
        }
    }

    /// Counters of what was sent and dropped.
    pub fn stats(&self) -> &PublishStats {
        &self.stats
    }

    /// Sends the lines and counts not yet sent, then stops.
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for ObsPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Worker {
    client: async_nats::Client,
    logs_subject: String,
    traffic_subject: String,
    runtimes_subject: String,
    started_ms: u64,
    config: PublishConfig,
    stats: Arc<PublishStats>,
    events: Vec<Arc<LogEvent>>,
    bytes: usize,
    dropped: u64,
    log_seq: u64,
    traffic_seq: u64,
    failing: bool,
}

impl Worker {
    async fn run(
        mut self,
        mut rx: broadcast::Receiver<Arc<LogEvent>>,
        traffic: Arc<TrafficStats>,
        mut stopped: oneshot::Receiver<()>,
    ) {
        let mut tick = tokio::time::interval(self.config.flush_every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                _ = heartbeat.tick() => self.heartbeat().await,
                _ = tick.tick() => {
                    self.flush_logs().await;
                    self.flush_traffic(&traffic).await;
                }
                r = rx.recv() => match r {
                    Ok(e) => self.push(e).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => self.lost(n),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        loop {
            match rx.try_recv() {
                Ok(e) => self.push(e).await,
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.lost(n),
                Err(_) => break,
            }
        }
        self.flush_logs().await;
        self.flush_traffic(&traffic).await;
        let _ = tokio::time::timeout(self.config.publish_timeout, self.client.flush()).await;
    }

    async fn push(&mut self, e: Arc<LogEvent>) {
        self.bytes += e.line.len() + e.tenant.len() + e.app.len() + e.request_id.len() + 100;
        self.events.push(e);
        if self.events.len() >= self.config.max_events || self.bytes >= self.config.max_bytes {
            self.flush_logs().await;
        }
    }

    fn lost(&mut self, n: u64) {
        self.dropped += n;
        self.stats.dropped_events.fetch_add(n, Ordering::Relaxed);
    }

    async fn flush_logs(&mut self) {
        if self.events.is_empty() && self.dropped == 0 {
            return;
        }
        self.log_seq += 1;
        let events = std::mem::take(&mut self.events);
        self.bytes = 0;
        let payload =
            match wire::encode_logs(&self.config.source, self.log_seq, self.dropped, &events) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot encode a log batch");
                    self.lost(events.len() as u64);
                    return;
                }
            };
        if self.send(self.logs_subject.clone(), payload).await {
            self.dropped = 0;
            self.stats.log_batches.fetch_add(1, Ordering::Relaxed);
        } else {
            self.lost(events.len() as u64);
        }
    }

    async fn flush_traffic(&mut self, traffic: &TrafficStats) {
        let apps = traffic.take_delta();
        if apps.is_empty() {
            return;
        }
        self.traffic_seq += 1;
        let batch = wire::TrafficBatch {
            source: self.config.source.clone(),
            seq: self.traffic_seq,
            apps,
        };
        let payload = match serde_json::to_vec(&batch) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a traffic batch");
                return;
            }
        };
        if self.send(self.traffic_subject.clone(), payload).await {
            self.stats.traffic_batches.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn heartbeat(&mut self) {
        let beat = wire::RuntimeHeartbeat {
            source: self.config.source.clone(),
            version: self.config.version.clone(),
            revision: self.config.served_revision.load(Ordering::Relaxed),
            started_ms: self.started_ms,
        };
        let payload = match serde_json::to_vec(&beat) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a heartbeat");
                return;
            }
        };
        if self.send(self.runtimes_subject.clone(), payload).await {
            self.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands one message to NATS; false (and counted) if it was refused or not taken in time.
    async fn send(&mut self, subject: String, payload: Vec<u8>) -> bool {
        let sent = tokio::time::timeout(
            self.config.publish_timeout,
            self.client.publish(subject, payload.into()),
        )
        .await;
        let error = match sent {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("NATS did not take it in time".to_string()),
        };
        match (error, self.failing) {
            (None, true) => {
                self.failing = false;
                tracing::info!("telemetry reaches NATS again");
            }
            (Some(e), false) => {
                self.failing = true;
                tracing::warn!(error = %e, "telemetry batches are being dropped");
            }
            _ => {}
        }
        if self.failing {
            self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        }
        !self.failing
    }
}
