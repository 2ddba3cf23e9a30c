//! Events in, through the real processes: `platform control` + `platform worker` + two
//! `platform runtime`s over PostgreSQL and NATS. A Go handler gets triggers through the CLI;
//! CloudEvents posted to either runtime and NATS messages reach it. (Dedicated apps:
//! `dedicated.rs`.)

use std::time::{Duration, Instant};

use platform_test_guests as guests;
use serde_json::Value;

use crate::cluster::{ControlPlane, cli, start_runtime};

fn post_event(rt: &str, ty: &str) -> Option<(u16, String)> {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let r = c
        .post(format!("{rt}/.platform/events"))
        .header("ce-specversion", "1.0")
        .header("ce-type", ty)
        .header("ce-source", "/e2e")
        .header("ce-id", "e2e-1")
        .body("order 7")
        .send()
        .ok()?;
    Some((r.status().as_u16(), r.text().ok()?))
}

fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cloudevents_and_nats_messages_reach_a_go_handler_through_the_cluster() {
    let events = guests::go_sdk("events");
    let cp = ControlPlane::start();
    let (server, token) = (cp.server.clone(), cp.token.clone());
    let runtime_nats = cp.nats.url_for("runtime");
    let start_runtime = |i: usize, extra: &[&str]| {
        start_runtime(
            cp.dir.path(),
            &server,
            &runtime_nats,
            &cp.runtime_token,
            i,
            extra,
        )
    };
    let (mut rt0, url0) = start_runtime(0, &[]);
    let (mut rt1, url1) = start_runtime(1, &["--exclude-dedicated"]);
    // CloudEvents go to each runtime's internal events listener, never its traffic one.
    let events0 = rt0.wait_url("CloudEvents from the broker", Duration::from_secs(5));
    let events1 = rt1.wait_url("CloudEvents from the broker", Duration::from_secs(5));

    cli(
        &server,
        &token,
        &[
            "deploy",
            events.to_str().unwrap(),
            "--app",
            "orders",
            "--route",
            "/orders",
        ],
    );
    let out = cli(
        &server,
        &token,
        &[
            "triggers",
            "orders",
            "--event",
            "com.example.order.created=/events",
            "--subject",
            "e2e.orders.>",
        ],
    );
    assert!(out.contains("com.example.order.created"), "{out}");

    // CloudEvents, at either runtime.
    for (rt, traffic) in [(&events0, &url0), (&events1, &url1)] {
        eventually(
            "the event type reaches the runtime",
            Duration::from_secs(10),
            || post_event(rt, "com.example.order.created").is_some_and(|(s, _)| s == 200),
        );
        let (_, body) = post_event(rt, "com.example.order.created").unwrap();
        let seen: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(seen["path"], "/events");
        assert_eq!(seen["type"], "com.example.order.created");
        assert_eq!(seen["body"], "order 7");
        assert_eq!(post_event(rt, "com.example.other").unwrap().0, 404);
        assert_eq!(
            post_event(traffic, "com.example.order.created").unwrap().0,
            404,
            "the public listener takes no events"
        );
    }

    // NATS: a request through the real server gets the handler's answer.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A tenant's client, with the publisher role's credentials.
        let nc = cp.nats.connect("publisher").await;
        let mut answer = None;
        for _ in 0..100 {
            if let Ok(Ok(m)) = tokio::time::timeout(
                Duration::from_secs(2),
                nc.request("e2e.orders.eu", "paid".into()),
            )
            .await
            {
                answer = Some(m);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let m = answer.expect("a runtime answers on e2e.orders.eu");
        assert_eq!(m.headers.unwrap().get("Status").unwrap().as_str(), "200");
        let seen: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(seen["natsSubject"], "e2e.orders.eu");
        assert_eq!(seen["body"], "paid");
    });
}
