//! `FeedState`: the runtime's copy of what the control plane says to serve.
//!
//! It starts from a snapshot and applies revisioned events: an event for the next revision
//! is applied (each carries one app's whole serving state); an older or equal one is
//! ignored; a gap means events were missed, and the caller resyncs from a new snapshot.
//! After each change the caller installs [`FeedState::route_table`] as a whole.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use platform_proto::v1::{
    FeedEvent, FeedSnapshot, Isolation as ProtoIsolation, ServingApp, WeightedRelease, feed_event,
};

use crate::app::{AppSpec, AppTarget, Isolation, Limits};
use crate::dedicated_forward::ServiceAddress;
use crate::module_cache::Digest;
use crate::route_table::{RouteSpec, RouteTable, TriggerTarget};

/// Which apps of the feed this runtime serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ServeScope {
    /// Every app (one-process installations, where nothing is dedicated).
    #[default]
    All,
    /// Every app; dedicated ones, which run in Knative Services of their own, keep their
    /// routes here but are forwarded to their Service (`service_url`), and their triggers
    /// are left to it.
    Shared,
    /// Only this app (by id): the runtime inside a dedicated app's Knative Service.
    OnlyApp(String),
}

/// How a runtime in some scope treats one app of the feed.
enum Serving {
    /// Runs its guests.
    Here,
    /// Keeps its routes and forwards them to its dedicated Service.
    Forward(ServiceAddress),
    /// Leaves it out.
    No,
}

impl ServeScope {
    fn serving(&self, app: &ServingApp) -> Serving {
        match self {
            ServeScope::All => Serving::Here,
            ServeScope::Shared if !app.dedicated => Serving::Here,
            ServeScope::Shared => match ServiceAddress::parse(&app.service_url) {
                Ok(to) => Serving::Forward(to),
                Err(e) => {
                    // An older control plane sends no address: the app is its Service's alone.
                    tracing::warn!(app = %app.name, error = %e, "dedicated app without a usable Service address; its routes are not served here");
                    Serving::No
                }
            },
            ServeScope::OnlyApp(id) if app.app_id == *id => Serving::Here,
            ServeScope::OnlyApp(_) => Serving::No,
        }
    }
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state changed; install a new route table.
    Changed,
    /// The event was old news.
    Ignored,
    /// Events were missed: resync from a snapshot.
    Gap,
}

/// The served state and its revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedState {
    revision: u64,
    apps: BTreeMap<String, ServingApp>,
}

impl FeedState {
    /// State from a snapshot.
    pub fn from_snapshot(s: FeedSnapshot) -> Self {
        FeedState {
            revision: s.revision,
            apps: s.apps.into_iter().map(|a| (a.app_id.clone(), a)).collect(),
        }
    }

    /// The revision this state reflects.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of serving apps.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// True when nothing is served.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// Applies one event. An event without a change announces control's revision (a
    /// control plane or worker does so whenever it connects to NATS, since events it
    /// published while away, or just before it was killed, may be lost): a state behind it
    /// needs a snapshot, as on a gap.
    pub fn apply(&mut self, event: &FeedEvent) -> Applied {
        if event.revision <= self.revision {
            return Applied::Ignored;
        }
        if event.revision != self.revision + 1 {
            return Applied::Gap;
        }
        match &event.change {
            Some(feed_event::Change::AppChanged(app)) => {
                self.apps.insert(app.app_id.clone(), app.clone());
            }
            Some(feed_event::Change::AppRemoved(id)) => {
                self.apps.remove(id);
            }
            None => return Applied::Gap,
        }
        self.revision = event.revision;
        Applied::Changed
    }

    /// The route table for this state. Routes that fail to parse or collide (which control
    /// prevents) are skipped with a warning rather than taking every other route down.
    pub fn route_table(&self) -> RouteTable {
        self.route_table_for(&ServeScope::All)
    }

