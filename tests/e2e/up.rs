//! `platform up` and `platform runtime` as a user runs them.

use std::time::{Duration, Instant};

use platform_test_guests as guests;

use crate::support::{self, start, write_manifest};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn up_without_a_manifest_serves_the_demo() {
    let p = start(&["up"]);
    let r = client().get(p.url("/")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert!(r.text().unwrap().contains("Hello from Platform!"));
    let ready = client().get(format!("{}/readyz", p.admin)).send().unwrap();
    assert_eq!(ready.status(), 200);
}

#[test]
fn up_serves_a_go_program_from_platform_toml() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        &[
            ("shop.wasm", &guests::go("cgimux")),
            ("hello.wasm", &guests::go("hello")),
        ],
        r#"
[[apps]]
name = "shop"
module = "shop.wasm"
routes = ["/shop", "api.example.com/v1"]
env = { GREETING = "hello" }
limits = { memory = "128MiB", timeout = "2s", max_body = "10MiB" }

[[apps]]
name = "hello"
module = "hello.wasm"
routes = ["/hello"]
"#,
    );
    let p = start(&["up", "--manifest", manifest.to_str().unwrap()]);
    // The banner prints the URL of each route.
    let banner = p.stdout.lock().unwrap().join("\n");
    assert!(banner.contains(&format!("{}/shop", p.traffic)), "{banner}");
    assert!(banner.contains("Host: api.example.com"), "{banner}");
    assert!(banner.contains(&format!("{}/hello", p.traffic)), "{banner}");

    let c = client();
    assert_eq!(
        c.get(p.url("/shop/items/3"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "item 3\n"
    );
    assert_eq!(
        c.get(p.url("/shop/env")).send().unwrap().text().unwrap(),
        "GREETING=hello\n"
    );
    let r = c
        .get(p.url("/v1/items/5"))
        .header("host", "api.example.com")
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "item 5\n");
    assert_eq!(
        c.get(p.url("/hello")).send().unwrap().text().unwrap(),
        "hello from Go\n"
    );
    assert_eq!(c.get(p.url("/nothing")).send().unwrap().status(), 404);
}

#[test]
fn up_serves_a_wasi_http_component_from_platform_toml() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        &[("comp.wasm", &guests::http_component())],
        r#"
[[apps]]
name = "comp"
module = "comp.wasm"
routes = ["/comp"]
env = { GREETING = "from the manifest" }

[[apps]]
name = "reused"
module = "comp.wasm"
routes = ["/reused"]
isolation = "pooled"
"#,
    );
    let p = start(&["up", "--manifest", manifest.to_str().unwrap()]);
    let c = client();
    assert_eq!(
        c.get(p.url("/comp")).send().unwrap().text().unwrap(),
        "hello from a component"
    );
    assert_eq!(
        c.get(p.url("/comp/env")).send().unwrap().text().unwrap(),
        "GREETING=from the manifest"
    );
    // No isolation set: a fresh instance per request (the guest counts its requests in
    // a static). `pooled`: the release's instance is reused, its count goes on.
    let count = |path: &str| c.get(p.url(path)).send().unwrap().text().unwrap();
    assert_eq!(count("/comp/count"), "count 1");
    assert_eq!(count("/comp/count"), "count 1");
    assert_eq!(count("/reused/count"), "count 1");
    assert_eq!(count("/reused/count"), "count 2");
}

