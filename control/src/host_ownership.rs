//! Who may route where: the rules that keep one tenant from taking, nesting into or
//! shadowing another tenant's traffic.
//!
//! - **Hosts are held.** A route naming a host needs the caller's tenant to hold it: an
//!   operator assigned the host, or a wildcard covering it, to the tenant (DomainService,
//!   `platform domains`). The most specific assignment decides (`shop.example.com` over
//!   `*.example.com`), and assignments of different tenants never overlap. A host nobody
//!   holds is the operator's: only admin tokens route there (`127.0.0.1`, `localhost` on a
//!   laptop).
//! - **Default addresses are the platform's.** Hosts below the app-address zone
//!   ([`crate::app_address`]) are apps' own addresses: nobody holds or routes them.
//! - **The shared host's paths are namespaced.** Host-less routes (every host nobody routed)
//!   belong to the operator, and to each tenant under `/<tenant>`. A tenant's prefix is
//!   never nested into or wrapped by another tenant's (`/shop` vs `/shop/checkout`); only
//!   the operator's catch-all `/` sits above everyone's.

use platform_runtime::RouteSpec;
use platform_runtime::host_name::HostPattern;
use sqlx::Row;

use crate::Control;
use crate::auth::Caller;
use crate::error::ApiError;

/// A domain assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The pattern as stored (`shop.example.com`, `*.example.com`).
    pub name: String,
    /// Its tenant.
    pub tenant: String,
}

/// The assignment deciding who holds `pattern`: the most specific domain covering it.
pub async fn holder(
    conn: &mut sqlx::AnyConnection,
    pattern: &HostPattern,
) -> Result<Option<Holding>, sqlx::Error> {
    // Most specific first; the first assignment found decides (a handful of lookups).
    for name in covering_names(pattern) {
        if let Some(r) = sqlx::query("SELECT name, tenant FROM domains WHERE name = $1")
            .bind(&name)
            .fetch_optional(&mut *conn)
            .await?
        {
            return Ok(Some(Holding {
                name: r.try_get("name")?,
                tenant: r.try_get("tenant")?,
            }));
        }
    }
    Ok(None)
}

/// Every stored name that could cover `pattern`, most specific first: the pattern itself,
/// then wildcards over each parent domain (of the host, or of the wildcard's domain).
fn covering_names(pattern: &HostPattern) -> Vec<String> {
    let mut out = vec![pattern.to_string()];
    let start = match pattern {
        HostPattern::Exact(h) => h.as_str(),
        HostPattern::Wildcard(d) => d.as_str(),
    };
    if start.starts_with('[') || start.parse::<std::net::IpAddr>().is_ok() {
        return out;
    }
    let mut rest = start;
    while let Some((_, parent)) = rest.split_once('.') {
        // Wildcards cover domains of two labels or more.
        if parent.contains('.') {
            out.push(format!("*.{parent}"));
        }
        rest = parent;
    }
    out
}

/// All assignments of tenants other than `tenant`.
pub async fn foreign_domains(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
) -> Result<Vec<(HostPattern, Holding)>, sqlx::Error> {
    let rows = sqlx::query("SELECT name, tenant FROM domains WHERE tenant <> $1")
        .bind(tenant)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.try_get("name")?;
        if let Ok(p) = HostPattern::parse(&name) {
            out.push((
                p,
                Holding {
                    name,
                    tenant: r.try_get("tenant")?,
                },
            ));
        }
    }
    Ok(out)
}

/// Refuses a route `spec` for `caller` unless the rules in the module docs allow it.
pub async fn check_route(
    ctl: &Control,
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    spec: &RouteSpec,
) -> Result<(), ApiError> {
    match &spec.host {
        None => check_path_route(conn, caller, &spec.prefix).await,
        Some(host) => {
            let pattern =
                HostPattern::parse(host).map_err(|e| ApiError::invalid("host", e.to_string()))?;
            check_host_route(ctl, conn, caller, &pattern).await
        }
    }
}

