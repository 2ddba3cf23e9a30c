//! The serving feed: revisions, events and snapshots.

use futures::StreamExt;
use platform_proto::v1::feed_event::Change;
use serde_json::json;

use crate::support::{Db, Harness, both_databases, wagi};

both_databases!(every_serving_change_is_one_revision_and_one_event);

async fn every_serving_change_is_one_revision_and_one_event(db: Db) {
    let mut h = Harness::new(db).await;
    assert_eq!(h.ctl.store.revision().await.unwrap(), 0);
    // Release goes live (1), route added (2).
    h.deploy(&h.admin, "shop", "/shop", wagi("1")).await;
    let e1 = h.feed.next().await.unwrap();
    let e2 = h.feed.next().await.unwrap();
    assert_eq!((e1.revision, e2.revision), (1, 2));
    // Live release but no route yet: the app serves nothing.
    assert!(matches!(e1.change, Some(Change::AppRemoved(_))), "{e1:?}");
    match &e2.change {
        Some(Change::AppChanged(app)) => {
            assert_eq!(app.name, "shop");
            assert_eq!(app.routes[0].path_prefix, "/shop");
            assert_eq!(app.releases.len(), 1);
            assert_eq!(app.releases[0].weight, 100);
        }
        other => panic!("{other:?}"),
    }
    // A split shows both releases with weights.
    let (_, m2) = h.upload(&h.admin, wagi("2")).await;
    h.compile_all().await;
    h.ok(
        &h.admin,
        "ReleaseService/CreateRelease",
        json!({ "app": "shop", "moduleDigest": m2["digest"] }),
    )
    .await;
    h.ok(
        &h.admin,
        "ReleaseService/SetTrafficSplit",
        json!({ "app": "shop", "release": "2", "weight": 25 }),
    )
    .await;
    let e3 = h.feed.next().await.unwrap();
    assert_eq!(e3.revision, 3);
    let Some(Change::AppChanged(app)) = &e3.change else {
        panic!("{e3:?}")
    };
    let weights: Vec<u32> = app.releases.iter().map(|w| w.weight).collect();
    assert_eq!(weights, vec![75, 25]);
    // Deleting the app removes it.
    h.ok(&h.admin, "AppService/DeleteApp", json!({ "app": "shop" }))
        .await;
    let e4 = h.feed.next().await.unwrap();
    assert_eq!(e4.revision, 4);
    assert!(matches!(e4.change, Some(Change::AppRemoved(_))));
    let snap = platform_control::feed::snapshot(&h.ctl).await.unwrap();
    assert_eq!(snap.revision, 4);
    assert!(snap.apps.is_empty());
}
