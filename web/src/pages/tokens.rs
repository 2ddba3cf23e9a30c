//! Tokens (create, shown once; list; revoke) and local dashboard users.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use platform_control::api::tokens as api;
use platform_proto::v1::{CreateTokenRequest, ListTokensRequest, RevokeTokenRequest};

use super::{Layout, error_response, field, render, shown_at, when};
use crate::WebState;
use crate::session::{CsrfForm, Session};

/// A token row.
pub struct TokenRow {
    id: String,
    name: String,
    prefix: String,
    admin: bool,
    created: String,
    last_used: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    layout: Layout,
    tenant: String,
    tokens: Vec<TokenRow>,
    users: Vec<String>,
    new_secret: Option<String>,
    token_error: Option<String>,
    user_error: Option<String>,
}

async fn tokens_page(
    state: &WebState,
    session: &Session,
    new_secret: Option<String>,
    token_error: Option<String>,
    user_error: Option<String>,
    flash: Option<String>,
) -> Response {
    let tokens =
        match api::list_tokens(state.ctl.clone(), session.caller(), ListTokensRequest {}).await {
            Ok(r) => r.tokens,
            Err(e) => return error_response(&e),
        };
    let users = crate::users::list(state, &session.tenant)
        .await
        .unwrap_or_default();
    let mut layout = Layout::new(session, "Tokens & users", "tokens");
    layout.flash = flash;
    render(&TokensPage {
        layout,
        tenant: session.tenant.clone(),
        tokens: tokens
            .into_iter()
            .map(|t| TokenRow {
                created: when(t.create_time.as_ref()),
                last_used: t
                    .last_use_time
                    .as_ref()
                    .map(|t| when(Some(t)))
                    .unwrap_or_else(|| "never".into()),
                revoked: t.revoke_time.is_some(),
                id: t.id,
                name: t.name,
                prefix: t.prefix,
                admin: t.admin,
            })
            .collect(),
        users,
        new_secret,
        token_error,
        user_error,
    })
}

/// `GET /tokens`.
pub async fn page(State(state): State<WebState>, session: Session) -> Response {
    tokens_page(&state, &session, None, None, None, None).await
}

/// `POST /tokens`: creates a token and shows its secret once.
pub async fn create(
    State(state): State<WebState>,
    CsrfForm {
        session,
        fields: form,
    }: CsrfForm,
) -> Response {
    let name = field(&form, "name").unwrap_or("").to_string();
    match api::create_token(
        state.ctl.clone(),
        session.caller(),
        CreateTokenRequest {
            name,
            tenant: String::new(),
            admin: false,
            role: 0,
        },
    )
    .await
    {
        Ok(r) => tokens_page(&state, &session, Some(r.secret), None, None, None).await,
        Err(e) => tokens_page(&state, &session, None, Some(e.message), None, None).await,
    }
}

/// `POST /tokens/{id}/revoke`.
pub async fn revoke(
    State(state): State<WebState>,
    Path(id): Path<String>,
    CsrfForm { session, fields: _ }: CsrfForm,
) -> Response {
    match api::revoke_token(
        state.ctl.clone(),
        session.caller(),
        RevokeTokenRequest { id },
    )
    .await
    {
        Ok(_) => Redirect::to("/tokens").into_response(),
        Err(e) => error_response(&e),
    }
}

/// `POST /users`: adds a local user to the tenant.
pub async fn create_user(
    State(state): State<WebState>,
    CsrfForm {
        session,
        fields: form,
    }: CsrfForm,
) -> Response {
    let user = field(&form, "username").unwrap_or("");
    let pass = field(&form, "password").unwrap_or("");
    let resp = match crate::users::create(&state, &session.tenant, user, pass).await {
        Ok(()) => {
            tokens_page(
                &state,
                &session,
                None,
                None,
                None,
                Some(if session.tenant == "default" {
                    format!("User {} can now sign in.", user.trim())
                } else {
                    format!(
                        "User {} can now sign in as {}.",
                        user.trim(),
                        crate::users::login_name(user.trim(), &session.tenant)
                    )
                }),
            )
            .await
        }
        Err(e) => tokens_page(&state, &session, None, None, Some(e.to_string()), None).await,
    };
    shown_at(resp, "/tokens")
}
