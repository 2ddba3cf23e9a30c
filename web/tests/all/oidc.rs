//! Single sign-on with OpenID Connect, against an identity provider run by the test: discovery,
//! JWKS, an authorize endpoint that signs "the user" in at once and a token endpoint that
//! checks the code, the client secret and the PKCE verifier and returns an RS256 ID token.
//! Knobs on the provider produce the bad answers the dashboard must refuse.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openidconnect::core::{
    CoreIdToken, CoreIdTokenClaims, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreRsaPrivateSigningKey,
};
use openidconnect::{AccessToken, JsonWebKeyId, PrivateSigningKey};
use platform_web::{OidcConfig, WebConfig};
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{Dash, Page};

const CLIENT_ID: &str = "platform-dashboard";
const CLIENT_SECRET: &str = "s3cret-of-the-dashboard";
/// The dashboard as the provider knows it; the test's browser sends what the provider
/// redirects there through the router instead.
const DASH: &str = "http://dash.test";

/// Two RSA keys (PKCS#1 PEM), generated once per run: the provider's, and a stranger's.
static KEYS: LazyLock<(String, String)> = LazyLock::new(|| {
    let pem = || {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string()
    };
    (pem(), pem())
});

fn signing_key(pem: &str) -> CoreRsaPrivateSigningKey {
    CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new("key-1".into()))).unwrap()
}

/// What the provider gets wrong on purpose in the next ID token.
#[derive(Debug, Clone, Default)]
struct Tweak {
    audience: Option<String>,
    issuer: Option<String>,
    nonce: Option<String>,
    /// Sign with a key that is not in the JWKS (under the same key id).
    foreign_key: bool,
    expired: bool,
    /// An `at_hash` for another access token.
    wrong_at_hash: bool,
}

/// A code the authorize endpoint handed out.
struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

struct IssuerState {
    url: String,
    email: Mutex<Option<(String, Option<bool>)>>,
    tweak: Mutex<Tweak>,
    codes: Mutex<HashMap<String, Grant>>,
    token_requests: Mutex<u32>,
}

/// The test's identity provider.
#[derive(Clone)]
struct Issuer(Arc<IssuerState>);

