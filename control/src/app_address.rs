//! `AppAddressTemplate`: the address every app answers at without any route, the way
//! Knative gives each Service `{name}.{namespace}.{domain}`.
//!
//! The operator sets a base domain (`--base-domain apps.example.com`, giving
//! `<app>--<tenant>.apps.example.com`) or a template of their own
//! (`--app-address-template '{app}.{tenant}.apps.example.com'`). The labels after the last
//! placeholder form the *zone*: every host below it is an app's default address, so no
//! tenant can hold or route a host there; each app's address needs no claim. App and tenant
//! names cannot contain `--`, so `<app>--<tenant>` names one app only.

use platform_runtime::host_name::{HostPattern, canonical_host, is_below};

/// How default addresses are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAddressTemplate {
    template: String,
    zone: String,
}

/// A template that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid app address template {template:?}: {reason}")]
pub struct TemplateError {
    template: String,
    reason: String,
}

impl AppAddressTemplate {
    /// `<app>--<tenant>.<base_domain>`.
    pub fn from_base_domain(base_domain: &str) -> Result<Self, TemplateError> {
        let base = base_domain.trim().trim_start_matches('.');
        Self::parse(&format!("{{app}}--{{tenant}}.{base}"))
    }

    /// A template with `{app}` and `{tenant}`, each once, in labels before a fixed zone.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let fail = |reason: &str| TemplateError {
            template: template.into(),
            reason: reason.into(),
        };
        let t = template.trim().to_ascii_lowercase();
        if t.matches("{app}").count() != 1 || t.matches("{tenant}").count() != 1 {
            return Err(fail("it needs {app} and {tenant}, once each"));
        }
        let labels: Vec<&str> = t.split('.').collect();
        let last_placeholder = labels
            .iter()
            .rposition(|l| l.contains('{'))
            .ok_or_else(|| fail("it needs {app} and {tenant}"))?;
        let zone = labels[last_placeholder + 1..].join(".");
        if zone.is_empty() {
            return Err(fail("it needs a domain after the placeholders"));
        }
        let zone = canonical_host(&zone).map_err(|e| fail(&e.to_string()))?;
        let sample = t.replace("{app}", "app").replace("{tenant}", "tenant");
        canonical_host(&sample).map_err(|e| fail(&e.to_string()))?;
        if t.replace("{app}", "")
            .replace("{tenant}", "")
            .contains(['{', '}'])
        {
            return Err(fail("only {app} and {tenant} can be substituted"));
        }
        Ok(AppAddressTemplate { template: t, zone })
    }

    /// The zone all default addresses are below.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The default host of `tenant`'s `app`.
    pub fn host(&self, app: &str, tenant: &str) -> String {
        self.template
            .replace("{app}", app)
            .replace("{tenant}", tenant)
    }

    /// True when a route or domain pattern would reach into the zone (default addresses are
    /// the platform's to hand out).
    pub fn overlaps_zone(&self, pattern: &HostPattern) -> bool {
        match pattern {
            HostPattern::Exact(h) => is_below(h, &self.zone),
            HostPattern::Wildcard(d) => {
                d == &self.zone || is_below(d, &self.zone) || is_below(&self.zone, d)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_domain_addresses() {
        let t = AppAddressTemplate::from_base_domain("Apps.Example.com").unwrap();
        assert_eq!(t.zone(), "apps.example.com");
        assert_eq!(t.host("shop", "acme"), "shop--acme.apps.example.com");
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(t.overlaps_zone(&p("x--y.apps.example.com")));
        assert!(t.overlaps_zone(&p("*.apps.example.com")));
        assert!(t.overlaps_zone(&p("*.example.com")));
        assert!(!t.overlaps_zone(&p("apps.example.com")));
        assert!(!t.overlaps_zone(&p("shop.example.com")));
    }

    #[test]
    fn custom_templates() {
        let t = AppAddressTemplate::parse("{app}.{tenant}.fn.test").unwrap();
        assert_eq!(t.zone(), "fn.test");
        assert_eq!(t.host("a", "b"), "a.b.fn.test");
        for bad in [
            "{app}.example.com",
            "{app}-{tenant}",
            "{app}{app}-{tenant}.x.test",
            "{app}-{tenant}-{x}.y.test",
            "{app} {tenant}.x.test",
        ] {
            assert!(AppAddressTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
