//! Client commands: `login`, `init`, `deploy`, `apps`, `releases`, `rollback`, `split`,
//! `secrets`, `logs`, `status`, `routes`, `triggers`, `dedicated`, `domains`, `tokens`.
//!
//! Server and token come from flags, then `PLATFORM_SERVER` / `PLATFORM_TOKEN`, then the
//! saved login (`platform login`), then, on the machine running `platform up`, the admin
//! token in its data directory, so `platform up` then `platform deploy` needs no login.

pub mod api;
pub mod deploy;
pub mod init;
pub mod logs;
pub mod secrets;
pub mod split;
pub mod status;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use platform_proto::v1::*;

use self::api::{Api, HttpApi};
use self::deploy::{DeploySpec, ModuleInput};
use crate::manifest::{Manifest, parse_duration, parse_size};

/// Where the API is and who we are.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Control plane URL [default: saved login, else http://127.0.0.1:8081].
    #[arg(long, env = "PLATFORM_SERVER", global = true)]
    pub server: Option<String>,
    /// API token [default: saved login, else <data-dir>/admin-token].
    #[arg(long, env = "PLATFORM_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Data directory of a local `platform up` (for its admin token).
    #[arg(
        long,
        env = "PLATFORM_DATA_DIR",
        default_value = "./.platform",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Save the server URL and token for later commands.
    Login {
        /// Control plane URL, e.g. https://platform.example.com.
        #[arg(long)]
        server: String,
        /// API token.
        #[arg(long)]
        token: String,
    },
    /// Start a Go project: `platform init hello [--template sdk|wagi|json-api]` writes
    /// main.go, go.mod, platform.toml, .gitignore and a README into ./hello.
    Init(init::InitArgs),
    /// Upload a module and serve it: `platform deploy hello.wasm --app hello --route /hello`,
    /// or every app of a manifest: `platform deploy --manifest platform.toml`.
    Deploy(Box<DeployArgs>),
    /// List apps.
    Apps {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List an app's releases.
    Releases {
        /// App name.
        app: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Make an earlier release live again (the previous one by default).
    Rollback {
        /// App name.
        app: String,
        /// Release number or id.
        release: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Split traffic between two releases: `platform split APP 90=#12 10=#13`, or
    /// `platform split APP --canary 10%` (the newest release gets 10%), or `--clear`.
    Split(split::SplitArgs),
    /// Write-only secrets, read by guests as environment variables:
    /// `echo -n "$KEY" | platform secrets set APP API_KEY`, `list`, `unset`.
    Secrets {
        #[command(subcommand)]
        action: secrets::SecretAction,
    },
    /// Show an app's recent log lines (request lines and guest output); `-f` follows new
    /// ones: `platform logs shop -f --status 5xx --since 10m`.
    Logs(logs::LogsArgs),
    /// What is live and how it is doing (last 5 minutes): a table of apps, or one app's
    /// release, split, routes, error rate, p50/p99 and cold starts.
    Status(status::StatusArgs),
    /// List routes.
    Routes {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Show an app's event triggers, or replace them: CloudEvent types posted to
    /// /.platform/events and NATS subjects (cluster mode) that invoke the app.
    /// `platform triggers orders --event com.example.order.created=/events --subject orders.>`
    Triggers {
        /// App name.
        app: String,
        /// CloudEvent type, optionally with the path it is posted to: TYPE[=/path] (repeatable).
        #[arg(long = "event")]
        events: Vec<String>,
        /// NATS subject, optionally with the path: SUBJECT[=/path] (repeatable).
        #[arg(long = "subject")]
        subjects: Vec<String>,
        /// Remove every trigger.
        #[arg(long, conflicts_with_all = ["events", "subjects"])]
        clear: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Run an app in a Knative Service of its own (`on`), or back on the shared runtimes (`off`).
    Dedicated {
        /// App name.
        app: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        mode: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Hosts held by tenants: list them, or (admin) assign and take them back. A tenant
    /// routes only on hosts it holds: `platform domains add shop.example.com --tenant acme`,
    /// `platform domains add '*.acme.example' --tenant acme`.
    Domains {
        #[command(subcommand)]
        action: Option<DomainAction>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List, create or revoke API tokens.
    Tokens {
        #[command(subcommand)]
        action: Option<TokenAction>,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

/// `platform domains ...`.
#[derive(Debug, Subcommand)]
pub enum DomainAction {
    /// List the hosts assigned (admin: all, or one tenant's).
    List {
        /// Only this tenant's (admin tokens).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Assign a host or wildcard (`*.example.com`) to a tenant (admin tokens).
    Add {
        /// Host or `*.domain`.
        name: String,
        /// The tenant (created when new) [default: the token's].
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Take a host back (admin tokens); refused while the tenant still routes there.
    Remove {
        /// Host or `*.domain`, as assigned.
        name: String,
    },
}

/// `platform tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token (its secret is printed once).
    Create {
        /// A name to recognise it by.
        name: String,
        /// Another tenant (admin tokens only); created when new.
        #[arg(long)]
        tenant: Option<String>,
        /// Give it admin rights (admin tokens only); the same as --role admin.
        #[arg(long)]
        admin: bool,
        /// member (its tenant), admin (every tenant) or runtime (reads the serving feed,
        /// modules and artifacts, nothing else: for runtime pods). Admin tokens only for
        /// admin and runtime.
        #[arg(long, value_parser = ["member", "admin", "runtime"])]
        role: Option<String>,
    },
    /// Revoke a token by id.
    Revoke {
        /// Token id.
        id: String,
    },
}

/// `platform deploy` flags.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The .wasm to deploy.
    pub module: Option<PathBuf>,
    /// Deploy every app of this manifest instead.
    #[arg(long, conflicts_with_all = ["module", "app"])]
    pub manifest: Option<PathBuf>,
    /// App name.
    #[arg(long)]
    pub app: Option<String>,
    /// Route: "/path" or "host/path" (repeatable).
    #[arg(long = "route")]
    pub routes: Vec<String>,
    /// Host for the routes given as "/path".
    #[arg(long)]
    pub host: Option<String>,
    /// Environment variable K=V for the guest (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Memory limit, e.g. 128MiB.
    #[arg(long)]
    pub memory: Option<String>,
    /// Time limit per request, e.g. 2s.
    #[arg(long)]
    pub timeout: Option<String>,
    /// Largest request body, e.g. 10MiB.
    #[arg(long)]
    pub max_body: Option<String>,
    /// pooled or per-request [default: pooled for SDK modules, per-request for
    /// components; WAGI modules always get a fresh instance].
    #[arg(long)]
    pub isolation: Option<String>,
    /// Outbound host SDK guests may call (repeatable).
    #[arg(long = "allow-host")]
    pub allow_hosts: Vec<String>,
    /// How long to wait for the release to be compiled and settled, e.g. 10m.
    #[arg(long, env = "PLATFORM_WAIT_TIMEOUT", default_value = "5m")]
    pub wait_timeout: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs a client command.
pub async fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Login { server, token } => login(&server, &token).await,
        ClientCommand::Init(args) => init::run(args),
        ClientCommand::Split(args) => split::run(args).await,
        ClientCommand::Logs(args) => logs::run(args).await,
        ClientCommand::Status(args) => status::run(args).await,
        ClientCommand::Secrets { action } => secrets::run(action).await,
        ClientCommand::Triggers {
            app,
            events,
            subjects,
            clear,
            conn,
        } => {
            let api = connect(&conn)?;
            let a = if events.is_empty() && subjects.is_empty() && !clear {
                api.get_app(GetAppRequest { app: app.clone() }).await?.app
            } else {
                let split = |s: &String| match s.split_once('=') {
                    Some((v, p)) => (v.to_string(), p.to_string()),
                    None => (s.clone(), String::new()),
                };
                api.set_triggers(SetAppTriggersRequest {
                    app: app.clone(),
                    event_triggers: events
                        .iter()
                        .map(split)
                        .map(|(event_type, path)| EventTrigger { event_type, path })
                        .collect(),
                    subject_triggers: subjects
                        .iter()
                        .map(split)
                        .map(|(subject, path)| SubjectTrigger { subject, path })
                        .collect(),
                })
                .await?
                .app
            }
            .context("empty answer")?;
            if conn.json {
                return print_json(&(&a.event_triggers, &a.subject_triggers));
            }
            if a.event_triggers.is_empty() && a.subject_triggers.is_empty() {
                println!("{app}: no triggers");
            }
            for t in &a.event_triggers {
                println!(
                    "{app}: CloudEvent type {:?} -> POST {}",
                    t.event_type, t.path
                );
            }
            for t in &a.subject_triggers {
                println!("{app}: NATS subject {:?} -> POST {}", t.subject, t.path);
            }
            Ok(())
        }
        ClientCommand::Dedicated { app, mode, conn } => {
            let api = connect(&conn)?;
            let a = api
                .set_dedicated(SetAppDedicatedRequest {
                    app: app.clone(),
                    dedicated: mode == "on",
                })
                .await?
                .app
                .context("empty answer")?;
            if conn.json {
                return print_json(&a);
            }
            if a.dedicated {
                println!(
                    "{app}: dedicated; the control plane creates its Knative Service (see `platform apps --json` for its status)"
                );
            } else {
                println!("{app}: back on the shared runtimes");
            }
            Ok(())
        }
        ClientCommand::Deploy(args) => run_deploy(*args).await,
        ClientCommand::Apps { conn } => {
            let api = connect(&conn)?;
            let apps = api.list_apps(ListAppsRequest {}).await?.apps;
            if conn.json {
                return print_json(&apps);
            }
            if apps.is_empty() {
                println!("no apps yet: platform deploy app.wasm --app NAME --route /path");
            }
            println!("{:<20} {:<8} ROUTES", "APP", "RELEASE");
            // A split shows as `#13 90% / #12 10%`.
            for a in apps {
                let mut routes: Vec<String> = a.routes.iter().map(|r| r.url.clone()).collect();
                if !a.default_url.is_empty() {
                    routes.insert(0, a.default_url.clone());
                }
                let mut rel = if a.live_release_number == 0 {
                    "-".to_string()
                } else {
                    format!("#{}", a.live_release_number)
                };
                if let Some(s) = a.split.as_ref().filter(|s| s.weight > 0) {
                    rel = format!(
                        "{rel} {}% / #{} {}%",
                        100 - s.weight,
                        s.release_number,
                        s.weight
                    );
                }
                println!("{:<20} {:<8} {}", a.name, rel, routes.join(" "));
            }
            Ok(())
        }
        ClientCommand::Releases { app, conn } => {
            let api = connect(&conn)?;
            let releases = api
                .list_releases(ListReleasesRequest { app })
                .await?
                .releases;
            if conn.json {
                return print_json(&releases);
            }
            println!(
                "{:<6} {:<8} {:<14} {:<10} CREATED",
                "#", "LIVE", "MODULE", "STATE"
            );
            for r in releases {
                println!(
                    "{:<6} {:<8} {:<14} {:<10} {}",
                    r.number,
                    if r.live { "live" } else { "" },
                    &r.module_digest[..12.min(r.module_digest.len())],
                    state_name(r.state),
                    r.create_time
                        .map(|t| format_time(t.seconds))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        ClientCommand::Rollback { app, release, conn } => {
            let api = connect(&conn)?;
            let r = api
                .rollback(RollbackReleaseRequest {
                    app: app.clone(),
                    release: release.unwrap_or_default(),
                })
                .await?
                .release
                .context("empty answer")?;
            if conn.json {
                return print_json(&r);
            }
            println!("{app}: release #{} is live again", r.number);
            Ok(())
        }
        ClientCommand::Routes { conn } => {
            let api = connect(&conn)?;
            let routes = api
                .list_routes(ListRoutesRequest { app: String::new() })
                .await?
                .routes;
            if conn.json {
                return print_json(&routes);
            }
            println!("{:<20} {:<34} URL", "APP", "ROUTE");
            for r in routes {
                println!(
                    "{:<20} {:<34} {}",
                    r.app_name,
                    format!("{}{}", r.host, r.path_prefix),
                    r.url
                );
            }
            Ok(())
        }
        ClientCommand::Domains { action, conn } => {
            let api = connect(&conn)?;
            match action.unwrap_or(DomainAction::List { tenant: None }) {
                DomainAction::List { tenant } => {
                    let domains = api
                        .list_domains(ListDomainsRequest {
                            tenant: tenant.unwrap_or_default(),
                        })
                        .await?
                        .domains;
                    if conn.json {
                        return print_json(&domains);
                    }
                    if domains.is_empty() {
                        println!(
                            "no hosts assigned: an admin assigns them with `platform domains add HOST --tenant TENANT`"
                        );
                        return Ok(());
                    }
                    println!("{:<40} TENANT", "HOST");
                    for d in domains {
                        println!("{:<40} {}", d.name, d.tenant);
                    }
                }
                DomainAction::Add { name, tenant } => {
                    let d = api
                        .create_domain(CreateDomainRequest {
                            name,
                            tenant: tenant.unwrap_or_default(),
                        })
                        .await?
                        .domain
                        .context("empty answer")?;
                    if conn.json {
                        return print_json(&d);
                    }
                    println!("{} is now held by tenant {}", d.name, d.tenant);
                }
                DomainAction::Remove { name } => {
                    api.delete_domain(DeleteDomainRequest { name: name.clone() })
                        .await?;
                    if !conn.json {
                        println!("{name} is no longer assigned");
                    }
                }
            }
            Ok(())
        }
        ClientCommand::Tokens { action, conn } => {
            let api = connect(&conn)?;
            match action {
                None => {
                    let tokens = api.list_tokens(ListTokensRequest {}).await?.tokens;
                    if conn.json {
                        return print_json(&tokens);
                    }
                    println!(
                        "{:<34} {:<24} {:<14} {:<8} STATE",
                        "ID", "NAME", "PREFIX", "ROLE"
                    );
                    for t in tokens {
                        println!(
                            "{:<34} {:<24} {:<14} {:<8} {}",
                            t.id,
                            t.name,
                            t.prefix,
                            match TokenRole::try_from(t.role).unwrap_or(TokenRole::Unspecified) {
                                TokenRole::Admin => "admin",
                                TokenRole::Runtime => "runtime",
                                _ if t.admin => "admin",
                                _ => "member",
                            },
                            if t.revoke_time.is_some() {
                                "revoked"
                            } else {
                                "active"
                            }
                        );
                    }
                }
                Some(TokenAction::Create {
                    name,
                    tenant,
                    admin,
                    role,
                }) => {
                    let role = match role.as_deref() {
                        Some("admin") => TokenRole::Admin,
                        Some("runtime") => TokenRole::Runtime,
                        Some(_) => TokenRole::Member,
                        None => TokenRole::Unspecified,
                    };
                    let r = api
                        .create_token(CreateTokenRequest {
                            name,
                            tenant: tenant.unwrap_or_default(),
                            admin,
                            role: role as i32,
                        })
                        .await?;
                    if conn.json {
                        return print_json(&r);
                    }
                    println!("{}\n\n(shown once: store it now)", r.secret);
                }
                Some(TokenAction::Revoke { id }) => {
                    api.revoke_token(RevokeTokenRequest { id: id.clone() })
                        .await?;
                    if !conn.json {
                        println!("token {id} revoked");
                    }
                }
            }
            Ok(())
        }
    }
}

async fn run_deploy(args: DeployArgs) -> anyhow::Result<()> {
    let api = connect(&args.conn)?;
    let json = args.conn.json;
    let say = |s: &str| {
        if !json {
            eprintln!("{s}");
        }
    };
    let wait_timeout =
        parse_duration(&args.wait_timeout).map_err(|e| anyhow::anyhow!("--wait-timeout: {e}"))?;
    let mut specs = if let Some(path) = &args.manifest {
        let m = Manifest::load(path)?;
        manifest_specs(&m)
    } else {
        let Some(module) = args.module.clone() else {
            bail!(
                "give a module (platform deploy app.wasm --app NAME --route /path) or --manifest platform.toml"
            );
        };
        let app = match &args.app {
            Some(a) => a.clone(),
            None => module
                .file_stem()
                .map(|s| {
                    s.to_string_lossy()
                        .to_ascii_lowercase()
                        .replace(['_', '.', ' '], "-")
                })
                .context("name the app with --app")?,
        };
        if args.routes.is_empty() {
            bail!("give at least one --route, e.g. --route /{app}");
        }
        let mut routes = Vec::new();
        for r in &args.routes {
            routes.push(split_route(r, args.host.as_deref()));
        }
        let mut env = BTreeMap::new();
        for kv in &args.env {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--env {kv:?}: expected K=V"))?;
            env.insert(k.to_string(), v.to_string());
        }
        let limits = Limits {
            memory_bytes: args
                .memory
                .as_deref()
                .map(parse_size)
                .transpose()
                .map_err(anyhow::Error::msg)?
                .unwrap_or(0),
            timeout_ms: args
                .timeout
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(anyhow::Error::msg)?
                .map_or(0, |d| d.as_millis() as u64),
            max_body_bytes: args
                .max_body
                .as_deref()
                .map(parse_size)
                .transpose()
                .map_err(anyhow::Error::msg)?
                .unwrap_or(0),
            max_response_bytes: 0,
        };
        let isolation = match args.isolation.as_deref() {
            None => Isolation::Unspecified,
            Some("pooled") => Isolation::Pooled,
            Some("per-request") => Isolation::PerRequest,
            Some(other) => bail!("--isolation {other:?}: expected pooled or per-request"),
        };
        vec![DeploySpec {
            app,
            module: ModuleInput::File(module),
            routes,
            env,
            limits,
            isolation,
            allowed_outbound_hosts: args.allow_hosts.clone(),
            prune_routes: false,
            triggers: None,
            wait_timeout,
        }]
    };
    for spec in &mut specs {
        spec.wait_timeout = wait_timeout;
    }
    let mut results = Vec::new();
    for spec in &specs {
        let d = deploy::deploy(&*api, spec, &say).await?;
        if !json {
            match d.outcome {
                deploy::Outcome::Live | deploy::Outcome::Unchanged => {
                    println!("{} is live (release #{}):", d.app, d.release.number)
                }
                deploy::Outcome::Superseded {
                    newest,
                    live_number,
                } => {
                    let live = if live_number == 0 {
                        "none is live yet".to_string()
                    } else {
                        format!("#{live_number} is live")
                    };
                    println!(
                        "{app} release #{n} is ready but superseded: release #{newest} was made after it by another deploy and goes live instead ({live}; `platform rollback {app} {n}` would serve #{n}):",
                        app = d.app,
                        n = d.release.number
                    )
                }
                deploy::Outcome::NotLive { live_number } => println!(
                    "{app} release #{n} is ready but not live: the app was rolled back to #{live_number} meanwhile (`platform rollback {app} {n}` would serve #{n}):",
                    app = d.app,
                    n = d.release.number
                ),
            }
            for u in &d.urls {
                println!("  {u}");
            }
        }
        results.push(d);
    }
    if json {
        print_json(&results)?;
    }
    Ok(())
}

/// The deploy specs of a manifest (each app's routes made exact).
pub fn manifest_specs(m: &Manifest) -> Vec<DeploySpec> {
    m.apps
        .iter()
        .map(|a| DeploySpec {
            app: a.name.clone(),
            module: ModuleInput::File(a.module.clone()),
            routes: a
                .routes
                .iter()
                .map(|r| (r.host.clone().unwrap_or_default(), r.prefix.clone()))
                .collect(),
            env: a.env.iter().cloned().collect(),
            limits: Limits {
                memory_bytes: a.limits.memory,
                timeout_ms: a.limits.timeout.as_millis() as u64,
                max_body_bytes: a.limits.max_body,
                max_response_bytes: a.limits.max_response,
            },
            isolation: match a.isolation {
                Some(platform_runtime::Isolation::PerRequest) => Isolation::PerRequest,
                Some(platform_runtime::Isolation::Pooled) => Isolation::Pooled,
                None => Isolation::Unspecified,
            },
            allowed_outbound_hosts: a.allowed_outbound_hosts.clone(),
            prune_routes: true,
            triggers: a.triggers.as_ref().map(|t| {
                (
                    t.events
                        .iter()
                        .map(|(ty, path)| EventTrigger {
                            event_type: ty.clone(),
                            path: path.clone(),
                        })
                        .collect(),
                    t.subjects
                        .iter()
                        .map(|(subject, path)| SubjectTrigger {
                            subject: subject.clone(),
                            path: path.clone(),
                        })
                        .collect(),
                )
            }),
            wait_timeout: deploy::DEFAULT_WAIT_TIMEOUT,
        })
        .collect()
}

fn split_route(r: &str, host: Option<&str>) -> (String, String) {
    if r.starts_with('/') {
        (host.unwrap_or("").to_string(), r.to_string())
    } else {
        match r.split_once('/') {
            Some((h, p)) => (h.to_string(), format!("/{p}")),
            None => (r.to_string(), "/".into()),
        }
    }
}

/// Resolves server and token and returns an API client.
pub fn connect(conn: &ConnArgs) -> anyhow::Result<Box<dyn Api>> {
    let (server, token) = server_and_token(conn)?;
    Ok(Box::new(HttpApi::new(&server, &token)?))
}

/// The control plane's URL and the token to call it with (see the module's docs).
pub fn server_and_token(conn: &ConnArgs) -> anyhow::Result<(String, String)> {
    let saved = load_login();
    let server = conn
        .server
        .clone()
        .or_else(|| saved.as_ref().map(|s| s.server.clone()))
        .unwrap_or_else(|| "http://127.0.0.1:8081".into());
    let token = match conn
        .token
        .clone()
        .or_else(|| saved.as_ref().map(|s| s.token.clone()))
    {
        Some(t) => t,
        None => {
            let file = conn.data_dir.join("admin-token");
            std::fs::read_to_string(&file)
                .map(|s| s.trim().to_string())
                .with_context(|| {
                    format!(
                        "no API token: pass --token, set PLATFORM_TOKEN, run `platform login`, or run this next to `platform up` (it writes {})",
                        file.display()
                    )
                })?
        }
    };
    Ok((server, token))
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SavedLogin {
    server: String,
    token: String,
}

fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PLATFORM_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("platform").join("config.toml"))
}

fn load_login() -> Option<SavedLogin> {
    let text = std::fs::read_to_string(config_path()?).ok()?;
    toml::from_str(&text).ok()
}

async fn login(server: &str, token: &str) -> anyhow::Result<()> {
    let api = HttpApi::new(server, token)?;
    let info = api.get_info(GetInfoRequest {}).await?;
    let path =
        config_path().context("cannot find a config directory (set HOME or PLATFORM_CONFIG)")?;
    let text = toml::to_string(&SavedLogin {
        server: server.to_string(),
        token: token.to_string(),
    })?;
    platform_control::write_secret_file(&path, text.trim_end())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "logged in to {server} (Platform {}; apps served at {}); saved to {}",
        info.version,
        info.public_url,
        path.display()
    );
    Ok(())
}

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn state_name(s: i32) -> &'static str {
    match ReleaseState::try_from(s).unwrap_or(ReleaseState::Unspecified) {
        ReleaseState::Pending => "pending",
        ReleaseState::Ready => "ready",
        ReleaseState::Failed => "failed",
        ReleaseState::Unspecified => "?",
    }
}

pub(crate) fn format_time(secs: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64),
    )
    .to_string()
}
