//! How a process that serves guests must build its tokio runtime.
//!
//! Guests run inline in tokio tasks (on CPU slots, [`crate::cpu_share`]), so one poll of a
//! guest's task can take a whole time slice ([`crate::engine::EPOCH_TICK`], 5 ms) where a
//! poll of a hyper connection takes microseconds. Tokio looks for new I/O events (a request's
//! bytes arriving, a client ready for a response) only when a worker runs out of tasks or
//! every `event_interval` polls, 61 by default: with a flood of guests keeping both workers
//! busy, 61 polls are tens of milliseconds, and every other app's requests sit unread in the
//! kernel for that long before they can even queue for a slot. Measured with
//! `./scripts/bench --flood-only` (2 cores, 2026-11-30): a neighbour's p50/p99 beside a
//! 64-connection flood was 29–30/87 ms at 61, 10/28 ms at 15, 6.9/20.7 ms at 7, 4.0/13.2 ms
//! at 3 and 4.7/14.0 ms at 1. So the interval is [`IO_EVENT_INTERVAL`].

/// Polls between two looks for I/O events on a worker (tokio's default is 61).
pub const IO_EVENT_INTERVAL: u32 = 3;

/// A multi-threaded tokio runtime builder configured for serving guests (all drivers on,
/// [`IO_EVENT_INTERVAL`]); callers add thread counts and names.
pub fn multi_thread() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().event_interval(IO_EVENT_INTERVAL);
    builder
}
