//! `platform runtime`: the data plane, following a control plane or serving a manifest.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use platform_control::events::EventBus;
use platform_runtime::LocalModuleStore;
use platform_runtime::obs::publish::{ObsPublisher, PublishConfig};
use tokio::sync::Notify;

use super::{
    Shutdown, bind, bind_events, build_runtime, display_base, spawn_axum, spawn_events_listener,
};
use crate::args::{CommonArgs, RuntimeArgs};
use crate::feed_client::{self, ControlClient, ControlModuleSource};
use crate::local_feed;
use crate::manifest::Manifest;
use crate::nats_connection::NatsArgs;

/// Runs the data plane until SIGTERM.
pub async fn run(
    manifest: Option<PathBuf>,
    control_url: Option<String>,
    nats: NatsArgs,
    token: Option<String>,
    common: CommonArgs,
    args: RuntimeArgs,
) -> anyhow::Result<()> {
    let _telemetry = crate::telemetry::init(&common, "platform-runtime")?;
    let manifest = manifest.map(|p| Manifest::load(&p)).transpose()?;
    if manifest.is_none() && control_url.is_none() {
        bail!("platform runtime needs --control-url URL (with --token) or --manifest FILE");
    }
    std::fs::create_dir_all(&common.data_dir)
        .with_context(|| format!("cannot create data directory {}", common.data_dir.display()))?;
    let shutdown = Shutdown::on_signals();
    // Bound before the runtime is built: guests' outbound HTTP must never reach these.
    let traffic = bind(args.traffic_addr(), "traffic").await?;
    let admin = bind(args.admin_listen, "admin").await?;
    let traffic_addr = traffic.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let events = bind_events(&args).await?;
    let mut listeners = vec![traffic_addr, admin_addr];
    if let Some(e) = &events {
        listeners.push(e.local_addr()?);
    }

    let (runtime, follow_task, warm) = if let Some(url) = &control_url {
        let token =
            token.context("--token (or PLATFORM_TOKEN) is needed to follow the control plane")?;
        let client = ControlClient::new(url, &token)?;
        let source = ControlModuleSource::new(client.clone(), common.data_dir.join("modules"));
        let runtime = build_runtime(&common, &args, Arc::new(source), &listeners)?;
        let resync = Arc::new(Notify::new());
        let bus = match nats.url().as_deref() {
            Some(n) => Some(
                EventBus::nats(
                    n,
                    nats.options().await?,
                    "platform-runtime",
                    Some(resync.clone()),
                )
                .await
                .with_context(|| format!("NATS at {}", nats.display_url()))?,
            ),
            None => None,
        };
        let task = tokio::spawn(feed_client::follow(
            runtime.clone(),
            Arc::new(client),
            bus,
            resync,
            args.scope(),
            shutdown.clone().wait(),
        ));
        (runtime, Some(task), None)
    } else {
        let store =
            LocalModuleStore::new(common.data_dir.join("modules")).context("module store")?;
        let runtime = build_runtime(&common, &args, Arc::new(store.clone()), &listeners)?;
        let mut warm = None;
        if let Some(m) = &manifest {
            // Routes are installed now; readiness waits for the modules to be compiled.
            let hold = runtime.hold_readiness("compiling the manifest's modules");
            let apps = local_feed::install_manifest(&runtime, &store, m)?;
            warm = Some((apps, hold));
        }
        (runtime, None, warm)
    };

    // Key-value stores of SDK apps: shared JetStream buckets when the runtime is part of a
    // cluster, so every replica sees the same values; else files under the data directory.
    if let Some(n) = nats.url().as_deref() {
        let kv = platform_runtime::sdk::kv::NatsKv::connect(n, nats.options().await?)
            .await
            .context("key-value store")?;
        runtime.sdk_pools.set_kv(Arc::new(kv));
        tracing::info!(nats = %nats.display_url(), "SDK key-value stores on NATS JetStream");
        // Apps' NATS subject triggers: messages invoke handlers.
        let client = platform_runtime::subject_triggers::connect(n, nats.options().await?)
            .await
            .with_context(|| format!("NATS at {} (subject triggers)", nats.display_url()))?;
        tokio::spawn(platform_runtime::subject_triggers::follow(
            runtime.clone(),
            client,
            shutdown.clone().wait(),
        ));
    }

    // Logs and traffic for the control plane's dashboard, batched onto NATS (telemetry:
    // dropped rather than waited for when NATS is slow).
    let telemetry = match nats.url().as_deref() {
        Some(n) => Some(
            ObsPublisher::connect(n, nats.options().await?, &runtime, PublishConfig::default())
                .await
                .context("telemetry publisher")?,
        ),
        None => None,
    };

    let admin_task = spawn_axum(
        admin,
        platform_runtime::admin::router(runtime.clone()),
        shutdown.clone(),
    );
    let events_task = spawn_events_listener(events, &args, &runtime, &shutdown)?;
    let traffic_shutdown = shutdown.clone();
    let traffic_task = tokio::spawn(platform_runtime::server::serve(
        traffic,
        runtime.clone(),
        async move { traffic_shutdown.wait().await },
        args.shutdown_grace,
    ));
    println!(
        "Platform runtime serving on {}\n  admin        {}/healthz  /readyz  /metrics",
        display_base(traffic_addr),
        display_base(admin_addr)
    );
    if let Some(e) = &events_task {
        print!("{}", e.banner_line());
    }
    if let Some(m) = &manifest {
        for app in &m.apps {
            for r in &app.routes {
                println!(
                    "  {:<12} {}{}",
                    app.name,
                    display_base(traffic_addr),
                    r.prefix
                );
            }
        }
    }
    // Compile the manifest's modules ahead of traffic (requests meanwhile share the same
    // compiles); SIGTERM cancels this.
    if let Some((apps, hold)) = warm {
        tokio::select! {
            () = local_feed::warm_up(&runtime, &apps) => drop(hold),
            () = shutdown.clone().wait() => {
                tracing::info!("shutdown requested during start-up; compiles abandoned");
            }
        }
    }
    shutdown.clone().wait().await;
    let deadline = tokio::time::Instant::now() + args.shutdown_grace;
    if let Some(r) = super::join_until(deadline, "traffic listener", traffic_task).await {
        r?;
    }
    super::join_until(deadline, "admin listener", admin_task).await;
    if let Some(e) = events_task {
        super::join_until(deadline, "events listener", e.task).await;
    }
    if let Some(t) = follow_task {
        super::join_until(deadline, "feed", t).await;
    }
    if let Some(p) = telemetry {
        // The last requests' lines and counts, if NATS takes them promptly.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), p.close()).await;
    }
    tracing::info!("stopped");
    Ok(())
}
