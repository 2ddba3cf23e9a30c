//! wasi:http components (wasip2), built from Rust source in `tests/guests/rust/`: served
//! with a fresh instance per request (or reused ones for a `pooled` release), with the
//! same limits and faults as modules.

use std::time::Duration;

use platform_runtime::abi::{self, AbiError, AbiKind};
use platform_runtime::{Isolation, Limits};
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
        isolation: Isolation::PerRequest,
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
        isolation: Isolation::PerRequest,
        ..App::new("comp", &component, &["/c"])
    }]);
    assert_healthy(&host).await;
    assert_healthy(&host).await;
    host.stop().await;
}

/// Sends a chunked body (no Content-Length) of `total` bytes to `path` over a raw
/// connection, writing from a task of its own while the response is read, so a host
/// that answers early and closes is seen answering (not as a failed write). Returns the
/// status line's code and the raw response.
async fn chunked_post(addr: std::net::SocketAddr, path: &str, total: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            wr.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            wr.write_all(&chunk[..n]).await?;
            wr.write_all(b"\r\n").await?;
            sent += n;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), rd.read_to_end(&mut buf)).await;
    writer.abort();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

async fn small_body_host() -> TestHost {
    let host = TestHost::start().await;
    let component = guests::http_component();
    host.deploy(&[App {
        limits: Limits {
            max_body: 1 << 20,
            max_response: 8 << 20,
            ..Limits::default()
        },
        isolation: Isolation::PerRequest,
        ..App::new("small", &component, &["/s"])
    }]);
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_refused_with_413_before_the_head() {
    let host = small_body_host().await;
    // Within the limit, a chunked body reaches the guest whole.
    let (status, text) = chunked_post(host.addr, "/s/drain", 512 << 10).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(&format!("read {} bytes", 512 << 10)),
        "{text}"
    );
    // Over it, with no length declared: the guest reads until the limit, its read fails,
    // and whatever it answers then, the client gets 413 (the head was not sent yet).
    let (status, text) = chunked_post(host.addr, "/s/drain", 3 << 20).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("larger than this function's limit"), "{text}");
    assert!(
        !text.contains("body error"),
        "the guest's own answer leaked: {text}"
    );
    // The refused request took nothing with it.
    let (status, _) = chunked_post(host.addr, "/s/drain", 1000).await;
    assert_eq!(status, 200);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_after_the_head_cuts_the_response() {
    use futures::StreamExt;
    let host = small_body_host().await;
    let mut events = host.rt.logs.subscribe();
    use futures::SinkExt;
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(rx);
    tx.send(Ok(bytes::Bytes::from(vec![1u8; 256 << 10])))
        .await
        .unwrap();
    // /echo sets its head before it reads: the head goes out with the first bytes.
    let r = client()
        .post(host.url("/s/echo"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    // Now past the limit, still without a length.
    let feeder = tokio::spawn(async move {
        for _ in 0..12 {
            if tx
                .send(Ok(bytes::Bytes::from(vec![2u8; 256 << 10])))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut stream = r.bytes_stream();
    let mut received = 0usize;
    let mut failed = false;
    while let Some(part) = stream.next().await {
        match part {
            Ok(b) => received += b.len(),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    feeder.abort();
    // A clean end would claim a complete answer: the body must be cut instead.
    assert!(failed, "the response ended cleanly after {received} bytes");
    assert!(
        received <= 1 << 20,
        "{received} bytes echoed past the limit"
    );
    // The failure is logged with the request id and counted.
    let line = loop {
        let e = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("the cut was never logged")
            .unwrap();
        if e.request_id == id && e.line.starts_with("[platform]") {
            break e.line.clone();
        }
    };
    assert!(line.contains("larger than this function's limit"), "{line}");
    let m = host.rt.metrics.encode();
    assert_eq!(
        metric_value(&m, "platform_traps_total", &[("kind", "body_too_large")]),
        1.0,
        "{m}"
    );
    host.stop().await;
}

#[test]
fn a_rust_component_importing_what_the_host_lacks_is_refused_naming_it() {
    // Built from Rust source: a wasi:http handler that also imports
    // `acme:missing/thing@1.0.0` (declared with wit-bindgen, and called).
    let bytes = std::fs::read(guests::missing_import_component()).unwrap();
    let err = abi::detect(&bytes).unwrap_err();
    assert!(
        matches!(err, AbiError::UnknownComponentImport { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("acme:missing/thing@1.0.0"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_subject_triggers_deliver_to_a_component() {
    use platform_runtime::route_table::TriggerTarget;
    use platform_runtime::{AppSpec, AppTarget, RouteSpec, RouteTable};
    use std::sync::Arc;

    const NATS: &str = "nats://127.0.0.1:4222";
    let host = TestHost::start().await;
    let bytes = std::fs::read(guests::http_component()).unwrap();
    let digest = host.store.put(&bytes).unwrap();
    let target = Arc::new(AppTarget::single(Arc::new(AppSpec {
        module: digest,
        isolation: Isolation::PerRequest,
        ..AppSpec::for_tests("comp-nats")
    })));
    let prefix = format!(
        "comp{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let subject = format!("{prefix}.orders.>");
    let table = RouteTable::build([(RouteSpec::parse("/c").unwrap(), target.clone())])
        .unwrap()
        .with_triggers(
            std::iter::empty(),
            [(
                subject.clone(),
                TriggerTarget {
                    path: "/c/echo".into(),
                    target,
                },
            )],
        );
    host.rt.routes.replace(table);
    let nats_client =
        platform_runtime::subject_triggers::connect(NATS, async_nats::ConnectOptions::new())
            .await
            .expect("NATS on 127.0.0.1:4222");
    tokio::spawn(platform_runtime::subject_triggers::follow(
        host.rt.clone(),
        nats_client,
        std::future::pending(),
    ));
    let nats = async_nats::connect(NATS).await.unwrap();
    // The subscription is made asynchronously: ask until the component answers.
    let mut reply = None;
    for _ in 0..100 {
        match tokio::time::timeout(
            Duration::from_secs(5),
            nats.request(format!("{prefix}.orders.eu"), "order 42".into()),
        )
        .await
        {
            Ok(Ok(r)) => {
                reply = Some(r);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let reply = reply.expect("the component never answered on NATS");
    let headers = reply.headers.clone().unwrap();
    assert_eq!(headers.get("Status").unwrap().as_str(), "200");
    assert!(headers.get("X-Request-Id").is_some());
    // /echo streams the message back: the payload reached the guest as the body.
    assert_eq!(reply.payload.as_ref(), b"order 42");
    host.stop().await;
}

/// `count <n>` from the component's per-instance request counter.
async fn count(host: &TestHost, route: &str) -> u64 {
    let (status, body) = get(host, &format!("{route}/count")).await;
    assert_eq!(status, 200, "{body}");
    body.strip_prefix("count ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a count: {body:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_component_release_reuses_its_instance() {
    let host = TestHost::start().await;
    let component = guests::http_component();
    host.deploy(&[
        App {
            isolation: Isolation::Pooled,
            ..App::new("reused", &component, &["/r"])
        },
        App {
            isolation: Isolation::PerRequest,
            ..App::new("fresh", &component, &["/f"])
        },
    ]);
    // Sequential requests find the instance the previous one left: its memory (a
    // counter in a static) carries over.
    assert_eq!(count(&host, "/r").await, 1);
    assert_eq!(count(&host, "/r").await, 2);
    assert_eq!(count(&host, "/r").await, 3);
    assert_eq!(host.rt.component_pools.idle_instances(), 1);
    // Per-request (the default for components): every request starts from scratch.
    assert_eq!(count(&host, "/f").await, 1);
    assert_eq!(count(&host, "/f").await, 1);
    assert_eq!(host.rt.component_pools.idle_instances(), 1);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_retires_a_reused_instance() {
    let host = TestHost::start().await;
    let component = guests::http_component();
    host.deploy(&[App {
        isolation: Isolation::Pooled,
        limits: Limits {
            memory: 64 << 20,
            timeout: Duration::from_secs(2),
            ..Limits::default()
        },
        ..App::new("reused", &component, &["/r"])
    }]);
    assert_eq!(count(&host, "/r").await, 1);
    assert_eq!(count(&host, "/r").await, 2);
    // A trap: 500, and the instance is dropped, not kept.
    assert_eq!(get(&host, "/r/trap").await.0, 500);
    assert_eq!(count(&host, "/r").await, 1, "a trapped instance was reused");
    assert_eq!(count(&host, "/r").await, 2);
    // The same for the memory limit and the time limit.
    assert_eq!(get(&host, "/r/memory").await.0, 500);
    assert_eq!(
        count(&host, "/r").await,
        1,
        "an instance out of memory was reused"
    );
    assert_eq!(get(&host, "/r/loop").await.0, 504);
    assert_eq!(
        count(&host, "/r").await,
        1,
        "an interrupted instance was reused"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_releases_never_share_an_instance() {
    let host = TestHost::start().await;
    let component = guests::http_component();
    // The same component bytes, all pooled: under two apps, under a second release of
    // the first app, and under another tenant's app of the same name.
    host.deploy(&[
        App {
            isolation: Isolation::Pooled,
            ..App::new("one", &component, &["/one"])
        },
        App {
            isolation: Isolation::Pooled,
            ..App::new("two", &component, &["/two"])
        },
        App {
            isolation: Isolation::Pooled,
            release: "2",
            ..App::new("one", &component, &["/one-v2"])
        },
        App {
            isolation: Isolation::Pooled,
            tenant: "other",
            ..App::new("one", &component, &["/other-one"])
        },
    ]);
    assert_eq!(count(&host, "/one").await, 1);
    assert_eq!(count(&host, "/one").await, 2);
    assert_eq!(
        count(&host, "/two").await,
        1,
        "app two got app one's instance"
    );
    assert_eq!(
        count(&host, "/one-v2").await,
        1,
        "release 2 got release 1's instance"
    );
    assert_eq!(
        count(&host, "/other-one").await,
        1,
        "a tenant got another's instance"
    );
    assert_eq!(count(&host, "/one").await, 3);
    assert_eq!(count(&host, "/two").await, 2);
    assert_eq!(host.rt.component_pools.idle_instances(), 4);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_config_reads_the_release_env() {
    let host = TestHost::start().await;
    let component = guests::config_component();
    host.deploy(&[App {
        env: &[("GREETING", "hello from config"), ("COLOR", "blue")],
        isolation: Isolation::PerRequest,
        ..App::new("cfg", &component, &["/cfg"])
    }]);
    assert_eq!(
        get(&host, "/cfg/GREETING").await,
        (200, "GREETING=hello from config".to_string())
    );
    assert_eq!(
        get(&host, "/cfg/MISSING").await,
        (200, "MISSING is not set".to_string())
    );
    assert_eq!(
        get(&host, "/cfg").await,
        (200, "COLOR=blue\nGREETING=hello from config\n".to_string())
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_keyvalue_keeps_data_per_app_in_the_platform_stores() {
    let host = TestHost::start().await;
    let component = guests::kv_component();
    host.deploy(&[
        App {
            isolation: Isolation::PerRequest,
            ..App::new("kv-a", &component, &["/a"])
        },
        App {
            isolation: Isolation::PerRequest,
            ..App::new("kv-b", &component, &["/b"])
        },
        App {
            isolation: Isolation::PerRequest,
            tenant: "other",
            ..App::new("kv-a", &component, &["/other-a"])
        },
    ]);
    assert_eq!(get(&host, "/a/set/color?v=blue").await, (200, "ok".into()));
    // Kept by the store, not the instance: the next (fresh) instance reads it.
    assert_eq!(get(&host, "/a/get/color").await, (200, "color=blue".into()));
    assert_eq!(get(&host, "/a/incr/visits").await, (200, "1".into()));
    assert_eq!(get(&host, "/a/incr/visits").await, (200, "2".into()));
    assert_eq!(get(&host, "/a/keys").await, (200, "color\nvisits".into()));
    assert_eq!(
        get(&host, "/a/many?k=color,nope").await,
        (200, "color=blue\nnope unset".into())
    );
    // Another app of the tenant, and another tenant's app of the same name, see none of
    // it, and what they write stays theirs.
    assert_eq!(
        get(&host, "/b/get/color").await,
        (404, "color is not set".into())
    );
    assert_eq!(get(&host, "/b/keys").await, (200, String::new()));
    assert_eq!(
        get(&host, "/other-a/get/color").await,
        (404, "color is not set".into())
    );
    assert_eq!(get(&host, "/b/set/color?v=red").await, (200, "ok".into()));
    assert_eq!(get(&host, "/a/get/color").await, (200, "color=blue".into()));
    // A named store is another store of the same app.
    assert_eq!(
        get(&host, "/a/get/color?store=cache").await,
        (404, "color is not set".into())
    );
    // A store name outside the rule is refused as no such store, and a bad key is an
    // error, not a trap.
    let (status, body) = get(&host, "/a/get/color?store=../kv-b").await;
    assert_eq!((status, body.as_str()), (500, "error: Error::NoSuchStore"));
    let (status, body) = get(&host, "/a/get/bad..key").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("Error::Other"), "{body}");
    host.stop().await;
}
