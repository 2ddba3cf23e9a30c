//! The admin router: health, readiness, metrics.

use axum::body::Body;
use platform_test_guests as guests;
use tower::ServiceExt;

use crate::support::{App, TestHost, client};

async fn get(router: &axum::Router, path: &str) -> (u16, String) {
    let resp = router
        .clone()
        .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_after_routes_and_metrics_count_requests() {
    let host = TestHost::start().await;
    let router = platform_runtime::admin::router(host.rt.clone());
    assert_eq!(get(&router, "/healthz").await.0, 200);
    assert_eq!(get(&router, "/readyz").await.0, 503);
    let hello = guests::go("hello");
    host.deploy(&[App::new("hello", &hello, &["/hello"])]);
    assert_eq!(get(&router, "/readyz").await.0, 200);

    for _ in 0..3 {
        client().get(host.url("/hello")).send().await.unwrap();
    }
    client().get(host.url("/missing")).send().await.unwrap();
    let (status, text) = get(&router, "/metrics").await;
    assert_eq!(status, 200);
    use crate::support::metric_value;
    assert_eq!(
        metric_value(
            &text,
            "platform_requests_total",
            &[("app", "hello"), ("status", "200")]
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "platform_requests_total",
            &[("app", "-"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            "platform_request_duration_seconds_count",
            &[("app", "hello")]
        ),
        3.0
    );
    assert!(metric_value(&text, "platform_cold_loads_total", &[("app", "hello")]) >= 1.0);
    host.stop().await;
}
