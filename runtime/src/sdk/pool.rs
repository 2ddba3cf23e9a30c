//! `SdkPools`: initialized SDK instances, per release.
//!
//! ```text
//!  request ─► ReleasePool (one per release, never shared across apps or tenants)
//!               │ permit (at most `max_per_release` instances serve at once)
//!               ▼
//!            idle instance? ── yes ─► serve ─► healthy and young? ── yes ─► back to idle
//!               │ no                               │ no (trap, panic, timeout, N uses,
//!               ▼                                  ▼      memory past its bound)
//!            pooled:       instantiate, _initialize, platform_init (Go start-up, once)
//!            per-request:  instantiate the pre-initialized snapshot (no start-up), and
//!                          drop the instance after the request
//! ```
//!
//! Idle instances are dropped after the idle timeout, so an app without traffic shrinks to
//! zero instances.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::{Engine, Store, TypedFunc};
use wasmtime_wasi::WasiCtxBuilder;

use super::abi::{SDK_EXPORT_HANDLE, SDK_EXPORT_INIT, result};
use super::clock::EpochMonotonicClock;
use super::dirty_runs;
use super::kv::KvBackend;
use super::outbound::OutboundClient;
use super::state::{ReleaseEnv, SdkHostState};
use crate::app::{AppSpec, Isolation};
use crate::failure::GuestFailure;
use crate::guest::{self, GuestState, MemoryLimiter};
use crate::logs::CappedPipe;
use crate::metrics::RuntimeMetrics;
use crate::module_cache::LoadedModule;

/// Bytes of guest output kept per request.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// Pool tunables.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most instances of one release serving at once (more requests wait).
    pub max_per_release: usize,
    /// Requests an instance serves before it is retired (its Go heap only grows).
    pub max_uses: u32,
    /// Retire an instance whose linear memory passes this many bytes (0: half the limit).
    pub max_memory: u64,
    /// Time allowed for Go's start-up in a new instance.
    pub init_timeout: Duration,
    /// Bytes of a linear memory the engine keeps resident between uses of a pool slot
    /// ([`crate::engine::EngineSettings::keep_resident`]): the most dirty pages
    /// [`dirty_runs::merge_close_runs`] may leave.
    pub keep_resident: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_per_release: 32,
            max_uses: 10_000,
            max_memory: 0,
            init_timeout: Duration::from_secs(30),
            keep_resident: crate::engine::EngineSettings::default().keep_resident,
        }
    }
}

/// An SDK instance with its output pipes.
pub struct SdkInstance {
    /// The store.
    pub store: Store<GuestState>,
    /// `platform_handle`.
    pub handle: TypedFunc<i32, i32>,
    /// Captured stdout.
    pub stdout: CappedPipe,
    /// Captured stderr.
    pub stderr: CappedPipe,
    uses: u32,
    idle_since: Instant,
}

/// The instances of one release.
pub struct ReleasePool {
    /// The release.
    pub spec: Arc<AppSpec>,
    idle: Mutex<Vec<SdkInstance>>,
    /// Bounds concurrent instances.
    pub permits: Arc<Semaphore>,
    /// The release's variables, encoded once for all its instances and request heads.
    pub env: ReleaseEnv,
    last_used_ms: AtomicU64,
    /// Per-request instances retired so far (paces [`dirty_runs::merge_close_runs`]).
    retired: AtomicU64,
}

/// All pools.
pub struct SdkPools {
    pools: Mutex<HashMap<String, Arc<ReleasePool>>>,
    idle_timeout: Duration,
    /// Tunables.
    pub settings: PoolSettings,
    kv: Mutex<Option<Arc<dyn KvBackend>>>,
    outbound: Mutex<Option<Arc<OutboundClient>>>,
    started: Instant,
}

impl SdkPools {
    /// Pools whose idle instances are dropped after `idle_timeout`.
    pub fn new(idle_timeout: Duration, settings: PoolSettings) -> Self {
        SdkPools {
            pools: Mutex::new(HashMap::new()),
            idle_timeout,
            settings,
            kv: Mutex::new(None),
            outbound: Mutex::new(None),
            started: Instant::now(),
        }
    }

    /// Sets the key-value backend SDK guests get.
    pub fn set_kv(&self, kv: Arc<dyn KvBackend>) {
        *self.kv.lock() = Some(kv);
    }

