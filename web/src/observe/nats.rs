//! [`NatsObservability`]: the dashboard's logs and traffic in a cluster, merged from what
//! every runtime publishes on NATS (`platform_runtime::obs`).
//!
//! Log lines go into a [`LogBus`] (the recent backlog and the live stream, as in one
//! process); traffic counts into a [`TrafficStats`], so every answer covers all runtimes
//! together. Counts are placed in the bucket of their arrival, at most a flush interval
//! (250 ms) after the requests, which keeps runtimes' clock skew out of the charts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use platform_runtime::logs::{LogBus, LogEvent};
use platform_runtime::obs::wire::{self, LogBatch, RuntimeHeartbeat, TrafficBatch};
use platform_runtime::traffic::{TrafficPoint, TrafficStats, TrafficSummary};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{Observability, RuntimeSeen};

/// Why the subscriber could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsObservabilityError {
    /// The NATS URL or options were refused.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The server.
        url: String,
        /// What async-nats said.
        #[source]
        source: async_nats::ConnectError,
    },
    /// NATS refused a subscription.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What async-nats said.
        #[source]
        source: async_nats::SubscribeError,
    },
}

/// What arrived so far, for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Log batches received.
    pub log_batches: u64,
    /// Traffic batches received.
    pub traffic_batches: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Log lines the runtimes reported dropping before sending.
    pub dropped_by_runtimes: u64,
    /// Batches missing from a runtime's sequence (lost between runtime and here).
    pub lost_batches: u64,
    /// Messages that were not a batch this version understands.
    pub undecodable: u64,
}

#[derive(Default)]
struct Counters {
    log_batches: AtomicU64,
    traffic_batches: AtomicU64,
    heartbeats: AtomicU64,
    dropped_by_runtimes: AtomicU64,
    lost_batches: AtomicU64,
    undecodable: AtomicU64,
}

struct Shared {
    logs: LogBus,
    traffic: TrafficStats,
    runtimes: RuntimeRoster,
    counters: Counters,
}

/// A runtime is listed while its last heartbeat is younger than this (three missed
/// heartbeats at the default 10 s, plus slack).
pub const RUNTIME_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(35);

/// The runtimes heard from, by source, with when each was last heard.
#[derive(Default)]
struct RuntimeRoster(std::sync::Mutex<HashMap<String, (RuntimeHeartbeat, u64)>>);

impl RuntimeRoster {
    fn heard(&self, beat: RuntimeHeartbeat, now_ms: u64) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = RUNTIME_STALE_AFTER.as_millis() as u64;
        // Runtimes come and go (the name carries the pid): forget the long-gone.
        map.retain(|_, (_, seen)| now_ms.saturating_sub(*seen) < stale * 10);
        map.insert(beat.source.clone(), (beat, now_ms));
    }

    fn live(&self, now_ms: u64) -> Vec<RuntimeSeen> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = RUNTIME_STALE_AFTER.as_millis() as u64;
        let mut live: Vec<RuntimeSeen> = map
            .values()
            .filter(|(_, seen)| now_ms.saturating_sub(*seen) < stale)
            .map(|(b, seen)| RuntimeSeen {
                name: b.source.clone(),
                version: b.version.clone(),
                revision: b.revision,
                started_ms: b.started_ms,
                last_seen_ms: *seen,
            })
            .collect();
        live.sort_by(|a, b| a.name.cmp(&b.name));
        live
    }
}

/// Logs and traffic of every runtime publishing under a subject prefix.
pub struct NatsObservability {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for NatsObservability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsObservability")
            .field("stats", &self.stats())
            .finish()
    }
}

impl NatsObservability {
    /// Connects to NATS at `url` (retrying in the background while it is away) and listens
    /// under `prefix` (normally [`wire::DEFAULT_PREFIX`]). `options` carry the control
    /// role's credentials.
    pub async fn connect(
        url: &str,
        options: async_nats::ConnectOptions,
        prefix: &str,
    ) -> Result<Self, NatsObservabilityError> {
        let client = options
            .name("platform-control-telemetry")
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|source| NatsObservabilityError::Connect {
                url: url.to_string(),
                source,
            })?;
        Self::subscribe(&client, prefix).await
    }

    /// Listens under `prefix` through `client`.
    pub async fn subscribe(
        client: &async_nats::Client,
        prefix: &str,
    ) -> Result<Self, NatsObservabilityError> {
        let sub = |subject: String| async move {
            client
                .subscribe(subject.clone())
                .await
                .map_err(|source| NatsObservabilityError::Subscribe { subject, source })
        };
        let logs = sub(wire::logs_subject(prefix)).await?;
        let traffic = sub(wire::traffic_subject(prefix)).await?;
        let runtimes = sub(wire::runtimes_subject(prefix)).await?;
        let shared = Arc::new(Shared {
            logs: LogBus::default(),
            traffic: TrafficStats::default(),
            runtimes: RuntimeRoster::default(),
            counters: Counters::default(),
        });
        let task = tokio::spawn(receive(shared.clone(), logs, traffic, runtimes));
        Ok(NatsObservability { shared, task })
    }

    /// What arrived so far.
    pub fn stats(&self) -> ReceiveStats {
        let c = &self.shared.counters;
        ReceiveStats {
            log_batches: c.log_batches.load(Ordering::Relaxed),
            traffic_batches: c.traffic_batches.load(Ordering::Relaxed),
            heartbeats: c.heartbeats.load(Ordering::Relaxed),
            dropped_by_runtimes: c.dropped_by_runtimes.load(Ordering::Relaxed),
            lost_batches: c.lost_batches.load(Ordering::Relaxed),
            undecodable: c.undecodable.load(Ordering::Relaxed),
        }
    }
}

