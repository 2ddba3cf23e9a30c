//! The compile worker: turns each uploaded module into an artifact for the runtimes'
//! engine, ahead of any request, and lets waiting releases go live.
//!
//! Jobs are rows of `artifacts` in state `pending`, one per tenant and module: a tenant's
//! upload is compiled for that tenant even when another tenant's identical bytes were
//! compiled before, so neither the compile state nor its timing tells a tenant what another
//! uploaded (the artifact blob, identical either way, is simply written again). A worker
//! claims one, compiles it on a blocking thread, stores the artifact blob, and records
//! `ready` or `failed` with the reason. A claim is a lease: the worker renews it every
//! [`CLAIM_RENEW`] while it compiles, and a claim not renewed for [`STALE_CLAIM_MS`] is
//! taken over, so the job of a worker that died (`kill -9`, a node lost) goes on within
//! seconds, however long compiles take. Workers wake on upload notices and also poll, so a
//! lost notice only delays.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sqlx::Row;
use wasmtime::Engine;

use crate::Control;
use crate::api::releases::{activate_ready_releases, settle_pending_releases};
use crate::blobs::BlobStore;
use crate::store::now_ms;
use platform_runtime::abi::AbiKind;
use platform_runtime::module_cache::ArtifactKind;

/// A claim not renewed for this long is abandoned (its worker died) and taken over.
pub const STALE_CLAIM_MS: i64 = 15 * 1000;

/// How often a compiling worker renews its claim: well within [`STALE_CLAIM_MS`], so a
/// slow database round trip never lets a live worker's claim lapse.
pub const CLAIM_RENEW: Duration = Duration::from_secs(4);

