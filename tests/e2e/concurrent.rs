//! Concurrent deploys, as a CI pipeline per branch makes them: ten `platform deploy` of one
//! app at once against one control plane, on PostgreSQL (control + worker + NATS) and on
//! SQLite (`platform up`). Every deploy must end with exit 0 and its own release; the newest
//! one serves, the others say they were superseded.

use std::process::Output;
use std::time::Duration;

use platform_test_guests as guests;

use crate::cluster::{ControlPlane, cli};
use crate::support::{bin, start};

const DEPLOYS: usize = 10;

/// Runs the ten deploys at once (each a process of its own) and checks the outcome.
fn ten_deploys_at_once(server: &str, token: &str) {
    let hello = guests::go("hello");
    let outputs: Vec<(usize, Output)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..DEPLOYS)
            .map(|i| {
                let hello = &hello;
                s.spawn(move || {
                    let out = std::process::Command::new(bin())
                        .args(["deploy", hello.to_str().unwrap()])
                        .args(["--app", "race", "--route", "/race"])
                        .args(["--env", &format!("N={i}")])
                        .args(["--wait-timeout", "2m", "--json"])
                        .args(["--server", server, "--token", token])
                        .output()
                        .unwrap();
                    (i, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut numbers = Vec::new();
    let mut live = 0;
    for (i, out) in &outputs {
        assert!(
            out.status.success(),
            "deploy {i} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let d = &v[0];
        assert_eq!(d["new_release"], true, "deploy {i}: {d}");
        assert_eq!(
            d["release"]["state"], "RELEASE_STATE_READY",
            "deploy {i}: {d}"
        );
        match d["outcome"].as_str().unwrap() {
            "live" => live += 1,
            "superseded" => assert!(
                d["newest"].as_u64().unwrap() > d["release"]["number"].as_u64().unwrap(),
                "deploy {i}: {d}"
            ),
            other => panic!("deploy {i}: unexpected outcome {other}: {d}"),
        }
        numbers.push(d["release"]["number"].as_u64().unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (1..=DEPLOYS as u64).collect::<Vec<_>>());
    assert!(live >= 1, "no deploy reported its release live");

    // Ten releases; the newest is live and serves the route.
    let releases: serde_json::Value =
        serde_json::from_str(&cli(server, token, &["releases", "race", "--json"])).unwrap();
    let releases = releases.as_array().unwrap();
    assert_eq!(releases.len(), DEPLOYS, "{releases:?}");
    let live: Vec<_> = releases.iter().filter(|r| r["live"] == true).collect();
    assert_eq!(live.len(), 1, "{releases:?}");
    assert_eq!(live[0]["number"], DEPLOYS as u64, "{releases:?}");
    let routes = cli(server, token, &["routes", "--json"]);
    assert_eq!(routes.matches("\"/race\"").count(), 1, "{routes}");
}

#[test]
fn ten_concurrent_deploys_on_postgres() {
    let cp = ControlPlane::start();
    ten_deploys_at_once(&cp.server, &cp.token);
}

#[test]
fn ten_concurrent_deploys_on_sqlite() {
    let p = start(&["up"]);
    let token = std::fs::read_to_string(p.data_dir.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    ten_deploys_at_once(&p.admin, &token);
    // The newest release serves.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = reqwest::blocking::get(p.url("/race")).unwrap();
        if r.status() == 200 {
            assert_eq!(r.text().unwrap(), "hello from Go\n");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "/race never served");
        std::thread::sleep(Duration::from_millis(50));
    }
}
