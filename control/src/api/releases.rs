//! `ReleaseService`: immutable releases, going live, roll back, traffic splits.
//!
//! A release goes live only once its module is compiled for the runtimes' engine (so no
//! request waits for Cranelift), unless the caller forces it. A release created with
//! `activate` while its module is still compiling is marked to go live when the worker
//! finishes ([`activate_ready_releases`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use platform_proto::v1::{
    CreateReleaseRequest, CreateReleaseResponse, GetReleaseRequest, GetReleaseResponse, Isolation,
    ListReleasesRequest, ListReleasesResponse, Release, RollbackReleaseRequest,
    RollbackReleaseResponse, SetTrafficSplitRequest, SetTrafficSplitResponse,
};
use platform_runtime::Limits;
use sqlx::Row;

use super::{AppRow, resolve_app};
use crate::Control;
use crate::auth::Caller;
use crate::error::{ApiError, Code};
use crate::feed::{ReleaseConfig, commit_app_change, release_from_row};
use crate::quota::{ReleaseCaps, capped};
use crate::store::{Store, Tx, new_id, now_ms};

const MAX_MEMORY: u64 = 4 << 30;
const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;
const MAX_BODY: u64 = 1 << 30;

/// Checks and completes a release configuration: unset limits take the defaults (lowered
/// to the operator's caps), explicit ones above a cap are refused naming it.
pub fn release_config(
    req: &CreateReleaseRequest,
    caps: &ReleaseCaps,
) -> Result<ReleaseConfig, ApiError> {
    let defaults = Limits::default();
    let l = req.limits.unwrap_or_default();
    let asked = |v: u64| (v != 0).then_some(v);
    let bytes = |v: u64| bytesize::ByteSize(v).to_string();
    let memory = capped(
        "limits.memory_bytes",
        "the memory limit",
        asked(l.memory_bytes),
        defaults.memory,
        caps.memory_bytes,
        "--max-release-memory",
        bytes,
    )?;
    if !(4 << 20..=MAX_MEMORY).contains(&memory) {
        return Err(ApiError::invalid(
            "limits.memory_bytes",
            "memory limit must be between 4 MiB and 4 GiB",
        ));
    }
    let timeout_ms = capped(
        "limits.timeout_ms",
        "the timeout",
        asked(l.timeout_ms),
        defaults.timeout.as_millis() as u64,
        caps.timeout_ms,
        "--max-release-timeout",
        |ms| format!("{ms} ms"),
    )?;
    if timeout_ms > MAX_TIMEOUT_MS {
        return Err(ApiError::invalid(
            "limits.timeout_ms",
            "timeout must be at most 15 minutes",
        ));
    }
    let max_body = capped(
        "limits.max_body_bytes",
        "the request body limit",
        asked(l.max_body_bytes),
        defaults.max_body,
        caps.max_body_bytes,
        "--max-release-body",
        bytes,
    )?;
    let max_response = capped(
        "limits.max_response_bytes",
        "the response limit",
        asked(l.max_response_bytes),
        defaults.max_response,
        caps.max_response_bytes,
        "--max-release-response",
        bytes,
    )?;
    if max_body > MAX_BODY || max_response > MAX_BODY {
        return Err(ApiError::invalid(
            "limits",
            "body and response limits must be at most 1 GiB",
        ));
    }
    let mut env = BTreeMap::new();
    for (k, v) in &req.env {
        if k.is_empty() || k.len() > 256 || k.contains('=') || k.contains('\0') || v.contains('\0')
        {
            return Err(ApiError::invalid(
                "env",
                format!("invalid environment variable {k:?}"),
            ));
        }
        env.insert(k.clone(), v.clone());
    }
    let mut hosts = Vec::new();
    for h in &req.allowed_outbound_hosts {
        let h = h.trim().to_ascii_lowercase();
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:*[]_".contains(&b))
            && (!h.contains('*') || h.starts_with("*.") && h[2..].bytes().all(|b| b != b'*'));
        if !ok {
            return Err(ApiError::invalid(
                "allowed_outbound_hosts",
                format!("invalid outbound host {h:?}: use \"host\", \"host:port\" or \"*.domain\""),
            ));
        }
        hosts.push(h);
    }
    let isolation = match Isolation::try_from(req.isolation).unwrap_or(Isolation::Unspecified) {
        Isolation::PerRequest => "per-request",
        _ => "pooled",
    };
    Ok(ReleaseConfig {
        env,
        memory_bytes: memory,
        timeout_ms: timeout_ms.max(1),
        max_body_bytes: max_body,
        max_response_bytes: max_response,
        isolation: isolation.into(),
        allowed_outbound_hosts: hosts,
    })
}

