//! `RouteService`: host + path prefix → app. Routes are unique platform-wide.

use std::sync::Arc;

use platform_proto::v1::{
    CreateRouteRequest, CreateRouteResponse, DeleteRouteRequest, DeleteRouteResponse,
    ListRoutesRequest, ListRoutesResponse, Route,
};
use platform_runtime::RouteSpec;
use sqlx::Row;

use super::{resolve_app, route_url};
use crate::Control;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::feed::commit_app_change;
use crate::host_ownership::check_route;
use crate::store::{is_unique_violation, new_id, now_ms, timestamp};

/// Parses and normalises a route from its host and path parts.
pub fn parse_route(host: &str, path_prefix: &str) -> Result<RouteSpec, ApiError> {
    let host = host.trim();
    let path = path_prefix.trim();
    if path.is_empty() {
        return Err(ApiError::invalid(
            "path_prefix",
            "the route's path is empty: give an absolute path such as /hello",
        ));
    }
    if !path.starts_with('/') {
        return Err(ApiError::invalid(
            "path_prefix",
            format!("route path {path:?} is relative: it must start with '/'"),
        ));
    }
    if host.contains('/') || host.contains(' ') {
        return Err(ApiError::invalid("host", format!("invalid host {host:?}")));
    }
    if path.trim_start_matches('/').starts_with(".platform") {
        return Err(ApiError::invalid(
            "path_prefix",
            "paths under /.platform are the platform's own (CloudEvents arrive at /.platform/events)",
        ));
    }
    RouteSpec::parse(&format!("{host}{path}")).map_err(|e| {
        let field = if matches!(
            e,
            platform_runtime::route_table::RouteError::InvalidHost(..)
        ) {
            "host"
        } else {
            "path_prefix"
        };
        ApiError::invalid(field, e.to_string())
    })
}

/// Adds a route to an app. Refused when another route has the same host and prefix, or
/// when the tenant may not route there ([`crate::host_ownership`]). With `validate_only`,
/// checks everything and changes nothing.
pub async fn create_route(
    ctl: Arc<Control>,
    caller: Caller,
    req: CreateRouteRequest,
) -> Result<CreateRouteResponse, ApiError> {
    let spec = parse_route(&req.host, &req.path_prefix)?;
    let host = spec.host.clone().unwrap_or_default();
    let mut tx = ctl.store.begin().await?;
    if !req.validate_only {
        // Checks and insert see one state: no concurrent route or domain change between.
        ctl.store.lock_serving(&mut tx).await?;
    }

    if req.validate_only {
        return validate_route(&ctl, &mut tx, &caller, &req.app, spec).await;
    }
    let app = resolve_app(&mut tx, &caller, &req.app).await?;
    check_route(&ctl, &mut tx, &caller, &spec).await?;
    if let Some((_, who)) = route_holder(&mut tx, &caller, &spec).await? {
        return Err(
            ApiError::exists(format!("route {spec} is already used by {who}")).on("path_prefix"),
        );
    }
    let id = new_id();
    let now = now_ms();
    let res = sqlx::query("INSERT INTO routes (id, tenant, app_id, host, prefix, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&id)
        .bind(&caller.tenant)
        .bind(&app.id)
        .bind(&host)
        .bind(&spec.prefix)
        .bind(now)
        .execute(&mut *tx)
        .await;
    match res {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::exists(format!("route {spec} was just taken")).on("path_prefix"));
        }
        Err(e) => return Err(e.into()),
    }
    commit_app_change(&ctl, tx, &app.id).await?;
    Ok(CreateRouteResponse {
        route: Some(Route {
            id,
            app_id: app.id,
            url: route_url(&ctl.config.public_url, &host, &spec.prefix),
            host,
            path_prefix: spec.prefix,
            app_name: app.name,
            create_time: Some(timestamp(now)),
        }),
    })
}

