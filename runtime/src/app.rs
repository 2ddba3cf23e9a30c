//! What the runtime is told to serve: releases of apps, and how traffic splits between them.
//!
//! These are the runtime's own types. A feed (a local `platform.toml`, or the control
//! plane) builds them; the runtime never looks further than this.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::admission::{Admission, AppGate};
use crate::module_cache::Digest;
use crate::release_binding::ReleaseBinding;

/// Hard limits applied to every request of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory a guest instance may grow to, in bytes.
    pub memory: u64,
    /// Wall-clock time a request may take in the guest.
    pub timeout: Duration,
    /// Largest request body accepted, in bytes (larger gets 413).
    pub max_body: u64,
    /// Largest response a guest may produce, in bytes (larger gets 502).
    pub max_response: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 128 << 20,
            timeout: Duration::from_secs(10),
            max_body: 10 << 20,
            max_response: 64 << 20,
        }
    }
}

/// How SDK-mode requests get a guest instance. WAGI modules always get a fresh one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// A bounded pool of initialized instances per release, one request at a time each.
    #[default]
    Pooled,
    /// A fresh instance per request, from a snapshot taken after Go's start-up.
    PerRequest,
}

impl Isolation {
    /// The name used in `platform.toml` and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Pooled => "pooled",
            Isolation::PerRequest => "per-request",
        }
    }
}

impl std::str::FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pooled" => Ok(Isolation::Pooled),
            "per-request" => Ok(Isolation::PerRequest),
            other => Err(format!(
                "unknown isolation {other:?}: expected \"pooled\" or \"per-request\""
            )),
        }
    }
}

/// One immutable release of an app: module + configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// The app's name (the metrics and log label).
    pub app: String,
    /// The tenant owning the app; instances are never shared across tenants or releases.
    pub tenant: String,
    /// Release identifier, unique per app.
    pub release: String,
    /// The release's number (1, 2, 3... per app; 0 when it has none, as in a manifest
    /// served without a control plane): the `release` label of request metrics.
    pub release_number: u32,
    /// The module to run, by content digest.
    pub module: Digest,
    /// Environment given to the guest (WAGI: on top of the CGI variables).
    pub env: Vec<(String, String)>,
    /// Resource limits.
    pub limits: Limits,
    /// SDK-mode isolation.
    pub isolation: Isolation,
    /// Hosts SDK-mode guests may call out to (`host`, `host:port`, or `*.domain`).
    pub allowed_outbound_hosts: Vec<String>,
}

impl AppSpec {
    /// The `release` label of metrics: the number, or `-` without one.
    pub fn release_label(&self) -> String {
        match self.release_number {
            0 => "-".into(),
            n => n.to_string(),
        }
    }

    /// A spec with default limits and no module, for unit tests of routing.
    #[doc(hidden)]
    pub fn for_tests(app: &str) -> Self {
        AppSpec {
            app: app.to_string(),
            tenant: "default".into(),
            release: "1".into(),
            release_number: 1,
            module: Digest::of(app.as_bytes()),
            env: Vec::new(),
            limits: Limits::default(),
            isolation: Isolation::default(),
            allowed_outbound_hosts: Vec::new(),
        }
    }
}

/// What a route points to: an app with one live release, or a weighted split of two.
#[derive(Debug)]
pub struct AppTarget {
    /// App name.
    pub app: String,
    /// Releases with their weights (weights need not sum to 100).
    pub releases: Vec<(u32, Arc<AppSpec>)>,
    /// The app's admission gate, bound on the first request after the route table is
    /// installed (so requests do not look it up by name). A target serves one runtime.
    gate: OnceLock<Arc<AppGate>>,
    /// One per entry of `releases`: the handles each release's requests use.
    bindings: Vec<ReleaseBinding>,
    /// A dedicated app on a shared runtime: its requests go to its own Service instead
    /// of a guest here ([`crate::dedicated_forward`]).
    forward: Option<crate::dedicated_forward::ServiceAddress>,
}

impl AppTarget {
    /// A target splitting traffic between `releases` by weight.
    pub fn new(app: impl Into<String>, releases: Vec<(u32, Arc<AppSpec>)>) -> Self {
        AppTarget {
            app: app.into(),
            bindings: releases.iter().map(|_| ReleaseBinding::default()).collect(),
            releases,
            gate: OnceLock::new(),
            forward: None,
        }
    }

    /// This target with its requests forwarded to the dedicated app's Service at `to`.
    pub fn forwarded_to(mut self, to: crate::dedicated_forward::ServiceAddress) -> Self {
        self.forward = Some(to);
        self
    }

    /// Where this app's requests are forwarded, when it is a dedicated app served
    /// elsewhere.
    pub fn forward(&self) -> Option<&crate::dedicated_forward::ServiceAddress> {
        self.forward.as_ref()
    }

    /// A target with all traffic on one release.
    pub fn single(spec: Arc<AppSpec>) -> Self {
        Self::new(spec.app.clone(), vec![(100, spec)])
    }

    /// The tenant owning the app.
    pub fn tenant(&self) -> &str {
        self.releases.first().map_or("", |(_, s)| s.tenant.as_str())
    }

    /// The app's admission gate in `admission`.
    pub fn gate(&self, admission: &Admission) -> &Arc<AppGate> {
        self.gate
            .get_or_init(|| admission.gate(self.tenant(), &self.app))
    }

    /// Picks the release for one request, by weight.
    pub fn pick(&self) -> Option<&Arc<AppSpec>> {
        self.pick_bound().map(|(spec, _)| spec)
    }

    /// Picks the release for one request, by weight, with its handles.
    pub fn pick_bound(&self) -> Option<(&Arc<AppSpec>, &ReleaseBinding)> {
        let i = self.pick_index()?;
        Some((&self.releases.get(i)?.1, self.bindings.get(i)?))
    }

    fn pick_index(&self) -> Option<usize> {
        match self.releases.as_slice() {
            [] => None,
            [_] => Some(0),
            many => {
                let total: u64 = many.iter().map(|(w, _)| u64::from(*w)).sum();
                if total == 0 {
                    return Some(0);
                }
                let mut roll = rand::random_range(0..total);
                for (i, (w, _)) in many.iter().enumerate() {
                    let w = u64::from(*w);
                    if roll < w {
                        return Some(i);
                    }
                    roll -= w;
                }
                Some(many.len() - 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_split_follows_weights() {
        let a = Arc::new(AppSpec {
            release: "a".into(),
            ..AppSpec::for_tests("x")
        });
        let b = Arc::new(AppSpec {
            release: "b".into(),
            ..AppSpec::for_tests("x")
        });
        let t = AppTarget::new("x", vec![(90, a), (10, b)]);
        let n = 10_000;
        let to_b = (0..n).filter(|_| t.pick().unwrap().release == "b").count();
        assert!((600..1400).contains(&to_b), "{to_b} of {n} went to b");
    }
}
