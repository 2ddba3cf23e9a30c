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
}
