//! The apps list: status of every app, create, delete with confirmation.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use platform_control::api::apps as api;
use platform_proto::v1::{
    CreateAppRequest, DeleteAppRequest, GetAppRequest, ListAppsRequest, ListReleasesRequest,
};

use super::{Layout, ago, error_response, field, render};
use crate::WebState;
use crate::session::{CsrfForm, Session};

/// One row of the list.
pub struct AppRow {
    name: String,
    live: u32,
    routes: Vec<(String, String)>,
    last_request: String,
    error_rate: String,
    error_rate_high: bool,
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    layout: Layout,
    apps: Vec<AppRow>,
    new_name: String,
    create_error: Option<String>,
}

async fn apps_page(
    state: &WebState,
    session: &Session,
    new_name: String,
    create_error: Option<String>,
) -> Response {
    let apps = match api::list_apps(state.ctl.clone(), session.caller(), ListAppsRequest {}).await {
        Ok(r) => r.apps,
        Err(e) => return error_response(&e),
    };
    let rows = apps
        .into_iter()
        .map(|a| {
            let s = state.obs.summary(&session.tenant, &a.name);
            let rate = s.error_rate();
            AppRow {
                routes: a
                    .routes
                    .iter()
                    .map(|r| (format!("{}{}", r.host, r.path_prefix), r.url.clone()))
                    .collect(),
                live: a.live_release_number,
                last_request: if state.obs.available() {
                    ago(s.last_request_ms)
                } else {
                    "—".into()
                },
                error_rate: if s.requests == 0 {
                    "—".into()
                } else {
                    format!("{:.1}% of {}", rate * 100.0, s.requests)
                },
                error_rate_high: rate > 0.05,
                name: a.name,
            }
        })
        .collect();
    render(&AppsPage {
        layout: Layout::new(session, "Apps", "apps"),
        apps: rows,
        new_name,
        create_error,
    })
}

/// `GET /apps`.
pub async fn list(State(state): State<WebState>, session: Session) -> Response {
    apps_page(&state, &session, String::new(), None).await
}

/// `POST /apps`: create.
pub async fn create(
    State(state): State<WebState>,
    CsrfForm {
        session,
        fields: form,
    }: CsrfForm,
) -> Response {
    let name = field(&form, "name").unwrap_or("").trim().to_string();
    match api::create_app(
        state.ctl.clone(),
        session.caller(),
        CreateAppRequest { name: name.clone() },
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/apps/{name}")).into_response(),
        Err(e) => apps_page(&state, &session, name, Some(e.message)).await,
    }
}

#[derive(Template)]
#[template(path = "confirm_delete.html")]
struct ConfirmDelete {
    layout: Layout,
    app: String,
    releases: usize,
    error: Option<String>,
}

/// `GET /apps/{app}/delete`: the confirmation page.
pub async fn confirm_delete(
    State(state): State<WebState>,
    session: Session,
    Path(app): Path<String>,
) -> Response {
    confirm_page(&state, &session, &app, None).await
}

async fn confirm_page(
    state: &WebState,
    session: &Session,
    app: &str,
    error: Option<String>,
) -> Response {
    if let Err(e) = api::get_app(
        state.ctl.clone(),
        session.caller(),
        GetAppRequest {
            app: app.to_string(),
        },
    )
    .await
    {
        return error_response(&e);
    }
    let releases = platform_control::api::releases::list_releases(
        state.ctl.clone(),
        session.caller(),
        ListReleasesRequest {
            app: app.to_string(),
        },
    )
    .await
    .map(|r| r.releases.len())
    .unwrap_or(0);
    render(&ConfirmDelete {
        layout: Layout::new(session, format!("Delete {app}"), "apps"),
        app: app.to_string(),
        releases,
        error,
    })
}

/// `POST /apps/{app}/delete`: deletes after the name was typed.
pub async fn delete(
    State(state): State<WebState>,
    Path(app): Path<String>,
    CsrfForm {
        session,
        fields: form,
    }: CsrfForm,
) -> Response {
    if field(&form, "confirm").map(str::trim) != Some(app.as_str()) {
        return confirm_page(
            &state,
            &session,
            &app,
            Some(format!("Type {app} exactly to confirm.")),
        )
        .await;
    }
    match api::delete_app(
        state.ctl.clone(),
        session.caller(),
        DeleteAppRequest { app },
    )
    .await
    {
        Ok(_) => Redirect::to("/apps").into_response(),
        Err(e) => error_response(&e),
    }
}
