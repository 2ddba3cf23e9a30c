//! The wasmtime engine, configured for serving.
//!
//! - Async execution, so a guest that blocks in a host call or runs long never holds a
//!   tokio worker: epoch ticks make it yield back to the executor.
//! - Epoch interruption for wall-clock deadlines (one background thread ticks the epoch).
//! - The pooling instance allocator with copy-on-write memory images, and linear memory
//!   kept resident between uses: on these machines that took page faults per Go request
//!   from ~200 to ~0 and halved latency (see `shared/design/MEASURED.md`).
//!
//! The engine's configuration decides whether a precompiled artifact can be loaded, so
//! [`EngineFingerprint`] names it in artifact file names.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances by default ([`EngineSettings::epoch_tick`]).
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Tunables for the engine; defaults suit a small serving host.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Most guest instances alive at once (pool slots).
    pub max_instances: u32,
    /// Largest linear memory any instance may have, whatever its release allows.
    pub max_memory: u64,
    /// Bytes of each linear memory kept resident between uses of a pool slot.
    pub keep_resident: usize,
    /// Idle pool slots kept warm (their memory stays mapped).
    pub max_warm_slots: u32,
    /// Use the pooling allocator (off only for comparisons).
    pub pooling: bool,
    /// How often the epoch advances: a running guest yields to the executor (and gives its
    /// CPU slot to the next app waiting) at least this often, and deadlines are enforced
    /// with this granularity. Shorter slices let a neighbour in sooner beside a flood of
    /// long requests, at the cost of more yields.
    pub epoch_tick: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_instances: 512,
            max_memory: 4 << 30,
            keep_resident: 8 << 20,
            max_warm_slots: 64,
            pooling: true,
            epoch_tick: EPOCH_TICK,
        }
    }
}

/// Errors building the engine.
#[derive(Debug, thiserror::Error)]
#[error("cannot configure the wasmtime engine: {0}")]
pub struct EngineError(String);

/// Builds the serving engine.
pub fn build_engine(settings: &EngineSettings) -> Result<Engine, EngineError> {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .wasm_backtrace_max_frames(None)
        .cranelift_opt_level(wasmtime::OptLevel::Speed)
        .memory_init_cow(true)
        .parallel_compilation(true);
    // Guests must not run host code with unlimited native stack.
    config.max_wasm_stack(1 << 20);
    config.async_stack_size(2 << 20);
    // `PLATFORM_WASM_PROFILER=perfmap` writes /tmp/perf-<pid>.map, so `perf report` names
    // guest functions (for profiling; not a serving setting).
    if std::env::var("PLATFORM_WASM_PROFILER").is_ok_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if settings.pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(settings.max_instances)
            .total_memories(settings.max_instances)
            .total_tables(settings.max_instances)
            .total_stacks(settings.max_instances)
            .total_component_instances(settings.max_instances)
            .max_memory_size(usize::try_from(settings.max_memory).unwrap_or(usize::MAX))
            .linear_memory_keep_resident(settings.keep_resident)
            .table_elements(crate::guest::MAX_TABLE_ELEMENTS)
            .table_keep_resident(1 << 20)
            .max_unused_warm_slots(settings.max_warm_slots)
            .pagemap_scan(Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config).map_err(|e| EngineError(format!("{e:#}")))
}

/// Compiles a core module or a component (told apart by its header) into an artifact
/// for `engine`: what [`wasmtime::Module::deserialize_file`] or
/// [`wasmtime::component::Component::deserialize_file`] maps back.
pub fn precompile(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Vec<u8>> {
    if wasmparser::Parser::is_component(bytes) {
        engine.precompile_component(bytes)
    } else {
        engine.precompile_module(bytes)
    }
}

/// Identifies the engine configuration an artifact was compiled for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineFingerprint(String);

impl EngineFingerprint {
    /// The fingerprint of `engine` (stable for a given wasmtime build and configuration).
    pub fn of(engine: &Engine) -> Self {
        struct ShaHasher(Sha256);
        impl Hasher for ShaHasher {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, bytes: &[u8]) {
                self.0.update(bytes);
            }
        }
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        "wasmtime-48".hash(&mut h);
        EngineFingerprint(hex::encode(&h.0.finalize()[..8]))
    }

    /// Short hex form used in file names.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Advances the engine's epoch every tick ([`EngineSettings::epoch_tick`]) until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`, advancing its epoch every `tick`.
    pub fn start(engine: &Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .ok();
        EpochTicker { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
