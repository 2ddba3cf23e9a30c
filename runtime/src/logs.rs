//! Guest output and request lines: captured per request, tagged with the request id, written
//! to the host log and fanned out to live subscribers (the dashboard's log stream, and in a
//! cluster [`crate::obs`], which sends them to the control plane over NATS).

use std::collections::VecDeque;
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

/// Fan-out of log events with a short backlog for late subscribers.
pub struct LogBus {
    tx: broadcast::Sender<Arc<LogEvent>>,
    recent: Mutex<VecDeque<Arc<LogEvent>>>,
    keep: usize,
}

impl Default for LogBus {
    fn default() -> Self {
        Self::new(1000)
    }
}

impl LogBus {
    /// A bus keeping the last `keep` events.
    pub fn new(keep: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        LogBus {
            tx,
            recent: Mutex::new(VecDeque::with_capacity(keep)),
            keep,
        }
    }

    /// Publishes one event.
    pub fn publish(&self, event: LogEvent) {
        let event = Arc::new(event);
        if let Ok(mut r) = self.recent.lock() {
            if r.len() == self.keep {
                r.pop_front();
            }
            r.push_back(event.clone());
        }
        let _ = self.tx.send(event);
    }

    /// A live subscription (lagging subscribers skip events rather than slow the host).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogEvent>> {
        self.tx.subscribe()
    }

    /// The recent backlog, oldest first.
    pub fn recent(&self) -> Vec<Arc<LogEvent>> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
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
