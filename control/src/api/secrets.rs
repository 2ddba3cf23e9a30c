//! `SecretService`: write-only secrets, sealed at rest with the operator's key.
//!
//! A secret belongs to an app. Setting or removing one makes a new release of the live
//! release (same module and configuration, the app's current secrets) and makes it live,
//! as an environment change does; each release keeps, sealed, the secrets it was made
//! with ([`seal_release_secrets`]), and the serving feed opens them for the runtimes
//! ([`open_release_secrets`]). No answer carries a value, and nothing here logs one.

use std::collections::BTreeMap;
use std::sync::Arc;

use platform_proto::v1::{
    DeleteSecretRequest, DeleteSecretResponse, ListSecretsRequest, ListSecretsResponse, Secret,
    SetSecretRequest, SetSecretResponse,
};
use sqlx::Row;

use super::releases::make_live;
use super::resolve_app;
use crate::Control;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::feed::commit_app_change;
use crate::secrets::{Binding, KeyError, MAX_VALUE, SecretKeys, check_name};
use crate::store::{Store, Tx, new_id, now_ms, timestamp};

fn keys(ctl: &Control) -> Result<&SecretKeys, ApiError> {
    ctl.config.secrets.as_ref().ok_or_else(|| {
        ApiError::failed(
            "secrets are not enabled on this installation: the operator starts the control plane with --secrets-key-file",
        )
    })
}

fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::UnknownKey(_) => ApiError::failed(e.to_string()),
        other => ApiError::internal("secrets", other),
    }
}

/// Creates or replaces a secret, and re-releases the live release with it.
pub async fn set_secret(
    ctl: Arc<Control>,
    caller: Caller,
    req: SetSecretRequest,
) -> Result<SetSecretResponse, ApiError> {
    let keys = keys(&ctl)?;
    check_name(&req.name).map_err(|m| ApiError::invalid("name", m))?;
    if req.value.len() > MAX_VALUE {
        return Err(ApiError::invalid(
            "value",
            format!("a secret holds at most {} KiB", MAX_VALUE / 1024),
        ));
    }
    if req.value.contains('\0') {
        return Err(ApiError::invalid(
            "value",
            "a secret cannot hold a NUL byte (it becomes an environment variable)",
        ));
    }
    let mut tx = ctl.store.begin().await?;
    let app = resolve_app(&mut tx, &caller, &req.app).await?;
    Store::lock_app(&mut tx, &app.id).await?;
    let sealed = keys
        .seal(
            req.value.as_bytes(),
            Binding::Secret {
                app_id: &app.id,
                name: &req.name,
            },
        )
        .map_err(key_error)?;
    let now = now_ms();
    let updated = sqlx::query(
        "UPDATE secrets SET value = $1, key_id = $2, updated_at = $3 WHERE app_id = $4 AND name = $5",
    )
    .bind(&sealed)
    .bind(keys.current_id())
    .bind(now)
    .bind(&app.id)
    .bind(&req.name)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        sqlx::query(
            "INSERT INTO secrets (app_id, name, value, key_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&app.id)
        .bind(&req.name)
        .bind(&sealed)
        .bind(keys.current_id())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let number = rerelease(&ctl, tx, &app.id, app.live_release_id.as_deref()).await?;
    tracing::info!(app = %app.name, secret = %req.name, release = number, "secret set");
    let mut conn = ctl.store.pool().acquire().await?;
    let secret = list(&mut conn, &app.id)
        .await?
        .into_iter()
        .find(|s| s.name == req.name);
    Ok(SetSecretResponse {
        secret,
        release_number: number,
    })
}

/// Names and times of an app's secrets.
pub async fn list_secrets(
    ctl: Arc<Control>,
    caller: Caller,
    req: ListSecretsRequest,
) -> Result<ListSecretsResponse, ApiError> {
    let mut conn = ctl.store.pool().acquire().await?;
    let app = resolve_app(&mut conn, &caller, &req.app).await?;
    Ok(ListSecretsResponse {
        secrets: list(&mut conn, &app.id).await?,
    })
}

/// Removes a secret, and re-releases the live release without it.
pub async fn delete_secret(
    ctl: Arc<Control>,
    caller: Caller,
    req: DeleteSecretRequest,
) -> Result<DeleteSecretResponse, ApiError> {
    let mut tx = ctl.store.begin().await?;
    let app = resolve_app(&mut tx, &caller, &req.app).await?;
    Store::lock_app(&mut tx, &app.id).await?;
    let gone = sqlx::query("DELETE FROM secrets WHERE app_id = $1 AND name = $2")
        .bind(&app.id)
        .bind(&req.name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if gone == 0 {
        return Err(ApiError::not_found(format!(
            "app {:?} has no secret {:?}",
            app.name, req.name
        ))
        .on("name"));
    }
    let number = rerelease(&ctl, tx, &app.id, app.live_release_id.as_deref()).await?;
    tracing::info!(app = %app.name, secret = %req.name, release = number, "secret removed");
    Ok(DeleteSecretResponse {
        release_number: number,
    })
}

/// The app's secrets, names and times only.
pub async fn list(conn: &mut sqlx::AnyConnection, app_id: &str) -> Result<Vec<Secret>, ApiError> {
    let rows = sqlx::query(
        "SELECT name, created_at, updated_at FROM secrets WHERE app_id = $1 ORDER BY name",
    )
    .bind(app_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Secret {
                name: r.try_get("name")?,
                create_time: Some(timestamp(r.try_get("created_at")?)),
                update_time: Some(timestamp(r.try_get("updated_at")?)),
            })
        })
        .collect()
}

