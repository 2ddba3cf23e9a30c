//! Deploying an app: upload the module, make sure the app exists, create a release that goes
//! live once compiled, make sure the routes exist. Running it twice with the same input
//! changes nothing (no new release when module and configuration are unchanged).
//!
//! Deploys of one app may run at once (a CI pipeline per branch): an app or route another
//! deploy created first is used as found, and each deploy follows its own release until the
//! release is settled, with a deadline. A release that is ready but not live was
//! *superseded*: a newer release of the app went live after it was created (the user's latest
//! intent wins), so it never goes live by itself. That deploy still succeeded (its release
//! exists and is ready) and says which release serves instead.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use platform_proto::v1::*;

use super::api::{Api, CallError};

/// The module to deploy.
#[derive(Debug, Clone)]
pub enum ModuleInput {
    /// A file.
    File(PathBuf),
    /// Bytes with a name.
    Bytes(String, Vec<u8>),
}

/// What to deploy.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    /// App name.
    pub app: String,
    /// The module.
    pub module: ModuleInput,
    /// Routes as (host or "", path prefix).
    pub routes: Vec<(String, String)>,
    /// Guest environment.
    pub env: BTreeMap<String, String>,
    /// Limits (zero fields take defaults).
    pub limits: Limits,
    /// SDK isolation.
    pub isolation: Isolation,
    /// Outbound allow-list.
    pub allowed_outbound_hosts: Vec<String>,
    /// Remove the app's routes that are not in `routes`.
    pub prune_routes: bool,
    /// The app's triggers (a manifest's `[apps.triggers]`), replacing the ones it has;
    /// `None` leaves them as they are.
    pub triggers: Option<(Vec<EventTrigger>, Vec<SubjectTrigger>)>,
    /// How long to wait for the release to be compiled and settled.
    pub wait_timeout: Duration,
}

/// How long a deploy waits for its release by default.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// How a deploy's release ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// The release is live.
    Live,
    /// The same module and configuration were already live: no new release was made.
    Unchanged,
    /// The release is ready but a newer release of the app was made after it (a
    /// concurrent deploy) and went live, or waits to, instead: it will not go live by itself.
    Superseded {
        /// The newest release of the app.
        newest: u32,
        /// The release live now (0: none yet; the newest is still compiling).
        live_number: u32,
    },
    /// The release is ready but not live, and nothing newer exists: someone rolled the app
    /// back to an older release meanwhile.
    NotLive {
        /// The release live now.
        live_number: u32,
    },
}

/// The outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Deployed {
    /// App name.
    pub app: String,
    /// This deploy's release (live unless superseded).
    pub release: Release,
    /// Live, unchanged or superseded.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Whether a new release was made.
    pub new_release: bool,
    /// URLs serving the app.
    pub urls: Vec<String>,
    /// The module as stored.
    pub module: Module,
}

