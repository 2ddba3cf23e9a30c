//! Where the dashboard reads logs and traffic: the runtime in the same process (`platform
//! up`), the runtimes of a cluster through NATS ([`nats`]), or nothing (a control plane
//! without either says so).

pub mod nats;

use std::sync::Arc;

use platform_runtime::Runtime;
use platform_runtime::logs::LogEvent;
use platform_runtime::traffic::{TrafficPoint, TrafficSummary};
use tokio::sync::broadcast;

pub use nats::NatsObservability;

/// Logs and traffic for the dashboard.
pub trait Observability: Send + Sync {
    /// Recent log events of `tenant`'s apps (or of its app `app`), oldest first.
    fn recent_logs(&self, tenant: &str, app: Option<&str>) -> Vec<Arc<LogEvent>>;
    /// Live log events.
    fn subscribe_logs(&self) -> Option<broadcast::Receiver<Arc<LogEvent>>>;
    /// The last hour of an app's traffic.
    fn traffic(&self, tenant: &str, app: &str) -> Vec<TrafficPoint>;
    /// Totals of the last hour.
    fn summary(&self, tenant: &str, app: &str) -> TrafficSummary;
    /// False when this process sees no traffic (the UI says so instead of showing zeros).
    fn available(&self) -> bool;
    /// The runtimes serving traffic that this process hears from, by name.
    fn runtimes(&self) -> Vec<RuntimeSeen>;
}

/// A runtime that reported in recently: what it runs and which routes it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSeen {
    /// `$HOSTNAME:pid` (the pod's name under Kubernetes).
    pub name: String,
    /// Its `platform` version.
    pub version: String,
    /// The feed revision of its route table in force.
    pub revision: u64,
    /// When it started, ms since the epoch.
    pub started_ms: u64,
    /// When it was last heard from, ms since the epoch.
    pub last_seen_ms: u64,
}

impl Observability for Runtime {
    fn recent_logs(&self, tenant: &str, app: Option<&str>) -> Vec<Arc<LogEvent>> {
        self.logs.recent_for(tenant, app)
    }
    fn subscribe_logs(&self) -> Option<broadcast::Receiver<Arc<LogEvent>>> {
        Some(self.logs.subscribe())
    }
    fn traffic(&self, tenant: &str, app: &str) -> Vec<TrafficPoint> {
        self.traffic.series(tenant, app)
    }
    fn summary(&self, tenant: &str, app: &str) -> TrafficSummary {
        self.traffic.summary(tenant, app)
    }
    fn available(&self) -> bool {
        true
    }
    fn runtimes(&self) -> Vec<RuntimeSeen> {
        let now = LogEvent::now_ms();
        vec![RuntimeSeen {
            name: format!("this process ({})", std::process::id()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: self
                .served_revision
                .load(std::sync::atomic::Ordering::Relaxed),
            started_ms: self.started_ms(),
            last_seen_ms: now,
        }]
    }
}

/// No runtime in this process.
#[derive(Debug, Default)]
pub struct NoObservability;

impl Observability for NoObservability {
    fn recent_logs(&self, _: &str, _: Option<&str>) -> Vec<Arc<LogEvent>> {
        Vec::new()
    }
    fn subscribe_logs(&self) -> Option<broadcast::Receiver<Arc<LogEvent>>> {
        None
    }
    fn traffic(&self, _: &str, _: &str) -> Vec<TrafficPoint> {
        Vec::new()
    }
    fn summary(&self, _: &str, _: &str) -> TrafficSummary {
        TrafficSummary::default()
    }
    fn available(&self) -> bool {
        false
    }
    fn runtimes(&self) -> Vec<RuntimeSeen> {
        Vec::new()
    }
}
