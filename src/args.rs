//! Flags shared by the serving commands. Every flag is also a `PLATFORM_*` environment
//! variable (what Kubernetes and Knative pass), with flags winning over the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::telemetry::LogFormat;

/// Data directory and observability, for every process.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Data directory: database (embedded mode), blobs, modules, artifacts, admin token.
    #[arg(long, env = "PLATFORM_DATA_DIR", default_value = "./.platform")]
    pub data_dir: PathBuf,
    /// Log format on stderr.
    #[arg(long, env = "PLATFORM_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// OTLP/HTTP endpoint for traces, e.g. http://127.0.0.1:4318.
    #[arg(long, env = "PLATFORM_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log every request on stderr (a `request served` line in a `request` span). Off by
    /// default: at thousands of requests a second the line costs a runtime a fifth to a third of
    /// its throughput (benches/README.md, "The access log"). Requests are in the app's own
    /// log either way (dashboard, `platform logs`), in the metrics, and in OTLP traces.
    #[arg(long, env = "PLATFORM_ACCESS_LOG")]
    pub access_log: bool,
}

/// The data plane's flags.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Traffic listener [default: 0.0.0.0:$PORT when PORT is set, else 127.0.0.1:8080].
    #[arg(long, env = "PLATFORM_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Admin listener: health, readiness, metrics (and, under `up`, the API and dashboard).
    #[arg(long, env = "PLATFORM_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,
    /// Compiled-artifact cache [default: <data-dir>/artifacts]. Safe to share between
    /// processes; put it on fast local disk (an emptyDir under Kubernetes).
    #[arg(long, env = "PLATFORM_ARTIFACT_DIR")]
    pub artifact_dir: Option<PathBuf>,
    /// Unload a module (and its idle instances) after this long without requests.
    #[arg(long, env = "PLATFORM_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "PLATFORM_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Most guest executions at once; more requests wait.
    #[arg(long, env = "PLATFORM_MAX_CONCURRENCY", default_value_t = 256)]
    pub max_concurrency: usize,
    /// Most executions at once of one app, so one app cannot take the host [default: half
    /// of --max-concurrency]. An app at its cap answers 503 with Retry-After.
    #[arg(long, env = "PLATFORM_MAX_APP_CONCURRENCY")]
    pub max_app_concurrency: Option<usize>,
    /// Most executions at once of all of one tenant's apps [default: three quarters of
    /// --max-concurrency].
    #[arg(long, env = "PLATFORM_MAX_TENANT_CONCURRENCY")]
    pub max_tenant_concurrency: Option<usize>,
    /// How long a request may wait for its app's, its tenant's and the host's capacity before
    /// a 503 with Retry-After (at most the release's time limit).
    #[arg(long, env = "PLATFORM_QUEUE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub queue_timeout: Duration,
    /// How long a WAGI request's whole body may take to arrive (read before the guest runs).
    #[arg(long, env = "PLATFORM_BODY_READ_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,
    /// How long a request body may stall without a byte before the request fails (408).
    #[arg(long, env = "PLATFORM_BODY_IDLE_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub body_idle_timeout: Duration,
    /// How long a client may take to send a request's headers.
    #[arg(long, env = "PLATFORM_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Route by X-Forwarded-Host instead of Host. Only behind a proxy that overwrites that
    /// header and is the runtime's sole entry (deploy/README.md); a client could otherwise
    /// pick any tenant's host.
    #[arg(long, env = "PLATFORM_TRUST_FORWARDED_HOST")]
    pub trust_forwarded_host: bool,
    /// Internal listener for CloudEvents (POST /.platform/events) from the event broker,
    /// e.g. 127.0.0.1:8082. The traffic listener never takes events [default: none, events
    /// over HTTP off].
    #[arg(long, env = "PLATFORM_EVENTS_LISTEN")]
    pub events_listen: Option<SocketAddr>,
    /// Cluster mode: serve only this app (by id), as the runtime of a dedicated app's own
    /// Knative Service. `platform up` serves everything and ignores it.
    #[arg(long, env = "PLATFORM_ONLY_APP")]
    pub only_app: Option<String>,
    /// Cluster mode: leave dedicated apps to their own Knative Services.
    #[arg(long, env = "PLATFORM_EXCLUDE_DEDICATED")]
    pub exclude_dedicated: bool,
    /// Address ranges guests' outbound HTTP never reaches, on top of the built-in private
    /// ranges, whatever else is allowed: the cluster's pod and service ranges, the control
    /// plane (comma-separated CIDRs).
    #[arg(long, env = "PLATFORM_OUTBOUND_DENY", value_delimiter = ',', value_parser = platform_runtime::sdk::outbound::parse_deny)]
    pub outbound_deny: Vec<platform_runtime::sdk::outbound::IpNet>,
    /// Private destinations guests may reach even though the built-in deny-list covers
    /// them, if their release lists them too (comma-separated HOST:PORT, IP:PORT or CIDR).
    /// The platform's own listeners stay refused.
    #[arg(long, env = "PLATFORM_OUTBOUND_ALLOW_PRIVATE", value_delimiter = ',')]
    pub outbound_allow_private: Vec<platform_runtime::sdk::outbound::PrivateAllow>,
}