/// Deploys `spec`, reporting progress through `say`.
pub async fn deploy(
    api: &dyn Api,
    spec: &DeploySpec,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Deployed, CallError> {
    // A route the tenant may not have is refused before anything is uploaded or released,
    // so a refused deploy leaves nothing half-applied.
    for (host, path) in &spec.routes {
        api.create_route(CreateRouteRequest {
            app: spec.app.clone(),
            host: host.clone(),
            path_prefix: path.clone(),
            validate_only: true,
        })
        .await?;
    }
    let module = match &spec.module {
        ModuleInput::File(p) => {
            say(&format!("uploading {} ...", p.display()));
            api.upload(p).await?
        }
        ModuleInput::Bytes(name, bytes) => api.upload_bytes(name, bytes.clone()).await?,
    };
    say(&format!(
        "module sha256:{} ({} bytes, {})",
        &module.digest[..12],
        module.size,
        abi_name(module.abi)
    ));
    let app = match api
        .get_app(GetAppRequest {
            app: spec.app.clone(),
        })
        .await
    {
        Ok(r) => r.app,
        Err(e) if e.is_not_found() => {
            say(&format!("creating app {}", spec.app));
            match api
                .create_app(CreateAppRequest {
                    name: spec.app.clone(),
                })
                .await
            {
                Ok(r) => r.app,
                // A concurrent deploy created it first: use that one.
                Err(e) if e.code == "already_exists" => {
                    api.get_app(GetAppRequest {
                        app: spec.app.clone(),
                    })
                    .await?
                    .app
                }
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    .ok_or_else(|| CallError {
        code: "internal".into(),
        message: "empty app".into(),
    })?;

    let wanted = CreateReleaseRequest {
        app: app.id.clone(),
        module_digest: module.digest.clone(),
        env: spec.env.clone().into_iter().collect(),
        limits: Some(spec.limits),
        isolation: spec.isolation as i32,
        allowed_outbound_hosts: spec.allowed_outbound_hosts.clone(),
        activate: true,
        force: false,
    };
    let live = if app.live_release_id.is_empty() {
        None
    } else {
        api.get_release(GetReleaseRequest {
            id: app.live_release_id.clone(),
        })
        .await?
        .release
    };
    let unchanged = live
        .as_ref()
        .is_some_and(|r| same_release(r, &wanted, module.abi));
    let (release, new_release) = if let (true, Some(r)) = (unchanged, live) {
        say(&format!(
            "release #{} is live with this module and configuration; nothing to release",
            r.number
        ));
        (r, false)
    } else {
        let r = api
            .create_release(wanted)
            .await?
            .release
            .ok_or_else(|| CallError {
                code: "internal".into(),
                message: "empty release".into(),
            })?;
        say(&format!("created release #{}", r.number));
        (r, true)
    };

    let release = wait_settled(api, release, &app.name, spec.wait_timeout, say).await?;
    let outcome = if !new_release {
        Outcome::Unchanged
    } else if release.live {
        Outcome::Live
    } else {
        let live_number = api
            .get_app(GetAppRequest {
                app: app.id.clone(),
            })
            .await?
            .app
            .map_or(0, |a| a.live_release_number);
        let newest = api
            .list_releases(ListReleasesRequest {
                app: app.id.clone(),
            })
            .await?
            .releases
            .iter()
            .map(|r| r.number)
            .max()
            .unwrap_or(release.number);
        if newest > release.number {
            Outcome::Superseded {
                newest,
                live_number,
            }
        } else {
            Outcome::NotLive { live_number }
        }
    };

    let existing = api
        .list_routes(ListRoutesRequest {
            app: app.id.clone(),
        })
        .await?
        .routes;
    let mut urls = Vec::new();
    for (host, path) in &spec.routes {
        if let Some(r) = existing.iter().find(|r| same_route(r, host, path)) {
            urls.push(r.url.clone());
            continue;
        }
        let created = api
            .create_route(CreateRouteRequest {
                app: app.id.clone(),
                host: host.clone(),
                path_prefix: path.clone(),
                validate_only: false,
            })
            .await;
        let r = match created {
            Ok(r) => r.route.ok_or_else(|| CallError {
                code: "internal".into(),
                message: "empty route".into(),
            })?,
            // A concurrent deploy of this app added it first: fine. (Taken by another app
            // is still an error.)
            Err(e) if e.code == "already_exists" => {
                let now = api
                    .list_routes(ListRoutesRequest {
                        app: app.id.clone(),
                    })
                    .await?
                    .routes;
                match now.into_iter().find(|r| same_route(r, host, path)) {
                    Some(r) => {
                        urls.push(r.url);
                        continue;
                    }
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        say(&format!("added route {}{}", r.host, r.path_prefix));
        urls.push(r.url);
    }
    if spec.prune_routes {
        for r in &existing {
            let keep = spec.routes.iter().any(|(h, p)| same_route(r, h, p));
            if !keep {
                api.delete_route(DeleteRouteRequest { id: r.id.clone() })
                    .await?;
                say(&format!("removed route {}{}", r.host, r.path_prefix));
            }
        }
    } else {
        for r in &existing {
            if !urls.contains(&r.url) {
                urls.push(r.url.clone());
            }
        }
    }
    if let Some((events, subjects)) = &spec.triggers {
        set_triggers(api, &app, events, subjects, say).await?;
    }
    // The app's own address (no route needed), after the routes asked for.
    if !app.default_url.is_empty() {
        urls.push(app.default_url.clone());
    }
    Ok(Deployed {
        app: app.name,
        release,
        outcome,
        new_release,
        urls,
        module,
    })
}

/// True when the stored route `r` is the one written as `host` + `path` (compared in the
/// canonical form the control plane stores: `LOCALHOST.:8080/a/` is `localhost/a`).
fn same_route(r: &Route, host: &str, path: &str) -> bool {
    let stored = platform_runtime::RouteSpec::parse(&format!("{}{}", r.host, r.path_prefix));
    let wanted = platform_runtime::RouteSpec::parse(&format!("{}{}", host.trim(), path.trim()));
    matches!((stored, wanted), (Ok(a), Ok(b)) if a == b)
}

/// Polls `release` (backing off from 100 ms to 2 s) until it is ready or failed, for at most
/// `timeout`. A ready release is settled: it went live, or a newer one went live instead
/// (the activation happens in the same transaction that makes it ready).
async fn wait_settled(
    api: &dyn Api,
    mut release: Release,
    app: &str,
    timeout: Duration,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Release, CallError> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(100);
    let mut said_compiling = false;
    loop {
        match ReleaseState::try_from(release.state).unwrap_or(ReleaseState::Unspecified) {
            ReleaseState::Failed => {
                return Err(CallError {
                    code: "failed_precondition".into(),
                    message: format!("release #{} failed: {}", release.number, release.error),
                });
            }
            ReleaseState::Ready => return Ok(release),
            _ => {}
        }
        if !said_compiling {
            say("compiling the module ahead of time (once per module) ...");
            said_compiling = true;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(CallError {
                code: "deadline_exceeded".into(),
                message: format!(
                    "release #{} of {app} is still waiting for its module to compile after {} (--wait-timeout); it goes live by itself once compiled unless a newer release does first: follow it with `platform releases {app}`",
                    release.number,
                    humantime::format_duration(timeout)
                ),
            });
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(2));
        release = api
            .get_release(GetReleaseRequest {
                id: release.id.clone(),
            })
            .await?
            .release
            .ok_or_else(|| CallError {
                code: "internal".into(),
                message: "empty release".into(),
            })?;
    }
}

fn same_release(r: &Release, want: &CreateReleaseRequest, abi: i32) -> bool {
    let defaults = platform_runtime::Limits::default();
    let l = want.limits.unwrap_or_default();
    let pick = |v: u64, d: u64| if v == 0 { d } else { v };
    let want_limits = Limits {
        memory_bytes: pick(l.memory_bytes, defaults.memory),
        timeout_ms: pick(l.timeout_ms, defaults.timeout.as_millis() as u64),
        max_body_bytes: pick(l.max_body_bytes, defaults.max_body),
        max_response_bytes: pick(l.max_response_bytes, defaults.max_response),
    };
    // Unset, the control plane chooses by the module's kind (see `create_release`).
    let want_isolation = match Isolation::try_from(want.isolation).unwrap_or_default() {
        Isolation::PerRequest => Isolation::PerRequest,
        Isolation::Pooled => Isolation::Pooled,
        Isolation::Unspecified if abi == Abi::Component as i32 => Isolation::PerRequest,
        Isolation::Unspecified => Isolation::Pooled,
    };
    let mut hosts: Vec<String> = want
        .allowed_outbound_hosts
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    hosts.sort();
    let mut have_hosts = r.allowed_outbound_hosts.clone();
    have_hosts.sort();
    r.module_digest == want.module_digest
        && r.env == want.env
        && r.limits == Some(want_limits)
        && r.isolation == want_isolation as i32
        && have_hosts == hosts
}

/// A readable ABI name.
pub fn abi_name(abi: i32) -> &'static str {
    match Abi::try_from(abi).unwrap_or(Abi::Unspecified) {
        Abi::Wagi => "WAGI",
        Abi::Sdk => "SDK",
        Abi::Component => "component (wasi:http)",
        Abi::Unspecified => "unknown ABI",
    }
}

/// Makes the app's triggers `events` and `subjects` (sorted), unless they already are.
async fn set_triggers(
    api: &dyn Api,
    app: &App,
    events: &[EventTrigger],
    subjects: &[SubjectTrigger],
    say: &(dyn Fn(&str) + Sync),
) -> Result<(), CallError> {
    let key_e = |t: &EventTrigger| (t.event_type.clone(), t.path.clone());
    let key_s = |t: &SubjectTrigger| (t.subject.clone(), t.path.clone());
    let sorted = |mut v: Vec<(String, String)>| {
        v.sort();
        v
    };
    let same = sorted(app.event_triggers.iter().map(key_e).collect())
        == sorted(events.iter().map(key_e).collect())
        && sorted(app.subject_triggers.iter().map(key_s).collect())
            == sorted(subjects.iter().map(key_s).collect());
    if same {
        return Ok(());
    }
    api.set_triggers(SetAppTriggersRequest {
        app: app.id.clone(),
        event_triggers: events.to_vec(),
        subject_triggers: subjects.to_vec(),
    })
    .await?;
    say(&format!(
        "triggers set: {} event type(s), {} subject(s)",
        events.len(),
        subjects.len()
    ));
    Ok(())
}
