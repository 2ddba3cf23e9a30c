//! Runs the serving processes: listeners, feed, signals, graceful shutdown.

use std::sync::Arc;

use anyhow::Context as _;
use platform_runtime::{LocalModuleStore, Runtime, RuntimeConfig};
use tokio::net::TcpListener;

use crate::ServeArgs;
use crate::local_feed::{self, InstalledApp};
use crate::manifest::Manifest;

/// Which command is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `platform up`.
    Up,
    /// `platform runtime`.
    Runtime,
}

/// Starts the runtime with the local feed and serves until SIGTERM/SIGINT.
pub async fn run(args: ServeArgs, mode: Mode) -> anyhow::Result<()> {
    let service = match mode {
        Mode::Up => "platform",
        Mode::Runtime => "platform-runtime",
    };
    let _telemetry =
        crate::telemetry::init(args.log_format, args.otlp_endpoint.as_deref(), service)?;

    // Read the manifest before anything else: a bad one fails fast with its location.
    let manifest = match &args.manifest {
        Some(p) => Some(Manifest::load(p)?),
        None if mode == Mode::Runtime => {
            anyhow::bail!("platform runtime needs --manifest FILE (or PLATFORM_MANIFEST)")
        }
        None => None,
    };

    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let store = LocalModuleStore::new(args.data_dir.join("modules"))
        .context("cannot create the module store")?;
    let mut config = RuntimeConfig::new(&args.data_dir);
    config.idle_timeout = args.idle_timeout;
    config.max_concurrency = args.max_concurrency;
    let runtime = Runtime::new(config, Arc::new(store.clone()))?;

    let traffic_addr = args.traffic_addr();
    let traffic = TcpListener::bind(traffic_addr)
        .await
        .with_context(|| format!("cannot listen for traffic on {traffic_addr}"))?;
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen for admin on {}", args.admin_listen))?;
    let traffic_addr = traffic.local_addr()?;
    let admin_addr = admin.local_addr()?;

    let shutdown = tokio_util_shutdown();
    let admin_router = platform_runtime::admin::router(runtime.clone());
    let admin_shutdown = shutdown.clone();
    let admin_task = tokio::spawn(async move {
        axum::serve(admin, admin_router)
            .with_graceful_shutdown(async move { admin_shutdown.wait().await })
            .await
    });
    let traffic_shutdown = shutdown.clone();
    let traffic_task = tokio::spawn(platform_runtime::server::serve(
        traffic,
        runtime.clone(),
        async move { traffic_shutdown.wait().await },
        args.shutdown_grace,
    ));

    let apps = match &manifest {
        Some(m) => local_feed::install_manifest(&runtime, &store, m)?,
        None => local_feed::install_demo(&runtime, &store)?,
    };
    local_feed::warm_up(&runtime, &apps).await;
    print_banner(&apps, traffic_addr, admin_addr, manifest.is_none());

    let _ = shutdown.wait().await;
    tracing::info!("shutting down");
    match traffic_task.await {
        Ok(r) => r.context("traffic listener")?,
        Err(e) => anyhow::bail!("traffic listener task: {e}"),
    }
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

fn print_banner(
    apps: &[InstalledApp],
    traffic: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    demo: bool,
) {
    let base = display_base(traffic);
    let mut out = String::new();
    out.push_str("\nPlatform is up.\n\n");
    for app in apps {
        for r in &app.routes {
            let url = match &r.host {
                Some(h) => format!(
                    "curl -H 'Host: {h}' {base}{}",
                    if r.prefix == "/" { "/" } else { &r.prefix }
                ),
                None => format!("{base}{}", if r.prefix == "/" { "/" } else { &r.prefix }),
            };
            out.push_str(&format!("  {:<12} {url}\n", app.name));
        }
    }
    if demo {
        out.push_str("\n  (the built-in demo app; pass --manifest platform.toml to serve yours)\n");
    }
    out.push_str(&format!(
        "\n  admin        http://{admin}/healthz  /readyz  /metrics\n\n"
    ));
    // The banner is for the person at the terminal, on stdout; logs go to stderr.
    print!("{out}");
}

fn display_base(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// A cloneable "stop now" signal fired by SIGTERM or SIGINT.
#[derive(Clone)]
pub struct Shutdown {
    rx: tokio::sync::watch::Receiver<bool>,
}

impl Shutdown {
    /// Resolves once shutdown was requested.
    pub async fn wait(mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

fn tokio_util_shutdown() -> Shutdown {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot watch SIGTERM");
                        let _ = ctrl_c.await;
                        let _ = tx.send(true);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => tracing::info!("SIGINT received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        let _ = tx.send(true);
    });
    Shutdown { rx }
}
