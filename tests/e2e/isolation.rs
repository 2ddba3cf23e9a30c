//! Traffic-plane tenant isolation, attacked the way a second tenant would: with its own
//! token against `platform up`, through the CLI and raw HTTP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use platform_test_guests as guests;

use crate::support::{Platform, bin, start};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `platform <args>` against `p`'s API with `token`.
fn cli(p: &Platform, token: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .args(["--server", &p.admin, "--token", token])
        .env_remove("PLATFORM_TOKEN")
        .env("PLATFORM_CONFIG", p.data_dir.path().join("no-login.toml"))
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn admin_token(p: &Platform) -> String {
    std::fs::read_to_string(p.data_dir.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_string()
}

fn tenant_token(p: &Platform, admin: &str, tenant: &str) -> String {
    let o = cli(
        p,
        admin,
        &["tokens", "create", tenant, "--tenant", tenant, "--json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["secret"].as_str().unwrap().to_string()
}

fn deploy(p: &Platform, token: &str, module: &Path, app: &str, routes: &[&str]) -> Output {
    let mut args = vec!["deploy", module.to_str().unwrap(), "--app", app];
    for r in routes {
        args.extend(["--route", r]);
    }
    cli(p, token, &args)
}

fn refused(o: &Output, fragment: &str) {
    assert!(!o.status.success(), "expected a refusal:\n{}", text(o));
    assert!(
        text(o).contains(fragment),
        "expected {fragment:?} in:\n{}",
        text(o)
    );
}

fn get(p: &Platform, path: &str, host: Option<&str>) -> (u16, String) {
    let mut req = client().get(p.url(path));
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// `get`, retried until it answers `want` (routes reach the runtime through the feed, a few
/// milliseconds after the API call returns).
fn eventually_get(p: &Platform, path: &str, host: Option<&str>, want: (u16, &str)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = get(p, path, host);
        if got.0 == want.0 && got.1 == want.1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host:?}{path}: got {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends raw bytes and returns the response's status line.
fn raw(p: &Platform, request: &str) -> String {
    let addr = p.traffic.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_tenant_cannot_take_another_tenants_routes_or_hosts() {
    let p = start(&["up"]);
    let admin = admin_token(&p);
    let acme = tenant_token(&p, &admin, "acme");
    let other = tenant_token(&p, &admin, "other");
    let hello = guests::go("hello");

    // Tenant acme routes under its own path namespace on the shared host.
    let o = deploy(&p, &acme, &hello, "shop", &["/acme/shop"]);
    assert!(o.status.success(), "{}", text(&o));
    eventually_get(&p, "/acme/shop", None, (200, "hello from Go\n"));

    // Tenant other tries every way it used to take acme's (or everyone's) traffic.
    for (route, why) in [
        ("127.0.0.1/", "not assigned to tenant"),
        ("localhost/acme/shop", "not assigned to tenant"),
        ("127.0.0.1:8080/acme/shop", "not assigned to tenant"),
        ("LOCALHOST./acme", "not assigned to tenant"),
        ("/acme/shop/checkout", "routes paths under /other only"),
        ("/acme", "routes paths under /other only"),
        ("/", "routes paths under /other only"),
        ("/shop", "routes paths under /other only"),
        ("shop--acme.localhost/", "apps' own addresses"),
    ] {
        let o = deploy(&p, &other, &hello, "grab", &[route]);
        refused(&o, why);
    }
    // Refused before anything was applied: no app, no release, no module was left behind.
    let o = cli(&p, &other, &["apps", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(),
        serde_json::json!([]),
        "{}",
        text(&o)
    );
    // acme's and the operator's traffic is where it was.
    assert_eq!(get(&p, "/acme/shop", None).1, "hello from Go\n");
    assert_eq!(get(&p, "/acme/shop/checkout", None).1, "hello from Go\n");
    assert!(get(&p, "/", None).1.contains("Hello from Platform!"));

    // Every app answers at its own address, without a route or claim.
    assert_eq!(
        get(&p, "/", Some("shop--acme.localhost:1234")),
        (200, "hello from Go\n".into())
    );

    // Hosts: only an operator assigns them; the holder alone routes there.
    refused(
        &deploy(&p, &acme, &hello, "shop", &["shop.test/"]),
        "not assigned to tenant",
    );
    refused(
        &cli(
            &p,
            &other,
            &["domains", "add", "shop.test", "--tenant", "other"],
        ),
        "needs an admin token",
    );
    let o = cli(
        &p,
        &admin,
        &["domains", "add", "SHOP.test.", "--tenant", "acme"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("shop.test is now held by tenant acme"),
        "{}",
        text(&o)
    );
    let o = deploy(&p, &acme, &hello, "shop", &["Shop.Test.:8080/"]);
    assert!(o.status.success(), "{}", text(&o));
    for host in ["shop.test", "SHOP.TEST.", "shop.test:1234"] {
        eventually_get(&p, "/anything", Some(host), (200, "hello from Go\n"));
    }
    refused(
        &deploy(&p, &other, &hello, "grab", &["shop.test/admin"]),
        "held by another tenant",
    );
    // Wildcards are held the same way, and never overlap another tenant's hosts.
    let o = cli(
        &p,
        &admin,
        &["domains", "add", "*.acme.test", "--tenant", "acme"],
    );
    assert!(o.status.success(), "{}", text(&o));
    refused(
        &cli(
            &p,
            &admin,
            &["domains", "add", "eu.acme.test", "--tenant", "other"],
        ),
        "overlaps *.acme.test",
    );
    let o = deploy(&p, &acme, &hello, "shop", &["*.acme.test/"]);
    assert!(o.status.success(), "{}", text(&o));
    eventually_get(&p, "/x", Some("a.b.acme.test"), (200, "hello from Go\n"));
    refused(
        &deploy(&p, &other, &hello, "grab", &["x.acme.test/"]),
        "held by another tenant",
    );
    // A host with routes never falls back to the shared host's routes.
    let o = cli(
        &p,
        &admin,
        &["domains", "add", "other.test", "--tenant", "other"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = deploy(&p, &other, &hello, "site", &["other.test/site"]);
    assert!(o.status.success(), "{}", text(&o));
    eventually_get(&p, "/site", Some("other.test"), (200, "hello from Go\n"));
    assert_eq!(get(&p, "/acme/shop", Some("other.test")).0, 404);
    // Taking a host back is refused while its tenant still routes there.
    refused(
        &cli(&p, &admin, &["domains", "remove", "other.test"]),
        "still routes other.test/site",
    );
}

#[test]
fn requests_that_could_be_routed_two_ways_are_refused() {
    let p = start(&["up"]);
    let admin = admin_token(&p);
    let o = deploy(&p, &admin, &guests::go("cgimux"), "mux", &["/mux"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&p, &admin, &["domains", "add", "mux.test"]);
    assert!(o.status.success(), "{}", text(&o));
    eventually_get(&p, "/mux/items/1", None, (200, "item 1\n"));

    let two_hosts = "GET /mux/items/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: mux.test\r\n\r\n";
    assert!(
        raw(&p, two_hosts).contains(" 400 "),
        "{}",
        raw(&p, two_hosts)
    );
    let absolute = "GET http://mux.test/mux/items/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    assert!(raw(&p, absolute).contains(" 400 "));
    let encoded_dots = "GET /mux/%2e%2e/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    assert!(raw(&p, encoded_dots).contains(" 400 "));
    let list = "GET /mux/items/1 HTTP/1.1\r\nHost: 127.0.0.1, mux.test\r\n\r\n";
    assert!(raw(&p, list).contains(" 400 "));
    // Literal dot segments are resolved before routing, and the guest sees that path.
    let dots =
        "GET /elsewhere/../mux/items/7 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    assert!(raw(&p, dots).contains(" 200 "), "{}", raw(&p, dots));
    let (status, body) = get(&p, "/mux/items/7", None);
    assert_eq!((status, body.as_str()), (200, "item 7\n"));
    // Matching forms are fine.
    let same =
        "GET http://127.0.0.1/mux/items/2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    assert!(raw(&p, same).contains(" 200 "), "{}", raw(&p, same));
}

#[test]
fn the_dashboard_and_guests_stay_apart() {
    let p = start(&["up"]);
    let admin = admin_token(&p);
    let o = deploy(&p, &admin, &guests::go("cgimux"), "mux", &["/mux"]);
    assert!(o.status.success(), "{}", text(&o));
    eventually_get(&p, "/mux/items/1", None, (200, "item 1\n"));
    // Cookies ignore ports: the dashboard's session reaches the traffic listener's host.
    let r = client()
        .get(p.url("/mux/cookies/echo"))
        .header(
            "cookie",
            "platform_session=s3cret; theme=dark; __Host-platform_session=s3cret2",
        )
        .send()
        .unwrap();
    let body = r.text().unwrap();
    assert_eq!(body, "cookies: theme=dark\n");
    // A guest cannot plant the dashboard's cookies.
    let r = client().get(p.url("/mux/cookies/plant")).send().unwrap();
    let set: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(set, ["mine=1"], "{set:?}");
    // CloudEvents are not taken on the traffic listener (only on --events-listen).
    let r = client()
        .post(p.url("/.platform/events"))
        .header("ce-specversion", "1.0")
        .header("ce-type", "x")
        .header("ce-source", "/attacker")
        .header("ce-id", "1")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    // Metrics keep tenants apart.
    let m = client()
        .get(format!("{}/metrics", p.admin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        m.contains(
            r#"platform_requests_total{tenant="default",app="mux",release="1",status="200"}"#
        ),
        "{m}"
    );
}

/// Opens `n` connections that each send the head of a POST with a 100 kB body, then only
/// two bytes of it, and keep them open.
fn slow_bodies(p: &Platform, host: &str, path: &str, n: usize) -> Vec<TcpStream> {
    let addr = p.traffic.trim_start_matches("http://");
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            let head =
                format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100000\r\n\r\nab");
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect()
}

#[test]
fn one_app_cannot_starve_the_others() {
    let p = start(&[
        "up",
        "--max-concurrency",
        "4",
        "--body-idle-timeout",
        "4s",
        "--queue-timeout",
        "1s",
    ]);
    let admin = admin_token(&p);
    for (module, app, route) in [
        (guests::go("cgimux"), "slow", "/slow"),
        (guests::go("hello"), "fast", "/fast"),
        (guests::go_sdk("sdkfaults"), "sdk", "/sdk"),
    ] {
        let o = deploy(&p, &admin, &module, app, &[route]);
        assert!(o.status.success(), "{}", text(&o));
    }
    eventually_get(&p, "/fast", None, (200, "hello from Go\n"));
    eventually_get(&p, "/slow/items/1", None, (200, "item 1\n"));
    let sdk_ok = |p: &Platform| {
        let r = client()
            .get(p.url("/ok"))
            .header("host", "sdk--default.localhost")
            .send()
            .unwrap();
        r.status().as_u16()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while sdk_ok(&p) != 200 {
        assert!(Instant::now() < deadline, "the SDK app never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let quick = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let fast_ok = || {
        let r = quick
            .get(p.url("/fast"))
            .send()
            .expect("the neighbour answers");
        assert_eq!(r.status(), 200);
    };

    // WAGI: slow bodies hold connections, never execution slots.
    let held = slow_bodies(&p, "127.0.0.1", "/slow/echo", 6);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        fast_ok();
    }

    // SDK: guests that read their own bodies slowly count against their app's cap (2 of 4).
    // (SDK handlers see the whole path: the app is reached at its own address.)
    let sdk_host = "sdk--default.localhost";
    let sdk_held = slow_bodies(&p, sdk_host, "/echo", 6);
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        fast_ok();
    }
    // The flooded app itself is at its cap: 503 with Retry-After, quickly.
    let r = quick
        .get(p.url("/ok"))
        .header("host", sdk_host)
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");

    // Stalled bodies are cut off after the idle timeout (408 for WAGI, where the host reads
    // the body; a read error in the SDK guest, which answers 413 here, or a closed
    // connection), the SDK requests that never got in were told 503, and the app recovers.
    let started = Instant::now();
    let status_of = |mut s: TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n])
            .split(' ')
            .nth(1)
            .unwrap_or("closed")
            .to_string()
    };
    for s in held {
        assert_eq!(status_of(s), "408");
    }
    let mut sdk_statuses: Vec<String> = sdk_held.into_iter().map(status_of).collect();
    sdk_statuses.sort();
    assert_eq!(
        sdk_statuses.iter().filter(|s| *s == "503").count(),
        4,
        "{sdk_statuses:?}"
    );
    assert!(
        sdk_statuses
            .iter()
            .all(|s| ["503", "413", "408", "closed"].contains(&s.as_str())),
        "{sdk_statuses:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let r = quick
        .get(p.url("/ok"))
        .header("host", sdk_host)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
