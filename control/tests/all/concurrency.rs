//! Concurrent calls that race on the same rows: uploads of the same bytes, releases of one
//! app, creating one app. None may fail with an internal error; numbering stays gap-free.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{Db, Harness, both_databases, wagi};

both_databases!(
    concurrent_uploads_releases_and_creates_never_fail_internally,
    a_release_made_ready_after_a_newer_one_went_live_is_not_live,
);

async fn concurrent_uploads_releases_and_creates_never_fail_internally(db: Db) {
    let h = Harness::new(db).await;
    let bytes = wagi("race");

    // Ten uploads of the same bytes at once: all succeed, one row each.
    let uploads =
        futures::future::join_all((0..10).map(|_| h.upload(&h.admin, bytes.clone()))).await;
    for (s, v) in &uploads {
        assert_eq!(*s, StatusCode::OK, "{v}");
    }
    assert_eq!(h.count("modules").await, 1);
    assert_eq!(h.count("artifacts").await, 1);
    let digest = uploads[0].1["digest"].clone();

    // Ten creates of one app: one creates it, the others are told it exists.
    let creates = futures::future::join_all(
        (0..10).map(|_| h.call(&h.admin, "AppService/CreateApp", json!({ "name": "race" }))),
    )
    .await;
    let created = creates.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(created, 1, "{creates:?}");
    for (s, v) in &creates {
        assert!(
            *s == StatusCode::OK || (*s == StatusCode::CONFLICT && v["code"] == "already_exists"),
            "{s} {v}"
        );
    }

    // Ten releases at once: ten distinct numbers 1..=10.
    let releases = futures::future::join_all((0..10).map(|i| {
        h.call(
            &h.admin,
            "ReleaseService/CreateRelease",
            json!({ "app": "race", "moduleDigest": digest, "activate": true, "env": { "N": i.to_string() } }),
        )
    }))
    .await;
    let mut numbers: Vec<u64> = releases
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, StatusCode::OK, "{v}");
            v["release"]["number"].as_u64().unwrap()
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=10).collect::<Vec<_>>());

    // Once compiled, the newest goes live; every other one is ready and not live.
    h.compile_all().await;
    let list = h
        .ok(
            &h.admin,
            "ReleaseService/ListReleases",
            json!({ "app": "race" }),
        )
        .await;
    let list = list["releases"].as_array().unwrap();
    assert_eq!(list.len(), 10);
    for r in list {
        assert_eq!(r["state"], "RELEASE_STATE_READY", "{r}");
        assert_eq!(r["live"] == true, r["number"] == 10, "{r}");
    }
}

async fn a_release_made_ready_after_a_newer_one_went_live_is_not_live(db: Db) {
    // #1 waits for its module; #2 (another module, already compiled) goes live at once;
    // when #1's module compiles, #1 becomes ready but stays superseded by #2.
    let h = Harness::new(db).await;
    let (_, fast) = h.upload(&h.admin, wagi("fast")).await;
    h.compile_all().await;
    let (_, slow) = h.upload(&h.admin, wagi("slow")).await;
    h.ok(&h.admin, "AppService/CreateApp", json!({ "name": "shop" }))
        .await;
    let first = h
        .ok(
            &h.admin,
            "ReleaseService/CreateRelease",
            json!({ "app": "shop", "moduleDigest": slow["digest"], "activate": true }),
        )
        .await;
    assert_eq!(first["release"]["state"], "RELEASE_STATE_PENDING");
    let second = h
        .ok(
            &h.admin,
            "ReleaseService/CreateRelease",
            json!({ "app": "shop", "moduleDigest": fast["digest"], "activate": true }),
        )
        .await;
    assert_eq!(second["release"]["live"], true);
    h.compile_all().await;
    let first = h
        .ok(
            &h.admin,
            "ReleaseService/GetRelease",
            json!({ "id": first["release"]["id"] }),
        )
        .await;
    assert_eq!(first["release"]["state"], "RELEASE_STATE_READY");
    assert_ne!(first["release"]["live"], true);
}
