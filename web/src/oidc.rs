//! OpenID Connect single sign-on for the dashboard (authorization-code flow with PKCE,
//! `state` and `nonce`), with the [`openidconnect`] crate.
//!
//! `GET /login/oidc` discovers the issuer (once, then cached), remembers the pending sign-in
//! (state, nonce, PKCE verifier, where to go next) in a short-lived, HMAC-signed, `HttpOnly`,
//! `SameSite=Lax` cookie and sends the browser to the provider. `GET /login/oidc/callback`
//! checks the returned `state` against that cookie, exchanges the code (with the PKCE
//! verifier), verifies the ID token (signature against the issuer's JWKS, issuer, audience,
//! expiry, nonce, access-token hash) and the user's email, and signs the user in with an
//! ordinary dashboard session ([`crate::session::create`]) as `oidc:<email or sub>` in the
//! configured tenant. Anything that goes wrong ends on the sign-in page with a message.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenClaims, CoreProviderMetadata,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    SignatureVerificationError, TokenResponse,
};
use platform_control::store::now_ms;
use sha2::Sha256;

use crate::WebState;
use crate::pages::login;
use crate::session;

/// How a dashboard signs users in with an OpenID Connect provider.
#[derive(Clone)]
pub struct OidcConfig {
    /// The issuer, e.g. `https://auth.example.com/realms/main`; its
    /// `/.well-known/openid-configuration` is read on the first sign-in.
    pub issuer_url: String,
    /// The client (application) id registered at the provider.
    pub client_id: String,
    /// The client secret (`None` for a public client, which relies on PKCE alone).
    pub client_secret: Option<String>,
    /// Where the provider sends the browser back: the dashboard's `/login/oidc/callback`
    /// (see [`OidcConfig::default_redirect_url`]); register it at the provider.
    pub redirect_url: String,
    /// The tenant every user signed in this way acts for.
    pub tenant: String,
    /// When not empty, only users whose verified email address is in one of these domains
    /// may sign in (`example.com` allows `ann@example.com`, not `ann@sub.example.com`).
    pub allowed_domains: Vec<String>,
}

impl OidcConfig {
    /// The default redirect URL for a dashboard served at `dashboard_base`
    /// (`http://127.0.0.1:8081` gives `http://127.0.0.1:8081/login/oidc/callback`).
    pub fn default_redirect_url(dashboard_base: &str) -> String {
        format!(
            "{}/login/oidc/callback",
            dashboard_base.trim_end_matches('/')
        )
    }
}

impl fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect_url", &self.redirect_url)
            .field("tenant", &self.tenant)
            .field("allowed_domains", &self.allowed_domains)
            .finish()
    }
}

/// Why a single sign-on did not succeed. The message is shown on the sign-in page.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// No provider is configured.
    #[error("Single sign-on is not configured on this dashboard.")]
    NotConfigured,
    /// The configuration is unusable (bad URL, no HTTP client).
    #[error("Single sign-on is misconfigured: {0}. See the server log.")]
    Config(String),
    /// The provider's discovery document or keys could not be fetched or made no sense.
    #[error(
        "Single sign-on is unavailable: the identity provider {issuer} could not be reached or its configuration could not be read ({detail})."
    )]
    Discovery {
        /// The configured issuer.
        issuer: String,
        /// What went wrong.
        detail: String,
    },
    /// The provider answered the sign-in with an error (the user declined, for example).
    #[error("The identity provider did not sign you in: {0}")]
    Provider(String),
    /// No pending sign-in in this browser, or it expired or was tampered with.
    #[error(
        "This single sign-on has expired or was started in another browser. Please sign in again."
    )]
    NoPendingLogin,
    /// The `state` sent back is not the one this browser's pending sign-in expects.
    #[error(
        "This single sign-on answer does not belong to the sign-in this browser started (state mismatch). Please sign in again."
    )]
    StateMismatch,
    /// The callback carried neither a code nor an error.
    #[error("The identity provider's answer carried no authorization code.")]
    MissingCode,
    /// Exchanging the code at the token endpoint failed.
    #[error("Exchanging the sign-in code with the identity provider failed: {0}")]
    Exchange(String),
    /// The token response held no ID token.
    #[error("The identity provider returned no ID token.")]
    NoIdToken,
    /// The ID token failed verification.
    #[error("The identity provider's ID token was rejected: {0}")]
    InvalidIdToken(String),
    /// The provider says the user's email address is not verified.
    #[error("Your email address {0} is not verified at the identity provider.")]
    EmailNotVerified(String),
    /// The allowed domains need a verified email address the provider did not give.
    #[error(
        "The identity provider did not give a verified email address, which this dashboard requires."
    )]
    NoVerifiedEmail,
    /// The user's email domain is not allowed.
    #[error("Accounts of {0} may not sign in to this dashboard.")]
    DomainNotAllowed(String),
    /// The session could not be stored.
    #[error("Signing in failed on the server; see its log.")]
    Session(#[from] sqlx::Error),
}

