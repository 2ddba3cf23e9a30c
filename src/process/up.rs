//! `platform up`: runtime, control plane, compile worker and dashboard in one process, on
//! SQLite, local files and an in-process event bus. The runtime follows the control plane
//! through the same feed a cluster uses, only without the network in between.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use platform_control::auth::Caller;
use platform_proto::v1::ListAppsRequest;
use platform_runtime::Runtime;
use tokio::sync::Notify;

use super::{
    Shutdown, bind, bind_events, bootstrap_token, build_control, build_runtime, display_base,
    engine_fingerprint, spawn_axum, spawn_events_listener,
};
use crate::args::{CommonArgs, DashboardArgs, RuntimeArgs, StoreArgs};
use crate::cli::api::{Api, InProcessApi};
use crate::cli::deploy::{self, DeploySpec, ModuleInput};
use crate::feed_client::{self, BlobModuleSource, InProcessSource};
use crate::manifest::Manifest;

/// Runs everything until SIGTERM.
pub async fn run(
    manifest: Option<PathBuf>,
    public_url: Option<String>,
    common: CommonArgs,
    args: RuntimeArgs,
    store: StoreArgs,
    addresses: Option<platform_control::app_address::AppAddressTemplate>,
    dashboard: DashboardArgs,
) -> anyhow::Result<()> {
    let _telemetry = crate::telemetry::init(&common, "platform")?;
    // Signals are watched from the start: SIGTERM at any point of start-up stops cleanly.
    let shutdown = Shutdown::on_signals();
    // A bad manifest fails fast, with its location, before anything starts.
    let manifest = manifest.map(|p| Manifest::load(&p)).transpose()?;
    let traffic = bind(args.traffic_addr(), "traffic").await?;
    let admin = bind(args.admin_listen, "the API and admin").await?;
    let traffic_addr = traffic.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let events = bind_events(&args).await?;
    let mut listeners = vec![traffic_addr, admin_addr];
    if let Some(e) = &events {
        listeners.push(e.local_addr()?);
    }
    let public_url = public_url.unwrap_or_else(|| display_base(traffic_addr));
    let web_config = dashboard.web_config(&display_base(admin_addr))?;

    let ctl = build_control(&common, &store, public_url, addresses, "platform", true).await?;
    bootstrap_token(&ctl, &common.data_dir, store.bootstrap_token.as_deref()).await?;

    let source = BlobModuleSource::new(ctl.blobs.clone(), common.data_dir.join("modules"));
    let runtime = build_runtime(&common, &args, Arc::new(source), &listeners)?;
    // Not ready until the apps serve (taken before the admin listener answers).
    let startup_hold = runtime.hold_readiness("platform up: deploying apps");
    let (engine, _) = engine_fingerprint()?;
    let worker = tokio::spawn(platform_control::worker::run(
        ctl.clone(),
        engine,
        shutdown.clone().wait(),
    ));
    let follow = tokio::spawn(feed_client::follow(
        runtime.clone(),
        Arc::new(InProcessSource(ctl.clone())),
        Some(ctl.events.clone()),
        Arc::new(Notify::new()),
        platform_runtime::feed::ServeScope::All,
        shutdown.clone().wait(),
    ));

    let router = platform_runtime::admin::router(runtime.clone())
        .merge(platform_control::router(ctl.clone()))
        .merge(platform_web::router(platform_web::WebState {
            ctl: ctl.clone(),
            obs: runtime.clone(),
            config: web_config,
        }));
    let admin_task = spawn_axum(admin, router, shutdown.clone());
    let events_task = spawn_events_listener(events, &args, &runtime, &shutdown)?;
    let traffic_shutdown = shutdown.clone();
    let traffic_task = tokio::spawn(platform_runtime::server::serve(
        traffic,
        runtime.clone(),
        async move { traffic_shutdown.wait().await },
        args.shutdown_grace,
    ));

    // Deploy the manifest (or, on an empty installation, the demo) through the API. Until
    // every app serves, /readyz says not ready; SIGTERM meanwhile cancels the start-up work.
    let api = InProcessApi {
        ctl: ctl.clone(),
        caller: Caller {
            tenant: "default".into(),
            token_id: "platform-up".into(),
            role: platform_control::auth::Role::Admin,
        },
    };
    let stopped = shutdown.clone().wait();
    tokio::select! {
        started = start_apps(&api, &runtime, manifest.as_ref()) => {
            let started = started?;
            drop(startup_hold);
            print_banner(&started.lines, admin_addr, &common.data_dir, started.demo);
            if let Some(e) = &events_task {
                print!("{}", e.banner_line());
            }
        }
        () = stopped => {
            tracing::info!("shutdown requested during start-up; start-up work cancelled");
        }
    }

    // Every part stops within the grace period: the listeners drain requests in flight
    // for up to `shutdown_grace`; what is still running then (a compile, a dashboard
    // stream) is abandoned.
    shutdown.clone().wait().await;
    let deadline = tokio::time::Instant::now() + args.shutdown_grace;
    if let Some(r) = super::join_until(deadline, "traffic listener", traffic_task).await {
        r?;
    }
    super::join_until(deadline, "admin listener", admin_task).await;
    if let Some(e) = events_task {
        super::join_until(deadline, "events listener", e.task).await;
    }
    super::join_until(deadline, "compile worker", worker).await;
    super::join_until(deadline, "feed", follow).await;
    tracing::info!("stopped");
    Ok(())
}

/// What start-up deployed: the banner's lines.
struct Started {
    lines: Vec<(String, String)>,
    demo: bool,
}

