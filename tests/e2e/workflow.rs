//! The developer's workflow as a new user meets it: `platform init` → build → `platform up`,
//! and shell completions.

use std::time::Duration;

use platform_test_guests::{self as guests, GoBuild};

use crate::support::{self, start};

/// Every template builds for wasip1, and `platform up` accepts its manifest and serves it.
#[test]
fn init_templates_build_and_serve() {
    let tmp = tempfile::tempdir().unwrap();
    for (template, mode) in [
        ("sdk", GoBuild::Reactor),
        ("wagi", GoBuild::Command),
        ("json-api", GoBuild::Reactor),
    ] {
        let name = format!("{template}-app");
        let dir = tmp.path().join(&name);
        let out = support::run(&[
            "init",
            &name,
            "--template",
            template,
            "--dir",
            dir.to_str().unwrap(),
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(made["files"].as_array().unwrap().len(), 5, "{made}");
        // A second init refuses to overwrite.
        let again = support::run(&["init", &name, "--dir", dir.to_str().unwrap()]);
        assert!(!again.status.success());
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("not overwriting"),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );

        let wasm = guests::go_dir(&dir, mode);
        std::fs::copy(&wasm, dir.join("app.wasm")).unwrap();
        let manifest = dir.join("platform.toml");
        let p = start(&["up", "--manifest", manifest.to_str().unwrap()]);
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let r = client.get(p.url(&format!("/{name}/"))).send().unwrap();
        assert_eq!(r.status(), 200, "{template}: {}", p.stderr_text());
        let body = r.text().unwrap();
        if template == "json-api" {
            assert!(body.contains(&format!("\"app\":\"{name}\"")), "{body}");
            let created = client
                .post(p.url(&format!("/{name}/items")))
                .body(r#"{"name":"first"}"#)
                .send()
                .unwrap();
            assert_eq!(created.status(), 201);
        } else {
            assert_eq!(body, format!("hello from {name}\n"), "{template}");
            let hi = client
                .get(p.url(&format!("/{name}/hello/gopher")))
                .send()
                .unwrap();
            assert_eq!(hi.text().unwrap(), "hello, gopher\n");
        }
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = support::run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("platform"), "{shell}: {text}");
        assert!(
            text.contains("secrets") || text.contains("deploy"),
            "{shell}"
        );
    }
}

/// `platform split` on `platform up`: a canary after a deploy, shown by `apps`, carried by
/// metrics and request logs; `--clear` ends it.
#[test]
fn split_sends_a_share_to_a_canary() {
    let p = start(&["up"]);
    let hello = guests::go("hello");
    let cli = |args: &[&str]| {
        let out = p.cli_output(args);
        assert!(
            out.status.success(),
            "platform {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for v in ["1", "2"] {
        cli(&[
            "deploy",
            hello.to_str().unwrap(),
            "--app",
            "hello",
            "--route",
            "/hello",
            "--env",
            &format!("V={v}"),
        ]);
    }
    let said = cli(&["split", "hello", "--canary", "50%"]);
    assert_eq!(said.trim(), "hello: 50% to #1 (live), 50% to #2", "{said}");
    let apps = cli(&["apps"]);
    assert!(apps.contains("#1 50% / #2 50%"), "{apps}");
    let view: serde_json::Value =
        serde_json::from_str(&cli(&["split", "hello", "30=#1", "70=#2", "--json"])).unwrap();
    assert_eq!(view["shares"][0]["release"], 1, "{view}");
    assert_eq!(view["shares"][0]["weight"], 30, "{view}");
    assert_eq!(view["shares"][1]["release"], 2, "{view}");
    assert_eq!(view["shares"][1]["weight"], 70, "{view}");
    let client = reqwest::blocking::Client::new();
    for _ in 0..60 {
        assert_eq!(client.get(p.url("/hello")).send().unwrap().status(), 200);
    }
    let m = client
        .get(format!("{}/metrics", p.admin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for r in ["1", "2"] {
        assert!(
            m.contains(&format!(
                r#"platform_requests_total{{tenant="default",app="hello",release="{r}",status="200"}}"#
            )),
            "{m}"
        );
    }
    // `status` shows the split and the traffic of the last five minutes.
    let st: serde_json::Value = serde_json::from_str(&cli(&["status", "hello", "--json"])).unwrap();
    let a = &st["apps"][0];
    // (proto3 JSON writes 64-bit integers as strings.)
    let requests: u64 = a["requests"].as_str().unwrap().parse().unwrap();
    assert!(requests >= 60, "{st}");
    assert_eq!(a["app"]["split"]["weight"], 70, "{st}");
    assert!(a["p99Ms"].as_f64().unwrap() > 0.0, "{st}");
    let table = cli(&["status"]);
    assert!(table.contains("#1 30% / #2 70%"), "{table}");
    // Without an app, the runtimes too: here the one in this process, serving a revision
    // of control's feed.
    assert!(table.contains("RUNTIME"), "{table}");
    assert!(table.contains(env!("CARGO_PKG_VERSION")), "{table}");
    let all: serde_json::Value = serde_json::from_str(&cli(&["status", "--json"])).unwrap();
    let rts = all["runtimes"].as_array().unwrap();
    assert_eq!(rts.len(), 1, "{all}");
    let rev = |v: &serde_json::Value| v.as_str().unwrap().parse::<u64>().unwrap();
    assert!(rev(&rts[0]["revision"]) > 0, "{all}");
    assert!(rev(&rts[0]["revision"]) <= rev(&all["revision"]), "{all}");
    assert!(
        rts[0]["name"].as_str().unwrap().contains("this process"),
        "{all}"
    );
    let one = cli(&["status", "hello"]);
    assert!(one.contains(&format!("{}/hello", p.traffic)), "{one}");
    // The request log lines name the release that served.
    let logs = cli(&["logs", "hello", "--json", "--lines", "500"]);
    let entries: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(entries.len() >= 60, "{logs}");
    for r in ["#1", "#2"] {
        assert!(
            entries
                .iter()
                .any(|e| e["stream"] == "request" && e["line"].as_str().unwrap().ends_with(r)),
            "{logs}"
        );
    }
    // `logs -f` follows new lines as they come.
    let mut follow = support::Proc::spawn(
        "platform logs -f",
        &support::bin(),
        &[
            "logs".to_string(),
            "hello".to_string(),
            "-f".to_string(),
            "--lines".to_string(),
            "1".to_string(),
            "--server".to_string(),
            p.admin.clone(),
            "--data-dir".to_string(),
            p.data_dir.path().display().to_string(),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    client
        .get(p.url("/hello/followed"))
        .header("x-request-id", "follow-me-1")
        .send()
        .unwrap();
    let line = follow.wait_line("follow-me-1", Duration::from_secs(20));
    assert!(line.contains("GET /hello/followed"), "{line}");
    follow.kill();
    let cleared = cli(&["split", "hello", "--clear"]);
    assert_eq!(cleared.trim(), "hello: 100% to #1 (live)");
    let bad = std::process::Command::new(support::bin())
        .args([
            "split",
            "hello",
            "60=#1",
            "60=#2",
            "--server",
            &p.admin,
            "--data-dir",
        ])
        .arg(p.data_dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not 100%"));
}
