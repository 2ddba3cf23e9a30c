//! `StatusService/GetStatus`: what is live and how it is doing, for `platform status`.
//!
//! Beside the dashboard because it reads the same traffic figures (the runtime in this
//! process, or every runtime over NATS). The figures cover the last five minutes of the
//! 10-second buckets the runtimes keep: requests, 5xx and cold starts are summed; p50 is
//! the request-weighted median of the buckets' medians and p99 the highest bucket p99 (an
//! upper bound), since buckets carry percentiles rather than histograms.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use platform_control::connect::Codec;
use platform_proto::v1::{
    AppStatus, GetAppRequest, GetStatusRequest, GetStatusResponse, ListAppsRequest, RuntimeStatus,
};
use platform_runtime::traffic::TrafficPoint;

use crate::WebState;

/// The window the figures cover.
pub const WINDOW_SECS: u64 = 300;

/// Traffic figures of one app over a window.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Requests.
    pub requests: u64,
    /// 5xx responses.
    pub errors: u64,
    /// Cold starts.
    pub cold: u64,
    /// Request-weighted median of the buckets' medians, ms.
    pub p50_ms: f64,
    /// Highest bucket p99, ms.
    pub p99_ms: f64,
}

/// Sums the points at or after `since` (seconds since the epoch).
pub fn figures(points: &[TrafficPoint], since: u64, bucket_secs: f64) -> Figures {
    let recent: Vec<&TrafficPoint> = points.iter().filter(|p| p.t >= since).collect();
    let mut f = Figures::default();
    let mut medians: Vec<(f64, u64)> = Vec::new();
    for p in &recent {
        let n = (p.rps * bucket_secs).round() as u64;
        f.requests += n;
        f.errors += u64::from(p.errors);
        f.cold += u64::from(p.cold);
        if n > 0 {
            medians.push((p.p50_ms, n));
            f.p99_ms = f.p99_ms.max(p.p99_ms);
        }
    }
    medians.sort_by(|a, b| a.0.total_cmp(&b.0));
    let half = f.requests.div_ceil(2);
    let mut seen = 0;
    for (m, n) in medians {
        seen += n;
        if seen >= half {
            f.p50_ms = m;
            break;
        }
    }
    f
}

/// `POST /platform.v1.StatusService/GetStatus` (JSON or binary protobuf, like every unary
/// call).
pub async fn get_status(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let codec = match Codec::from_headers(&headers) {
        Ok(c) => c,
        Err(unsupported) => return unsupported.into_response(),
    };
    let caller = match state.ctl.authenticate(&headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let req: GetStatusRequest = match codec.decode(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let apps = if req.app.is_empty() {
        platform_control::api::apps::list_apps(
            state.ctl.clone(),
            caller.clone(),
            ListAppsRequest {},
        )
        .await
        .map(|r| r.apps)
    } else {
        platform_control::api::apps::get_app(
            state.ctl.clone(),
            caller.clone(),
            GetAppRequest { app: req.app },
        )
        .await
        .map(|r| r.app.into_iter().collect())
    };
    let apps = match apps {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let now = platform_runtime::logs::LogEvent::now_ms() / 1000;
    let bucket = platform_runtime::traffic::BUCKET.as_secs_f64();
    let statuses = apps
        .into_iter()
        .map(|app| {
            let points = state.obs.traffic(&caller.tenant, &app.name);
            let f = figures(&points, now.saturating_sub(WINDOW_SECS), bucket);
            let last = state.obs.summary(&caller.tenant, &app.name).last_request_ms;
            AppStatus {
                requests: f.requests,
                errors: f.errors,
                error_rate: if f.requests == 0 {
                    0.0
                } else {
                    f.errors as f64 / f.requests as f64
                },
                p50_ms: f.p50_ms,
                p99_ms: f.p99_ms,
                cold_starts: f.cold,
                last_request_time: (last > 0).then(|| {
                    platform_control::store::timestamp(i64::try_from(last).unwrap_or(i64::MAX))
                }),
                app: Some(app),
            }
        })
        .collect();
    let revision = match state.ctl.store.revision().await {
        Ok(r) => r,
        Err(e) => {
            return platform_control::error::ApiError::from(e).into_response();
        }
    };
    let ts = |ms: u64| platform_control::store::timestamp(i64::try_from(ms).unwrap_or(i64::MAX));
    let runtimes = state
        .obs
        .runtimes()
        .into_iter()
        .map(|r| RuntimeStatus {
            name: r.name,
            version: r.version,
            revision: r.revision,
            start_time: Some(ts(r.started_ms)),
            last_seen_time: Some(ts(r.last_seen_ms)),
        })
        .collect();
    codec.encode(&GetStatusResponse {
        apps: statuses,
        traffic_available: state.obs.available(),
        runtimes,
        revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: u64, rps: f64, p50: f64, p99: f64, errors: u32) -> TrafficPoint {
        TrafficPoint {
            t,
            rps,
            p50_ms: p50,
            p99_ms: p99,
            errors,
            cold: 1,
        }
    }

    #[test]
    fn figures_sum_the_window() {
        let points = [
            point(100, 5.0, 100.0, 900.0, 9),
            point(1000, 1.0, 2.0, 5.0, 1),
            point(1010, 3.0, 4.0, 8.0, 0),
            point(1020, 0.0, 0.0, 0.0, 0),
        ];
        let f = figures(&points, 1000, 10.0);
        assert_eq!((f.requests, f.errors, f.cold), (40, 1, 3));
        assert_eq!(f.p50_ms, 4.0);
        assert_eq!(f.p99_ms, 8.0);
        assert_eq!(figures(&[], 0, 10.0), Figures::default());
    }
}
