//! Apps, releases, routes and tokens through the Connect API.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use prost::Message;
use serde_json::json;

use crate::support::{Db, Harness, both_databases, wagi};

both_databases!(
    connect_protocol_json_and_binary,
    apps_lifecycle,
    release_goes_live_after_compile_then_rollback_and_split,
    invalid_releases_are_refused,
    routes_validation_and_conflicts,
    tokens_create_list_revoke,
    failed_compile_fails_the_release,
    sdk_modules_get_a_per_request_snapshot,
);

async fn connect_protocol_json_and_binary(db: Db) {
    let h = Harness::new(db).await;
    // JSON.
    h.ok(&h.admin, "AppService/CreateApp", json!({ "name": "shop" }))
        .await;
    // Binary protobuf, as generated Connect clients send it.
    let body = platform_proto::v1::ListAppsRequest {}.encode_to_vec();
    let req = Request::post("/platform.v1.AppService/ListApps")
        .header("content-type", "application/proto")
        .header("connect-protocol-version", "1")
        .header("authorization", format!("Bearer {}", h.admin))
        .body(Body::from(body))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(h.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/proto");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let list = platform_proto::v1::ListAppsResponse::decode(bytes).unwrap();
    assert_eq!(list.apps.len(), 1);
    assert_eq!(list.apps[0].name, "shop");
    // Errors are Connect error objects with mapped HTTP statuses.
    let (s, v) = h
        .call(&h.admin, "AppService/GetApp", json!({ "app": "nope" }))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, v) = h.call("plt_wrong", "AppService/ListApps", json!({})).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    let (s, v) = h
        .call(&h.admin, "AppService/CreateApp", json!({ "name": 5 }))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_argument"))
    );
    let req = Request::post("/platform.v1.AppService/ListApps")
        .header("content-type", "text/plain")
        .header("authorization", format!("Bearer {}", h.admin))
        .body(Body::from("{}"))
        .unwrap();
    let (s, _) = h.send(req).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

