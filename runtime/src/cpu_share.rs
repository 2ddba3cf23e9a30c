//! [`CpuGate`]: the CPU shared fairly between apps when guests compete for it.
//!
//! Guests run inline in tokio tasks, and tokio's run queue is first come, first served. An
//! app flooded with requests fills that queue with as many ready guests as it has requests
//! in flight, and a request of any other app waits behind all of them: measured
//! (`./scripts/bench`, "flooded neighbour"), 64 connections flooding the Go mux made a
//! neighbour's p99 213 times its p99 alone. Bounding each app's guests per core did not
//! help (that was the first attempt, still ~216x): on two cores, whenever a task is polled
//! at most one other guest runs, so an app is never at its bound when its next request is
//! looked at, and the flood's requests still ran one after the other ahead of the
//! neighbour's.
//!
//! So guests run on *CPU slots*, one per core, handed out by the process's dispatcher in
//! round robin between the apps that wait for one:
//! - a guest takes a slot before each stretch of running and gives it back whenever its
//!   future returns: `Pending` at an epoch tick (it then waits behind the other apps), in a
//!   host call that waits (a slow body, outbound HTTP, a sleep: a blocked guest holds no
//!   slot, so it neither idles a core nor deadlocks a guest it waits on), or `Ready`;
//! - a freed slot goes to the app after the last one served, to that app's oldest waiting
//!   guest (FIFO within an app, round robin between apps);
//! - a new request that finds a slot free while other guests run still steps to the back of
//!   tokio's run queue once before it starts, so the requests already in that queue (other
//!   apps' among them) register first: otherwise every request of a flood would start at
//!   once when polled, and the queue would stay first come, first served.
//!
//! A lone app still gets every core; with several busy apps each waits for a slot at most
//! about one slice (≤ 5 ms, [`crate::engine::EPOCH_TICK`]) of each other busy app per
//! slot. Waiting for a slot counts against the request's deadline (an app sent more than
//! its share times out its own requests, not its neighbours'). Shares are per app: a
//! tenant with many busy apps gets a share for each. The slots bound the wait for CPU; the
//! wait for a request to be *read* while guests keep the workers busy is bounded by the
//! runtime's I/O interval ([`crate::executor`]).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use parking_lot::Mutex;

/// One app's place at the dispatcher: its guests wait in one queue and share its turns.
#[derive(Clone)]
pub struct CpuGate(Arc<GateInner>);

struct GateInner {
    id: u64,
    cpu: Arc<Dispatcher>,
}

impl std::fmt::Debug for CpuGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuGate")
            .field("running", &self.running())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// The CPU slots of one dispatcher and the apps waiting for them.
struct Dispatcher {
    slots: usize,
    state: Mutex<DispatchState>,
}

#[derive(Default)]
struct DispatchState {
    free: usize,
    /// Apps with waiting guests, the next to be served first.
    ring: VecDeque<u64>,
    /// Apps holding slots or waiting for them, by gate id.
    apps: HashMap<u64, AppSlots>,
}

#[derive(Default)]
struct AppSlots {
    holding: usize,
    waiting: VecDeque<Arc<Ticket>>,
}

/// A guest's claim on a slot: granted by the dispatcher, then given back.
#[derive(Default)]
struct Ticket {
    granted: AtomicBool,
    waker: AtomicWaker,
}

/// What [`Dispatcher::register`] gave.
enum Registered {
    /// A slot, at once; `idle`: every slot was free (nothing else runs: no need to step back).
    Granted { idle: bool },
    /// A place in the app's queue.
    Queued(Arc<Ticket>),
}

static NEXT_GATE: AtomicU64 = AtomicU64::new(1);

impl Dispatcher {
    fn new(slots: usize) -> Arc<Self> {
        Arc::new(Dispatcher {
            slots,
            state: Mutex::new(DispatchState {
                free: slots,
                ..DispatchState::default()
            }),
        })
    }

    /// A slot for `gate` at once if one is free and nobody waits, else a ticket in its
    /// app's queue (allocated only then).
    fn register(&self, gate: u64) -> Registered {
        let mut st = self.state.lock();
        if st.free > 0 && st.ring.is_empty() {
            let idle = st.free == self.slots;
            st.free -= 1;
            st.apps.entry(gate).or_default().holding += 1;
            return Registered::Granted { idle };
        }
        let ticket = Arc::new(Ticket::default());
        let app = st.apps.entry(gate).or_default();
        app.waiting.push_back(ticket.clone());
        if app.waiting.len() == 1 {
            st.ring.push_back(gate);
        }
        Registered::Queued(ticket)
    }

