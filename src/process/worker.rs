//! `platform worker`: compiles uploaded modules ahead of time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{Shutdown, bind, build_control, engine_fingerprint, health_router, spawn_axum};
use crate::args::{CommonArgs, StoreArgs};

/// Runs a compile worker until SIGTERM.
pub async fn run(
    admin_listen: SocketAddr,
    common: CommonArgs,
    store: StoreArgs,
) -> anyhow::Result<()> {
    let _telemetry = crate::telemetry::init(&common, "platform-worker")?;
    let ctl = build_control(
        &common,
        &store,
        String::new(),
        None,
        "platform-worker",
        false,
    )
    .await?;
    let (engine, _) = engine_fingerprint()?;
    let shutdown = Shutdown::on_signals();
    let ready = Arc::new(AtomicBool::new(true));
    let listener = bind(admin_listen, "health").await?;
    println!(
        "Platform compile worker running; health on {}/healthz",
        super::display_base(listener.local_addr()?)
    );
    let admin = spawn_axum(listener, health_router(ready), shutdown.clone());
    platform_control::worker::run(ctl, engine, shutdown.wait()).await;
    let _ = admin.await;
    Ok(())
}
