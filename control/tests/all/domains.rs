//! Who may route where: host assignments (DomainService), the shared host's path
//! namespaces, and apps' own addresses. Each refusal here is an attack a second tenant
//! could make.

use axum::http::StatusCode;
use platform_control::app_address::AppAddressTemplate;
use serde_json::json;

use crate::support::{Db, Harness, both_databases, wagi};

both_databases!(hosts_are_assigned_by_operators_and_held_by_one_tenant);
both_databases!(shared_host_paths_are_namespaced_and_never_nested_across_tenants);
both_databases!(apps_answer_at_their_own_address);
both_databases!(validate_only_changes_nothing);

async fn route(
    h: &Harness,
    token: &str,
    app: &str,
    host: &str,
    path: &str,
) -> (StatusCode, serde_json::Value) {
    h.call(
        token,
        "RouteService/CreateRoute",
        json!({ "app": app, "host": host, "pathPrefix": path }),
    )
    .await
}

async fn hosts_are_assigned_by_operators_and_held_by_one_tenant(db: Db) {
    let h = Harness::new(db).await;
    let a = h.tenant_token("acme").await;
    let b = h.tenant_token("bobs").await;
    h.deploy(&a, "shop", "/acme", wagi("a")).await;
    h.deploy(&b, "grab", "/bobs", wagi("b")).await;

    // Nobody holds shop.example.com yet: tenants may not route there.
    let (s, v) = route(&h, &a, "shop", "shop.example.com", "/").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("platform domains add"),
        "{v}"
    );
    // Only admins assign hosts.
    let (s, _) = h
        .call(
            &b,
            "DomainService/CreateDomain",
            json!({ "name": "shop.example.com", "tenant": "bobs" }),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Assignments are stored in canonical form.
    let d = h
        .ok(
            &h.admin,
            "DomainService/CreateDomain",
            json!({ "name": "SHOP.Example.com.:8443", "tenant": "acme" }),
        )
        .await;
    assert_eq!(d["domain"]["name"], "shop.example.com");
    let (s, _) = h
        .call(
            &h.admin,
            "DomainService/CreateDomain",
            json!({ "name": "shop.example.com", "tenant": "acme" }),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // The holder routes there, in any spelling; the other tenant cannot.
    let (s, v) = route(&h, &a, "shop", "Shop.Example.COM:8080", "/cart").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["route"]["host"], "shop.example.com");
    let (s, v) = route(&h, &b, "grab", "shop.example.com", "/").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("held by another tenant"),
        "{v}"
    );
    // Assignments of different tenants never overlap, in either direction.
    let (s, v) = h
        .call(
            &h.admin,
            "DomainService/CreateDomain",
            json!({ "name": "*.example.com", "tenant": "bobs" }),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    h.ok(
        &h.admin,
        "DomainService/CreateDomain",
        json!({ "name": "*.bobs.test", "tenant": "bobs" }),
    )
    .await;
    let (s, _) = h
        .call(
            &h.admin,
            "DomainService/CreateDomain",
            json!({ "name": "eu.bobs.test", "tenant": "acme" }),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // A wildcard holds every name below it, for routes on names and on narrower wildcards.
    let (s, v) = route(&h, &b, "grab", "a.b.bobs.test", "/").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = route(&h, &b, "grab", "*.eu.bobs.test", "/").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = route(&h, &a, "shop", "x.bobs.test", "/").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Unheld hosts are the operator's: admins route there, and an assignment over a host
    // someone else already routes on is refused until that route goes.
    h.deploy(&h.admin, "ops", "/ops", wagi("ops")).await;
    let (s, v) = route(&h, &h.admin, "ops", "legacy.example.org", "/").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = h
        .call(
            &h.admin,
            "DomainService/CreateDomain",
            json!({ "name": "*.example.org", "tenant": "acme" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("legacy.example.org/"),
        "{v}"
    );
    // An admin's wildcard route may not reach over a host another tenant holds.
    let (s, v) = route(&h, &h.admin, "ops", "*.example.com", "/").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // Listing: tenants see their own, admins all.
    let mine = h.ok(&a, "DomainService/ListDomains", json!({})).await;
    assert_eq!(mine["domains"].as_array().unwrap().len(), 1, "{mine}");
    let all = h.ok(&h.admin, "DomainService/ListDomains", json!({})).await;
    assert_eq!(all["domains"].as_array().unwrap().len(), 2, "{all}");
    // Taking a host back waits until its tenant no longer routes there.
    let (s, v) = h
        .call(
            &h.admin,
            "DomainService/DeleteDomain",
            json!({ "name": "shop.example.com" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let routes = h
        .ok(&a, "RouteService/ListRoutes", json!({ "app": "shop" }))
        .await;
    for r in routes["routes"].as_array().unwrap() {
        if r["host"] == "shop.example.com" {
            h.ok(&a, "RouteService/DeleteRoute", json!({ "id": r["id"] }))
                .await;
        }
    }
    h.ok(
        &h.admin,
        "DomainService/DeleteDomain",
        json!({ "name": "shop.example.com" }),
    )
    .await;
}

async fn shared_host_paths_are_namespaced_and_never_nested_across_tenants(db: Db) {
    let h = Harness::new(db).await;
    let a = h.tenant_token("acme").await;
    let b = h.tenant_token("bobs").await;
    h.deploy(&a, "shop", "/acme/shop", wagi("a")).await;
    h.deploy(&b, "grab", "/bobs", wagi("b")).await;
    for path in ["/", "/shop", "/acme/shop/checkout", "/acme"] {
        let (s, v) = route(&h, &b, "grab", "", path).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
    }
    // The operator may not take a tenant's namespace either.
    h.deploy(&h.admin, "ops", "/ops", wagi("ops")).await;
    let (s, v) = route(&h, &h.admin, "ops", "", "/acme/shop/checkout").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("namespace of tenant"),
        "{v}"
    );
    // Routes made before these rules (a tenant's /shop) cannot be nested into or wrapped.
    sqlx::query("INSERT INTO routes (id, tenant, app_id, host, prefix, created_at) SELECT 'legacy', tenant, id, '', '/shop', 0 FROM apps WHERE name = 'shop'")
        .execute(h.ctl.store.pool())
        .await
        .unwrap();
    for path in ["/shop/checkout", "/shop"] {
        let (s, v) = route(&h, &h.admin, "ops", "", path).await;
        assert!(
            s == StatusCode::FORBIDDEN || s == StatusCode::CONFLICT,
            "{path}: {s} {v}"
        );
    }
    let (s, v) = route(&h, &h.admin, "ops", "", "/shopping").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The operator's catch-all sits above everyone.
    let (s, v) = route(&h, &h.admin, "ops", "", "/").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Names with "--" are refused: they would make default addresses ambiguous.
    let (s, _) = h
        .call(&a, "AppService/CreateApp", json!({ "name": "x--y" }))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

async fn apps_answer_at_their_own_address(db: Db) {
    let h = Harness::with_config(db, |c| {
        c.app_addresses = Some(AppAddressTemplate::from_base_domain("apps.example.com").unwrap())
    })
    .await;
    let a = h.tenant_token("acme").await;
    h.deploy(&a, "shop", "/acme", wagi("a")).await;
    // A second app with a live release and no route at all still serves, at its address.
    let (_, m) = h.upload(&a, wagi("quiet")).await;
    h.ok(&a, "AppService/CreateApp", json!({ "name": "quiet" }))
        .await;
    h.ok(
        &a,
        "ReleaseService/CreateRelease",
        json!({ "app": "quiet", "moduleDigest": m["digest"], "activate": true }),
    )
    .await;
    h.compile_all().await;
    let app = h
        .ok(&a, "AppService/GetApp", json!({ "app": "quiet" }))
        .await;
    assert_eq!(
        app["app"]["defaultUrl"],
        "http://quiet--acme.apps.example.com:8080/"
    );
    let snap = platform_control::feed::snapshot(&h.ctl).await.unwrap();
    let quiet = snap
        .apps
        .iter()
        .find(|x| x.name == "quiet")
        .expect("served");
    assert_eq!(quiet.routes.len(), 1);
    assert_eq!(quiet.routes[0].host, "quiet--acme.apps.example.com");
    // Nobody holds or routes hosts in the zone: addresses are the platform's.
    let (s, _) = route(&h, &a, "shop", "quiet--acme.apps.example.com", "/x").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h
        .call(
            &h.admin,
            "DomainService/CreateDomain",
            json!({ "name": "*.apps.example.com", "tenant": "acme" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = h
        .call(
            &h.admin,
            "DomainService/CreateDomain",
            json!({ "name": "*.example.com", "tenant": "acme" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

async fn validate_only_changes_nothing(db: Db) {
    let h = Harness::new(db).await;
    let a = h.tenant_token("acme").await;
    let before = h.count("routes").await;
    // The app need not exist yet (deploys check routes before they upload).
    let v = h
        .ok(
            &a,
            "RouteService/CreateRoute",
            json!({ "app": "new", "pathPrefix": "/acme/new", "validateOnly": true }),
        )
        .await;
    assert_eq!(v["route"]["pathPrefix"], "/acme/new");
    let (s, _) = h
        .call(
            &a,
            "RouteService/CreateRoute",
            json!({ "app": "new", "pathPrefix": "/elsewhere", "validateOnly": true }),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(h.count("routes").await, before);
    assert_eq!(h.count("apps").await, 0);
    // A route the app already has validates (deploys are repeatable); another app's does not.
    h.deploy(&a, "shop", "/acme/shop", wagi("a")).await;
    h.ok(
        &a,
        "RouteService/CreateRoute",
        json!({ "app": "shop", "pathPrefix": "/acme/shop", "validateOnly": true }),
    )
    .await;
    let (s, _) = h
        .call(
            &a,
            "RouteService/CreateRoute",
            json!({ "app": "other", "pathPrefix": "/acme/shop", "validateOnly": true }),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}
