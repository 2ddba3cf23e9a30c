//! Token roles: a runtime token reads the serving feed, modules and artifacts, and nothing
//! else; only admins create one.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::support::{Db, Harness, both_databases, wagi};

both_databases!(runtime_tokens_read_the_feed_and_nothing_else);

async fn runtime_tokens_read_the_feed_and_nothing_else(db: Db) {
    let h = Harness::new(db).await;
    let deployed = h.deploy(&h.admin, "shop", "/shop", wagi("rt")).await;
    let digest = deployed["release"]["moduleDigest"]
        .as_str()
        .unwrap()
        .to_string();

    // Members cannot mint runtime tokens; admins can.
    let member = h.tenant_token("acme").await;
    let (s, v) = h
        .call(
            &member,
            "TokenService/CreateToken",
            json!({ "name": "rt", "role": "TOKEN_ROLE_RUNTIME" }),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let created = h
        .ok(
            &h.admin,
            "TokenService/CreateToken",
            json!({ "name": "runtime", "role": "TOKEN_ROLE_RUNTIME" }),
        )
        .await;
    assert_eq!(created["token"]["role"], "TOKEN_ROLE_RUNTIME");
    assert_ne!(created["token"]["admin"], true);
    let rt = created["secret"].as_str().unwrap().to_string();

    // What a runtime needs works.
    let snap = h.ok(&rt, "FeedService/GetSnapshot", json!({})).await;
    assert_eq!(snap["snapshot"]["apps"].as_array().unwrap().len(), 1);
    let get = |path: String| {
        Request::get(path)
            .header("authorization", format!("Bearer {rt}"))
            .body(Body::empty())
            .unwrap()
    };
    let resp =
        tower::ServiceExt::oneshot(h.router.clone(), get(format!("/v1/modules/{digest}/wasm")))
            .await
            .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let engine = h.ctl.config.engine.as_str().to_string();
    let resp = tower::ServiceExt::oneshot(
        h.router.clone(),
        get(format!("/v1/artifacts/{digest}/{engine}")),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Everything else refuses it.
    for (method, body) in [
        ("AppService/ListApps", json!({})),
        ("AppService/GetApp", json!({ "app": "shop" })),
        ("AppService/CreateApp", json!({ "name": "evil" })),
        ("AppService/DeleteApp", json!({ "app": "shop" })),
        ("ReleaseService/ListReleases", json!({ "app": "shop" })),
        ("RouteService/ListRoutes", json!({})),
        ("ModuleService/ListModules", json!({})),
        ("TokenService/ListTokens", json!({})),
        ("TokenService/CreateToken", json!({ "name": "more" })),
        ("FeedService/GetInfo", json!({})),
    ] {
        let (s, v) = h.call(&rt, method, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method}: {v}");
        assert_eq!(v["code"], "permission_denied", "{method}: {v}");
    }
    let (s, v) = h.upload(&rt, wagi("rt2")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    // Listed with its role.
    let tokens = h.ok(&h.admin, "TokenService/ListTokens", json!({})).await;
    assert!(
        tokens["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "runtime" && t["role"] == "TOKEN_ROLE_RUNTIME"),
        "{tokens}"
    );
}
