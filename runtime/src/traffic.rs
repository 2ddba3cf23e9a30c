//! `TrafficStats`: the last hour of traffic per app, for the dashboard's charts and status.
//!
//! Each app keeps 10-second buckets (360 for an hour) with request, error (5xx) and cold
//! start counts and a small log-scale latency histogram, from which p50/p99 are read. An app
//! with no traffic for an hour costs nothing but its map entry.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bucket width.
pub const BUCKET: Duration = Duration::from_secs(10);
/// How much history is kept.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// Upper bounds of the latency histogram buckets, in microseconds (last is "more").
const BOUNDS_US: [u64; 24] = [
    50,
    100,
    200,
    300,
    500,
    750,
    1_000,
    1_500,
    2_000,
    3_000,
    5_000,
    7_500,
    10_000,
    15_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    u64::MAX,
];

/// Number of latency histogram buckets in [`TrafficCounts::hist`].
pub const HIST_LEN: usize = BOUNDS_US.len();

/// Mergeable request counts over some span of time: one bucket of the history, or what a
/// runtime has seen since it last reported to the control plane (no per-request data, so
/// thousands of requests cost the same as one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrafficCounts {
    /// Finished requests.
    pub requests: u32,
    /// 5xx responses.
    pub errors: u32,
    /// Cold starts.
    pub cold: u32,
    /// Latency histogram: requests per bucket of the fixed log-scale bounds.
    pub hist: [u32; HIST_LEN],
    /// When the last of these requests finished (ms since the epoch), 0 if none.
    pub last_request_ms: u64,
}

impl TrafficCounts {
    /// Counts one finished request.
    pub fn add(&mut self, status: u16, latency: Duration, cold: bool, at_ms: u64) {
        self.requests = self.requests.saturating_add(1);
        if status >= 500 {
            self.errors = self.errors.saturating_add(1);
        }
        if cold {
            self.cold = self.cold.saturating_add(1);
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(HIST_LEN - 1);
        self.hist[i] = self.hist[i].saturating_add(1);
        self.last_request_ms = self.last_request_ms.max(at_ms);
    }

    /// Adds `other` to these counts.
    pub fn merge(&mut self, other: &TrafficCounts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.cold = self.cold.saturating_add(other.cold);
        for (a, b) in self.hist.iter_mut().zip(other.hist.iter()) {
            *a = a.saturating_add(*b);
        }
        self.last_request_ms = self.last_request_ms.max(other.last_request_ms);
    }
}

/// One app's counts since the last [`TrafficStats::take_delta`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppTraffic {
    /// Tenant of the app.
    pub tenant: String,
    /// App name.
    pub app: String,
    /// What was counted.
    pub counts: TrafficCounts,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    start_s: u64,
    counts: TrafficCounts,
}

#[derive(Debug, Default)]
struct AppSeries {
    buckets: VecDeque<Bucket>,
    last_request_ms: u64,
}

#[derive(Debug, Default)]
struct Inner {
    apps: HashMap<String, HashMap<String, AppSeries>>,
    /// Counts not yet taken by [`TrafficStats::take_delta`], when enabled.
    delta: Option<HashMap<(String, String), TrafficCounts>>,
}

/// One point of a series (one bucket).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TrafficPoint {
    /// Bucket start, seconds since the Unix epoch.
    pub t: u64,
    /// Requests per second over the bucket.
    pub rps: f64,
    /// Median latency, milliseconds (0 without requests).
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// 5xx responses.
    pub errors: u32,
    /// Cold starts.
    pub cold: u32,
}

/// Totals for an app over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct TrafficSummary {
    /// Requests in the last hour.
    pub requests: u64,
    /// 5xx responses in the last hour.
    pub errors: u64,
    /// Cold starts in the last hour.
    pub cold: u64,
    /// When the last request finished (ms since the epoch), 0 if none.
    pub last_request_ms: u64,
}

impl TrafficSummary {
    /// Share of requests that failed, 0..=1.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// Per-app traffic history, keyed by tenant then app.
#[derive(Debug, Default)]
pub struct TrafficStats {
    inner: Mutex<Inner>,
}

fn now() -> (u64, u64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), u64::try_from(d.as_millis()).unwrap_or(0))
}

