//! SDK mode end to end: the Go SDK examples and fault fixtures behind the host.

use std::time::{Duration, Instant};

use platform_runtime::{Isolation, Limits};
use platform_test_guests as guests;
use tokio::io::AsyncWriteExt;

use crate::support::{App, TestHost, client, metric_value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_and_json_api_with_config() {
    let host = TestHost::start().await;
    let hello = guests::sdk_example("hello");
    let api = guests::sdk_example("jsonapi");
    host.deploy(&[
        App::new("hello", &hello, &["/hello"]),
        App {
            env: &[("GREETING", "hi from the release")],
            ..App::new("api", &api, &["/api"])
        },
    ]);
    let c = client();
    let r = c.get(host.url("/hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "hello from the Go SDK\n");

    // The mux sees the full path, like net/http behind a reverse proxy.
    let r = c
        .post(host.url("/api/todos"))
        .body(r#"{"title":"write tests"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "the mux is mounted at / in the program; paths keep the route prefix"
    );
    host.deploy(&[App {
        env: &[("GREETING", "hi from the release")],
        ..App::new("api", &api, &["/"])
    }]);
    let r = c
        .post(host.url("/todos"))
        .body(r#"{"title":"write tests"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/todos/1");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["title"], "write tests");
    let r = c.get(host.url("/todos/1")).send().await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["id"], 1);
    assert_eq!(
        c.get(host.url("/todos/9")).send().await.unwrap().status(),
        404
    );
    let r = c
        .post(host.url("/todos"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(host.url("/config"))
        .header("x-request-id", "cfg-1")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["greeting_getenv"], "hi from the release");
    assert_eq!(v["greeting_config"], "hi from the release");
    assert_eq!(v["request_id"], "cfg-1");
    // Guest logs carry the request id (they are reported once the guest returns, which
    // may be just after the response went out).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !host
        .rt
        .logs
        .recent()
        .iter()
        .any(|e| e.request_id == "cfg-1" && e.line.contains("GET /config"))
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            host.rt
                .logs
                .recent()
                .iter()
                .map(|e| &e.line)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Trailers.
    let r = c.get(host.url("/trailers")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "body with a trailer\n");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_instances_are_reused_and_never_shared_between_apps() {
    let host = TestHost::start().await;
    let faults = guests::go_sdk("sdkfaults");
    host.deploy(&[
        App::new("a", &faults, &["/"]),
        App::new("b", &faults, &["b.example.com/"]),
    ]);
    let c = client();
    let get = |path: &'static str, h: Option<&'static str>| {
        let c = c.clone();
        let url = host.url(path);
        async move {
            let mut rq = c.get(url);
            if let Some(h) = h {
                rq = rq.header("host", h);
            }
            rq.send().await.unwrap().text().await.unwrap()
        }
    };
    // One instance serves requests one after another: its state persists.
    assert_eq!(get("/ok", None).await, "ok 1\n");
    assert_eq!(get("/ok", None).await, "ok 2\n");
    // The other app, same module, has its own instances.
    assert_eq!(get("/ok", Some("b.example.com")).await, "ok 1\n");
    // A panic retires the instance: the next request gets a fresh one.
    let r = c.get(host.url("/panic")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(get("/ok", None).await, "ok 1\n");
    // The failed run is counted just after its response went out: wait for it (bounded).
    let panics = || {
        metric_value(
            &host.rt.metrics.encode(),
            "platform_traps_total",
            &[("app", "a"), ("kind", "panic")],
        )
    };
    for _ in 0..200 {
        if panics() > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(panics(), 1.0, "{}", host.rt.metrics.encode());
    host.stop().await;
}

/// A request head larger than the SDK's reused 4 KiB head buffer arrives whole, and each
/// later request served by the same pooled instance sees its own head only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_larger_than_the_sdk_head_buffer_arrive_whole() {
    let host = TestHost::start().await;
    let faults = guests::go_sdk("sdkfaults");
    host.deploy(&[App::new("a", &faults, &["/"])]);
    let c = client();
    let big = "x".repeat(20 << 10);
    let huge = "y".repeat(100 << 10);
    for value in [big.as_str(), "small", huge.as_str(), "s", big.as_str(), "t"] {
        let r = c
            .get(host.url("/headers"))
            .header("x-test", value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(
            text.starts_with(&format!("GET /headers  {value} ")),
            "x-test of {} bytes came back as {}",
            value.len(),
            &text[..text.len().min(120)]
        );
    }
    host.stop().await;
}

/// The route table holds each release's pool and module slot (so warm requests look
/// nothing up), yet an idle app still scales to zero: its instances are reaped and its
/// module evicted while the route stays installed, and the next request starts afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_routed_app_scales_to_zero_and_serves_again() {
    let host = TestHost::start_with(|c| c.idle_timeout = Duration::from_millis(300)).await;
    let faults = guests::go_sdk("sdkfaults");
    host.deploy(&[App::new("a", &faults, &["/"])]);
    let c = client();
    let get = || async {
        c.get(host.url("/ok"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(get().await, "ok 1\n");
    assert_eq!(get().await, "ok 2\n");
    let mut idle = false;
    for _ in 0..200 {
        if host.rt.sdk_pools.idle_instances() == 0 && host.rt.cache.resident() == 0 {
            idle = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        idle,
        "instances: {}, resident modules: {}",
        host.rt.sdk_pools.idle_instances(),
        host.rt.cache.resident()
    );
    // A fresh instance of a module loaded again: its counter starts over.
    assert_eq!(get().await, "ok 1\n");
    assert_eq!(get().await, "ok 2\n");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_cases_in_sdk_mode_leave_the_host_serving() {
    let host = TestHost::start().await;
    let faults = guests::go_sdk("sdkfaults");
    host.deploy(&[App {
        limits: Limits {
            memory: 96 << 20,
            timeout: Duration::from_secs(2),
            max_body: 1 << 20,
            ..Limits::default()
        },
        ..App::new("f", &faults, &["/"])
    }]);
    let c = client();
    let healthy = || async {
        let r = c.get(host.url("/ok")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().starts_with("ok "));
    };
    healthy().await;
    for (path, status, says) in [
        ("/loop", 504, "time limit"),
        ("/sleep", 504, "time limit"),
        ("/membomb", 500, "out of memory"),
        ("/panic", 500, "panicked"),
        ("/exit", 500, "exited with status 3"),
    ] {
        let started = Instant::now();
        let r = c.get(host.url(path)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert!(r.headers().contains_key("x-request-id"));
        let body = r.text().await.unwrap();
        assert!(body.contains(says), "{path}: {body:?}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{path} took {:?}",
            started.elapsed()
        );
        healthy().await;
    }
    // Garbage on stdout goes to the log, escaped; the response is fine.
    let r = c
        .get(host.url("/garbage"))
        .header("x-request-id", "garbage-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "garbage went to the log\n");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = host.rt.logs.recent();
    let line = logs
        .iter()
        .find(|e| e.request_id == "garbage-1")
        .expect("garbage logged");
    assert!(
        !line.line.contains('\0') && !line.line.contains('\u{1b}'),
        "{:?}",
        line.line
    );
    // Oversize bodies: declared (refused before the guest) and streamed (cut off).
    assert_eq!(
        crate::support::status_of_large_post(host.addr, "/echo", (1 << 20) + 1).await,
        413
    );
    let chunks =
        futures::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![1u8; 100_000])));
    // The host answers 413 as soon as the body passes the limit and closes the connection;
    // a client still writing then sees the close (broken pipe) before it reads the 413.
    // Both mean the body was refused.
    match c
        .post(host.url("/echo"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
    {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(
            e.is_request() && format!("{e:?}").contains("BodyWrite"),
            "the oversize upload failed otherwise: {e:?}"
        ),
    }
    let r = c
        .post(host.url("/echo"))
        .body(vec![0u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "1000 bytes\n");
    // A client that disconnects mid-request and one that leaves mid-stream.
    let mut s = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\nsome")
        .await
        .unwrap();
    drop(s);
    let mut s = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    s.write_all(b"GET /slow-stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    healthy().await;
    let m = host.rt.metrics.encode();
    for kind in ["timeout", "memory", "panic", "exit"] {
        assert!(
            metric_value(&m, "platform_traps_total", &[("kind", kind)]) >= 1.0,
            "{kind}: {m}"
        );
    }
    assert_eq!(metric_value(&m, "platform_in_flight_requests", &[]), 0.0);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_store_embedded() {
    let host = TestHost::start().await;
    kv_scenario(&host).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_store_on_nats_jetstream() {
    let host = TestHost::start().await;
    let nats = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .expect("NATS with JetStream on 127.0.0.1:4222");
    host.rt
        .sdk_pools
        .set_kv(std::sync::Arc::new(platform_runtime::sdk::kv::NatsKv::new(
            nats.clone(),
        )));
    // Each run gets its own app name, so buckets from earlier runs do not interfere.
    let app = format!("kv{}", std::process::id());
    kv_scenario_named(&host, &app).await;
    // The data is really in JetStream.
    let js = async_nats::jetstream::new(nats);
    let name = platform_runtime::sdk::kv::bucket_name(&platform_runtime::sdk::kv::KvScope {
        tenant: "t".into(),
        app: app.clone(),
        store: "default".into(),
    });
    let bucket = js.get_key_value(&name).await.unwrap();
    let v = bucket.get("visits/alice").await.unwrap().unwrap();
    assert_eq!(&v[..], b"2");
    js.delete_key_value(&name).await.unwrap();
    host.stop().await;
}

async fn kv_scenario(host: &TestHost) {
    kv_scenario_named(host, "counter").await;
}

async fn kv_scenario_named(host: &TestHost, app: &str) {
    let counter = guests::sdk_example("counter");
    host.deploy(&[App::new(app, &counter, &["/"])]);
    let c = client();
    let post = |p: &str| c.post(host.url(p)).send();
    assert_eq!(
        post("/count/alice").await.unwrap().text().await.unwrap(),
        "1\n"
    );
    assert_eq!(
        post("/count/alice").await.unwrap().text().await.unwrap(),
        "2\n"
    );
    assert_eq!(
        post("/count/bob").await.unwrap().text().await.unwrap(),
        "1\n"
    );
    let keys = c
        .get(host.url("/keys?prefix=visits/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(keys, "visits/alice,visits/bob\n");
    let r = c.delete(host.url("/count/bob")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let keys = c
        .get(host.url("/keys"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(keys, "visits/alice\n");
    // Values up to 1 MiB; a clear error past that.
    let r = c.put(host.url("/big?bytes=1048576")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "stored 1048576\n");
    let r = c.put(host.url("/big?bytes=1048577")).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("1 MiB"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_abi_imports_are_refused_with_their_name() {
    let host = TestHost::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(
        &bad,
        wat::parse_str(r#"(module (import "platform_v1" "teleport" (func (param i32) (result i32))) (memory (export "memory") 1) (func (export "platform_handle") (param i32) (result i32) i32.const 0))"#).unwrap(),
    )
    .unwrap();
    let err = platform_runtime::abi::detect(&std::fs::read(&bad).unwrap()).unwrap_err();
    assert!(err.to_string().contains("platform_v1::teleport"), "{err}");
    host.deploy(&[App::new("bad", &bad, &["/bad"])]);
    let r = client().get(host.url("/bad")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let _ = Isolation::PerRequest;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_isolation_starts_each_request_from_the_snapshot() {
    // A private artifact directory, so this test sees the snapshots being made.
    let artifacts = tempfile::tempdir().unwrap();
    let dir = artifacts.path().to_path_buf();
    let host = TestHost::start_with(move |c| c.artifact_dir = dir).await;
    let faults = guests::go_sdk("sdkfaults");
    let api = guests::sdk_example("jsonapi");
    let limits = Limits {
        memory: 96 << 20,
        timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let deploy = |greeting: &'static str, release: &'static str| {
        host.deploy(&[
            App {
                isolation: Isolation::PerRequest,
                limits: limits.clone(),
                ..App::new("f", &faults, &["/"])
            },
            App {
                isolation: Isolation::PerRequest,
                env: match greeting {
                    "one" => &[("GREETING", "one")],
                    "two" => &[("GREETING", "two")],
                    _ => &[],
                },
                release,
                ..App::new("api", &api, &["api.example.com/"])
            },
        ])
    };
    deploy("one", "r1");
    let c = client();
    let get = |path: &'static str, h: Option<&'static str>| {
        let c = c.clone();
        let url = host.url(path);
        async move {
            let mut rq = c.get(url);
            if let Some(h) = h {
                rq = rq.header("host", h);
            }
            let r = rq.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Every request gets a fresh instance: the counter in instance memory never advances.
    for _ in 0..5 {
        assert_eq!(get("/ok", None).await, (200, "ok 1\n".to_string()));
    }
    // Faults end that request only.
    for (path, status) in [("/panic", 500), ("/loop", 504), ("/membomb", 500)] {
        assert_eq!(get(path, None).await.0, status, "{path}");
        assert_eq!(get("/ok", None).await, (200, "ok 1\n".to_string()));
    }
    // Configuration arrives per release, not from snapshot time.
    let api_host = Some("api.example.com");
    let (status, body) = get("/config", api_host).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["greeting_getenv"], "one");
    assert_eq!(v["greeting_config"], "one");
    deploy("two", "r2");
    let v: serde_json::Value = serde_json::from_str(&get("/config", api_host).await.1).unwrap();
    assert_eq!(v["greeting_getenv"], "two");
    assert_eq!(v["greeting_config"], "two");
    // A release without variables (generation 0: the fresh instance fetches nothing) sees
    // none, neither the snapshot's nor the previous release's.
    deploy("", "r3");
    let v: serde_json::Value = serde_json::from_str(&get("/config", api_host).await.1).unwrap();
    assert_eq!(v["greeting_getenv"], "");
    assert_eq!(v["greeting_config"], "");
    // Nothing a request leaves in memory reaches the next one.
    let r = c
        .post(host.url("/todos"))
        .header("host", "api.example.com")
        .body(r#"{"title":"gone with the instance"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(get("/todos/1", api_host).await.0, 404);
    // One snapshot per module, made once (not per request, not per release).
    assert_eq!(host.rt.cache.snapshot_count(), 2);
    let snapshots = std::fs::read_dir(artifacts.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with("-snapshot.cwasm")
        })
        .count();
    assert_eq!(snapshots, 2);
    // Evicted from memory, the snapshot is mapped again from disk, not made again.
    host.rt.cache.evict_all();
    assert_eq!(get("/ok", None).await, (200, "ok 1\n".to_string()));
    assert_eq!(host.rt.cache.snapshot_count(), 2);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_isolation_of_a_wagi_module_fails_clearly_and_once() {
    let host = TestHost::start().await;
    let hello = guests::go("hello");
    host.deploy(&[App {
        isolation: Isolation::PerRequest,
        ..App::new("w", &hello, &["/"])
    }]);
    let c = client();
    for _ in 0..3 {
        let r = c.get(host.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 500);
    }
    let err = host
        .rt
        .cache
        .get_snapshot(&platform_runtime::Digest::of(
            &std::fs::read(&hello).unwrap(),
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SDK module"), "{err}");
    assert_eq!(host.rt.cache.snapshot_count(), 0);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_over_the_limit_are_cut_off_not_passed_as_complete() {
    let host = TestHost::start().await;
    let api = guests::sdk_example("jsonapi");
    host.deploy(&[App {
        limits: Limits {
            max_response: 1 << 20,
            ..Limits::default()
        },
        ..App::new("api", &api, &["/"])
    }]);
    let c = client();
    // Declared 3 MiB, streamed: the stream is cut when it passes 1 MiB.
    let r = c.get(host.url("/download?mb=3")).send().await.unwrap();
    let outcome = r.bytes().await;
    assert!(
        outcome.is_err(),
        "a body cut off at the limit must end in an error, not as a short body: {:?}",
        outcome.map(|b| b.len())
    );
    // Within the limit, fine; and the host keeps serving.
    let r = c.get(host.url("/download?mb=1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 1 << 20);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = host.rt.metrics.encode();
    assert_eq!(
        metric_value(
            &m,
            "platform_traps_total",
            &[("app", "api"), ("kind", "response_too_large")]
        ),
        1.0,
        "{m}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_off_mid_body_is_an_error_the_client_sees() {
    let host = TestHost::start().await;
    let faults = guests::go_sdk("sdkfaults");
    host.deploy(&[App {
        limits: Limits {
            // /slow-stream takes a second; it is cut off mid-body by the time limit.
            timeout: Duration::from_millis(400),
            ..Limits::default()
        },
        ..App::new("f", &faults, &["/"])
    }]);
    let c = client();
    for _ in 0..3 {
        let r = c.get(host.url("/slow-stream")).send().await.unwrap();
        assert_eq!(r.status(), 200, "the head went out before the cut");
        assert!(
            r.headers().get("content-length").is_none(),
            "chunked: only the missing final chunk can tell the client"
        );
        let outcome = r.bytes().await;
        assert!(
            outcome.is_err(),
            "a chunked body cut off by a timeout must not end cleanly: got {:?} bytes",
            outcome.map(|b| b.len())
        );
    }
    let r = c.get(host.url("/ok")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    host.stop().await;
}
