//! The local feed of `platform runtime --manifest`: turns a `platform.toml` into the
//! runtime's routes without a control plane.
//!
//! Modules are copied into the content-addressed module store, compiled ahead of traffic,
//! and the route table is swapped in whole.

use std::sync::Arc;

use anyhow::Context as _;
use platform_runtime::abi::AbiInfo;
use platform_runtime::route_table::TriggerTarget;
use platform_runtime::{AppSpec, AppTarget, Digest, LocalModuleStore, RouteTable, Runtime};

use crate::manifest::Manifest;

/// One app as installed: its routes and module.
#[derive(Debug, Clone)]
pub struct InstalledApp {
    /// App name.
    pub name: String,
    /// Module digest.
    pub digest: Digest,
    /// Whether its release runs `per-request` (needs the pre-initialized snapshot).
    pub per_request: bool,
}

/// Stores the manifest's modules and installs its routes.
pub fn install_manifest(
    runtime: &Runtime,
    store: &LocalModuleStore,
    manifest: &Manifest,
) -> anyhow::Result<Vec<InstalledApp>> {
    let mut entries = Vec::new();
    let mut events = Vec::new();
    let mut subjects = Vec::new();
    let mut installed = Vec::new();
    // Apps often share a module file: read, check and store each file once.
    let mut modules: std::collections::HashMap<&std::path::Path, (Digest, AbiInfo)> =
        std::collections::HashMap::new();
    for app in &manifest.apps {
        let (digest, info) = match modules.get(app.module.as_path()) {
            Some(m) => m.clone(),
            None => {
                let bytes = std::fs::read(&app.module)
                    .with_context(|| format!("cannot read module {}", app.module.display()))?;
                let info = platform_runtime::abi::detect(&bytes)
                    .with_context(|| format!("{}: app {:?}", app.module.display(), app.name))?;
                let digest = store
                    .put(&bytes)
                    .with_context(|| format!("cannot store module {}", app.module.display()))?;
                modules.insert(app.module.as_path(), (digest.clone(), info.clone()));
                (digest, info)
            }
        };
        let isolation = app.isolation.unwrap_or(match info.kind {
            // A component gets a fresh instance per request unless it opts into reuse.
            platform_runtime::abi::AbiKind::Component => platform_runtime::Isolation::PerRequest,
            _ => platform_runtime::Isolation::Pooled,
        });
        if isolation == platform_runtime::Isolation::PerRequest
            && info.kind == platform_runtime::abi::AbiKind::Wagi
        {
            anyhow::bail!(
                "{}: app {:?}: isolation = \"per-request\" applies to Platform SDK modules and components; this is a {} module (WAGI already runs a fresh instance per request)",
                manifest.path.display(),
                app.name,
                info.kind.as_str()
            );
        }
        let spec = Arc::new(AppSpec {
            app: app.name.clone(),
            tenant: "local".into(),
            release: format!("local-{}", digest.short()),
            release_number: 0,
            module: digest.clone(),
            env: app.env.clone(),
            limits: app.limits.clone(),
            isolation,
            allowed_outbound_hosts: app.allowed_outbound_hosts.clone(),
        });
        let target = Arc::new(AppTarget::single(spec));
        for r in &app.routes {
            entries.push((r.clone(), target.clone()));
        }
        if let Some(t) = &app.triggers {
            let deliver = |path: &String| TriggerTarget {
                path: path.clone(),
                target: target.clone(),
            };
            events.extend(t.events.iter().map(|(ty, p)| (ty.clone(), deliver(p))));
            subjects.extend(t.subjects.iter().map(|(s, p)| (s.clone(), deliver(p))));
        }
        installed.push(InstalledApp {
            name: app.name.clone(),
            digest,
            per_request: isolation == platform_runtime::Isolation::PerRequest
                && info.kind == platform_runtime::abi::AbiKind::Sdk,
        });
    }
    let table = RouteTable::build(entries)
        .with_context(|| format!("{}: conflicting routes", manifest.path.display()))?
        .with_triggers(events, subjects);
    runtime.routes.replace(table);
    Ok(installed)
}

/// Compiles every installed module ahead of traffic (artifacts land on disk; a request that
/// arrives meanwhile shares the same compile).
pub async fn warm_up(runtime: &Runtime, apps: &[InstalledApp]) {
    for app in apps {
        let started = std::time::Instant::now();
        match runtime.cache.get(&app.digest).await {
            Ok((m, kind)) => tracing::info!(
                app = %app.name,
                abi = m.abi.kind.as_str(),
                how = kind.as_str(),
                ms = started.elapsed().as_millis() as u64,
                "module ready"
            ),
            Err(e) => tracing::error!(app = %app.name, error = %e, "module cannot be loaded"),
        }
        if app.per_request {
            let started = std::time::Instant::now();
            match runtime.cache.prepare_snapshot(&app.digest).await {
                Ok(()) => tracing::info!(
                    app = %app.name,
                    ms = started.elapsed().as_millis() as u64,
                    "per-request snapshot ready"
                ),
                Err(e) => {
                    tracing::error!(app = %app.name, error = %e, "per-request snapshot failed")
                }
            }
        }
    }
}
