//! Sign in with an API token or a local user; sign out.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::{Layout, field, render};
use crate::WebState;
use crate::session;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    error: Option<String>,
    user_error: bool,
}

/// Query of the sign-in page.
#[derive(Debug, serde::Deserialize)]
pub struct NextQuery {
    /// Where to go after signing in.
    #[serde(default)]
    pub next: Option<String>,
}

fn safe_next(next: Option<&str>) -> String {
    // Only local paths: never redirect off-site after sign-in.
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/apps".into(),
    }
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
    render(&LoginPage {
        layout: Layout {
            title: "Sign in".into(),
            ..Default::default()
        },
        next: safe_next(q.next.as_deref()),
        error: None,
        user_error: false,
    })
}

/// `POST /login`: a token, or a user name and password.
pub async fn submit(
    State(state): State<WebState>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let next = safe_next(field(&form, "next"));
    let fail = |msg: &str, user: bool| {
        let mut resp = render(&LoginPage {
            layout: Layout {
                title: "Sign in".into(),
                ..Default::default()
            },
            next: next.clone(),
            error: Some(msg.to_string()),
            user_error: user,
        });
        *resp.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
        resp
    };
    let (tenant, subject, admin) = if let Some(token) = field(&form, "token")
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        match platform_control::auth::caller_for_secret(&state.ctl.store, token).await {
            Ok(c) => (c.tenant, format!("token:{}", c.token_id), c.admin),
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
