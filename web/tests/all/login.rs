//! Signing in and out.

use axum::http::StatusCode;

use crate::support::Dash;

#[tokio::test]
async fn login_page_has_both_forms_and_pages_need_a_session() {
    let d = Dash::new().await;
    let p = d.get("/login", None).await;
    p.assert_ok();
    assert!(
        p.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        p.headers
    );
    p.assert_has("<title>Sign in · Platform</title>");
    p.assert_has(r#"<form method="post" action="/login""#);
    p.assert_has(r#"name="token" type="password""#);
    p.assert_has(r#"name="username""#);
    p.assert_has(r#"name="password" type="password""#);
    p.assert_has(r#"<input type="hidden" name="next" value="/apps">"#);
    // Signed out: no navigation, no sign-out form.
    p.assert_lacks("Sign out");
    p.assert_lacks(r#"data-testid="login-error""#);

    // `next` comes back in the form, escaped.
    let p = d.get("/login?next=%2Ftokens%3Fa%3D1%26b%3D2", None).await;
    p.assert_has(r#"name="next" value="/tokens?a=1&#38;b=2""#);

    d.get("/", None).await.assert_redirect("/apps");
    for (path, next) in [
        ("/apps", "%2Fapps"),
        ("/tokens", "%2Ftokens"),
        ("/logs?app=x", "%2Flogs%3Fapp%3Dx"),
        ("/apps/hello", "%2Fapps%2Fhello"),
    ] {
        let p = d.get(path, None).await;
        p.assert_redirect(&format!("/login?next={next}"));
        p.assert_lacks("csrf");
    }
    // A made-up cookie is no session.
    d.get(
        "/apps",
        Some("platform_session=00112233445566778899aabbccddeeff"),
    )
    .await
    .assert_redirect("/login?next=%2Fapps");
    // HTMX requests are told where to go instead of getting the sign-in page as a fragment.
    let req = axum::http::Request::get("/apps/hello/traffic")
        .header("hx-request", "true")
        .body(axum::body::Body::empty())
        .unwrap();
    let p = d.send(req).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        p.headers["hx-redirect"],
        "/login?next=%2Fapps%2Fhello%2Ftraffic"
    );
}

#[tokio::test]
async fn wrong_token_is_refused_in_words_without_a_session() {
    let d = Dash::new().await;
    for token in ["plt_not_a_real_token", &d.admin[..d.admin.len() - 1]] {
        let p = d.sign_in(&[("token", token)]).await.unwrap_err();
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert!(
            !p.set_cookies()
                .iter()
                .any(|c| c.starts_with("platform_session=")),
            "{:?}",
            p.set_cookies()
        );
        assert_eq!(
            p.testid("login-error"),
            Some(
                "That token is not valid: it is unknown or was revoked. Check for a missing character."
            )
        );
        // The token typed is not echoed back.
        p.assert_lacks(token);
    }
    // Nothing given at all.
    let p = d.sign_in(&[("token", "  ")]).await.unwrap_err();
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        p.testid("login-error"),
        Some("Paste an API token, or give a user name and password.")
    );
    assert_eq!(d.count("SELECT COUNT(*) FROM sessions").await, 0);
}

#[tokio::test]
async fn admin_token_signs_in_with_an_http_only_same_site_cookie() {
    let d = Dash::new().await;
    let p = d.login_post(&[("token", &d.admin)]).await;
    p.assert_redirect("/apps");
    let cookies = p.set_cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let attrs: Vec<&str> = cookies[0].split(';').map(str::trim).collect();
    let (name, value) = attrs[0].split_once('=').unwrap();
    assert_eq!(name, "platform_session");
    assert!(value.len() >= 32, "a long random secret: {value:?}");
    assert!(!d.admin.contains(value), "the cookie is not the token");
    assert!(attrs.contains(&"HttpOnly"), "{attrs:?}");
    assert!(
        attrs.contains(&"SameSite=Lax") || attrs.contains(&"SameSite=Strict"),
        "{attrs:?}"
    );
    assert!(attrs.contains(&"Path=/"), "{attrs:?}");
    assert!(
        !attrs.contains(&"Secure"),
        "plain HTTP by default: {attrs:?}"
    );
    // Only a hash of the secret is stored.
    assert_eq!(
        d.count(&format!(
            "SELECT COUNT(*) FROM sessions WHERE id_hash = '{value}'"
        ))
        .await,
        0
    );
    assert_eq!(d.count("SELECT COUNT(*) FROM sessions").await, 1);

    let cookie = attrs[0];
    let apps = d.get("/apps", Some(cookie)).await;
    apps.assert_ok();
    assert_eq!(apps.testid("signed-in-as"), Some("token (default)"));
    let csrf = apps.csrf();
    assert_eq!(csrf.len(), 32, "{csrf:?}");
    apps.assert_has(&format!(r#"name="csrf" value="{csrf}""#));
    // Signed in, the sign-in page sends you on.
    d.get("/login?next=/tokens", Some(cookie))
        .await
        .assert_redirect("/tokens");

    // `next` is kept through sign-in.
    let p = d
        .login_post(&[("token", &d.admin), ("next", "/tokens")])
        .await;
    p.assert_redirect("/tokens");
}

#[tokio::test]
async fn sign_in_never_redirects_off_site() {
    let d = Dash::new().await;
    for next in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        // Browsers drop tabs and newlines from a Location: these would become //evil.example.
        "/\t/evil.example/",
        "/\n/evil.example/",
        "/\r\n/evil.example/",
        "evil",
    ] {
        let p = d.login_post(&[("token", &d.admin), ("next", next)]).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{next:?}: {}", p.body);
        assert_eq!(p.location(), "/apps", "{next:?}");
        let enc: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let p = d.get(&format!("/login?next={enc}"), None).await;
        p.assert_ok();
        p.assert_has(r#"name="next" value="/apps""#);
    }
}

#[tokio::test]
async fn local_user_signs_in_and_a_wrong_password_is_refused() {
    let d = Dash::new().await;
    let admin = d.admin().await;
    let p = d
        .post_as(
            &admin,
            "/users",
            &[("username", "alice"), ("password", "correct horse battery")],
        )
        .await;
    p.assert_ok();
    assert_eq!(p.testid("flash"), Some("User alice can now sign in."));
    p.assert_has(r#"<li class="py-1">alice</li>"#);
    // Only an argon2 hash is stored.
    assert_eq!(
        d.count("SELECT COUNT(*) FROM users WHERE username = 'alice' AND password_hash LIKE '$argon2id$%'")
            .await,
        1
    );
    assert_eq!(
        d.count("SELECT COUNT(*) FROM users WHERE password_hash LIKE '%correct horse%'")
            .await,
        0
    );

    // Too short a password, a bad name and a taken name are refused in words.
    for (user, pass, says) in [
        ("bob", "short", "use a password of at least 10 characters"),
        (
            "bob smith",
            "long enough password",
            "user names are 1-64 letters, digits and . _ - @",
        ),
        (
            "alice",
            "another long password",
            "the user name &#34;alice&#34; is taken",
        ),
    ] {
        let p = d
            .post_as(&admin, "/users", &[("username", user), ("password", pass)])
            .await;
        p.assert_ok();
        p.assert_has(&format!(
            r#"<p role="alert" class="text-red-700">{says}</p>"#
        ));
        p.assert_lacks(r#"data-testid="flash""#);
    }
    assert_eq!(d.count("SELECT COUNT(*) FROM users").await, 1);

    for (user, pass) in [
        ("alice", "correct horse batter"),
        ("alice", ""),
        ("alice", "CORRECT HORSE BATTERY"),
        ("bob", "short"),
        ("nobody", "correct horse battery"),
    ] {
        let p = d
            .sign_in(&[("username", user), ("password", pass)])
            .await
            .unwrap_err();
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{user}/{pass}");
        assert!(
            !p.set_cookies()
                .iter()
                .any(|c| c.starts_with("platform_session="))
        );
        assert_eq!(
            p.testid("login-error"),
            Some("Wrong user name or password.")
        );
        // The user/password panel stays open to try again.
        p.assert_has("shadow-sm\" open>");
    }
    assert_eq!(d.count("SELECT COUNT(*) FROM sessions").await, 1);

    let alice = d
        .sign_in(&[
            ("username", " alice "),
            ("password", "correct horse battery"),
        ])
        .await
        .unwrap();
    let apps = d.get_as(&alice, "/apps").await;
    assert_eq!(apps.testid("signed-in-as"), Some("alice"));
    // Alice acts for the tenant she was created in, without admin rights.
    let t = d.get_as(&alice, "/tokens").await;
    t.assert_has("Tenant: <strong>default</strong>");
    assert_eq!(
        d.count("SELECT COUNT(*) FROM sessions WHERE subject = 'user:alice' AND admin = 0 AND tenant = 'default'")
            .await,
        1
    );
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let d = Dash::new().await;
    let b = d.admin().await;
    let p = d.post_as(&b, "/logout", &[]).await;
    p.assert_redirect("/login");
    let cleared = p.set_cookies();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("platform_session=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    d.get_as(&b, "/apps")
        .await
        .assert_redirect("/login?next=%2Fapps");
    assert_eq!(d.count("SELECT COUNT(*) FROM sessions").await, 0);
}

#[tokio::test]
async fn sign_in_forms_posted_from_elsewhere_are_refused() {
    let d = Dash::new().await;
    // No form cookie (a cross-site post carries none: it is SameSite=Strict).
    let p = d.post("/login", None, &[("token", &d.admin)]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    p.assert_has("did not come from this dashboard");
    // A cookie, but a token that does not match it.
    let form = d.get("/login", None).await;
    let cookie = form
        .set_cookies()
        .iter()
        .find_map(|c| {
            c.split(';')
                .next()
                .filter(|kv| kv.starts_with("platform_login="))
                .map(str::to_string)
        })
        .unwrap();
    assert!(
        form.set_cookies()
            .iter()
            .any(|c| c.contains("SameSite=Strict") && c.contains("HttpOnly")),
        "{:?}",
        form.set_cookies()
    );
    let p = d
        .post(
            "/login",
            Some(&cookie),
            &[("token", &d.admin), ("csrf", "forged")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(d.count("SELECT COUNT(*) FROM sessions").await, 0);
}

#[tokio::test]
async fn dashboard_pages_cannot_be_framed() {
    let d = Dash::new().await;
    let b = d.admin().await;
    for p in [d.get("/login", None).await, d.get_as(&b, "/apps").await] {
        assert_eq!(
            p.headers["content-security-policy"],
            "frame-ancestors 'none'"
        );
        assert_eq!(p.headers["x-frame-options"], "DENY");
        assert_eq!(p.headers["x-content-type-options"], "nosniff");
    }
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_client_and_per_user_name() {
    use std::sync::Arc;

    use platform_web::WebConfig;
    use platform_web::sign_in_limits::SignInLimits;

    // Guessing tokens from one client.
    let d = Dash::with_config(WebConfig {
        sign_in_limits: Arc::new(SignInLimits::new(5, 1, 100, 100)),
        ..Default::default()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let p = d.login_post(&[("token", &format!("plt_guess_{i}"))]).await;
        statuses.push(p.status);
        if p.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(p.headers["retry-after"], "60");
            assert!(p.body.contains("Too many sign-in attempts"), "{}", p.body);
        }
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        5,
        "{statuses:?}"
    );
    assert!(
        statuses[5..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS)
    );
    // The right token is refused too while the client is over its limit.
    assert_eq!(
        d.sign_in(&[("token", &d.admin)]).await.unwrap_err().status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Guessing one user's password, whatever the client.
    let d = Dash::with_config(WebConfig {
        sign_in_limits: Arc::new(SignInLimits::new(100, 100, 3, 1)),
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        let p = d
            .login_post(&[("username", "alice"), ("password", "wrong")])
            .await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    }
    let p = d
        .login_post(&[("username", "ALICE"), ("password", "wrong")])
        .await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    // Other users and tokens are unaffected.
    d.admin().await;
}

#[tokio::test]
async fn over_https_the_session_cookie_is_host_only() {
    let d = Dash::with_config(platform_web::WebConfig {
        secure_cookies: true,
        ..Default::default()
    })
    .await;
    let p = d.login_post(&[("token", &d.admin)]).await;
    let set = p.set_cookies();
    let session = set
        .iter()
        .find(|c| c.starts_with("__Host-platform_session="))
        .unwrap_or_else(|| panic!("{set:?}"));
    assert!(session.contains("; Path=/;"), "{session}");
    assert!(session.contains("; Secure"), "{session}");
    assert!(
        !session.to_ascii_lowercase().contains("domain="),
        "{session}"
    );
    // A plain `platform_session` cookie (as a guest on a sibling host might plant) is no
    // session here.
    let value = session
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1;
    d.get("/apps", Some(&format!("platform_session={value}")))
        .await
        .assert_redirect("/login?next=%2Fapps");
    let b = d.admin().await;
    d.get_as(&b, "/apps").await.assert_ok();
}

#[tokio::test]
async fn user_names_are_per_tenant_and_sign_in_names_the_tenant() {
    let d = Dash::new().await;
    let admin = d.admin().await;
    d.post_as(
        &admin,
        "/users",
        &[("username", "alice"), ("password", "default tenant pass")],
    )
    .await
    .assert_ok();
    // A member of tenant acme creates its own alice: no collision tells it of the other.
    let acme = platform_control::api::tokens::create_token(
        d.ctl.clone(),
        platform_control::auth::Caller {
            tenant: "default".into(),
            token_id: "test".into(),
            role: platform_control::auth::Role::Admin,
        },
        platform_proto::v1::CreateTokenRequest {
            name: "acme".into(),
            tenant: "acme".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .secret;
    let acme = d.sign_in(&[("token", &acme)]).await.unwrap();
    let p = d
        .post_as(
            &acme,
            "/users",
            &[("username", "alice"), ("password", "acme tenant password")],
        )
        .await;
    p.assert_ok();
    assert_eq!(
        p.testid("flash"),
        Some("User alice can now sign in as alice@acme.")
    );
    assert_eq!(d.count("SELECT COUNT(*) FROM users").await, 2);

    // `alice` is default's alice, `alice@acme` is acme's; passwords do not cross.
    let a = d
        .sign_in(&[("username", "alice"), ("password", "default tenant pass")])
        .await
        .unwrap();
    d.get_as(&a, "/tokens")
        .await
        .assert_has("Tenant: <strong>default</strong>");
    let b = d
        .sign_in(&[
            ("username", "alice@acme"),
            ("password", "acme tenant password"),
        ])
        .await
        .unwrap();
    d.get_as(&b, "/tokens")
        .await
        .assert_has("Tenant: <strong>acme</strong>");
    assert!(
        d.sign_in(&[
            ("username", "alice@acme"),
            ("password", "default tenant pass")
        ])
        .await
        .is_err()
    );
    // A name that would read as user@tenant cannot be created.
    let p = d
        .post_as(
            &admin,
            "/users",
            &[
                ("username", "bob@acme"),
                ("password", "long enough password"),
            ],
        )
        .await;
    p.assert_has("may not end in @acme");
}