    /// The route table (routes and triggers) of the apps in `scope`.
    pub fn route_table_for(&self, scope: &ServeScope) -> RouteTable {
        let mut entries: Vec<(RouteSpec, Arc<AppTarget>)> = Vec::new();
        let mut events: Vec<(String, TriggerTarget)> = Vec::new();
        let mut subjects: Vec<(String, TriggerTarget)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut seen_events = std::collections::HashSet::new();
        for app in self.apps.values() {
            let forward = match scope.serving(app) {
                Serving::Here => None,
                Serving::Forward(to) => Some(to),
                Serving::No => continue,
            };
            let releases: Vec<(u32, Arc<AppSpec>)> = app
                .releases
                .iter()
                .filter_map(|w| {
                    let r = w.release.as_ref()?;
                    match app_spec(app, w) {
                        Some(spec) => Some((w.weight, Arc::new(spec))),
                        None => {
                            tracing::warn!(app = %app.name, release = %r.id, "release has an invalid module digest; skipped");
                            None
                        }
                    }
                })
                .collect();
            if releases.is_empty() {
                continue;
            }
            let target = AppTarget::new(app.name.clone(), releases);
            let forwarded = forward.is_some();
            let target = Arc::new(match forward {
                Some(to) => target.forwarded_to(to),
                None => target,
            });
            for r in &app.routes {
                let text = format!("{}{}", r.host, r.path_prefix);
                match RouteSpec::parse(&text) {
                    Ok(spec) if seen.insert(spec.clone()) => entries.push((spec, target.clone())),
                    Ok(spec) => {
                        tracing::warn!(route = %spec, app = %app.name, "duplicate route in feed; skipped")
                    }
                    Err(e) => {
                        tracing::warn!(route = %text, error = %e, "invalid route in feed; skipped")
                    }
                }
            }
            if forwarded {
                // Its Service's runtime takes its events and subscribes to its subjects.
                continue;
            }
            let deliver = |path: &str| TriggerTarget {
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.to_string()
                },
                target: target.clone(),
            };
            for t in &app.event_triggers {
                if seen_events.insert(t.event_type.clone()) {
                    events.push((t.event_type.clone(), deliver(&t.path)));
                } else {
                    tracing::warn!(event_type = %t.event_type, app = %app.name, "event type claimed twice in feed; skipped");
                }
            }
            for t in &app.subject_triggers {
                subjects.push((t.subject.clone(), deliver(&t.path)));
            }
        }
        // Duplicates were removed above, so building cannot conflict.
        RouteTable::build(entries)
            .unwrap_or_default()
            .with_triggers(events, subjects)
    }
}

