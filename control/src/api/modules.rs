//! Modules: the streaming upload endpoint, listing, and downloads for runtimes.
//!
//! `POST /v1/modules?name=hello.wasm` with the raw bytes as the body (any length up to the
//! configured limit, chunked or not) and `Authorization: Bearer <token>`. The body is
//! streamed to a staging file while it is hashed; the file is then validated in place
//! (memory-mapped: a 100 MB module is never copied into memory), stored under its digest
//! (one blob, whoever uploads the same bytes) and recorded for the caller's tenant with a
//! compile job of its own, so nothing in the answer or its timing says whether another
//! tenant uploaded the same bytes. Anything refused leaves no row and no blob behind.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use platform_proto::v1::{
    Abi, CompileState, GetModuleRequest, GetModuleResponse, ListModulesRequest,
    ListModulesResponse, Module,
};
use platform_runtime::abi;
use sha2::{Digest as _, Sha256};
use sqlx::Row;
use tokio::io::AsyncWriteExt;

use crate::Control;
use crate::auth::Caller;
use crate::blobs::BlobStore;
use crate::connect::Codec;
use crate::error::{ApiError, Code};
use crate::store::{now_ms, timestamp};

/// Query of the upload endpoint.
#[derive(Debug, serde::Deserialize)]
pub struct UploadQuery {
    /// Original file name, for people.
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /v1/modules`: streams, hashes, validates and stores a module.
pub async fn upload(
    State(ctl): State<Arc<Control>>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = match ctl.authenticate(&headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match store_upload(&ctl, &caller, q.name.as_deref(), &headers, body).await {
        Ok(m) => (StatusCode::OK, Codec::Json.encode(&m)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The upload pipeline, usable in-process (the dashboard calls it directly).
pub async fn store_upload(
    ctl: &Control,
    caller: &Caller,
    name: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Module, ApiError> {
    let limit = ctl.config.max_module_size;
    let too_large = || {
        ApiError::new(
            Code::ResourceExhausted,
            format!("the module is larger than the limit of {limit} bytes"),
        )
        .on("module")
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(too_large());
    }
    let name = name
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
        .unwrap_or_else(|| "module.wasm".into());

    // 1. Stream to a staging file, hashing as it goes.
    let staged = tempfile::NamedTempFile::new_in(&ctl.config.staging_dir)
        .map_err(|e| ApiError::internal("staging upload", e))?;
    let (std_file, staged_path) = staged.into_parts();
    let mut file = tokio::fs::File::from_std(std_file);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = chunk.map_err(|e| {
            if e.to_string().contains("length limit") {
                too_large()
            } else {
                ApiError::invalid("module", format!("the upload was interrupted: {e}"))
            }
        })?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large());
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal("writing upload", e))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::internal("writing upload", e))?;
    drop(file);
    if size == 0 {
        return Err(ApiError::invalid(
            "module",
            "the upload is empty: send the .wasm bytes as the request body",
        ));
    }
    let digest = hex::encode(hasher.finalize());

    // 2. Validate in place.
    let info = {
        let path = staged_path.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<abi::AbiInfo, ApiError> {
            let f = std::fs::File::open(&path).map_err(|e| ApiError::internal("reading upload", e))?;
            #[expect(unsafe_code, reason = "maps a private staging file this process just wrote and nobody else modifies")]
            // SAFETY: see the reason above; the map is read-only and dropped before the file.
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| ApiError::internal("mapping upload", e))?;
            abi::detect(&map).map_err(|e| ApiError::invalid("module", e.to_string()))
        })
        .await
        .map_err(|e| ApiError::internal("validating upload", e))??
    };

    // 3. Store the bytes under their digest, then record them for the tenant. The blob is
    // written even when it exists (same bytes, same key): skipping the write would make
    // another tenant's earlier upload of these bytes visible in this upload's timing.
    let key = BlobStore::module_key(&digest);
    ctl.blobs
        .put_file(&key, &staged_path)
        .await
        .map_err(|e| ApiError::internal("blob store", e))?;
    drop(staged_path);
    let now = now_ms();
    // Concurrent uploads of the same bytes both succeed: the rows are inserted once
    // (ON CONFLICT), never raced into a unique violation.
    let mut tx = ctl.store.begin().await?;
    crate::quota::check_module(&mut tx, &ctl.config.quotas, &caller.tenant, &digest, size).await?;
    sqlx::query("INSERT INTO modules (tenant, digest, size, abi, name, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, digest) DO NOTHING")
        .bind(&caller.tenant)
        .bind(&digest)
        .bind(size as i64)
        .bind(info.kind.as_str())
        .bind(&name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let engine = ctl.config.engine.as_str();
    // A compile job of the tenant's own: compile state is never shared across tenants.
    let new_job = sqlx::query("INSERT INTO artifacts (tenant, digest, engine, state, updated_at) VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (tenant, digest, engine) DO NOTHING")
        .bind(&caller.tenant)
        .bind(&digest)
        .bind(engine)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    tx.commit().await?;
    if new_job {
        ctl.events.publish_module(&digest).await;
    }
    tracing::info!(tenant = %caller.tenant, digest = %digest, size, abi = info.kind.as_str(), "module uploaded");
    module_for(ctl, caller, &digest).await
}

/// Lists the caller's modules, newest first.
pub async fn list_modules(
    ctl: Arc<Control>,
    caller: Caller,
    _req: ListModulesRequest,
) -> Result<ListModulesResponse, ApiError> {
    let digests: Vec<String> =
        sqlx::query("SELECT digest FROM modules WHERE tenant = $1 ORDER BY created_at DESC")
            .bind(&caller.tenant)
            .fetch_all(ctl.store.pool())
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
    let mut modules = Vec::with_capacity(digests.len());
    for d in digests {
        modules.push(module_for(&ctl, &caller, &d).await?);
    }
    Ok(ListModulesResponse { modules })
}

/// One of the caller's modules.
pub async fn get_module(
    ctl: Arc<Control>,
    caller: Caller,
    req: GetModuleRequest,
) -> Result<GetModuleResponse, ApiError> {
    Ok(GetModuleResponse {
        module: Some(module_for(&ctl, &caller, &req.digest).await?),
    })
}

/// The API form of a module with its compile state for the runtimes' engine.
pub async fn module_for(ctl: &Control, caller: &Caller, digest: &str) -> Result<Module, ApiError> {
    let row = sqlx::query(
        "SELECT m.digest, m.size, m.abi, m.name, m.created_at, a.state, a.error FROM modules m LEFT JOIN artifacts a ON a.tenant = m.tenant AND a.digest = m.digest AND a.engine = $1 WHERE m.tenant = $2 AND m.digest = $3",
    )
    .bind(ctl.config.engine.as_str())
    .bind(&caller.tenant)
    .bind(digest)
    .fetch_optional(ctl.store.pool())
    .await?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("no module {digest}")).on("module_digest"));
    };
    let abi: String = row.try_get("abi")?;
    let state: Option<String> = row.try_get("state")?;
    Ok(Module {
        digest: row.try_get("digest")?,
        size: row.try_get::<i64, _>("size")? as u64,
        abi: match abi.as_str() {
            "wagi" => Abi::Wagi,
            "sdk" => Abi::Sdk,
            "component" => Abi::Component,
            _ => Abi::Unspecified,
        } as i32,
        compile_state: match state.as_deref() {
            Some("ready") => CompileState::Ready,
            Some("failed") => CompileState::Failed,
            _ => CompileState::Pending,
        } as i32,
        compile_error: row
            .try_get::<Option<String>, _>("error")?
            .unwrap_or_default(),
        create_time: Some(timestamp(row.try_get("created_at")?)),
        name: row.try_get("name")?,
    })
}

/// `GET /v1/modules/{digest}/wasm`: the bytes, to the tenant owning them, an admin or a
/// runtime.
pub async fn download_module(
    State(ctl): State<Arc<Control>>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Response {
    let caller = match ctl.authenticate_reader(&headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if caller.require_feed_reader("").is_err() {
        match module_for(&ctl, &caller, &digest).await {
            Ok(_) => {}
            Err(e) => return e.into_response(),
        }
    }
    stream_blob(&ctl, &BlobStore::module_key(&digest), "application/wasm").await
}

/// `GET /v1/artifacts/{digest}/{engine}`: a compiled artifact, to runtimes (and admins).
pub async fn download_artifact(
    State(ctl): State<Arc<Control>>,
    Path((digest, engine)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let caller = match ctl.authenticate_reader(&headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = caller.require_feed_reader("downloading artifacts") {
        return e.into_response();
    }
    if !is_hex(&digest)
        || !engine
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return ApiError::invalid("digest", "malformed digest or engine").into_response();
    }
    stream_blob(
        &ctl,
        &BlobStore::artifact_key(&digest, &engine),
        "application/octet-stream",
    )
    .await
}

async fn stream_blob(ctl: &Control, key: &str, content_type: &'static str) -> Response {
    match ctl.blobs.get_stream(key).await {
        Ok((size, stream)) => (
            [
                (header::CONTENT_TYPE, content_type.to_string()),
                (header::CONTENT_LENGTH, size.to_string()),
            ],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(crate::blobs::BlobError::Store(object_store::Error::NotFound { .. })) => {
            ApiError::not_found(format!("no such object {key}")).into_response()
        }
        Err(e) => ApiError::internal("blob store", e).into_response(),
    }
}

fn is_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
