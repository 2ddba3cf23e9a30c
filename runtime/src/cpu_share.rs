//! [`CpuGate`]: CPU shared fairly between apps when guests compete for it.
//!
//! Guests run as tokio tasks that yield at every epoch tick ([`crate::engine::EPOCH_TICK`]),
//! and tokio's run queue is first come, first served. An app flooded with CPU-bound
//! requests therefore fills the queue with as many runnable guests as it has requests in
//! flight, and a request of any other app waits behind one time slice of each: measured
//! (`./scripts/bench`, "flooded neighbour"), a 64-connection flood of the Go mux made a
//! neighbour's p99 213 times its p99 alone.
//!
//! So at every tick a guest gives back its turn and takes a new one from its app's gate: a
//! FIFO semaphore with one turn per core. Each app has at most that many guests past their
//! first time slice runnable at once, whatever its load; the rest wait in the gate, off the
//! run queue. A request's first time slice needs no turn, so a short request (most of
//! them) never touches the gate, and an app alone still uses every core.
//!
//! What this does not bound: a flood of short requests, each done within its first slice
//! (the bench's Go mux flood is ~1–2 ms a request and stays at ~200× p99 for the
//! neighbour). Bounding those needs the turn taken before the first slice and given back
//! at every host call that blocks, i.e. wasmtime's `call-hook` feature (see
//! benches/README.md, "A flooded neighbour").
//!
//! A turn lasts until the guest's next tick or [`TURN_MAX`], whichever comes first: a guest
//! that took a turn and then blocks in a host call (a slow body, outbound HTTP) gives it back
//! by itself, as no wasmtime call hook is compiled in to say so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::engine::EPOCH_TICK;

/// The longest a turn is held: two ticks (a guest still running yields at the next one).
pub const TURN_MAX: std::time::Duration = EPOCH_TICK.saturating_mul(2);

/// One app's turns.
#[derive(Clone)]
pub struct CpuGate(Arc<Semaphore>);

impl std::fmt::Debug for CpuGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuGate")
            .field("free_turns", &self.0.available_permits())
            .finish()
    }
}

/// The gates of every app in the process, by tenant and app: guests of one app share one
/// gate whatever the release or instance, and the engine's guests share the cores.
struct Gates {
    turns: usize,
    /// By tenant, then app (looked up by `&str`, no allocation on the request path).
    by_app: Mutex<HashMap<String, HashMap<String, CpuGate>>>,
}

static GATES: LazyLock<Gates> = LazyLock::new(|| Gates {
    turns: std::thread::available_parallelism().map_or(1, |n| n.get()),
    by_app: Mutex::new(HashMap::new()),
});

/// Turns per app: one per core.
pub fn turns_per_app() -> usize {
    GATES.turns
}

impl CpuGate {
    /// The gate of `tenant`'s app `app`.
    pub fn of(tenant: &str, app: &str) -> CpuGate {
        let mut map = GATES.by_app.lock();
        if let Some(g) = map.get(tenant).and_then(|apps| apps.get(app)) {
            return g.clone();
        }
        // Apps come and go: forget the gates nobody holds once there are many.
        if map.values().map(HashMap::len).sum::<usize>() >= 1024 {
            for apps in map.values_mut() {
                apps.retain(|_, g| Arc::strong_count(&g.0) > 1);
            }
            map.retain(|_, apps| !apps.is_empty());
        }
        let g = CpuGate(Arc::new(Semaphore::new(GATES.turns)));
        map.entry(tenant.to_string())
            .or_default()
            .insert(app.to_string(), g.clone());
        g
    }

    /// A gate of its own with `turns` turns (tests).
    pub fn with_turns(turns: usize) -> CpuGate {
        CpuGate(Arc::new(Semaphore::new(turns)))
    }

    /// Turns free right now.
    pub fn free_turns(&self) -> usize {
        self.0.available_permits()
    }
}

/// The turn one store holds, shared by its tick callback and the timer that ends it.
#[derive(Clone)]
pub struct CpuTurn {
    gate: CpuGate,
    held: Arc<Mutex<Option<(u64, OwnedSemaphorePermit)>>>,
    generation: Arc<AtomicU64>,
}

