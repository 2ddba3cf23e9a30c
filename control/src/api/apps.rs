//! `AppService`: create, list, get and delete apps.

use std::sync::Arc;

use platform_proto::v1::{
    App, CreateAppRequest, CreateAppResponse, DeleteAppRequest, DeleteAppResponse, GetAppRequest,
    GetAppResponse, ListAppsRequest, ListAppsResponse, Route, TrafficSplit,
};
use sqlx::Row;

use super::{AppRow, resolve_app, route_url};
use crate::Control;
use crate::auth::{Caller, check_name};
use crate::error::ApiError;
use crate::feed::commit_app_change;
use crate::store::{is_unique_violation, new_id, now_ms, timestamp};

/// Creates an app.
pub async fn create_app(
    ctl: Arc<Control>,
    caller: Caller,
    req: CreateAppRequest,
) -> Result<CreateAppResponse, ApiError> {
    check_name("app", &req.name).map_err(|m| ApiError::invalid("name", m))?;
    let id = new_id();
    let now = now_ms();
    let mut tx = ctl.store.begin().await?;
    crate::quota::check_apps(&mut tx, &ctl.config.quotas, &caller.tenant).await?;
    let res =
        sqlx::query("INSERT INTO apps (id, tenant, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(&caller.tenant)
            .bind(&req.name)
            .bind(now)
            .execute(&mut *tx)
            .await;
    match res {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(
                ApiError::exists(format!("an app named {:?} already exists", req.name)).on("name"),
            );
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    let mut conn = ctl.store.pool().acquire().await?;
    let app = resolve_app(&mut conn, &caller, &id).await?;
    Ok(CreateAppResponse {
        app: Some(app_message(&ctl, &mut conn, &app).await?),
    })
}

/// Lists the caller's apps.
pub async fn list_apps(
    ctl: Arc<Control>,
    caller: Caller,
    _req: ListAppsRequest,
) -> Result<ListAppsResponse, ApiError> {
    let mut conn = ctl.store.pool().acquire().await?;
    let ids: Vec<String> = sqlx::query("SELECT id FROM apps WHERE tenant = $1 ORDER BY name")
        .bind(&caller.tenant)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut apps = Vec::with_capacity(ids.len());
    for id in ids {
        let app = resolve_app(&mut conn, &caller, &id).await?;
        apps.push(app_message(&ctl, &mut conn, &app).await?);
    }
    Ok(ListAppsResponse { apps })
}

/// One app by id or name.
pub async fn get_app(
    ctl: Arc<Control>,
    caller: Caller,
    req: GetAppRequest,
) -> Result<GetAppResponse, ApiError> {
    let mut conn = ctl.store.pool().acquire().await?;
    let app = resolve_app(&mut conn, &caller, &req.app).await?;
    Ok(GetAppResponse {
        app: Some(app_message(&ctl, &mut conn, &app).await?),
    })
}

/// Deletes an app with its releases and routes; runtimes stop serving it.
pub async fn delete_app(
    ctl: Arc<Control>,
    caller: Caller,
    req: DeleteAppRequest,
) -> Result<DeleteAppResponse, ApiError> {
    let mut tx = ctl.store.begin().await?;
    let app = resolve_app(&mut tx, &caller, &req.app).await?;
    // The app's lock first, the order every release change follows (no deadlock with a
    // release being created or activated meanwhile).
    crate::store::Store::lock_app(&mut tx, &app.id).await?;
    for delete in [
        "DELETE FROM routes WHERE app_id = $1",
        "DELETE FROM triggers WHERE app_id = $1",
        "DELETE FROM secrets WHERE app_id = $1",
        "DELETE FROM activations WHERE app_id = $1",
        "DELETE FROM releases WHERE app_id = $1",
    ] {
        sqlx::query(delete).bind(&app.id).execute(&mut *tx).await?;
    }
    sqlx::query("DELETE FROM apps WHERE id = $1")
        .bind(&app.id)
        .execute(&mut *tx)
        .await?;
    commit_app_change(&ctl, tx, &app.id).await?;
    Ok(DeleteAppResponse {})
}

/// The API form of an app, with routes and live release.
pub async fn app_message(
    ctl: &Control,
    conn: &mut sqlx::AnyConnection,
    app: &AppRow,
) -> Result<App, ApiError> {
    let routes = sqlx::query(
        "SELECT id, host, prefix, created_at FROM routes WHERE app_id = $1 ORDER BY host, prefix",
    )
    .bind(&app.id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        let host: String = r.try_get("host")?;
        let prefix: String = r.try_get("prefix")?;
        Ok(Route {
            id: r.try_get("id")?,
            app_id: app.id.clone(),
            url: route_url(&ctl.config.public_url, &host, &prefix),
            host,
            path_prefix: prefix,
            app_name: app.name.clone(),
            create_time: Some(timestamp(r.try_get("created_at")?)),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let live_number = release_number(conn, app.live_release_id.as_deref()).await?;
    let split_number = release_number(conn, app.split_release_id.as_deref()).await?;
    let (event_triggers, subject_triggers) =
        super::triggers::app_triggers(&mut *conn, &app.id).await?;
    let default_url = ctl
        .config
        .app_addresses
        .as_ref()
        .map(|t| route_url(&ctl.config.public_url, &t.host(&app.name, &app.tenant), "/"))
        .unwrap_or_default();
    Ok(App {
        default_url,
        id: app.id.clone(),
        name: app.name.clone(),
        tenant: app.tenant.clone(),
        create_time: Some(timestamp(app.created_at)),
        live_release_id: app.live_release_id.clone().unwrap_or_default(),
        split: app.split_release_id.clone().map(|release_id| TrafficSplit {
            release_id,
            weight: app.split_weight,
            release_number: split_number,
        }),
        routes,
        live_release_number: live_number,
        event_triggers,
        subject_triggers,
        dedicated: app.dedicated,
        dedicated_status: app.dedicated_status.clone(),
    })
}

/// The number of release `id` (0 for none).
async fn release_number(conn: &mut sqlx::AnyConnection, id: Option<&str>) -> Result<u32, ApiError> {
    let Some(id) = id else { return Ok(0) };
    Ok(sqlx::query("SELECT number FROM releases WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get::<i64, _>(0))
        .transpose()?
        .unwrap_or(0) as u32)
}