impl Drop for NatsObservability {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Observability for NatsObservability {
    fn recent_logs(&self, tenant: &str, app: Option<&str>) -> Vec<Arc<LogEvent>> {
        self.shared.logs.recent_for(tenant, app)
    }
    fn subscribe_logs(&self) -> Option<broadcast::Receiver<Arc<LogEvent>>> {
        Some(self.shared.logs.subscribe())
    }
    fn traffic(&self, tenant: &str, app: &str) -> Vec<TrafficPoint> {
        self.shared.traffic.series(tenant, app)
    }
    fn summary(&self, tenant: &str, app: &str) -> TrafficSummary {
        self.shared.traffic.summary(tenant, app)
    }
    fn available(&self) -> bool {
        true
    }
    fn runtimes(&self) -> Vec<RuntimeSeen> {
        self.shared.runtimes.live(LogEvent::now_ms())
    }
}

/// Last batch number seen per runtime, to notice lost batches.
#[derive(Default)]
struct Sequences(HashMap<String, u64>);

impl Sequences {
    /// How many batches went missing before `seq` from `source`.
    fn gap(&mut self, source: &str, seq: u64) -> u64 {
        if self.0.len() > 1024 && !self.0.contains_key(source) {
            // Runtimes come and go (the name carries the pid): forget the old ones.
            self.0.clear();
        }
        let last = self.0.insert(source.to_string(), seq);
        match last {
            Some(last) if seq > last => seq - last - 1,
            _ => 0,
        }
    }
}

async fn receive(
    shared: Arc<Shared>,
    mut logs: async_nats::Subscriber,
    mut traffic: async_nats::Subscriber,
    mut runtimes: async_nats::Subscriber,
) {
    let c = &shared.counters;
    let mut log_seqs = Sequences::default();
    let mut traffic_seqs = Sequences::default();
    loop {
        tokio::select! {
            m = logs.next() => {
                let Some(m) = m else { break };
                let Ok(batch) = serde_json::from_slice::<LogBatch>(&m.payload) else {
                    c.undecodable.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                c.log_batches.fetch_add(1, Ordering::Relaxed);
                c.lost_batches.fetch_add(log_seqs.gap(&batch.source, batch.seq), Ordering::Relaxed);
                if batch.dropped > 0 {
                    c.dropped_by_runtimes.fetch_add(batch.dropped, Ordering::Relaxed);
                    tracing::debug!(source = %batch.source, dropped = batch.dropped, "a runtime dropped log lines");
                }
                for e in batch.events {
                    shared.logs.publish(e);
                }
            }
            m = traffic.next() => {
                let Some(m) = m else { break };
                let Ok(batch) = serde_json::from_slice::<TrafficBatch>(&m.payload) else {
                    c.undecodable.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                c.traffic_batches.fetch_add(1, Ordering::Relaxed);
                c.lost_batches.fetch_add(traffic_seqs.gap(&batch.source, batch.seq), Ordering::Relaxed);
                for a in &batch.apps {
                    shared.traffic.merge(&a.tenant, &a.app, &a.counts);
                }
            }
            m = runtimes.next() => {
                let Some(m) = m else { break };
                let Ok(beat) = serde_json::from_slice::<RuntimeHeartbeat>(&m.payload) else {
                    c.undecodable.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                c.heartbeats.fetch_add(1, Ordering::Relaxed);
                shared.runtimes.heard(beat, LogEvent::now_ms());
            }
        }
    }
    tracing::warn!("telemetry subscriptions ended; the dashboard's logs and traffic stop here");
}

#[cfg(test)]
mod tests {
    //! Against the real nats-server on 127.0.0.1:4222, each test under its own subjects.

    use std::time::{Duration, Instant};

    use platform_runtime::logs::LogStream;
    use platform_runtime::obs::publish::{ObsPublisher, PublishConfig};

    use super::*;

    const NATS: &str = "nats://127.0.0.1:4222";

    fn unique_prefix() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("test.obs.{}.{nanos}", std::process::id())
    }

    fn event(tenant: &str, app: &str, request_id: &str) -> LogEvent {
        LogEvent {
            ts_ms: LogEvent::now_ms(),
            tenant: tenant.into(),
            app: app.into(),
            request_id: request_id.into(),
            stream: LogStream::Request,
            status: Some(200),
            line: format!("200 in 1.00 ms ({request_id})"),
        }
    }

    /// A runtime's side: its own bus, stats and NATS connection.
    struct FakeRuntime {
        logs: LogBus,
        traffic: Arc<TrafficStats>,
        publisher: ObsPublisher,
    }

    async fn runtime(prefix: &str, source: &str, max_events: usize) -> FakeRuntime {
        let client = async_nats::connect(NATS).await.unwrap();
        let logs = LogBus::default();
        let traffic = Arc::new(TrafficStats::default());
        let publisher = ObsPublisher::start(
            client,
            &logs,
            traffic.clone(),
            PublishConfig {
                prefix: prefix.into(),
                source: source.into(),
                flush_every: Duration::from_millis(50),
                max_events,
                ..PublishConfig::default()
            },
        );
        FakeRuntime {
            logs,
            traffic,
            publisher,
        }
    }

    async fn control(prefix: &str) -> NatsObservability {
        let client = async_nats::connect(NATS).await.unwrap();
        let obs = NatsObservability::subscribe(&client, prefix).await.unwrap();
        client.flush().await.unwrap();
        obs
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn ids(events: &[Arc<LogEvent>], prefix: &str) -> Vec<String> {
        events
            .iter()
            .filter(|e| e.request_id.starts_with(prefix))
            .map(|e| e.request_id.clone())
            .collect()
    }

    #[tokio::test]
    async fn two_runtimes_logs_in_order_and_traffic_summed() {
        let prefix = unique_prefix();
        let obs = control(&prefix).await;
        assert!(obs.available());
        let mut live = obs.subscribe_logs().unwrap();
        // Small batches, so ordering across several messages is what is checked.
        let a = runtime(&prefix, "rt-a", 3).await;
        let b = runtime(&prefix, "rt-b", 3).await;

        for i in 0..10 {
            a.logs.publish(event("t", "shop", &format!("a{i}")));
        }
        for i in 0..3 {
            b.logs.publish(event("t", "shop", &format!("b{i}")));
        }
        b.logs.publish(event("u", "other", "b-other"));
        let ms = Duration::from_millis;
        for i in 0..5 {
            a.traffic.record("t", "shop", 200, ms(2), i == 0);
        }
        a.traffic.record("t", "shop", 500, ms(30), false);
        a.traffic.record("t", "shop", 502, ms(30), false);
        for i in 0..4 {
            b.traffic.record("t", "shop", 200, ms(2), i < 2);
        }
        b.traffic.record("t", "shop", 503, ms(900), false);
        b.traffic.record("u", "other", 200, ms(1), false);

        until("traffic of both runtimes", || {
            obs.summary("t", "shop").requests == 12 && obs.summary("u", "other").requests == 1
        })
        .await;
        let s = obs.summary("t", "shop");
        assert_eq!((s.requests, s.errors, s.cold), (12, 3, 3));
        assert!(s.last_request_ms > 0);
        let points = obs.traffic("t", "shop");
        assert_eq!(points.len(), 360);
        let total: f64 = points.iter().map(|p| p.rps * 10.0).sum();
        assert!((total - 12.0).abs() < 1e-9, "{total}");
        assert_eq!(points.iter().map(|p| p.errors).sum::<u32>(), 3);
        assert!(
            points.iter().any(|p| p.p99_ms >= 500.0),
            "the 900 ms request"
        );
        assert_eq!(obs.summary("t", "other").requests, 0, "apps stay apart");

        until("14 log lines", || obs.shared.logs.recent().len() == 14).await;
        let recent = obs.shared.logs.recent();
        let want_a: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
        assert_eq!(ids(&recent, "a"), want_a, "one runtime's lines in order");
        assert_eq!(ids(&recent, "b"), ["b0", "b1", "b2", "b-other"]);
        let other = recent.iter().find(|e| e.request_id == "b-other").unwrap();
        assert_eq!((other.tenant.as_str(), other.app.as_str()), ("u", "other"));
        assert_eq!(recent[0].stream, LogStream::Request);
        assert_eq!(recent[0].status, Some(200));

        let mut streamed = Vec::new();
        while let Ok(e) = live.try_recv() {
            streamed.push(e);
        }
        assert_eq!(ids(&streamed, "a"), want_a, "the live stream too");

        let st = obs.stats();
        assert!(st.log_batches >= 6, "batches of at most 3 lines: {st:?}");
        assert_eq!((st.lost_batches, st.undecodable), (0, 0), "{st:?}");
        a.publisher.close().await;
        b.publisher.close().await;
    }

    #[tokio::test]
    async fn runtimes_are_listed_by_their_heartbeats_until_they_go_quiet() {
        let prefix = unique_prefix();
        let obs = control(&prefix).await;
        assert!(obs.runtimes().is_empty());
        let client = async_nats::connect(NATS).await.unwrap();
        let revision = Arc::new(AtomicU64::new(7));
        let logs = LogBus::default();
        let rt = ObsPublisher::start(
            client,
            &logs,
            Arc::new(TrafficStats::default()),
            PublishConfig {
                prefix: prefix.clone(),
                source: "rt-beat:1".into(),
                heartbeat_every: Duration::from_millis(50),
                served_revision: revision.clone(),
                ..PublishConfig::default()
            },
        );
        until("the first heartbeat", || obs.runtimes().len() == 1).await;
        let seen = &obs.runtimes()[0];
        assert_eq!(seen.name, "rt-beat:1");
        assert_eq!(seen.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(seen.revision, 7);
        assert!(seen.started_ms > 0 && seen.last_seen_ms >= seen.started_ms);
        revision.store(9, Ordering::Relaxed);
        until("the new revision", || {
            obs.runtimes().first().is_some_and(|r| r.revision == 9)
        })
        .await;
        rt.close().await;

        // A runtime that stopped is listed no more once its heartbeats are stale; garbage
        // on the subject is counted, not listed.
        let roster = RuntimeRoster::default();
        let beat = |source: &str| RuntimeHeartbeat {
            source: source.into(),
            version: "0".into(),
            revision: 1,
            started_ms: 1,
        };
        roster.heard(beat("a"), 1_000);
        roster.heard(beat("b"), 30_000);
        let stale = RUNTIME_STALE_AFTER.as_millis() as u64;
        let names = |now| {
            roster
                .live(now)
                .into_iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(20_000), ["a", "b"]);
        assert_eq!(names(1_000 + stale), ["b"]);
        assert!(names(30_000 + stale).is_empty());
        let junk = async_nats::connect(NATS).await.unwrap();
        junk.publish(wire::runtimes_subject(&prefix), "not json".into())
            .await
            .unwrap();
        junk.flush().await.unwrap();
        until("the junk counted", || obs.stats().undecodable == 1).await;
        assert_eq!(
            obs.runtimes().len(),
            1,
            "the stopped runtime is still fresh"
        );
    }

    #[tokio::test]
    async fn close_sends_what_is_left() {
        let prefix = unique_prefix();
        let obs = control(&prefix).await;
        let client = async_nats::connect(NATS).await.unwrap();
        let logs = LogBus::default();
        let traffic = Arc::new(TrafficStats::default());
        let publisher = ObsPublisher::start(
            client,
            &logs,
            traffic.clone(),
            PublishConfig {
                prefix: prefix.clone(),
                flush_every: Duration::from_secs(3600),
                ..PublishConfig::default()
            },
        );
        logs.publish(event("t", "a", "last"));
        traffic.record("t", "a", 200, Duration::from_millis(1), false);
        publisher.close().await;
        until("the last line", || {
            ids(&obs.shared.logs.recent(), "last").len() == 1
        })
        .await;
        until("the last count", || obs.summary("t", "a").requests == 1).await;
    }

    #[tokio::test]
    async fn a_burst_beyond_the_buffer_drops_the_oldest_and_says_how_many() {
        let prefix = unique_prefix();
        let obs = control(&prefix).await;
        let rt = runtime(&prefix, "rt-burst", 500).await;
        // The publisher cannot run while this (single-threaded) test publishes without
        // yielding: the bus's 4096-slot channel overwrites the oldest lines.
        for i in 0..10_000 {
            rt.logs.publish(event("t", "burst", &format!("e{i}")));
        }
        until("the reported drop", || obs.stats().dropped_by_runtimes > 0).await;
        until("the newest line", || {
            obs.shared
                .logs
                .recent()
                .last()
                .is_some_and(|e| e.request_id == "e9999")
        })
        .await;
        let dropped = rt.publisher.stats().dropped_events.load(Ordering::Relaxed);
        assert_eq!(dropped, 10_000 - 4096);
        assert_eq!(obs.stats().dropped_by_runtimes, dropped);
        let recent = obs.shared.logs.recent();
        let want: Vec<String> = (9000..10_000).map(|i| format!("e{i}")).collect();
        assert_eq!(ids(&recent, "e"), want, "the app's newest 1000, in order");
        rt.publisher.close().await;
    }
}