impl RuntimeArgs {
    /// Which apps of the feed to serve.
    pub fn scope(&self) -> platform_runtime::feed::ServeScope {
        use platform_runtime::feed::ServeScope;
        match (&self.only_app, self.exclude_dedicated) {
            (Some(id), _) => ServeScope::OnlyApp(id.clone()),
            (None, true) => ServeScope::Shared,
            (None, false) => ServeScope::All,
        }
    }

    /// The traffic address: the flag, else `$PORT` on all interfaces, else the default.
    pub fn traffic_addr(&self) -> SocketAddr {
        if let Some(a) = self.listen {
            return a;
        }
        if let Some(port) = std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse::<u16>().ok())
        {
            return SocketAddr::from(([0, 0, 0, 0], port));
        }
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
}

/// Apps' own addresses (`platform up` and `platform control`).
#[derive(Debug, Clone, Args)]
pub struct AddressArgs {
    /// Every app answers at `<app>--<tenant>.<base domain>` with no route or claim, e.g.
    /// apps.example.com (a wildcard DNS name pointing at the runtimes) [`platform up`:
    /// localhost, which browsers and curl resolve to this machine; give "" for none].
    #[arg(long, env = "PLATFORM_BASE_DOMAIN")]
    pub base_domain: Option<String>,
    /// Instead of --base-domain, a template with {app} and {tenant}, e.g.
    /// '{app}.{tenant}.fn.example.com'.
    #[arg(
        long,
        env = "PLATFORM_APP_ADDRESS_TEMPLATE",
        conflicts_with = "base_domain"
    )]
    pub app_address_template: Option<String>,
}

impl AddressArgs {
    /// The template, if any; `default_base` applies when neither flag is given.
    pub fn template(
        &self,
        default_base: Option<&str>,
    ) -> anyhow::Result<Option<platform_control::app_address::AppAddressTemplate>> {
        use platform_control::app_address::AppAddressTemplate;
        if let Some(t) = &self.app_address_template {
            return Ok(Some(AppAddressTemplate::parse(t)?));
        }
        match self.base_domain.as_deref().or(default_base).map(str::trim) {
            None | Some("") => Ok(None),
            Some(d) => Ok(Some(AppAddressTemplate::from_base_domain(d)?)),
        }
    }
}

/// The control plane's flags (also used by the worker).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Database: postgres://... for clusters [default: sqlite://<data-dir>/platform.db].
    #[arg(long, env = "PLATFORM_DATABASE_URL")]
    pub database_url: Option<String>,
    /// NATS for events between the parts (without it: in-process events).
    #[command(flatten)]
    pub nats: crate::nats_connection::NatsArgs,
    /// Blob store: file:///path or s3://bucket/prefix [default: file://<data-dir>/blobs].
    #[arg(long, env = "PLATFORM_BLOB_URL")]
    pub blob_url: Option<String>,
    /// Secret for the first admin token on an empty database (at least 32 characters),
    /// instead of a random one: lets a cluster's runtimes be configured before control starts.
    #[arg(long, env = "PLATFORM_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub bootstrap_token: Option<String>,
    /// Key sealing secrets at rest: a file of 64 hex digits (`openssl rand -hex 32`), mode
    /// 0600 [`platform up`: <data-dir>/secrets-key, created when missing; `platform
    /// control`: none, and secrets are off].
    #[arg(long, env = "PLATFORM_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// A previous key, still opening secrets sealed before a rotation (repeatable; with
    /// the env variable, comma-separated). At start every secret is sealed again under
    /// --secrets-key-file, after which the old key can go.
    #[arg(long, env = "PLATFORM_SECRETS_OLD_KEY_FILES", value_delimiter = ',')]
    pub secrets_old_key_file: Vec<PathBuf>,
    /// Largest module accepted for upload.
    #[arg(long, env = "PLATFORM_MAX_MODULE_SIZE", default_value = "128MiB", value_parser = parse_size)]
    pub max_module_size: u64,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub dedicated: DedicatedArgs,
}

