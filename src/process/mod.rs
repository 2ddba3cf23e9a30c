//! The long-running processes: `up`, `runtime`, `control`, `worker`, and what they share.

pub mod control;
pub mod runtime;
pub mod up;
pub mod worker;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use platform_control::blobs::BlobStore;
use platform_control::events::EventBus;
use platform_control::secrets::SecretKeys;
use platform_control::store::Store;
use platform_control::{Control, ControlConfig};
use platform_runtime::engine::{EngineFingerprint, EngineSettings};
use platform_runtime::module_cache::ModuleSource;
use platform_runtime::{Runtime, RuntimeConfig};
use tokio::net::TcpListener;

use crate::args::{CommonArgs, RuntimeArgs, StoreArgs};

/// A cloneable "stop now" signal, fired by SIGTERM or SIGINT.
#[derive(Clone)]
pub struct Shutdown {
    rx: tokio::sync::watch::Receiver<bool>,
}

impl Shutdown {
    /// Watches SIGTERM and SIGINT. The handlers are installed before this returns, so a
    /// signal arriving right after is never the default "terminate at once".
    pub fn on_signals() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let (tx, rx) = tokio::sync::watch::channel(false);
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        tokio::spawn(async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => tracing::info!("SIGINT received"),
                        _ = term.recv() => tracing::info!("SIGTERM received"),
                    }
                }
                (term, int) => {
                    let e = term.err().or(int.err());
                    tracing::error!(error = ?e, "cannot watch SIGTERM and SIGINT");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            let _ = tx.send(true);
        });
        Shutdown { rx }
    }

    /// Resolves once shutdown was requested.
    pub async fn wait(mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

/// Waits for `task` until `deadline` (the end of the shutdown grace period); past it the
/// task is abandoned with a warning, so shutdown never waits for work that does not stop.
/// Returns the task's output when it finished in time.
pub async fn join_until<T>(
    deadline: tokio::time::Instant,
    what: &str,
    task: tokio::task::JoinHandle<T>,
) -> Option<T> {
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::error!(what, error = %e, "task failed");
            None
        }
        Err(_) => {
            tracing::warn!(
                what,
                "still running at the end of the shutdown grace period; abandoned"
            );
            None
        }
    }
}

/// The engine settings every part agrees on (artifacts are compiled for them).
pub fn engine_settings() -> EngineSettings {
    EngineSettings::default()
}

/// The fingerprint of artifacts compiled for this build's runtimes.
pub fn engine_fingerprint() -> anyhow::Result<(wasmtime::Engine, EngineFingerprint)> {
    // The compiler needs no instance pool; the pool does not change the artifact format
    // (checked by a runtime test), so the fingerprints match the runtimes'.
    let settings = EngineSettings {
        pooling: false,
        ..engine_settings()
    };
    let engine = platform_runtime::engine::build_engine(&settings)?;
    let fp = EngineFingerprint::of(&engine);
    Ok((engine, fp))
}

/// Builds the data plane. `listeners` are the process's own addresses (traffic, admin),
/// which guests' outbound HTTP never reaches.
pub fn build_runtime(
    common: &CommonArgs,
    args: &RuntimeArgs,
    source: Arc<dyn ModuleSource>,
    listeners: &[SocketAddr],
) -> anyhow::Result<Arc<Runtime>> {
    let mut config = RuntimeConfig::new(&common.data_dir);
    config.engine = engine_settings();
    config.idle_timeout = args.idle_timeout;
    config.max_concurrency = args.max_concurrency;
    config.max_app_concurrency = args.max_app_concurrency;
    config.max_tenant_concurrency = args.max_tenant_concurrency;
    config.queue_timeout = args.queue_timeout;
    config.body_read_timeout = args.body_read_timeout;
    config.body_idle_timeout = args.body_idle_timeout;
    config.header_read_timeout = args.header_read_timeout;
    config.trust_forwarded_host = args.trust_forwarded_host;
    config.outbound = platform_runtime::sdk::outbound::OutboundConfig {
        deny: args.outbound_deny.clone(),
        allow_private: args.outbound_allow_private.clone(),
        platform_listeners: listeners.to_vec(),
    };
    if let Some(dir) = &args.artifact_dir {
        config.artifact_dir = dir.clone();
    }
    Ok(Runtime::new(config, source)?)
}