#[test]
fn a_bad_manifest_fails_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        &[("hello.wasm", &guests::go("hello"))],
        "[[apps]]\nname = \"hello\"\nmodule = \"hello.wasm\"\nroutes = [\"/hello\"]\nlimits = { timeout = \"soon\" }\n",
    );
    let out = support::run(&[
        "up",
        "--manifest",
        manifest.to_str().unwrap(),
        "--listen=127.0.0.1:0",
        "--admin-listen=127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("platform.toml:5:"), "{err}");
    assert!(err.contains("invalid duration \"soon\""), "{err}");

    let bad_module = write_manifest(
        dir.path(),
        &[],
        "[[apps]]\nname = \"x\"\nmodule = \"platform.toml\"\nroutes = [\"/x\"]\n",
    );
    let out = support::run(&[
        "runtime",
        "--manifest",
        bad_module.to_str().unwrap(),
        "--listen=127.0.0.1:0",
        "--admin-listen=127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a WebAssembly binary"), "{err}");
}

/// SIGTERM lets the request in flight finish, then exits as soon as it has: long before
/// the grace period, which a process that merely waited out its grace would spend.
/// Nothing here is bounded by the machine's speed except far past the guest's own second:
/// the request is seen in flight (the gauge) before the signal, and the exit is awaited
/// for a quarter of the grace.
#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        &[("faults.wasm", &guests::go("faults"))],
        "[[apps]]\nname = \"faults\"\nmodule = \"faults.wasm\"\nroutes = [\"/f\"]\n",
    );
    let mut p = start(&[
        "runtime",
        "--manifest",
        manifest.to_str().unwrap(),
        "--shutdown-grace",
        "120s",
    ]);
    let url = p.url("/f/slow");
    let slow = std::thread::spawn(move || {
        let r = client().get(url).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    });
    // The guest sleeps a second; signal while it does.
    let metrics = format!("{}/metrics", p.admin);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client()
        .get(&metrics)
        .send()
        .and_then(|r| r.text())
        .is_ok_and(|m| m.lines().any(|l| l == "platform_in_flight_requests 1"))
    {
        assert!(Instant::now() < deadline, "the slow request never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    p.sigterm();
    let (status, body) = slow.join().unwrap();
    assert_eq!((status, body.as_str()), (200, "slow but done\n"));
    assert_eq!(p.wait(Duration::from_secs(30)), Some(0));
    // The listener is closed.
    assert!(client().get(p.url("/f/ok")).send().is_err());
    assert!(p.stderr_text().contains("SIGTERM received"));
}

#[test]
fn json_logs_carry_the_request_id() {
    let p = start(&["up", "--log-format", "json", "--access-log"]);
    let r = client()
        .get(p.url("/"))
        .header("x-request-id", "json-log-test-1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = p.stderr.lock().unwrap().iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["span"]["request_id"] == "json-log-test-1").then_some(v)
        });
        if let Some(v) = found {
            assert_eq!(v["span"]["app"], "demo");
            assert!(v["fields"]["status"].as_u64() == Some(200), "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no JSON line with the request id:\n{}",
            p.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every stderr line is JSON.
    for line in p.stderr.lock().unwrap().iter() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
}

#[test]
fn requests_are_logged_on_stderr_only_with_the_access_log() {
    // Off by default (a fifth to a third of a runtime's throughput at load: benches/README.md), yet
    // the app's own log still has the request.
    let p = start(&["up"]);
    let r = client()
        .get(p.url("/"))
        .header("x-request-id", "no-access-log-1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = p.cli_output(&["logs", "demo", "--json", "--lines", "50"]);
        let logs = String::from_utf8_lossy(&out.stdout);
        if logs.contains("no-access-log-1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not in the app's log: {logs}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stderr = p.stderr_text();
    assert!(!stderr.contains("no-access-log-1"), "{stderr}");
    assert!(!stderr.contains("request served"), "{stderr}");
    drop(p);

    let p = start(&["up", "--access-log"]);
    let r = client()
        .get(p.url("/"))
        .header("x-request-id", "access-log-1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.stderr_text().contains("access-log-1") {
        assert!(
            Instant::now() < deadline,
            "no access log line:\n{}",
            p.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(p.stderr_text().contains("request served"));
}

#[test]
fn traces_reach_a_real_otlp_http_receiver() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    // A minimal OTLP/HTTP receiver: accepts protobuf exports and keeps the span names/attributes.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let received: std::sync::Arc<std::sync::Mutex<Vec<ExportTraceServiceRequest>>> =
        Default::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let store = received.clone();
    rt.spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let store = store.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            if path == "/v1/traces" {
                                let msg = ExportTraceServiceRequest::decode(body).unwrap();
                                store.lock().unwrap().push(msg);
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    let mut p = start(&["up", "--otlp-endpoint", &format!("http://{addr}")]);
    let r = client()
        .get(p.url("/traced"))
        .header("x-request-id", "otlp-test-1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Spans are batched; SIGTERM flushes them on the way out.
    p.sigterm();
    assert_eq!(p.wait(Duration::from_secs(20)), Some(0));
    let exports = received.lock().unwrap();
    let span = exports
        .iter()
        .flat_map(|e| &e.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .find(|s| {
            s.name == "request"
                && s.attributes.iter().any(|a| {
                    a.key == "request_id" && format!("{:?}", a.value).contains("otlp-test-1")
                })
        })
        .unwrap_or_else(|| panic!("no request span exported; got {} exports", exports.len()));
    let attr = |k: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == k)
            .map(|a| format!("{:?}", a.value))
            .unwrap_or_default()
    };
    assert!(attr("app").contains("demo"), "{:?}", span.attributes);
    assert!(attr("status").contains("200"), "{:?}", span.attributes);
    assert!(attr("cold").contains("false") || attr("cold").contains("true"));
    assert!(
        attr("duration_ms").contains("DoubleValue"),
        "{:?}",
        span.attributes
    );
    let service = exports[0].resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|a| a.key == "service.name")
        .map(|a| format!("{:?}", a.value))
        .unwrap();
    assert!(service.contains("platform"));
}

#[test]
fn up_then_deploy_serves_at_the_printed_url_without_login() {
    let p = start(&["up"]);
    let data = p.data_dir.path().to_path_buf();
    // The first admin token is written for the owner only.
    let token_file = data.join("admin-token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let hello = guests::go("hello");
    let deploy = |extra: &[&str]| {
        std::process::Command::new(support::bin())
            .args([
                "deploy",
                hello.to_str().unwrap(),
                "--app",
                "hello",
                "--route",
                "/hello",
            ])
            .args(extra)
            .args(["--server", &p.admin, "--data-dir", data.to_str().unwrap()])
            .env_remove("PLATFORM_TOKEN")
            .env("PLATFORM_CONFIG", data.join("no-login.toml"))
            .output()
            .unwrap()
    };
    let out = deploy(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = stdout
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL printed: {stdout}"))
        .to_string();
    assert_eq!(url, p.url("/hello"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client().get(&url).send().unwrap();
        if r.status() == 200 {
            assert_eq!(r.text().unwrap(), "hello from Go\n");
            break;
        }
        assert!(Instant::now() < deadline, "{url} never answered 200");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Deploying the same thing again changes nothing.
    let again = deploy(&["--json"]);
    assert!(again.status.success());
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v[0]["new_release"], false);
    assert_eq!(v[0]["release"]["number"], 1);

    // Login saves server and token; later commands need neither.
    let config = data.join("config.toml");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    let cmd = |args: &[&str]| {
        std::process::Command::new(support::bin())
            .args(args)
            .current_dir(std::env::temp_dir())
            .env("PLATFORM_CONFIG", &config)
            .env_remove("PLATFORM_TOKEN")
            .env_remove("PLATFORM_SERVER")
            .output()
            .unwrap()
    };
    let out = cmd(&["login", "--server", &p.admin, "--token", &token]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = cmd(&["apps", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let apps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["demo", "hello"]);
    let out = cmd(&["releases", "hello"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("live"));
    // A wrong token is refused with a clear message.
    let out = cmd(&["login", "--server", &p.admin, "--token", "plt_wrong"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown or revoked"));
}

#[test]
fn a_wasi_http_component_deploys_answers_and_rolls_back() {
    let p = start(&["up"]);
    let data = p.data_dir.path().to_path_buf();
    let component = guests::http_component();
    let run = |args: &[&str]| {
        std::process::Command::new(support::bin())
            .args(args)
            .args(["--server", &p.admin, "--data-dir", data.to_str().unwrap()])
            .env_remove("PLATFORM_TOKEN")
            .env("PLATFORM_CONFIG", data.join("no-login.toml"))
            .output()
            .unwrap()
    };
    let deploy = |greeting: &str| {
        let out = run(&[
            "deploy",
            component.to_str().unwrap(),
            "--app",
            "comp",
            "--route",
            "/comp",
            "--env",
            &format!("GREETING={greeting}"),
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        text
    };
    // Waits (bounded) for the route to answer `want` at `path`.
    let answers = |path: &str, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = client().get(p.url(path)).send().unwrap();
            let status = r.status();
            let body = r.text().unwrap();
            if status == 200 && body == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{path} answered {status} {body:?}, never {want:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let first = deploy("one");
    assert!(first.contains("component (wasi:http)"), "{first}");
    answers("/comp", "hello from a component");
    answers("/comp/env", "GREETING=one");
    deploy("two");
    answers("/comp/env", "GREETING=two");
    let out = run(&["rollback", "comp"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    answers("/comp/env", "GREETING=one");
    let r = client().get(p.url("/comp/trap")).send().unwrap();
    assert_eq!(r.status(), 500);
    answers("/comp", "hello from a component");
}
