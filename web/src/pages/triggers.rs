//! An app's triggers on its page: CloudEvent types and NATS subjects that invoke it, added
//! and removed one at a time (the API replaces the whole set, so each form reads the app's
//! current triggers, changes one, and sets them; the API checks ownership and syntax).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use platform_control::api::{apps, triggers};
use platform_control::error::ApiError;
use platform_proto::v1::{EventTrigger, GetAppRequest, SetAppTriggersRequest, SubjectTrigger};

use super::detail::{ReleaseForm, RouteForm, app_page};
use super::{field, shown_at};
use crate::WebState;
use crate::session::{CsrfForm, Session};

/// The app page again, saying why the change was refused (a boosted form shows what comes
/// back with 200; an error status would leave the page as it was).
async fn refused(state: &WebState, session: &Session, app: &str, e: &ApiError) -> Response {
    let why = Some(format!("Trigger not changed: {}", e.message));
    let mut resp = app_page(
        state,
        session,
        app,
        ReleaseForm::default(),
        RouteForm::default(),
        why,
    )
    .await;
    *resp.status_mut() = axum::http::StatusCode::OK;
    shown_at(resp, &format!("/apps/{app}"))
}

/// Reads the app's triggers, lets `change` edit them, and sets the result.
async fn update(
    state: &WebState,
    caller: platform_control::auth::Caller,
    app: &str,
    change: impl FnOnce(&mut Vec<EventTrigger>, &mut Vec<SubjectTrigger>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let current = apps::get_app(
        state.ctl.clone(),
        caller.clone(),
        GetAppRequest { app: app.into() },
    )
    .await?
    .app
    .ok_or_else(|| ApiError::not_found(format!("app {app:?} not found")))?;
    let (mut events, mut subjects) = (current.event_triggers, current.subject_triggers);
    change(&mut events, &mut subjects)?;
    triggers::set_app_triggers(
        state.ctl.clone(),
        caller,
        SetAppTriggersRequest {
            app: current.id,
            event_triggers: events,
            subject_triggers: subjects,
        },
    )
    .await?;
    Ok(())
}

/// `POST /apps/{app}/triggers`: adds one (`kind` event or subject, `value`, `path`).
pub async fn add(
    State(state): State<WebState>,
    Path(app): Path<String>,
    CsrfForm {
        session,
        fields: form,
    }: CsrfForm,
) -> Response {
    let kind = field(&form, "kind").unwrap_or("event").to_string();
    let value = field(&form, "value").unwrap_or("").trim().to_string();
    let path = field(&form, "path").unwrap_or("").trim().to_string();
    let done = update(&state, session.caller(), &app, |events, subjects| {
        match kind.as_str() {
            "event" => events.push(EventTrigger {
                event_type: value,
                path,
            }),
            "subject" => subjects.push(SubjectTrigger {
                subject: value,
                path,
            }),
            other => {
                return Err(ApiError::invalid(
                    "kind",
                    format!("unknown trigger kind {other:?}: event or subject"),
                ));
            }
        }
        Ok(())
    })
    .await;
    match done {
        Ok(()) => Redirect::to(&format!("/apps/{app}?msg=trigger")).into_response(),
        Err(e) => refused(&state, &session, &app, &e).await,
    }
}

/// `POST /apps/{app}/triggers/remove`: removes one (`kind` and `value`).
pub async fn remove(
    State(state): State<WebState>,
    Path(app): Path<String>,
    CsrfForm {
        session,
        fields: form,
    }: CsrfForm,
) -> Response {
    let kind = field(&form, "kind").unwrap_or("").to_string();
    let value = field(&form, "value").unwrap_or("").to_string();
    let done = update(&state, session.caller(), &app, |events, subjects| {
        match kind.as_str() {
            "event" => events.retain(|t| t.event_type != value),
            "subject" => subjects.retain(|t| t.subject != value),
            other => {
                return Err(ApiError::invalid(
                    "kind",
                    format!("unknown trigger kind {other:?}: event or subject"),
                ));
            }
        }
        Ok(())
    })
    .await;
    match done {
        Ok(()) => Redirect::to(&format!("/apps/{app}?msg=untrigger")).into_response(),
        Err(e) => refused(&state, &session, &app, &e).await,
    }
}