/// Opens store, blobs and bus, and builds the control plane.
pub async fn build_control(
    common: &CommonArgs,
    store_args: &StoreArgs,
    public_url: String,
    app_addresses: Option<platform_control::app_address::AppAddressTemplate>,
    process_name: &str,
    default_secrets_key: bool,
) -> anyhow::Result<Arc<Control>> {
    platform_control::private_fs::private_dir(&common.data_dir)
        .with_context(|| format!("cannot create data directory {}", common.data_dir.display()))?;
    let data_dir = common
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| common.data_dir.clone());
    let db_url = store_args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("platform.db").display()));
    let store = Store::connect(&db_url)
        .await
        .with_context(|| format!("database {}", redact(&db_url)))?;
    let blob_url = store_args
        .blob_url
        .clone()
        .unwrap_or_else(|| format!("file://{}", data_dir.join("blobs").display()));
    let blobs = BlobStore::open(&blob_url).with_context(|| format!("blob store {blob_url}"))?;
    // Every (re)connection to NATS is announced with the current revision (see
    // `announce_revision`), once the control plane exists.
    let connected = Arc::new(tokio::sync::Notify::new());
    let bus = match store_args.nats.url().as_deref() {
        Some(url) => EventBus::nats(
            url,
            store_args.nats.options().await?,
            process_name,
            Some(connected.clone()),
        )
        .await
        .with_context(|| format!("NATS at {}", store_args.nats.display_url()))?,
        None => EventBus::in_process(),
    };
    let (_, engine) = engine_fingerprint()?;
    let secrets = secret_keys(store_args, &data_dir, default_secrets_key)?;
    // What a killed predecessor left staged is removed before anything stages again.
    platform_control::clear_staging(&data_dir.join("staging"));
    let dedicated_addresses = platform_control::dedicated::address::ServiceAddressTemplate::parse(
        &store_args.dedicated.dedicated_address_template,
        &store_args.dedicated.kube_namespace,
    )?;
    let ctl = Control::new(
        store,
        blobs,
        bus,
        ControlConfig {
            public_url,
            max_module_size: store_args.max_module_size,
            staging_dir: data_dir.join("staging"),
            engine,
            app_addresses,
            caps: store_args.limits.caps(),
            quotas: store_args.limits.quotas(),
            secrets,
            dedicated_addresses,
        },
    );
    if matches!(ctl.events, EventBus::Nats(_)) {
        let announcer = ctl.clone();
        tokio::spawn(async move {
            loop {
                connected.notified().await;
                match platform_control::feed::announce_revision(&announcer).await {
                    Ok(revision) => tracing::info!(revision, "feed revision announced on NATS"),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the feed revision to announce; runtimes resync periodically")
                    }
                }
            }
        });
    }
    if ctl.config.secrets.is_some() {
        platform_control::api::secrets::reseal_all(&ctl)
            .await
            .map_err(|e| anyhow::anyhow!("sealing secrets under the current key: {e}"))?;
    }
    Ok(ctl)
}

/// The keys sealing secrets: --secrets-key-file (with `default_key`, <data-dir>/secrets-key,
/// created 0600 when missing) and the old keys of a rotation.
fn secret_keys(
    store_args: &StoreArgs,
    data_dir: &Path,
    default_key: bool,
) -> anyhow::Result<Option<SecretKeys>> {
    let current = match &store_args.secrets_key_file {
        Some(p) => SecretKeys::read_key_file(p)?,
        None if default_key => SecretKeys::read_or_create_key_file(&data_dir.join("secrets-key"))?,
        None => return Ok(None),
    };
    let old = store_args
        .secrets_old_key_file
        .iter()
        .map(|p| SecretKeys::read_key_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(SecretKeys::from_bytes(&current, &old)))
}

