//! `[apps.triggers]` in a manifest: CloudEvent types reach the app on the internal events
//! listener, both with `platform runtime --manifest` (the data plane alone) and with
//! `platform up --manifest` (through the control plane, where the app then shows them).

use std::path::Path;
use std::time::{Duration, Instant};

use platform_test_guests as guests;
use serde_json::Value;

use crate::support::{Platform, start, write_manifest};

const TRIGGERS: &str = r#"
[[apps]]
name = "orders"
module = "events.wasm"
routes = ["/orders"]

[apps.triggers]
events = { "com.example.order.created" = "/events" }
subjects = { "e2e.manifest.orders.>" = "" }

[[apps]]
name = "audit"
module = "events.wasm"

[apps.triggers]
events = { "com.example.audit" = "/audit" }
"#;

fn manifest(dir: &Path) -> std::path::PathBuf {
    write_manifest(dir, &[("events.wasm", &guests::go_sdk("events"))], TRIGGERS)
}

/// The events listener's URL, from the "CloudEvents from the broker" line.
fn events_url(p: &Platform) -> String {
    let started = Instant::now();
    loop {
        let lines: Vec<String> = p
            .stdout
            .lock()
            .unwrap()
            .iter()
            .chain(p.stderr.lock().unwrap().iter())
            .cloned()
            .collect();
        if let Some(url) = lines
            .iter()
            .filter(|l| l.contains("CloudEvents from the broker"))
            .find_map(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
        {
            let rest = &url["http://".len()..];
            return format!("http://{}", rest.split('/').next().unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no events listener:\n{}",
            lines.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Posts a binary-mode CloudEvent of type `ty`; the status and body (an error while the
/// runtime is still compiling the module under load is a `None`).
fn try_post_event(events: &str, ty: &str) -> Option<(u16, String)> {
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .ok()?
        .post(format!("{events}/.platform/events"))
        .header("ce-specversion", "1.0")
        .header("ce-type", ty)
        .header("ce-source", "/e2e")
        .header("ce-id", "m-1")
        .body("order 9")
        .send()
        .ok()?;
    Some((r.status().as_u16(), r.text().ok()?))
}

fn post_event(events: &str, ty: &str) -> (u16, String) {
    try_post_event(events, ty).unwrap()
}

fn assert_events_delivered(events: &str) {
    let started = Instant::now();
    let (status, body) = loop {
        let got = try_post_event(events, "com.example.order.created");
        match got {
            Some(g) if g.0 == 200 || started.elapsed() > Duration::from_secs(180) => break g,
            None if started.elapsed() > Duration::from_secs(180) => panic!("no answer in 180 s"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (seen["path"].as_str(), seen["body"].as_str()),
        (Some("/events"), Some("order 9"))
    );
    // An app with triggers and no routes.
    let (status, body) = post_event(events, "com.example.audit");
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["path"], "/audit");
    assert_eq!(post_event(events, "com.example.other").0, 404);
}

#[test]
fn runtime_manifest_triggers_deliver_cloudevents() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path());
    let p = start(&[
        "runtime",
        "--manifest",
        m.to_str().unwrap(),
        "--events-listen=127.0.0.1:0",
    ]);
    assert_events_delivered(&events_url(&p));
}

#[test]
fn up_manifest_applies_triggers_through_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path());
    let p = start(&[
        "up",
        "--manifest",
        m.to_str().unwrap(),
        "--events-listen=127.0.0.1:0",
    ]);
    assert_events_delivered(&events_url(&p));
    let token = std::fs::read_to_string(p.data_dir.path().join("admin-token")).unwrap();
    let out = crate::cluster::cli(&p.admin, token.trim(), &["apps", "--json"]);
    let apps: Value = serde_json::from_str(&out).unwrap();
    let orders = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "orders")
        .unwrap();
    assert_eq!(
        orders["eventTriggers"][0]["eventType"], "com.example.order.created",
        "{orders}"
    );
    assert_eq!(
        orders["subjectTriggers"][0]["subject"], "e2e.manifest.orders.>",
        "{orders}"
    );
    assert_eq!(orders["subjectTriggers"][0]["path"], "/", "{orders}");
}
