//! `Admission`: who may run a guest now, so that one app (or one tenant) cannot take every
//! execution slot of a shared host.
//!
//! ```text
//!   request ─► app permit ──► tenant permit ──► [SDK: release pool permit] ──► host slot ─► guest
//!              (per app cap)   (per tenant cap)   (instances of the release)     (host cap)
//! ```
//!
//! Permits are taken in that order and each wait ends at the request's admission deadline,
//! so a request waiting for its own app's capacity never holds a host-wide slot meanwhile:
//! a flooded app queues behind its own cap while every other app keeps its share. A request
//! that cannot be admitted in time is answered 503 with `Retry-After`.
//!
//! Request bodies are not read while a permit is held unless the guest reads them itself
//! (SDK mode, where the time counts against the app's own cap).
//!
//! Gates (an app's and its tenant's semaphores) live as long as some route table refers to
//! them; a table rebuild for an unrelated change hands out the same gates, so in-flight
//! requests keep counting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// The app's own concurrency cap.
    App,
    /// The cap shared by all apps of the tenant.
    Tenant,
    /// The release's instance pool (SDK mode).
    Instances,
    /// The whole host.
    Host,
}

impl Capacity {
    /// Metric and log label.
    pub fn as_str(self) -> &'static str {
        match self {
            Capacity::App => "app",
            Capacity::Tenant => "tenant",
            Capacity::Instances => "instances",
            Capacity::Host => "host",
        }
    }
}

/// Concurrency caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Guest executions at once on this host.
    pub host: usize,
    /// Executions at once of one app.
    pub per_app: usize,
    /// Executions at once of all of one tenant's apps.
    pub per_tenant: usize,
}

impl AdmissionLimits {
    /// Caps derived from the host's: one app may use half of it, one tenant three quarters,
    /// so that no single app or tenant can fill the host.
    pub fn from_host(host: usize) -> Self {
        let host = host.max(1);
        AdmissionLimits {
            host,
            per_app: host.div_ceil(2),
            per_tenant: (host * 3).div_ceil(4),
        }
    }
}

/// One app's semaphores (its own and its tenant's).
#[derive(Debug)]
pub struct AppGate {
    app: Arc<Semaphore>,
    tenant: Arc<Semaphore>,
}

/// Permits held while an app's request may run; dropped when the guest is done.
#[derive(Debug)]
pub struct AppPermit {
    _app: OwnedSemaphorePermit,
    _tenant: OwnedSemaphorePermit,
}

/// A host-wide execution slot.
#[derive(Debug)]
pub struct HostPermit {
    _slot: OwnedSemaphorePermit,
}

/// Every permit a running guest holds; released together when the guest returns.
#[derive(Debug)]
pub struct ExecPermits {
    /// The app's and tenant's.
    pub app: AppPermit,
    /// The release pool's, in SDK mode.
    pub instances: Option<OwnedSemaphorePermit>,
    /// The host's.
    pub host: HostPermit,
}

/// The host's admission control.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    host: Arc<Semaphore>,
    apps: Mutex<HashMap<(String, String), Weak<AppGate>>>,
    tenants: Mutex<HashMap<String, Weak<Semaphore>>>,
}

impl Admission {
    /// Admission with these caps (each at least 1, app and tenant at most the host's).
    pub fn new(limits: AdmissionLimits) -> Self {
        let host = limits.host.max(1);
        let limits = AdmissionLimits {
            host,
            per_app: limits.per_app.clamp(1, host),
            per_tenant: limits.per_tenant.clamp(1, host),
        };
        Admission {
            limits,
            host: Arc::new(Semaphore::new(host)),
            apps: Mutex::default(),
            tenants: Mutex::default(),
        }
    }

    /// The caps in force.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// Host slots free now.
    pub fn free_host_slots(&self) -> usize {
        self.host.available_permits()
    }