/// The operator's caps on release limits and per-tenant quotas (unset: no limit beyond the
/// built-in maxima of 4 GiB memory, 15 min timeout, 1 GiB body and response).
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest memory limit a release may ask for, e.g. 512MiB (smaller defaults follow it).
    #[arg(long, env = "PLATFORM_MAX_RELEASE_MEMORY", value_parser = parse_size)]
    pub max_release_memory: Option<u64>,
    /// Longest per-request timeout a release may ask for, e.g. 30s.
    #[arg(long, env = "PLATFORM_MAX_RELEASE_TIMEOUT", value_parser = parse_duration)]
    pub max_release_timeout: Option<Duration>,
    /// Largest request body limit a release may ask for, e.g. 10MiB.
    #[arg(long, env = "PLATFORM_MAX_RELEASE_BODY", value_parser = parse_size)]
    pub max_release_body: Option<u64>,
    /// Largest response limit a release may ask for, e.g. 64MiB.
    #[arg(long, env = "PLATFORM_MAX_RELEASE_RESPONSE", value_parser = parse_size)]
    pub max_release_response: Option<u64>,
    /// Most apps per tenant.
    #[arg(long, env = "PLATFORM_MAX_APPS_PER_TENANT")]
    pub max_apps_per_tenant: Option<u64>,
    /// Most modules per tenant.
    #[arg(long, env = "PLATFORM_MAX_MODULES_PER_TENANT")]
    pub max_modules_per_tenant: Option<u64>,
    /// Most bytes of modules stored per tenant, e.g. 1GiB.
    #[arg(long, env = "PLATFORM_MAX_MODULE_BYTES_PER_TENANT", value_parser = parse_size)]
    pub max_module_bytes_per_tenant: Option<u64>,
}

impl LimitArgs {
    /// The caps on release limits.
    pub fn caps(&self) -> platform_control::quota::ReleaseCaps {
        platform_control::quota::ReleaseCaps {
            memory_bytes: self.max_release_memory.unwrap_or(0),
            timeout_ms: self
                .max_release_timeout
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            max_body_bytes: self.max_release_body.unwrap_or(0),
            max_response_bytes: self.max_release_response.unwrap_or(0),
        }
    }

    /// The per-tenant quotas.
    pub fn quotas(&self) -> platform_control::quota::TenantQuotas {
        platform_control::quota::TenantQuotas {
            apps: self.max_apps_per_tenant.unwrap_or(0),
            modules: self.max_modules_per_tenant.unwrap_or(0),
            module_bytes: self.max_module_bytes_per_tenant.unwrap_or(0),
        }
    }
}

/// Dedicated mode (`platform control` on Kubernetes): apps marked dedicated get Knative
/// Services of their own, managed through the Kubernetes API.
#[derive(Debug, Clone, Args)]
pub struct DedicatedArgs {
    /// Manage dedicated apps' Knative Services (needs in-cluster credentials or KUBECONFIG,
    /// and RBAC on services.serving.knative.dev in --kube-namespace).
    #[arg(long, env = "PLATFORM_DEDICATED")]
    pub dedicated_services: bool,
    /// Namespace of the dedicated Services.
    #[arg(long, env = "PLATFORM_KUBE_NAMESPACE", default_value = "platform")]
    pub kube_namespace: String,
    /// The platform image dedicated runtimes run.
    #[arg(
        long,
        env = "PLATFORM_DEDICATED_IMAGE",
        default_value = "ghcr.io/platform-dev/platform:0.1.0"
    )]
    pub dedicated_image: String,
    /// Most pods per dedicated app.
    #[arg(long, env = "PLATFORM_DEDICATED_MAX_SCALE", default_value_t = 3)]
    pub dedicated_max_scale: u32,
    /// RuntimeClass of dedicated runtimes (e.g. gvisor).
    #[arg(long, env = "PLATFORM_DEDICATED_RUNTIME_CLASS")]
    pub dedicated_runtime_class: Option<String>,
    /// Where shared runtimes forward a dedicated app's requests, so its URLs keep working:
    /// an http://host[:port] template with {service} (the Knative Service's name),
    /// {namespace} (--kube-namespace), {app}, {tenant} and {app_id}. The default is the
    /// Service's cluster-local Knative address.
    #[arg(
        long,
        env = "PLATFORM_DEDICATED_ADDRESS_TEMPLATE",
        default_value = platform_control::dedicated::address::KNATIVE_CLUSTER_LOCAL
    )]
    pub dedicated_address_template: String,
}

impl DedicatedArgs {
    /// The reconciler's settings.
    pub fn config(&self) -> platform_control::dedicated::knative::DedicatedConfig {
        platform_control::dedicated::knative::DedicatedConfig {
            namespace: self.kube_namespace.clone(),
            image: self.dedicated_image.clone(),
            max_scale: self.dedicated_max_scale,
            runtime_class: self.dedicated_runtime_class.clone(),
            ..Default::default()
        }
    }
}

