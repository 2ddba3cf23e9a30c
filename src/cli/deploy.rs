//! Deploying an app: upload the module, make sure the app exists, create a release that goes
//! live once compiled, make sure the routes exist. Running it twice with the same input
//! changes nothing (no new release when module and configuration are unchanged).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use platform_proto::v1::*;

use super::api::{Api, CallError};

/// The module to deploy.
#[derive(Debug, Clone)]
pub enum ModuleInput {
    /// A file.
    File(PathBuf),
    /// Bytes with a name.
    Bytes(String, Vec<u8>),
}

/// What to deploy.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    /// App name.
    pub app: String,
    /// The module.
    pub module: ModuleInput,
    /// Routes as (host or "", path prefix).
    pub routes: Vec<(String, String)>,
    /// Guest environment.
    pub env: BTreeMap<String, String>,
    /// Limits (zero fields take defaults).
    pub limits: Limits,
    /// SDK isolation.
    pub isolation: Isolation,
    /// Outbound allow-list.
    pub allowed_outbound_hosts: Vec<String>,
    /// Remove the app's routes that are not in `routes`.
    pub prune_routes: bool,
}

/// The outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Deployed {
    /// App name.
    pub app: String,
    /// The live release.
    pub release: Release,
    /// Whether a new release was made.
    pub new_release: bool,
    /// URLs serving the app.
    pub urls: Vec<String>,
    /// The module as stored.
    pub module: Module,
}

