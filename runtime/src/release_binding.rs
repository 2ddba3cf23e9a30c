//! `ReleaseBinding`: what one release needs on every request (its SDK instance pool, its
//! loaded module, its metric handles, its app's CPU gate), resolved on the release's first request after a
//! route table is installed and then reached through the route match.
//!
//! Without it every request looked the same things up by name: a `format!`ed pool key and
//! a map lock for the pool, a digest clone and two map locks for the module, three label
//! strings and a map lock per metric. A binding lives exactly as long as the route table
//! that holds it, and serves one runtime.

use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::app::AppSpec;
use crate::cpu_share::CpuGate;
use crate::metrics::{AppLabels, RequestLabels, RuntimeMetrics};
use crate::module_cache::ModuleSlot;
use crate::sdk::{ReleasePool, SdkPools};

/// Per-release handles of one installed route table.
#[derive(Default)]
pub struct ReleaseBinding {
    pool: OnceLock<Arc<ReleasePool>>,
    module: ModuleBinding,
    metrics: OnceLock<ReleaseMetrics>,
    cpu: OnceLock<CpuGate>,
}

impl std::fmt::Debug for ReleaseBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseBinding")
            .field("pool", &self.pool.get().is_some())
            .field("metrics", &self.metrics.get().is_some())
            .finish()
    }
}

impl ReleaseBinding {
    /// The release's SDK instance pool (made or found on first use). Holding it keeps the
    /// pool, not its instances: idle instances are still reaped, so the app scales to zero.
    pub(crate) fn pool(&self, pools: &SdkPools, spec: &Arc<AppSpec>) -> Arc<ReleasePool> {
        let pool = self.pool.get_or_init(|| pools.pool(spec));
        pools.touch(pool);
        pool.clone()
    }

    /// The CPU gate of the release's app (found on first use; shared with the app's other
    /// releases, see [`crate::cpu_share`]).
    pub(crate) fn cpu_gate(&self, spec: &AppSpec) -> &CpuGate {
        self.cpu
            .get_or_init(|| CpuGate::of(&spec.tenant, &spec.app))
    }

    /// Where the release's loaded module is remembered.
    pub(crate) fn module(&self) -> &ModuleBinding {
        &self.module
    }

    /// The release's metric handles in `metrics`.
    pub(crate) fn metrics(&self, metrics: &RuntimeMetrics, spec: &AppSpec) -> &ReleaseMetrics {
        self.metrics.get_or_init(|| ReleaseMetrics {
            ok: metrics
                .requests
                .get_or_create(&RequestLabels {
                    tenant: spec.tenant.clone(),
                    app: spec.app.clone(),
                    release: spec.release_label(),
                    status: 200,
                })
                .clone(),
            latency: metrics
                .latency
                .get_or_create(&AppLabels {
                    tenant: spec.tenant.clone(),
                    app: spec.app.clone(),
                })
                .clone(),
        })
    }
}

/// The module cache slot a release's requests last used, held weakly so that evicting an
/// idle module still frees it (the next request then goes through the cache again).
#[derive(Default)]
pub struct ModuleBinding {
    slot: Mutex<Weak<ModuleSlot>>,
}

impl ModuleBinding {
    /// The slot, if it is still in the cache.
    pub(crate) fn get(&self) -> Option<Arc<ModuleSlot>> {
        self.slot.lock().upgrade()
    }

    /// Remembers `slot` for the next request.
    pub(crate) fn set(&self, slot: &Arc<ModuleSlot>) {
        *self.slot.lock() = Arc::downgrade(slot);
    }
}

/// Metric handles of one release: the common case (a 200) and the app's latency histogram
/// touch no label map. Other statuses still go through the families.
pub struct ReleaseMetrics {
    /// `platform_requests_total{status="200"}` of the release.
    pub ok: Counter,
    /// `platform_request_duration_seconds` of the app.
    pub latency: Histogram,
}
