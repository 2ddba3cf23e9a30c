//! An app's page: upload, module compile state, releases (create, roll back, split),
//! routes, secrets (names only), traffic charts.

use std::collections::HashMap;

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use platform_control::api::{apps, modules, releases, routes, secrets};
use platform_control::error::ApiError;
use platform_proto::v1::*;

use super::{Layout, error_response, field, render, shown_at, when};
use crate::WebState;
use crate::session::{CsrfForm, Session};

/// A module in the release form's list.
pub struct ModuleOption {
    digest: String,
    short: String,
    name: String,
    abi: &'static str,
    state: &'static str,
}

/// The release form's values and error.
#[derive(Default)]
pub struct ReleaseForm {
    module: String,
    env: String,
    memory: String,
    timeout: String,
    max_body: String,
    outbound: String,
    /// `pooled`, `per-request`, or empty (the module's kind decides).
    isolation: String,
    error: Option<String>,
    field: &'static str,
}

/// The route form's values and error.
#[derive(Default)]
pub struct RouteForm {
    host: String,
    path: String,
    error: Option<String>,
    field: &'static str,
}

/// A route of the app.
pub struct RouteRow {
    id: String,
    url: String,
    label: String,
}

/// A release row.
pub struct ReleaseRow {
    number: u32,
    module: String,
    state: &'static str,
    error: String,
    live: bool,
    created: String,
}

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage {
    layout: Layout,
    app: App,
    live: u32,
    split: Option<String>,
    modules: Vec<ModuleOption>,
    form: ReleaseForm,
    route_form: RouteForm,
    routes: Vec<RouteRow>,
    releases: Vec<ReleaseRow>,
    secrets: Vec<super::secrets::SecretRow>,
    split_weight: u32,
    split_release: u32,
    traffic: String,
}

#[derive(Template)]
#[template(path = "traffic.html")]
struct TrafficFragment {
    available: bool,
    summary: String,
    charts: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "module.html")]
struct ModuleFragment {
    app: String,
    csrf: String,
    digest: String,
    name: String,
    abi: &'static str,
    size: String,
    state: &'static str,
    pending: bool,
    ready: bool,
    failed: bool,
    error: String,
}

#[derive(Template)]
#[template(path = "upload_error.html")]
struct UploadError {
    title: String,
    message: String,
}

/// Query of the app page (one-time messages after a redirect).
#[derive(Debug, Default, serde::Deserialize)]
pub struct PageQuery {
    /// What just happened.
    #[serde(default)]
    pub msg: Option<String>,
}

fn abi_name(abi: i32) -> &'static str {
    match Abi::try_from(abi).unwrap_or(Abi::Unspecified) {
        Abi::Wagi => "WAGI (CGI)",
        Abi::Sdk => "Platform SDK",
        Abi::Component => "component (wasi:http)",
        Abi::Unspecified => "unknown",
    }
}

fn state_name(s: i32) -> &'static str {
    match CompileState::try_from(s).unwrap_or(CompileState::Unspecified) {
        CompileState::Ready => "ready",
        CompileState::Failed => "failed",
        _ => "compiling",
    }
}

fn flash(msg: Option<&str>) -> Option<String> {
    let msg = msg?;
    let (what, n) = msg.split_once('-').unwrap_or((msg, ""));
    Some(match what {
        "released" => format!("Release #{n} is live."),
        "pending" => format!("Release #{n} will go live as soon as its module is compiled."),
        "rolledback" => format!("Release #{n} is live again."),
        "route" => "Route added.".into(),
        "unrouted" => "Route removed.".into(),
        "secret" if n != "0" => format!("Secret set; release #{n} is live with it."),
        "secret" => "Secret set; the next release gets it.".into(),
        "unsecret" if n != "0" => format!("Secret removed; release #{n} is live without it."),
        "unsecret" => "Secret removed.".into(),
        "split" => "Traffic split updated.".into(),
        "trigger" => "Trigger added.".into(),
        "untrigger" => "Trigger removed.".into(),
        _ => return None,
    })
}