    /// Gives back a granted slot of `gate`: to the next app's oldest waiting guest, if any.
    fn release(&self, gate: u64) {
        let next = {
            let mut st = self.state.lock();
            if let Some(app) = st.apps.get_mut(&gate) {
                app.holding = app.holding.saturating_sub(1);
                if app.holding == 0 && app.waiting.is_empty() {
                    st.apps.remove(&gate);
                }
            }
            Self::grant_next(&mut st)
        };
        if let Some(t) = next {
            t.waker.wake();
        }
    }

    /// Hands the free slot (one was just given back) to the app first in the ring.
    fn grant_next(st: &mut DispatchState) -> Option<Arc<Ticket>> {
        while let Some(gate) = st.ring.pop_front() {
            let Some(app) = st.apps.get_mut(&gate) else {
                continue;
            };
            let Some(ticket) = app.waiting.pop_front() else {
                continue;
            };
            app.holding += 1;
            if !app.waiting.is_empty() {
                st.ring.push_back(gate);
            }
            ticket.granted.store(true, Ordering::Release);
            return Some(ticket);
        }
        st.free += 1;
        None
    }

    /// Withdraws a ticket that is dropped: out of its queue if still waiting, else its
    /// slot given back.
    fn withdraw(&self, gate: u64, ticket: &Arc<Ticket>) {
        let mut guard = self.state.lock();
        if ticket.granted.load(Ordering::Acquire) {
            drop(guard);
            self.release(gate);
            return;
        }
        let st = &mut *guard;
        if let Some(app) = st.apps.get_mut(&gate) {
            app.waiting.retain(|t| !Arc::ptr_eq(t, ticket));
            if app.waiting.is_empty() {
                st.ring.retain(|g| *g != gate);
                if app.holding == 0 {
                    st.apps.remove(&gate);
                }
            }
        }
    }
}

/// The gates of every app in the process, by tenant and app, on the process's dispatcher.
struct Gates {
    cpu: Arc<Dispatcher>,
    /// By tenant, then app (looked up by `&str`, no allocation on the request path).
    by_app: Mutex<HashMap<String, HashMap<String, CpuGate>>>,
}

static GATES: LazyLock<Gates> = LazyLock::new(|| Gates {
    cpu: Dispatcher::new(std::thread::available_parallelism().map_or(1, |n| n.get())),
    by_app: Mutex::new(HashMap::new()),
});

/// The process's CPU slots: one per core.
pub fn cpu_slots() -> usize {
    GATES.cpu.slots
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
        let g = CpuGate::on(&GATES.cpu);
        map.entry(tenant.to_string())
            .or_default()
            .insert(app.to_string(), g.clone());
        g
    }

    fn on(cpu: &Arc<Dispatcher>) -> CpuGate {
        CpuGate(Arc::new(GateInner {
            id: NEXT_GATE.fetch_add(1, Ordering::Relaxed),
            cpu: cpu.clone(),
        }))
    }

    /// `n` gates sharing a dispatcher of their own with `slots` slots (tests).
    pub fn isolated(slots: usize, n: usize) -> Vec<CpuGate> {
        let cpu = Dispatcher::new(slots);
        (0..n).map(|_| CpuGate::on(&cpu)).collect()
    }

    /// The app's guests holding a slot right now.
    pub fn running(&self) -> usize {
        let st = self.0.cpu.state.lock();
        st.apps.get(&self.0.id).map_or(0, |a| a.holding)
    }

    /// The app's guests ready to run that wait for a slot right now.
    pub fn waiting(&self) -> usize {
        let st = self.0.cpu.state.lock();
        st.apps.get(&self.0.id).map_or(0, |a| a.waiting.len())
    }

    /// Takes a slot for the caller as if a guest ran elsewhere (tests).
    #[cfg(test)]
    fn hold(&self) {
        let got = self.0.cpu.register(self.0.id);
        assert!(matches!(got, Registered::Granted { .. }), "a slot was free");
    }

    /// Gives back a slot taken with [`CpuGate::hold`] (tests).
    #[cfg(test)]
    fn unhold(&self) {
        self.0.cpu.release(self.0.id);
    }
}

