//! The state every guest store carries, and the one linker all modules are checked against.
//!
//! Both WAGI and SDK modules use the same store type, so one [`wasmtime::Linker`] (WASI
//! preview 1 plus the Platform host ABI) is built once per engine and every module is
//! pre-instantiated against it. A module importing anything that linker lacks is refused
//! when it is loaded, with the import named.

use std::time::Instant;

use wasmtime::{Engine, Linker, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::engine::EPOCH_TICK;

/// Most elements any table of a guest may have: the instance pool's capacity per table
/// (the engine reserves room for it), the limit `table.grow` meets, and the largest
/// declared minimum an upload may have.
pub const MAX_TABLE_ELEMENTS: usize = 20_000;

/// Per-instance memory and table caps, recording whether the guest hit one (so a Go "out
/// of memory" exit is reported as the memory limit, not as a generic crash).
#[derive(Debug)]
pub struct MemoryLimiter {
    /// Largest linear memory allowed, in bytes.
    pub max_memory: u64,
    /// Set once a memory growth was refused.
    pub hit: bool,
    /// Set once a table growth was refused.
    pub table_hit: bool,
    /// The largest linear memory granted, in bytes (a reused instance past a bound
    /// retires).
    largest: u64,
}

/// Which limits a guest ran into (for classifying how it failed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitHits {
    /// A memory growth was refused.
    pub memory: bool,
    /// A table growth was refused.
    pub table: bool,
}

impl MemoryLimiter {
    /// A limiter allowing `max_memory` bytes of linear memory.
    pub fn new(max_memory: u64) -> Self {
        MemoryLimiter {
            max_memory,
            hit: false,
            table_hit: false,
            largest: 0,
        }
    }

    /// The largest linear memory granted so far, in bytes.
    pub fn largest(&self) -> u64 {
        self.largest
    }

    /// The limits hit so far.
    pub fn hits(&self) -> LimitHits {
        LimitHits {
            memory: self.hit,
            table: self.table_hit,
        }
    }

    /// Forgets the limits hit (an instance that serves again).
    pub fn reset(&mut self) {
        self.hit = false;
        self.table_hit = false;
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_memory {
            self.hit = true;
            return Ok(false);
        }
        self.largest = self.largest.max(desired as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS || maximum.is_some_and(|m| desired > m) {
            self.table_hit = true;
            return Ok(false);
        }
        Ok(true)
    }
}

/// The data in every guest [`Store`].
pub struct GuestState {
    /// WASI preview 1 context: env, stdio, clocks, random.
    pub wasi: WasiP1Ctx,
    /// Memory cap for this instance.
    pub limiter: MemoryLimiter,
    /// SDK host-call state (request being served, capabilities); `None` for WAGI.
    pub sdk: Option<crate::sdk::SdkHostState>,
}

/// Builds the shared linker: WASI preview 1 (async) and the Platform host ABI.
pub fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<GuestState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut GuestState| &mut s.wasi)?;
    crate::sdk::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Creates a store for one guest instance with its memory cap and wall-clock deadline.
///
/// Every epoch tick the guest yields to the executor (where [`crate::cpu_share::on_turns`]
/// gives its CPU slot to the next app waiting for one); past `deadline` it traps with
/// [`wasmtime::Trap::Interrupt`].
pub fn new_store(engine: &Engine, state: GuestState, deadline: Instant) -> Store<GuestState> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    set_deadline(&mut store, deadline);
    store
}

/// Sets (or moves) a store's wall-clock deadline: SDK pooled instances serve many requests;
/// component stores get theirs once.
pub fn set_deadline<T>(store: &mut Store<T>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(UpdateDeadline::Yield(1))
    });
}

/// How long past a guest's deadline the host waits for it to notice before dropping it.
pub const DEADLINE_GRACE: std::time::Duration = EPOCH_TICK.saturating_mul(20);