impl TrafficStats {
    /// Records one finished request.
    pub fn record(&self, tenant: &str, app: &str, status: u16, latency: Duration, cold: bool) {
        let (secs, ms) = now();
        self.record_at(tenant, app, status, latency, cold, secs, ms);
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "internal, with the clock made explicit for tests"
    )]
    fn record_at(
        &self,
        tenant: &str,
        app: &str,
        status: u16,
        latency: Duration,
        cold: bool,
        secs: u64,
        ms: u64,
    ) {
        let mut one = TrafficCounts::default();
        one.add(status, latency, cold, ms);
        self.add_at(tenant, app, &one, secs, true);
    }

    /// Adds counts reported by a runtime elsewhere (the control plane's view of a
    /// cluster) to the current bucket. They are not exported again by [`Self::take_delta`].
    pub fn merge(&self, tenant: &str, app: &str, counts: &TrafficCounts) {
        let (secs, _) = now();
        self.add_at(tenant, app, counts, secs, false);
    }

    /// From now on, also keep what [`Self::record`] counts for [`Self::take_delta`] (a
    /// runtime that reports its traffic to the control plane).
    pub fn enable_delta(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.delta.get_or_insert_with(HashMap::new);
        }
    }

    /// What was recorded since the last call, per app (empty unless [`Self::enable_delta`]
    /// was called). Its size is bounded by the number of apps, not of requests.
    pub fn take_delta(&self) -> Vec<AppTraffic> {
        let Ok(mut inner) = self.inner.lock() else {
            return Vec::new();
        };
        let Some(delta) = inner.delta.as_mut() else {
            return Vec::new();
        };
        delta
            .drain()
            .map(|((tenant, app), counts)| AppTraffic {
                tenant,
                app,
                counts,
            })
            .collect()
    }

    fn add_at(&self, tenant: &str, app: &str, counts: &TrafficCounts, secs: u64, export: bool) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let inner = &mut *inner;
        if export && let Some(delta) = inner.delta.as_mut() {
            delta
                .entry((tenant.to_string(), app.to_string()))
                .or_default()
                .merge(counts);
        }
        let per_tenant = match inner.apps.get_mut(tenant) {
            Some(t) => t,
            None => inner.apps.entry(tenant.to_string()).or_default(),
        };
        let series = match per_tenant.get_mut(app) {
            Some(s) => s,
            None => per_tenant.entry(app.to_string()).or_default(),
        };
        let start = secs - secs % BUCKET.as_secs();
        if series.buckets.back().is_none_or(|b| b.start_s != start) {
            series.buckets.push_back(Bucket {
                start_s: start,
                ..Default::default()
            });
            let oldest = start.saturating_sub(WINDOW.as_secs());
            while series.buckets.front().is_some_and(|b| b.start_s < oldest) {
                series.buckets.pop_front();
            }
        }
        if let Some(b) = series.buckets.back_mut() {
            b.counts.merge(counts);
        }
        series.last_request_ms = series.last_request_ms.max(counts.last_request_ms);
    }

    /// The last hour of `app`, one point per bucket, oldest first, with empty buckets
    /// filled in so charts have an even time axis.
    pub fn series(&self, tenant: &str, app: &str) -> Vec<TrafficPoint> {
        let (secs, _) = now();
        self.series_at(tenant, app, secs)
    }

    fn series_at(&self, tenant: &str, app: &str, secs: u64) -> Vec<TrafficPoint> {
        let width = BUCKET.as_secs();
        let end = secs - secs % width;
        let n = WINDOW.as_secs() / width;
        let start = end - (n - 1) * width;
        let inner = match self.inner.lock() {
            Ok(a) => a,
            Err(_) => return Vec::new(),
        };
        let buckets = inner
            .apps
            .get(tenant)
            .and_then(|t| t.get(app))
            .map(|s| &s.buckets);
        (0..n)
            .map(|i| {
                let t = start + i * width;
                let b = buckets
                    .and_then(|bs| bs.iter().find(|b| b.start_s == t))
                    .copied()
                    .unwrap_or(Bucket {
                        start_s: t,
                        ..Default::default()
                    });
                TrafficPoint {
                    t,
                    rps: f64::from(b.counts.requests) / width as f64,
                    p50_ms: quantile(&b.counts.hist, 0.50),
                    p99_ms: quantile(&b.counts.hist, 0.99),
                    errors: b.counts.errors,
                    cold: b.counts.cold,
                }
            })
            .collect()
    }

    /// Totals of the last hour.
    pub fn summary(&self, tenant: &str, app: &str) -> TrafficSummary {
        let Ok(inner) = self.inner.lock() else {
            return TrafficSummary::default();
        };
        let Some(s) = inner.apps.get(tenant).and_then(|t| t.get(app)) else {
            return TrafficSummary::default();
        };
        let (secs, _) = now();
        let oldest = secs.saturating_sub(WINDOW.as_secs());
        let mut out = TrafficSummary {
            last_request_ms: s.last_request_ms,
            ..Default::default()
        };
        for b in s.buckets.iter().filter(|b| b.start_s >= oldest) {
            out.requests += u64::from(b.counts.requests);
            out.errors += u64::from(b.counts.errors);
            out.cold += u64::from(b.counts.cold);
        }
        out
    }
}