/// Deploys the manifest (or the demo on an empty installation) and waits until the runtime
/// serves every deployed route with its module loaded.
async fn start_apps(
    api: &InProcessApi,
    runtime: &Runtime,
    manifest: Option<&Manifest>,
) -> anyhow::Result<Started> {
    let say = |s: &str| tracing::info!("{s}");
    let mut lines = Vec::new();
    let mut demo = false;
    let mut deployed = Vec::new();
    if let Some(m) = manifest {
        for spec in crate::cli::manifest_specs(m) {
            let d = deploy::deploy(api, &spec, &say)
                .await
                .with_context(|| format!("{}: deploying app {:?}", m.path.display(), spec.app))?;
            for u in &d.urls {
                lines.push((d.app.clone(), u.clone()));
            }
            deployed.push((spec, d));
        }
    } else {
        let apps = api.list_apps(ListAppsRequest {}).await?.apps;
        if apps.is_empty() {
            demo = true;
            let spec = DeploySpec {
                app: "demo".into(),
                module: ModuleInput::Bytes("demo.wasm".into(), crate::demo::demo_wasm()),
                routes: vec![(String::new(), "/".into())],
                env: Default::default(),
                limits: Default::default(),
                isolation: Default::default(),
                allowed_outbound_hosts: vec![],
                prune_routes: false,
                triggers: None,
                wait_timeout: deploy::DEFAULT_WAIT_TIMEOUT,
            };
            let d = deploy::deploy(api, &spec, &say)
                .await
                .context("deploying the demo app")?;
            for u in &d.urls {
                lines.push((d.app.clone(), u.clone()));
            }
            deployed.push((spec, d));
        } else {
            // Apps deployed before: the feed's first snapshot holds readiness until their
            // modules are fetched.
            for a in apps {
                for r in a.routes {
                    lines.push((a.name.clone(), r.url));
                }
                if !a.default_url.is_empty() {
                    lines.push((a.name.clone(), a.default_url));
                }
            }
        }
    }
    // Routes reach the runtime through the feed: wait until each deployed route resolves to
    // its app, then load the module it runs, so the first request finds it ready.
    for (spec, d) in &deployed {
        for (host, path) in &spec.routes {
            let target = wait_routed(runtime, host, path, &d.app).await;
            for (_, release) in &target.releases {
                let started = std::time::Instant::now();
                match runtime.cache.get(&release.module).await {
                    Ok(_) => tracing::info!(
                        app = %d.app,
                        ms = started.elapsed().as_millis() as u64,
                        "module loaded"
                    ),
                    Err(e) => {
                        tracing::error!(app = %d.app, error = %e, "module cannot be loaded")
                    }
                }
                if release.isolation == platform_runtime::Isolation::PerRequest
                    && let Err(e) = runtime.cache.prepare_snapshot(&release.module).await
                {
                    tracing::error!(app = %d.app, error = %e, "per-request snapshot failed");
                }
            }
        }
    }
    Ok(Started { lines, demo })
}

/// Waits until the runtime's route table sends `host` + `path` to `app`.
async fn wait_routed(
    runtime: &Runtime,
    host: &str,
    path: &str,
    app: &str,
) -> Arc<platform_runtime::AppTarget> {
    // A wildcard host route is looked up with a name it covers.
    let host = match host.trim() {
        "" => None,
        h => Some(
            h.strip_prefix("*.")
                .map_or_else(|| h.to_string(), |d| format!("x.{d}")),
        ),
    };
    let mut changes = runtime.routes.changes();
    let started = std::time::Instant::now();
    let mut warned = 0;
    loop {
        if let Some(m) = runtime.routes.load().lookup(host.as_deref(), path)
            && m.target.app == app
        {
            return m.target;
        }
        let waited = started.elapsed().as_secs();
        if waited >= 10 * (warned + 1) {
            warned += 1;
            tracing::warn!(
                app,
                path,
                waited_s = waited,
                "route not in the runtime's table yet"
            );
        }
        let _ =
            tokio::time::timeout(std::time::Duration::from_millis(200), changes.changed()).await;
    }
}

fn print_banner(
    lines: &[(String, String)],
    admin: std::net::SocketAddr,
    data_dir: &std::path::Path,
    demo: bool,
) {
    let mut out = String::from("\nPlatform is up.\n\n");
    for (app, url) in lines {
        let shown = match url
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
        {
            Some(host)
                if !host.starts_with("127.")
                    && !host.starts_with("localhost")
                    && !host
                        .split(':')
                        .next()
                        .unwrap_or(host)
                        .ends_with(".localhost")
                    && !host.starts_with('[') =>
            {
                format!(
                    "{url}  (curl -H 'Host: {}' ...)",
                    host.split(':').next().unwrap_or(host)
                )
            }
            _ => url.clone(),
        };
        out.push_str(&format!("  {app:<12} {shown}\n"));
    }
    if lines.is_empty() {
        out.push_str("  no routes yet: platform deploy app.wasm --app NAME --route /path\n");
    }
    if demo {
        out.push_str("\n  (the built-in demo app; deploy yours with `platform deploy app.wasm --app NAME --route /path`)\n");
    }
    let api = display_base(admin);
    out.push_str(&format!(
        "\n  dashboard    {api}/  (sign in with the admin token in {})\n  API          {api}\n  admin        {api}/healthz  /readyz  /metrics\n\n",
        data_dir.join("admin-token").display()
    ));
    print!("{out}");
}