/// Runs `guest` on CPU slots granted to `gate`'s app (see the module docs). Wrap each guest
/// future once: a future wrapped twice would wait for a slot while holding one.
pub fn on_turns<F: Future>(gate: &CpuGate, guest: F) -> OnTurns<F> {
    OnTurns {
        guest,
        claim: Claim {
            gate: gate.clone(),
            slot: Slot::None,
            started: false,
        },
    }
}

pin_project_lite::pin_project! {
    /// A guest future that runs on its app's CPU slots; made by [`on_turns`].
    pub struct OnTurns<F> {
        #[pin]
        guest: F,
        claim: Claim,
    }
}

/// The slot an [`OnTurns`] holds or waits for; given back or withdrawn when dropped.
struct Claim {
    gate: CpuGate,
    slot: Slot,
    /// Whether the guest has run yet (a new request steps back once, see the module docs).
    started: bool,
}

enum Slot {
    /// Neither held nor asked for.
    None,
    /// Held (granted at once).
    Held,
    /// Asked for in the app's queue; held once the ticket is granted.
    Queued(Arc<Ticket>),
}

impl Claim {
    /// Ready once this guest holds a slot.
    fn poll_slot(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &self.slot {
            Slot::Held => return Poll::Ready(()),
            Slot::Queued(t) => {
                if !t.granted.load(Ordering::Acquire) {
                    t.waker.register(cx.waker());
                    if !t.granted.load(Ordering::Acquire) {
                        return Poll::Pending;
                    }
                }
            }
            Slot::None => match self.gate.0.cpu.register(self.gate.0.id) {
                Registered::Granted { idle } => {
                    self.slot = Slot::Held;
                    if !self.started && !idle {
                        // Granted, but others run: behind the requests already queued first.
                        self.started = true;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Registered::Queued(t) => {
                    t.waker.register(cx.waker());
                    let granted = t.granted.load(Ordering::Acquire);
                    self.slot = Slot::Queued(t);
                    if !granted {
                        return Poll::Pending;
                    }
                }
            },
        }
        self.started = true;
        Poll::Ready(())
    }

    /// Gives the slot back after a stretch of running.
    fn release(&mut self) {
        if !matches!(std::mem::replace(&mut self.slot, Slot::None), Slot::None) {
            self.gate.0.cpu.release(self.gate.0.id);
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.slot, Slot::None) {
            Slot::None => {}
            Slot::Held => self.gate.0.cpu.release(self.gate.0.id),
            Slot::Queued(t) => self.gate.0.cpu.withdraw(self.gate.0.id, &t),
        }
    }
}

impl<F: Future> Future for OnTurns<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.claim.poll_slot(cx).is_pending() {
            return Poll::Pending;
        }
        let polled = this.guest.poll(cx);
        // Done, yielding at a tick, or waiting in a host call: not running any more either way.
        this.claim.release();
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Returns `Pending` (waking itself) once, like a guest at an epoch tick.
    struct Tick(bool);

    impl Future for Tick {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if std::mem::replace(&mut self.0, true) {
                return Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn slices(
        gate: &CpuGate,
        trace: &Arc<Mutex<String>>,
        name: char,
        n: usize,
    ) -> Pin<Box<OnTurns<impl Future<Output = ()> + use<>>>> {
        let trace = trace.clone();
        Box::pin(on_turns(gate, async move {
            for _ in 0..n {
                trace.lock().push(name);
                Tick(false).await;
            }
        }))
    }

    #[tokio::test]
    async fn a_guest_waiting_in_a_host_call_holds_no_slot() {
        let gate = CpuGate::isolated(1, 1).remove(0);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let blocked = tokio::spawn(on_turns(&gate, rx));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(gate.running(), 0, "blocked, it gave its slot back");
        // Another guest runs meanwhile.
        assert_eq!(on_turns(&gate, async { 7 }).await, 7);
        tx.send(()).unwrap();
        blocked.await.unwrap().unwrap();
        assert_eq!((gate.running(), gate.waiting()), (0, 0));
    }

    /// The flooded-neighbour case by hand, one slot: app A has two guests waiting when B's
    /// first guest arrives; the slot a1 gives back goes to B, not to a2 queued before it.
    #[test]
    fn a_freed_slot_goes_round_robin_between_waiting_apps() {
        let gates = CpuGate::isolated(1, 2);
        let (a, b) = (&gates[0], &gates[1]);
        let trace = Arc::new(Mutex::new(String::new()));
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut a1 = slices(a, &trace, '1', 2);
        let mut a2 = slices(a, &trace, '2', 1);
        let mut b1 = slices(b, &trace, 'b', 1);
        a.hold();
        assert!(a1.as_mut().poll(&mut cx).is_pending());
        assert!(a2.as_mut().poll(&mut cx).is_pending());
        assert!(b1.as_mut().poll(&mut cx).is_pending());
        assert_eq!(*trace.lock(), "", "nothing ran without a slot");
        assert_eq!((a.running(), a.waiting(), b.waiting()), (1, 2, 1));
        a.unhold();
        // The slot went to a1, first in A's queue: a2 and b1 still wait.
        assert!(a2.as_mut().poll(&mut cx).is_pending());
        assert!(b1.as_mut().poll(&mut cx).is_pending());
        assert_eq!(*trace.lock(), "");
        let mut guests = [a1, a2, b1];
        let mut done = [false; 3];
        for _ in 0..10 {
            for (g, d) in guests.iter_mut().zip(done.iter_mut()) {
                if !*d {
                    *d = g.as_mut().poll(&mut cx).is_ready();
                }
            }
        }
        assert_eq!(done, [true; 3]);
        // FIFO over all guests would be "12b1"; round robin between apps serves b first.
        assert_eq!(*trace.lock(), "1b21");
        assert_eq!(
            (a.running(), a.waiting(), b.running(), b.waiting()),
            (0, 0, 0, 0)
        );
    }

    /// Real threads: guests on a one-slot dispatcher never run at the same time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guests_on_one_slot_never_run_at_once() {
        let gates = CpuGate::isolated(1, 2);
        let running = Arc::new(AtomicUsize::new(0));
        let guest = |gate: &CpuGate| {
            let running = running.clone();
            tokio::spawn(on_turns(gate, async move {
                for _ in 0..5 {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    assert_eq!(now, 1, "two guests ran at once on one slot");
                    std::thread::sleep(Duration::from_millis(1));
                    running.fetch_sub(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            }))
        };
        let guests: Vec<_> = (0..6).map(|i| guest(&gates[i % 2])).collect();
        for g in guests {
            g.await.unwrap();
        }
        assert_eq!(gates[0].running() + gates[1].running(), 0);
    }

    #[tokio::test]
    async fn a_dropped_guest_gives_its_slot_back_or_leaves_the_queue() {
        let gate = CpuGate::isolated(1, 1).remove(0);
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        // Dropped while waiting for a slot: out of the queue.
        gate.hold();
        let mut queued = Box::pin(on_turns(&gate, async {}));
        assert!(queued.as_mut().poll(&mut cx).is_pending());
        assert_eq!(gate.waiting(), 1);
        drop(queued);
        assert_eq!((gate.running(), gate.waiting()), (1, 0));
        // Dropped after the slot was granted, before it ran: the slot comes back.
        let mut granted = Box::pin(on_turns(&gate, async {}));
        assert!(granted.as_mut().poll(&mut cx).is_pending());
        gate.unhold();
        assert_eq!((gate.running(), gate.waiting()), (1, 0), "granted to it");
        drop(granted);
        assert_eq!((gate.running(), gate.waiting()), (0, 0));
        // Timed out while blocked: it held no slot.
        let slow = on_turns(&gate, tokio::time::sleep(Duration::from_secs(60)));
        assert!(
            tokio::time::timeout(Duration::from_millis(10), slow)
                .await
                .is_err()
        );
        assert_eq!(gate.running(), 0);
        // The dispatcher is whole: a guest runs at once.
        let mut next = Box::pin(on_turns(&gate, async { 7 }));
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(7));
    }

    #[test]
    fn apps_have_their_own_gates_on_one_dispatcher() {
        let a = CpuGate::of("t", "cpu-share-a");
        let b = CpuGate::of("t", "cpu-share-b");
        assert_ne!(a.0.id, b.0.id);
        assert!(Arc::ptr_eq(&a.0.cpu, &b.0.cpu));
        assert_eq!(a.0.id, CpuGate::of("t", "cpu-share-a").0.id);
        assert_ne!(a.0.id, CpuGate::of("u", "cpu-share-a").0.id);
        assert!(cpu_slots() >= 1);
    }
}