/// `validate_only`: would the route be accepted? The app need not exist yet (a deploy
/// checks its routes before it uploads anything), and a route the app already has is fine.
async fn validate_route(
    ctl: &Control,
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    app: &str,
    spec: RouteSpec,
) -> Result<CreateRouteResponse, ApiError> {
    let app = match resolve_app(conn, caller, app).await {
        Ok(a) => Some(a),
        Err(e) if e.code == crate::error::Code::NotFound => None,
        Err(e) => return Err(e),
    };
    check_route(ctl, conn, caller, &spec).await?;
    if let Some((app_id, who)) = route_holder(conn, caller, &spec).await?
        && app.as_ref().is_none_or(|a| a.id != app_id)
    {
        return Err(
            ApiError::exists(format!("route {spec} is already used by {who}")).on("path_prefix"),
        );
    }
    let host = spec.host.clone().unwrap_or_default();
    Ok(CreateRouteResponse {
        route: Some(Route {
            id: String::new(),
            url: route_url(&ctl.config.public_url, &host, &spec.prefix),
            app_id: app.as_ref().map(|a| a.id.clone()).unwrap_or_default(),
            app_name: app.map(|a| a.name).unwrap_or_default(),
            host,
            path_prefix: spec.prefix,
            create_time: None,
        }),
    })
}

/// The app holding exactly this route, and how to name it to `caller` (another tenant's
/// app is not named).
async fn route_holder(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    spec: &RouteSpec,
) -> Result<Option<(String, String)>, ApiError> {
    let row = sqlx::query(
        "SELECT a.id, a.name, a.tenant FROM routes r JOIN apps a ON a.id = r.app_id WHERE r.host = $1 AND r.prefix = $2",
    )
    .bind(spec.host.as_deref().unwrap_or(""))
    .bind(&spec.prefix)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let name: String = row.try_get("name")?;
    let tenant: String = row.try_get("tenant")?;
    let who = if tenant == caller.tenant {
        format!("app {name:?}")
    } else {
        "another tenant".to_string()
    };
    Ok(Some((row.try_get("id")?, who)))
}

/// The caller's routes, of one app or all.
pub async fn list_routes(
    ctl: Arc<Control>,
    caller: Caller,
    req: ListRoutesRequest,
) -> Result<ListRoutesResponse, ApiError> {
    let mut conn = ctl.store.pool().acquire().await?;
    let app_id = if req.app.is_empty() {
        None
    } else {
        Some(resolve_app(&mut conn, &caller, &req.app).await?.id)
    };
    let rows = sqlx::query(
        "SELECT r.id, r.app_id, r.host, r.prefix, r.created_at, a.name FROM routes r JOIN apps a ON a.id = r.app_id WHERE r.tenant = $1 ORDER BY a.name, r.host, r.prefix",
    )
    .bind(&caller.tenant)
    .fetch_all(&mut *conn)
    .await?;
    let mut routes = Vec::new();
    for r in rows {
        let rid: String = r.try_get("app_id")?;
        if app_id.as_ref().is_some_and(|a| *a != rid) {
            continue;
        }
        let host: String = r.try_get("host")?;
        let prefix: String = r.try_get("prefix")?;
        routes.push(Route {
            id: r.try_get("id")?,
            app_id: rid,
            url: route_url(&ctl.config.public_url, &host, &prefix),
            host,
            path_prefix: prefix,
            app_name: r.try_get("name")?,
            create_time: Some(timestamp(r.try_get("created_at")?)),
        });
    }
    Ok(ListRoutesResponse { routes })
}

/// Removes one of the caller's routes.
pub async fn delete_route(
    ctl: Arc<Control>,
    caller: Caller,
    req: DeleteRouteRequest,
) -> Result<DeleteRouteResponse, ApiError> {
    let mut tx = ctl.store.begin().await?;
    let row = sqlx::query("SELECT app_id FROM routes WHERE id = $1 AND tenant = $2")
        .bind(&req.id)
        .bind(&caller.tenant)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("no route {:?}", req.id)));
    };
    let app_id: String = row.try_get(0)?;
    sqlx::query("DELETE FROM routes WHERE id = $1")
        .bind(&req.id)
        .execute(&mut *tx)
        .await?;
    commit_app_change(&ctl, tx, &app_id).await?;
    Ok(DeleteRouteResponse {})
}