/// Renders the app page (for handlers of other modules that show a result on it).
pub(crate) async fn app_page(
    state: &WebState,
    session: &Session,
    app_ref: &str,
    form: ReleaseForm,
    route_form: RouteForm,
    flash_msg: Option<String>,
) -> Response {
    let ctl = state.ctl.clone();
    let caller = session.caller();
    let app = match apps::get_app(
        ctl.clone(),
        caller.clone(),
        GetAppRequest {
            app: app_ref.to_string(),
        },
    )
    .await
    {
        Ok(r) => r.app.unwrap_or_default(),
        Err(e) => return error_response(&e),
    };
    let mods = modules::list_modules(ctl.clone(), caller.clone(), ListModulesRequest {})
        .await
        .map(|r| r.modules)
        .unwrap_or_default();
    let rels = releases::list_releases(
        ctl.clone(),
        caller.clone(),
        ListReleasesRequest {
            app: app.id.clone(),
        },
    )
    .await
    .map(|r| r.releases)
    .unwrap_or_default();
    let split = app.split.as_ref().and_then(|s| {
        let n = rels.iter().find(|r| r.id == s.release_id)?.number;
        Some(format!("{}% of traffic to #{n}", s.weight))
    });
    let secret_rows = secrets::list_secrets(
        ctl.clone(),
        caller.clone(),
        ListSecretsRequest {
            app: app.id.clone(),
        },
    )
    .await
    .map(|r| r.secrets)
    .unwrap_or_default()
    .into_iter()
    .map(|s| super::secrets::SecretRow {
        updated: when(s.update_time.as_ref()),
        name: s.name,
    })
    .collect();
    let mut form = form;
    if form.module.is_empty() {
        form.module = mods.first().map(|m| m.digest.clone()).unwrap_or_default();
    }
    let traffic = traffic_html(state, session, &app.name);
    let mut layout = Layout::new(session, app.name.clone(), "apps");
    layout.flash = flash_msg;
    render(&AppPage {
        layout,
        live: app.live_release_number,
        split,
        modules: mods
            .iter()
            .take(20)
            .map(|m| ModuleOption {
                digest: m.digest.clone(),
                short: m.digest[..12.min(m.digest.len())].to_string(),
                name: m.name.clone(),
                abi: abi_name(m.abi),
                state: state_name(m.compile_state),
            })
            .collect(),
        form,
        route_form,
        routes: app
            .routes
            .iter()
            .map(|r| RouteRow {
                id: r.id.clone(),
                url: r.url.clone(),
                label: format!("{}{}", r.host, r.path_prefix),
            })
            .collect(),
        releases: rels
            .iter()
            .map(|r| ReleaseRow {
                number: r.number,
                module: r.module_digest[..12.min(r.module_digest.len())].to_string(),
                state: match ReleaseState::try_from(r.state).unwrap_or(ReleaseState::Unspecified) {
                    ReleaseState::Ready => "ready",
                    ReleaseState::Failed => "failed",
                    _ => "waiting for compile",
                },
                error: r.error.clone(),
                live: r.live,
                created: when(r.create_time.as_ref()),
            })
            .collect(),
        secrets: secret_rows,
        split_weight: app.split.as_ref().map_or(0, |s| s.weight),
        split_release: app.split.as_ref().map_or(0, |s| s.release_number),
        traffic,
        app,
    })
}

/// `GET /apps/{app}`.
pub async fn page(
    State(state): State<WebState>,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    app_page(
        &state,
        &session,
        &app,
        ReleaseForm::default(),
        RouteForm::default(),
        flash(q.msg.as_deref()),
    )
    .await
}

/// `POST /apps/{app}/upload`: the raw `.wasm` body, streamed into the control plane's
/// upload pipeline; answers with the module status fragment or an error fragment.
pub async fn upload(
    State(state): State<WebState>,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = session.check_csrf(&headers, None) {
        return r.into_response();
    }
    if let Err(e) = apps::get_app(
        state.ctl.clone(),
        session.caller(),
        GetAppRequest { app: app.clone() },
    )
    .await
    {
        return upload_error("This app no longer exists.", &e);
    }
    let name = q.get("name").map(String::as_str);
    match modules::store_upload(&state.ctl, &session.caller(), name, &headers, body).await {
        Ok(m) => module_fragment(&app, &session, &m),
        Err(e) => upload_error("This file cannot be used:", &e),
    }
}

fn upload_error(title: &str, e: &ApiError) -> Response {
    let mut resp = render(&UploadError {
        title: title.to_string(),
        message: e.message.clone(),
    });
    // The fragment is shown either way; the status tells scripts and tests what happened.
    *resp.status_mut() = e.code.http_status();
    resp
}

