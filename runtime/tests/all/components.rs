//! wasi:http components (wasip2), built from Rust source in `tests/guests/rust/`: served
//! with a fresh instance per request, with the same limits and faults as modules.

use std::time::Duration;

use platform_runtime::Limits;
use platform_runtime::abi::{self, AbiError, AbiKind};
use platform_test_guests as guests;

use crate::support::{App, TestHost, client, metric_value};

async fn component_host() -> TestHost {
    let host = TestHost::start().await;
    let component = guests::http_component();
    host.deploy(&[App {
        env: &[("GREETING", "hello from the release")],
        limits: Limits {
            memory: 64 << 20,
            timeout: Duration::from_secs(2),
            ..Limits::default()
        },
        ..App::new("comp", &component, &["/c"])
    }]);
    host
}

async fn get(host: &TestHost, path: &str) -> (u16, String) {
    let r = client().get(host.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    assert!(
        r.headers().contains_key("x-request-id"),
        "{path}: no x-request-id"
    );
    (status, r.text().await.unwrap())
}

async fn assert_healthy(host: &TestHost) {
    assert_eq!(
        get(host, "/c").await,
        (200, "hello from a component".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detected_as_a_wasi_http_component() {
    let bytes = std::fs::read(guests::http_component()).unwrap();
    assert_eq!(abi::detect(&bytes).unwrap().kind, AbiKind::Component);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_env_and_status() {
    let host = component_host().await;
    assert_healthy(&host).await;
    // Fresh instance per request: the second request is served like the first.
    assert_healthy(&host).await;
    assert_eq!(
        get(&host, "/c/env").await,
        (200, "GREETING=hello from the release".to_string())
    );
    assert_eq!(get(&host, "/c/status/418").await.0, 418);
    let m = host.rt.metrics.encode();
    assert!(
        metric_value(
            &m,
            "platform_requests_total",
            &[("app", "comp"), ("status", "200")]
        ) >= 3.0,
        "{m}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_and_stderr_lines_carry_the_request_id() {
    let host = component_host().await;
    let mut events = host.rt.logs.subscribe();
    let r = client().get(host.url("/c/log")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(r.text().await.unwrap(), "logged");
    let (mut out, mut err) = (false, false);
    while !(out && err) {
        let e = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("guest output was never logged")
            .unwrap();
        if e.request_id == id {
            out |= e.line == "component says hello on stdout";
            err |= e.line == "component says hello on stderr";
        }
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_is_a_500_and_the_host_keeps_serving() {
    let host = component_host().await;
    let (status, body) = get(&host, "/c/trap").await;
    assert_eq!(status, 500);
    assert!(body.contains("crashed"), "{body}");
    assert_healthy(&host).await;
    let m = host.rt.metrics.encode();
    assert_eq!(
        metric_value(&m, "platform_traps_total", &[("kind", "trap")]),
        1.0,
        "{m}"
    );
    assert!(
        host.rt
            .logs
            .recent()
            .iter()
            .any(|e| e.line.contains("the component was asked to trap")),
        "the panic message is not in the app's log"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_times_out_with_504() {
    let host = component_host().await;
    let (status, body) = get(&host, "/c/loop").await;
    assert_eq!(status, 504);
    assert!(body.contains("time limit"), "{body}");
    assert_healthy(&host).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_limit_with_500() {
    let host = component_host().await;
    let (status, body) = get(&host, "/c/memory").await;
    assert_eq!(status, 500);
    assert!(body.contains("out of memory"), "{body}");
    assert_healthy(&host).await;
    let m = host.rt.metrics.encode();
    assert_eq!(
        metric_value(&m, "platform_traps_total", &[("kind", "memory")]),
        1.0,
        "{m}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_streams_the_body_back() {
    let host = component_host().await;
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let r = client()
        .post(host.url("/c/echo"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), body.as_slice());
    host.stop().await;
}

#[test]
fn a_component_without_an_http_handler_is_refused_naming_its_exports() {
    let bytes = std::fs::read(guests::no_handler_component()).unwrap();
    let err = abi::detect(&bytes).unwrap_err();
    assert!(matches!(err, AbiError::NoHttpHandler { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("wasi:cli/run@0.2"), "{text}");
    assert!(text.contains("wasi:http/incoming-handler"), "{text}");
}

#[test]
fn a_component_importing_what_the_host_lacks_is_refused_naming_it() {
    // The hello component, wrapped so it also imports an interface no host provides.
    let bytes = wat::parse_str(
        r#"(component
            (import "acme:missing/thing@1.0.0" (instance))
            (export "wasi:http/incoming-handler@0.2.0" (instance 0))
        )"#,
    )
    .unwrap();
    let err = abi::detect(&bytes).unwrap_err();
    assert!(
        err.to_string().contains("acme:missing/thing@1.0.0"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_follows_the_allow_list_and_the_operator_policy() {
    use crate::outbound::{Upstream, allow};
    let up = Upstream::start(None).await;
    let entry = format!("127.0.0.1:{}", up.port());
    // The operator opened this one loopback destination; nothing else private.
    let host = TestHost::start_with(|c| c.outbound.allow_private = allow(&[entry.as_str()])).await;
    let component = guests::http_component();
    let other = Upstream::start(None).await;
    let other_entry = format!("127.0.0.1:{}", other.port());
    let listed = [entry.as_str(), other_entry.as_str()];
    host.deploy(&[
        App {
            outbound: &listed,
            ..App::new("allowed", &component, &["/allowed"])
        },
        App {
            outbound: &["*.example.com"],
            ..App::new("denied", &component, &["/denied"])
        },
    ]);
    let fetch = |route: &'static str, target: String| {
        let url = host.url(&format!("{route}/fetch"));
        async move {
            let r = client()
                .get(url)
                .query(&[("url", target)])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let target = format!("http://{}/hello", up.addr);
    assert_eq!(
        fetch("/allowed", target.clone()).await,
        (200, "upstream 200: upstream saw GET /hello".to_string())
    );
    // Not on the release's list: refused before any connection, the reason in the log.
    let (status, body) = fetch("/denied", target.clone()).await;
    assert_eq!(
        (status, body.as_str()),
        (502, "error: ErrorCode::HttpRequestDenied")
    );
    assert!(
        host.rt.logs.recent().iter().any(|e| e
            .line
            .contains("not in this release's allowed_outbound_hosts")),
        "the refusal is not in the app's log"
    );
    // Listed by the tenant but private and not opened by the operator: refused too.
    let (status, body) = fetch("/allowed", format!("http://{}/x", other.addr)).await;
    assert_eq!(
        (status, body.as_str()),
        (502, "error: ErrorCode::HttpRequestDenied")
    );
    assert_eq!(up.connections(), 1, "only the allowed request connected");
    assert_eq!(other.connections(), 0, "a refused request must not connect");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabytes_stream_in_and_out() {
    use futures::StreamExt;
    const TOTAL: usize = 100 << 20;
    const CHUNK: usize = 1 << 20;
    let host = TestHost::start().await;
    let component = guests::http_component();
    host.deploy(&[App {
        limits: Limits {
            max_body: 128 << 20,
            max_response: 128 << 20,
            timeout: Duration::from_secs(120),
            ..Limits::default()
        },
        ..App::new("stream", &component, &["/s"])
    }]);
    let chunk = |i: usize| bytes::Bytes::from(vec![(i % 251) as u8; CHUNK]);
    let body =
        futures::stream::iter((0..TOTAL / CHUNK).map(move |i| Ok::<_, std::io::Error>(chunk(i))));
    let r = client()
        .post(host.url("/s/echo"))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Read as it streams: the same bytes in the same order, never held whole here.
    let mut seen = 0usize;
    let mut stream = r.bytes_stream();
    while let Some(part) = stream.next().await {
        let part = part.unwrap();
        for (k, b) in part.iter().enumerate() {
            let at = seen + k;
            assert_eq!(*b, ((at / CHUNK) % 251) as u8, "byte {at}");
        }
        seen += part.len();
    }
    assert_eq!(seen, TOTAL);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_limits_are_cut() {
    let host = TestHost::start().await;
    let component = guests::http_component();
    host.deploy(&[App {
        limits: Limits {
            max_body: 1 << 20,
            max_response: 1 << 20,
            ..Limits::default()
        },
        ..App::new("small", &component, &["/s"])
    }]);
    // Declared too large: refused before the guest runs.
    let status = crate::support::status_of_large_post(host.addr, "/s/echo", 2 << 20).await;
    assert_eq!(status, 413);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_are_delivered_to_a_component() {
    use platform_runtime::route_table::TriggerTarget;
    use platform_runtime::{AppSpec, AppTarget, RouteSpec, RouteTable};
    use std::sync::Arc;

    let host = TestHost::start().await;
    let bytes = std::fs::read(guests::http_component()).unwrap();
    let digest = host.store.put(&bytes).unwrap();
    let target = Arc::new(AppTarget::single(Arc::new(AppSpec {
        module: digest,
        ..AppSpec::for_tests("comp-events")
    })));
    let table = RouteTable::build([(RouteSpec::parse("/c").unwrap(), target.clone())])
        .unwrap()
        .with_triggers(
            [(
                "com.example.ping".to_string(),
                TriggerTarget {
                    path: "/c/echo".into(),
                    target,
                },
            )],
            std::iter::empty(),
        );
    host.rt.routes.replace(table);
    let r = client()
        .post(host.events_url("/.platform/events"))
        .header("ce-specversion", "1.0")
        .header("ce-type", "com.example.ping")
        .header("ce-source", "/test")
        .header("ce-id", "evt-1")
        .header("content-type", "application/json")
        .body(r#"{"ping":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"ping":1}"#);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_after_the_head_cuts_the_body_and_is_counted() {
    let host = component_host().await;
    let r = client()
        .get(host.url("/c/trap-mid-body"))
        .send()
        .await
        .unwrap();
    // The head was already set: the status stands, the body is cut (an error, or less
    // than a whole answer), and the failure is logged and counted.
    assert_eq!(r.status(), 200);
    let body = r.bytes().await;
    assert!(
        body.as_ref()
            .map_or(true, |b| b.as_ref() == b"partial" || b.is_empty()),
        "{body:?}"
    );
    let mut m = host.rt.metrics.encode();
    for _ in 0..300 {
        if metric_value(&m, "platform_traps_total", &[("kind", "trap")]) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        m = host.rt.metrics.encode();
    }
    assert_eq!(
        metric_value(&m, "platform_traps_total", &[("kind", "trap")]),
        1.0,
        "{m}"
    );
    assert_healthy(&host).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_isolation_serves_a_component_as_it_is() {
    // A component always gets a fresh instance; `per-request` needs no snapshot for it.
    let host = TestHost::start().await;
    let component = guests::http_component();
    host.deploy(&[App {
        isolation: platform_runtime::Isolation::PerRequest,
        ..App::new("comp", &component, &["/c"])
    }]);
    assert_healthy(&host).await;
    assert_healthy(&host).await;
    host.stop().await;
}
