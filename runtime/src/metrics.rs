//! Prometheus metrics of the data plane, exposed on the admin listener at `/metrics`.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of `platform_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Tenant owning the app (`-` when no route matched): apps of two tenants may share a
    /// name.
    pub tenant: String,
    /// App name (`-` when no route matched).
    pub app: String,
    /// The number of the release that served (`-` when no route matched or the release
    /// has no number), so a split's releases can be compared.
    pub release: String,
    /// HTTP status code.
    pub status: u16,
}

/// Labels carrying just the app.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    /// Tenant owning the app (`-` when no route matched): apps of two tenants may share a
    /// name.
    pub tenant: String,
    /// App name.
    pub app: String,
}

/// Labels of `platform_cold_loads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ColdLabels {
    /// Tenant owning the app (`-` when no route matched): apps of two tenants may share a
    /// name.
    pub tenant: String,
    /// App name.
    pub app: String,
    /// `artifact` (mapped from disk) or `compiled` (Cranelift ran first).
    pub source: String,
}

/// Labels of `platform_traps_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrapLabels {
    /// Tenant owning the app (`-` when no route matched): apps of two tenants may share a
    /// name.
    pub tenant: String,
    /// App name.
    pub app: String,
    /// Failure kind: timeout, memory, panic, exit, trap, bad_output, ...
    pub kind: String,
}

/// Labels of `platform_rejected_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// Tenant owning the app.
    pub tenant: String,
    /// App name.
    pub app: String,
    /// The cap that was full: app, tenant, instances or host.
    pub cap: String,
}

/// Labels of `platform_dedicated_forwards_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardLabels {
    /// Tenant owning the app.
    pub tenant: String,
    /// App name.
    pub app: String,
    /// ok, unreachable, timeout, too_large or body_timeout.
    pub outcome: String,
}

/// All runtime metrics.
pub struct RuntimeMetrics {
    registry: Mutex<Registry>,
    /// Requests by app and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency in seconds by app.
    pub latency: Family<AppLabels, Histogram>,
    /// Modules loaded into memory for a request.
    pub cold_loads: Family<ColdLabels, Counter>,
    /// Guest failures by kind.
    pub traps: Family<TrapLabels, Counter>,
    /// Requests turned away by admission control, by app and the cap that was full.
    pub rejected: Family<RejectLabels, Counter>,
    /// Requests of dedicated apps forwarded to their own Services, by outcome.
    pub forwards: Family<ForwardLabels, Counter>,
    /// Requests being served now.
    pub in_flight: Gauge,
    /// Modules resident in memory.
    pub resident_modules: Gauge,
    /// Idle SDK instances held in pools.
    pub pooled_instances: Gauge,
    /// Idle component instances held for reuse (`pooled` component releases).
    pub component_instances: Gauge,
}

impl Default for RuntimeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RuntimeMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("platform");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<AppLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ])
        });
        let cold_loads = Family::<ColdLabels, Counter>::default();
        let traps = Family::<TrapLabels, Counter>::default();
        let rejected = Family::<RejectLabels, Counter>::default();
        let forwards = Family::<ForwardLabels, Counter>::default();
        let in_flight = Gauge::default();
        let resident_modules = Gauge::default();
        let pooled_instances = Gauge::default();
        let component_instances = Gauge::default();
        registry.register(
            "requests",
            "HTTP requests by app and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency by app",
            latency.clone(),
        );
        registry.register(
            "cold_loads",
            "Modules loaded into memory to serve a request",
            cold_loads.clone(),
        );
        registry.register("traps", "Guest failures by kind", traps.clone());
        registry.register(
            "rejected",
            "Requests refused because a concurrency cap (app, tenant, instances, host) was full",
            rejected.clone(),
        );
        registry.register(
            "dedicated_forwards",
            "Requests of dedicated apps forwarded by this runtime to the app's own Service, by outcome",
            forwards.clone(),
        );
        registry.register(
            "in_flight_requests",
            "Requests being served",
            in_flight.clone(),
        );
        registry.register(
            "resident_modules",
            "Modules held in memory",
            resident_modules.clone(),
        );
        registry.register(
            "pooled_instances",
            "Idle initialized SDK instances held in pools",
            pooled_instances.clone(),
        );
        registry.register(
            "component_instances",
            "Idle component instances held for reuse",
            component_instances.clone(),
        );
        RuntimeMetrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            cold_loads,
            traps,
            rejected,
            forwards,
            in_flight,
            resident_modules,
            pooled_instances,
            component_instances,
        }
    }

    /// Registers more metrics (other parts of the process) in the same registry.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> Option<R> {
        self.registry.lock().ok().map(|mut r| f(&mut r))
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}
