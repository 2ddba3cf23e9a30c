//! Platform's dashboard: sign in, apps, uploads, releases, routes, live logs, traffic and
//! tokens, as server-rendered pages.
//!
//! Pages are askama templates; HTMX makes forms and live panels update in place (boosted
//! links and forms, polling fragments), Alpine.js holds small client state (the upload
//! progress bar, the log stream). Every page also works without JavaScript for reading.
//! Styles are Tailwind, compiled at build time; CSS, htmx and Alpine are embedded in the
//! binary ([`assets`]). The dashboard calls the control plane in-process, through the same
//! functions the Connect API uses, as the signed-in user's tenant.

pub mod assets;
pub mod charts;
pub mod log_api;
pub mod observe;
pub mod oidc;
pub mod pages;
pub mod session;
pub mod sign_in_limits;
pub mod status_api;
pub mod users;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use platform_control::Control;

pub use observe::{NoObservability, Observability};
pub use oidc::OidcConfig;

/// Dashboard settings.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Served over HTTPS: cookies are `Secure`, and the session cookie is
    /// `__Host-platform_session` (host-only, so no subdomain can set or read it).
    pub secure_cookies: bool,
    /// OpenID Connect single sign-on, when configured.
    pub oidc: Option<OidcConfig>,
    /// Sign-in attempts allowed per client and per user name.
    pub sign_in_limits: Arc<sign_in_limits::SignInLimits>,
    /// Header carrying the client's address, set by the proxy that is the dashboard's only
    /// entry (its last entry counts), e.g. `x-forwarded-for`; else the peer address.
    pub client_ip_header: Option<String>,
}

/// What every handler gets.
#[derive(Clone)]
pub struct WebState {
    /// The control plane.
    pub ctl: Arc<Control>,
    /// Logs and traffic of the runtime(s).
    pub obs: Arc<dyn Observability>,
    /// Settings.
    pub config: WebConfig,
}

/// The dashboard's routes, to merge into the admin listener.
pub fn router(state: WebState) -> Router {
    use pages::{apps, detail, login, logs, secrets, tokens, triggers};
    let sso = oidc::SsoHandle(
        state
            .config
            .oidc
            .clone()
            .map(|c| Arc::new(oidc::Sso::new(c))),
    );
    Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/apps") }))
        .route("/login", get(login::page).post(login::submit))
        .route(
            "/login/oidc",
            get(oidc::start).layer(axum::Extension(sso.clone())),
        )
        .route(
            "/login/oidc/callback",
            get(oidc::callback).layer(axum::Extension(sso)),
        )
        .route("/logout", post(login::logout))
        .route("/apps", get(apps::list).post(apps::create))
        .route("/apps/{app}", get(detail::page))
        .route(
            "/apps/{app}/delete",
            get(apps::confirm_delete).post(apps::delete),
        )
        .route(
            "/apps/{app}/upload",
            post(detail::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/apps/{app}/modules/{digest}", get(detail::module_status))
        .route("/apps/{app}/releases", post(detail::create_release))
        .route("/apps/{app}/rollback", post(detail::rollback))
        .route("/apps/{app}/routes", post(detail::add_route))
        .route("/apps/{app}/routes/{id}/delete", post(detail::delete_route))
        .route("/apps/{app}/traffic", get(detail::traffic))
        .route("/apps/{app}/secrets", post(secrets::set))
        .route("/apps/{app}/secrets/{name}/delete", post(secrets::delete))
        .route("/apps/{app}/split", post(secrets::split))
        .route("/apps/{app}/triggers", post(triggers::add))
        .route("/apps/{app}/triggers/remove", post(triggers::remove))
        .route("/logs", get(logs::page))
        .route("/logs/stream", get(logs::stream))
        .route("/platform.v1.LogService/TailLogs", post(log_api::tail_logs))
        .route(
            "/platform.v1.StatusService/GetStatus",
            post(status_api::get_status),
        )
        .route("/tokens", get(tokens::page).post(tokens::create))
        .route("/tokens/{id}/revoke", post(tokens::revoke))
        .route("/users", post(tokens::create_user))
        .route("/static/{file}", get(assets::serve))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers on every dashboard response: no page of the dashboard may be framed by another
/// site (clickjacking), nor sniffed into another content type.
async fn security_headers(mut resp: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}
