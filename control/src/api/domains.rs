//! `DomainService`: operators assign hosts (and wildcards) to tenants; a tenant routes only
//! on hosts it holds. See [`crate::host_ownership`] for the rules.

use std::sync::Arc;

use platform_proto::v1::{
    CreateDomainRequest, CreateDomainResponse, DeleteDomainRequest, DeleteDomainResponse, Domain,
    ListDomainsRequest, ListDomainsResponse,
};
use platform_runtime::host_name::HostPattern;
use sqlx::Row;

use crate::Control;
use crate::auth::{self, Caller, check_name};
use crate::error::ApiError;
use crate::host_ownership::foreign_domains;
use crate::store::{is_unique_violation, now_ms, timestamp};

fn parse(name: &str) -> Result<HostPattern, ApiError> {
    HostPattern::parse(name).map_err(|e| ApiError::invalid("name", e.to_string()))
}

/// Assigns a host or wildcard to a tenant (admin only). Refused when it overlaps another
/// tenant's assignment, reaches into the app-address zone, or covers hosts other tenants
/// already route on.
pub async fn create_domain(
    ctl: Arc<Control>,
    caller: Caller,
    req: CreateDomainRequest,
) -> Result<CreateDomainResponse, ApiError> {
    caller.require_admin("assigning hosts to tenants")?;
    let pattern = parse(&req.name)?;
    let tenant = if req.tenant.trim().is_empty() {
        caller.tenant.clone()
    } else {
        req.tenant.trim().to_string()
    };
    check_name("tenant", &tenant).map_err(|m| ApiError::invalid("tenant", m))?;
    if let Some(t) = &ctl.config.app_addresses
        && t.overlaps_zone(&pattern)
    {
        return Err(ApiError::invalid(
            "name",
            format!(
                "hosts under {} are apps' own addresses and cannot be assigned",
                t.zone()
            ),
        ));
    }
    let mut tx = ctl.store.begin().await?;
    ctl.store.lock_serving(&mut tx).await?;
    for (other, holding) in foreign_domains(&mut tx, &tenant).await? {
        if other.overlaps(&pattern) {
            return Err(ApiError::exists(format!(
                "{pattern} overlaps {}, held by tenant {:?}: remove that first",
                holding.name, holding.tenant
            ))
            .on("name"));
        }
    }
    let routes =
        sqlx::query("SELECT host, prefix, tenant FROM routes WHERE host <> '' AND tenant <> $1")
            .bind(&tenant)
            .fetch_all(&mut *tx)
            .await?;
    for r in routes {
        let host: String = r.try_get("host")?;
        if HostPattern::parse(&host).is_ok_and(|h| pattern.overlaps(&h)) {
            let prefix: String = r.try_get("prefix")?;
            let owner: String = r.try_get("tenant")?;
            return Err(ApiError::failed(format!(
                "tenant {owner:?} routes {host}{prefix}, which {pattern} covers: remove that route first"
            ))
            .on("name"));
        }
    }
    auth::ensure_tenant(&mut tx, &tenant).await?;
    let now = now_ms();
    let name = pattern.to_string();
    let res = sqlx::query("INSERT INTO domains (name, tenant, created_at) VALUES ($1, $2, $3)")
        .bind(&name)
        .bind(&tenant)
        .bind(now)
        .execute(&mut *tx)
        .await;
    match res {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::exists(format!("{name} is already assigned")).on("name"));
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(CreateDomainResponse {
        domain: Some(Domain {
            name,
            tenant,
            create_time: Some(timestamp(now)),
        }),
    })
}

/// Lists assignments: all (or one tenant's) for admins, the caller's own otherwise.
pub async fn list_domains(
    ctl: Arc<Control>,
    caller: Caller,
    req: ListDomainsRequest,
) -> Result<ListDomainsResponse, ApiError> {
    let tenant = if caller.is_admin() {
        Some(req.tenant.trim().to_string()).filter(|t| !t.is_empty())
    } else {
        Some(caller.tenant.clone())
    };
    let rows = match &tenant {
        Some(t) => {
            sqlx::query(
                "SELECT name, tenant, created_at FROM domains WHERE tenant = $1 ORDER BY name",
            )
            .bind(t)
            .fetch_all(ctl.store.pool())
            .await?
        }
        None => {
            sqlx::query("SELECT name, tenant, created_at FROM domains ORDER BY tenant, name")
                .fetch_all(ctl.store.pool())
                .await?
        }
    };
    let domains = rows
        .iter()
        .map(|r| {
            Ok(Domain {
                name: r.try_get("name")?,
                tenant: r.try_get("tenant")?,
                create_time: Some(timestamp(r.try_get("created_at")?)),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(ListDomainsResponse { domains })
}

/// Takes an assignment back (admin only). Refused while the tenant still routes on hosts
/// that only this assignment lets it hold.
pub async fn delete_domain(
    ctl: Arc<Control>,
    caller: Caller,
    req: DeleteDomainRequest,
) -> Result<DeleteDomainResponse, ApiError> {
    caller.require_admin("taking hosts back from tenants")?;
    let pattern = parse(&req.name)?;
    let name = pattern.to_string();
    let mut tx = ctl.store.begin().await?;
    ctl.store.lock_serving(&mut tx).await?;
    let Some(row) = sqlx::query("SELECT tenant FROM domains WHERE name = $1")
        .bind(&name)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Err(ApiError::not_found(format!("{name} is not assigned")).on("name"));
    };
    let tenant: String = row.try_get("tenant")?;
    let others: Vec<HostPattern> =
        sqlx::query("SELECT name FROM domains WHERE tenant = $1 AND name <> $2")
            .bind(&tenant)
            .bind(&name)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .filter_map(|r| r.try_get::<String, _>("name").ok())
            .filter_map(|n| HostPattern::parse(&n).ok())
            .collect();
    let routes = sqlx::query("SELECT host, prefix FROM routes WHERE host <> '' AND tenant = $1")
        .bind(&tenant)
        .fetch_all(&mut *tx)
        .await?;
    for r in routes {
        let host: String = r.try_get("host")?;
        let Ok(h) = HostPattern::parse(&host) else {
            continue;
        };
        if pattern.covers(&h) && !others.iter().any(|o| o.covers(&h)) {
            let prefix: String = r.try_get("prefix")?;
            return Err(ApiError::failed(format!(
                "tenant {tenant:?} still routes {host}{prefix} on {name}: remove its routes there first"
            ))
            .on("name"));
        }
    }
    sqlx::query("DELETE FROM domains WHERE name = $1")
        .bind(&name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(DeleteDomainResponse {})
}
