//! Events in: CloudEvents over HTTP (binary and structured mode) and NATS subject triggers
//! (against the real nats-server on 127.0.0.1:4222) invoking a Go handler.

use futures::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;

use platform_runtime::route_table::TriggerTarget;
use platform_runtime::{AppSpec, AppTarget, RouteSpec, RouteTable};
use platform_test_guests as guests;
use serde_json::{Value, json};

use crate::support::{TestHost, client, metric_value};

const NATS: &str = "nats://127.0.0.1:4222";

/// The events guest as app `ev`, with the given triggers (and the route `/plain`).
fn install(host: &TestHost, events: &[(&str, &str)], subjects: &[(&str, &str)]) {
    let bytes = std::fs::read(guests::go_sdk("events")).unwrap();
    let digest = host.store.put(&bytes).unwrap();
    let spec = Arc::new(AppSpec {
        app: "ev".into(),
        tenant: "t".into(),
        module: digest,
        ..AppSpec::for_tests("ev")
    });
    let target = Arc::new(AppTarget::single(spec));
    let deliver = |path: &str| TriggerTarget {
        path: path.to_string(),
        target: target.clone(),
    };
    let table = RouteTable::build([(RouteSpec::parse("/plain").unwrap(), target.clone())])
        .unwrap()
        .with_triggers(
            events.iter().map(|(t, p)| (t.to_string(), deliver(p))),
            subjects.iter().map(|(s, p)| (s.to_string(), deliver(p))),
        );
    host.rt.routes.replace(table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_in_binary_and_structured_mode_reach_the_go_handler() {
    let host = TestHost::start().await;
    install(&host, &[("com.example.order.created", "/events")], &[]);
    let c = client();
    // The public traffic listener never takes events: anyone on the internet could forge
    // them. Only the internal events listener does.
    let forged = c
        .post(host.url("/.platform/events"))
        .header("ce-specversion", "1.0")
        .header("ce-type", "com.example.order.created")
        .header("ce-source", "/attacker")
        .header("ce-id", "evt-0")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 404);
    let url = host.events_url("/.platform/events");

    // Binary mode, as Knative Eventing delivers.
    let r = c
        .post(&url)
        .header("ce-specversion", "1.0")
        .header("ce-type", "com.example.order.created")
        .header("ce-source", "/shop")
        .header("ce-id", "evt-1")
        .header("ce-subject", "order/42")
        .header("content-type", "application/json")
        .header("x-test", "kept")
        .body(r#"{"order":42}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    // The handler's reply event goes back to the sender.
    assert_eq!(r.headers()["ce-type"], "com.example.order.created.handled");
    assert_eq!(r.headers()["ce-id"], "evt-1-reply");
    let seen: Value = r.json().await.unwrap();
    assert_eq!(
        seen,
        json!({
            "path": "/events", "method": "POST", "type": "com.example.order.created",
            "id": "evt-1", "source": "/shop", "subject": "order/42", "extension": "",
            "contentType": "application/json", "natsSubject": "", "header": "kept",
            "body": "{\"order\":42}",
        })
    );

    // Structured mode: the guest sees the same binary form.
    let r = c
        .post(&url)
        .header(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )
        .body(
            json!({
                "specversion": "1.0", "type": "com.example.order.created", "source": "/shop",
                "id": "evt-2", "comexampleext": "x1", "datacontenttype": "text/plain",
                "data": "hello",
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["id"], "evt-2");
    assert_eq!(seen["extension"], "x1");
    assert_eq!(seen["contentType"], "text/plain");
    assert_eq!(seen["body"], "hello");
    assert_eq!(seen["path"], "/events");

    // Refusals, each with its reason and without reaching the guest.
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.post(&url)
                .header("ce-specversion", "1.0")
                .header("ce-type", "com.example.unknown")
                .header("ce-source", "s")
                .header("ce-id", "1"),
            404,
            "no app takes CloudEvents of type \"com.example.unknown\"",
        ),
        (
            c.post(&url).body("not an event"),
            400,
            "missing ce-specversion, ce-id, ce-source, ce-type",
        ),
        (
            c.post(&url)
                .header("content-type", "application/cloudevents+json")
                .body("{not json"),
            400,
            "malformed structured CloudEvent",
        ),
        (
            c.post(&url)
                .header("content-type", "application/cloudevents-batch+json")
                .body("[]"),
            415,
            "batched CloudEvents are not supported",
        ),
        (c.get(&url), 405, "delivered with POST"),
    ];
    for (req, status, text) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        let body = r.text().await.unwrap();
        assert!(body.contains(text), "{body:?} lacks {text:?}");
    }
    // Ordinary routes are untouched.
    let r = c.post(host.url("/plain")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let metrics = host.rt.metrics.encode();
    assert_eq!(
        metric_value(&metrics, "platform_requests_total", &[("app", "ev")]),
        3.0,
        "two events and one routed request reached the guest"
    );
}

async fn settle(cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn served(host: &TestHost) -> f64 {
    metric_value(
        &host.rt.metrics.encode(),
        "platform_requests_total",
        &[("app", "ev")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_messages_invoke_the_handler_once_across_runtimes() {
    let prefix = format!("test{}", uuid_like());
    let subject = format!("{prefix}.orders.>");
    let a = TestHost::start().await;
    let b = TestHost::start().await;
    for host in [&a, &b] {
        install(host, &[], &[(&subject, "/orders")]);
        let client =
            platform_runtime::subject_triggers::connect(NATS, async_nats::ConnectOptions::new())
                .await
                .expect("NATS on 127.0.0.1:4222");
        tokio::spawn(platform_runtime::subject_triggers::follow(
            host.rt.clone(),
            client,
            std::future::pending(),
        ));
    }
    let nats = async_nats::connect(NATS).await.unwrap();
    // Wait until both runtimes subscribed (a request gets an answer).
    let mut answered = false;
    for _ in 0..100 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("X-Test", "hdr");
        match tokio::time::timeout(
            Duration::from_secs(5),
            nats.request_with_headers(format!("{prefix}.orders.eu"), headers, "payload".into()),
        )
        .await
        {
            Ok(Ok(reply)) => {
                let h = reply.headers.clone().unwrap();
                assert_eq!(h.get("Status").unwrap().as_str(), "200");
                assert!(h.get("X-Request-Id").is_some());
                let seen: Value = serde_json::from_slice(&reply.payload).unwrap();
                assert_eq!(seen["path"], "/orders");
                assert_eq!(seen["method"], "POST");
                assert_eq!(seen["natsSubject"], format!("{prefix}.orders.eu"));
                assert_eq!(seen["header"], "hdr");
                assert_eq!(seen["contentType"], "application/octet-stream");
                assert_eq!(seen["body"], "payload");
                answered = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(answered, "no runtime answered on {prefix}.orders.eu");

    // A handler error is reported in the reply's Status.
    let reply = nats
        .request(format!("{prefix}.orders.eu"), "fail".into())
        .await
        .unwrap();
    assert_eq!(
        reply.headers.unwrap().get("Status").unwrap().as_str(),
        "500"
    );

    // A reply subject that is not an inbox (here standing in for `platform.feed.v1` or
    // another tenant's trigger) gets nothing: the guest runs, its answer is dropped.
    let mut victim = nats.subscribe(format!("{prefix}.victim")).await.unwrap();
    nats.flush().await.unwrap();
    let before = served(&a) + served(&b);
    nats.publish_with_reply(
        format!("{prefix}.orders.eu"),
        format!("{prefix}.victim"),
        "forged".into(),
    )
    .await
    .unwrap();
    nats.flush().await.unwrap();
    settle(|| served(&a) + served(&b) >= before + 1.0).await;
    let leaked = tokio::time::timeout(Duration::from_millis(700), victim.next()).await;
    assert!(
        leaked.is_err(),
        "a reply was published on a non-inbox subject: {leaked:?}"
    );

    // Fire-and-forget messages: each invokes the app exactly once, across both runtimes
    // (one queue group per app).
    let before = served(&a) + served(&b);
    for i in 0..40 {
        nats.publish(format!("{prefix}.orders.n{i}"), "x".into())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    settle(|| served(&a) + served(&b) >= before + 40.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served(&a) + served(&b), before + 40.0);

    // Removing the trigger unsubscribes: no one answers any more.
    install(&a, &[], &[]);
    install(&b, &[], &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        nats.request(format!("{prefix}.orders.eu"), "x".into()),
    )
    .await;
    assert!(
        !matches!(r, Ok(Ok(_))),
        "a removed trigger must not answer: {r:?}"
    );
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{n:x}")
}
