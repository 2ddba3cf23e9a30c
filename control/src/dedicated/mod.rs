//! Dedicated mode: an app marked `dedicated` runs in a Knative Service of its own, which
//! the control plane creates, updates and deletes through the Kubernetes API (the `kube`
//! crate), so that app scales (to zero) on its own traffic.
//!
//! [`DedicatedReconciler::reconcile_once`] makes the cluster match the database:
//! 1. every dedicated app gets its Service by server-side apply (field manager
//!    `platform-control`, forced: the control plane owns these fields);
//! 2. every Service labelled as managed by the control plane whose app is gone or no
//!    longer dedicated is deleted (garbage collection by label, which also catches
//!    Services left behind by a crash between a delete in the database and in the cluster);
//! 3. what Knative reports (Ready, URL) is written back to the app, where the API shows it.
//!
//! Shared runtimes run with `--exclude-dedicated`: they keep a dedicated app's routes and
//! forward its requests to its Service, at the address [`address`] makes (carried in the
//! feed), so going dedicated never changes the app's URLs.

pub mod address;
pub mod knative;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use sqlx::Row;

use self::knative::{
    APP_ID_LABEL, DedicatedApp, DedicatedConfig, MANAGED_BY, knative_service, observed_status,
};
use crate::Control;
use crate::store::now_ms;

/// The server-side apply field manager.
pub const FIELD_MANAGER: &str = "platform-control";

/// Why a reconcile pass failed as a whole (per-app failures are recorded on the app).
#[derive(Debug, thiserror::Error)]
pub enum DedicatedError {
    /// The database.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The Kubernetes API.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// No usable cluster configuration.
    #[error("no Kubernetes configuration (in-cluster or KUBECONFIG): {0}")]
    Config(String),
}

/// What one pass did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Services applied (created or updated).
    pub applied: Vec<String>,
    /// Services deleted.
    pub deleted: Vec<String>,
    /// Services that could not be applied, with the API's reason.
    pub failed: Vec<(String, String)>,
}

/// Keeps dedicated apps' Knative Services in line with the database.
#[derive(Clone)]
pub struct DedicatedReconciler {
    api: Api<DynamicObject>,
    config: DedicatedConfig,
}

impl std::fmt::Debug for DedicatedReconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedicatedReconciler")
            .field("config", &self.config)
            .finish()
    }
}

/// The Knative Service resource.
pub fn knative_service_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serving.knative.dev", "v1", "Service"),
        "services",
    )
}

impl DedicatedReconciler {
    /// A reconciler using `client` (tests point it at their own API server).
    pub fn new(client: kube::Client, config: DedicatedConfig) -> Self {
        install_crypto_provider();
        let api = Api::namespaced_with(client, &config.namespace, &knative_service_resource());
        DedicatedReconciler { api, config }
    }

    /// A client for an API server at `url` without credentials (`kubectl proxy`, tests).
    pub fn client_for_url(url: &str) -> Result<kube::Client, DedicatedError> {
        install_crypto_provider();
        let uri = url
            .parse()
            .map_err(|e| DedicatedError::Config(format!("{url:?}: {e}")))?;
        kube::Client::try_from(kube::Config::new(uri)).map_err(DedicatedError::Kube)
    }

    /// A reconciler for the cluster the process runs in (or `KUBECONFIG`'s).
    pub async fn from_environment(config: DedicatedConfig) -> Result<Self, DedicatedError> {
        install_crypto_provider();
        let client = kube::Client::try_default()
            .await
            .map_err(|e| DedicatedError::Config(e.to_string()))?;
        Ok(Self::new(client, config))
    }

    /// One pass: apply, collect garbage, record status.
    pub async fn reconcile_once(&self, ctl: &Control) -> Result<ReconcileReport, DedicatedError> {
        let rows = sqlx::query("SELECT id, tenant, name FROM apps WHERE dedicated = 1 ORDER BY id")
            .fetch_all(ctl.store.pool())
            .await?;
        let mut apps = Vec::with_capacity(rows.len());
        for r in rows {
            apps.push(DedicatedApp {
                id: r.try_get("id")?,
                tenant: r.try_get("tenant")?,
                name: r.try_get("name")?,
            });
        }
        let mut report = ReconcileReport::default();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        for app in &apps {
            let name = app.service_name();
            let desired = knative_service(app, &self.config);
            let obj: DynamicObject = match serde_json::from_value(desired) {
                Ok(o) => o,
                Err(e) => {
                    report.failed.push((name, e.to_string()));
                    continue;
                }
            };
            let (ready, url, message) = match self
                .api
                .patch(&name, &params, &Patch::Apply(&obj))
                .await
            {
                Ok(applied) => {
                    report.applied.push(name.clone());
                    let value = serde_json::to_value(&applied).unwrap_or_default();
                    let s = observed_status(&value);
                    (s.ready, s.url, s.message)
                }
                Err(e) => {
                    let why = match &e {
                        kube::Error::Api(s) => {
                            format!("the cluster refused the Service: {}", s.message)
                        }
                        other => format!("cannot reach the Kubernetes API: {other}"),
                    };
                    tracing::warn!(app = %app.name, service = %name, error = %why, "dedicated Service not applied");
                    report.failed.push((name.clone(), why.clone()));
                    (false, String::new(), why)
                }
            };
            sqlx::query(
                "UPDATE apps SET dedicated_ready = $1, dedicated_url = $2, dedicated_message = $3, dedicated_updated_at = $4 WHERE id = $5 AND dedicated = 1",
            )
            .bind(i64::from(ready))
            .bind(if url.is_empty() { None } else { Some(url) })
            .bind(message)
            .bind(now_ms())
            .bind(&app.id)
            .execute(ctl.store.pool())
            .await?;
        }

        let wanted: std::collections::HashSet<String> =
            apps.iter().map(|a| a.service_name()).collect();
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let existing = self
            .api
            .list(&ListParams::default().labels(&selector))
            .await?;
        for svc in existing {
            let Some(name) = svc.metadata.name.clone() else {
                continue;
            };
            let has_app_label = svc
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(APP_ID_LABEL));
            if has_app_label && !wanted.contains(&name) {
                match self.api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => report.deleted.push(name),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(report)
    }
}

/// rustls needs one process-wide crypto provider when several are linked in (kube uses
/// ring, other dependencies bring aws-lc-rs); the first caller's choice stays.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reconciles every `interval` until `shutdown`; failures are logged and retried.
pub async fn run(
    ctl: Arc<Control>,
    reconciler: DedicatedReconciler,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut shutdown => return,
        }
        match reconciler.reconcile_once(&ctl).await {
            Ok(r) if !r.deleted.is_empty() || !r.failed.is_empty() => {
                tracing::info!(applied = r.applied.len(), deleted = ?r.deleted, failed = ?r.failed, "dedicated Services reconciled");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "dedicated Services not reconciled; retrying"),
        }
    }
}
