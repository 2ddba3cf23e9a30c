//! Guest output and request lines: captured per request, tagged with the request id, written
//! to the host log and fanned out to live subscribers (the dashboard's log stream, and in a
//! cluster [`crate::obs`], which sends them to the control plane over NATS).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use tokio::sync::broadcast;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// The guest's standard output (SDK mode; in WAGI mode stdout is the response).
    Stdout,
    /// The guest's standard error.
    Stderr,
    /// The host's one line per finished request.
    Request,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogEvent {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Tenant of the app.
    pub tenant: String,
    /// App name.
    pub app: String,
    /// Request id (also in the response's `x-request-id`).
    pub request_id: String,
    /// Source of the line.
    pub stream: LogStream,
    /// HTTP status, on request lines.
    pub status: Option<u16>,
    /// The text.
    pub line: String,
}

impl LogEvent {
    /// Current time in ms since the epoch.
    pub fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
            .unwrap_or(0)
    }
}

/// Fan-out of log events, with a bounded backlog per app for late subscribers.
///
/// Each app has a ring of its own (at most `keep` lines and [`RING_BYTES`] of text), so a
/// flood of lines from one app, or one tenant, cannot evict another's recent lines.
pub struct LogBus {
    tx: broadcast::Sender<Arc<LogEvent>>,
    /// Rings by tenant, then app: looked up by `&str`, so a line of a known app clones no
    /// names (one per request, on the request path).
    rings: Mutex<HashMap<String, HashMap<String, Ring>>>,
    keep: usize,
    seq: std::sync::atomic::AtomicU64,
}

/// Most bytes of text an app's ring keeps.
pub const RING_BYTES: usize = 256 * 1024;

/// An app's ring is forgotten after this long without a line.
const RING_IDLE_MS: u64 = 60 * 60 * 1000;

#[derive(Default)]
struct Ring {
    /// Lines with their publish sequence number (merged listings keep publish order).
    lines: VecDeque<(u64, Arc<LogEvent>)>,
    bytes: usize,
    last_ms: u64,
}

impl Default for LogBus {
    fn default() -> Self {
        Self::new(1000)
    }
}

impl LogBus {
    /// A bus keeping the last `keep` events of each app.
    pub fn new(keep: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        LogBus {
            tx,
            rings: Mutex::new(HashMap::new()),
            keep: keep.max(1),
            seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Publishes one event.
    pub fn publish(&self, event: LogEvent) {
        let event = Arc::new(event);
        if let Ok(mut rings) = self.rings.lock() {
            let now = event.ts_ms;
            let known = rings
                .get(event.tenant.as_str())
                .is_some_and(|apps| apps.contains_key(event.app.as_str()));
            if !known {
                // New app: forget the rings of apps that went quiet long ago.
                rings.retain(|_, apps| {
                    apps.retain(|_, r| now.saturating_sub(r.last_ms) < RING_IDLE_MS);
                    !apps.is_empty()
                });
                rings
                    .entry(event.tenant.clone())
                    .or_default()
                    .insert(event.app.clone(), Ring::default());
            }
            let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(ring) = rings
                .get_mut(event.tenant.as_str())
                .and_then(|apps| apps.get_mut(event.app.as_str()))
            {
                ring.last_ms = now;
                ring.bytes += event.line.len();
                ring.lines.push_back((seq, event.clone()));
                while ring.lines.len() > self.keep || ring.bytes > RING_BYTES {
                    match ring.lines.pop_front() {
                        Some((_, old)) => ring.bytes -= old.line.len(),
                        None => break,
                    }
                }
            }
        }
        let _ = self.tx.send(event);
    }

    /// A live subscription (lagging subscribers skip events rather than slow the host).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogEvent>> {
        self.tx.subscribe()
    }

    /// The recent lines of `tenant`'s apps (or of one app), oldest first.
    pub fn recent_for(&self, tenant: &str, app: Option<&str>) -> Vec<Arc<LogEvent>> {
        self.collect(|t, a| t == tenant && app.is_none_or(|want| want == a))
    }

    /// The recent lines of every app, oldest first.
    pub fn recent(&self) -> Vec<Arc<LogEvent>> {
        self.collect(|_, _| true)
    }

    fn collect(&self, want: impl Fn(&str, &str) -> bool) -> Vec<Arc<LogEvent>> {
        let Ok(rings) = self.rings.lock() else {
            return Vec::new();
        };
        let mut out: Vec<(u64, Arc<LogEvent>)> = rings
            .iter()
            .flat_map(|(t, apps)| apps.iter().map(move |(a, r)| (t, a, r)))
            .filter(|(t, a, _)| want(t, a))
            .flat_map(|(_, _, r)| r.lines.iter().cloned())
            .collect();
        out.sort_unstable_by_key(|(seq, _)| *seq);
        out.into_iter().map(|(_, e)| e).collect()
    }
}

/// A guest output stream that keeps at most `cap` bytes and silently drops the rest (so a
/// chatty guest cannot grow host memory, and never traps because of logging).
#[derive(Clone)]
pub struct CappedPipe {
    inner: Arc<Mutex<CappedBuf>>,
}

struct CappedBuf {
    buf: BytesMut,
    cap: usize,
    dropped: u64,
}

impl CappedPipe {
    /// A pipe keeping up to `cap` bytes.
    pub fn new(cap: usize) -> Self {
        CappedPipe {
            inner: Arc::new(Mutex::new(CappedBuf {
                buf: BytesMut::new(),
                cap,
                dropped: 0,
            })),
        }
    }

