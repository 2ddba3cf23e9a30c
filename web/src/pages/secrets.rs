//! An app's secrets and traffic split on its page: secrets are set and removed, and shown
//! by name only (no call returns a value); the split sends a share of traffic to another
//! release.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use platform_control::api::{releases, secrets};
use platform_proto::v1::{DeleteSecretRequest, SetSecretRequest, SetTrafficSplitRequest};

use super::{error_response, field};
use crate::WebState;
use crate::session::CsrfForm;

/// A secret row: its name and when it changed.
pub struct SecretRow {
    /// Name.
    pub name: String,
    /// Last change, for people.
    pub updated: String,
}

/// `POST /apps/{app}/secrets`: sets a secret (name and value fields).
pub async fn set(
    State(state): State<WebState>,
    Path(app): Path<String>,
    CsrfForm {
        session,
        fields: form,
    }: CsrfForm,
) -> Response {
    let name = field(&form, "name").unwrap_or("").trim().to_string();
    let value = field(&form, "value").unwrap_or("").to_string();
    match secrets::set_secret(
        state.ctl.clone(),
        session.caller(),
        SetSecretRequest {
            app: app.clone(),
            name,
            value,
        },
    )
    .await
    {
        Ok(r) => {
            Redirect::to(&format!("/apps/{app}?msg=secret-{}", r.release_number)).into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// `POST /apps/{app}/secrets/{name}/delete`.
pub async fn delete(
    State(state): State<WebState>,
    Path((app, name)): Path<(String, String)>,
    CsrfForm { session, fields: _ }: CsrfForm,
) -> Response {
    match secrets::delete_secret(
        state.ctl.clone(),
        session.caller(),
        DeleteSecretRequest {
            app: app.clone(),
            name,
        },
    )
    .await
    {
        Ok(r) => {
            Redirect::to(&format!("/apps/{app}?msg=unsecret-{}", r.release_number)).into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// `POST /apps/{app}/split`: `release` and `weight` (percent; 0 ends the split).
pub async fn split(
    State(state): State<WebState>,
    Path(app): Path<String>,
    CsrfForm {
        session,
        fields: form,
    }: CsrfForm,
) -> Response {
    let release = field(&form, "release").unwrap_or("").trim().to_string();
    let weight = field(&form, "weight")
        .unwrap_or("0")
        .trim()
        .trim_end_matches('%')
        .parse::<u32>()
        .unwrap_or(u32::MAX);
    match releases::set_traffic_split(
        state.ctl.clone(),
        session.caller(),
        SetTrafficSplitRequest {
            app: app.clone(),
            release,
            weight,
        },
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/apps/{app}?msg=split")).into_response(),
        Err(e) => error_response(&e),
    }
}
