//! Dedicated mode against a Kubernetes API server of the test's own: what the reconciler
//! sends (server-side apply of a Knative Service with owner labels), garbage collection,
//! status written back, and API refusals recorded on the app. The object itself is checked
//! against Knative's published schema by `deploy/tests/validate`, through the golden file
//! this test keeps in step with the code.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use platform_control::dedicated::DedicatedReconciler;
use platform_control::dedicated::knative::{DedicatedApp, DedicatedConfig, knative_service};
use serde_json::{Value, json};

use crate::support::{Db, Harness, both_databases, wagi};

/// One request the fake API server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    name: Option<String>,
    query: BTreeMap<String, String>,
    content_type: String,
    body: Value,
}

#[derive(Default)]
struct FakeKube {
    services: Mutex<BTreeMap<String, Value>>,
    seen: Mutex<Vec<Seen>>,
    /// Names the API refuses (as an admission webhook would).
    refuse: Mutex<Vec<String>>,
}

type Shared = Arc<FakeKube>;

const BASE: &str = "/apis/serving.knative.dev/v1/namespaces/{ns}/services";

async fn apply(
    State(k): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    // Apply patches are YAML by content type; kube sends JSON, which is YAML too.
    let body: Value = serde_json::from_slice(&body).unwrap();
    k.seen.lock().unwrap().push(Seen {
        method: "PATCH".into(),
        name: Some(name.clone()),
        query,
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .into(),
        body: body.clone(),
    });
    if k.refuse.lock().unwrap().contains(&name) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "admission webhook denied the request: bad image", "reason": "Invalid", "code": 422
            })),
        );
    }
    let mut obj = body;
    obj["metadata"]["namespace"] = json!(ns);
    obj["metadata"]["uid"] = json!(format!("uid-{name}"));
    obj["metadata"]["resourceVersion"] = json!("1");
    obj["status"] = json!({
        "url": format!("http://{name}.{ns}.example.com"),
        "conditions": [{ "type": "Ready", "status": "True" }],
    });
    k.services.lock().unwrap().insert(name, obj.clone());
    (StatusCode::OK, Json(obj))
}

async fn list(
    State(k): State<Shared>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Json<Value> {
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    k.seen.lock().unwrap().push(Seen {
        method: "LIST".into(),
        name: None,
        query,
        content_type: String::new(),
        body: Value::Null,
    });
    let (key, value) = selector.split_once('=').unwrap_or(("", ""));
    let items: Vec<Value> = k
        .services
        .lock()
        .unwrap()
        .values()
        .filter(|o| key.is_empty() || o["metadata"]["labels"][key] == value)
        .cloned()
        .collect();
    Json(json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "ServiceList",
        "metadata": { "resourceVersion": "1" }, "items": items,
    }))
}

async fn delete(
    State(k): State<Shared>,
    Path((_ns, name)): Path<(String, String)>,
) -> (StatusCode, Json<Value>) {
    k.seen.lock().unwrap().push(Seen {
        method: "DELETE".into(),
        name: Some(name.clone()),
        query: BTreeMap::new(),
        content_type: String::new(),
        body: Value::Null,
    });
    match k.services.lock().unwrap().remove(&name) {
        Some(_) => (
            StatusCode::OK,
            Json(
                json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" }),
            ),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(
                json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found" }),
            ),
        ),
    }
}

async fn fake_kube() -> (Shared, kube::Client) {
    let k: Shared = Arc::default();
    let app = axum::Router::new()
        .route(BASE, get(list))
        .route(
            &format!("{BASE}/{{name}}"),
            axum::routing::patch(apply).delete(delete),
        )
        .with_state(k.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        k,
        DedicatedReconciler::client_for_url(&format!("http://{addr}")).unwrap(),
    )
}

both_databases!(dedicated_apps_get_their_own_knative_service);

