//! Every state-changing request needs the session's CSRF token, and changes nothing without.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::support::{Dash, between, wagi};

#[tokio::test]
async fn every_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let d = Dash::new().await;
    let b = d.admin().await;
    // Something to change: an app with a route, a module, a token.
    d.post_as(&b, "/apps", &[("name", "keep")])
        .await
        .assert_redirect("/apps/keep");
    d.post_as(&b, "/apps/keep/routes", &[("path", "/keep")])
        .await
        .assert_redirect("/apps/keep?msg=route");
    let route_id: String = between(
        &d.get_as(&b, "/apps/keep").await.body,
        "/apps/keep/routes/",
        "/delete",
    )
    .unwrap()
    .to_string();
    let up = d.upload(&b, "keep", "keep.wasm", wagi("keep")).await;
    up.assert_ok();
    let digest = between(&up.body, "sha256:", "<").unwrap().to_string();
    let t = d.post_as(&b, "/tokens", &[("name", "ci")]).await;
    t.assert_ok();
    let row = &t.body[t.body.find(r#"data-testid="token-ci""#).unwrap()..];
    let token_id = between(row, r#"action="/tokens/"#, "/revoke")
        .unwrap()
        .to_string();

    // A second session: its (valid) CSRF token must not work for the first one.
    let other = d.admin().await;
    assert_ne!(other.csrf, b.csrf);

    let snapshot = || async {
        (
            d.app_names().await,
            d.count("SELECT COUNT(*) FROM routes").await,
            d.count("SELECT COUNT(*) FROM releases").await,
            d.count("SELECT COUNT(*) FROM modules").await,
            d.count("SELECT COUNT(*) FROM tokens").await,
            d.count("SELECT COUNT(*) FROM tokens WHERE revoked_at IS NOT NULL")
                .await,
            d.count("SELECT COUNT(*) FROM users").await,
            d.count("SELECT COUNT(*) FROM sessions").await,
        )
    };
    let before = snapshot().await;
    assert_eq!(before.0, vec!["keep".to_string()]);

    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/apps".into(), vec![("name", "sneaky")]),
        ("/apps/keep/delete".into(), vec![("confirm", "keep")]),
        (
            "/apps/keep/releases".into(),
            vec![("module", digest.as_str())],
        ),
        ("/apps/keep/rollback".into(), vec![("release", "1")]),
        ("/apps/keep/routes".into(), vec![("path", "/sneaky")]),
        (format!("/apps/keep/routes/{route_id}/delete"), vec![]),
        ("/tokens".into(), vec![("name", "sneaky")]),
        (format!("/tokens/{token_id}/revoke"), vec![]),
        (
            "/users".into(),
            vec![
                ("username", "mallory"),
                ("password", "long enough password"),
            ],
        ),
        ("/logout".into(), vec![]),
    ];
    let wrong = [
        None,
        Some(""),
        Some("0123456789abcdef"),
        Some(other.csrf.as_str()),
    ];
    for (path, fields) in &posts {
        for csrf in wrong {
            let mut all = fields.clone();
            if let Some(c) = csrf {
                all.push(("csrf", c));
            }
            let p = d.post(path, Some(&b.cookie), &all).await;
            assert_eq!(
                p.status,
                StatusCode::FORBIDDEN,
                "{path} with {csrf:?}: {}",
                p.body
            );
            p.assert_has("CSRF check failed");
            assert!(p.set_cookies().is_empty(), "{path}");
        }
        // The right token in the wrong place (a query string) does not count either.
        let p = d
            .post(&format!("{path}?csrf={}", b.csrf), Some(&b.cookie), fields)
            .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path} with ?csrf");
    }
    // The upload takes its token from a header only.
    for csrf in [None, Some("nope"), Some(other.csrf.as_str())] {
        let mut req = Request::post("/apps/keep/upload?name=sneaky.wasm")
            .header(header::COOKIE, &b.cookie)
            .header(header::CONTENT_TYPE, "application/wasm");
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        let p = d.send(req.body(Body::from(wagi("sneaky"))).unwrap()).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "upload with {csrf:?}");
        p.assert_has("CSRF check failed");
    }
    assert_eq!(
        snapshot().await,
        before,
        "a refused request changed something"
    );
    // Still signed in, and the same forms with the token work.
    d.get_as(&b, "/apps").await.assert_ok();
    let p = d
        .post(
            "/apps",
            Some(&b.cookie),
            &[("name", "allowed"), ("csrf", &b.csrf)],
        )
        .await;
    p.assert_redirect("/apps/allowed");
    // HTMX sends the token as a header instead of a form field.
    let req = Request::post("/apps")
        .header(header::COOKIE, &b.cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("x-csrf-token", &b.csrf)
        .body(Body::from("name=by-header"))
        .unwrap();
    d.send(req).await.assert_redirect("/apps/by-header");
    assert_eq!(d.app_names().await, ["allowed", "by-header", "keep"]);
}
