//! `platform control`: the control plane's API on one listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;

use super::{Shutdown, bind, bootstrap_token, build_control, health_router, spawn_axum};
use crate::args::{CommonArgs, DashboardArgs, StoreArgs};

/// Runs the control plane until SIGTERM.
pub async fn run(
    listen: SocketAddr,
    public_url: String,
    common: CommonArgs,
    store: StoreArgs,
    addresses: Option<platform_control::app_address::AppAddressTemplate>,
    dashboard: DashboardArgs,
) -> anyhow::Result<()> {
    let _telemetry = crate::telemetry::init(&common, "platform-control")?;
    let public_url_is_https = public_url.starts_with("https://");
    let ctl = build_control(
        &common,
        &store,
        public_url,
        addresses,
        "platform-control",
        false,
    )
    .await?;
    bootstrap_token(&ctl, &common.data_dir, store.bootstrap_token.as_deref()).await?;
    let shutdown = Shutdown::on_signals();
    if store.dedicated.dedicated_services {
        let reconciler = platform_control::dedicated::DedicatedReconciler::from_environment(
            store.dedicated.config(),
        )
        .await
        .context("dedicated mode")?;
        tokio::spawn(platform_control::dedicated::run(
            ctl.clone(),
            reconciler,
            std::time::Duration::from_secs(10),
            shutdown.clone().wait(),
        ));
        tracing::info!(namespace = %store.dedicated.kube_namespace, "dedicated apps get Knative Services of their own");
    }
    let listener = bind(listen, "the API").await?;
    let addr = listener.local_addr()?;
    let mut web_config = dashboard.web_config(&super::display_base(addr))?;
    // Without --dashboard-url, an https deployment (its public URL) gets secure cookies.
    if dashboard.dashboard_url.is_none() && public_url_is_https {
        web_config.secure_cookies = true;
    }
    // The dashboard's logs and traffic: what the runtimes publish on NATS, when there is one.
    let obs: Arc<dyn platform_web::Observability> = match store.nats.url().as_deref() {
        Some(url) => Arc::new(
            platform_web::observe::NatsObservability::connect(
                url,
                store.nats.options().await?,
                platform_runtime::obs::wire::DEFAULT_PREFIX,
            )
            .await
            .context("telemetry subscriber")?,
        ),
        None => Arc::new(platform_web::NoObservability),
    };
    let ready = Arc::new(AtomicBool::new(true));
    let router = platform_control::router(ctl.clone())
        .merge(health_router(ready))
        .merge(platform_web::router(platform_web::WebState {
            ctl: ctl.clone(),
            obs,
            config: web_config,
        }));
    let task = spawn_axum(listener, router, shutdown.clone());
    println!(
        "Platform control plane listening on {}",
        super::display_base(addr)
    );
    task.await??;
    Ok(())
}