impl Issuer {
    async fn start() -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let issuer = Issuer(Arc::new(IssuerState {
            url,
            email: Mutex::new(Some(("ann@example.com".into(), Some(true)))),
            tweak: Mutex::new(Tweak::default()),
            codes: Mutex::new(HashMap::new()),
            token_requests: Mutex::new(0),
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(issuer.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        issuer
    }

    fn url(&self) -> &str {
        &self.0.url
    }

    fn tweak(&self, t: Tweak) {
        *self.0.tweak.lock().unwrap() = t;
    }

    fn email(&self, email: Option<(&str, Option<bool>)>) {
        *self.0.email.lock().unwrap() = email.map(|(e, v)| (e.to_string(), v));
    }

    fn config(&self) -> OidcConfig {
        OidcConfig {
            issuer_url: self.url().to_string(),
            client_id: CLIENT_ID.into(),
            client_secret: Some(CLIENT_SECRET.into()),
            redirect_url: OidcConfig::default_redirect_url(DASH),
            tenant: "default".into(),
            allowed_domains: vec![],
        }
    }
}

async fn discovery(State(i): State<Issuer>) -> Json<serde_json::Value> {
    let u = i.url();
    Json(json!({
        "issuer": u,
        "authorization_endpoint": format!("{u}/authorize"),
        "token_endpoint": format!("{u}/token"),
        "jwks_uri": format!("{u}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks() -> Json<CoreJsonWebKeySet> {
    Json(CoreJsonWebKeySet::new(vec![
        signing_key(&KEYS.0).as_verification_key(),
    ]))
}

/// Signs the user in at once and sends the browser back with a code, as a provider does
/// after its login form.
async fn authorize(State(i): State<Issuer>, Query(q): Query<HashMap<String, String>>) -> Response {
    let p = |k: &str| q.get(k).cloned().unwrap_or_default();
    assert_eq!(p("client_id"), CLIENT_ID);
    assert_eq!(p("response_type"), "code");
    assert_eq!(p("code_challenge_method"), "S256");
    assert!(p("scope").split(' ').any(|s| s == "openid"), "{q:?}");
    assert!(!p("state").is_empty() && !p("nonce").is_empty(), "{q:?}");
    let code = format!("code-{}", rand::random::<u64>());
    i.0.codes.lock().unwrap().insert(
        code.clone(),
        Grant {
            nonce: p("nonce"),
            challenge: p("code_challenge"),
            redirect_uri: p("redirect_uri"),
        },
    );
    let mut back = url::Url::parse(&p("redirect_uri")).unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &p("state"));
    Redirect::to(back.as_str()).into_response()
}

async fn token(
    State(i): State<Issuer>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    *i.0.token_requests.lock().unwrap() += 1;
    let refuse = |why: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": why})),
        )
            .into_response()
    };
    // Client authentication: HTTP Basic with the URL-encoded id and secret.
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    if basic.as_deref() != Some(&format!("{CLIENT_ID}:{CLIENT_SECRET}")) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let p = |k: &str| f.get(k).cloned().unwrap_or_default();
    if p("grant_type") != "authorization_code" {
        return refuse("grant_type");
    }
    let Some(grant) = i.0.codes.lock().unwrap().remove(&p("code")) else {
        return refuse("unknown or used code");
    };
    if p("redirect_uri") != grant.redirect_uri {
        return refuse("redirect_uri");
    }
    if URL_SAFE_NO_PAD.encode(Sha256::digest(p("code_verifier").as_bytes())) != grant.challenge {
        return refuse("PKCE verifier does not match the challenge");
    }

    let t = i.0.tweak.lock().unwrap().clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut claims = json!({
        "iss": t.issuer.clone().unwrap_or_else(|| i.url().to_string()),
        "aud": [t.audience.clone().unwrap_or_else(|| CLIENT_ID.to_string())],
        "sub": "user-0042",
        "iat": now - if t.expired { 3600 } else { 0 },
        "exp": now + if t.expired { -1800 } else { 300 },
        "nonce": t.nonce.clone().unwrap_or(grant.nonce),
    });
    if let Some((email, verified)) = i.0.email.lock().unwrap().clone() {
        claims["email"] = json!(email);
        if let Some(v) = verified {
            claims["email_verified"] = json!(v);
        }
    }
    let claims: CoreIdTokenClaims = serde_json::from_value(claims).unwrap();
    let access_token = AccessToken::new(format!("at-{}", rand::random::<u64>()));
    let key = signing_key(if t.foreign_key { &KEYS.1 } else { &KEYS.0 });
    let hashed = if t.wrong_at_hash {
        AccessToken::new("another access token".into())
    } else {
        access_token.clone()
    };
    let id_token = CoreIdToken::new(
        claims,
        &key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        Some(&hashed),
        None,
    )
    .unwrap();
    Json(json!({
        "access_token": access_token.secret(),
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token.to_string(),
    }))
    .into_response()
}

/// The value (`name=value`) of the `Set-Cookie` named `name` on `page`.
fn set_cookie(page: &Page, name: &str) -> Option<String> {
    page.set_cookies().iter().find_map(|c| {
        c.split(';')
            .next()
            .filter(|kv| kv.starts_with(&format!("{name}=")))
            .map(str::to_string)
    })
}

/// Starts a sign-in (`GET /login/oidc?next=...`) and lets the provider answer. Returns the
/// pending-sign-in cookie and the callback's path and query (on the dashboard).
async fn to_provider_and_back(d: &Dash, issuer: &Issuer, next: &str) -> (String, String) {
    let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    let p = d.get(&format!("/login/oidc?next={next}"), None).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let to = p.location().to_string();
    assert!(
        to.starts_with(&format!("{}/authorize?", issuer.url())),
        "{to}"
    );
    let pending = set_cookie(&p, "platform_oidc").expect("pending sign-in cookie");
    let cookie_attrs = p
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("platform_oidc="))
        .unwrap();
    for attr in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/login/oidc",
        "Max-Age=600",
    ] {
        assert!(cookie_attrs.contains(attr), "{cookie_attrs}");
    }
    // The browser at the provider: it redirects back at once.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(&to).send().await.unwrap();
    assert!(r.status().is_redirection(), "{:?}", r.status());
    let back = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    let callback = back
        .strip_prefix(DASH)
        .unwrap_or_else(|| panic!("provider sent the browser to {back}"))
        .to_string();
    assert!(callback.starts_with("/login/oidc/callback?"), "{callback}");
    (pending, callback)
}

/// Asserts `p` is the sign-in page with `status`, an error containing `words`, and no session.
fn assert_refused(p: &Page, status: StatusCode, words: &str) {
    assert_eq!(p.status, status, "{}", p.body);
    let err = p
        .testid("login-error")
        .unwrap_or_else(|| panic!("no error on the page: {}", p.body));
    assert!(err.contains(words), "{words:?} not in {err:?}");
    assert!(
        set_cookie(p, "platform_session").is_none(),
        "{:?}",
        p.set_cookies()
    );
    // The sign-in page it is, with the SSO button to try again.
    p.assert_has(r#"data-testid="sso""#);
}

async fn sessions(d: &Dash) -> i64 {
    d.count("SELECT COUNT(*) FROM sessions").await
}

#[tokio::test]
async fn sign_in_with_the_provider_gives_a_working_session() {
    let issuer = Issuer::start().await;
    let d = Dash::with_config(WebConfig {
        oidc: Some(issuer.config()),
        ..Default::default()
    })
    .await;

    let login = d.get("/login?next=%2Ftokens", None).await;
    login.assert_ok();
    login.assert_has(r#"href="/login/oidc?next=%2Ftokens""#);
    assert_eq!(login.testid("sso"), Some("Sign in with SSO"));

    let (pending, callback) = to_provider_and_back(&d, &issuer, "/tokens").await;
    let p = d.get(&callback, Some(&pending)).await;
    p.assert_redirect("/tokens");
    let session = set_cookie(&p, "platform_session").expect("session cookie");
    // The pending sign-in is over: its cookie is cleared.
    assert!(
        p.set_cookies()
            .iter()
            .any(|c| c.starts_with("platform_oidc=;") && c.contains("Max-Age=0")),
        "{:?}",
        p.set_cookies()
    );
    let attrs = p
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("platform_session="))
        .unwrap();
    assert!(
        attrs.contains("HttpOnly") && attrs.contains("SameSite=Lax"),
        "{attrs}"
    );

    let apps = d.get("/apps", Some(&session)).await;
    apps.assert_ok();
    apps.assert_has("ann@example.com");
    let row: (String, String, i64) = sqlx::query_as("SELECT tenant, subject, admin FROM sessions")
        .fetch_one(d.ctl.store.pool())
        .await
        .unwrap();
    assert_eq!(row, ("default".into(), "oidc:ann@example.com".into(), 0));

    // The session acts for the tenant: an app created through it belongs to `default`.
    let b = crate::support::Browser {
        cookie: session.clone(),
        csrf: apps.csrf(),
    };
    d.post_as(&b, "/apps", &[("name", "from-sso")]).await;
    assert_eq!(d.app_names().await, vec!["from-sso".to_string()]);

    // The callback cannot be replayed: the code is used and the pending sign-in gone.
    let again = d.get(&callback, Some(&pending)).await;
    assert_eq!(again.status, StatusCode::BAD_GATEWAY, "{}", again.body);
    assert!(set_cookie(&again, "platform_session").is_none());
    let again = d.get(&callback, None).await;
    assert_refused(&again, StatusCode::BAD_REQUEST, "has expired");

    // Without an email the subject is the provider's `sub`.
    issuer.email(None);
    let (pending, callback) = to_provider_and_back(&d, &issuer, "/apps").await;
    let p = d.get(&callback, Some(&pending)).await;
    p.assert_redirect("/apps");
    assert_eq!(
        d.count("SELECT COUNT(*) FROM sessions WHERE subject = 'oidc:user-0042'")
            .await,
        1
    );
}

#[tokio::test]
async fn no_sso_button_or_route_unless_configured() {
    let d = Dash::new().await;
    let login = d.get("/login", None).await;
    login.assert_ok();
    login.assert_lacks("Sign in with SSO");
    login.assert_lacks("/login/oidc");
    let p = d.get("/login/oidc", None).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert_eq!(
        p.testid("login-error"),
        Some("Single sign-on is not configured on this dashboard.")
    );
    let p = d.get("/login/oidc/callback?code=x&state=y", None).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert_eq!(sessions(&d).await, 0);
}

#[tokio::test]
async fn a_forged_or_foreign_state_is_refused() {
    let issuer = Issuer::start().await;
    let d = Dash::with_config(WebConfig {
        oidc: Some(issuer.config()),
        ..Default::default()
    })
    .await;

    // The right code with another state.
    let (pending, callback) = to_provider_and_back(&d, &issuer, "/apps").await;
    let mut u = url::Url::parse(&format!("{DASH}{callback}")).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into()
            };
            (k.into(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    let p = d
        .get(
            &format!("/login/oidc/callback?{}", u.query().unwrap()),
            Some(&pending),
        )
        .await;
    assert_refused(&p, StatusCode::BAD_REQUEST, "state mismatch");
    // A callback without a state at all.
    let code = u
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let p = d
        .get(&format!("/login/oidc/callback?code={code}"), Some(&pending))
        .await;
    assert_refused(&p, StatusCode::BAD_REQUEST, "state mismatch");

    // Another browser's answer: this one has its own pending sign-in (or none).
    let (_, callback_a) = to_provider_and_back(&d, &issuer, "/apps").await;
    let (pending_b, _) = to_provider_and_back(&d, &issuer, "/apps").await;
    let p = d.get(&callback_a, Some(&pending_b)).await;
    assert_refused(&p, StatusCode::BAD_REQUEST, "state mismatch");
    let p = d.get(&callback_a, None).await;
    assert_refused(&p, StatusCode::BAD_REQUEST, "has expired");

    // A pending-sign-in cookie edited by hand (its state replaced) fails its signature.
    let (pending, callback) = to_provider_and_back(&d, &issuer, "/apps").await;
    let value = pending.strip_prefix("platform_oidc=").unwrap();
    let (payload, sig) = value.split_once('.').unwrap();
    let mut data: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let state_in_callback = url::Url::parse(&format!("{DASH}{callback_a}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    data["state"] = json!(state_in_callback);
    let forged = format!(
        "platform_oidc={}.{sig}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&data).unwrap())
    );
    let p = d.get(&callback_a, Some(&forged)).await;
    assert_refused(&p, StatusCode::BAD_REQUEST, "has expired");
    // Untouched, it still works: the refusals above were about the changes.
    d.get(&callback, Some(&pending))
        .await
        .assert_redirect("/apps");
    assert_eq!(sessions(&d).await, 1);
}

#[tokio::test]
async fn provider_errors_are_shown_on_the_sign_in_page() {
    let issuer = Issuer::start().await;
    let d = Dash::with_config(WebConfig {
        oidc: Some(issuer.config()),
        ..Default::default()
    })
    .await;
    let (pending, _) = to_provider_and_back(&d, &issuer, "/apps").await;
    let p = d
        .get(
            "/login/oidc/callback?error=access_denied&error_description=The+user+said+%3Cno%3E&state=whatever",
            Some(&pending),
        )
        .await;
    assert_refused(
        &p,
        StatusCode::UNAUTHORIZED,
        "The identity provider did not sign you in: access_denied (The user said &#60;no&#62;)",
    );
    // The pending sign-in is cleared.
    assert!(
        p.set_cookies()
            .iter()
            .any(|c| c.starts_with("platform_oidc=;")),
        "{:?}",
        p.set_cookies()
    );
    assert_eq!(sessions(&d).await, 0);

    // A token endpoint that refuses the code.
    let (pending, callback) = to_provider_and_back(&d, &issuer, "/apps").await;
    issuer.0.codes.lock().unwrap().clear();
    let p = d.get(&callback, Some(&pending)).await;
    assert_refused(&p, StatusCode::BAD_GATEWAY, "Exchanging the sign-in code");
    assert!(
        p.testid("login-error")
            .unwrap()
            .contains("unknown or used code"),
        "{:?}",
        p.testid("login-error")
    );
    assert_eq!(sessions(&d).await, 0);
}

#[tokio::test]
async fn id_tokens_that_fail_verification_are_refused() {
    let issuer = Issuer::start().await;
    let d = Dash::with_config(WebConfig {
        oidc: Some(issuer.config()),
        ..Default::default()
    })
    .await;
    for (tweak, words) in [
        (
            Tweak {
                audience: Some("another-client".into()),
                ..Default::default()
            },
            "audience",
        ),
        (
            Tweak {
                foreign_key: true,
                ..Default::default()
            },
            "Signature verification failed",
        ),
        (
            Tweak {
                nonce: Some("a-nonce-from-another-sign-in".into()),
                ..Default::default()
            },
            "nonce",
        ),
        (
            Tweak {
                expired: true,
                ..Default::default()
            },
            "Expired",
        ),
        (
            Tweak {
                issuer: Some("https://impostor.example".into()),
                ..Default::default()
            },
            "issuer",
        ),
        (
            Tweak {
                wrong_at_hash: true,
                ..Default::default()
            },
            "at_hash",
        ),
    ] {
        issuer.tweak(tweak.clone());
        let before = *issuer.0.token_requests.lock().unwrap();
        let (pending, callback) = to_provider_and_back(&d, &issuer, "/apps").await;
        let p = d.get(&callback, Some(&pending)).await;
        // The code was exchanged: the refusal is about the ID token.
        assert_eq!(*issuer.0.token_requests.lock().unwrap(), before + 1);
        assert_refused(&p, StatusCode::UNAUTHORIZED, "ID token was rejected");
        assert!(
            p.testid("login-error").unwrap().contains(words),
            "{tweak:?}: {words:?} not in {:?}",
            p.testid("login-error")
        );
    }
    assert_eq!(sessions(&d).await, 0);
    // And with nothing wrong, the same provider signs in.
    issuer.tweak(Tweak::default());
    let (pending, callback) = to_provider_and_back(&d, &issuer, "/apps").await;
    d.get(&callback, Some(&pending))
        .await
        .assert_redirect("/apps");
    assert_eq!(sessions(&d).await, 1);
}

#[tokio::test]
async fn only_verified_emails_of_allowed_domains_get_in() {
    let issuer = Issuer::start().await;
    let mut config = issuer.config();
    config.allowed_domains = vec!["example.com".into()];
    config.tenant = "acme".into();
    let d = Dash::with_config(WebConfig {
        oidc: Some(config),
        ..Default::default()
    })
    .await;
    for (email, status, words) in [
        (
            Some(("eve@evil.test", Some(true))),
            StatusCode::FORBIDDEN,
            "Accounts of @evil.test may not sign in",
        ),
        (
            Some(("eve@example.com.evil.test", Some(true))),
            StatusCode::FORBIDDEN,
            "Accounts of @example.com.evil.test may not sign in",
        ),
        (
            Some(("ann@example.com", Some(false))),
            StatusCode::FORBIDDEN,
            "ann@example.com is not verified",
        ),
        (
            Some(("ann@example.com", None)),
            StatusCode::FORBIDDEN,
            "did not give a verified email address",
        ),
        (None, StatusCode::FORBIDDEN, "did not give a verified email"),
    ] {
        issuer.email(email);
        let (pending, callback) = to_provider_and_back(&d, &issuer, "/apps").await;
        let p = d.get(&callback, Some(&pending)).await;
        assert_refused(&p, status, words);
    }
    assert_eq!(sessions(&d).await, 0);

    issuer.email(Some(("Bob@EXAMPLE.com", Some(true))));
    let (pending, callback) = to_provider_and_back(&d, &issuer, "/apps").await;
    let p = d.get(&callback, Some(&pending)).await;
    p.assert_redirect("/apps");
    let row: (String, String) = sqlx::query_as("SELECT tenant, subject FROM sessions")
        .fetch_one(d.ctl.store.pool())
        .await
        .unwrap();
    assert_eq!(row, ("acme".into(), "oidc:Bob@EXAMPLE.com".into()));
}

#[tokio::test]
async fn an_unreachable_provider_is_an_error_on_the_sign_in_page() {
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let d = Dash::with_config(WebConfig {
        oidc: Some(OidcConfig {
            issuer_url: url.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: None,
            redirect_url: OidcConfig::default_redirect_url(DASH),
            tenant: "default".into(),
            allowed_domains: vec![],
        }),
        ..Default::default()
    })
    .await;
    // The dashboard itself is fine.
    d.get("/login", None).await.assert_ok();
    let p = d.get("/login/oidc", None).await;
    assert_refused(
        &p,
        StatusCode::BAD_GATEWAY,
        &format!("Single sign-on is unavailable: the identity provider {url} could not be reached"),
    );
}