async fn dedicated_apps_get_their_own_knative_service(db: Db) {
    let h = Harness::new(db).await;
    h.deploy(&h.admin, "big", "/big", wagi("d1")).await;
    h.deploy(&h.admin, "small", "/small", wagi("d2")).await;
    let (kube_api, client) = fake_kube().await;
    let config = DedicatedConfig {
        namespace: "platform".into(),
        ..Default::default()
    };
    let rec = DedicatedReconciler::new(client, config.clone());

    // Nothing dedicated: nothing applied, nothing deleted.
    let r = rec.reconcile_once(&h.ctl).await.unwrap();
    assert!(r.applied.is_empty() && r.deleted.is_empty(), "{r:?}");

    let v = h
        .ok(
            &h.admin,
            "AppService/SetAppDedicated",
            json!({ "app": "big", "dedicated": true }),
        )
        .await;
    let app_id = v["app"]["id"].as_str().unwrap().to_string();
    let r = rec.reconcile_once(&h.ctl).await.unwrap();
    assert_eq!(r.applied.len(), 1, "{r:?}");
    let name = r.applied[0].clone();

    // Server-side apply, forced, by the control plane's field manager.
    let seen = kube_api.seen.lock().unwrap().clone();
    let patch = seen.iter().find(|s| s.method == "PATCH").unwrap();
    assert_eq!(patch.name.as_deref(), Some(name.as_str()));
    assert_eq!(patch.content_type, "application/apply-patch+yaml");
    assert_eq!(
        patch.query.get("fieldManager").map(String::as_str),
        Some("platform-control")
    );
    assert_eq!(patch.query.get("force").map(String::as_str), Some("true"));
    let sent = &patch.body;
    assert_eq!(sent["apiVersion"], "serving.knative.dev/v1");
    assert_eq!(sent["kind"], "Service");
    assert_eq!(
        sent["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "platform-control"
    );
    assert_eq!(sent["metadata"]["labels"]["platform.dev/app-id"], app_id);
    let tmpl = &sent["spec"]["template"];
    assert_eq!(
        tmpl["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"],
        "0"
    );
    assert_eq!(
        tmpl["spec"]["containers"][0]["args"],
        json!(["runtime", "--only-app", app_id])
    );
    // Exactly what the golden (schema-validated) object is made of.
    let expected = knative_service(
        &DedicatedApp {
            id: app_id.clone(),
            tenant: "default".into(),
            name: "big".into(),
        },
        &config,
    );
    assert_eq!(sent, &expected);

    // Status came back into the API.
    let got = h
        .ok(&h.admin, "AppService/GetApp", json!({ "app": "big" }))
        .await;
    let st = &got["app"]["dedicatedStatus"];
    assert_eq!(st["ready"], true, "{got}");
    assert_eq!(st["url"], format!("http://{name}.platform.example.com"));

    // A second pass is idempotent (apply again, delete nothing).
    let r = rec.reconcile_once(&h.ctl).await.unwrap();
    assert_eq!((r.applied.len(), r.deleted.len()), (1, 0), "{r:?}");

    // A Service whose app went away is collected; an unmanaged one is left alone.
    kube_api.services.lock().unwrap().insert(
        "someone-elses".into(),
        json!({ "apiVersion": "serving.knative.dev/v1", "kind": "Service",
                "metadata": { "name": "someone-elses", "labels": { "team": "x" } } }),
    );
    h.ok(
        &h.admin,
        "AppService/SetAppDedicated",
        json!({ "app": "big", "dedicated": false }),
    )
    .await;
    let r = rec.reconcile_once(&h.ctl).await.unwrap();
    assert_eq!(r.deleted, vec![name.clone()]);
    assert!(
        kube_api
            .services
            .lock()
            .unwrap()
            .contains_key("someone-elses")
    );
    h.ok(
        &h.admin,
        "AppService/SetAppDedicated",
        json!({ "app": "small", "dedicated": true }),
    )
    .await;
    rec.reconcile_once(&h.ctl).await.unwrap();
    h.ok(&h.admin, "AppService/DeleteApp", json!({ "app": "small" }))
        .await;
    let r = rec.reconcile_once(&h.ctl).await.unwrap();
    assert_eq!(
        r.deleted.len(),
        1,
        "deleting the app deletes its Service: {r:?}"
    );
    assert_eq!(kube_api.services.lock().unwrap().len(), 1);

    // The cluster refusing the object is reported on the app, in words.
    let v = h
        .ok(
            &h.admin,
            "AppService/SetAppDedicated",
            json!({ "app": "big", "dedicated": true }),
        )
        .await;
    let _ = v;
    kube_api.refuse.lock().unwrap().push(name.clone());
    let r = rec.reconcile_once(&h.ctl).await.unwrap();
    assert_eq!(r.failed.len(), 1, "{r:?}");
    let got = h
        .ok(&h.admin, "AppService/GetApp", json!({ "app": "big" }))
        .await;
    let st = &got["app"]["dedicatedStatus"];
    assert_eq!(st.get("ready"), None, "{got}");
    assert!(
        st["message"].as_str().unwrap().contains("bad image"),
        "{got}"
    );
}

/// Keeps `deploy/tests/generated/` (validated against Knative's CRD schema and the
/// manifests' own rules by `deploy/tests/validate`) equal to what the code generates.
/// `UPDATE_GOLDEN=1 cargo test -p platform-control golden` rewrites it.
#[test]
fn generated_objects_match_the_validated_golden_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/tests/generated");
    let app = DedicatedApp {
        id: "0190f3a2b7c84d5e9f00112233445566".into(),
        tenant: "default".into(),
        name: "orders".into(),
    };
    let cases = [
        ("dedicated-service.json", DedicatedConfig::default()),
        (
            "dedicated-service-gvisor.json",
            DedicatedConfig {
                runtime_class: Some("gvisor".into()),
                ..Default::default()
            },
        ),
    ];
    for (file, cfg) in cases {
        let text = serde_json::to_string_pretty(&knative_service(&app, &cfg)).unwrap() + "\n";
        let path = dir.join(file);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            golden,
            text,
            "{} is stale: run UPDATE_GOLDEN=1 cargo test -p platform-control golden, then deploy/tests/validate",
            path.display()
        );
    }
}
