//! Tenant isolation on every service: a tenant never sees or changes another's objects.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::support::{Db, Harness, both_databases, wagi};

both_databases!(tenants_are_isolated_on_every_service);

async fn tenants_are_isolated_on_every_service(db: Db) {
    let h = Harness::new(db).await;
    let a = h.tenant_token("acme").await;
    let b = h.tenant_token("bobs").await;
    let r = h.deploy(&a, "shop", "/acme", wagi("acme")).await;
    let release_id = r["release"]["id"].clone();
    let (_, module) = h.upload(&a, wagi("acme-private")).await;
    let digest = module["digest"].clone();
    let routes = h.ok(&a, "RouteService/ListRoutes", json!({})).await;
    let route_id = routes["routes"][0]["id"].clone();
    let tokens = h.ok(&a, "TokenService/ListTokens", json!({})).await;
    let token_id = tokens["tokens"][0]["id"].clone();

    // Apps.
    assert!(h.ok(&b, "AppService/ListApps", json!({})).await["apps"].is_null());
    for method in [
        "AppService/GetApp",
        "AppService/DeleteApp",
        "ReleaseService/ListReleases",
    ] {
        let (s, _) = h.call(&b, method, json!({ "app": "shop" })).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method}");
    }
    // B may use the same app name: names are per tenant.
    h.ok(&b, "AppService/CreateApp", json!({ "name": "shop" }))
        .await;
    // Modules.
    assert!(h.ok(&b, "ModuleService/ListModules", json!({})).await["modules"].is_null());
    let (s, _) = h
        .call(&b, "ModuleService/GetModule", json!({ "digest": digest }))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h
        .call(
            &b,
            "ReleaseService/CreateRelease",
            json!({ "app": "shop", "moduleDigest": digest }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "B must not release A's module");
    let req = Request::get(format!("/v1/modules/{}/wasm", digest.as_str().unwrap()))
        .header("authorization", format!("Bearer {b}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        h.send(req).await.0,
        StatusCode::NOT_FOUND,
        "B must not download A's module"
    );
    let req = Request::get(format!("/v1/modules/{}/wasm", digest.as_str().unwrap()))
        .header("authorization", format!("Bearer {a}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::OK);
    // Releases.
    for (method, body) in [
        ("ReleaseService/GetRelease", json!({ "id": release_id })),
        (
            "ReleaseService/RollbackRelease",
            json!({ "app": release_id }),
        ),
    ] {
        let (s, _) = h.call(&b, method, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method}");
    }
    // Routes: B cannot see or delete A's, nor take its path (and is not told whose it is).
    assert!(h.ok(&b, "RouteService/ListRoutes", json!({})).await["routes"].is_null());
    let (s, _) = h
        .call(&b, "RouteService/DeleteRoute", json!({ "id": route_id }))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = h
        .call(
            &b,
            "RouteService/CreateRoute",
            json!({ "app": "shop", "pathPrefix": "/acme" }),
        )
        .await;
    // The shared host's paths are namespaced: B routes under /bobs only.
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["message"].as_str().unwrap().contains("under /bobs only"),
        "{v}"
    );
    assert!(
        !v.to_string().contains("acme\""),
        "must not leak the owner: {v}"
    );
    // Tokens.
    let listed = h.ok(&b, "TokenService/ListTokens", json!({})).await;
    assert!(!listed.to_string().contains(token_id.as_str().unwrap()));
    let (s, _) = h
        .call(&b, "TokenService/RevokeToken", json!({ "id": token_id }))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The serving feed spans tenants: admins only.
    let (s, _) = h.call(&b, "FeedService/GetSnapshot", json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let req = Request::get(format!(
        "/v1/artifacts/{}/{}",
        "a".repeat(64),
        h.ctl.config.engine.as_str()
    ))
    .header("authorization", format!("Bearer {b}"))
    .body(Body::empty())
    .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::FORBIDDEN);
    // A's app still serves, untouched.
    let snap = h.ok(&h.admin, "FeedService/GetSnapshot", json!({})).await;
    assert_eq!(snap["snapshot"]["apps"][0]["tenant"], "acme");
}

both_databases!(compile_state_is_per_tenant);

async fn compile_state_is_per_tenant(db: Db) {
    // Tenant A uploads and compiles some bytes; tenant B uploading the same bytes must see
    // its own pending compile, not A's finished one.
    let h = Harness::new(db).await;
    let a = h.tenant_token("alpha").await;
    let b = h.tenant_token("beta").await;
    let bytes = wagi("shared");
    let (_, m) = h.upload(&a, bytes.clone()).await;
    h.compile_all().await;
    let m = h
        .ok(
            &a,
            "ModuleService/GetModule",
            json!({ "digest": m["digest"] }),
        )
        .await;
    assert_eq!(m["module"]["compileState"], "COMPILE_STATE_READY");

    let (s, m) = h.upload(&b, bytes).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_ne!(m["compileState"], "COMPILE_STATE_READY", "{m}");
    h.ok(&b, "AppService/CreateApp", json!({ "name": "b" }))
        .await;
    let r = h
        .ok(
            &b,
            "ReleaseService/CreateRelease",
            json!({ "app": "b", "moduleDigest": m["digest"], "activate": true }),
        )
        .await;
    assert_eq!(r["release"]["state"], "RELEASE_STATE_PENDING", "{r}");
    // B's own compile runs, then its release goes live; the bytes are stored once.
    h.compile_all().await;
    let r = h
        .ok(
            &b,
            "ReleaseService/GetRelease",
            json!({ "id": r["release"]["id"] }),
        )
        .await;
    assert_eq!(r["release"]["live"], true, "{r}");
    assert_eq!(h.count("artifacts").await, 2);
    let modules: Vec<_> = h
        .blobs()
        .await
        .into_iter()
        .filter(|k| k.starts_with("modules/"))
        .collect();
    assert_eq!(modules.len(), 1, "{modules:?}");
}
