//! WAGI mode end to end: an unmodified Go net/http/cgi program behind the host.

use std::sync::Arc;

use platform_runtime::Limits;
use platform_test_guests as guests;

use crate::support::{App, TestHost, client};

async fn cgimux_host() -> TestHost {
    let host = TestHost::start().await;
    let module = guests::go("cgimux");
    host.deploy(&[App {
        env: &[("GREETING", "hello from the manifest")],
        ..App::new("mux", &module, &["/mux"])
    }]);
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_mux_patterns_query_and_env() {
    let host = cgimux_host().await;
    let c = client();

    let r = c.get(host.url("/mux/items/42")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "item 42\n");

    let r = c
        .get(host.url("/mux/files/a/b/c.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "file a/b/c.txt\n");

    // Method patterns: POST to a GET route is refused by Go's mux itself.
    let r = c.post(host.url("/mux/items/42")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    let r = c
        .get(host.url("/mux/query?q=hello%20world&tag=a&tag=b"))
        .header("user-agent", "platform-test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["q"], "hello world");
    assert_eq!(v["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(v["raw"], "q=hello%20world&tag=a&tag=b");
    assert_eq!(v["path"], "/query");
    assert_eq!(v["agent"], "platform-test");

    let r = c.get(host.url("/mux/env")).send().await.unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "GREETING=hello from the manifest\n"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_mux_bodies_statuses_redirects_cookies() {
    let host = cgimux_host().await;
    let c = client();

    let body = "x".repeat(100_000);
    let r = c
        .post(host.url("/mux/echo"))
        .header("content-type", "text/x-test")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/x-test");
    assert_eq!(r.headers()["x-body-length"], "100000");
    assert_eq!(r.text().await.unwrap(), body);

    let r = c.get(host.url("/mux/teapot")).send().await.unwrap();
    assert_eq!(r.status(), 418);
    assert_eq!(r.text().await.unwrap(), "short and stout\n");

    let r = c.get(host.url("/mux/redirect")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/mux/items/42");

    let r = c.get(host.url("/mux/cookies")).send().await.unwrap();
    let cookies: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies, vec!["a=1", "b=2; HttpOnly"]);

    let r = c.get(host.url("/mux/big")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len(), 1 << 20);
    assert_eq!(&bytes[..16], b"0123456789abcdef");

    let r = c
        .get(host.url("/mux/whoami"))
        .header("x-request-id", "test-id-123")
        .header("authorization", "Bearer xyz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "test-id-123");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/whoami");
    assert_eq!(v["script_name"], "/mux");
    assert_eq!(v["path_info"], "/whoami");
    assert_eq!(v["request_id"], "test-id-123");
    assert_eq!(v["auth"], "Bearer xyz");
    assert!(
        v["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{v}"
    );
    // stderr is captured with the request id.
    let logged = host
        .rt
        .logs
        .recent()
        .iter()
        .any(|e| e.request_id == "test-id-123" && e.line == "whoami served");
    assert!(logged, "guest stderr line not captured with its request id");
    // The request's own line says what was asked: method, path, status, duration.
    let request_line = host
        .rt
        .logs
        .recent_for("t", Some("mux"))
        .iter()
        .find(|e| e.request_id == "test-id-123" && e.status.is_some())
        .map(|e| e.line.clone())
        .unwrap_or_default();
    assert!(
        request_line.starts_with("GET /mux/whoami 200 in "),
        "{request_line:?}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_gets_413() {
    let host = TestHost::start().await;
    let module = guests::go("cgimux");
    host.deploy(&[App {
        limits: Limits {
            max_body: 1000,
            ..Limits::default()
        },
        ..App::new("mux", &module, &["/mux"])
    }]);
    let c = client();
    // Declared length over the limit.
    let r = c
        .post(host.url("/mux/echo"))
        .body("y".repeat(1001))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.headers().contains_key("x-request-id"));
    // Chunked, no declared length: refused while streaming.
    let chunks = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>("z".repeat(200))));
    let r = c
        .post(host.url("/mux/echo"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Within the limit still works.
    let r = c
        .post(host.url("/mux/echo"))
        .body("ok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_to_a_cold_app_compile_it_once() {
    // A private artifact directory: the module has never been compiled here.
    let artifacts = tempfile::tempdir().unwrap();
    let dir = artifacts.path().to_path_buf();
    let host = TestHost::start_with(move |c| c.artifact_dir = dir).await;
    let module = guests::go("hello");
    host.deploy(&[App::new("hello", &module, &["/hello"])]);
    let c = client();
    let requests = (0..16).map(|_| {
        let c = c.clone();
        let url = host.url("/hello");
        async move { c.get(url).send().await.unwrap().text().await.unwrap() }
    });
    let bodies = futures::future::join_all(requests).await;
    assert!(bodies.iter().all(|b| b == "hello from Go\n"), "{bodies:?}");
    assert_eq!(host.rt.cache.compile_count(), 1);
    let artifacts_on_disk = std::fs::read_dir(artifacts.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")
        })
        .count();
    assert_eq!(artifacts_on_disk, 1);

    // Idle eviction drops it from memory; the next request maps the artifact, no compile.
    let rt = Arc::clone(&host.rt);
    assert_eq!(rt.cache.resident(), 1);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_modules_leave_memory_and_come_back_from_the_artifact() {
    let host =
        TestHost::start_with(|c| c.idle_timeout = std::time::Duration::from_millis(200)).await;
    let module = guests::go("hello");
    host.deploy(&[App::new("hello", &module, &["/hello"])]);
    let c = client();
    assert_eq!(
        c.get(host.url("/hello")).send().await.unwrap().status(),
        200
    );
    assert_eq!(host.rt.cache.resident(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(host.rt.cache.resident(), 0, "idle module still resident");
    let compiles = host.rt.cache.compile_count();
    assert_eq!(
        c.get(host.url("/hello")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        host.rt.cache.compile_count(),
        compiles,
        "came back by compiling, not from disk"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_fails_to_compile_is_not_recompiled_per_request() {
    // Valid WebAssembly (threads' shared memory) that this engine does not compile.
    let artifacts = tempfile::tempdir().unwrap();
    let dir = artifacts.path().to_path_buf();
    let host = TestHost::start_with(move |c| c.artifact_dir = dir).await;
    let wasm = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1 1 shared)
            (func (export "_start")))"#,
    )
    .unwrap();
    let module = artifacts.path().join("threads.wasm");
    std::fs::write(&module, wasm).unwrap();
    host.deploy(&[App::new("broken", &module, &["/broken"])]);
    let c = client();
    for _ in 0..3 {
        let status = c.get(host.url("/broken")).send().await.unwrap().status();
        assert!(status.is_server_error(), "{status}");
    }
    let first = host.rt.cache.compile_count();
    assert!(first <= 1, "Cranelift ran {first} times for 3 requests");
    for _ in 0..3 {
        let status = c.get(host.url("/broken")).send().await.unwrap().status();
        assert!(status.is_server_error(), "{status}");
    }
    assert_eq!(
        host.rt.cache.compile_count(),
        first,
        "recompiled per request"
    );
    host.stop().await;
}