fn module_fragment(app: &str, session: &Session, m: &Module) -> Response {
    let state = CompileState::try_from(m.compile_state).unwrap_or(CompileState::Unspecified);
    render(&ModuleFragment {
        app: app.to_string(),
        csrf: session.csrf.clone(),
        digest: m.digest.clone(),
        name: m.name.clone(),
        abi: abi_name(m.abi),
        size: bytesize::ByteSize(m.size).to_string(),
        state: state_name(m.compile_state),
        pending: matches!(state, CompileState::Pending | CompileState::Unspecified),
        ready: state == CompileState::Ready,
        failed: state == CompileState::Failed,
        error: m.compile_error.clone(),
    })
}

/// `GET /apps/{app}/modules/{digest}`: the module status fragment (polled while compiling).
pub async fn module_status(
    State(state): State<WebState>,
    session: Session,
    Path((app, digest)): Path<(String, String)>,
) -> Response {
    match modules::get_module(
        state.ctl.clone(),
        session.caller(),
        GetModuleRequest { digest },
    )
    .await
    {
        Ok(r) => module_fragment(&app, &session, &r.module.unwrap_or_default()),
        Err(e) => upload_error("The module is gone:", &e),
    }
}

fn parse_release_form(
    form: &[(String, String)],
) -> Result<(CreateReleaseRequest, ReleaseForm), Box<ReleaseForm>> {
    let mut f = ReleaseForm {
        module: field(form, "module").unwrap_or("").to_string(),
        env: field(form, "env").unwrap_or("").to_string(),
        memory: field(form, "memory").unwrap_or("").trim().to_string(),
        timeout: field(form, "timeout").unwrap_or("").trim().to_string(),
        max_body: field(form, "max_body").unwrap_or("").trim().to_string(),
        outbound: field(form, "outbound").unwrap_or("").trim().to_string(),
        isolation: match field(form, "isolation") {
            Some(v @ ("pooled" | "per-request")) => v.to_string(),
            _ => String::new(),
        },
        ..Default::default()
    };
    let mut env = HashMap::new();
    for (i, line) in f.env.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                env.insert(k.trim().to_string(), v.to_string());
            }
            _ => {
                f.error = Some(format!(
                    "Environment line {} is not KEY=value: {line:?}",
                    i + 1
                ));
                f.field = "env";
                return Err(Box::new(f));
            }
        }
    }
    let size = |v: &str, what: &'static str, f: &mut ReleaseForm| -> Result<u64, ()> {
        if v.is_empty() {
            return Ok(0);
        }
        match v
            .parse::<u64>()
            .ok()
            .or_else(|| v.parse::<bytesize::ByteSize>().ok().map(|b| b.as_u64()))
        {
            Some(n) => Ok(n),
            None => {
                f.error = Some(format!("{v:?} is not a size: write e.g. 128MiB or 10MB"));
                f.field = what;
                Err(())
            }
        }
    };
    let memory =
        size(&f.memory.clone(), "memory", &mut f).map_err(|()| Box::new(std::mem::take(&mut f)))?;
    let max_body = size(&f.max_body.clone(), "max_body", &mut f)
        .map_err(|()| Box::new(std::mem::take(&mut f)))?;
    let timeout_ms = if f.timeout.is_empty() {
        0
    } else {
        match humantime::parse_duration(&f.timeout) {
            Ok(d) => d.as_millis() as u64,
            Err(_) => {
                f.error = Some(format!(
                    "{:?} is not a duration: write e.g. 2s or 500ms",
                    f.timeout
                ));
                f.field = "timeout";
                return Err(Box::new(f));
            }
        }
    };
    let req = CreateReleaseRequest {
        app: String::new(),
        module_digest: f.module.clone(),
        env,
        limits: Some(Limits {
            memory_bytes: memory,
            timeout_ms,
            max_body_bytes: max_body,
            max_response_bytes: 0,
        }),
        isolation: match f.isolation.as_str() {
            "per-request" => Isolation::PerRequest as i32,
            "pooled" => Isolation::Pooled as i32,
            _ => Isolation::Unspecified as i32,
        },
        allowed_outbound_hosts: f
            .outbound
            .split([' ', ',', '\n'])
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_string())
            .collect(),
        activate: true,
        force: false,
    };
    Ok((req, f))
}