fn quantile(hist: &[u32; HIST_LEN], q: f64) -> f64 {
    let total: u64 = hist.iter().map(|&c| u64::from(c)).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for (i, &c) in hist.iter().enumerate() {
        seen += u64::from(c);
        if seen >= rank {
            let bound = BOUNDS_US[i];
            let us = if bound == u64::MAX {
                BOUNDS_US[i - 1] * 2
            } else {
                bound
            };
            return us as f64 / 1000.0;
        }
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_counts_and_percentiles() {
        let s = TrafficStats::default();
        let t0 = 1_000_000;
        for i in 0..100u64 {
            let latency = Duration::from_micros(if i < 98 { 400 } else { 40_000 });
            s.record_at(
                "t",
                "a",
                if i % 10 == 0 { 500 } else { 200 },
                latency,
                i == 0,
                t0 + 1,
                0,
            );
        }
        s.record_at("t", "a", 200, Duration::from_millis(1), false, t0 + 25, 0);
        let series = s.series_at("t", "a", t0 + 30);
        assert_eq!(series.len(), 360);
        let p = series.iter().find(|p| p.t == t0 - t0 % 10).unwrap();
        assert_eq!(p.rps, 10.0);
        assert_eq!(p.errors, 10);
        assert_eq!(p.cold, 1);
        assert_eq!(p.p50_ms, 0.5);
        assert_eq!(p.p99_ms, 50.0);
        let last = series.last().unwrap();
        assert_eq!(last.t, t0 + 30);
        assert!(series.iter().any(|p| p.t == t0 + 20 && p.rps == 0.1));
        // Other apps and tenants are separate.
        assert!(s.series_at("t", "b", t0 + 30).iter().all(|p| p.rps == 0.0));
        assert!(s.series_at("u", "a", t0 + 30).iter().all(|p| p.rps == 0.0));
    }

    #[test]
    fn old_buckets_fall_out_of_the_window() {
        let s = TrafficStats::default();
        s.record_at("t", "a", 200, Duration::from_millis(1), false, 10_000, 0);
        s.record_at(
            "t",
            "a",
            200,
            Duration::from_millis(1),
            false,
            10_000 + 7200,
            0,
        );
        let inner = s.inner.lock().unwrap();
        assert_eq!(inner.apps["t"]["a"].buckets.len(), 1);
    }

    #[test]
    fn delta_holds_what_was_recorded_since_the_last_take_and_merges_back() {
        let s = TrafficStats::default();
        s.record("t", "a", 200, Duration::from_millis(1), false);
        assert!(s.take_delta().is_empty(), "off until enabled");
        s.enable_delta();
        s.record("t", "a", 200, Duration::from_millis(1), true);
        s.record("t", "a", 503, Duration::from_millis(40), false);
        s.record("t", "b", 200, Duration::from_millis(1), false);
        let mut d = s.take_delta();
        d.sort_by(|x, y| x.app.cmp(&y.app));
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].counts.requests, d[0].counts.errors, d[0].counts.cold),
            (2, 1, 1)
        );
        assert_eq!(d[1].counts.requests, 1);
        assert!(s.take_delta().is_empty(), "taken");
        let control = TrafficStats::default();
        control.enable_delta();
        for a in &d {
            control.merge(&a.tenant, &a.app, &a.counts);
            control.merge(&a.tenant, &a.app, &a.counts);
        }
        let sum = control.summary("t", "a");
        assert_eq!((sum.requests, sum.errors, sum.cold), (4, 2, 2));
        assert_eq!(sum.last_request_ms, d[0].counts.last_request_ms);
        assert!(
            control.take_delta().is_empty(),
            "merged counts are not exported again"
        );
        let p = control.series("t", "a");
        assert_eq!(p.iter().map(|p| p.rps).sum::<f64>(), 0.4);
        assert!(p.iter().any(|p| p.p99_ms == 50.0));
    }
}
