//! `ServiceAddressTemplate`: where shared runtimes forward a dedicated app's requests.
//!
//! Knative gives every Service the deterministic cluster-local address
//! `http://{service}.{namespace}.svc.cluster.local`, so the control plane knows a dedicated
//! app's address without asking the cluster, and puts it in the serving feed
//! (`ServingApp.service_url`); shared runtimes keep the app's routes and forward them there.
//! The operator may set another template (`--dedicated-address-template`), e.g. to point
//! tests at a loopback runtime. Only the operator sets it: no tenant input reaches it.

use super::knative::DedicatedApp;

/// The default: Knative's cluster-local address of the app's Service.
pub const KNATIVE_CLUSTER_LOCAL: &str = "http://{service}.{namespace}.svc.cluster.local";

/// The placeholders a template may use.
const PLACEHOLDERS: [&str; 5] = ["{service}", "{namespace}", "{app}", "{tenant}", "{app_id}"];

/// A template that cannot give a usable address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid dedicated address template {template:?}: {reason}")]
pub struct AddressTemplateError {
    template: String,
    reason: String,
}

/// How a dedicated app's Service address is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddressTemplate {
    template: String,
    namespace: String,
}

impl Default for ServiceAddressTemplate {
    fn default() -> Self {
        ServiceAddressTemplate {
            template: KNATIVE_CLUSTER_LOCAL.into(),
            namespace: "platform".into(),
        }
    }
}

impl ServiceAddressTemplate {
    /// Checks `template` (an `http://host[:port]` URL with any of `{service}`,
    /// `{namespace}`, `{app}`, `{tenant}`, `{app_id}`; nothing after the authority) for
    /// Services in `namespace`.
    pub fn parse(template: &str, namespace: &str) -> Result<Self, AddressTemplateError> {
        let fail = |reason: &str| AddressTemplateError {
            template: template.into(),
            reason: reason.into(),
        };
        let t = template.trim();
        let mut rest = t.to_string();
        for p in PLACEHOLDERS {
            rest = rest.replace(p, "");
        }
        if rest.contains(['{', '}']) {
            return Err(fail(
                "only {service}, {namespace}, {app}, {tenant} and {app_id} can be substituted",
            ));
        }
        let parsed = ServiceAddressTemplate {
            template: t.to_string(),
            namespace: namespace.trim().to_string(),
        };
        let sample = parsed.url(&DedicatedApp {
            id: "0190f3a2b7c84d5e9f00112233445566".into(),
            tenant: "tenant".into(),
            name: "app".into(),
        });
        let url = url::Url::parse(&sample).map_err(|e| fail(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(fail(
                "it must be an http:// URL (TLS to Services is not supported)",
            ));
        }
        if url.host().is_none() {
            return Err(fail("it needs a host"));
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(fail(
                "it must be scheme, host and port only (no user, path, query or fragment)",
            ));
        }
        Ok(parsed)
    }

    /// The address of `app`'s Service.
    pub fn url(&self, app: &DedicatedApp) -> String {
        self.template
            .replace("{service}", &app.service_name())
            .replace("{namespace}", &self.namespace)
            .replace("{app_id}", &app.id)
            .replace("{app}", &app.name)
            .replace("{tenant}", &app.tenant)
            .trim_end_matches('/')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> DedicatedApp {
        DedicatedApp {
            id: "0190abcd".into(),
            tenant: "acme".into(),
            name: "orders".into(),
        }
    }

    #[test]
    fn default_is_the_knative_cluster_local_address() {
        let t = ServiceAddressTemplate::parse(KNATIVE_CLUSTER_LOCAL, "platform").unwrap();
        let name = app().service_name();
        assert_eq!(
            t.url(&app()),
            format!("http://{name}.platform.svc.cluster.local")
        );
        assert_eq!(ServiceAddressTemplate::default(), t);
    }

    #[test]
    fn templates_substitute_and_refuse_what_cannot_work() {
        let t = ServiceAddressTemplate::parse("http://127.0.0.1:9000/", "ns").unwrap();
        assert_eq!(t.url(&app()), "http://127.0.0.1:9000");
        let t =
            ServiceAddressTemplate::parse("http://{app}-{tenant}.{namespace}:8080", "ns").unwrap();
        assert_eq!(t.url(&app()), "http://orders-acme.ns:8080");
        for bad in [
            "{service}.{namespace}.svc.cluster.local",
            "https://{service}.{namespace}.svc.cluster.local",
            "http://{service}.{namespace}/path",
            "http://{service}?x=1",
            "http://u:p@{service}",
            "http://{nope}.svc",
            "http://",
        ] {
            let e = ServiceAddressTemplate::parse(bad, "ns").unwrap_err();
            assert!(
                e.to_string().contains("invalid dedicated address template"),
                "{bad}: {e}"
            );
        }
    }
}