/// Creates the first admin token on an empty database and tells the person at the terminal.
pub async fn bootstrap_token(
    ctl: &Control,
    data_dir: &Path,
    preset: Option<&str>,
) -> anyhow::Result<()> {
    let file = data_dir.join("admin-token");
    if let Some(b) = ctl.bootstrap_admin(&file, preset).await? {
        println!(
            "\nCreated the first admin token (shown once; also saved to {}):\n\n  {}\n\n  Use it as `Authorization: Bearer <token>`, or with `platform login --token <token>`;\n  `platform deploy` on this machine finds it in the data directory by itself.\n",
            b.path.display(),
            b.secret
        );
    }
    Ok(())
}

/// Binds a listener with a clear error.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// Binds `--events-listen`, if given (before the runtime is built, so outbound HTTP knows
/// the address as one of the platform's own).
pub async fn bind_events(args: &RuntimeArgs) -> anyhow::Result<Option<TcpListener>> {
    match args.events_listen {
        Some(addr) => Ok(Some(bind(addr, "CloudEvents").await?)),
        None => Ok(None),
    }
}

/// Serves CloudEvents on the `--events-listen` listener, if any: the internal listener the
/// event broker delivers to (the traffic listener never takes events).
pub fn spawn_events_listener(
    listener: Option<TcpListener>,
    args: &RuntimeArgs,
    runtime: &Arc<Runtime>,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<EventsListener>> {
    let Some(listener) = listener else {
        return Ok(None);
    };
    let addr = listener.local_addr()?;
    let stop = shutdown.clone();
    let task = tokio::spawn(platform_runtime::server::serve_events(
        listener,
        runtime.clone(),
        async move { stop.wait().await },
        args.shutdown_grace,
    ));
    Ok(Some(EventsListener { addr, task }))
}

/// The running CloudEvents listener.
pub struct EventsListener {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its task.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl EventsListener {
    /// The banner line for it.
    pub fn banner_line(&self) -> String {
        format!(
            "  events       {}/.platform/events  (CloudEvents from the broker only)\n",
            display_base(self.addr)
        )
    }
}

/// Serves an axum router until shutdown.
pub fn spawn_axum(
    listener: TcpListener,
    router: axum::Router,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        // Handlers may read the peer's address (the dashboard's sign-in rate limit).
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
    })
}

/// Health endpoints for processes without a runtime (control, worker).
pub fn health_router(ready: Arc<std::sync::atomic::AtomicBool>) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(std::sync::atomic::Ordering::Acquire) {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(|| async { "# no metrics yet for this process\n" }),
        )
}

/// `http://host:port` for an address people can click.
pub fn display_base(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        store: StoreArgs,
    }

    fn store(args: &[&str]) -> StoreArgs {
        Flags::parse_from(std::iter::once("t").chain(args.iter().copied())).store
    }

    #[test]
    fn secret_keys_come_from_flags_or_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        // `platform control` without a key: secrets are off.
        assert!(
            secret_keys(&store(&[]), dir.path(), false)
                .unwrap()
                .is_none()
        );
        // `platform up`: made under the data directory, the same on the next start.
        let a = secret_keys(&store(&[]), dir.path(), true).unwrap().unwrap();
        let b = secret_keys(&store(&[]), dir.path(), true).unwrap().unwrap();
        assert_eq!(a.current_id(), b.current_id());
        // A rotation: the new key seals, the old one still opens.
        let new = dir.path().join("new-key");
        std::fs::write(&new, hex::encode(SecretKeys::random_bytes())).unwrap();
        let old = dir.path().join("secrets-key");
        let rotated = secret_keys(
            &store(&[
                "--secrets-key-file",
                new.to_str().unwrap(),
                "--secrets-old-key-file",
                old.to_str().unwrap(),
            ]),
            dir.path(),
            true,
        )
        .unwrap()
        .unwrap();
        assert_ne!(rotated.current_id(), a.current_id());
        let at = platform_control::secrets::Binding::Secret {
            app_id: "a",
            name: "N",
        };
        let sealed = a.seal(b"v", at).unwrap();
        assert_eq!(rotated.open(&sealed, at).unwrap(), b"v");
        // A file that is not a key is refused.
        std::fs::write(&new, "nope").unwrap();
        let bad = store(&["--secrets-key-file", new.to_str().unwrap()]);
        assert!(secret_keys(&bad, dir.path(), true).is_err());
    }
}
