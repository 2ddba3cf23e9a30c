//! The serving feed: what runtimes must serve, as a snapshot and as per-app changes.
//!
//! Every change that affects serving (routes, live release, split, deletion) runs in a
//! transaction that ends with [`commit_app_change`]: it bumps the revision, reads the app's
//! whole serving state inside the same transaction, commits, then publishes it. Events
//! carry the full state of one app, so applying one twice, or a newer snapshot first, is
//! harmless.

use std::collections::BTreeMap;

use platform_proto::v1::{
    FeedEvent, FeedSnapshot, Isolation, Limits, Release, ReleaseState, ServingApp, ServingRoute,
    WeightedRelease, feed_event,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::api::secrets::open_release_secrets;
use crate::dedicated::knative::DedicatedApp;
use crate::error::ApiError;
use crate::store::{Store, Tx, timestamp};
use crate::{Control, ControlConfig};

/// A release's configuration as stored (JSON in `releases.config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseConfig {
    /// Guest environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Memory limit, bytes.
    pub memory_bytes: u64,
    /// Timeout, ms.
    pub timeout_ms: u64,
    /// Request body limit, bytes.
    pub max_body_bytes: u64,
    /// Response limit, bytes.
    pub max_response_bytes: u64,
    /// `pooled` or `per-request`.
    pub isolation: String,
    /// Outbound allow-list.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
}

impl ReleaseConfig {
    /// The proto limits.
    pub fn limits(&self) -> Limits {
        Limits {
            memory_bytes: self.memory_bytes,
            timeout_ms: self.timeout_ms,
            max_body_bytes: self.max_body_bytes,
            max_response_bytes: self.max_response_bytes,
        }
    }

    /// The proto isolation.
    pub fn isolation(&self) -> Isolation {
        if self.isolation == "per-request" {
            Isolation::PerRequest
        } else {
            Isolation::Pooled
        }
    }
}

/// Reads a release row (with `app_name` joined) into its proto form.
pub fn release_from_row(
    row: &sqlx::any::AnyRow,
    live_id: Option<&str>,
) -> Result<Release, sqlx::Error> {
    let config: String = row.try_get("config")?;
    let config: ReleaseConfig = serde_json::from_str(&config).unwrap_or_default();
    let state: String = row.try_get("state")?;
    let id: String = row.try_get("id")?;
    Ok(Release {
        live: live_id == Some(id.as_str()),
        id,
        app_id: row.try_get("app_id")?,
        number: row.try_get::<i64, _>("number")? as u32,
        module_digest: row.try_get("module_digest")?,
        env: config.env.clone().into_iter().collect(),
        limits: Some(config.limits()),
        isolation: config.isolation() as i32,
        allowed_outbound_hosts: config.allowed_outbound_hosts.clone(),
        state: match state.as_str() {
            "ready" => ReleaseState::Ready,
            "failed" => ReleaseState::Failed,
            _ => ReleaseState::Pending,
        } as i32,
        create_time: Some(timestamp(row.try_get("created_at")?)),
        error: row
            .try_get::<Option<String>, _>("error")?
            .unwrap_or_default(),
        app_name: row.try_get("app_name").unwrap_or_default(),
    })
}

