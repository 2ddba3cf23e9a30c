//! Operator limits: caps on what a release may ask for, and per-tenant quotas on what a
//! tenant may store. Zero means "no limit" everywhere (the built-in maxima still apply to
//! releases). Quota checks run inside the transaction that adds the object, after locking
//! the tenant's row, so concurrent uploads cannot overshoot together.

use crate::error::{ApiError, Code};
use crate::store::Tx;
use sqlx::Row;

/// Caps on release limits (`platform control --max-release-memory` ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReleaseCaps {
    /// Largest memory limit a release may ask for, bytes.
    pub memory_bytes: u64,
    /// Longest per-request timeout, milliseconds.
    pub timeout_ms: u64,
    /// Largest request body limit, bytes.
    pub max_body_bytes: u64,
    /// Largest response limit, bytes.
    pub max_response_bytes: u64,
}

/// Per-tenant quotas (`platform control --max-apps-per-tenant` ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantQuotas {
    /// Apps per tenant.
    pub apps: u64,
    /// Modules per tenant.
    pub modules: u64,
    /// Total bytes of a tenant's modules.
    pub module_bytes: u64,
}

/// Applies `cap` to one release limit: an unset value (`None`) takes `default` lowered to the
/// cap; an explicit one above the cap is refused with a message naming the cap's flag.
pub fn capped(
    field: &'static str,
    what: &str,
    asked: Option<u64>,
    default: u64,
    cap: u64,
    flag: &str,
    show: impl Fn(u64) -> String,
) -> Result<u64, ApiError> {
    match asked {
        None if cap > 0 => Ok(default.min(cap)),
        None => Ok(default),
        Some(v) if cap > 0 && v > cap => Err(ApiError::invalid(
            field,
            format!(
                "{what} {} is above this installation's cap of {} (set by the operator with {flag})",
                show(v),
                show(cap)
            ),
        )),
        Some(v) => Ok(v),
    }
}

/// Locks the tenant's row until `tx` ends, so quota checks of one tenant run one at a time.
pub async fn lock_tenant(tx: &mut Tx, tenant: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tenants SET created_at = created_at WHERE id = $1")
        .bind(tenant)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Refuses a new app when the tenant has `quotas.apps` already.
pub async fn check_apps(tx: &mut Tx, quotas: &TenantQuotas, tenant: &str) -> Result<(), ApiError> {
    if quotas.apps == 0 {
        return Ok(());
    }
    lock_tenant(tx, tenant).await?;
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM apps WHERE tenant = $1")
        .bind(tenant)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    if n as u64 >= quotas.apps {
        return Err(ApiError::new(
            Code::ResourceExhausted,
            format!(
                "tenant {tenant:?} has {n} apps, its quota (--max-apps-per-tenant {}): delete one first",
                quotas.apps
            ),
        )
        .on("name"));
    }
    Ok(())
}

/// Refuses a new module of `size` bytes that would take the tenant over its module count or
/// stored-bytes quota. A module the tenant already has is never refused (it adds nothing).
pub async fn check_module(
    tx: &mut Tx,
    quotas: &TenantQuotas,
    tenant: &str,
    digest: &str,
    size: u64,
) -> Result<(), ApiError> {
    if quotas.modules == 0 && quotas.module_bytes == 0 {
        return Ok(());
    }
    lock_tenant(tx, tenant).await?;
    let have = sqlx::query("SELECT 1 FROM modules WHERE tenant = $1 AND digest = $2")
        .bind(tenant)
        .bind(digest)
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
    if have {
        return Ok(());
    }
    let row = sqlx::query(
        "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM modules WHERE tenant = $1",
    )
    .bind(tenant)
    .fetch_one(&mut **tx)
    .await?;
    let count = row.try_get::<i64, _>(0)? as u64;
    let bytes = row.try_get::<i64, _>(1)? as u64;
    if quotas.modules > 0 && count >= quotas.modules {
        return Err(ApiError::new(
            Code::ResourceExhausted,
            format!(
                "tenant {tenant:?} has {count} modules, its quota (--max-modules-per-tenant {})",
                quotas.modules
            ),
        )
        .on("module"));
    }
    if quotas.module_bytes > 0 && bytes + size > quotas.module_bytes {
        return Err(ApiError::new(
            Code::ResourceExhausted,
            format!(
                "this module ({size} bytes) would take tenant {tenant:?} to {} bytes of modules, over its quota (--max-module-bytes-per-tenant {} bytes)",
                bytes + size,
                quotas.module_bytes
            ),
        )
        .on("module"));
    }
    Ok(())
}
