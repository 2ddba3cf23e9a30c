//! Reused component instances: what a `pooled` component release runs on.
//!
//! A wasi:http component gets a fresh instance per request by default (`per-request`,
//! as `wasmtime serve` 48 does for WASIp2 components: `--max-instance-reuse-count`
//! defaults to 1). A release that chooses `pooled` keeps instances between requests
//! instead, as `wasmtime serve --max-instance-reuse-count N` does:
//!
//! ```text
//!  request ─► the release's idle instances (never another release's, app's or tenant's)
//!               │ one?  ── yes ─► serve ─► ended cleanly, young, small? ── yes ─► idle again
//!               │ no                             │ no (trap, time or memory limit, N uses,
//!               ▼                                ▼    a request body over the limit)
//!            instantiate                       dropped
//! ```
//!
//! An instance serves one request at a time (a WASIp2 export cannot be re-entered),
//! keeps whatever the guest left in its memory (state carries from one request to the
//! next: that is the point, and the caveat), is retired after [`ReuseSettings::max_uses`]
//! requests, after any failure, or when its memory grew past
//! [`ReuseSettings::max_memory`], and is dropped after [`ReuseSettings::idle_timeout`]
//! without requests, so an idle release shrinks to zero instances. At most
//! [`ReuseSettings::max_idle`] idle instances are kept per release.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::ComponentState;
use super::hooks::PlatformHooks;
use crate::app::AppSpec;
use crate::guest;
use crate::logs::{CappedPipe, LogBus};
use crate::metrics::RuntimeMetrics;
use crate::sdk::kv::KvBackend;
use crate::sdk::outbound::OutboundClient;

/// Bytes of stdout and of stderr kept per request; the rest is counted and dropped.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// How `pooled` component releases reuse instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReuseSettings {
    /// Requests an instance serves before it is retired (`wasmtime serve`'s default for
    /// components that allow reuse, WASIp3's, is 128).
    pub max_uses: u32,
    /// How long an idle instance is kept for the next request.
    pub idle_timeout: Duration,
    /// Retire an instance whose memory grew past this many bytes (0: half the release's
    /// memory limit, at least 32 MiB).
    pub max_memory: u64,
    /// Most idle instances kept per release (after a burst, the rest are dropped: each
    /// holds a slot of the engine's pooling allocator).
    pub max_idle: usize,
}

impl Default for ReuseSettings {
    fn default() -> Self {
        ReuseSettings {
            max_uses: 128,
            idle_timeout: Duration::from_secs(10),
            max_memory: 0,
            max_idle: 16,
        }
    }
}

/// One component instance with its store and output pipes; instantiated on its first
/// request.
pub struct ComponentInstance {
    /// The store (one per instance, never shared).
    pub(crate) store: Store<ComponentState>,
    /// The instance's exports, once instantiated.
    pub(crate) proxy: Option<Proxy>,
    /// Captured stdout (taken after every request).
    pub(crate) stdout: CappedPipe,
    /// Captured stderr (taken after every request).
    pub(crate) stderr: CappedPipe,
    uses: u32,
    idle_since: Instant,
}

impl ComponentInstance {
    /// A store for `spec` with its env, memory cap, captured output, outbound policy and
    /// key-value backend; the instance itself is made on its first request.
    pub fn new(
        engine: &Engine,
        spec: &Arc<AppSpec>,
        outbound: Option<Arc<OutboundClient>>,
        kv: Option<Arc<dyn KvBackend>>,
        logs: Arc<LogBus>,
    ) -> Self {
        let stdout = CappedPipe::new(OUTPUT_CAP);
        let stderr = CappedPipe::new(OUTPUT_CAP);
        let hooks = PlatformHooks::new(outbound, spec.clone(), logs, String::new(), Instant::now());
        let mut store = Store::new(
            engine,
            ComponentState::new(spec, stdout.clone(), stderr.clone(), hooks, kv),
        );
        store.limiter(|s| &mut s.limiter);
        ComponentInstance {
            store,
            proxy: None,
            stdout,
            stderr,
            uses: 0,
            idle_since: Instant::now(),
        }
    }

