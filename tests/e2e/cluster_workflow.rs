//! The developer's commands against a cluster: control, worker and a runtime over
//! PostgreSQL and NATS, as under Kubernetes. Each works as it does on `platform up`
//! (`workflow.rs`, `secrets.rs`), with log lines, traffic figures and the runtime's
//! heartbeats arriving over NATS: `secrets set/list/unset`, `split`, `status` (apps and
//! runtimes), `logs -f`, `rollback`.

use std::process::Command;
use std::time::{Duration, Instant};

use platform_test_guests as guests;
use serde_json::Value;

use crate::cluster::{ControlPlane, cli, start_runtime};
use crate::support::{self, bin};

const SECRET: &str = "cluster-secret-5d1e07";

/// `platform ARGS` with `stdin` as its input; its stdout.
fn cli_with_input(server: &str, token: &str, args: &[&str], stdin: &str) -> String {
    let out = support::output_with_input(
        Command::new(bin())
            .args(args)
            .args(["--server", server, "--token", token]),
        stdin,
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get(url: &str, request_id: &str) -> Option<(u16, String)> {
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(url)
        .header("x-request-id", request_id)
        .send()
        .ok()?;
    Some((r.status().as_u16(), r.text().ok()?))
}

fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// proto3 JSON writes 64-bit integers as strings.
fn u64_of(v: &Value) -> u64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn secrets_split_status_and_logs_follow_work_against_a_cluster() {
    let mux = guests::go("cgimux");
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("secrets-key");
    std::fs::write(&key, "5e".repeat(32)).unwrap();
    let cp = ControlPlane::start_with(&["--secrets-key-file".into(), key.display().to_string()]);
    let (_rt, url) = start_runtime(
        cp.dir.path(),
        &cp.server,
        &cp.nats.url_for("runtime"),
        &cp.runtime_token,
        0,
        &[],
    );
    let cli = |args: &[&str]| cli(&cp.server, &cp.token, args);
    let getenv = format!("{url}/shop/getenv/API_KEY");
    cli(&[
        "deploy",
        mux.to_str().unwrap(),
        "--app",
        "shop",
        "--route",
        "/shop",
    ]);
    eventually("release #1 served", Duration::from_secs(30), || {
        get(&getenv, "warm").is_some_and(|r| r == (200, String::new()))
    });

    // A secret, from stdin, makes release #2; the guest reads it as an env var.
    let said = cli_with_input(
        &cp.server,
        &cp.token,
        &["secrets", "set", "shop", "API_KEY"],
        &format!("{SECRET}\n"),
    );
    assert!(said.contains("release #2 is live"), "{said}");
    eventually(
        "the secret reaches the runtime",
        Duration::from_secs(30),
        || get(&getenv, "secret").is_some_and(|r| r == (200, SECRET.to_string())),
    );
    let list = cli(&["secrets", "list", "shop", "--json"]);
    let names: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(names[0]["name"], "API_KEY", "{list}");
    assert!(!list.contains(SECRET), "{list}");

    // A split between #1 (no secret) and #2: the runtime serves both.
    cli(&["split", "shop", "30=#1", "70=#2"]);
    let mut seen = (false, false);
    eventually(
        "both releases of the split served",
        Duration::from_secs(30),
        || {
            match get(&getenv, "split").map(|r| r.1) {
                Some(b) if b.is_empty() => seen.0 = true,
                Some(b) if b == SECRET => seen.1 = true,
                _ => {}
            }
            seen == (true, true)
        },
    );

    // `logs -f` follows the runtime's lines, carried over NATS.
    let mut follow = support::Proc::spawn(
        "platform logs -f",
        &bin(),
        &[
            "logs".to_string(),
            "shop".to_string(),
            "-f".to_string(),
            "--server".to_string(),
            cp.server.clone(),
            "--token".to_string(),
            cp.token.clone(),
        ],
    );
    // The stream may open after a first request: send until one is seen (the human lines
    // show the first 12 characters of the request id, so the path is what is matched).
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0.. {
        let _ = get(
            &format!("{url}/shop/followed"),
            &format!("cluster-follow-{n}"),
        );
        let seen = follow
            .stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("GET /shop/followed 404"));
        if seen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no followed line in 30 s; logs -f said:\n{}\n{}",
            follow.stdout.lock().unwrap().join("\n"),
            follow.stderr.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    follow.kill();

    // `status`: the split and traffic of the app, and the runtime heard from, serving
    // control's revision.
    eventually(
        "status shows the runtime caught up",
        Duration::from_secs(40),
        || {
            let st: Value = serde_json::from_str(&cli(&["status", "--json"])).unwrap();
            let rts = st["runtimes"].as_array().cloned().unwrap_or_default();
            let app = &st["apps"][0];
            rts.len() == 1
                && u64_of(&rts[0]["revision"]) == u64_of(&st["revision"])
                && rts[0]["version"] == env!("CARGO_PKG_VERSION")
                && u64_of(&app["requests"]) > 0
        },
    );
    let table = cli(&["status"]);
    assert!(table.contains("#2 70% / #1 30%"), "{table}");
    assert!(table.contains("RUNTIME"), "{table}");
    assert!(!table.contains("behind"), "{table}");
    assert!(!table.contains("no runtime has reported"), "{table}");

    // Unset and roll back: the runtime follows.
    cli(&["split", "shop", "--clear"]);
    cli(&["secrets", "unset", "shop", "API_KEY"]);
    eventually("the secret is gone", Duration::from_secs(30), || {
        (0..5).all(|_| get(&getenv, "unset").is_some_and(|r| r == (200, String::new())))
    });
    cli(&["rollback", "shop", "2"]);
    eventually("rolled back to #2", Duration::from_secs(30), || {
        (0..5).all(|_| get(&getenv, "rollback").is_some_and(|r| r == (200, SECRET.to_string())))
    });
}
