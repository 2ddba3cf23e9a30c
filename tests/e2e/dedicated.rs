//! Dedicated apps keep their URLs, through the real processes: `platform control` (whose
//! `--dedicated-address-template` points at a loopback port), a shared runtime
//! (`--exclude-dedicated`), and a second runtime started with `--only-app APP
//! --trust-forwarded-host` on that port, standing in for the app's Knative Service (it is
//! the same command the Service runs). After `platform dedicated APP on` the app's URLs on
//! the shared runtime still answer, served by the stand-in; `off` brings it back.

use std::time::{Duration, Instant};

use platform_test_guests as guests;
use serde_json::Value;

use crate::cluster::{ControlPlane, cli, start_runtime, start_runtime_on};
use crate::support::free_port;

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GET `url` with `x-request-id` (and a `Host` when given): status, request id and body.
fn get(url: &str, request_id: &str, host: Option<&str>) -> Option<(u16, String, String)> {
    let mut req = client().get(url).header("x-request-id", request_id);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let r = req.send().ok()?;
    let status = r.status().as_u16();
    let id = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Some((status, id, r.text().ok()?))
}

fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_dedicated_app_keeps_its_urls_on_the_shared_runtime() {
    let mux = guests::go("cgimux");
    let hello = guests::go("hello");
    let service_port = free_port();
    let service_addr = format!("127.0.0.1:{service_port}");
    let cp = ControlPlane::start_with(&[
        "--dedicated-address-template".into(),
        format!("http://{service_addr}"),
    ]);
    let nats = cp.nats.url_for("runtime");
    let (shared, shared_url) = start_runtime(
        cp.dir.path(),
        &cp.server,
        &nats,
        &cp.runtime_token,
        0,
        &["--exclude-dedicated"],
    );
    let shared_host = shared_url.trim_start_matches("http://").to_string();
    let deploy = |wasm: &std::path::Path, app: &str, routes: &[&str]| {
        let mut args = vec!["deploy", wasm.to_str().unwrap(), "--app", app];
        for r in routes {
            args.extend(["--route", r]);
        }
        cli(&cp.server, &cp.token, &args);
    };
    deploy(&mux, "orders", &["/orders", "orders.localhost/"]);
    deploy(&hello, "hello", &["/hello"]);
    eventually("both apps served", Duration::from_secs(20), || {
        get(&format!("{shared_url}/orders/whoami"), "warm-1", None).is_some_and(|r| r.0 == 200)
            && get(&format!("{shared_url}/hello"), "warm-2", None).is_some_and(|r| r.0 == 200)
    });
    let apps: Value =
        serde_json::from_str(&cli(&cp.server, &cp.token, &["apps", "--json"])).unwrap();
    let id = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "orders")
        .and_then(|a| a["id"].as_str())
        .unwrap()
        .to_string();

    cli(&cp.server, &cp.token, &["dedicated", "orders", "on"]);
    // Before its Service runs: a 502 that says why, and a line in the app's log.
    eventually(
        "the shared runtime forwards (and finds no Service yet)",
        Duration::from_secs(10),
        || {
            get(&format!("{shared_url}/orders/whoami"), "e2e-down", None)
                .is_some_and(|r| r.0 == 502)
        },
    );
    let (_, id_back, body) =
        get(&format!("{shared_url}/orders/whoami"), "e2e-down-2", None).unwrap();
    assert!(body.contains("dedicated Service is unreachable"), "{body}");
    assert_eq!(id_back, "e2e-down-2");
    eventually(
        "the failure in the app's log (platform logs)",
        Duration::from_secs(10),
        || {
            cli(&cp.server, &cp.token, &["logs", "orders", "--json"])
                .lines()
                .any(|l| l.contains("e2e-down-2") && l.contains("unreachable"))
        },
    );

    // The stand-in for the app's Knative Service.
    let (mut service, _) = start_runtime_on(
        cp.dir.path(),
        &cp.server,
        &nats,
        &cp.runtime_token,
        1,
        &service_addr,
        &["--only-app", &id, "--trust-forwarded-host"],
    );
    eventually(
        "the app's URL answers again, through its Service",
        Duration::from_secs(20),
        || get(&format!("{shared_url}/orders/whoami"), "e2e-up", None).is_some_and(|r| r.0 == 200),
    );
    let (status, id_back, body) = get(
        &format!("{shared_url}/orders/whoami?x=1"),
        "e2e-fwd-1",
        None,
    )
    .unwrap();
    assert_eq!((status, id_back.as_str()), (200, "e2e-fwd-1"), "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["method"], "GET");
    assert_eq!(
        seen["path"], "/whoami",
        "the route prefix stripped, as served locally"
    );
    assert_eq!(seen["script_name"], "/orders");
    assert_eq!(
        seen["request_id"], "e2e-fwd-1",
        "the guest sees the same request id"
    );
    assert_eq!(
        seen["host"], shared_host,
        "the guest sees the host the client asked for"
    );
    // Served by the stand-in (its request line carries the id), not by the shared runtime.
    service.wait_line("e2e-fwd-1", Duration::from_secs(5));
    assert!(
        !shared.output().contains("e2e-fwd-1"),
        "the shared runtime ran the guest itself:\n{}",
        shared.output()
    );

    // A host route: the Service routes by the forwarded host, as the shared runtime did.
    let (status, _, body) = get(
        &format!("{shared_url}/whoami"),
        "e2e-fwd-host",
        Some("orders.localhost"),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (seen["host"].as_str(), seen["script_name"].as_str()),
        (Some("orders.localhost"), Some(""))
    );
    service.wait_line("e2e-fwd-host", Duration::from_secs(5));

    // A body streams through both ways, method and query intact.
    let big: String = "0123456789abcdef".repeat(64 * 1024);
    let r = client()
        .post(format!("{shared_url}/orders/echo"))
        .header("content-type", "text/plain")
        .body(big.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), big);
    let (status, _, body) = get(
        &format!("{shared_url}/orders/query?q=a%20b&tag=1&tag=2"),
        "e2e-q",
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let q: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(q["q"], "a b");
    assert_eq!(q["tags"], serde_json::json!(["1", "2"]));

    // Other apps stay on the shared runtime; the stand-in serves its app alone.
    let (status, _, body) = get(&format!("{shared_url}/hello"), "e2e-other", None).unwrap();
    assert_eq!((status, body.trim()), (200, "hello from Go"));
    assert_eq!(
        get(&format!("http://{service_addr}/hello"), "e2e-other-2", None)
            .unwrap()
            .0,
        404
    );

    // Shared again: the shared runtime serves the app itself (its Service is gone).
    cli(&cp.server, &cp.token, &["dedicated", "orders", "off"]);
    service.kill();
    eventually(
        "the shared runtime serves the app itself again",
        Duration::from_secs(10),
        || {
            get(&format!("{shared_url}/orders/whoami"), "e2e-back", None)
                .is_some_and(|r| r.0 == 200)
        },
    );
}