    /// Prepares the instance for one request: its id (outbound log lines) and deadline.
    pub fn bind(&mut self, request_id: &str, deadline: Instant) {
        self.store
            .data_mut()
            .hooks
            .bind(request_id.to_string(), deadline);
        guest::set_deadline(&mut self.store, deadline);
    }

    /// Requests served so far.
    pub fn uses(&self) -> u32 {
        self.uses
    }
}

/// The idle instances of one release.
struct ReleaseInstances {
    idle: Mutex<Vec<ComponentInstance>>,
    last_used_ms: AtomicU64,
}

/// Idle component instances of every `pooled` component release.
pub struct ComponentPools {
    pools: Mutex<HashMap<String, Arc<ReleaseInstances>>>,
    settings: ReuseSettings,
    started: Instant,
}

impl ComponentPools {
    /// Pools with `settings`.
    pub fn new(settings: ReuseSettings) -> Self {
        ComponentPools {
            pools: Mutex::new(HashMap::new()),
            settings,
            started: Instant::now(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &ReuseSettings {
        &self.settings
    }

    /// The pool key of a release: its tenant, app, release and module. Two releases
    /// never share a key, so never an instance.
    fn key(spec: &AppSpec) -> String {
        format!(
            "{}/{}/{}/{}",
            spec.tenant,
            spec.app,
            spec.release,
            spec.module.as_str()
        )
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// An idle instance of `spec`'s release, if one was kept.
    pub fn take(&self, spec: &AppSpec) -> Option<ComponentInstance> {
        let pool = self.pools.lock().get(&Self::key(spec)).cloned()?;
        pool.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        let mut idle = pool.idle.lock();
        while let Some(inst) = idle.pop() {
            if inst.idle_since.elapsed() < self.settings.idle_timeout {
                return Some(inst);
            }
        }
        None
    }

    /// Keeps `inst` for the next request of `spec`'s release, unless it should retire:
    /// the request failed (`healthy` false), it served `max_uses` requests, or its memory
    /// grew past the bound.
    pub fn put_back(&self, spec: &AppSpec, mut inst: ComponentInstance, healthy: bool) {
        inst.uses = inst.uses.saturating_add(1);
        if !healthy || inst.proxy.is_none() || inst.uses >= self.settings.max_uses {
            return;
        }
        let bound = if self.settings.max_memory > 0 {
            self.settings.max_memory
        } else {
            (spec.limits.memory / 2).max(32 << 20)
        };
        let grown = inst.store.data().limiter.largest();
        if grown > bound {
            tracing::debug!(app = %spec.app, bytes = grown, "retiring a component instance whose memory grew past its bound");
            return;
        }
        inst.store.data_mut().limiter.reset();
        inst.idle_since = Instant::now();
        let pool = self
            .pools
            .lock()
            .entry(Self::key(spec))
            .or_insert_with(|| {
                Arc::new(ReleaseInstances {
                    idle: Mutex::new(Vec::new()),
                    last_used_ms: AtomicU64::new(0),
                })
            })
            .clone();
        pool.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        let mut idle = pool.idle.lock();
        if idle.len() < self.settings.max_idle {
            idle.push(inst);
        }
    }

    /// Idle instances across all releases.
    pub fn idle_instances(&self) -> usize {
        self.pools
            .lock()
            .values()
            .map(|p| p.idle.lock().len())
            .sum()
    }

    /// Drops instances idle past the idle timeout, and releases left with none.
    pub fn reap(&self) {
        let timeout = self.settings.idle_timeout;
        let now_ms = self.now_ms();
        let idle_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.pools.lock().retain(|_, pool| {
            let mut idle = pool.idle.lock();
            idle.retain(|i| i.idle_since.elapsed() < timeout);
            let unused =
                now_ms.saturating_sub(pool.last_used_ms.load(Ordering::Relaxed)) >= idle_ms;
            !(idle.is_empty() && unused)
        });
    }

    /// Runs [`Self::reap`] periodically, and reports the idle instances.
    pub fn spawn_reaper(self: &Arc<Self>, metrics: Arc<RuntimeMetrics>) {
        let weak = Arc::downgrade(self);
        let period = (self.settings.idle_timeout / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(15));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(pools) = weak.upgrade() else { break };
                pools.reap();
                metrics
                    .component_instances
                    .set(pools.idle_instances() as i64);
            }
        });
    }
}
