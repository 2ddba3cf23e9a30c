//! Platform's control plane: the source of truth for tenants, apps, modules, releases,
//! routes and tokens, and the path by which a change reaches every runtime.
//!
//! - API: Connect services from `proto/platform/v1` ([`router`]), plus a streaming module
//!   upload endpoint and artifact/module downloads for runtimes ([`api::modules`]).
//! - Store: SQLite or PostgreSQL ([`store`]); blobs on files or S3 ([`blobs`]).
//! - Compilation: a worker compiles each new module ahead of time ([`worker`]).
//! - Events: serving changes go out as revisioned events ([`feed`], [`events`]).
//!
//! Not here: serving traffic (that is `platform-runtime`, which only ever sees the feed).

pub mod api;
pub mod app_address;
pub mod auth;
pub mod blobs;
pub mod connect;
pub mod dedicated;
pub mod error;
pub mod events;
pub mod feed;
pub mod host_ownership;
pub mod private_fs;
pub mod quota;
pub mod secrets;
pub mod store;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::HeaderMap;
use platform_runtime::engine::EngineFingerprint;

use crate::auth::Caller;
use crate::blobs::BlobStore;
use crate::error::ApiError;
use crate::events::EventBus;
use crate::store::Store;

pub use api::router;

/// Settings of the control plane.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Base URL users reach apps at (printed in route URLs).
    pub public_url: String,
    /// Largest module accepted, in bytes.
    pub max_module_size: u64,
    /// Where uploads are staged while they are hashed and validated.
    pub staging_dir: PathBuf,
    /// Fingerprint of the runtimes' engine (artifacts are compiled for it).
    pub engine: EngineFingerprint,
    /// Every app's own address (`<app>--<tenant>.<base domain>`), when the operator set a
    /// base domain or template.
    pub app_addresses: Option<app_address::AppAddressTemplate>,
    /// The operator's caps on release limits.
    pub caps: quota::ReleaseCaps,
    /// The operator's per-tenant quotas.
    pub quotas: quota::TenantQuotas,
    /// The keys sealing secrets; `None` turns secrets off.
    pub secrets: Option<secrets::SecretKeys>,
    /// Where dedicated apps' Services are reached (the feed's `service_url`).
    pub dedicated_addresses: dedicated::address::ServiceAddressTemplate,
}

/// The control plane: store, blobs, events and configuration, shared by every handler.
#[derive(Debug)]
pub struct Control {
    /// Database.
    pub store: Store,
    /// Module and artifact bytes.
    pub blobs: BlobStore,
    /// Change notifications.
    pub events: EventBus,
    /// Settings.
    pub config: ControlConfig,
}

/// Errors starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Database.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Blob store.
    #[error(transparent)]
    Blob(#[from] blobs::BlobError),
    /// Anything else at start-up.
    #[error("{0}")]
    Other(String),
}

/// The first admin token, created on an empty database.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The secret (shown once).
    pub secret: String,
    /// Where it was written, mode 0600.
    pub path: PathBuf,
}

impl Control {
    /// Builds the control plane on an opened store, blob store and bus.
    pub fn new(
        store: Store,
        blobs: BlobStore,
        events: EventBus,
        config: ControlConfig,
    ) -> Arc<Self> {
        let _ = private_fs::private_dir(&config.staging_dir);
        Arc::new(Control {
            store,
            blobs,
            events,
            config,
        })
    }

    /// Resolves the bearer token of a request for any call but the runtimes' reads:
    /// runtime tokens are refused here, so a new call is closed to them by default.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let caller = self.authenticate_reader(headers).await?;
        if caller.role == auth::Role::Runtime {
            return Err(auth::runtime_refused());
        }
        Ok(caller)
    }

    /// Resolves the bearer token of a request, runtime tokens included: only for the
    /// serving feed and the module and artifact downloads.
    pub async fn authenticate_reader(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(secret) = auth::bearer(headers) else {
            return Err(ApiError::unauthenticated(
                "missing bearer token: send `Authorization: Bearer <token>`",
            ));
        };
        auth::caller_for_secret(&self.store, secret).await
    }

    /// On a database without tokens, creates tenant `default` with an admin token and
    /// writes its secret to `token_file` (mode 0600). Returns it when one was created.
    /// `preset` is a secret chosen by the operator (from a Kubernetes Secret, say), so a
    /// cluster can be brought up in one pass; by default a random one is made. Safe when
    /// several control replicas start at once on an empty database: one creates it.
    pub async fn bootstrap_admin(
        &self,
        token_file: &std::path::Path,
        preset: Option<&str>,
    ) -> Result<Option<Bootstrap>, ControlError> {
        if let Some(p) = preset
            && (p.len() < 32 || p.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(ControlError::Other(
                "the bootstrap token must be at least 32 characters without spaces".into(),
            ));
        }
        let mut tx = self
            .store
            .begin()
            .await
            .map_err(|e| ControlError::Other(e.to_string()))?;
        if self.store.backend() == store::Backend::Postgres {
            // Serializes concurrent bootstraps (and serving changes) on the feed row.
            sqlx::query("SELECT revision FROM feed_state WHERE id = 1 FOR UPDATE")
                .execute(&mut *tx)
                .await
                .map_err(|e| ControlError::Other(e.to_string()))?;
        }
        let any: Option<(String,)> = sqlx::query_as("SELECT id FROM tokens LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| ControlError::Other(e.to_string()))?;
        if any.is_some() {
            return Ok(None);
        }
        auth::ensure_tenant(&mut tx, "default")
            .await
            .map_err(|e| ControlError::Other(e.to_string()))?;
        let token = auth::create_token(
            &mut tx,
            "default",
            "bootstrap admin",
            auth::Role::Admin,
            preset,
        )
        .await
        .map_err(|e| ControlError::Other(e.to_string()))?;
        write_secret_file(token_file, &token.secret).map_err(|e| {
            ControlError::Other(format!("cannot write {}: {e}", token_file.display()))
        })?;
        tx.commit()
            .await
            .map_err(|e| ControlError::Other(e.to_string()))?;
        Ok(Some(Bootstrap {
            secret: token.secret,
            path: token_file.to_path_buf(),
        }))
    }
}

/// Writes `secret` to `path` readable by the owner only.
pub fn write_secret_file(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    std::io::Write::write_all(&mut f, format!("{secret}\n").as_bytes())
}

/// Empties a control plane's staging directory at process start (creating it, private,
/// when missing). It belongs to one process (it lives in the process's data directory), so
/// whatever is in it then was left by a predecessor killed mid-upload or mid-compile: an
/// upload that was never acknowledged, or a compile that will run again. Nothing else may
/// use the directory while this runs.
pub fn clear_staging(dir: &std::path::Path) {
    let _ = private_fs::private_dir(dir);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a staged file left by an earlier process")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover staged file")
            }
        }
    }
}