/// Single sign-on to the dashboard with an OpenID Connect provider (off unless
/// `--oidc-issuer` is given).
#[derive(Debug, Clone, Args)]
pub struct OidcArgs {
    /// OpenID Connect issuer URL for dashboard single sign-on, e.g.
    /// https://auth.example.com/realms/main (its /.well-known/openid-configuration is read on
    /// the first sign-in).
    #[arg(long, env = "PLATFORM_OIDC_ISSUER", requires = "oidc_client_id")]
    pub oidc_issuer: Option<String>,
    /// Client id registered at the OpenID Connect provider.
    #[arg(long, env = "PLATFORM_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// Client secret at the OpenID Connect provider (prefer the environment variable;
    /// omit for a public client).
    #[arg(long, env = "PLATFORM_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// Redirect URL registered at the provider [default: <dashboard URL>/login/oidc/callback].
    #[arg(long, env = "PLATFORM_OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,
    /// Tenant that users signed in with single sign-on act for.
    #[arg(long, env = "PLATFORM_OIDC_TENANT", default_value = "default")]
    pub oidc_tenant: String,
    /// Only users with a verified email in these domains may sign in (comma-separated)
    /// [default: anyone the provider signs in].
    #[arg(long, env = "PLATFORM_OIDC_ALLOWED_DOMAINS", value_delimiter = ',')]
    pub oidc_allowed_domains: Vec<String>,
}

impl OidcArgs {
    /// The dashboard's single sign-on settings (`None` without `--oidc-issuer`), for a
    /// dashboard reached at `dashboard_base`.
    pub fn config(&self, dashboard_base: &str) -> anyhow::Result<Option<platform_web::OidcConfig>> {
        let Some(issuer) = self.oidc_issuer.as_deref().map(str::trim) else {
            return Ok(None);
        };
        let client_id = self
            .oidc_client_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| anyhow::anyhow!("--oidc-issuer needs --oidc-client-id"))?;
        url::Url::parse(issuer).map_err(|e| anyhow::anyhow!("--oidc-issuer {issuer:?}: {e}"))?;
        let redirect_url = self
            .oidc_redirect_url
            .clone()
            .unwrap_or_else(|| platform_web::OidcConfig::default_redirect_url(dashboard_base));
        url::Url::parse(&redirect_url)
            .map_err(|e| anyhow::anyhow!("--oidc-redirect-url {redirect_url:?}: {e}"))?;
        let tenant = self.oidc_tenant.trim();
        if tenant.is_empty() {
            anyhow::bail!("--oidc-tenant must not be empty");
        }
        Ok(Some(platform_web::OidcConfig {
            issuer_url: issuer.to_string(),
            client_id: client_id.to_string(),
            client_secret: self.oidc_client_secret.clone().filter(|s| !s.is_empty()),
            redirect_url,
            tenant: tenant.to_string(),
            allowed_domains: self
                .oidc_allowed_domains
                .iter()
                .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
        }))
    }
}

/// The dashboard (served by `platform up` and `platform control`).
#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// Where people reach the dashboard, e.g. https://console.example.com [default: the
    /// API listener's address]. Over https the session cookie is `__Host-` and `Secure`.
    /// Keep the dashboard on a host of its own, never one that tenants' apps are served on
    /// or below (deploy/README.md).
    #[arg(long, env = "PLATFORM_DASHBOARD_URL")]
    pub dashboard_url: Option<String>,
    /// Header the proxy in front of the dashboard puts the client's address in (its last
    /// entry is used for sign-in rate limits), e.g. x-forwarded-for. Only behind a proxy
    /// that sets it and is the dashboard's only entry [default: the peer address].
    #[arg(long, env = "PLATFORM_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    #[command(flatten)]
    pub oidc: OidcArgs,
}

impl DashboardArgs {
    /// The dashboard's settings, for a dashboard listening at `listen_base` (used when no
    /// --dashboard-url is given).
    pub fn web_config(&self, listen_base: &str) -> anyhow::Result<platform_web::WebConfig> {
        let base = self
            .dashboard_url
            .as_deref()
            .map(|u| u.trim().trim_end_matches('/'))
            .filter(|u| !u.is_empty())
            .unwrap_or(listen_base);
        url::Url::parse(base).map_err(|e| anyhow::anyhow!("--dashboard-url {base:?}: {e}"))?;
        Ok(platform_web::WebConfig {
            secure_cookies: base.starts_with("https://"),
            oidc: self.oidc.config(base)?,
            client_ip_header: self
                .client_ip_header
                .as_deref()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty()),
            ..Default::default()
        })
    }
}

/// Parses a duration flag such as `30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::manifest::parse_duration(s)
}

/// Parses a size flag such as `128MiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    crate::manifest::parse_size(s)
}