/// `POST /apps/{app}/releases`: creates a release that goes live once compiled.
pub async fn create_release(
    State(state): State<WebState>,
    Path(app): Path<String>,
    CsrfForm {
        session,
        fields: form,
    }: CsrfForm,
) -> Response {
    let (mut req, mut f) = match parse_release_form(&form) {
        Ok(v) => v,
        Err(f) => {
            let resp = app_page(&state, &session, &app, *f, RouteForm::default(), None).await;
            return shown_at(resp, &format!("/apps/{app}"));
        }
    };
    req.app = app.clone();
    match releases::create_release(state.ctl.clone(), session.caller(), req).await {
        Ok(r) => {
            let r = r.release.unwrap_or_default();
            let msg = if r.live {
                format!("released-{}", r.number)
            } else {
                format!("pending-{}", r.number)
            };
            Redirect::to(&format!("/apps/{app}?msg={msg}")).into_response()
        }
        Err(e) => {
            f.field = match e.field {
                Some("limits.memory_bytes") => "memory",
                Some("limits.timeout_ms") => "timeout",
                Some("allowed_outbound_hosts") => "outbound",
                Some("isolation") => "isolation",
                Some("env") => "env",
                _ => "",
            };
            f.error = Some(e.message);
            let resp = app_page(&state, &session, &app, f, RouteForm::default(), None).await;
            shown_at(resp, &format!("/apps/{app}"))
        }
    }
}

/// `POST /apps/{app}/rollback`: makes a release live again.
pub async fn rollback(
    State(state): State<WebState>,
    Path(app): Path<String>,
    CsrfForm {
        session,
        fields: form,
    }: CsrfForm,
) -> Response {
    let release = field(&form, "release").unwrap_or("").to_string();
    match releases::rollback_release(
        state.ctl.clone(),
        session.caller(),
        RollbackReleaseRequest {
            app: app.clone(),
            release,
        },
    )
    .await
    {
        Ok(r) => Redirect::to(&format!(
            "/apps/{app}?msg=rolledback-{}",
            r.release.map(|r| r.number).unwrap_or(0)
        ))
        .into_response(),
        Err(e) => error_response(&e),
    }
}

/// `POST /apps/{app}/routes`: adds a route; API validation errors appear by the inputs.
pub async fn add_route(
    State(state): State<WebState>,
    Path(app): Path<String>,
    CsrfForm {
        session,
        fields: form,
    }: CsrfForm,
) -> Response {
    let host = field(&form, "host").unwrap_or("").trim().to_string();
    let path = field(&form, "path").unwrap_or("").trim().to_string();
    match routes::create_route(
        state.ctl.clone(),
        session.caller(),
        CreateRouteRequest {
            app: app.clone(),
            host: host.clone(),
            path_prefix: path.clone(),
            validate_only: false,
        },
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/apps/{app}?msg=route")).into_response(),
        Err(e) => {
            let rf = RouteForm {
                host,
                path,
                field: e.field.unwrap_or("path_prefix"),
                error: Some(e.message),
            };
            let mut resp = app_page(&state, &session, &app, ReleaseForm::default(), rf, None).await;
            *resp.status_mut() = StatusCode::OK;
            shown_at(resp, &format!("/apps/{app}"))
        }
    }
}

/// `POST /apps/{app}/routes/{id}/delete`.
pub async fn delete_route(
    State(state): State<WebState>,
    Path((app, id)): Path<(String, String)>,
    CsrfForm { session, fields: _ }: CsrfForm,
) -> Response {
    match routes::delete_route(
        state.ctl.clone(),
        session.caller(),
        DeleteRouteRequest { id },
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/apps/{app}?msg=unrouted")).into_response(),
        Err(e) => error_response(&e),
    }
}

fn traffic_html(state: &WebState, session: &Session, app: &str) -> String {
    let available = state.obs.available();
    let points = state.obs.traffic(&session.tenant, app);
    let s = state.obs.summary(&session.tenant, app);
    let summary = if s.requests == 0 {
        "No requests in the last hour.".to_string()
    } else {
        format!(
            "{} requests in the last hour, {} errors ({:.1}%), {} cold starts; last request {}.",
            s.requests,
            s.errors,
            s.error_rate() * 100.0,
            s.cold,
            super::ago(s.last_request_ms)
        )
    };
    TrafficFragment {
        available,
        summary,
        charts: crate::charts::traffic_charts(&points),
    }
    .render()
    .unwrap_or_default()
}

/// `GET /apps/{app}/traffic`: the charts fragment (refreshed every few seconds).
pub async fn traffic(
    State(state): State<WebState>,
    session: Session,
    Path(app): Path<String>,
) -> Response {
    if let Err(e) = apps::get_app(
        state.ctl.clone(),
        session.caller(),
        GetAppRequest { app: app.clone() },
    )
    .await
    {
        return error_response(&e);
    }
    axum::response::Html(traffic_html(&state, &session, &app)).into_response()
}
