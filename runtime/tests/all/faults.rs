//! Guests that misbehave: each fault gets a clear response, and the host keeps serving.

use std::time::{Duration, Instant};

use platform_runtime::Limits;
use platform_test_guests as guests;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{App, TestHost, client, metric_value};

async fn faults_host() -> TestHost {
    let host = TestHost::start().await;
    let faults = guests::go("faults");
    host.deploy(&[App {
        limits: Limits {
            memory: 64 << 20,
            timeout: Duration::from_secs(2),
            max_response: 8 << 20,
            ..Limits::default()
        },
        ..App::new("faults", &faults, &["/f"])
    }]);
    host
}

/// After every fault a good request must still succeed.
async fn assert_healthy(host: &TestHost) {
    let r = client().get(host.url("/f/ok")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
}

async fn expect(host: &TestHost, path: &str, status: u16, body_has: &str) -> String {
    let r = client().get(host.url(path)).send().await.unwrap();
    assert_eq!(r.status(), status, "{path}");
    assert!(
        r.headers().contains_key("x-request-id"),
        "{path}: no x-request-id"
    );
    let body = r.text().await.unwrap();
    assert!(
        body.contains(body_has),
        "{path}: {body:?} lacks {body_has:?}"
    );
    assert_healthy(host).await;
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_times_out_with_504() {
    let host = faults_host().await;
    let started = Instant::now();
    expect(&host, "/f/loop", 504, "time limit").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // A guest blocked in a host call (sleep) is cut off too.
    expect(&host, "/f/sleep", 504, "time limit").await;
    let m = host.rt.metrics.encode();
    assert!(
        metric_value(
            &m,
            "platform_traps_total",
            &[("app", "faults"), ("kind", "timeout")]
        ) >= 2.0,
        "{m}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_does_not_block_other_requests() {
    let host = faults_host().await;
    let c = client();
    let looping = tokio::spawn({
        let (c, url) = (c.clone(), host.url("/f/loop"));
        async move { c.get(url).send().await.unwrap().status() }
    });
    let loop2 = tokio::spawn({
        let (c, url) = (c.clone(), host.url("/f/loop"));
        async move { c.get(url).send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Two loops on a two-core machine: still, a good request is answered well before they end.
    let started = Instant::now();
    assert_healthy(&host).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "good request waited {:?}",
        started.elapsed()
    );
    assert_eq!(looping.await.unwrap(), 504);
    assert_eq!(loop2.await.unwrap(), 504);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_limit_with_500() {
    let host = faults_host().await;
    expect(&host, "/f/membomb", 500, "out of memory").await;
    let m = host.rt.metrics.encode();
    assert_eq!(
        metric_value(&m, "platform_traps_total", &[("kind", "memory")]),
        1.0,
        "{m}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_exit_and_garbage() {
    let host = faults_host().await;
    expect(&host, "/f/panic", 500, "panicked").await;
    expect(&host, "/f/exit", 500, "exited with status 3").await;
    expect(&host, "/f/garbage", 502, "invalid").await;
    expect(&host, "/f/huge", 502, "larger than the limit").await;
    // Floods of control bytes on stderr are capped and escaped; the response is fine.
    expect(&host, "/f/noisy", 200, "noisy but fine").await;
    let logs = host.rt.logs.recent();
    assert!(
        logs.iter()
            .any(|e| e.line.contains("panic: assignment to entry in nil map")),
        "panic message not logged"
    );
    assert!(
        logs.iter()
            .any(|e| e.line.contains("giving up with status 3"))
    );
    assert!(
        logs.iter()
            .all(|e| !e.line.contains('\u{1b}') && !e.line.contains('\0'))
    );
    let m = host.rt.metrics.encode();
    for kind in ["panic", "exit", "bad_output", "response_too_large"] {
        assert_eq!(
            metric_value(&m, "platform_traps_total", &[("kind", kind)]),
            1.0,
            "{kind}: {m}"
        );
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_disconnect_mid_request() {
    let host = faults_host().await;
    // 1. Promise a body and hang up halfway.
    let mut s = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    s.write_all(b"POST /f/ok HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nonly a little")
        .await
        .unwrap();
    drop(s);
    // 2. Hang up while the guest is working.
    let mut s = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    s.write_all(b"GET /f/sleep HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    // 3. Send garbage that is not HTTP at all.
    let mut s = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    s.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_healthy(&host).await;
    // Nothing left running: the cancelled request released its instance.
    let m = host.rt.metrics.encode();
    assert_eq!(
        metric_value(&m, "platform_in_flight_requests", &[]),
        0.0,
        "{m}"
    );
    assert!(
        metric_value(&m, "platform_requests_total", &[("status", "499")]) >= 1.0,
        "{m}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_abi_and_broken_modules_fail_cleanly() {
    let host = TestHost::start().await;
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("not.wasm");
    std::fs::write(&not_wasm, b"this is not wasm").unwrap();
    let gojs = dir.path().join("gojs.wasm");
    std::fs::write(
        &gojs,
        wat::parse_str(r#"(module (import "gojs" "runtime.wasmExit" (func (param i32))) (memory (export "memory") 1) (func (export "_start")))"#).unwrap(),
    )
    .unwrap();
    let hello = guests::go("hello");
    host.deploy(&[
        App::new("broken", &not_wasm, &["/broken"]),
        App::new("gojs", &gojs, &["/gojs"]),
        App::new("hello", &hello, &["/hello"]),
    ]);
    let c = client();
    for path in ["/broken", "/gojs"] {
        let r = c.get(host.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 500, "{path}");
        assert!(r.text().await.unwrap().contains("could not be loaded"));
    }
    assert_eq!(
        c.get(host.url("/hello")).send().await.unwrap().status(),
        200
    );
    host.stop().await;
}