/// Runs the worker until `shutdown` resolves.
pub async fn run(
    ctl: Arc<Control>,
    engine: Engine,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut notices = match ctl.events.subscribe_modules().await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "worker cannot subscribe to upload notices; polling only");
            None
        }
    };
    tokio::pin!(shutdown);
    tracing::info!(
        engine = ctl.config.engine.as_str(),
        "compile worker started"
    );
    'serve: loop {
        loop {
            // Shutdown wins over the next job, and cancels the one running: its claim
            // expires and another worker (or this one, restarted) takes it again.
            let job = tokio::select! {
                biased;
                () = &mut shutdown => break 'serve,
                job = claim(&ctl) => job,
            };
            let (tenant, digest) = match job {
                Ok(Some(job)) => job,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim a compile job; retrying later");
                    break;
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    release_claim(&ctl, &tenant, &digest).await;
                    break 'serve;
                }
                done = run_claimed(&ctl, &engine, &tenant, &digest) => if let Err(e) = done {
                    tracing::error!(error = %e, "compile job failed to run; retrying later");
                    break;
                },
            }
        }
        if let Err(e) = settle_pending_releases(&ctl).await {
            tracing::error!(error = %e, "cannot settle pending releases; retrying later");
        }
        let wait = tokio::time::sleep(Duration::from_secs(5));
        tokio::select! {
            () = &mut shutdown => break 'serve,
            () = wait => {}
            _ = async {
                match notices.as_mut() {
                    Some(n) => n.next().await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
    tracing::info!("compile worker stopped");
}

/// Claims and compiles one pending module. Returns false when there was none.
pub async fn run_one(ctl: &Control, engine: &Engine) -> Result<bool, String> {
    let Some((tenant, digest)) = claim(ctl).await.map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    run_claimed(ctl, engine, &tenant, &digest).await?;
    Ok(true)
}

/// Hands a claimed job back (shutdown during its compile), so the next worker to look
/// takes it at once instead of after [`STALE_CLAIM_MS`].
async fn release_claim(ctl: &Control, tenant: &str, digest: &str) {
    let released = sqlx::query("UPDATE artifacts SET state = 'pending' WHERE tenant = $1 AND digest = $2 AND engine = $3 AND state = 'compiling'")
        .bind(tenant)
        .bind(digest)
        .bind(ctl.config.engine.as_str())
        .execute(ctl.store.pool());
    match tokio::time::timeout(Duration::from_secs(2), released).await {
        Ok(Ok(_)) => {
            tracing::info!(digest = %digest, "shutdown: compile cancelled, job handed back")
        }
        Ok(Err(e)) => {
            tracing::warn!(digest = %digest, error = %e, "shutdown: cannot hand the compile job back; it is retried once its claim expires")
        }
        Err(_) => {
            tracing::warn!(digest = %digest, "shutdown: handing the compile job back timed out; it is retried once its claim expires")
        }
    }
}

/// Compiles a job this worker claimed and records the outcome.
async fn run_claimed(
    ctl: &Control,
    engine: &Engine,
    tenant: &str,
    digest: &str,
) -> Result<(), String> {
    let (tenant, digest) = (tenant.to_string(), digest.to_string());
    let started = std::time::Instant::now();
    let result = {
        let compiling = compile(ctl, engine, &digest);
        tokio::pin!(compiling);
        let mut renew = tokio::time::interval(CLAIM_RENEW);
        renew.tick().await;
        loop {
            tokio::select! {
                result = &mut compiling => break result,
                _ = renew.tick() => renew_claim(ctl, &tenant, &digest).await,
            }
        }
    };
    let now = now_ms();
    let fp = ctl.config.engine.as_str();
    match &result {
        Ok(()) => {
            sqlx::query("UPDATE artifacts SET state = 'ready', error = NULL, updated_at = $1 WHERE tenant = $2 AND digest = $3 AND engine = $4")
                .bind(now)
                .bind(&tenant)
                .bind(&digest)
                .bind(fp)
                .execute(ctl.store.pool())
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(digest = %digest, ms = started.elapsed().as_millis() as u64, "module compiled");
        }
        Err(reason) => {
            sqlx::query("UPDATE artifacts SET state = 'failed', error = $1, updated_at = $2 WHERE tenant = $3 AND digest = $4 AND engine = $5")
                .bind(reason)
                .bind(now)
                .bind(&tenant)
                .bind(&digest)
                .bind(fp)
                .execute(ctl.store.pool())
                .await
                .map_err(|e| e.to_string())?;
            tracing::warn!(digest = %digest, error = %reason, "module failed to compile");
        }
    }
    activate_ready_releases(
        ctl,
        &tenant,
        &digest,
        result.as_ref().err().map(String::as_str),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// Renews this worker's claim on a job it is compiling (see [`STALE_CLAIM_MS`]).
async fn renew_claim(ctl: &Control, tenant: &str, digest: &str) {
    let renewed = sqlx::query("UPDATE artifacts SET claimed_at = $1 WHERE tenant = $2 AND digest = $3 AND engine = $4 AND state = 'compiling'")
        .bind(now_ms())
        .bind(tenant)
        .bind(digest)
        .bind(ctl.config.engine.as_str())
        .execute(ctl.store.pool())
        .await;
    if let Err(e) = renewed {
        tracing::warn!(digest = %digest, error = %e, "cannot renew the compile claim; another worker may take the job over");
    }
}

/// Claims the oldest pending job: (tenant, digest).
async fn claim(ctl: &Control) -> Result<Option<(String, String)>, sqlx::Error> {
    let now = now_ms();
    let fp = ctl.config.engine.as_str();
    let mut tx = ctl.store.begin().await?;
    macro_rules! pending {
        ($lock:literal) => {
            concat!("SELECT tenant, digest FROM artifacts WHERE engine = $1 AND (state = 'pending' OR (state = 'compiling' AND claimed_at < $2)) ORDER BY updated_at LIMIT 1", $lock)
        };
    }
    let query = match ctl.store.backend() {
        crate::store::Backend::Postgres => pending!(" FOR UPDATE SKIP LOCKED"),
        crate::store::Backend::Sqlite => pending!(""),
    };
    let row = sqlx::query(query)
        .bind(fp)
        .bind(now - STALE_CLAIM_MS)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        tx.commit().await?;
        return Ok(None);
    };
    let tenant: String = row.try_get("tenant")?;
    let digest: String = row.try_get("digest")?;
    sqlx::query("UPDATE artifacts SET state = 'compiling', claimed_at = $1, updated_at = $2 WHERE tenant = $3 AND digest = $4 AND engine = $5")
        .bind(now)
        .bind(now)
        .bind(&tenant)
        .bind(&digest)
        .bind(fp)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some((tenant, digest)))
}

async fn compile(ctl: &Control, engine: &Engine, digest: &str) -> Result<(), String> {
    let staging = tempfile::tempdir_in(&ctl.config.staging_dir).map_err(|e| e.to_string())?;
    let wasm_path = staging.path().join("module.wasm");
    ctl.blobs
        .get_to_file(&BlobStore::module_key(digest), &wasm_path)
        .await
        .map_err(|e| format!("cannot read the module: {e}"))?;
    let compiler = engine.clone();
    let out = staging.path().join("artifact.cwasm");
    let out2 = out.clone();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let bytes = std::fs::read(&wasm_path).map_err(|e| e.to_string())?;
        // A module or a component: the artifact's header tells the runtime which.
        let compiled = platform_runtime::engine::precompile(&compiler, &bytes)
            .map_err(|e| format!("{e:#}"))?;
        std::fs::write(&out2, compiled).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("compiler thread: {e}"))??;
    ctl.blobs
        .put_file(
            &BlobStore::artifact_key(digest, ctl.config.engine.as_str()),
            &out,
        )
        .await
        .map_err(|e| format!("cannot store the artifact: {e}"))?;
    snapshot(ctl, engine, digest, staging.path()).await;
    Ok(())
}

/// For an SDK module, also makes the pre-initialized snapshot that `per-request` releases
/// run (Go's start-up done once here instead of on every request) and stores it beside the
/// plain artifact. A module whose start-up fails without its release's variables still
/// serves pooled releases, so a failure is logged rather than failing the module; the
/// runtime reports it on a per-request release.
async fn snapshot(ctl: &Control, engine: &Engine, digest: &str, staging: &std::path::Path) {
    let wasm_path = staging.join("module.wasm");
    let Ok(bytes) = tokio::fs::read(&wasm_path).await else {
        return;
    };
    if !matches!(platform_runtime::abi::detect(&bytes), Ok(i) if i.kind == AbiKind::Sdk) {
        return;
    }
    let started = std::time::Instant::now();
    let linker = match platform_runtime::guest::build_linker(engine) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            tracing::warn!(digest = %digest, error = %e, "cannot build the snapshot linker");
            return;
        }
    };
    let snap = match platform_runtime::sdk::snapshot::make(engine, &linker, bytes).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(digest = %digest, error = %e, "no per-request snapshot for this module");
            return;
        }
    };
    let engine2 = engine.clone();
    let out = staging.join("snapshot.cwasm");
    let out2 = out.clone();
    let compiled = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let compiled = engine2
            .precompile_module(&snap)
            .map_err(|e| format!("{e:#}"))?;
        std::fs::write(&out2, compiled).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    if let Err(e) = compiled {
        tracing::warn!(digest = %digest, error = %e, "cannot compile the per-request snapshot");
        return;
    }
    let flavor = ArtifactKind::Snapshot.flavor(&ctl.config.engine);
    match ctl
        .blobs
        .put_file(&BlobStore::artifact_key(digest, &flavor), &out)
        .await
    {
        Ok(()) => {
            tracing::info!(digest = %digest, ms = started.elapsed().as_millis() as u64, "per-request snapshot stored")
        }
        Err(e) => {
            tracing::warn!(digest = %digest, error = %e, "cannot store the per-request snapshot")
        }
    }
}
