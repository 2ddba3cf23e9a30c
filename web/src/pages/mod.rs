//! Page handlers, one module per page.

pub mod apps;
pub mod detail;
pub mod login;
pub mod logs;
pub mod secrets;
pub mod tokens;
pub mod triggers;

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use platform_control::error::ApiError;

use crate::session::Session;

/// What the base layout needs.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Page title.
    pub title: String,
    /// Signed-in user's display name.
    pub user: Option<String>,
    /// CSRF token for forms and HTMX.
    pub csrf: String,
    /// Active navigation entry.
    pub nav: &'static str,
    /// A one-time message ("Release #3 is live").
    pub flash: Option<String>,
}

impl Layout {
    /// The layout for a signed-in page.
    pub fn new(session: &Session, title: impl Into<String>, nav: &'static str) -> Self {
        Layout {
            title: title.into(),
            user: Some(session.display_name()),
            csrf: session.csrf.clone(),
            nav,
            flash: None,
        }
    }
}

/// Renders a template into a response (a render failure is a 500 with a log line).
pub fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; see the server log",
            )
                .into_response()
        }
    }
}

/// Marks a page rendered in answer to a form post (a form's errors, shown in place) as the
/// page at `path`. HTMX boosts the forms and would otherwise show the form's POST-only action
/// in the address bar, so reloading the page would answer 405.
pub fn shown_at(mut resp: Response, path: &str) -> Response {
    if let Ok(v) = axum::http::HeaderValue::from_str(path) {
        resp.headers_mut().insert("hx-push-url", v);
    }
    resp
}

/// An API error as a page, for failures not tied to a form field.
pub fn error_response(e: &ApiError) -> Response {
    let status = e.code.http_status();
    (status, Html(format!(
        "<!doctype html><meta charset=utf-8><link rel=stylesheet href=/static/app.css><main class=\"mx-auto max-w-xl p-8\"><h1 class=\"text-xl font-semibold\">{}</h1><p class=\"mt-2\">{}</p><p class=\"mt-4\"><a class=\"text-indigo-700 underline\" href=\"/apps\">Back to apps</a></p></main>",
        status.canonical_reason().unwrap_or("Error"),
        crate::charts::escape(&e.message)
    )))
        .into_response()
}

/// "3 s ago", "5 min ago", "never".
pub fn ago(ms: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    let now = platform_control::store::now_ms().max(0) as u64;
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// A timestamp as "2026-11-26 12:03".
pub fn when(ts: Option<&pbjson_like::Timestamp>) -> String {
    match ts {
        Some(t) => {
            let secs = t.seconds.max(0) as u64;
            let s = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            )
            .to_string();
            s.replace('T', " ")
                .trim_end_matches('Z')
                .chars()
                .take(16)
                .collect()
        }
        None => "".into(),
    }
}

/// Re-export so pages need not name the crate.
pub mod pbjson_like {
    pub use platform_proto::Timestamp;
}

/// A form value from `application/x-www-form-urlencoded` fields.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