impl OidcError {
    /// The HTTP status of the sign-in page showing this error.
    pub fn status(&self) -> StatusCode {
        match self {
            OidcError::NotConfigured => StatusCode::NOT_FOUND,
            OidcError::Config(_) | OidcError::Session(_) => StatusCode::SERVICE_UNAVAILABLE,
            OidcError::Discovery { .. } | OidcError::Exchange(_) => StatusCode::BAD_GATEWAY,
            OidcError::NoPendingLogin | OidcError::StateMismatch | OidcError::MissingCode => {
                StatusCode::BAD_REQUEST
            }
            OidcError::EmailNotVerified(_)
            | OidcError::NoVerifiedEmail
            | OidcError::DomainNotAllowed(_) => StatusCode::FORBIDDEN,
            OidcError::Provider(_) | OidcError::NoIdToken | OidcError::InvalidIdToken(_) => {
                StatusCode::UNAUTHORIZED
            }
        }
    }
}

/// The name of the pending-sign-in cookie.
const PENDING_COOKIE: &str = "platform_oidc";
/// How long a pending sign-in lasts (the time the user has at the provider).
const PENDING_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How long discovered provider metadata (and its keys) are used before being read again.
const DISCOVERY_TTL: Duration = Duration::from_secs(15 * 60);

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The configured provider at run time: its HTTP client, the cached discovery and the key
/// that signs pending-sign-in cookies. Made by [`crate::router`] from [`OidcConfig`].
pub struct Sso {
    config: OidcConfig,
    http: Result<reqwest::Client, String>,
    cookie_key: [u8; 32],
    discovered: tokio::sync::Mutex<Option<(CoreProviderMetadata, Instant)>>,
}

impl Sso {
    /// Prepares sign-in with `config` (nothing is fetched until the first sign-in).
    pub fn new(config: OidcConfig) -> Self {
        let http = reqwest::Client::builder()
            // Following redirects would let a provider's answer point requests anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string());
        // Replicas of the control plane share the client secret, so a sign-in started on one
        // can finish on another; a public client gets a per-process key.
        let cookie_key = match &config.client_secret {
            Some(secret) if !secret.is_empty() => match hmac_with(secret.as_bytes()) {
                Some(mut mac) => {
                    mac.update(b"platform dashboard: OIDC pending sign-in cookie v1");
                    mac.finalize().into_bytes().into()
                }
                None => random_key(),
            },
            _ => random_key(),
        };
        Sso {
            config,
            http,
            cookie_key,
            discovered: tokio::sync::Mutex::new(None),
        }
    }

    fn http(&self) -> Result<&reqwest::Client, OidcError> {
        self.http
            .as_ref()
            .map_err(|e| OidcError::Config(format!("no HTTP client: {e}")))
    }