/// Deploys `spec`, reporting progress through `say`.
pub async fn deploy(
    api: &dyn Api,
    spec: &DeploySpec,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Deployed, CallError> {
    // A route the tenant may not have is refused before anything is uploaded or released,
    // so a refused deploy leaves nothing half-applied.
    for (host, path) in &spec.routes {
        api.create_route(CreateRouteRequest {
            app: spec.app.clone(),
            host: host.clone(),
            path_prefix: path.clone(),
            validate_only: true,
        })
        .await?;
    }
    let module = match &spec.module {
        ModuleInput::File(p) => {
            say(&format!("uploading {} ...", p.display()));
            api.upload(p).await?
        }
        ModuleInput::Bytes(name, bytes) => api.upload_bytes(name, bytes.clone()).await?,
    };
    say(&format!(
        "module sha256:{} ({} bytes, {})",
        &module.digest[..12],
        module.size,
        abi_name(module.abi)
    ));
    let app = match api
        .get_app(GetAppRequest {
            app: spec.app.clone(),
        })
        .await
    {
        Ok(r) => r.app,
        Err(e) if e.is_not_found() => {
            say(&format!("creating app {}", spec.app));
            api.create_app(CreateAppRequest {
                name: spec.app.clone(),
            })
            .await?
            .app
        }
        Err(e) => return Err(e),
    }
    .ok_or_else(|| CallError {
        code: "internal".into(),
        message: "empty app".into(),
    })?;

    let wanted = CreateReleaseRequest {
        app: app.id.clone(),
        module_digest: module.digest.clone(),
        env: spec.env.clone().into_iter().collect(),
        limits: Some(spec.limits),
        isolation: spec.isolation as i32,
        allowed_outbound_hosts: spec.allowed_outbound_hosts.clone(),
        activate: true,
        force: false,
    };
    let live = if app.live_release_id.is_empty() {
        None
    } else {
        api.get_release(GetReleaseRequest {
            id: app.live_release_id.clone(),
        })
        .await?
        .release
    };
    let unchanged = live.as_ref().is_some_and(|r| same_release(r, &wanted));
    let (mut release, new_release) = if let (true, Some(r)) = (unchanged, live) {
        say(&format!(
            "release #{} is live with this module and configuration; nothing to release",
            r.number
        ));
        (r, false)
    } else {
        let r = api
            .create_release(wanted)
            .await?
            .release
            .ok_or_else(|| CallError {
                code: "internal".into(),
                message: "empty release".into(),
            })?;
        say(&format!("created release #{}", r.number));
        (r, true)
    };

    // Wait until it is compiled and live.
    let started = Instant::now();
    let mut said_compiling = false;
    loop {
        if release.state == ReleaseState::Failed as i32 {
            return Err(CallError {
                code: "failed_precondition".into(),
                message: release.error.clone(),
            });
        }
        if release.state == ReleaseState::Ready as i32 && release.live {
            break;
        }
        if !said_compiling {
            say("compiling the module ahead of time (once per module) ...");
            said_compiling = true;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(CallError {
                code: "deadline_exceeded".into(),
                message: "the release did not go live within 10 minutes".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        release = api
            .get_release(GetReleaseRequest {
                id: release.id.clone(),
            })
            .await?
            .release
            .ok_or_else(|| CallError {
                code: "internal".into(),
                message: "empty release".into(),
            })?;
    }

    let existing = api
        .list_routes(ListRoutesRequest {
            app: app.id.clone(),
        })
        .await?
        .routes;
    let mut urls = Vec::new();
    for (host, path) in &spec.routes {
        if let Some(r) = existing.iter().find(|r| same_route(r, host, path)) {
            urls.push(r.url.clone());
            continue;
        }
        let r = api
            .create_route(CreateRouteRequest {
                app: app.id.clone(),
                host: host.clone(),
                path_prefix: path.clone(),
                validate_only: false,
            })
            .await?
            .route
            .ok_or_else(|| CallError {
                code: "internal".into(),
                message: "empty route".into(),
            })?;
        say(&format!("added route {}{}", r.host, r.path_prefix));
        urls.push(r.url);
    }
    if spec.prune_routes {
        for r in &existing {
            let keep = spec.routes.iter().any(|(h, p)| same_route(r, h, p));
            if !keep {
                api.delete_route(DeleteRouteRequest { id: r.id.clone() })
                    .await?;
                say(&format!("removed route {}{}", r.host, r.path_prefix));
            }
        }
    } else {
        for r in &existing {
            if !urls.contains(&r.url) {
                urls.push(r.url.clone());
            }
        }
    }
    // The app's own address (no route needed), after the routes asked for.
    if !app.default_url.is_empty() {
        urls.push(app.default_url.clone());
    }
    Ok(Deployed {
        app: app.name,
        release,
        new_release,
        urls,
        module,
    })
}

/// True when the stored route `r` is the one written as `host` + `path` (compared in the
/// canonical form the control plane stores: `LOCALHOST.:8080/a/` is `localhost/a`).
fn same_route(r: &Route, host: &str, path: &str) -> bool {
    let stored = platform_runtime::RouteSpec::parse(&format!("{}{}", r.host, r.path_prefix));
    let wanted = platform_runtime::RouteSpec::parse(&format!("{}{}", host.trim(), path.trim()));
    matches!((stored, wanted), (Ok(a), Ok(b)) if a == b)
}

fn same_release(r: &Release, want: &CreateReleaseRequest) -> bool {
    let defaults = platform_runtime::Limits::default();
    let l = want.limits.unwrap_or_default();
    let pick = |v: u64, d: u64| if v == 0 { d } else { v };
    let want_limits = Limits {
        memory_bytes: pick(l.memory_bytes, defaults.memory),
        timeout_ms: pick(l.timeout_ms, defaults.timeout.as_millis() as u64),
        max_body_bytes: pick(l.max_body_bytes, defaults.max_body),
        max_response_bytes: pick(l.max_response_bytes, defaults.max_response),
    };
    let want_isolation = if want.isolation == Isolation::PerRequest as i32 {
        Isolation::PerRequest
    } else {
        Isolation::Pooled
    };
    let mut hosts: Vec<String> = want
        .allowed_outbound_hosts
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    hosts.sort();
    let mut have_hosts = r.allowed_outbound_hosts.clone();
    have_hosts.sort();
    r.module_digest == want.module_digest
        && r.env == want.env
        && r.limits == Some(want_limits)
        && r.isolation == want_isolation as i32
        && have_hosts == hosts
}

/// A readable ABI name.
pub fn abi_name(abi: i32) -> &'static str {
    match Abi::try_from(abi).unwrap_or(Abi::Unspecified) {
        Abi::Wagi => "WAGI",
        Abi::Sdk => "SDK",
        Abi::Component => "component",
        Abi::Unspecified => "unknown ABI",
    }
}