async fn check_host_route(
    ctl: &Control,
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    pattern: &HostPattern,
) -> Result<(), ApiError> {
    if let Some(t) = &ctl.config.app_addresses
        && t.overlaps_zone(pattern)
    {
        return Err(ApiError::denied(format!(
            "hosts under {} are apps' own addresses, given by the platform: every app already answers at {}",
            t.zone(),
            t.host("<app>", "<tenant>")
        ))
        .on("host"));
    }
    match holder(conn, pattern).await? {
        Some(h) if h.tenant == caller.tenant => {}
        Some(_) => {
            return Err(
                ApiError::denied(format!("host {pattern} is held by another tenant")).on("host"),
            );
        }
        None if caller.is_admin() => {}
        None => {
            return Err(ApiError::denied(format!(
                "host {pattern} is not assigned to tenant {:?}: an operator assigns hosts with `platform domains add {pattern} --tenant {}`",
                caller.tenant, caller.tenant
            ))
            .on("host"));
        }
    }
    // A wildcard must not reach over hosts other tenants hold.
    if matches!(pattern, HostPattern::Wildcard(_)) {
        for (other, _) in foreign_domains(conn, &caller.tenant).await? {
            if pattern.covers(&other) {
                return Err(ApiError::denied(format!(
                    "route host {pattern} would cover {other}, which another tenant holds"
                ))
                .on("host"));
            }
        }
    }
    Ok(())
}

async fn check_path_route(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    prefix: &str,
) -> Result<(), ApiError> {
    let first = prefix
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    if !caller.is_admin() {
        if first != caller.tenant {
            return Err(ApiError::denied(format!(
                "on the shared host, tenant {t:?} routes paths under /{t} only (its namespace): use /{t}{suffix}, a host the tenant holds, or the app's own address",
                t = caller.tenant,
                suffix = if prefix == "/" { String::new() } else { prefix.to_string() }
            ))
            .on("path_prefix"));
        }
    } else if !first.is_empty() && first != caller.tenant {
        let taken = sqlx::query("SELECT id FROM tenants WHERE id = $1")
            .bind(first)
            .fetch_optional(&mut *conn)
            .await?;
        if taken.is_some() {
            return Err(ApiError::denied(format!(
                "/{first} is the path namespace of tenant {first:?} on the shared host"
            ))
            .on("path_prefix"));
        }
    }
    let rows = sqlx::query("SELECT prefix FROM routes WHERE host = '' AND tenant <> $1")
        .bind(&caller.tenant)
        .fetch_all(&mut *conn)
        .await?;
    for r in rows {
        let other: String = r.try_get("prefix")?;
        if other == "/" {
            continue;
        }
        let nests = is_within(prefix, &other);
        let wraps = prefix != "/" && is_within(&other, prefix);
        if nests || wraps {
            return Err(ApiError::denied(format!(
                "path {prefix} would {} {other}, which another tenant routes on the shared host",
                if nests { "nest inside" } else { "wrap" }
            ))
            .on("path_prefix"));
        }
    }
    Ok(())
}

/// True when `path` is `prefix` or below it, on segment boundaries.
fn is_within(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_names_run_from_specific_to_general() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert_eq!(
            covering_names(&p("a.b.example.com")),
            ["a.b.example.com", "*.b.example.com", "*.example.com"]
        );
        assert_eq!(
            covering_names(&p("*.b.example.com")),
            ["*.b.example.com", "*.example.com"]
        );
        assert_eq!(covering_names(&p("localhost")), ["localhost"]);
        assert_eq!(covering_names(&p("127.0.0.1")), ["127.0.0.1"]);
        assert_eq!(covering_names(&p("example.com")), ["example.com"]);
    }

    #[test]
    fn within_on_segment_boundaries() {
        assert!(is_within("/shop/checkout", "/shop"));
        assert!(is_within("/shop", "/shop"));
        assert!(!is_within("/shopping", "/shop"));
        assert!(is_within("/x", "/"));
    }
}