    /// The key-value backend, if configured.
    pub fn kv(&self) -> Option<Arc<dyn KvBackend>> {
        self.kv.lock().clone()
    }

    /// Sets the outbound HTTP client SDK guests send through (one for the runtime).
    pub fn set_outbound(&self, client: Arc<OutboundClient>) {
        *self.outbound.lock() = Some(client);
    }

    /// The outbound HTTP client, if configured.
    pub fn outbound(&self) -> Option<Arc<OutboundClient>> {
        self.outbound.lock().clone()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The pool of `spec`'s release (created on first use). The request path reaches it
    /// through the route's [`crate::release_binding::ReleaseBinding`], which calls this once
    /// per installed route table.
    pub fn pool(&self, spec: &Arc<AppSpec>) -> Arc<ReleasePool> {
        let key = format!("{}/{}/{}", spec.tenant, spec.app, spec.release);
        let mut pools = self.pools.lock();
        let pool = pools
            .entry(key)
            .or_insert_with(|| {
                Arc::new(ReleasePool {
                    env: ReleaseEnv::of(spec),
                    spec: spec.clone(),
                    idle: Mutex::new(Vec::new()),
                    permits: Arc::new(Semaphore::new(self.settings.max_per_release.max(1))),
                    last_used_ms: AtomicU64::new(0),
                    retired: AtomicU64::new(0),
                })
            })
            .clone();
        self.touch(&pool);
        pool
    }

    /// Marks `pool` as used now (the reaper keeps pools in use).
    pub fn touch(&self, pool: &ReleasePool) {
        pool.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Idle instances across all pools.
    pub fn idle_instances(&self) -> usize {
        self.pools
            .lock()
            .values()
            .map(|pool| pool.idle.lock().len())
            .sum()
    }

    /// The largest linear memory among idle instances, in bytes (what a pooled instance
    /// kept after its requests; streaming bodies must not grow it).
    pub fn max_idle_memory(&self) -> u64 {
        let pools = self.pools.lock();
        pools
            .values()
            .map(|pool| pool.idle.lock())
            .flat_map(|idle| {
                idle.iter()
                    .map(|i| {
                        i.store
                            .data()
                            .sdk
                            .as_ref()
                            .and_then(|s| s.memory)
                            .map(|m| m.data_size(&i.store) as u64)
                            .unwrap_or(0)
                    })
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap_or(0)
    }

    /// Drops instances idle longer than the idle timeout, and empty unused pools.
    pub fn reap(&self) {
        let now = Instant::now();
        let now_ms = self.now_ms();
        let idle_ms = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut pools = self.pools.lock();
        pools.retain(|_, pool| {
            let mut idle = pool.idle.lock();
            idle.retain(|i| now.duration_since(i.idle_since) < self.idle_timeout);
            let unused =
                now_ms.saturating_sub(pool.last_used_ms.load(Ordering::Relaxed)) >= idle_ms;
            let busy = pool.permits.available_permits() < self.settings.max_per_release.max(1);
            // A pool an installed route still holds stays registered (it has no instances
            // once reaped): dropping it here would leave the route a pool the reaper no
            // longer sees.
            let bound = Arc::strong_count(pool) > 1;
            let reap = idle.is_empty() && unused && !busy && !bound;
            !reap
        });
    }

    /// Runs [`Self::reap`] periodically.
    pub fn spawn_reaper(self: &Arc<Self>, metrics: Arc<RuntimeMetrics>) {
        let weak = Arc::downgrade(self);
        let period =
            (self.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(15));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(pools) = weak.upgrade() else { break };
                pools.reap();
                metrics.pooled_instances.set(pools.idle_instances() as i64);
            }
        });
    }

    /// Takes an idle instance of `pool`, or makes one. Making one runs guest code (Go's
    /// start-up, or instantiation), so call it inside the app's CPU slot
    /// ([`crate::cpu_share::on_turns`]), as the request's call that follows.
    pub async fn take(
        &self,
        engine: &Engine,
        pool: &ReleasePool,
        module: &LoadedModule,
        spec: &Arc<AppSpec>,
    ) -> Result<SdkInstance, (GuestFailure, bytes::Bytes)> {
        if spec.isolation == Isolation::Pooled
            && let Some(i) = pool.idle.lock().pop()
        {
            return Ok(i);
        }
        self.create(engine, module, spec, &pool.env).await
    }

    /// Returns an instance to its pool, or drops it when it should retire.
    pub fn put_back(&self, pool: &ReleasePool, mut inst: SdkInstance, healthy: bool) {
        inst.uses += 1;
        if pool.spec.isolation != Isolation::Pooled {
            // Now and then, before the slot is reset: see `dirty_runs`.
            if pool
                .retired
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(dirty_runs::MERGE_EVERY)
                && let Some(memory) = inst.store.data().sdk.as_ref().and_then(|s| s.memory)
            {
                dirty_runs::merge_close_runs(
                    memory.data_mut(&mut inst.store),
                    self.settings.keep_resident,
                );
            }
            return;
        }
        if !healthy || inst.uses >= self.settings.max_uses {
            return;
        }
        let bound = if self.settings.max_memory > 0 {
            self.settings.max_memory
        } else {
            (pool.spec.limits.memory / 2).max(32 << 20)
        };
        let grown = inst
            .store
            .data()
            .sdk
            .as_ref()
            .and_then(|s| s.memory)
            .map(|m| m.data_size(&inst.store) as u64)
            .unwrap_or(0);
        if grown > bound {
            tracing::debug!(app = %pool.spec.app, bytes = grown, "retiring an SDK instance whose memory grew past its bound");
            return;
        }
        if let Some(s) = inst.store.data_mut().sdk.as_mut() {
            s.reset();
        }
        inst.store.data_mut().limiter.reset();
        inst.idle_since = Instant::now();
        // parking_lot: no poisoning, so a panic elsewhere never makes instances vanish.
        pool.idle.lock().push(inst);
    }

    /// A new instance of `module` for `spec`: Go's start-up runs now (pooled), or was run
    /// when the snapshot was made (per-request).
    async fn create(
        &self,
        engine: &Engine,
        module: &LoadedModule,
        spec: &Arc<AppSpec>,
        env: &ReleaseEnv,
    ) -> Result<SdkInstance, (GuestFailure, bytes::Bytes)> {
        let stdout = CappedPipe::new(OUTPUT_CAP);
        let stderr = CappedPipe::new(OUTPUT_CAP);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .envs(&spec.env)
            .arg(&spec.app)
            .monotonic_clock(EpochMonotonicClock)
            .build_p1();
        let state = GuestState {
            wasi,
            limiter: MemoryLimiter::new(spec.limits.memory),
            sdk: Some(SdkHostState {
                outbound: self.outbound(),
                ..SdkHostState::with_env(spec.clone(), env, self.kv())
            }),
        };
        let mut store =
            guest::new_store(engine, state, Instant::now() + self.settings.init_timeout);
        let started = async {
            let instance = module.core_pre()?.instantiate_async(&mut store).await?;
            let memory = instance.get_memory(&mut store, "memory");
            if let Some(s) = store.data_mut().sdk.as_mut() {
                s.memory = memory;
            }
            if !module.is_snapshot {
                if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
                    init.call_async(&mut store, ()).await?;
                }
                let init = instance.get_typed_func::<(), i32>(&mut store, SDK_EXPORT_INIT)?;
                let code = init.call_async(&mut store, ()).await?;
                if code == result::NO_HANDLER {
                    wasmtime::bail!("the program's main never called platform.Handle");
                }
            }
            instance.get_typed_func::<i32, i32>(&mut store, SDK_EXPORT_HANDLE)
        };
        let handle =
            match tokio::time::timeout(self.settings.init_timeout + guest::DEADLINE_GRACE, started)
                .await
            {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    let (err, _) = stderr.take();
                    let hit = store.data().limiter.hits();
                    let failure = if e.to_string().contains("platform.Handle") {
                        GuestFailure::Instantiate(e.to_string())
                    } else {
                        match GuestFailure::classify(&e, hit, &err) {
                            GuestFailure::Trap(t) => GuestFailure::Instantiate(t),
                            other => other,
                        }
                    };
                    return Err((failure, err));
                }
                Err(_) => return Err((GuestFailure::Timeout, stderr.take().0)),
            };
        Ok(SdkInstance {
            store,
            handle,
            stdout,
            stderr,
            uses: 0,
            idle_since: Instant::now(),
        })
    }
}
