//! The monotonic clock SDK guests see: nanoseconds since the Unix epoch.
//!
//! wasmtime-wasi's default monotonic clock starts at zero for every WASI context. A Go
//! instance made from a snapshot keeps `time.Time` values (with monotonic readings) taken
//! while the snapshot was built, in another process; with a per-context clock,
//! `time.Since` of those goes negative. One clock anchored to the epoch, the same when the
//! snapshot is built and when it runs, keeps them meaningful. (It follows the wall clock,
//! so a large clock step on the host shows up as a jump.)

use std::time::{SystemTime, UNIX_EPOCH};

/// The anchored clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct EpochMonotonicClock;

impl wasmtime_wasi::HostMonotonicClock for EpochMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}