/// The serving state of one app, or `None` when it serves nothing (no live release, or no
/// routes, triggers or default address). Runs on whatever connection or transaction is
/// given. With default addresses configured, the app's own address is served as one more route, `/` on
/// `<app>--<tenant>.<base domain>`.
pub async fn serving_app(
    conn: &mut sqlx::AnyConnection,
    app_id: &str,
    config: &ControlConfig,
) -> Result<Option<ServingApp>, sqlx::Error> {
    let addresses = config.app_addresses.as_ref();
    let keys = config.secrets.as_ref();
    let Some(app) = sqlx::query(
        "SELECT id, tenant, name, live_release_id, split_release_id, split_weight, dedicated FROM apps WHERE id = $1",
    )
    .bind(app_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let live: Option<String> = app.try_get("live_release_id")?;
    let Some(live) = live else { return Ok(None) };
    let routes: Vec<ServingRoute> =
        sqlx::query("SELECT host, prefix FROM routes WHERE app_id = $1 ORDER BY host, prefix")
            .bind(app_id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| {
                Ok(ServingRoute {
                    host: r.try_get("host")?,
                    path_prefix: r.try_get("prefix")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
    let mut routes = routes;
    let tenant: String = app.try_get("tenant")?;
    let name: String = app.try_get("name")?;
    if let Some(t) = addresses {
        routes.push(ServingRoute {
            host: t.host(&name, &tenant),
            path_prefix: "/".into(),
        });
    }
    let (event_triggers, subject_triggers) =
        crate::api::triggers::app_triggers(&mut *conn, app_id).await?;
    if routes.is_empty() && event_triggers.is_empty() && subject_triggers.is_empty() {
        return Ok(None);
    }
    let split: Option<String> = app.try_get("split_release_id")?;
    let split_weight = app.try_get::<i64, _>("split_weight")?.clamp(0, 100) as u32;
    let mut wanted = vec![(
        live.clone(),
        100 - if split.is_some() { split_weight } else { 0 },
    )];
    if let Some(s) = split
        && split_weight > 0
    {
        wanted.push((s, split_weight));
    }
    let mut releases = Vec::new();
    for (id, weight) in wanted {
        if weight == 0 {
            continue;
        }
        if let Some(row) = sqlx::query(
            "SELECT r.*, a.name AS app_name FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.id = $1",
        )
        .bind(&id)
        .fetch_optional(&mut *conn)
        .await?
        {
            let secret_env = match row.try_get::<Option<String>, _>("secrets")? {
                Some(sealed) => open_release_secrets(keys, &id, &sealed).unwrap_or_else(|e| {
                    // Serve without them rather than not at all; the error names no value.
                    tracing::error!(app = %name, release = %id, error = %e, "cannot open the release's secrets");
                    Default::default()
                }),
                None => Default::default(),
            };
            releases.push(WeightedRelease {
                weight,
                release: Some(release_from_row(&row, Some(&live))?),
                secret_env: secret_env.into_iter().collect(),
            });
        }
    }
    if releases.is_empty() {
        return Ok(None);
    }
    let dedicated = app.try_get::<i64, _>("dedicated")? != 0;
    let service_url = if dedicated {
        config.dedicated_addresses.url(&DedicatedApp {
            id: app_id.to_string(),
            tenant: tenant.clone(),
            name: name.clone(),
        })
    } else {
        String::new()
    };
    Ok(Some(ServingApp {
        app_id: app_id.to_string(),
        tenant,
        name,
        routes,
        releases,
        event_triggers,
        subject_triggers,
        dedicated,
        service_url,
    }))
}

/// The whole serving state. The revision is read first: apps read after it are at least
/// that new, and events up to it are then ignored by the runtime, which loses nothing since
/// every event carries an app's full state.
pub async fn snapshot(ctl: &Control) -> Result<FeedSnapshot, sqlx::Error> {
    let store = &ctl.store;
    let addresses = ctl.config.app_addresses.as_ref();
    let revision = store.revision().await?;
    // With default addresses every live app serves; without, those with routes or triggers.
    let sql = if addresses.is_some() {
        "SELECT id FROM apps WHERE live_release_id IS NOT NULL"
    } else {
        "SELECT app_id FROM routes UNION SELECT app_id FROM triggers"
    };
    let ids: Vec<String> = sqlx::query(sql)
        .fetch_all(store.pool())
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut apps = Vec::with_capacity(ids.len());
    let mut conn = store.pool().acquire().await?;
    for id in ids {
        if let Some(a) = serving_app(&mut conn, &id, &ctl.config).await? {
            apps.push(a);
        }
    }
    Ok(FeedSnapshot { revision, apps })
}

/// Bumps the revision, captures `app_id`'s serving state, commits, and publishes the event.
pub async fn commit_app_change(ctl: &Control, mut tx: Tx, app_id: &str) -> Result<u64, ApiError> {
    let revision = Store::bump_revision(&mut tx).await?;
    let change = match serving_app(&mut tx, app_id, &ctl.config).await? {
        Some(app) => feed_event::Change::AppChanged(app),
        None => feed_event::Change::AppRemoved(app_id.to_string()),
    };
    tx.commit().await?;
    ctl.events
        .publish_feed(&FeedEvent {
            revision,
            change: Some(change),
        })
        .await;
    Ok(revision)
}

/// Announces the current revision on the bus (a feed event without a change). Called on
/// every connection to NATS: events this process published while disconnected, or that a
/// predecessor killed between its commit and its publish never sent, are lost, and a
/// runtime that already resynced would otherwise learn of them only at its periodic
/// resync. A runtime behind the announced revision resyncs at once; others ignore it.
pub async fn announce_revision(ctl: &Control) -> Result<u64, sqlx::Error> {
    let revision = ctl.store.revision().await?;
    ctl.events
        .publish_feed(&FeedEvent {
            revision,
            change: None,
        })
        .await;
    Ok(revision)
}
