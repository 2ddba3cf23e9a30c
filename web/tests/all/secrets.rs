//! The app page's secrets (names only; set and remove) and traffic split.

use crate::support::{Dash, between, wagi};

const VALUE: &str = "dashboard-secret-51d0";

#[tokio::test]
async fn secrets_are_set_listed_by_name_and_removed() {
    let d = Dash::new().await;
    let b = d.admin().await;
    d.post_as(&b, "/apps", &[("name", "vault")])
        .await
        .assert_redirect("/apps/vault");
    let page = d.get_as(&b, "/apps/vault").await;
    page.assert_has("No secrets.");
    page.assert_has(r#"action="/apps/vault/secrets""#);
    page.assert_has(r#"name="value" type="password""#);

    // No live release yet: stored for the first one.
    d.post_as(
        &b,
        "/apps/vault/secrets",
        &[("name", "API_KEY"), ("value", VALUE)],
    )
    .await
    .assert_redirect("/apps/vault?msg=secret-0");
    let page = d.get_as(&b, "/apps/vault?msg=secret-0").await;
    assert_eq!(
        page.testid("flash"),
        Some("Secret set; the next release gets it.")
    );
    assert_eq!(page.testid("secret-name"), Some("API_KEY"));
    page.assert_lacks(VALUE);

    // With a live release, a change releases it again.
    let up = d.upload(&b, "vault", "one.wasm", wagi("one")).await;
    let digest = between(&up.body, "sha256:", "<").unwrap().to_string();
    d.compile_all().await;
    d.post_as(&b, "/apps/vault/releases", &[("module", &digest)])
        .await
        .assert_redirect("/apps/vault?msg=released-1");
    d.post_as(
        &b,
        "/apps/vault/secrets",
        &[("name", "API_KEY"), ("value", "another")],
    )
    .await
    .assert_redirect("/apps/vault?msg=secret-2");
    let page = d.get_as(&b, "/apps/vault?msg=secret-2").await;
    assert_eq!(
        page.testid("flash"),
        Some("Secret set; release #2 is live with it.")
    );
    page.assert_lacks(VALUE);
    page.assert_lacks("another");

    // A bad name is refused with the API's message.
    let bad = d
        .post_as(
            &b,
            "/apps/vault/secrets",
            &[("name", "NO-DASH"), ("value", "x")],
        )
        .await;
    assert!(bad.body.contains("is not valid"), "{}", bad.body);

    d.post_as(&b, "/apps/vault/secrets/API_KEY/delete", &[])
        .await
        .assert_redirect("/apps/vault?msg=unsecret-3");
    let page = d.get_as(&b, "/apps/vault").await;
    page.assert_has("No secrets.");
    assert_eq!(d.count("SELECT COUNT(*) FROM secrets").await, 0);
}

#[tokio::test]
async fn the_split_is_shown_and_edited_on_the_app_page() {
    let d = Dash::new().await;
    let b = d.admin().await;
    d.post_as(&b, "/apps", &[("name", "canary")])
        .await
        .assert_redirect("/apps/canary");
    for (i, tag) in ["one", "two"].iter().enumerate() {
        let up = d.upload(&b, "canary", "m.wasm", wagi(tag)).await;
        let digest = between(&up.body, "sha256:", "<").unwrap().to_string();
        d.compile_all().await;
        d.post_as(&b, "/apps/canary/releases", &[("module", &digest)])
            .await
            .assert_redirect(&format!("/apps/canary?msg=released-{}", i + 1));
    }
    let page = d.get_as(&b, "/apps/canary").await;
    page.assert_has(r#"data-testid="split-form""#);
    page.assert_has(r#"<option value="1">#1</option>"#);
    d.post_as(
        &b,
        "/apps/canary/split",
        &[("release", "1"), ("weight", "20")],
    )
    .await
    .assert_redirect("/apps/canary?msg=split");
    let page = d.get_as(&b, "/apps/canary?msg=split").await;
    assert_eq!(page.testid("flash"), Some("Traffic split updated."));
    page.assert_has("20% of traffic to #1");
    page.assert_has(r#"<option value="1" selected>#1</option>"#);
    d.post_as(
        &b,
        "/apps/canary/split",
        &[("release", "1"), ("weight", "0")],
    )
    .await
    .assert_redirect("/apps/canary?msg=split");
    let page = d.get_as(&b, "/apps/canary").await;
    page.assert_lacks("% of traffic to #");
}