/// The spec of one weighted release: its environment is the release's plus its secrets
/// (a secret wins over a variable of the same name).
fn app_spec(app: &ServingApp, w: &WeightedRelease) -> Option<AppSpec> {
    let r = w.release.as_ref()?;
    let defaults = Limits::default();
    let l = r.limits.unwrap_or_default();
    let nonzero = |v: u64, d: u64| if v == 0 { d } else { v };
    Some(AppSpec {
        app: app.name.clone(),
        tenant: app.tenant.clone(),
        release: r.id.clone(),
        release_number: r.number,
        module: Digest::parse(&r.module_digest)?,
        env: r
            .env
            .iter()
            .chain(&w.secret_env)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect(),
        limits: Limits {
            memory: nonzero(l.memory_bytes, defaults.memory),
            timeout: if l.timeout_ms == 0 {
                defaults.timeout
            } else {
                Duration::from_millis(l.timeout_ms)
            },
            max_body: nonzero(l.max_body_bytes, defaults.max_body),
            max_response: nonzero(l.max_response_bytes, defaults.max_response),
        },
        isolation: if r.isolation == ProtoIsolation::PerRequest as i32 {
            Isolation::PerRequest
        } else {
            Isolation::Pooled
        },
        allowed_outbound_hosts: r.allowed_outbound_hosts.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform_proto::v1::{Release, ServingRoute};

    fn app(id: &str, prefix: &str) -> ServingApp {
        ServingApp {
            app_id: id.into(),
            tenant: "t".into(),
            name: id.into(),
            routes: vec![ServingRoute {
                host: String::new(),
                path_prefix: prefix.into(),
            }],
            releases: vec![WeightedRelease {
                weight: 100,
                release: Some(Release {
                    id: format!("{id}-r1"),
                    module_digest: "a".repeat(64),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn changed(revision: u64, a: ServingApp) -> FeedEvent {
        FeedEvent {
            revision,
            change: Some(feed_event::Change::AppChanged(a)),
        }
    }

    #[test]
    fn applies_in_order_ignores_old_and_detects_gaps() {
        let mut s = FeedState::from_snapshot(FeedSnapshot {
            revision: 5,
            apps: vec![app("a", "/a")],
        });
        assert!(s.route_table().lookup(None, "/a").is_some());
        assert_eq!(s.apply(&changed(5, app("b", "/b"))), Applied::Ignored);
        assert_eq!(s.apply(&changed(6, app("b", "/b"))), Applied::Changed);
        assert_eq!(s.revision(), 6);
        let t = s.route_table();
        assert_eq!(t.lookup(None, "/b/x").unwrap().target.app, "b");
        assert_eq!(s.apply(&changed(8, app("c", "/c"))), Applied::Gap);
        assert_eq!(s.revision(), 6, "a gap changes nothing");
        let removed = FeedEvent {
            revision: 7,
            change: Some(feed_event::Change::AppRemoved("a".into())),
        };
        assert_eq!(s.apply(&removed), Applied::Changed);
        assert!(s.route_table().lookup(None, "/a").is_none());
    }

    /// An announcement of a newer revision (no change) means "you missed something":
    /// resync, never skip ahead as if nothing had changed. One at or below the state's
    /// revision changes nothing.
    #[test]
    fn an_announced_revision_ahead_asks_for_a_snapshot() {
        let mut s = FeedState::from_snapshot(FeedSnapshot {
            revision: 5,
            apps: vec![app("a", "/a")],
        });
        let announce = |revision| FeedEvent {
            revision,
            change: None,
        };
        assert_eq!(s.apply(&announce(5)), Applied::Ignored);
        assert_eq!(s.apply(&announce(4)), Applied::Ignored);
        assert_eq!(s.apply(&announce(6)), Applied::Gap);
        assert_eq!(s.revision(), 5, "the announcement did not move the state");
        assert_eq!(s.apply(&announce(9)), Applied::Gap);
    }

    #[test]
    fn scopes_and_triggers() {
        use platform_proto::v1::{EventTrigger, SubjectTrigger};
        let mut dedicated = app("d", "/d");
        dedicated.dedicated = true;
        let mut events_only = app("e", "/e");
        events_only.routes.clear();
        events_only.event_triggers = vec![EventTrigger {
            event_type: "com.example.created".into(),
            path: "/hook".into(),
        }];
        events_only.subject_triggers = vec![SubjectTrigger {
            subject: "orders.>".into(),
            path: String::new(),
        }];
        let s = FeedState::from_snapshot(FeedSnapshot {
            revision: 1,
            apps: vec![app("a", "/a"), dedicated, events_only],
        });
        let all = s.route_table();
        assert!(all.lookup(None, "/d").is_some());
        let ev = all.event_target("com.example.created").unwrap();
        assert_eq!((ev.target.app.as_str(), ev.path.as_str()), ("e", "/hook"));
        assert_eq!(all.subjects()[0].0, "orders.>");
        assert_eq!(all.subjects()[0].1.path, "/");
        let shared = s.route_table_for(&ServeScope::Shared);
        assert!(
            shared.lookup(None, "/d").is_none(),
            "a dedicated app without a Service address leaves the shared runtime"
        );
        assert!(shared.lookup(None, "/a").is_some());
        assert!(
            shared
                .lookup(None, "/a")
                .unwrap()
                .target
                .forward()
                .is_none()
        );
        let only = s.route_table_for(&ServeScope::OnlyApp("d".into()));
        assert!(only.lookup(None, "/d").is_some());
        assert!(only.lookup(None, "/a").is_none());
        assert!(only.event_target("com.example.created").is_none());
    }

    #[test]
    fn shared_runtimes_forward_dedicated_apps_to_their_service() {
        use platform_proto::v1::{EventTrigger, SubjectTrigger};
        let mut d = app("d", "/d");
        d.dedicated = true;
        d.service_url = "http://fn-d-12345678.platform.svc.cluster.local".into();
        d.routes.push(ServingRoute {
            host: "d.example.com".into(),
            path_prefix: "/".into(),
        });
        d.event_triggers = vec![EventTrigger {
            event_type: "com.example.d".into(),
            path: "/hook".into(),
        }];
        d.subject_triggers = vec![SubjectTrigger {
            subject: "d.>".into(),
            path: String::new(),
        }];
        let mut bad = app("b", "/b");
        bad.dedicated = true;
        bad.service_url = "https://elsewhere.example/path".into();
        let s = FeedState::from_snapshot(FeedSnapshot {
            revision: 1,
            apps: vec![app("a", "/a"), d, bad],
        });

        let shared = s.route_table_for(&ServeScope::Shared);
        for (host, path) in [(None, "/d/x"), (Some("d.example.com"), "/")] {
            let m = shared
                .lookup(host, path)
                .expect("the dedicated app keeps its routes");
            assert_eq!(
                m.target.forward().map(|a| a.authority()),
                Some("fn-d-12345678.platform.svc.cluster.local")
            );
        }
        assert!(
            shared
                .lookup(None, "/a")
                .unwrap()
                .target
                .forward()
                .is_none()
        );
        assert!(
            shared.lookup(None, "/b").is_none(),
            "an unusable address is not forwarded to"
        );
        assert!(
            shared.event_target("com.example.d").is_none() && shared.subjects().is_empty(),
            "its triggers stay with its Service"
        );

        // Its own Service's runtime serves it, and everything else ignores the address.
        let only = s.route_table_for(&ServeScope::OnlyApp("d".into()));
        assert!(only.lookup(None, "/d").unwrap().target.forward().is_none());
        assert!(only.event_target("com.example.d").is_some());
        let all = s.route_table();
        assert!(all.lookup(None, "/d").unwrap().target.forward().is_none());
    }
}