/// Makes a new release of `live` (same module and configuration, the app's current
/// secrets) and makes it live; commits `tx` either way. Returns the new release's number,
/// 0 when nothing was live.
async fn rerelease(
    ctl: &Control,
    mut tx: Tx,
    app_id: &str,
    live: Option<&str>,
) -> Result<u32, ApiError> {
    let Some(live) = live else {
        tx.commit().await?;
        return Ok(0);
    };
    let row = sqlx::query("SELECT module_digest, config FROM releases WHERE id = $1")
        .bind(live)
        .fetch_one(&mut *tx)
        .await?;
    let digest: String = row.try_get("module_digest")?;
    let config: String = row.try_get("config")?;
    let number = Store::next_release_number(&mut tx, app_id).await?;
    let id = new_id();
    let (sealed, key_id) = seal_release_secrets(ctl, &mut tx, app_id, &id).await?;
    sqlx::query(
        "INSERT INTO releases (id, app_id, number, module_digest, config, state, activate_when_ready, created_at, secrets, secrets_key_id) VALUES ($1, $2, $3, $4, $5, 'ready', 0, $6, $7, $8)",
    )
    .bind(&id)
    .bind(app_id)
    .bind(number)
    .bind(&digest)
    .bind(&config)
    .bind(now_ms())
    .bind(sealed)
    .bind(key_id)
    .execute(&mut *tx)
    .await?;
    make_live(&mut tx, app_id, &id).await?;
    commit_app_change(ctl, tx, app_id).await?;
    Ok(u32::try_from(number).unwrap_or(u32::MAX))
}