/// Creates a release (and, with `activate`, makes it live when its module is ready).
pub async fn create_release(
    ctl: Arc<Control>,
    caller: Caller,
    req: CreateReleaseRequest,
) -> Result<CreateReleaseResponse, ApiError> {
    let mut config = release_config(&req, &ctl.config.caps)?;
    let digest = req
        .module_digest
        .trim()
        .trim_start_matches("sha256:")
        .to_ascii_lowercase();
    let mut tx = ctl.store.begin().await?;
    let app = resolve_app(&mut tx, &caller, &req.app).await?;
    // Taking the number locks the app first (the lock order every release change follows),
    // so concurrent releases of one app get distinct numbers and never deadlock.
    let number = Store::next_release_number(&mut tx, &app.id).await?;
    let module = sqlx::query("SELECT abi FROM modules WHERE tenant = $1 AND digest = $2")
        .bind(&caller.tenant)
        .bind(&digest)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(module) = module else {
        return Err(
            ApiError::not_found(format!("no module {digest:?}: upload it first"))
                .on("module_digest"),
        );
    };
    let abi: String = module.try_get(0)?;
    // Unset, a component gets a fresh instance per request (as under `wasmtime serve`);
    // `pooled` is its opt-in to instance reuse. SDK modules default to `pooled`.
    if Isolation::try_from(req.isolation).unwrap_or(Isolation::Unspecified)
        == Isolation::Unspecified
        && abi == "component"
    {
        config.isolation = "per-request".into();
    }
    if config.isolation == "per-request" && abi == "wagi" {
        return Err(ApiError::invalid(
            "isolation",
            format!(
                "per-request isolation applies to Platform SDK modules and components; this module is {abi} (a WAGI module already gets a fresh instance for every request)"
            ),
        ));
    }
    let artifact = sqlx::query(
        "SELECT state, error FROM artifacts WHERE tenant = $1 AND digest = $2 AND engine = $3",
    )
    .bind(&caller.tenant)
    .bind(&digest)
    .bind(ctl.config.engine.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let (compile_state, compile_error) = match artifact {
        Some(r) => (
            r.try_get::<String, _>("state")?,
            r.try_get::<Option<String>, _>("error")?,
        ),
        None => ("pending".to_string(), None),
    };
    // `force` skips waiting for a compile, never a failed one: runtimes would only fail
    // the same way on every request.
    if compile_state == "failed" {
        return Err(ApiError::new(
            Code::FailedPrecondition,
            format!(
                "the module failed to compile, so no release can use it (not even with force): {}",
                compile_error.unwrap_or_default()
            ),
        )
        .on("module_digest"));
    }
    let id = new_id();
    let ready = compile_state == "ready" || req.force;
    let state = if ready { "ready" } else { "pending" };
    let config_json =
        serde_json::to_string(&config).map_err(|e| ApiError::internal("encoding release", e))?;
    // The release keeps the app's secrets of this moment (sealed), like its environment.
    let (secrets, secrets_key_id) =
        super::secrets::seal_release_secrets(&ctl, &mut tx, &app.id, &id).await?;
    sqlx::query(
        "INSERT INTO releases (id, app_id, number, module_digest, config, state, activate_when_ready, created_at, secrets, secrets_key_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(&app.id)
    .bind(number)
    .bind(&digest)
    .bind(&config_json)
    .bind(state)
    .bind(i64::from(req.activate && !ready))
    .bind(now_ms())
    .bind(secrets)
    .bind(secrets_key_id)
    .execute(&mut *tx)
    .await?;
    if req.activate && ready {
        make_live(&mut tx, &app.id, &id).await?;
        commit_app_change(&ctl, tx, &app.id).await?;
    } else {
        tx.commit().await?;
    }
    Ok(CreateReleaseResponse {
        release: Some(get(&ctl, &caller, &id).await?),
    })
}

/// Releases of an app, newest first.
pub async fn list_releases(
    ctl: Arc<Control>,
    caller: Caller,
    req: ListReleasesRequest,
) -> Result<ListReleasesResponse, ApiError> {
    let mut conn = ctl.store.pool().acquire().await?;
    let app = resolve_app(&mut conn, &caller, &req.app).await?;
    let rows = sqlx::query(
        "SELECT r.*, a.name AS app_name FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.app_id = $1 ORDER BY r.number DESC",
    )
    .bind(&app.id)
    .fetch_all(&mut *conn)
    .await?;
    let releases = rows
        .iter()
        .map(|r| release_from_row(r, app.live_release_id.as_deref()))
        .collect::<Result<_, _>>()?;
    Ok(ListReleasesResponse { releases })
}

/// One release by id.
pub async fn get_release(
    ctl: Arc<Control>,
    caller: Caller,
    req: GetReleaseRequest,
) -> Result<GetReleaseResponse, ApiError> {
    Ok(GetReleaseResponse {
        release: Some(get(&ctl, &caller, &req.id).await?),
    })
}

async fn get(ctl: &Control, caller: &Caller, id: &str) -> Result<Release, ApiError> {
    let row = sqlx::query(
        "SELECT r.*, a.name AS app_name, a.live_release_id FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.id = $1 AND a.tenant = $2",
    )
    .bind(id)
    .bind(&caller.tenant)
    .fetch_optional(ctl.store.pool())
    .await?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("no release {id:?}")));
    };
    let live: Option<String> = row.try_get("live_release_id")?;
    Ok(release_from_row(&row, live.as_deref())?)
}