    /// The gate of `tenant`'s `app`: the same one for as long as anything holds it. Called
    /// once per route table and app, not per request.
    pub fn gate(&self, tenant: &str, app: &str) -> Arc<AppGate> {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let key = (tenant.to_string(), app.to_string());
        if let Some(g) = apps.get(&key).and_then(Weak::upgrade) {
            return g;
        }
        let tenant_sem = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
            match tenants.get(tenant).and_then(Weak::upgrade) {
                Some(t) => t,
                None => {
                    let t = Arc::new(Semaphore::new(self.limits.per_tenant));
                    tenants.retain(|_, w| w.strong_count() > 0);
                    tenants.insert(tenant.to_string(), Arc::downgrade(&t));
                    t
                }
            }
        };
        let gate = Arc::new(AppGate {
            app: Arc::new(Semaphore::new(self.limits.per_app)),
            tenant: tenant_sem,
        });
        apps.retain(|_, w| w.strong_count() > 0);
        apps.insert(key, Arc::downgrade(&gate));
        gate
    }

    /// Waits (until `deadline`) for the app's and then the tenant's permit.
    pub async fn admit_app(
        &self,
        gate: &AppGate,
        deadline: Instant,
    ) -> Result<AppPermit, Capacity> {
        let app = acquire(&gate.app, deadline).await.ok_or(Capacity::App)?;
        let tenant = acquire(&gate.tenant, deadline)
            .await
            .ok_or(Capacity::Tenant)?;
        Ok(AppPermit {
            _app: app,
            _tenant: tenant,
        })
    }

    /// Waits (until `deadline`) for a host-wide slot. Take it last, just before the guest
    /// runs.
    pub async fn admit_host(&self, deadline: Instant) -> Result<HostPermit, Capacity> {
        acquire(&self.host, deadline)
            .await
            .map(|slot| HostPermit { _slot: slot })
            .ok_or(Capacity::Host)
    }
}

/// A permit of `sem`, waiting no later than `deadline`.
pub async fn acquire(sem: &Arc<Semaphore>, deadline: Instant) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = sem.clone().try_acquire_owned() {
        return Some(p);
    }
    tokio::time::timeout_at(deadline.into(), sem.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_app_cannot_take_the_host() {
        let adm = Admission::new(AdmissionLimits {
            host: 4,
            per_app: 2,
            per_tenant: 3,
        });
        let soon = || Instant::now() + Duration::from_millis(20);
        let flooded = adm.gate("a", "flood");
        let p1 = adm.admit_app(&flooded, soon()).await.unwrap();
        let p2 = adm.admit_app(&flooded, soon()).await.unwrap();
        assert_eq!(
            adm.admit_app(&flooded, soon()).await.unwrap_err(),
            Capacity::App
        );
        // Same tenant, another app: the tenant cap (3) leaves one.
        let sibling = adm.gate("a", "sibling");
        let s1 = adm.admit_app(&sibling, soon()).await.unwrap();
        assert_eq!(
            adm.admit_app(&sibling, soon()).await.unwrap_err(),
            Capacity::Tenant
        );
        // Another tenant is untouched, and host slots were never taken by waiting.
        let other = adm.gate("b", "app");
        let _o = adm.admit_app(&other, soon()).await.unwrap();
        assert_eq!(adm.free_host_slots(), 4);
        drop((p1, p2, s1));
        assert!(adm.admit_app(&flooded, soon()).await.is_ok());
    }

    #[tokio::test]
    async fn gates_survive_table_rebuilds() {
        let adm = Admission::new(AdmissionLimits::from_host(8));
        let g1 = adm.gate("t", "a");
        let g2 = adm.gate("t", "a");
        assert!(Arc::ptr_eq(&g1, &g2));
        assert!(Arc::ptr_eq(&g1.tenant, &adm.gate("t", "b").tenant));
        drop((g1, g2));
        let fresh = adm.gate("t", "a");
        assert_eq!(fresh.app.available_permits(), 4);
    }

    #[test]
    fn derived_limits() {
        assert_eq!(
            AdmissionLimits::from_host(4),
            AdmissionLimits {
                host: 4,
                per_app: 2,
                per_tenant: 3
            }
        );
        assert_eq!(AdmissionLimits::from_host(1).per_app, 1);
    }
}