/// Reads the app's current secrets inside `tx` and seals them, as one JSON object, for
/// release `release_id`. `(None, None)` when the app has none.
pub async fn seal_release_secrets(
    ctl: &Control,
    tx: &mut Tx,
    app_id: &str,
    release_id: &str,
) -> Result<(Option<String>, Option<String>), ApiError> {
    let rows = sqlx::query("SELECT name, value FROM secrets WHERE app_id = $1")
        .bind(app_id)
        .fetch_all(&mut **tx)
        .await?;
    if rows.is_empty() {
        return Ok((None, None));
    }
    let keys = keys(ctl)?;
    let mut values = BTreeMap::new();
    for r in &rows {
        let name: String = r.try_get("name")?;
        let sealed: String = r.try_get("value")?;
        let plain = keys
            .open(
                &sealed,
                Binding::Secret {
                    app_id,
                    name: &name,
                },
            )
            .map_err(key_error)?;
        values.insert(name, String::from_utf8_lossy(&plain).into_owned());
    }
    let json = serde_json::to_vec(&values).map_err(|e| ApiError::internal("secrets", e))?;
    let sealed = keys
        .seal(&json, Binding::Release { release_id })
        .map_err(key_error)?;
    Ok((Some(sealed), Some(keys.current_id().to_string())))
}

/// Opens the secrets sealed with a release (empty when it has none).
pub fn open_release_secrets(
    keys: Option<&SecretKeys>,
    release_id: &str,
    sealed: &str,
) -> Result<BTreeMap<String, String>, KeyError> {
    let Some(keys) = keys else {
        return Err(KeyError::UnknownKey(
            SecretKeys::key_id_of(sealed).unwrap_or("?").to_string(),
        ));
    };
    let plain = keys.open(sealed, Binding::Release { release_id })?;
    serde_json::from_slice(&plain).map_err(|_| KeyError::Open)
}

/// After a key rotation: seals again, under the current key, every secret and release
/// snapshot still under another one. Values under a key that is not loaded are left as
/// they are and counted. Returns (resealed, left).
pub async fn reseal_all(ctl: &Control) -> Result<(u64, u64), ApiError> {
    let Some(keys) = ctl.config.secrets.as_ref() else {
        return Ok((0, 0));
    };
    let current = keys.current_id();
    let (mut done, mut left) = (0, 0);
    let rows = sqlx::query("SELECT app_id, name, value FROM secrets WHERE key_id <> $1")
        .bind(current)
        .fetch_all(ctl.store.pool())
        .await?;
    for r in rows {
        let app_id: String = r.try_get("app_id")?;
        let name: String = r.try_get("name")?;
        let sealed: String = r.try_get("value")?;
        let at = Binding::Secret {
            app_id: &app_id,
            name: &name,
        };
        let Ok(plain) = keys.open(&sealed, at) else {
            left += 1;
            continue;
        };
        let again = keys.seal(&plain, at).map_err(key_error)?;
        sqlx::query("UPDATE secrets SET value = $1, key_id = $2 WHERE app_id = $3 AND name = $4 AND value = $5")
            .bind(&again)
            .bind(current)
            .bind(&app_id)
            .bind(&name)
            .bind(&sealed)
            .execute(ctl.store.pool())
            .await?;
        done += 1;
    }
    let rows = sqlx::query(
        "SELECT id, secrets FROM releases WHERE secrets IS NOT NULL AND secrets_key_id <> $1",
    )
    .bind(current)
    .fetch_all(ctl.store.pool())
    .await?;
    for r in rows {
        let id: String = r.try_get("id")?;
        let sealed: String = r.try_get("secrets")?;
        let at = Binding::Release { release_id: &id };
        let Ok(plain) = keys.open(&sealed, at) else {
            left += 1;
            continue;
        };
        let again = keys.seal(&plain, at).map_err(key_error)?;
        sqlx::query("UPDATE releases SET secrets = $1, secrets_key_id = $2 WHERE id = $3")
            .bind(&again)
            .bind(current)
            .bind(&id)
            .execute(ctl.store.pool())
            .await?;
        done += 1;
    }
    if done > 0 || left > 0 {
        tracing::info!(
            resealed = done,
            left,
            key = current,
            "secrets sealed again under the current key"
        );
    }
    if left > 0 {
        tracing::warn!(
            left,
            "some secrets are under a key that is not loaded: pass it with --secrets-old-key-file"
        );
    }
    Ok((done, left))
}