/// Resolves the caller's app and locks its row for the rest of `tx`, then reads it again
/// (its live release may have changed while the lock was awaited).
async fn locked_app(tx: &mut Tx, caller: &Caller, app: &str) -> Result<AppRow, ApiError> {
    let found = resolve_app(tx, caller, app).await?;
    Store::lock_app(tx, &found.id).await?;
    resolve_app(tx, caller, &found.id).await
}

/// Finds a release of `app` by id or number.
async fn find_release(
    tx: &mut Tx,
    app: &AppRow,
    release: &str,
) -> Result<(String, String), ApiError> {
    let number: i64 = release.trim_start_matches('#').parse().unwrap_or(-1);
    let row = sqlx::query(
        "SELECT id, state FROM releases WHERE app_id = $1 AND (id = $2 OR number = $3)",
    )
    .bind(&app.id)
    .bind(release)
    .bind(number)
    .fetch_optional(&mut **tx)
    .await?;
    match row {
        Some(r) => Ok((r.try_get("id")?, r.try_get("state")?)),
        None => Err(
            ApiError::not_found(format!("app {:?} has no release {release:?}", app.name))
                .on("release"),
        ),
    }
}

/// Makes an earlier release live again.
pub async fn rollback_release(
    ctl: Arc<Control>,
    caller: Caller,
    req: RollbackReleaseRequest,
) -> Result<RollbackReleaseResponse, ApiError> {
    let mut tx = ctl.store.begin().await?;
    let app = locked_app(&mut tx, &caller, &req.app).await?;
    let Some(current) = app.live_release_id.clone() else {
        return Err(ApiError::new(
            Code::FailedPrecondition,
            format!("app {:?} has no live release to roll back from", app.name),
        ));
    };
    let target = if req.release.is_empty() {
        let row = sqlx::query(
            "SELECT release_id FROM activations WHERE app_id = $1 AND release_id <> $2 ORDER BY seq DESC LIMIT 1",
        )
        .bind(&app.id)
        .bind(&current)
        .fetch_optional(&mut *tx)
        .await?;
        match row {
            Some(r) => r.try_get::<String, _>(0)?,
            None => {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    format!("app {:?} has no earlier live release", app.name),
                ));
            }
        }
    } else {
        let (id, state) = find_release(&mut tx, &app, &req.release).await?;
        if state != "ready" {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                format!("release {} is not ready ({state})", req.release),
            )
            .on("release"));
        }
        id
    };
    if target == current {
        return Err(
            ApiError::new(Code::FailedPrecondition, "that release is already live").on("release"),
        );
    }
    make_live(&mut tx, &app.id, &target).await?;
    commit_app_change(&ctl, tx, &app.id).await?;
    Ok(RollbackReleaseResponse {
        release: Some(get(&ctl, &caller, &target).await?),
    })
}

/// Sends a share of an app's traffic to another ready release.
pub async fn set_traffic_split(
    ctl: Arc<Control>,
    caller: Caller,
    req: SetTrafficSplitRequest,
) -> Result<SetTrafficSplitResponse, ApiError> {
    if req.weight > 100 {
        return Err(ApiError::invalid(
            "weight",
            "weight is a percentage: 0 to 100",
        ));
    }
    let mut tx = ctl.store.begin().await?;
    let app = locked_app(&mut tx, &caller, &req.app).await?;
    if req.weight == 0 {
        sqlx::query("UPDATE apps SET split_release_id = NULL, split_weight = 0 WHERE id = $1")
            .bind(&app.id)
            .execute(&mut *tx)
            .await?;
    } else {
        let (id, state) = find_release(&mut tx, &app, &req.release).await?;
        if state != "ready" {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                format!("release {} is not ready ({state})", req.release),
            )
            .on("release"));
        }
        if app.live_release_id.as_deref() == Some(id.as_str()) {
            return Err(ApiError::invalid(
                "release",
                "that release is already live; split to another one",
            ));
        }
        if app.live_release_id.is_none() {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                "the app has no live release to split from",
            ));
        }
        sqlx::query("UPDATE apps SET split_release_id = $1, split_weight = $2 WHERE id = $3")
            .bind(&id)
            .bind(i64::from(req.weight))
            .bind(&app.id)
            .execute(&mut *tx)
            .await?;
    }
    commit_app_change(&ctl, tx, &app.id).await?;
    Ok(SetTrafficSplitResponse {})
}

