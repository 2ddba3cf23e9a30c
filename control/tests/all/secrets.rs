//! Secrets: write-only, sealed at rest, released like an environment change, served in the
//! feed only, and kept per release (a rollback restores them).

use axum::http::StatusCode;
use platform_control::feed::snapshot;
use platform_control::secrets::SecretKeys;
use serde_json::json;
use sqlx::Row;

use crate::support::{Db, Harness, both_databases, wagi};

const VALUE: &str = "s3cr3t-value-7f1e";

fn secret_env(snap: &platform_proto::v1::FeedSnapshot, app: &str) -> Vec<(String, String, u32)> {
    let a = snap.apps.iter().find(|a| a.name == app).unwrap();
    a.releases
        .iter()
        .flat_map(|w| {
            let n = w.release.as_ref().unwrap().number;
            w.secret_env
                .iter()
                .map(move |(k, v)| (k.clone(), v.clone(), n))
        })
        .collect()
}

both_databases!(secrets_are_write_only_and_make_a_release);

async fn secrets_are_write_only_and_make_a_release(db: Db) {
    let h = Harness::new(db).await;
    h.deploy(&h.admin, "shop", "/shop", wagi("1")).await;
    let r = h
        .ok(
            &h.admin,
            "SecretService/SetSecret",
            json!({ "app": "shop", "name": "API_KEY", "value": VALUE }),
        )
        .await;
    assert_eq!(r["releaseNumber"], 2, "{r}");
    assert_eq!(r["secret"]["name"], "API_KEY");
    assert!(!r.to_string().contains(VALUE));

    // Listing shows names and times only.
    let list = h
        .ok(
            &h.admin,
            "SecretService/ListSecrets",
            json!({ "app": "shop" }),
        )
        .await;
    assert_eq!(list["secrets"][0]["name"], "API_KEY");
    assert!(list["secrets"][0]["updateTime"].is_string());
    // No answer about the app or its releases carries the value.
    for (method, body) in [
        ("SecretService/ListSecrets", json!({ "app": "shop" })),
        ("AppService/GetApp", json!({ "app": "shop" })),
        ("ReleaseService/ListReleases", json!({ "app": "shop" })),
    ] {
        let v = h.ok(&h.admin, method, body).await;
        assert!(!v.to_string().contains(VALUE), "{method}: {v}");
    }
    // At rest the value is sealed, in the secret and in the release.
    let rows = sqlx::query("SELECT value FROM secrets")
        .fetch_all(h.ctl.store.pool())
        .await
        .unwrap();
    let sealed: String = rows[0].try_get(0).unwrap();
    assert!(sealed.starts_with("v1:") && !sealed.contains(VALUE));
    let rel = sqlx::query("SELECT secrets FROM releases WHERE number = 2")
        .fetch_one(h.ctl.store.pool())
        .await
        .unwrap();
    let rel_sealed: Option<String> = rel.try_get(0).unwrap();
    assert!(!rel_sealed.unwrap().contains(VALUE));

    // The feed serves release #2 with the value.
    let snap = snapshot(&h.ctl).await.unwrap();
    assert_eq!(
        secret_env(&snap, "shop"),
        vec![("API_KEY".to_string(), VALUE.to_string(), 2)]
    );
    // A new value makes #3; a rollback to #2 brings the old value back.
    h.ok(
        &h.admin,
        "SecretService/SetSecret",
        json!({ "app": "shop", "name": "API_KEY", "value": "second" }),
    )
    .await;
    let snap = snapshot(&h.ctl).await.unwrap();
    assert_eq!(secret_env(&snap, "shop")[0].1, "second");
    h.ok(
        &h.admin,
        "ReleaseService/RollbackRelease",
        json!({ "app": "shop", "release": "2" }),
    )
    .await;
    let snap = snapshot(&h.ctl).await.unwrap();
    assert_eq!(secret_env(&snap, "shop")[0].1, VALUE);
    // A release made by a deploy gets the current secrets too.
    let (_, m) = h.upload(&h.admin, wagi("2")).await;
    h.compile_all().await;
    h.ok(
        &h.admin,
        "ReleaseService/CreateRelease",
        json!({ "app": "shop", "moduleDigest": m["digest"], "activate": true }),
    )
    .await;
    let snap = snapshot(&h.ctl).await.unwrap();
    assert_eq!(
        secret_env(&snap, "shop"),
        vec![("API_KEY".into(), "second".into(), 4)]
    );

    // Unset: a release without it.
    let r = h
        .ok(
            &h.admin,
            "SecretService/DeleteSecret",
            json!({ "app": "shop", "name": "API_KEY" }),
        )
        .await;
    assert_eq!(r["releaseNumber"], 5);
    let snap = snapshot(&h.ctl).await.unwrap();
    assert!(secret_env(&snap, "shop").is_empty());
    let (s, _) = h
        .call(
            &h.admin,
            "SecretService/DeleteSecret",
            json!({ "app": "shop", "name": "API_KEY" }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

both_databases!(secret_names_apps_and_tenants_are_checked);

async fn secret_names_apps_and_tenants_are_checked(db: Db) {
    let h = Harness::new(db).await;
    // Before any release: stored, and the first release gets it.
    h.ok(&h.admin, "AppService/CreateApp", json!({ "name": "early" }))
        .await;
    let r = h
        .ok(
            &h.admin,
            "SecretService/SetSecret",
            json!({ "app": "early", "name": "TOKEN", "value": "x" }),
        )
        .await;
    // (0 is proto3 JSON's default, so the field is left out.)
    assert_eq!(r["releaseNumber"].as_u64().unwrap_or(0), 0, "{r}");
    for bad in ["", "1X", "A-B", "A B"] {
        let (s, v) = h
            .call(
                &h.admin,
                "SecretService/SetSecret",
                json!({ "app": "early", "name": bad, "value": "x" }),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}: {v}");
    }
    // Another tenant sees no such app.
    let other = h.tenant_token("other").await;
    let (s, _) = h
        .call(
            &other,
            "SecretService/ListSecrets",
            json!({ "app": "early" }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h
        .call(
            &other,
            "SecretService/SetSecret",
            json!({ "app": "early", "name": "TOKEN", "value": "y" }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

both_databases!(a_rotation_seals_everything_under_the_new_key);

async fn a_rotation_seals_everything_under_the_new_key(db: Db) {
    let (k1, k2) = (SecretKeys::random_bytes(), SecretKeys::random_bytes());
    let h = Harness::with_config(db, |c| c.secrets = Some(SecretKeys::from_bytes(&k1, &[]))).await;
    h.deploy(&h.admin, "shop", "/shop", wagi("1")).await;
    h.ok(
        &h.admin,
        "SecretService/SetSecret",
        json!({ "app": "shop", "name": "API_KEY", "value": VALUE }),
    )
    .await;
    // The same database under a control plane with the new key, and the old one kept.
    let rotated = platform_control::Control::new(
        h.ctl.store.clone(),
        h.ctl.blobs.clone(),
        platform_control::events::EventBus::in_process(),
        platform_control::ControlConfig {
            secrets: Some(SecretKeys::from_bytes(&k2, &[k1])),
            ..h.ctl.config.clone()
        },
    );
    let (done, left) = platform_control::api::secrets::reseal_all(&rotated)
        .await
        .unwrap();
    assert_eq!((done, left), (2, 0), "the secret and release #2's snapshot");
    // Now the new key alone opens everything.
    let only_new = platform_control::Control::new(
        h.ctl.store.clone(),
        h.ctl.blobs.clone(),
        platform_control::events::EventBus::in_process(),
        platform_control::ControlConfig {
            secrets: Some(SecretKeys::from_bytes(&k2, &[])),
            ..h.ctl.config.clone()
        },
    );
    let snap = snapshot(&only_new).await.unwrap();
    assert_eq!(secret_env(&snap, "shop")[0].1, VALUE);
    assert_eq!(
        platform_control::api::secrets::reseal_all(&only_new)
            .await
            .unwrap(),
        (0, 0)
    );
}