    /// The provider's metadata: cached, or discovered now (`refresh` forces it, for a key
    /// rotated since).
    async fn metadata(&self, refresh: bool) -> Result<CoreProviderMetadata, OidcError> {
        let mut cached = self.discovered.lock().await;
        if !refresh
            && let Some((m, at)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(m.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer_url.clone())
            .map_err(|e| OidcError::Config(format!("issuer URL: {e}")))?;
        let m = CoreProviderMetadata::discover_async(issuer, self.http()?)
            .await
            .map_err(|e| {
                let detail = error_chain(&e);
                tracing::warn!(issuer = %self.config.issuer_url, error = %detail, "OIDC discovery failed");
                OidcError::Discovery {
                    issuer: self.config.issuer_url.clone(),
                    detail,
                }
            })?;
        *cached = Some((m.clone(), Instant::now()));
        Ok(m)
    }

    async fn client(&self, refresh: bool) -> Result<Client, OidcError> {
        let m = self.metadata(refresh).await?;
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|e| OidcError::Config(format!("redirect URL: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            m,
            ClientId::new(self.config.client_id.clone()),
            self.config
                .client_secret
                .clone()
                .filter(|s| !s.is_empty())
                .map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    fn sign(&self, payload: &str) -> Option<String> {
        let mut mac = hmac_with(&self.cookie_key)?;
        mac.update(payload.as_bytes());
        Some(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    fn pending_cookie(&self, p: &Pending, secure: bool) -> Option<HeaderValue> {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(p).ok()?);
        let sig = self.sign(&payload)?;
        HeaderValue::from_str(&format!(
            "{PENDING_COOKIE}={payload}.{sig}; Path=/login/oidc; HttpOnly; SameSite=Lax; Max-Age={}{}",
            PENDING_LIFETIME.as_secs(),
            if secure { "; Secure" } else { "" }
        ))
        .ok()
    }

    /// The pending sign-in of this browser, if its signature holds and it has not expired.
    fn pending(&self, headers: &HeaderMap) -> Option<Pending> {
        let value = session::cookie_named(headers, PENDING_COOKIE)?;
        let (payload, sig) = value.split_once('.')?;
        let mut mac = hmac_with(&self.cookie_key)?;
        mac.update(payload.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).ok()?).ok()?;
        let p: Pending = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (p.expires_at > now_ms()).then_some(p)
    }
}

/// HMAC-SHA256 keyed with `key` (HMAC takes keys of any length, so this is always `Some`).
fn hmac_with(key: &[u8]) -> Option<Hmac<Sha256>> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).ok()
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    key
}

/// An error with its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// A sign-in between the redirect to the provider and its answer.
#[derive(serde::Serialize, serde::Deserialize)]
struct Pending {
    /// The `state` sent to the provider.
    state: String,
    /// The `nonce` the ID token must carry.
    nonce: String,
    /// The PKCE code verifier.
    verifier: String,
    /// Where to go after signing in (a local path).
    next: String,
    /// Unix milliseconds.
    expires_at: i64,
}

/// The provider's handle for the sign-in routes (absent when not configured).
#[derive(Clone)]
pub struct SsoHandle(pub Option<Arc<Sso>>);

fn clear_pending(state: &WebState) -> HeaderValue {
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{PENDING_COOKIE}=; Path=/login/oidc; HttpOnly; SameSite=Lax; Max-Age=0{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("platform_oidc=; Path=/login/oidc; Max-Age=0"))
}

fn fail(state: &WebState, next: String, e: &OidcError) -> Response {
    match e {
        OidcError::Session(_) | OidcError::Config(_) => {
            tracing::error!(error = %error_chain(e), "single sign-on failed");
        }
        _ => tracing::info!(error = %error_chain(e), "single sign-on refused"),
    }
    let mut resp = login::login_page(state, next, Some(e.to_string()), false, e.status());
    resp.headers_mut()
        .append(header::SET_COOKIE, clear_pending(state));
    resp
}

/// `GET /login/oidc`: sends the browser to the provider.
pub async fn start(
    State(state): State<WebState>,
    Extension(SsoHandle(sso)): Extension<SsoHandle>,
    Query(q): Query<login::NextQuery>,
) -> Response {
    let next = login::safe_next(q.next.as_deref());
    let Some(sso) = sso else {
        return fail(&state, next, &OidcError::NotConfigured);
    };
    let client = match sso.client(false).await {
        Ok(c) => c,
        Err(e) => return fail(&state, next, &e),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let pending = Pending {
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        next: next.clone(),
        expires_at: now_ms() + PENDING_LIFETIME.as_millis() as i64,
    };
    let Some(cookie) = sso.pending_cookie(&pending, state.config.secure_cookies) else {
        return fail(
            &state,
            next,
            &OidcError::Config("cannot encode the pending sign-in".into()),
        );
    };
    ([(header::SET_COOKIE, cookie)], Redirect::to(url.as_str())).into_response()
}

/// The provider's answer on the redirect URL.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CallbackQuery {
    /// The authorization code.
    #[serde(default)]
    pub code: Option<String>,
    /// The `state` sent with the request.
    #[serde(default)]
    pub state: Option<String>,
    /// An OAuth error code (`access_denied`, ...).
    #[serde(default)]
    pub error: Option<String>,
    /// The error's human-readable description.
    #[serde(default)]
    pub error_description: Option<String>,
}

/// `GET /login/oidc/callback`: finishes the sign-in.
pub async fn callback(
    State(state): State<WebState>,
    Extension(SsoHandle(sso)): Extension<SsoHandle>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(sso) = sso else {
        return fail(&state, "/apps".into(), &OidcError::NotConfigured);
    };
    let pending = sso.pending(&headers);
    let next = pending
        .as_ref()
        .map_or_else(|| "/apps".to_string(), |p| p.next.clone());
    match finish(&state, &sso, pending, q).await {
        Ok(cookie) => {
            let mut resp = Redirect::to(&next).into_response();
            resp.headers_mut()
                .append(header::SET_COOKIE, clear_pending(&state));
            resp.headers_mut().append(header::SET_COOKIE, cookie);
            resp
        }
        Err(e) => fail(&state, next, &e),
    }
}

/// Checks the answer, verifies the ID token and creates the session (its cookie returned).
async fn finish(
    state: &WebState,
    sso: &Sso,
    pending: Option<Pending>,
    q: CallbackQuery,
) -> Result<HeaderValue, OidcError> {
    if let Some(err) = q.error {
        let mut msg: String = err.chars().take(100).collect();
        if let Some(d) = q.error_description.filter(|d| !d.trim().is_empty()) {
            msg.push_str(" (");
            msg.extend(d.chars().take(300));
            msg.push(')');
        }
        return Err(OidcError::Provider(msg));
    }
    let pending = pending.ok_or(OidcError::NoPendingLogin)?;
    let sent = q.state.unwrap_or_default();
    if !session::constant_time_eq(sent.as_bytes(), pending.state.as_bytes()) {
        return Err(OidcError::StateMismatch);
    }
    let code = q
        .code
        .filter(|c| !c.is_empty())
        .ok_or(OidcError::MissingCode)?;

    let client = sso.client(false).await?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| OidcError::Config(format!("token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
        .request_async(sso.http()?)
        .await
        .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
    let id_token = tokens.id_token().ok_or(OidcError::NoIdToken)?;
    let nonce = Nonce::new(pending.nonce);

    // A key the cached JWKS does not have may have been rotated in: read the keys again once.
    let access_token = tokens.access_token();
    let claims = match verify(&client, id_token, &nonce, access_token) {
        Err(Unverified::UnknownKey(_)) => {
            verify(&sso.client(true).await?, id_token, &nonce, access_token)
        }
        other => other,
    }
    .map_err(|e| match e {
        Unverified::UnknownKey(m) | Unverified::Invalid(m) => OidcError::InvalidIdToken(m),
    })?;

    let subject = subject_for(&sso.config, &claims)?;
    // The configured tenant may not exist yet (no token made for it so far).
    let mut tx = state.ctl.store.begin().await?;
    platform_control::auth::ensure_tenant(&mut tx, &sso.config.tenant).await?;
    tx.commit().await?;
    Ok(session::create(state, &sso.config.tenant, &subject, false).await?)
}

/// Why an ID token was not accepted.
enum Unverified {
    /// Signed with a key the provider's JWKS does not have.
    UnknownKey(String),
    /// Anything else.
    Invalid(String),
}

/// Verifies the ID token's signature, issuer, audience, expiry and nonce, and the
/// access-token hash when it has one.
fn verify(
    client: &Client,
    id_token: &CoreIdToken,
    nonce: &Nonce,
    access_token: &AccessToken,
) -> Result<CoreIdTokenClaims, Unverified> {
    let invalid = |e: &dyn std::error::Error| Unverified::Invalid(error_chain(e));
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, nonce).map_err(|e| match e {
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => Unverified::UnknownKey(error_chain(&e)),
        e => invalid(&e),
    })?;
    if let Some(expected) = claims.access_token_hash() {
        let alg = id_token.signing_alg().map_err(|e| invalid(&e))?;
        let key = id_token.signing_key(&verifier).map_err(|e| invalid(&e))?;
        let actual =
            AccessTokenHash::from_token(access_token, alg, key).map_err(|e| invalid(&e))?;
        if actual != *expected {
            return Err(Unverified::Invalid(
                "the access token does not match the ID token's at_hash".into(),
            ));
        }
    }
    Ok(claims.clone())
}

/// `oidc:<email>` for a verified email, else `oidc:<sub>`; enforces the allowed domains.
fn subject_for(config: &OidcConfig, claims: &CoreIdTokenClaims) -> Result<String, OidcError> {
    let email = claims.email().map(|e| e.as_str().trim().to_string());
    let verified = claims.email_verified();
    if let Some(e) = &email
        && verified == Some(false)
    {
        return Err(OidcError::EmailNotVerified(e.clone()));
    }
    let verified_email = email.filter(|_| verified == Some(true));
    if !config.allowed_domains.is_empty() {
        let e = verified_email
            .as_deref()
            .ok_or(OidcError::NoVerifiedEmail)?;
        let domain = e.rsplit_once('@').map_or("", |(_, d)| d);
        if !config.allowed_domains.iter().any(|d| {
            d.trim()
                .trim_start_matches('@')
                .eq_ignore_ascii_case(domain)
        }) {
            return Err(OidcError::DomainNotAllowed(format!("@{domain}")));
        }
    }
    Ok(match verified_email {
        Some(e) => format!("oidc:{e}"),
        None => format!("oidc:{}", claims.subject().as_str()),
    })
}
