//! Secrets end to end: set with the CLI on `platform up`, read by WAGI and SDK guests (pooled
//! and per-request) as environment variables, changed at once, and never in a log line or
//! an exported trace.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform_test_guests as guests;

use crate::support::{self, Platform, start_in_env, write_manifest};

const FIRST: &str = "first-secret-9c41d7";
const SECOND: &str = "second-secret-2b88e0";

/// An OTLP/HTTP receiver that keeps every body it is sent.
fn raw_receiver(rt: &tokio::runtime::Runtime) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let got: Arc<Mutex<Vec<Vec<u8>>>> = Default::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let store = got.clone();
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
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            store.lock().unwrap().push(body.to_vec());
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
    (format!("http://{addr}"), got)
}

fn cli(p: &Platform, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    support::output_with_input(
        Command::new(support::bin())
            .args(args)
            .arg("--server")
            .arg(&p.admin)
            .arg("--data-dir")
            .arg(p.data_dir.path())
            .env_remove("PLATFORM_TOKEN")
            .env_remove("PLATFORM_SERVER"),
        stdin.unwrap_or_default(),
    )
}

/// GETs `path` on `host` until the body is `want` (the feed applies changes promptly, not
/// synchronously).
fn eventually(p: &Platform, host: Option<&str>, path: &str, want: &str) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut req = client.get(p.url(path));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let got = req.send().and_then(|r| r.text()).unwrap_or_default();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host:?}{path}: got {got:?}, want {want:?}\n{}",
            p.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn guests_read_secrets_and_nothing_logs_them() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (otlp, exported) = raw_receiver(&rt);
    let dir = tempfile::tempdir().unwrap();
    let sdk = guests::go_sdk("sdkfaults");
    let manifest = write_manifest(
        dir.path(),
        &[("wagi.wasm", &guests::go("cgimux")), ("sdk.wasm", &sdk)],
        r#"
[[apps]]
name = "wagi"
module = "wagi.wasm"
routes = ["/wagi"]

[[apps]]
name = "pooled"
module = "sdk.wasm"
routes = ["/pooled"]

[[apps]]
name = "fresh"
module = "sdk.wasm"
routes = ["/fresh"]
isolation = "per-request"
"#,
    );
    // Debug logging everywhere but the compiler: a value must not show up even there.
    let mut p = start_in_env(
        &[
            "up",
            "--manifest",
            manifest.to_str().unwrap(),
            "--otlp-endpoint",
            &otlp,
            "--access-log",
        ],
        tempfile::tempdir().unwrap(),
        &[(
            "PLATFORM_LOG",
            "debug,wasmtime=info,cranelift=info,wasmtime_cranelift=info,cranelift_codegen=info,regalloc2=info",
        )],
    );
    // The key was made for `platform up`, owner-only.
    let key = p.data_dir.path().join("secrets-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let check = |p: &Platform, want: &str| {
        eventually(p, None, "/wagi/getenv/API_KEY", want);
        eventually(
            p,
            Some("pooled--default.localhost"),
            "/getenv?name=API_KEY",
            want,
        );
        eventually(
            p,
            Some("fresh--default.localhost"),
            "/getenv?name=API_KEY",
            want,
        );
    };
    for app in ["wagi", "pooled", "fresh"] {
        let out = cli(
            &p,
            &["secrets", "set", app, "API_KEY"],
            Some(&format!("{FIRST}\n")),
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("release #2 is live"), "{said}");
    }
    check(&p, FIRST);
    // A new value reaches every mode at once, per-request snapshots included.
    let file = dir.path().join("value");
    std::fs::write(&file, SECOND).unwrap();
    for app in ["wagi", "pooled", "fresh"] {
        cli(
            &p,
            &[
                "secrets",
                "set",
                app,
                "API_KEY",
                "--from-file",
                file.to_str().unwrap(),
            ],
            None,
        );
    }
    check(&p, SECOND);

    let out = cli(&p, &["secrets", "list", "fresh", "--json"], None);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "API_KEY", "{list}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(FIRST) && !text.contains(SECOND), "{text}");

    cli(&p, &["secrets", "unset", "wagi", "API_KEY"], None);
    eventually(&p, None, "/wagi/getenv/API_KEY", "");

    p.sigterm();
    assert_eq!(p.wait(Duration::from_secs(30)), Some(0));
    let logs = format!(
        "{}\n{}",
        p.stdout.lock().unwrap().join("\n"),
        p.stderr_text()
    );
    assert!(logs.contains("secret set"), "the test saw the logs: {logs}");
    for v in [FIRST, SECOND] {
        assert!(!logs.contains(v), "a secret's value was logged");
    }
    let exported = exported.lock().unwrap();
    assert!(!exported.is_empty(), "traces were exported");
    for body in exported.iter() {
        for v in [FIRST, SECOND] {
            assert!(
                !body.windows(v.len()).any(|w| w == v.as_bytes()),
                "a secret's value was in an exported trace"
            );
        }
    }
}