/// Points the app at `release_id` (clearing any split) and records the activation.
pub async fn make_live(tx: &mut Tx, app_id: &str, release_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE apps SET live_release_id = $1, split_release_id = NULL, split_weight = 0 WHERE id = $2")
        .bind(release_id)
        .bind(app_id)
        .execute(&mut **tx)
        .await?;
    // Releases older than this one no longer wait to go live; newer ones still do.
    sqlx::query(
        "UPDATE releases SET activate_when_ready = 0 WHERE app_id = $1 AND number <= (SELECT number FROM releases WHERE id = $2)",
    )
    .bind(app_id)
    .bind(release_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("INSERT INTO activations (app_id, release_id, at) VALUES ($1, $2, $3)")
        .bind(app_id)
        .bind(release_id)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Called when a tenant's compile of a module ends: that tenant's pending releases of it
/// become ready (and live when they asked to) or failed.
pub async fn activate_ready_releases(
    ctl: &Control,
    tenant: &str,
    digest: &str,
    error: Option<&str>,
) -> Result<(), ApiError> {
    let rows = sqlx::query("SELECT r.id, r.app_id FROM releases r JOIN apps a ON a.id = r.app_id WHERE a.tenant = $1 AND r.module_digest = $2 AND r.state = 'pending' ORDER BY r.number")
        .bind(tenant)
        .bind(digest)
        .fetch_all(ctl.store.pool())
        .await?;
    for row in rows {
        let id: String = row.try_get("id")?;
        let app_id: String = row.try_get("app_id")?;
        let mut tx = ctl.store.begin().await?;
        // The app's lock first, like every release change; then only a release that is
        // still pending is settled (another worker, or the sweep, may have done it).
        Store::lock_app(&mut tx, &app_id).await?;
        let Some(current) = sqlx::query(
            "SELECT activate_when_ready FROM releases WHERE id = $1 AND state = 'pending'",
        )
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            tx.commit().await?;
            continue;
        };
        let activate = current.try_get::<i64, _>(0)? != 0;
        match error {
            Some(err) => {
                sqlx::query("UPDATE releases SET state = 'failed', error = $1, activate_when_ready = 0 WHERE id = $2")
                    .bind(format!("the module failed to compile: {err}"))
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            None => {
                sqlx::query("UPDATE releases SET state = 'ready' WHERE id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                // It goes live unless a newer release went live or waits to meanwhile
                // (the user's latest intent wins).
                let superseded = sqlx::query(
                    "SELECT r.id FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.app_id = $1 AND r.number > (SELECT number FROM releases WHERE id = $2) AND (r.activate_when_ready = 1 OR r.id = a.live_release_id) LIMIT 1",
                )
                .bind(&app_id)
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                let still_wanted = activate && !superseded;
                if still_wanted {
                    make_live(&mut tx, &app_id, &id).await?;
                    commit_app_change(ctl, tx, &app_id).await?;
                } else {
                    tx.commit().await?;
                }
            }
        }
    }
    Ok(())
}

/// Settles releases still pending although their module's compile has ended: the worker
/// settles them as it finishes a compile, but a release created in the moment between the
/// compile's end and that step, or a worker that died in between, would leave them waiting
/// for ever. The worker runs this on every poll.
pub async fn settle_pending_releases(ctl: &Control) -> Result<usize, ApiError> {
    let rows = sqlx::query(
        "SELECT DISTINCT a.tenant, r.module_digest, a.state, a.error FROM releases r JOIN apps ap ON ap.id = r.app_id JOIN artifacts a ON a.tenant = ap.tenant AND a.digest = r.module_digest AND a.engine = $1 WHERE r.state = 'pending' AND a.state IN ('ready', 'failed')",
    )
    .bind(ctl.config.engine.as_str())
    .fetch_all(ctl.store.pool())
    .await?;
    for row in &rows {
        let tenant: String = row.try_get("tenant")?;
        let digest: String = row.try_get("module_digest")?;
        let state: String = row.try_get("state")?;
        let error: Option<String> = row.try_get("error")?;
        let error = (state == "failed").then(|| error.unwrap_or_default());
        activate_ready_releases(ctl, &tenant, &digest, error.as_deref()).await?;
    }
    Ok(rows.len())
}
