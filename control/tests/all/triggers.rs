//! Events in (CloudEvent types and NATS subjects per app) and dedicated mode's API side.

use futures::StreamExt;
use platform_proto::v1::feed_event::Change;
use serde_json::json;

use crate::support::{Db, Harness, both_databases, wagi};

both_databases!(triggers_are_validated_unique_and_fed_to_runtimes);

async fn triggers_are_validated_unique_and_fed_to_runtimes(db: Db) {
    let mut h = Harness::new(db).await;
    // An app with a live release but no route: triggers alone make it serve.
    let (_, m) = h.upload(&h.admin, wagi("ev")).await;
    h.ok(
        &h.admin,
        "AppService/CreateApp",
        json!({ "name": "orders" }),
    )
    .await;
    h.ok(
        &h.admin,
        "ReleaseService/CreateRelease",
        json!({ "app": "orders", "moduleDigest": m["digest"], "activate": true }),
    )
    .await;
    h.compile_all().await;
    let live = h.feed.next().await.unwrap();
    assert!(
        matches!(live.change, Some(Change::AppRemoved(_))),
        "no route, no trigger: not served"
    );
    assert!(
        platform_control::feed::snapshot(&h.ctl)
            .await
            .unwrap()
            .apps
            .is_empty()
    );

    let app = h
        .ok(
            &h.admin,
            "AppService/SetAppTriggers",
            json!({
                "app": "orders",
                "eventTriggers": [{ "eventType": "com.example.order.created", "path": "/events" }],
                "subjectTriggers": [{ "subject": "orders.>" }],
            }),
        )
        .await;
    assert_eq!(
        app["app"]["eventTriggers"][0]["eventType"],
        "com.example.order.created"
    );
    assert_eq!(app["app"]["subjectTriggers"][0]["path"], "/");
    let ev = h.feed.next().await.unwrap();
    let Some(Change::AppChanged(serving)) = ev.change else {
        panic!("expected the app to serve: {ev:?}")
    };
    assert!(serving.routes.is_empty());
    assert_eq!(serving.event_triggers[0].path, "/events");
    assert_eq!(serving.subject_triggers[0].subject, "orders.>");
    let snap = platform_control::feed::snapshot(&h.ctl).await.unwrap();
    assert_eq!(snap.apps.len(), 1, "event-only apps are in the snapshot");

    // Invalid values are refused with the field at fault.
    for (body, field) in [
        (
            json!({ "app": "orders", "eventTriggers": [{ "eventType": "has space" }] }),
            "event_type",
        ),
        (
            json!({ "app": "orders", "subjectTriggers": [{ "subject": ">" }] }),
            "subject",
        ),
        (
            json!({ "app": "orders", "subjectTriggers": [{ "subject": "platform.feed.v1" }] }),
            "subject",
        ),
        (
            json!({ "app": "orders", "eventTriggers": [{ "eventType": "a", "path": "rel" }] }),
            "path",
        ),
        (
            json!({ "app": "orders", "eventTriggers": [{ "eventType": "a" }, { "eventType": "a" }] }),
            "event_type",
        ),
    ] {
        let (s, v) = h.call(&h.admin, "AppService/SetAppTriggers", body).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["field"], field, "{v}");
    }

    // Another app (same tenant) and another tenant cannot take the same type or subject.
    h.ok(
        &h.admin,
        "AppService/CreateApp",
        json!({ "name": "billing" }),
    )
    .await;
    let (s, v) = h
        .call(
            &h.admin,
            "AppService/SetAppTriggers",
            json!({ "app": "billing", "eventTriggers": [{ "eventType": "com.example.order.created" }] }),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("\"orders\""), "{v}");
    let other = h.tenant_token("acme").await;
    h.ok(&other, "AppService/CreateApp", json!({ "name": "spy" }))
        .await;
    let (s, v) = h
        .call(
            &other,
            "AppService/SetAppTriggers",
            json!({ "app": "spy", "subjectTriggers": [{ "subject": "orders.>" }] }),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("another tenant"),
        "other tenants' app names are not revealed: {v}"
    );
    // Wildcards may not reach across tenants either way: a subject under another tenant's
    // `orders.>`, or a wildcard covering another tenant's literal subject.
    for subject in ["orders.created", "orders.*", "orders.*.eu"] {
        let (s, v) = h
            .call(
                &other,
                "AppService/SetAppTriggers",
                json!({ "app": "spy", "subjectTriggers": [{ "subject": subject }] }),
            )
            .await;
        assert_eq!(s, 409, "{subject}: {v}");
        assert_eq!(v["field"], "subject", "{v}");
    }
    h.ok(
        &other,
        "AppService/SetAppTriggers",
        json!({ "app": "spy", "subjectTriggers": [{ "subject": "invoices.paid" }, { "subject": "orders" }] }),
    )
    .await;
    for subject in ["invoices.>", "invoices.*", "invoices.paid"] {
        let (s, v) = h
            .call(
                &h.admin,
                "AppService/SetAppTriggers",
                json!({ "app": "billing", "subjectTriggers": [{ "subject": subject }] }),
            )
            .await;
        assert_eq!(s, 409, "{subject}: {v}");
    }
    h.ok(&other, "AppService/SetAppTriggers", json!({ "app": "spy" }))
        .await;
    // The failed calls changed nothing.
    let got = h
        .ok(&h.admin, "AppService/GetApp", json!({ "app": "orders" }))
        .await;
    assert_eq!(got["app"]["eventTriggers"].as_array().unwrap().len(), 1);

    // Routes under /.platform are the platform's own.
    let (s, v) = h
        .call(
            &h.admin,
            "RouteService/CreateRoute",
            json!({ "app": "orders", "pathPrefix": "/.platform/events" }),
        )
        .await;
    assert_eq!(s, 400, "{v}");

    // Clearing triggers stops serving; deleting the app frees its values.
    h.ok(
        &h.admin,
        "AppService/SetAppTriggers",
        json!({ "app": "orders" }),
    )
    .await;
    let ev = h.feed.next().await.unwrap();
    assert!(matches!(ev.change, Some(Change::AppRemoved(_))), "{ev:?}");
    h.ok(
        &h.admin,
        "AppService/SetAppTriggers",
        json!({ "app": "orders", "subjectTriggers": [{ "subject": "orders.>" }] }),
    )
    .await;
    h.ok(&h.admin, "AppService/DeleteApp", json!({ "app": "orders" }))
        .await;
    assert_eq!(h.count("triggers").await, 0);
    h.ok(
        &other,
        "AppService/SetAppTriggers",
        json!({ "app": "spy", "subjectTriggers": [{ "subject": "orders.>" }] }),
    )
    .await;
}

both_databases!(dedicated_flag_reaches_the_feed);

async fn dedicated_flag_reaches_the_feed(db: Db) {
    let mut h = Harness::new(db).await;
    h.deploy(&h.admin, "big", "/big", wagi("d")).await;
    let _ = h.feed.next().await;
    let _ = h.feed.next().await;
    let v = h
        .ok(
            &h.admin,
            "AppService/SetAppDedicated",
            json!({ "app": "big", "dedicated": true }),
        )
        .await;
    assert_eq!(v["app"]["dedicated"], true);
    assert!(
        v["app"]["dedicatedStatus"]["message"]
            .as_str()
            .unwrap()
            .contains("waiting"),
        "{v}"
    );
    let ev = h.feed.next().await.unwrap();
    let Some(Change::AppChanged(a)) = ev.change else {
        panic!("{ev:?}")
    };
    assert!(a.dedicated);
    let v = h
        .ok(
            &h.admin,
            "AppService/SetAppDedicated",
            json!({ "app": "big", "dedicated": false }),
        )
        .await;
    assert_eq!(v["app"].get("dedicated"), None, "false is the default: {v}");
    assert_eq!(v["app"].get("dedicatedStatus"), None);
}
