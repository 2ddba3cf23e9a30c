//! The API: one module per Connect service, plus the module upload and download endpoints.

pub mod apps;
pub mod domains;
pub mod feed;
pub mod modules;
pub mod releases;
pub mod routes;
pub mod secrets;
pub mod tokens;
pub mod triggers;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use sqlx::Row;

use crate::Control;
use crate::auth::Caller;
use crate::connect::{unary, unary_runtime};
use crate::error::ApiError;

/// Every API route of the control plane, ready to merge into the admin listener.
pub fn router(ctl: Arc<Control>) -> Router {
    let body_limit = usize::try_from(ctl.config.max_module_size).unwrap_or(usize::MAX);
    Router::new()
        .route("/platform.v1.AppService/CreateApp", unary(apps::create_app))
        .route("/platform.v1.AppService/ListApps", unary(apps::list_apps))
        .route("/platform.v1.AppService/GetApp", unary(apps::get_app))
        .route("/platform.v1.AppService/DeleteApp", unary(apps::delete_app))
        .route(
            "/platform.v1.AppService/SetAppTriggers",
            unary(triggers::set_app_triggers),
        )
        .route(
            "/platform.v1.AppService/SetAppDedicated",
            unary(triggers::set_app_dedicated),
        )
        .route(
            "/platform.v1.ModuleService/ListModules",
            unary(modules::list_modules),
        )
        .route(
            "/platform.v1.ModuleService/GetModule",
            unary(modules::get_module),
        )
        .route(
            "/platform.v1.ReleaseService/CreateRelease",
            unary(releases::create_release),
        )
        .route(
            "/platform.v1.ReleaseService/ListReleases",
            unary(releases::list_releases),
        )
        .route(
            "/platform.v1.ReleaseService/GetRelease",
            unary(releases::get_release),
        )
        .route(
            "/platform.v1.ReleaseService/RollbackRelease",
            unary(releases::rollback_release),
        )
        .route(
            "/platform.v1.ReleaseService/SetTrafficSplit",
            unary(releases::set_traffic_split),
        )
        .route(
            "/platform.v1.RouteService/CreateRoute",
            unary(routes::create_route),
        )
        .route(
            "/platform.v1.RouteService/ListRoutes",
            unary(routes::list_routes),
        )
        .route(
            "/platform.v1.RouteService/DeleteRoute",
            unary(routes::delete_route),
        )
        .route(
            "/platform.v1.DomainService/CreateDomain",
            unary(domains::create_domain),
        )
        .route(
            "/platform.v1.DomainService/ListDomains",
            unary(domains::list_domains),
        )
        .route(
            "/platform.v1.DomainService/DeleteDomain",
            unary(domains::delete_domain),
        )
        .route(
            "/platform.v1.SecretService/SetSecret",
            unary(secrets::set_secret),
        )
        .route(
            "/platform.v1.SecretService/ListSecrets",
            unary(secrets::list_secrets),
        )
        .route(
            "/platform.v1.SecretService/DeleteSecret",
            unary(secrets::delete_secret),
        )
        .route(
            "/platform.v1.TokenService/CreateToken",
            unary(tokens::create_token),
        )
        .route(
            "/platform.v1.TokenService/ListTokens",
            unary(tokens::list_tokens),
        )
        .route(
            "/platform.v1.TokenService/RevokeToken",
            unary(tokens::revoke_token),
        )
        .route(
            "/platform.v1.FeedService/GetSnapshot",
            unary_runtime(feed::get_snapshot),
        )
        .route("/platform.v1.FeedService/GetInfo", unary(feed::get_info))
        .route(
            "/v1/modules",
            post(modules::upload).layer(axum::extract::DefaultBodyLimit::max(body_limit)),
        )
        .route("/v1/modules/{digest}/wasm", get(modules::download_module))
        .route(
            "/v1/artifacts/{digest}/{engine}",
            get(modules::download_artifact),
        )
        .with_state(ctl)
}

/// An app row, as the API resolves it.
#[derive(Debug, Clone)]
pub struct AppRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub tenant: String,
    /// Live release id.
    pub live_release_id: Option<String>,
    /// Split release id.
    pub split_release_id: Option<String>,
    /// Split weight.
    pub split_weight: u32,
    /// Creation time (ms).
    pub created_at: i64,
    /// Runs in a Knative Service of its own.
    pub dedicated: bool,
    /// What was last observed of that Service.
    pub dedicated_status: Option<platform_proto::v1::DedicatedStatus>,
}

/// Finds the caller's app by id or name; other tenants' apps are "not found".
pub async fn resolve_app(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    app: &str,
) -> Result<AppRow, ApiError> {
    if app.is_empty() {
        return Err(ApiError::invalid("app", "name the app (its name or id)"));
    }
    let row = sqlx::query(
        "SELECT id, name, tenant, live_release_id, split_release_id, split_weight, created_at, dedicated, dedicated_ready, dedicated_url, dedicated_message, dedicated_updated_at FROM apps WHERE tenant = $1 AND (name = $2 OR id = $3)",
    )
    .bind(&caller.tenant)
    .bind(app)
    .bind(app)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("no app {app:?}")).on("app"));
    };
    Ok(AppRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        tenant: row.try_get("tenant")?,
        live_release_id: row.try_get("live_release_id")?,
        split_release_id: row.try_get("split_release_id")?,
        split_weight: row.try_get::<i64, _>("split_weight")?.clamp(0, 100) as u32,
        created_at: row.try_get("created_at")?,
        dedicated: row.try_get::<i64, _>("dedicated")? != 0,
        dedicated_status: match row.try_get::<Option<i64>, _>("dedicated_updated_at")? {
            Some(at) if row.try_get::<i64, _>("dedicated")? != 0 => {
                Some(platform_proto::v1::DedicatedStatus {
                    ready: row.try_get::<i64, _>("dedicated_ready")? != 0,
                    url: row
                        .try_get::<Option<String>, _>("dedicated_url")?
                        .unwrap_or_default(),
                    message: row
                        .try_get::<Option<String>, _>("dedicated_message")?
                        .unwrap_or_default(),
                    update_time: Some(crate::store::timestamp(at)),
                })
            }
            _ => None,
        },
    })
}

/// The public URL of a route.
pub fn route_url(public_url: &str, host: &str, prefix: &str) -> String {
    if host.is_empty() {
        format!("{}{}", public_url.trim_end_matches('/'), prefix)
    } else {
        let scheme = if public_url.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let port = public_url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|auth| auth.rsplit_once(':').map(|(_, p)| p))
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!("{scheme}://{host}{port}{prefix}")
    }
}
