//! Admin endpoints of the runtime: liveness, readiness and Prometheus metrics.
//!
//! The binary merges this router with the control API and the dashboard on the admin
//! listener.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::host::Runtime;

/// `/healthz`, `/readyz` and `/metrics` for `runtime`.
pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(runtime)
}

async fn readyz(State(rt): State<Arc<Runtime>>) -> impl IntoResponse {
    if rt.is_ready() {
        (
            StatusCode::OK,
            format!("ready: {} routes\n", rt.routes.load().len()),
        )
    } else if !rt.routes.is_loaded() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: routes not loaded yet\n".to_string(),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: apps still starting (modules being compiled or fetched)\n".to_string(),
        )
    }
}

async fn metrics(State(rt): State<Arc<Runtime>>) -> impl IntoResponse {
    rt.metrics.resident_modules.set(rt.cache.resident() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        rt.metrics.encode(),
    )
}
