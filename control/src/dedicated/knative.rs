//! `KnativeServiceSpec`: the Knative Service a dedicated app runs in, as the control plane
//! applies it.
//!
//! It mirrors the shared runtime's Service in `deploy/base/runtime/service.yaml` (same
//! image, probes, security context, scale-to-zero settings), but the runtime inside serves
//! only its app (`platform runtime --only-app ID`), so the app scales on its own traffic.
//! The object is plain JSON: the Knative types are not in `k8s-openapi`, and a golden file
//! of this output is validated against Knative's published CRD schema by
//! `deploy/tests/validate`.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Label every object the control plane manages carries (garbage collection selects it).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "platform-control");
/// Label holding the app id of a dedicated Service.
pub const APP_ID_LABEL: &str = "platform.dev/app-id";

/// How dedicated Services are built; the operator sets these on the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedicatedConfig {
    /// Namespace the Services live in (the platform's own).
    pub namespace: String,
    /// The `platform` image the runtime runs from.
    pub image: String,
    /// ConfigMap with the shared `PLATFORM_*` settings (control URL, NATS URL...).
    pub config_map: String,
    /// Secret (key `token`) with the runtime's control-plane token.
    pub token_secret: String,
    /// Secret (keys `user`, `password`) with the runtime role's NATS credentials, given
    /// to the pods as `PLATFORM_NATS_USER`/`PLATFORM_NATS_PASSWORD`.
    pub nats_secret: String,
    /// Most pods per app.
    pub max_scale: u32,
    /// Hard cap of in-flight requests per pod.
    pub container_concurrency: u32,
    /// Optional RuntimeClass (gVisor: `gvisor`).
    pub runtime_class: Option<String>,
}

impl Default for DedicatedConfig {
    fn default() -> Self {
        DedicatedConfig {
            namespace: "platform".into(),
            image: "ghcr.io/platform-dev/platform:0.1.0".into(),
            config_map: "platform-config".into(),
            token_secret: "platform-runtime-token".into(),
            nats_secret: "platform-nats-runtime".into(),
            max_scale: 3,
            container_concurrency: 200,
            runtime_class: None,
        }
    }
}

/// The app a Service is built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedicatedApp {
    /// App id (the runtime's `--only-app`).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// App name.
    pub name: String,
}

impl DedicatedApp {
    /// The Service's name: `fn-<app>-<hash>`, a DNS label short enough for Knative's
    /// revision suffixes, unique across tenants through the hash of the app id.
    pub fn service_name(&self) -> String {
        let hash = hex::encode(Sha256::digest(self.id.as_bytes()));
        let mut base: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(30)
            .collect();
        while base.ends_with('-') {
            base.pop();
        }
        format!("fn-{base}-{}", &hash[..8])
    }
}

