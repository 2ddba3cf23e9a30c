//! The tokens page: create (secret shown once), list, revoke.

use axum::http::StatusCode;

use crate::support::{Dash, Page, between};

/// The revoke form's token id in the row of token `name`.
fn token_id(page: &Page, name: &str) -> Option<String> {
    let row = &page.body[page.body.find(&format!(r#"data-testid="token-{name}""#))?..];
    let row = &row[..row.find("</tr>")?];
    between(row, r#"action="/tokens/"#, "/revoke").map(str::to_string)
}

#[tokio::test]
async fn token_secret_is_shown_once_and_revoke_works() {
    let d = Dash::new().await;
    let b = d.admin().await;
    let p = d.get_as(&b, "/tokens").await;
    p.assert_ok();
    p.assert_lacks(r#"data-testid="new-token""#);
    p.assert_has("Tenant: <strong>default</strong>");

    let p = d.post_as(&b, "/tokens", &[("name", "ci")]).await;
    p.assert_ok();
    p.assert_has("New token: copy it now, it will not be shown again.");
    let secret = p.testid("new-token-secret").unwrap().to_string();
    assert!(secret.len() >= 32, "{secret:?}");
    assert_eq!(
        d.count(&format!(
            "SELECT COUNT(*) FROM tokens WHERE secret_hash = '{secret}'"
        ))
        .await,
        0,
        "only a hash of the secret is stored"
    );
    p.assert_has(r#"<tr data-testid="token-ci">"#);
    let id = token_id(&p, "ci").expect("a revoke form for ci");
    // The secret is the token: it signs in, as a non-admin of the same tenant.
    let ci = d.sign_in(&[("token", &secret)]).await.unwrap();

    // Reloading shows the token, but never the secret again.
    for who in [&b, &ci] {
        let p = d.get_as(who, "/tokens").await;
        p.assert_ok();
        p.assert_has(r#"<tr data-testid="token-ci">"#);
        p.assert_lacks(r#"data-testid="new-token""#);
        p.assert_lacks(&secret);
        let prefix = between(
            &p.body[p.body.find(r#"data-testid="token-ci""#).unwrap()..],
            r#"<td class="font-mono text-xs">"#,
            "…",
        )
        .unwrap();
        assert!(
            !prefix.is_empty() && secret.starts_with(prefix) && prefix.len() < secret.len() / 2,
            "prefix {prefix:?}"
        );
    }

    // A token needs a name; the error is shown by the form and nothing is made.
    let before = d.count("SELECT COUNT(*) FROM tokens").await;
    let p = d.post_as(&b, "/tokens", &[("name", "   ")]).await;
    p.assert_ok();
    p.assert_has(
        r#"<p role="alert" class="mt-1 text-red-700">give the token a name (1-100 characters) to recognise it later</p>"#,
    );
    p.assert_lacks(r#"data-testid="new-token""#);
    assert_eq!(d.count("SELECT COUNT(*) FROM tokens").await, before);

    // Revoke.
    d.post_as(&b, &format!("/tokens/{id}/revoke"), &[])
        .await
        .assert_redirect("/tokens");
    let p = d.get_as(&b, "/tokens").await;
    let row = &p.body[p.body.find(r#"data-testid="token-ci""#).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains(r#"<span class="text-gray-500">revoked</span>"#),
        "{row}"
    );
    assert!(token_id(&p, "ci").is_none(), "no revoke button any more");
    // The secret no longer signs in, and the session it opened is over.
    let p = d.sign_in(&[("token", &secret)]).await.unwrap_err();
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(
        p.testid("login-error")
            .unwrap()
            .starts_with("That token is not valid")
    );
    d.get_as(&ci, "/apps")
        .await
        .assert_redirect("/login?next=%2Fapps");
    // The admin's own session is untouched.
    d.get_as(&b, "/apps").await.assert_ok();
    // Revoking twice is an error page, in words.
    let p = d.post_as(&b, &format!("/tokens/{id}/revoke"), &[]).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    p.assert_has("no active token");
}

#[tokio::test]
async fn token_names_are_escaped() {
    let d = Dash::new().await;
    let b = d.admin().await;
    let name = r#"<img src=x onerror="alert(1)">"#;
    let p = d.post_as(&b, "/tokens", &[("name", name)]).await;
    p.assert_ok();
    let p = d.get_as(&b, "/tokens").await;
    p.assert_lacks("<img");
    p.assert_has(r#"<td class="py-2">&#60;img src=x onerror=&#34;alert(1)&#34;&#62;</td>"#);
    p.assert_has(r#"aria-label="Revoke token &#60;img src=x onerror=&#34;alert(1)&#34;&#62;""#);
}
