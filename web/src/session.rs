//! Sign-in sessions: a random secret in an `HttpOnly`, `SameSite=Lax` cookie, its sha256 in
//! the database (so sessions survive restarts and work across control replicas), and a
//! per-session CSRF token that every form and HTMX request must echo.

use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use platform_control::auth::Caller;
use platform_control::store::now_ms;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::WebState;

/// Name of the session cookie over plain HTTP.
pub const COOKIE: &str = "platform_session";
/// Name of the session cookie over HTTPS: the `__Host-` prefix makes browsers refuse it
/// unless it is `Secure`, `Path=/` and host-only, so no sibling or parent host sets it.
pub const SECURE_COOKIE: &str = "__Host-platform_session";

/// The session cookie's name for this dashboard.
pub fn cookie_name(state: &WebState) -> &'static str {
    if state.config.secure_cookies {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}
/// Session lifetime.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    /// Tenant the user acts for.
    pub tenant: String,
    /// Who: `token:<id>` or `user:<name>` or `oidc:<subject>`.
    pub subject: String,
    /// Admin rights (signed in with an admin token).
    pub admin: bool,
    /// The CSRF token forms must carry.
    pub csrf: String,
}

impl Session {
    /// The control-plane caller this session acts as.
    pub fn caller(&self) -> Caller {
        Caller {
            tenant: self.tenant.clone(),
            token_id: self.subject.clone(),
            role: if self.admin {
                platform_control::auth::Role::Admin
            } else {
                platform_control::auth::Role::Member
            },
        }
    }

    /// A short name for the header bar.
    pub fn display_name(&self) -> String {
        match self.subject.split_once(':') {
            Some(("user", n)) => n.to_string(),
            Some(("oidc", n)) => n.to_string(),
            _ => format!("token ({})", self.tenant),
        }
    }

    /// Checks the CSRF token of a state-changing request (form field or header).
    pub fn check_csrf(
        &self,
        headers: &HeaderMap,
        form_value: Option<&str>,
    ) -> Result<(), CsrfRejected> {
        let sent = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .or(form_value)
            .unwrap_or("");
        if constant_time_eq(sent.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(CsrfRejected)
        }
    }
}

/// A state-changing request without the session's CSRF token (HTTP 403).
#[derive(Debug, Clone, Copy)]
pub struct CsrfRejected;

impl IntoResponse for CsrfRejected {
    fn into_response(self) -> Response {
        (
            axum::http::StatusCode::FORBIDDEN,
            "This form has expired or did not come from this dashboard (CSRF check failed). Reload the page and try again.",
        )
            .into_response()
    }
}

/// Compares secrets without leaking where they differ through timing.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `bytes` random bytes, hex-encoded.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a session and returns the `Set-Cookie` header value for it.
pub async fn create(
    state: &WebState,
    tenant: &str,
    subject: &str,
    admin: bool,
) -> Result<HeaderValue, sqlx::Error> {
    let secret = random_hex(32);
    let now = now_ms();
    sqlx::query(
        "INSERT INTO sessions (id_hash, tenant, subject, admin, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(hash(&secret))
    .bind(tenant)
    .bind(subject)
    .bind(i64::from(admin))
    .bind(random_hex(16))
    .bind(now)
    .bind(now + LIFETIME.as_millis() as i64)
    .execute(state.ctl.store.pool())
    .await?;
    // Expired sessions are cleaned up as new ones are made.
    let _ = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
        .bind(now)
        .execute(state.ctl.store.pool())
        .await;
    Ok(cookie(state, &secret, LIFETIME.as_secs()))
}

fn cookie(state: &WebState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        cookie_name(state)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("platform_session=; Path=/"))
}

/// Ends the session of `headers` and returns the header that clears the cookie.
pub async fn destroy(state: &WebState, headers: &HeaderMap) -> HeaderValue {
    if let Some(secret) = cookie_value(state, headers) {
        let _ = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(hash(&secret))
            .execute(state.ctl.store.pool())
            .await;
    }
    cookie(state, "", 0)
}

fn cookie_value(state: &WebState, headers: &HeaderMap) -> Option<String> {
    cookie_named(headers, cookie_name(state)).map(str::to_string)
}

/// The non-empty value of the request cookie `name`.
pub(crate) fn cookie_named<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Looks up the session of a request. A session signed in with a token ends when the token
/// is revoked.
pub async fn lookup(state: &WebState, headers: &HeaderMap) -> Option<Session> {
    let secret = cookie_value(state, headers)?;
    let row = sqlx::query(
        "SELECT tenant, subject, admin, csrf FROM sessions WHERE id_hash = $1 AND expires_at > $2 \
         AND NOT (subject LIKE 'token:%' AND EXISTS (SELECT 1 FROM tokens \
         WHERE tokens.id = substr(sessions.subject, 7) AND tokens.revoked_at IS NOT NULL))",
    )
    .bind(hash(&secret))
    .bind(now_ms())
    .fetch_optional(state.ctl.store.pool())
    .await
    .ok()??;
    Some(Session {
        tenant: row.try_get("tenant").ok()?,
        subject: row.try_get("subject").ok()?,
        admin: row.try_get::<i64, _>("admin").ok()? != 0,
        csrf: row.try_get("csrf").ok()?,
    })
}

/// Without a session, pages redirect to the sign-in page (HTMX requests get told to).
impl FromRequestParts<WebState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(s) = lookup(state, &parts.headers).await {
            return Ok(s);
        }
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/apps");
        let target = format!(
            "/login?next={}",
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        );
        if parts.headers.contains_key("hx-request") {
            let mut resp = axum::http::StatusCode::UNAUTHORIZED.into_response();
            if let Ok(v) = HeaderValue::from_str(&target) {
                resp.headers_mut().insert("hx-redirect", v);
            }
            return Err(resp);
        }
        Err(Redirect::to(&target).into_response())
    }
}

/// A form posted by a signed-in user, carrying the session's CSRF token (form field `csrf`
/// or the `x-csrf-token` header HTMX sends). Handlers that change state take this instead
/// of checking the token themselves, so none can forget to.
pub struct CsrfForm {
    /// Who posted it.
    pub session: Session,
    /// The form's fields, in order.
    pub fields: Vec<(String, String)>,
}

impl FromRequest<WebState> for CsrfForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &WebState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let mut token_header = HeaderMap::new();
        if let Some(v) = parts.headers.get("x-csrf-token") {
            token_header.insert("x-csrf-token", v.clone());
        }
        let axum::Form(fields) = axum::Form::<Vec<(String, String)>>::from_request(
            Request::from_parts(parts, body),
            state,
        )
        .await
        .map_err(IntoResponse::into_response)?;
        session
            .check_csrf(&token_header, crate::pages::field(&fields, "csrf"))
            .map_err(IntoResponse::into_response)?;
        Ok(CsrfForm { session, fields })
    }
}
