//! Live logs: recent lines server-rendered (readable without JavaScript), then a
//! Server-Sent Events stream of new ones; filtered by app and status, scoped to the tenant.

use std::convert::Infallible;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use platform_proto::v1::ListAppsRequest;
use platform_runtime::logs::{LogEvent, LogStream};

use super::{Layout, render};
use crate::WebState;
use crate::session::Session;

/// Filters of the log view.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct LogQuery {
    /// One app, or all.
    #[serde(default)]
    pub app: String,
    /// `2xx`, `4xx`, `5xx`, `errors` (4xx and 5xx) or empty.
    #[serde(default)]
    pub status: String,
}

impl LogQuery {
    fn matches(&self, tenant: &str, e: &LogEvent) -> bool {
        if e.tenant != tenant || (!self.app.is_empty() && e.app != self.app) {
            return false;
        }
        let class = status_class(e);
        match self.status.as_str() {
            "" => true,
            "errors" => matches!(class, "4xx" | "5xx"),
            s => class == s,
        }
    }
}

fn status_class(e: &LogEvent) -> &'static str {
    match e.status {
        Some(s) if s >= 500 => "5xx",
        Some(s) if s >= 400 => "4xx",
        Some(s) if s >= 300 => "3xx",
        Some(_) => "2xx",
        None => "output",
    }
}

#[derive(Template)]
#[template(path = "log_line.html")]
struct LogLine<'a> {
    time: String,
    app: &'a str,
    stream: &'static str,
    stream_color: &'static str,
    text_color: &'static str,
    request_id: &'a str,
    request_id_short: &'a str,
    text: &'a str,
    status_class: &'static str,
}

/// One log event as an HTML list item (escaped by the template).
pub fn line_html(e: &LogEvent) -> String {
    let secs = (e.ts_ms / 1000) as i64;
    let ms = e.ts_ms % 1000;
    let t = format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    );
    let (stream, stream_color) = match e.stream {
        LogStream::Request => ("request", "text-emerald-300"),
        LogStream::Stdout => ("stdout", "text-sky-300"),
        LogStream::Stderr => ("stderr", "text-amber-300"),
    };
    let class = status_class(e);
    let text_color = match class {
        "5xx" => "text-red-300",
        "4xx" => "text-amber-200",
        _ => "text-gray-100",
    };
    LogLine {
        time: t,
        app: &e.app,
        stream,
        stream_color,
        text_color,
        request_id: &e.request_id,
        request_id_short: &e.request_id[..e.request_id.len().min(12)],
        text: &e.line,
        status_class: class,
    }
    .render()
    .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    layout: Layout,
    lines: Vec<String>,
    app_names: Vec<String>,
    filter_app: String,
    filter_status: String,
    statuses: Vec<(&'static str, &'static str)>,
    stream_query: String,
    available: bool,
}

/// `GET /logs`.
pub async fn page(
    State(state): State<WebState>,
    session: Session,
    Query(q): Query<LogQuery>,
) -> Response {
    let apps = platform_control::api::apps::list_apps(
        state.ctl.clone(),
        session.caller(),
        ListAppsRequest {},
    )
    .await
    .map(|r| r.apps.into_iter().map(|a| a.name).collect())
    .unwrap_or_default();
    let mut lines: Vec<String> = state
        .obs
        .recent_logs(
            &session.tenant,
            Some(q.app.as_str()).filter(|a| !a.is_empty()),
        )
        .iter()
        .filter(|e| q.matches(&session.tenant, e))
        .map(|e| line_html(e))
        .collect();
    lines.reverse();
    lines.truncate(300);
    let stream_query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("app", &q.app)
        .append_pair("status", &q.status)
        .finish();
    render(&LogsPage {
        layout: Layout::new(&session, "Live logs", "logs"),
        lines,
        app_names: apps,
        filter_app: q.app,
        filter_status: q.status,
        statuses: vec![
            ("", "all"),
            ("2xx", "2xx"),
            ("4xx", "4xx"),
            ("5xx", "5xx"),
            ("errors", "4xx and 5xx"),
        ],
        stream_query,
        available: state.obs.available(),
    })
}

/// `GET /logs/stream`: new lines as SSE events (each event's data is one `<li>`).
pub async fn stream(
    State(state): State<WebState>,
    session: Session,
    Query(q): Query<LogQuery>,
) -> Response {
    let Some(rx) = state.obs.subscribe_logs() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no runtime in this process",
        )
            .into_response();
    };
    let tenant = Arc::new(session.tenant.clone());
    let events = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((e, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    })
    .filter(move |e| {
        let keep = q.matches(&tenant, e);
        async move { keep }
    })
    .map(|e| Ok::<_, Infallible>(Event::default().data(line_html(&e))));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
