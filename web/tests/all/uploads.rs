//! The dashboard's upload endpoint with files that cannot be used.

use axum::http::StatusCode;

use crate::support::{Dash, wagi};

#[tokio::test]
async fn corrupt_upload_shows_an_error_fragment_and_stores_nothing() {
    let d = Dash::new().await;
    let b = d.admin().await;
    d.post_as(&b, "/apps", &[("name", "up")])
        .await
        .assert_redirect("/apps/up");
    let mut truncated = wagi("cut");
    truncated.truncate(truncated.len() - 5);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "photo.jpg",
            b"\xff\xd8\xff\xe0 this is not WebAssembly at all".to_vec(),
            "not a WebAssembly binary (it does not start with &#34;\\0asm&#34;)",
        ),
        ("cut.wasm", truncated, "invalid WebAssembly"),
        (
            "js.wasm",
            wat::parse_str(
                r#"(module (import "gojs" "runtime.wasmExit" (func (param i32))) (memory (export "memory") 1) (func (export "_start")))"#,
            )
            .unwrap(),
            "build with GOOS=wasip1 GOARCH=wasm",
        ),
        (
            "lib.wasm",
            wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "f")))"#)
                .unwrap(),
            "the module exports neither",
        ),
        (
            "empty.wasm",
            Vec::new(),
            "the upload is empty: send the .wasm bytes as the request body",
        ),
    ];
    for (name, bytes, says) in cases {
        let p = d.upload(&b, "up", name, bytes).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{name}: {}", p.body);
        // A fragment for the upload panel, not a whole page.
        assert!(
            p.body.trim_start().starts_with(r#"<div role="alert""#),
            "{name}: {}",
            p.body
        );
        p.assert_lacks("<html");
        p.assert_has(r#"data-testid="upload-error""#);
        p.assert_has(r#"<p class="font-medium">This file cannot be used:</p>"#);
        p.assert_has(says);
        p.assert_lacks(r#"data-testid="module-status""#);
    }
    assert_eq!(d.count("SELECT COUNT(*) FROM modules").await, 0);
    assert_eq!(d.count("SELECT COUNT(*) FROM artifacts").await, 0);
    let blobs = d.dir.path().join("blobs");
    let stored = walk(&blobs);
    assert!(stored.is_empty(), "blobs stored: {stored:?}");
    let staged = walk(&d.dir.path().join("staging"));
    assert!(staged.is_empty(), "staging files left: {staged:?}");
    // The app page still offers no module to release.
    d.get_as(&b, "/apps/up")
        .await
        .assert_has("Upload a module first.");

    // Uploading to an app that does not exist says so, and stores nothing either.
    let p = d.upload(&b, "ghost", "ok.wasm", wagi("ok")).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND, "{}", p.body);
    p.assert_has(r#"<p class="font-medium">This app no longer exists.</p>"#);
    assert_eq!(d.count("SELECT COUNT(*) FROM modules").await, 0);

    // A good file after all that is accepted.
    let p = d.upload(&b, "up", "ok.wasm", wagi("ok")).await;
    p.assert_ok();
    p.assert_has(r#"data-testid="module-status""#);
    p.assert_has(r#"<p class="font-medium">ok.wasm</p>"#);
    assert_eq!(d.count("SELECT COUNT(*) FROM modules").await, 1);
}

/// Files under `dir`, recursively (none when it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
