//! Module uploads: validation refuses bad input with a clear error and stores nothing.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{Db, Harness, both_databases, wagi};

both_databases!(
    bad_uploads_are_refused_and_leave_nothing,
    same_bytes_are_stored_once,
    oversize_upload,
    a_wasi_http_component_is_accepted_and_compiled,
    a_component_release_is_per_request_unless_it_chooses_pooled
);

async fn bad_uploads_are_refused_and_leave_nothing(db: Db) {
    let h = Harness::new(db).await;
    let valid = wagi("x");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not wasm", b"#!/bin/sh\necho hi\n".to_vec(), "not a WebAssembly binary"),
        ("empty", Vec::new(), "upload is empty"),
        ("truncated", valid[..valid.len() - 4].to_vec(), "invalid WebAssembly"),
        (
            "component without an HTTP handler",
            wat::parse_str("(component)").unwrap(),
            "does not export wasi:http/incoming-handler",
        ),
        (
            "wasip2 command (Rust, no HTTP handler)",
            std::fs::read(platform_test_guests::no_handler_component()).unwrap(),
            "it exports wasi:cli/run@0.2",
        ),
        (
            "component importing what the host lacks",
            wat::parse_str(
                r#"(component
                    (import "acme:missing/thing@1.0.0" (instance))
                    (export "wasi:http/incoming-handler@0.2.0" (instance 0)))"#,
            )
            .unwrap(),
            "imports acme:missing/thing@1.0.0, which this host does not provide",
        ),
        (
            "unknown import",
            wat::parse_str(r#"(module (import "wasi_snapshot_preview1" "sock_teleport" (func)) (memory (export "memory") 1) (func (export "_start")))"#).unwrap(),
            "wasi_snapshot_preview1::sock_teleport",
        ),
        (
            "GOOS=js build",
            wat::parse_str(r#"(module (import "gojs" "runtime.wasmExit" (func (param i32))) (memory (export "memory") 1) (func (export "_start")))"#).unwrap(),
            "GOOS=wasip1",
        ),
        (
            "no entry point",
            wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "main")))"#).unwrap(),
            "neither `_start`",
        ),
        // Minimums no release could ever give: every instance would fail to start.
        (
            "huge memory minimum",
            wat::parse_str(r#"(module (memory (export "memory") i64 100000) (func (export "_start")))"#).unwrap(),
            "declares a minimum memory of 100000 pages",
        ),
        (
            "huge table minimum",
            wat::parse_str(r#"(module (memory (export "memory") 1) (table 5000000 funcref) (func (export "_start")))"#).unwrap(),
            "declares a minimum table of 5000000 elements",
        ),
    ];
    for (what, bytes, says) in cases {
        let (status, body) = h.upload(&h.admin, bytes).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert_eq!(body["code"], "invalid_argument", "{what}");
        let msg = body["message"].as_str().unwrap();
        assert!(
            msg.contains(says),
            "{what}: {msg:?} should mention {says:?}"
        );
        assert_eq!(
            h.footprint().await,
            (0, 0, 0, 0, vec![]),
            "{what} left something behind"
        );
    }
    // Without a token nothing is accepted either.
    let (status, body) = h.upload("plt_bogus", wagi("y")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(h.footprint().await, (0, 0, 0, 0, vec![]));
    // Staging files are cleaned up.
    let staged: Vec<_> = std::fs::read_dir(h.dir.path().join("staging"))
        .unwrap()
        .collect();
    assert!(staged.is_empty(), "staging not cleaned: {staged:?}");
}

async fn same_bytes_are_stored_once(db: Db) {
    let h = Harness::new(db).await;
    let bytes = wagi("same");
    let (s1, m1) = h.upload(&h.admin, bytes.clone()).await;
    let (s2, m2) = h.upload(&h.admin, bytes.clone()).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(m1["digest"], m2["digest"]);
    assert_eq!(m1["abi"], "ABI_WAGI");
    assert_eq!(m1["size"], bytes.len().to_string());
    assert_eq!(m1["compileState"], "COMPILE_STATE_PENDING");
    // Another tenant uploading the same bytes gets its own record, not a second copy.
    let other = h.tenant_token("other").await;
    let (s3, _) = h.upload(&other, bytes).await;
    assert_eq!(s3, StatusCode::OK);
    assert_eq!(h.count("modules").await, 2);
    assert_eq!(h.blobs().await.len(), 1);
    h.compile_all().await;
    let m = h
        .ok(
            &h.admin,
            "ModuleService/GetModule",
            json!({ "digest": m1["digest"] }),
        )
        .await;
    assert_eq!(m["module"]["compileState"], "COMPILE_STATE_READY");
    assert_eq!(h.blobs().await.len(), 2, "module + artifact");
}

async fn oversize_upload(db: Db) {
    let h = Harness::with_limit(db, 1000).await;
    let mut big = wagi("big");
    big.resize(2000, 0);
    let (status, body) = h.upload(&h.admin, big).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "resource_exhausted");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("limit of 1000 bytes")
    );
    assert_eq!(h.footprint().await, (0, 0, 0, 0, vec![]));
}

async fn a_wasi_http_component_is_accepted_and_compiled(db: Db) {
    let h = Harness::new(db).await;
    let bytes = std::fs::read(platform_test_guests::http_component()).unwrap();
    let (status, m) = h.upload(&h.admin, bytes).await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["abi"], "ABI_COMPONENT");
    h.compile_all().await;
    let m = h
        .ok(
            &h.admin,
            "ModuleService/GetModule",
            json!({ "digest": m["digest"] }),
        )
        .await;
    assert_eq!(m["module"]["compileState"], "COMPILE_STATE_READY", "{m}");
    assert_eq!(h.blobs().await.len(), 2, "component + artifact");
}

async fn a_component_release_is_per_request_unless_it_chooses_pooled(db: Db) {
    let h = Harness::new(db).await;
    let bytes = std::fs::read(platform_test_guests::http_component()).unwrap();
    let (status, m) = h.upload(&h.admin, bytes).await;
    assert_eq!(status, StatusCode::OK, "{m}");
    let (_, w) = h.upload(&h.admin, wagi("w")).await;
    h.ok(&h.admin, "AppService/CreateApp", json!({ "name": "comp" }))
        .await;
    let release = |module: &serde_json::Value, isolation: Option<&str>| {
        let mut body = json!({ "app": "comp", "moduleDigest": module["digest"] });
        if let Some(i) = isolation {
            body["isolation"] = json!(i);
        }
        body
    };
    // Unset: a fresh instance per request, as `wasmtime serve` runs a WASIp2 component.
    let r = h
        .ok(&h.admin, "ReleaseService/CreateRelease", release(&m, None))
        .await;
    assert_eq!(r["release"]["isolation"], "ISOLATION_PER_REQUEST", "{r}");
    // Reuse is the release's explicit choice, and per-request may be said too.
    for choice in ["ISOLATION_POOLED", "ISOLATION_PER_REQUEST"] {
        let r = h
            .ok(
                &h.admin,
                "ReleaseService/CreateRelease",
                release(&m, Some(choice)),
            )
            .await;
        assert_eq!(r["release"]["isolation"], choice, "{r}");
    }
    // A WAGI module keeps `pooled` as its unset value (it always runs fresh anyway).
    let r = h
        .ok(&h.admin, "ReleaseService/CreateRelease", release(&w, None))
        .await;
    assert_eq!(r["release"]["isolation"], "ISOLATION_POOLED", "{r}");
}
