//! Sign in with an API token or a local user (or single sign-on, in [`crate::oidc`]); sign
//! out.

use askama::Template;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};

use super::{Layout, field, render};
use crate::WebState;
use crate::session;
use crate::sign_in_limits::client_key;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    error: Option<String>,
    user_error: bool,
    /// The "Sign in with SSO" link, when single sign-on is configured.
    sso_href: Option<String>,
}

/// Query of the sign-in page.
#[derive(Debug, serde::Deserialize)]
pub struct NextQuery {
    /// Where to go after signing in.
    #[serde(default)]
    pub next: Option<String>,
}

/// `next` if it is a local path, else `/apps`.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    // Only local paths: never redirect off-site after sign-in. Browsers drop tabs and
    // newlines from a Location, so "/\t/evil.example" would become "//evil.example".
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/apps".into(),
    }
}

/// The sign-in form's CSRF cookie (double submit): there is no session yet to hold a
/// token, so the form carries a random value that must match this `SameSite=Strict`
/// cookie. A form posted from another site arrives without it ("login CSRF").
const LOGIN_COOKIE: &str = "platform_login";

/// Renders the sign-in page with a fresh form token (and its cookie).
pub(crate) fn login_page(
    state: &WebState,
    next: String,
    error: Option<String>,
    user_error: bool,
    status: StatusCode,
) -> Response {
    let token = session::random_hex(16);
    let mut resp = render(&LoginPage {
        layout: Layout {
            title: "Sign in".into(),
            csrf: token.clone(),
            ..Default::default()
        },
        sso_href: state.config.oidc.as_ref().map(|_| {
            format!(
                "/login/oidc?next={}",
                url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            )
        }),
        next,
        error,
        user_error,
    });
    *resp.status_mut() = status;
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}"
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /login`.
pub async fn page(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    if session::lookup(&state, &headers).await.is_some() {
        return Redirect::to(&safe_next(q.next.as_deref())).into_response();
    }
    login_page(
        &state,
        safe_next(q.next.as_deref()),
        None,
        false,
        StatusCode::OK,
    )
}

/// `POST /login`: a token, or a user name and password. Attempts are rate-limited per
/// client and per user name ([`crate::sign_in_limits`]).
pub async fn submit(
    State(state): State<WebState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let next = safe_next(field(&form, "next"));
    let client = client_key(
        &headers,
        state.config.client_ip_header.as_deref(),
        peer.map(|Extension(ConnectInfo(a))| a),
    );
    if !state
        .config
        .sign_in_limits
        .allow(&client, field(&form, "username"))
    {
        let mut resp = login_page(
            &state,
            next,
            Some("Too many sign-in attempts. Wait a minute, then try again.".into()),
            field(&form, "username").is_some(),
            StatusCode::TOO_MANY_REQUESTS,
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return resp;
    }
    let fail = |msg: &str, user: bool| {
        login_page(
            &state,
            next.clone(),
            Some(msg.to_string()),
            user,
            StatusCode::UNAUTHORIZED,
        )
    };
    let form_token = field(&form, "csrf").unwrap_or("");
    if session::cookie_named(&headers, LOGIN_COOKIE).is_none_or(|c| c != form_token) {
        return login_page(
            &state,
            next.clone(),
            Some("This sign-in form has expired or did not come from this dashboard. Please sign in again.".into()),
            field(&form, "username").is_some(),
            StatusCode::FORBIDDEN,
        );
    }
    let (tenant, subject, admin) = if let Some(token) = field(&form, "token")
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        match platform_control::auth::caller_for_secret(&state.ctl.store, token).await {
            Ok(c) if c.role == platform_control::auth::Role::Runtime => {
                return fail(
                    "That is a runtime token: it only reads the serving feed. Sign in with a user or member token.",
                    false,
                );
            }
            Ok(c) => {
                let admin = c.is_admin();
                (c.tenant, format!("token:{}", c.token_id), admin)
            }
            Err(_) => {
                return fail(
                    "That token is not valid: it is unknown or was revoked. Check for a missing character.",
                    false,
                );
            }
        }
    } else if let (Some(user), Some(pass)) = (field(&form, "username"), field(&form, "password")) {
        match crate::users::verify(&state, user, pass).await {
            Ok(Some(tenant)) => (tenant, format!("user:{}", user.trim()), false),
            Ok(None) => return fail("Wrong user name or password.", true),
            Err(e) => {
                tracing::error!(error = %e, "sign-in lookup failed");
                return fail("Signing in failed on the server; see its log.", true);
            }
        }
    } else {
        return fail(
            "Paste an API token, or give a user name and password.",
            false,
        );
    };
    match session::create(&state, &tenant, &subject, admin).await {
        Ok(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot create session");
            fail("Signing in failed on the server; see its log.", false)
        }
    }
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(s) = session::lookup(&state, &headers).await
        && let Err(resp) = s.check_csrf(&headers, field(&form, "csrf"))
    {
        return resp.into_response();
    }
    let cookie = session::destroy(&state, &headers).await;
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