    /// What was kept, and how many bytes were dropped past the cap.
    pub fn take(&self) -> (Bytes, u64) {
        match self.inner.lock() {
            Ok(mut b) => (b.buf.split().freeze(), std::mem::take(&mut b.dropped)),
            Err(_) => (Bytes::new(), 0),
        }
    }
}

#[async_trait::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if let Ok(mut b) = self.inner.lock() {
            let room = b.cap.saturating_sub(b.buf.len());
            let keep = room.min(bytes.len());
            b.buf.extend_from_slice(&bytes[..keep]);
            b.dropped += (bytes.len() - keep) as u64;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(CappedAsync(self.clone()))
    }
}

struct CappedAsync(CappedPipe);

impl tokio::io::AsyncWrite for CappedAsync {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let _ = OutputStream::write(&mut self.0, Bytes::copy_from_slice(buf));
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Splits captured output into printable lines (invalid UTF-8 replaced, control bytes
/// escaped, very long lines cut) so "garbage" from a guest cannot corrupt the host log.
pub fn printable_lines(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && *l != b"\r")
        .map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let l = &l[..l.len().min(8192)];
            String::from_utf8_lossy(l)
                .chars()
                .map(|c| {
                    if c.is_control() && c != '\t' {
                        '\u{FFFD}'
                    } else {
                        c
                    }
                })
                .collect()
        })
}

/// Sends captured guest output to the host log and `bus`, line by line, with the request id.
pub fn emit_guest_output(
    bus: &LogBus,
    spec: &crate::app::AppSpec,
    request_id: &str,
    stream: LogStream,
    bytes: &[u8],
    dropped: u64,
) {
    for line in printable_lines(bytes) {
        tracing::info!(target: "platform::guest", app = %spec.app, request_id, stream = ?stream, "{line}");
        bus.publish(LogEvent {
            ts_ms: LogEvent::now_ms(),
            tenant: spec.tenant.clone(),
            app: spec.app.clone(),
            request_id: request_id.into(),
            stream,
            status: None,
            line,
        });
    }
    if dropped > 0 {
        tracing::info!(target: "platform::guest", app = %spec.app, request_id, "{dropped} more bytes of guest output dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(tenant: &str, app: &str, text: &str) -> LogEvent {
        LogEvent {
            ts_ms: LogEvent::now_ms(),
            tenant: tenant.into(),
            app: app.into(),
            request_id: text.into(),
            stream: LogStream::Stdout,
            status: None,
            line: text.into(),
        }
    }

    #[test]
    fn one_apps_flood_cannot_evict_anothers_lines() {
        let bus = LogBus::new(100);
        bus.publish(line("acme", "shop", "acme-1"));
        bus.publish(line("acme", "shop", "acme-2"));
        for i in 0..10_000 {
            bus.publish(line("other", "flood", &format!("f{i}")));
        }
        let acme: Vec<_> = bus
            .recent_for("acme", None)
            .iter()
            .map(|e| e.line.clone())
            .collect();
        assert_eq!(acme, ["acme-1", "acme-2"]);
        let flood = bus.recent_for("other", Some("flood"));
        assert_eq!(flood.len(), 100);
        assert_eq!(flood.last().unwrap().line, "f9999");
        assert!(bus.recent_for("other", Some("shop")).is_empty());
        // Publish order across apps is kept.
        assert_eq!(bus.recent().first().unwrap().line, "acme-1");
    }

    #[test]
    fn a_new_app_forgets_only_the_rings_gone_quiet() {
        let bus = LogBus::new(10);
        let mut old = line("t", "quiet", "old");
        old.ts_ms -= RING_IDLE_MS + 1;
        bus.publish(old);
        bus.publish(line("t", "busy", "busy-1"));
        bus.publish(line("u", "other", "other-1"));
        assert!(bus.recent_for("t", Some("quiet")).is_empty());
        assert_eq!(bus.recent_for("t", None).len(), 1);
        assert_eq!(bus.recent_for("u", None).len(), 1);
        // A known app's line does not sweep.
        bus.publish(line("t", "busy", "busy-2"));
        assert_eq!(bus.recent().len(), 3);
    }

    #[test]
    fn a_ring_is_bounded_in_bytes_too() {
        let bus = LogBus::new(1000);
        let big = "x".repeat(8192);
        for _ in 0..100 {
            bus.publish(line("t", "a", &big));
        }
        let kept = bus.recent_for("t", Some("a"));
        assert!(kept.len() * 8192 <= RING_BYTES, "{}", kept.len());
    }
}