/// Label values must be at most 63 characters of `[A-Za-z0-9._-]`.
fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The Knative Service for `app`.
pub fn knative_service(app: &DedicatedApp, cfg: &DedicatedConfig) -> Value {
    let labels = json!({
        "app.kubernetes.io/name": "platform",
        "app.kubernetes.io/component": "dedicated-runtime",
        "app.kubernetes.io/part-of": "platform",
        MANAGED_BY.0: MANAGED_BY.1,
        APP_ID_LABEL: label_value(&app.id),
        "platform.dev/tenant": label_value(&app.tenant),
        "platform.dev/app": label_value(&app.name),
    });
    let mut pod = json!({
        "containerConcurrency": cfg.container_concurrency,
        "timeoutSeconds": 60,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "containers": [{
            "name": "runtime",
            "image": cfg.image,
            "args": ["runtime", "--only-app", app.id],
            "ports": [{"name": "http1", "containerPort": 8080}],
            "envFrom": [{"configMapRef": {"name": cfg.config_map}}],
            "env": [
                {"name": "PLATFORM_ADMIN_LISTEN", "value": "0.0.0.0:8081"},
                {"name": "PLATFORM_ARTIFACT_DIR", "value": "/var/cache/platform/artifacts"},
                // Shared runtimes forward the app's requests here with Host set to this
                // Service and the client's host in X-Forwarded-Host, which this runtime
                // routes by (it serves this one app only).
                {"name": "PLATFORM_TRUST_FORWARDED_HOST", "value": "true"},
                {"name": "PLATFORM_TOKEN", "valueFrom": {"secretKeyRef": {"name": cfg.token_secret, "key": "token"}}},
                {"name": "PLATFORM_NATS_USER", "valueFrom": {"secretKeyRef": {"name": cfg.nats_secret, "key": "user"}}},
                {"name": "PLATFORM_NATS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": cfg.nats_secret, "key": "password"}}},
            ],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8081}, "periodSeconds": 0, "successThreshold": 1},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8081}, "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumeMounts": [
                {"name": "data", "mountPath": "/var/lib/platform"},
                {"name": "artifacts", "mountPath": "/var/cache/platform/artifacts"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }],
        "volumes": [
            {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "artifacts", "emptyDir": {"sizeLimit": "4Gi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
    });
    if let (Some(rc), Some(obj)) = (&cfg.runtime_class, pod.as_object_mut()) {
        obj.insert("runtimeClassName".into(), json!(rc));
    }
    json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": app.service_name(),
            "namespace": cfg.namespace,
            "labels": labels,
        },
        "spec": {
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
                        "autoscaling.knative.dev/metric": "concurrency",
                        "autoscaling.knative.dev/min-scale": "0",
                        "autoscaling.knative.dev/max-scale": cfg.max_scale.max(1).to_string(),
                        "autoscaling.knative.dev/target": "100",
                        "autoscaling.knative.dev/target-utilization-percentage": "70",
                        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": "5m",
                        "autoscaling.knative.dev/window": "60s",
                        "platform.dev/token-generation": "1",
                    },
                },
                "spec": pod,
            },
        },
    })
}

/// What a Service's status says, as the API reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedStatus {
    /// The Ready condition is True.
    pub ready: bool,
    /// `status.url`.
    pub url: String,
    /// The Ready condition's reason and message, or "waiting for Knative".
    pub message: String,
}

/// Reads the Ready condition and URL off a Service object.
pub fn observed_status(obj: &Value) -> ObservedStatus {
    let status = &obj["status"];
    let ready = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    let url = status["url"].as_str().unwrap_or_default().to_string();
    match ready {
        Some(c) => {
            let is_ready = c["status"] == "True";
            let reason = c["reason"].as_str().unwrap_or_default();
            let msg = c["message"].as_str().unwrap_or_default();
            ObservedStatus {
                ready: is_ready,
                url,
                message: match (is_ready, reason, msg) {
                    (true, _, _) => "ready".into(),
                    (false, "", "") => "not ready yet".into(),
                    (false, r, "") => r.to_string(),
                    (false, "", m) => m.to_string(),
                    (false, r, m) => format!("{r}: {m}"),
                },
            }
        }
        None => ObservedStatus {
            ready: false,
            url,
            message: "waiting for Knative to report the Service".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_unique_per_app() {
        let a = DedicatedApp {
            id: "0190abcd".into(),
            tenant: "t".into(),
            name: "Very_Long-app-name-that-goes-on-and-on-and-on".into(),
        };
        let n = a.service_name();
        assert!(n.len() <= 50, "{n}");
        assert!(n.starts_with("fn-very-long-app-name"));
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        let b = DedicatedApp {
            id: "0190abce".into(),
            ..a.clone()
        };
        assert_ne!(n, b.service_name());
    }

    #[test]
    fn status_is_read_from_conditions() {
        let s = observed_status(&json!({"status": {"url": "http://x", "conditions": [
            {"type": "ConfigurationsReady", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "RevisionFailed", "message": "image pull"}]}}));
        assert_eq!(
            s,
            ObservedStatus {
                ready: false,
                url: "http://x".into(),
                message: "RevisionFailed: image pull".into()
            }
        );
        assert!(
            observed_status(
                &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
            )
            .ready
        );
        assert!(!observed_status(&json!({})).ready);
    }
}
