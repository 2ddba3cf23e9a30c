//! Operator caps on release limits, per-tenant quotas, and owner-only files.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{Db, Harness, both_databases, wagi};

both_databases!(
    release_limits_above_a_cap_are_refused_naming_it,
    tenant_quotas_are_enforced
);

async fn release_limits_above_a_cap_are_refused_naming_it(db: Db) {
    let h = Harness::with_config(db, |c| {
        c.caps.memory_bytes = 64 << 20;
        c.caps.timeout_ms = 2_000;
        c.caps.max_body_bytes = 1 << 20;
        c.caps.max_response_bytes = 2 << 20;
    })
    .await;
    let (_, m) = h.upload(&h.admin, wagi("caps")).await;
    h.ok(&h.admin, "AppService/CreateApp", json!({ "name": "shop" }))
        .await;
    for (limits, flag) in [
        (
            json!({ "memoryBytes": 128u64 << 20 }),
            "--max-release-memory",
        ),
        (json!({ "timeoutMs": 5000 }), "--max-release-timeout"),
        (json!({ "maxBodyBytes": 2u64 << 20 }), "--max-release-body"),
        (
            json!({ "maxResponseBytes": 4u64 << 20 }),
            "--max-release-response",
        ),
    ] {
        let (s, v) = h
            .call(
                &h.admin,
                "ReleaseService/CreateRelease",
                json!({ "app": "shop", "moduleDigest": m["digest"], "limits": limits }),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{limits}: {v}");
        assert_eq!(v["code"], "invalid_argument");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains("cap") && msg.contains(flag), "{msg}");
    }
    // Unset limits take the defaults lowered to the caps; limits within them are kept.
    let r = h
        .ok(
            &h.admin,
            "ReleaseService/CreateRelease",
            json!({ "app": "shop", "moduleDigest": m["digest"], "limits": { "timeoutMs": 1500 } }),
        )
        .await;
    let l = &r["release"]["limits"];
    assert_eq!(
        l["memoryBytes"].as_str().unwrap(),
        (64u64 << 20).to_string()
    );
    assert_eq!(l["timeoutMs"].as_str().unwrap(), "1500");
    assert_eq!(
        l["maxBodyBytes"].as_str().unwrap(),
        (1u64 << 20).to_string()
    );
    assert_eq!(
        l["maxResponseBytes"].as_str().unwrap(),
        (2u64 << 20).to_string()
    );
}

async fn tenant_quotas_are_enforced(db: Db) {
    let h = Harness::with_config(db, |c| {
        c.quotas.apps = 2;
        c.quotas.modules = 2;
        c.quotas.module_bytes = 1 << 20;
    })
    .await;
    let t = h.tenant_token("acme").await;
    for name in ["a", "b"] {
        h.ok(&t, "AppService/CreateApp", json!({ "name": name }))
            .await;
    }
    let (s, v) = h
        .call(&t, "AppService/CreateApp", json!({ "name": "c" }))
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["code"], "resource_exhausted");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("--max-apps-per-tenant"),
        "{v}"
    );
    // Another tenant has its own quota.
    h.ok(&h.admin, "AppService/CreateApp", json!({ "name": "c" }))
        .await;

    // Two modules; the same bytes again are fine; a third is refused.
    for tag in ["m1", "m2", "m1"] {
        let (s, v) = h.upload(&t, wagi(tag)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v) = h.upload(&t, wagi("m3")).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("--max-modules-per-tenant"),
        "{v}"
    );

    // Stored bytes: a module that would pass the byte quota is refused.
    let h = Harness::with_config(db, |c| c.quotas.module_bytes = 300).await;
    let t = h.tenant_token("acme").await;
    let (s, v) = h.upload(&t, wagi("small")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let padded = wagi(&"x".repeat(300));
    let (s, v) = h.upload(&t, padded).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("--max-module-bytes-per-tenant"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_database_and_blobs_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::new(Db::Sqlite).await;
    let (s, _) = h.upload(&h.admin, wagi("perm")).await;
    assert_eq!(s, StatusCode::OK);
    h.compile_all().await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&h.dir.path().join("t.db")), 0o600, "database file");
    let blobs = h.dir.path().join("blobs");
    assert_eq!(mode(&blobs), 0o700, "blob root");
    let mut files = 0;
    for dir in std::fs::read_dir(&blobs).unwrap() {
        let dir = dir.unwrap().path();
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            assert_eq!(mode(&f), 0o600, "{}", f.display());
            files += 1;
        }
    }
    assert!(files >= 2, "module and artifact blobs");
}