async fn apps_lifecycle(db: Db) {
    let h = Harness::new(db).await;
    let created = h
        .ok(&h.admin, "AppService/CreateApp", json!({ "name": "shop" }))
        .await;
    assert_eq!(created["app"]["name"], "shop");
    let (s, v) = h
        .call(&h.admin, "AppService/CreateApp", json!({ "name": "shop" }))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_exists")),
        "{v}"
    );
    let (s, v) = h
        .call(
            &h.admin,
            "AppService/CreateApp",
            json!({ "name": "Bad Name!" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["field"], "name");
    let got = h
        .ok(
            &h.admin,
            "AppService/GetApp",
            json!({ "app": created["app"]["id"] }),
        )
        .await;
    assert_eq!(got["app"]["name"], "shop");
    h.deploy(&h.admin, "web", "/web", wagi("web")).await;
    let list = h.ok(&h.admin, "AppService/ListApps", json!({})).await;
    assert_eq!(list["apps"].as_array().unwrap().len(), 2);
    let web = &list["apps"][1];
    assert_eq!(web["routes"][0]["url"], "http://127.0.0.1:8080/web");
    assert_eq!(web["liveReleaseNumber"], 1);
    h.ok(&h.admin, "AppService/DeleteApp", json!({ "app": "web" }))
        .await;
    assert_eq!(h.count("routes").await, 0);
    assert_eq!(h.count("releases").await, 0);
    let (s, _) = h
        .call(&h.admin, "AppService/GetApp", json!({ "app": "web" }))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn release_goes_live_after_compile_then_rollback_and_split(db: Db) {
    let h = Harness::new(db).await;
    let (_, m1) = h.upload(&h.admin, wagi("v1")).await;
    let (_, m2) = h.upload(&h.admin, wagi("v2")).await;
    h.ok(&h.admin, "AppService/CreateApp", json!({ "name": "shop" }))
        .await;
    let r1 = h
        .ok(&h.admin, "ReleaseService/CreateRelease", json!({ "app": "shop", "moduleDigest": m1["digest"], "activate": true, "env": { "A": "1" }, "limits": { "memoryBytes": "67108864", "timeoutMs": "2000" } }))
        .await;
    assert_eq!(r1["release"]["state"], "RELEASE_STATE_PENDING");
    // Proto3 JSON leaves false out.
    assert_ne!(
        r1["release"]["live"], true,
        "must not go live before it is compiled"
    );
    h.compile_all().await;
    let r1 = h
        .ok(
            &h.admin,
            "ReleaseService/GetRelease",
            json!({ "id": r1["release"]["id"] }),
        )
        .await;
    assert_eq!(r1["release"]["state"], "RELEASE_STATE_READY");
    assert_eq!(r1["release"]["live"], true);
    assert_eq!(r1["release"]["limits"]["memoryBytes"], "67108864");
    assert_eq!(r1["release"]["env"]["A"], "1");
    // Module 2 is compiled before the release: it goes live at once.
    h.compile_all().await;
    let r2 = h
        .ok(
            &h.admin,
            "ReleaseService/CreateRelease",
            json!({ "app": "shop", "moduleDigest": m2["digest"], "activate": true }),
        )
        .await;
    assert_eq!(r2["release"]["live"], true);
    assert_eq!(r2["release"]["number"], 2);
    // Roll back to the previous one, then forward by number.
    let back = h
        .ok(
            &h.admin,
            "ReleaseService/RollbackRelease",
            json!({ "app": "shop" }),
        )
        .await;
    assert_eq!(back["release"]["number"], 1);
    let fwd = h
        .ok(
            &h.admin,
            "ReleaseService/RollbackRelease",
            json!({ "app": "shop", "release": "2" }),
        )
        .await;
    assert_eq!(fwd["release"]["number"], 2);
    let list = h
        .ok(
            &h.admin,
            "ReleaseService/ListReleases",
            json!({ "app": "shop" }),
        )
        .await;
    let live: Vec<_> = list["releases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["live"] == true)
        .collect();
    assert_eq!(live.len(), 1);
    // Weighted split: 20% to release 1.
    h.ok(
        &h.admin,
        "ReleaseService/SetTrafficSplit",
        json!({ "app": "shop", "release": "1", "weight": 20 }),
    )
    .await;
    let app = h
        .ok(&h.admin, "AppService/GetApp", json!({ "app": "shop" }))
        .await;
    assert_eq!(app["app"]["split"]["weight"], 20);
    let (s, v) = h
        .call(
            &h.admin,
            "ReleaseService/SetTrafficSplit",
            json!({ "app": "shop", "release": "2", "weight": 20 }),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "splitting to the live release: {v}"
    );
    let (s, _) = h
        .call(
            &h.admin,
            "ReleaseService/SetTrafficSplit",
            json!({ "app": "shop", "release": "1", "weight": 101 }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    h.ok(
        &h.admin,
        "ReleaseService/SetTrafficSplit",
        json!({ "app": "shop", "weight": 0 }),
    )
    .await;
    let app = h
        .ok(&h.admin, "AppService/GetApp", json!({ "app": "shop" }))
        .await;
    assert!(app["app"]["split"].is_null());
}

async fn invalid_releases_are_refused(db: Db) {
    let h = Harness::new(db).await;
    let (_, m) = h.upload(&h.admin, wagi("m")).await;
    h.ok(&h.admin, "AppService/CreateApp", json!({ "name": "shop" }))
        .await;
    let before = h.footprint().await;
    let cases = [
        (
            json!({ "app": "nope", "moduleDigest": m["digest"] }),
            StatusCode::NOT_FOUND,
            "no app",
        ),
        (
            json!({ "app": "shop", "moduleDigest": "ab".repeat(32) }),
            StatusCode::NOT_FOUND,
            "no module",
        ),
        (
            json!({ "app": "shop", "moduleDigest": m["digest"], "limits": { "memoryBytes": "1024" } }),
            StatusCode::BAD_REQUEST,
            "memory limit",
        ),
        (
            json!({ "app": "shop", "moduleDigest": m["digest"], "limits": { "timeoutMs": "3600000" } }),
            StatusCode::BAD_REQUEST,
            "15 minutes",
        ),
        (
            json!({ "app": "shop", "moduleDigest": m["digest"], "env": { "A=B": "x" } }),
            StatusCode::BAD_REQUEST,
            "environment variable",
        ),
        (
            json!({ "app": "shop", "moduleDigest": m["digest"], "allowedOutboundHosts": ["http://x/y"] }),
            StatusCode::BAD_REQUEST,
            "outbound host",
        ),
        (
            json!({ "app": "shop", "moduleDigest": m["digest"], "isolation": "ISOLATION_PER_REQUEST" }),
            StatusCode::BAD_REQUEST,
            "per-request isolation applies to Platform SDK modules",
        ),
    ];
    for (body, status, says) in cases {
        let (s, v) = h
            .call(&h.admin, "ReleaseService/CreateRelease", body.clone())
            .await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    assert_eq!(
        h.footprint().await,
        before,
        "refused releases must leave nothing"
    );
    let (s, _) = h
        .call(
            &h.admin,
            "ReleaseService/RollbackRelease",
            json!({ "app": "shop" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "nothing to roll back from");
}

async fn routes_validation_and_conflicts(db: Db) {
    let h = Harness::new(db).await;
    h.deploy(&h.admin, "shop", "/shop", wagi("s")).await;
    h.ok(&h.admin, "AppService/CreateApp", json!({ "name": "other" }))
        .await;
    let rev = h.ctl.store.revision().await.unwrap();
    let before = h.footprint().await;
    for (host, path, says) in [
        ("", "", "empty"),
        ("", "relative/path", "relative"),
        ("", "/a/../b", "'..'"),
        ("", "/a b", "not allowed"),
        ("bad host", "/x", "invalid host"),
        ("", "/shop", "already used by app \"shop\""),
        ("", "/shop/", "already used"),
    ] {
        let (s, v) = h
            .call(
                &h.admin,
                "RouteService/CreateRoute",
                json!({ "app": "other", "host": host, "pathPrefix": path }),
            )
            .await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::CONFLICT,
            "{host}{path}: {v}"
        );
        assert!(
            v["message"].as_str().unwrap().contains(says),
            "{host}{path}: {v}"
        );
    }
    let (s, _) = h
        .call(
            &h.admin,
            "RouteService/CreateRoute",
            json!({ "app": "ghost", "pathPrefix": "/g" }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(h.footprint().await, before);
    assert_eq!(
        h.ctl.store.revision().await.unwrap(),
        rev,
        "refused changes must not bump the revision"
    );
    // Same prefix on a named host is a different route.
    let r = h
        .ok(
            &h.admin,
            "RouteService/CreateRoute",
            json!({ "app": "other", "host": "API.example.com", "pathPrefix": "/shop" }),
        )
        .await;
    assert_eq!(r["route"]["host"], "api.example.com");
    assert_eq!(r["route"]["url"], "http://api.example.com:8080/shop");
    let all = h.ok(&h.admin, "RouteService/ListRoutes", json!({})).await;
    assert_eq!(all["routes"].as_array().unwrap().len(), 2);
    let mine = h
        .ok(
            &h.admin,
            "RouteService/ListRoutes",
            json!({ "app": "other" }),
        )
        .await;
    assert_eq!(mine["routes"].as_array().unwrap().len(), 1);
    h.ok(
        &h.admin,
        "RouteService/DeleteRoute",
        json!({ "id": r["route"]["id"] }),
    )
    .await;
    assert_eq!(h.count("routes").await, 1);
}

async fn tokens_create_list_revoke(db: Db) {
    let h = Harness::new(db).await;
    let created = h
        .ok(
            &h.admin,
            "TokenService/CreateToken",
            json!({ "name": "ci" }),
        )
        .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("plt_") && secret.len() > 60);
    h.ok(&secret, "AppService/ListApps", json!({})).await;
    let list = h.ok(&h.admin, "TokenService/ListTokens", json!({})).await;
    let text = list.to_string();
    assert!(!text.contains(&secret), "secrets must never be listed");
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    // Only the hash is stored.
    let stored: Vec<String> = sqlx::query_scalar("SELECT secret_hash FROM tokens")
        .fetch_all(h.ctl.store.pool())
        .await
        .unwrap();
    assert!(stored.iter().all(|s| *s != secret && s.len() == 64));
    // A non-admin token cannot mint admin tokens or tokens for other tenants.
    let (s, _) = h
        .call(
            &secret,
            "TokenService/CreateToken",
            json!({ "name": "x", "admin": true }),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h
        .call(
            &secret,
            "TokenService/CreateToken",
            json!({ "name": "x", "tenant": "evil" }),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h
        .call(&secret, "TokenService/CreateToken", json!({ "name": "" }))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    h.ok(
        &h.admin,
        "TokenService/RevokeToken",
        json!({ "id": created["token"]["id"] }),
    )
    .await;
    let (s, _) = h.call(&secret, "AppService/ListApps", json!({})).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "revoked tokens stop working at once"
    );
    let (s, _) = h
        .call(
            &h.admin,
            "TokenService/RevokeToken",
            json!({ "id": created["token"]["id"] }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn failed_compile_fails_the_release(db: Db) {
    let h = Harness::new(db).await;
    // A compile failure after upload (here: the module's blob vanished) must fail the
    // release that waits for it, and say why.
    let (_, m) = h.upload(&h.admin, wagi("gone")).await;
    h.ok(&h.admin, "AppService/CreateApp", json!({ "name": "shop" }))
        .await;
    let r = h
        .ok(
            &h.admin,
            "ReleaseService/CreateRelease",
            json!({ "app": "shop", "moduleDigest": m["digest"], "activate": true }),
        )
        .await;
    h.ctl
        .blobs
        .delete(&format!("modules/{}.wasm", m["digest"].as_str().unwrap()))
        .await
        .unwrap();
    h.compile_all().await;
    let r = h
        .ok(
            &h.admin,
            "ReleaseService/GetRelease",
            json!({ "id": r["release"]["id"] }),
        )
        .await;
    assert_eq!(r["release"]["state"], "RELEASE_STATE_FAILED");
    assert_ne!(r["release"]["live"], true);
    assert!(
        r["release"]["error"]
            .as_str()
            .unwrap()
            .contains("failed to compile")
    );
    let m = h
        .ok(
            &h.admin,
            "ModuleService/GetModule",
            json!({ "digest": m["digest"] }),
        )
        .await;
    assert_eq!(m["module"]["compileState"], "COMPILE_STATE_FAILED");
    // A new release of a failed module is refused, forced or not.
    for force in [false, true] {
        let (s, v) = h
            .call(
                &h.admin,
                "ReleaseService/CreateRelease",
                json!({ "app": "shop", "moduleDigest": m["module"]["digest"], "activate": true, "force": force }),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "force {force}: {v}");
        assert_eq!(v["code"], "failed_precondition");
    }
    assert_eq!(h.count("releases").await, 1);
}

both_databases!(bootstrap_happens_once_and_accepts_a_preset_secret);

async fn bootstrap_happens_once_and_accepts_a_preset_secret(db: Db) {
    let h = Harness::new(db).await;
    // A second bootstrap on the same database does nothing.
    let again = h
        .ctl
        .bootstrap_admin(&h.dir.path().join("again"), None)
        .await
        .unwrap();
    assert!(again.is_none());
    assert_eq!(h.count("tokens").await, 1);
    assert!(!h.dir.path().join("again").exists());
    // A fresh database with a preset secret: that secret is the admin token.
    let fresh = Harness::new(db).await;
    sqlx::query("DELETE FROM tokens")
        .execute(fresh.ctl.store.pool())
        .await
        .unwrap();
    let preset = "plt_preset_secret_from_a_kubernetes_secret_0001";
    let boot = fresh
        .ctl
        .bootstrap_admin(&fresh.dir.path().join("t"), Some(preset))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(boot.secret, preset);
    fresh.ok(preset, "AppService/ListApps", json!({})).await;
    assert!(
        fresh
            .ctl
            .bootstrap_admin(&fresh.dir.path().join("t2"), Some("short"))
            .await
            .is_err()
    );
}

async fn sdk_modules_get_a_per_request_snapshot(db: Db) {
    let h = Harness::new(db).await;
    let wasm = std::fs::read(platform_test_guests::sdk_example("hello")).unwrap();
    let (s, m) = h.upload(&h.admin, wasm).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["abi"], "ABI_SDK", "{m}");
    h.ok(&h.admin, "AppService/CreateApp", json!({ "name": "fresh" }))
        .await;
    let r = h
        .ok(&h.admin, "ReleaseService/CreateRelease", json!({ "app": "fresh", "moduleDigest": m["digest"], "activate": true, "isolation": "ISOLATION_PER_REQUEST" }))
        .await;
    h.compile_all().await;
    let digest = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
    let blobs = h.blobs().await;
    let fp = h.ctl.config.engine.as_str();
    for key in [
        format!("artifacts/{digest}-{fp}.cwasm"),
        format!("artifacts/{digest}-{fp}-snapshot.cwasm"),
    ] {
        assert!(blobs.contains(&key), "{key} not in {blobs:?}");
    }
    let r = h
        .ok(
            &h.admin,
            "ReleaseService/GetRelease",
            json!({ "id": r["release"]["id"] }),
        )
        .await;
    assert_eq!(r["release"]["live"], true, "{r}");
    assert_eq!(r["release"]["isolation"], "ISOLATION_PER_REQUEST", "{r}");
}
