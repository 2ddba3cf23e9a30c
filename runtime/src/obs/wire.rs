//! What travels on the telemetry subjects: JSON batches, one NATS message per batch.

use std::sync::Arc;

use crate::logs::LogEvent;
use crate::traffic::AppTraffic;

/// The default subject prefix; subjects are `<prefix>.logs` and `<prefix>.traffic`.
pub const DEFAULT_PREFIX: &str = "platform.obs.v1";

/// Subject of log batches under `prefix`.
pub fn logs_subject(prefix: &str) -> String {
    format!("{prefix}.logs")
}

/// Subject of traffic batches under `prefix`.
pub fn traffic_subject(prefix: &str) -> String {
    format!("{prefix}.traffic")
}

/// Subject of runtime heartbeats under `prefix`.
pub fn runtimes_subject(prefix: &str) -> String {
    format!("{prefix}.runtimes")
}

/// A runtime saying it is alive, what it runs and which routes it serves: sent at start and
/// then every [`crate::obs::publish::PublishConfig::heartbeat_every`], so the control plane
/// can list the runtimes it hears from (`platform status`) and spot one left behind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeHeartbeat {
    /// Which runtime (`$HOSTNAME:pid`).
    pub source: String,
    /// Its version (the `platform` package version).
    pub version: String,
    /// The feed revision of its route table in force (0 before the first).
    pub revision: u64,
    /// When it started, ms since the epoch.
    pub started_ms: u64,
}

/// Log lines of one runtime, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogBatch {
    /// Which runtime sent it (for operators' logs; not shown to tenants).
    pub source: String,
    /// Batch number per source and subject, from 1: a gap means batches were lost.
    pub seq: u64,
    /// Lines this runtime dropped since its previous batch (NATS too slow or away).
    pub dropped: u64,
    /// The lines.
    pub events: Vec<LogEvent>,
}

/// Traffic counts of one runtime since its previous batch, per app.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrafficBatch {
    /// Which runtime sent it.
    pub source: String,
    /// Batch number per source and subject, from 1.
    pub seq: u64,
    /// Counts per app (apps without requests since the previous batch are left out).
    pub apps: Vec<AppTraffic>,
}

/// [`LogBatch`] borrowing its events, so the publisher need not clone them to encode.
#[derive(serde::Serialize)]
struct LogBatchRef<'a> {
    source: &'a str,
    seq: u64,
    dropped: u64,
    events: Vec<&'a LogEvent>,
}

/// Encodes a [`LogBatch`] of shared events.
pub fn encode_logs(
    source: &str,
    seq: u64,
    dropped: u64,
    events: &[Arc<LogEvent>],
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&LogBatchRef {
        source,
        seq,
        dropped,
        events: events.iter().map(|e| e.as_ref()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogStream;

    #[test]
    fn encoded_log_batches_decode_as_log_batch() {
        let e = LogEvent {
            ts_ms: 1,
            tenant: "t".into(),
            app: "a".into(),
            request_id: "r".into(),
            stream: LogStream::Request,
            status: Some(200),
            line: "200 in 1.00 ms \"quoted\" \u{e9}".into(),
        };
        let bytes = encode_logs("rt", 7, 3, &[Arc::new(e.clone())]).unwrap();
        let back: LogBatch = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            back,
            LogBatch {
                source: "rt".into(),
                seq: 7,
                dropped: 3,
                events: vec![e],
            }
        );
    }
}