impl CpuTurn {
    /// A store's turn at `gate`, not yet taken.
    pub fn new(gate: CpuGate) -> Self {
        CpuTurn {
            gate,
            held: Arc::default(),
            generation: Arc::default(),
        }
    }

    /// Gives back the turn held, if any.
    pub fn release(&self) {
        drop(self.held.lock().take());
    }

    /// At a tick: gives back the turn held, waits (FIFO within the app, not past
    /// `deadline`) for the next, and holds it for at most [`TURN_MAX`]. A guest whose
    /// deadline passes while it waits goes on without one and meets its deadline at its
    /// next tick.
    pub async fn next(self, deadline: Instant) {
        drop(self.held.lock().take());
        let acquire = self.gate.0.clone().acquire_owned();
        let Ok(Ok(permit)) = tokio::time::timeout_at(deadline.into(), acquire).await else {
            return;
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.held.lock() = Some((generation, permit));
        let held = self.held.clone();
        tokio::spawn(async move {
            tokio::time::sleep(TURN_MAX).await;
            let mut slot = held.lock();
            if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
                slot.take();
            }
        });
    }
}

/// Gives back its store's turn when dropped. Keep it for the length of the guest call: a
/// guest that finishes between two ticks would otherwise keep its turn until [`TURN_MAX`],
/// idling a core its app could use.
#[must_use = "dropped at once, it gives the turn back before the guest runs"]
#[derive(Default)]
pub struct TurnRelease(Option<CpuTurn>);

impl TurnRelease {
    /// Releases `turn` when dropped.
    pub fn of(turn: CpuTurn) -> Self {
        TurnRelease(Some(turn))
    }
}

impl Drop for TurnRelease {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_turn_is_given_back_at_the_next_tick_or_after_turn_max() {
        let gate = CpuGate::with_turns(1);
        let a = CpuTurn::new(gate.clone());
        let b = CpuTurn::new(gate.clone());
        let far = Instant::now() + std::time::Duration::from_secs(60);
        a.clone().next(far).await;
        assert_eq!(gate.free_turns(), 0, "a holds the only turn");
        // b waits for it; a's timer gives it back within TURN_MAX.
        let started = Instant::now();
        b.clone().next(far).await;
        assert!(
            started.elapsed() >= TURN_MAX / 2,
            "b got a turn a still held"
        );
        assert_eq!(gate.free_turns(), 0, "b holds it now");
        // At b's next tick it gives the turn back before queueing again.
        b.clone().next(far).await;
        assert_eq!(gate.free_turns(), 0);
        tokio::time::sleep(TURN_MAX * 3).await;
        assert_eq!(gate.free_turns(), 1, "and the timer ends the last one");
    }

    #[tokio::test]
    async fn a_finished_call_gives_its_turn_back_at_once() {
        let gate = CpuGate::with_turns(1);
        let turn = CpuTurn::new(gate.clone());
        let release = TurnRelease::of(turn.clone());
        turn.next(Instant::now() + std::time::Duration::from_secs(60))
            .await;
        assert_eq!(gate.free_turns(), 0);
        drop(release);
        assert_eq!(gate.free_turns(), 1, "not left to the timer");
    }

    #[tokio::test]
    async fn a_guest_past_its_deadline_stops_waiting() {
        let gate = CpuGate::with_turns(1);
        // Someone holds the only turn for the whole test.
        let _held = gate.0.clone().try_acquire_owned().unwrap();
        let waiter = CpuTurn::new(gate.clone());
        let soon = Instant::now() + std::time::Duration::from_millis(1);
        waiter.clone().next(soon).await;
        assert!(waiter.held.lock().is_none(), "went on without a turn");
        assert_eq!(gate.free_turns(), 0);
    }

    #[test]
    fn apps_have_their_own_gates_and_one_turn_per_core() {
        let a = CpuGate::of("t", "cpu-share-a");
        let b = CpuGate::of("t", "cpu-share-b");
        assert!(!Arc::ptr_eq(&a.0, &b.0));
        assert!(Arc::ptr_eq(&a.0, &CpuGate::of("t", "cpu-share-a").0));
        assert!(!Arc::ptr_eq(&a.0, &CpuGate::of("u", "cpu-share-a").0));
        assert_eq!(a.free_turns(), turns_per_app());
    }
}
