//! `platform up`: runtime, control plane, compile worker and dashboard in one process, on
//! SQLite, local files and an in-process event bus. The runtime follows the control plane
//! through the same feed a cluster uses, only without the network in between.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use platform_control::auth::Caller;
use platform_proto::v1::ListAppsRequest;
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
    let _telemetry = crate::telemetry::init(
        common.log_format,
        common.otlp_endpoint.as_deref(),
        "platform",
    )?;
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
    let shutdown = Shutdown::on_signals();

    let source = BlobModuleSource::new(ctl.blobs.clone(), common.data_dir.join("modules"));
    let runtime = build_runtime(&common, &args, Arc::new(source), &listeners)?;
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

    // Deploy the manifest (or, on an empty installation, the demo) through the API.
    let api = InProcessApi {
        ctl: ctl.clone(),
        caller: Caller {
            tenant: "default".into(),
            token_id: "platform-up".into(),
            role: platform_control::auth::Role::Admin,
        },
    };
    let say = |s: &str| tracing::info!("{s}");
    let mut lines = Vec::new();
    let mut demo = false;
    if let Some(m) = &manifest {
        for spec in crate::cli::manifest_specs(m) {
            let d = deploy::deploy(&api, &spec, &say)
                .await
                .with_context(|| format!("{}: deploying app {:?}", m.path.display(), spec.app))?;
            for u in d.urls {
                lines.push((d.app.clone(), u));
            }
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
                wait_timeout: deploy::DEFAULT_WAIT_TIMEOUT,
            };
            let d = deploy::deploy(&api, &spec, &say)
                .await
                .context("deploying the demo app")?;
            for u in d.urls {
                lines.push((d.app.clone(), u));
            }
        } else {
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
    // Routes reach the runtime through the feed; wait for them before saying "up".
    for _ in 0..200 {
        if runtime.is_ready() && runtime.routes.load().len() >= lines.len().min(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    print_banner(&lines, admin_addr, &common.data_dir, demo);
    if let Some(e) = &events_task {
        print!("{}", e.banner_line());
    }

    traffic_task.await??;
    let _ = admin_task.await;
    if let Some(e) = events_task {
        let _ = e.task.await;
    }
    let _ = worker.await;
    let _ = follow.await;
    tracing::info!("stopped");
    Ok(())
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
