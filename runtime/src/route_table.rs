//! `RouteTable`: which app serves a request, by host and path prefix.
//!
//! A table is immutable once built; the host swaps a whole new table in at once
//! ([`RouteTableHandle::replace`]), so a request sees either the old routes or the new
//! ones, never half an update.
//!
//! Matching rules:
//! 1. Hosts are compared in canonical form ([`crate::host_name`]): case, port and a trailing
//!    dot do not matter.
//! 2. Routes naming the request's exact host come first, then wildcard routes from the most
//!    specific domain (`*.eu.example.com`) to the least (`*.example.com`), then host-less
//!    routes.
//! 3. Within each level the longest path prefix wins. Prefixes match on segment
//!    boundaries: `/shop` matches `/shop` and `/shop/x`, not `/shopping`.
//! 4. A host that has routes of its own (exact or wildcard) never falls back to host-less
//!    routes: a path its owner did not route is a 404, not another tenant's app.
//!
//! Lookup costs one hash probe per path segment and per label of the host, whatever the
//! number of routes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::app::AppTarget;
use crate::host_name::{HostPattern, request_host};

/// A route as written by a user: an optional host and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteSpec {
    /// Canonical host or wildcard pattern ([`HostPattern`]'s text, e.g. `api.example.com`
    /// or `*.example.com`), or `None` for "any host".
    pub host: Option<String>,
    /// Normalised absolute path prefix: starts with `/`, no trailing `/` unless it is `/`.
    pub prefix: String,
}

/// Why a route string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Nothing was given.
    #[error("route is empty")]
    Empty,
    /// The path part does not start with `/`.
    #[error("route {0:?} must be \"/path\" or \"host/path\" with an absolute path")]
    Relative(String),
    /// A `.` or `..` segment, which a client could use to escape a prefix.
    #[error("route {0:?} contains a '.' or '..' segment")]
    DotSegment(String),
    /// The host part is not a valid DNS name, IP literal or wildcard.
    #[error("route {0:?} has an invalid host: {1}")]
    InvalidHost(String, String),
    /// Characters that cannot appear in a request path (spaces, `?`, `#`, control bytes).
    #[error("route {0:?} contains characters not allowed in a path")]
    InvalidPath(String),
    /// Two routes with the same host and prefix.
    #[error("route {route} is already taken by app {app:?}")]
    Conflict {
        /// The route both claim.
        route: RouteSpec,
        /// The app that had it first.
        app: String,
    },
}

impl RouteSpec {
    /// Parses `"/path"` or `"host/path"` (also `"host"` alone, meaning `host/`).
    pub fn parse(input: &str) -> Result<Self, RouteError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(RouteError::Empty);
        }
        let (host, path) = if s.starts_with('/') {
            (None, s)
        } else {
            match s.find('/') {
                Some(i) => (Some(&s[..i]), &s[i..]),
                None => (Some(s), "/"),
            }
        };
        let host = match host {
            Some(h) => {
                if h.starts_with('.') {
                    return Err(RouteError::Relative(input.to_string()));
                }
                let pattern = HostPattern::parse(h)
                    .map_err(|e| RouteError::InvalidHost(input.to_string(), e.to_string()))?;
                Some(pattern.to_string())
            }
            None => None,
        };
        let prefix = normalise_prefix(path).map_err(|kind| match kind {
            PathProblem::Dot => RouteError::DotSegment(input.to_string()),
            PathProblem::Chars => RouteError::InvalidPath(input.to_string()),
        })?;
        Ok(RouteSpec { host, prefix })
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(h) => write!(f, "{h}{}", self.prefix),
            None => f.write_str(&self.prefix),
        }
    }
}

enum PathProblem {
    Dot,
    Chars,
}

fn normalise_prefix(path: &str) -> Result<String, PathProblem> {
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#' || b == b'\\')
    {
        return Err(PathProblem::Chars);
    }
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if seg == "." || seg == ".." {
            return Err(PathProblem::Dot);
        }
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The result of a successful lookup.
#[derive(Clone)]
pub struct RouteMatch {
    /// The route that matched (its prefix becomes CGI's `SCRIPT_NAME`).
    pub route: Arc<RouteSpec>,
    /// What serves it.
    pub target: Arc<AppTarget>,
}

impl fmt::Debug for RouteMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteMatch")
            .field("route", &self.route.to_string())
            .field("app", &self.target.app)
            .finish()
    }
}

type PrefixMap = HashMap<String, (Arc<RouteSpec>, Arc<AppTarget>)>;

/// Where a trigger (a CloudEvent type, a NATS subject) delivers: an app, at a path.
#[derive(Clone)]
pub struct TriggerTarget {
    /// The request path the event or message is posted to.
    pub path: String,
    /// The app.
    pub target: Arc<AppTarget>,
}

impl fmt::Debug for TriggerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TriggerTarget")
            .field("path", &self.path)
            .field("app", &self.target.app)
            .finish()
    }
}

impl TriggerTarget {
    /// The match a delivery is served under: the app as if routed at `/` (so the whole
    /// path reaches the guest, as `PATH_INFO` in WAGI mode).
    pub fn route_match(&self) -> RouteMatch {
        RouteMatch {
            route: Arc::new(RouteSpec {
                host: None,
                prefix: "/".into(),
            }),
            target: self.target.clone(),
        }
    }
}

/// An immutable set of routes, built once and then only read.
#[derive(Default)]
pub struct RouteTable {
    by_host: HashMap<String, PrefixMap>,
    /// Wildcard routes by the domain they cover (`*.example.com` under `example.com`).
    by_wildcard: HashMap<String, PrefixMap>,
    any_host: PrefixMap,
    len: usize,
    events: HashMap<String, TriggerTarget>,
    subjects: Vec<(String, TriggerTarget)>,
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.len)
            .finish()
    }
}

impl RouteTable {
    /// Builds a table; two entries with the same host and prefix are a [`RouteError::Conflict`].
    pub fn build(
        entries: impl IntoIterator<Item = (RouteSpec, Arc<AppTarget>)>,
    ) -> Result<Self, RouteError> {
        let mut table = RouteTable::default();
        for (spec, target) in entries {
            let map = match spec.host.as_deref() {
                Some(h) => match h.strip_prefix("*.") {
                    Some(domain) => table.by_wildcard.entry(domain.to_string()).or_default(),
                    None => table.by_host.entry(h.to_string()).or_default(),
                },
                None => &mut table.any_host,
            };
            if let Some((_, existing)) = map.get(&spec.prefix) {
                return Err(RouteError::Conflict {
                    route: spec,
                    app: existing.app.clone(),
                });
            }
            map.insert(spec.prefix.clone(), (Arc::new(spec), target));
            table.len += 1;
        }
        Ok(table)
    }

    /// Adds the triggers: CloudEvent types (the first app to claim a type keeps it; control
    /// never lets two claim one) and NATS subjects.
    pub fn with_triggers(
        mut self,
        events: impl IntoIterator<Item = (String, TriggerTarget)>,
        subjects: impl IntoIterator<Item = (String, TriggerTarget)>,
    ) -> Self {
        for (ty, t) in events {
            self.events.entry(ty).or_insert(t);
        }
        self.subjects.extend(subjects);
        self.subjects.sort_by(|a, b| a.0.cmp(&b.0));
        self
    }

    /// The app receiving CloudEvents of type `event_type`.
    pub fn event_target(&self, event_type: &str) -> Option<&TriggerTarget> {
        self.events.get(event_type)
    }

    /// Every NATS subject trigger, sorted by subject.
    pub fn subjects(&self) -> &[(String, TriggerTarget)] {
        &self.subjects
    }

    /// Number of CloudEvent types routed.
    pub fn event_types(&self) -> usize {
        self.events.len()
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every route with the app it points to, sorted, for listings.
    pub fn routes(&self) -> Vec<(Arc<RouteSpec>, Arc<AppTarget>)> {
        let mut out: Vec<_> = self
            .by_host
            .values()
            .chain(self.by_wildcard.values())
            .chain(std::iter::once(&self.any_host))
            .flat_map(|m| m.values().cloned())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Finds the app for a request. `host` is the request's `Host` as sent (any case, maybe
    /// a port); `path` is the request's path, not yet percent-decoded.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<RouteMatch> {
        let host = host.and_then(request_host);
        self.lookup_canonical(host.as_deref(), path)
    }

    /// [`Self::lookup`] for a host already in routing form ([`request_host`]).
    pub fn lookup_canonical(&self, host: Option<&str>, path: &str) -> Option<RouteMatch> {
        if let Some(host) = host {
            let mut owned = false;
            if let Some(map) = self.by_host.get(host) {
                if let Some(m) = longest_prefix(map, path) {
                    return Some(m);
                }
                owned = true;
            }
            if !self.by_wildcard.is_empty() {
                // "a.b.example.com": try b.example.com, example.com, com.
                let mut rest = host;
                while let Some((_, domain)) = rest.split_once('.') {
                    if let Some(map) = self.by_wildcard.get(domain) {
                        if let Some(m) = longest_prefix(map, path) {
                            return Some(m);
                        }
                        owned = true;
                    }
                    rest = domain;
                }
            }
            if owned {
                return None;
            }
        }
        longest_prefix(&self.any_host, path)
    }
}

fn longest_prefix(map: &PrefixMap, path: &str) -> Option<RouteMatch> {
    if map.is_empty() {
        return None;
    }
    // Trim the path at '?', then try "/a/b/c", "/a/b", "/a", "/".
    let path = path.split('?').next().unwrap_or(path);
    let mut candidate = path.trim_end_matches('/');
    loop {
        let key = if candidate.is_empty() { "/" } else { candidate };
        if let Some((spec, target)) = map.get(key) {
            return Some(RouteMatch {
                route: spec.clone(),
                target: target.clone(),
            });
        }
        if candidate.is_empty() {
            return None;
        }
        candidate = match candidate.rfind('/') {
            Some(i) => &candidate[..i],
            None => "",
        };
    }
}

/// The live table, shared by every request; replaced as a whole.
pub struct RouteTableHandle {
    current: ArcSwap<RouteTable>,
    loaded: std::sync::atomic::AtomicBool,
    generation: tokio::sync::watch::Sender<u64>,
}

impl Default for RouteTableHandle {
    fn default() -> Self {
        RouteTableHandle {
            current: ArcSwap::from_pointee(RouteTable::default()),
            loaded: std::sync::atomic::AtomicBool::new(false),
            generation: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl RouteTableHandle {
    /// The table requests see right now.
    pub fn load(&self) -> Arc<RouteTable> {
        self.current.load_full()
    }

    /// Swaps in a new table atomically and marks the routes as loaded (for `/readyz`).
    pub fn replace(&self, table: RouteTable) {
        self.current.store(Arc::new(table));
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Wakes whoever follows the table (NATS subscriptions) after each replacement.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// True once a first table has been installed.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{AppSpec, AppTarget};

    fn target(name: &str) -> Arc<AppTarget> {
        Arc::new(AppTarget::single(Arc::new(AppSpec::for_tests(name))))
    }

    fn table(routes: &[(&str, &str)]) -> RouteTable {
        RouteTable::build(
            routes
                .iter()
                .map(|(r, app)| (RouteSpec::parse(r).unwrap(), target(app))),
        )
        .unwrap()
    }

    fn app_for(t: &RouteTable, host: Option<&str>, path: &str) -> Option<String> {
        t.lookup(host, path).map(|m| m.target.app.clone())
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            RouteSpec::parse("/shop/").unwrap(),
            RouteSpec {
                host: None,
                prefix: "/shop".into()
            }
        );
        assert_eq!(
            RouteSpec::parse("API.example.com/v1").unwrap(),
            RouteSpec {
                host: Some("api.example.com".into()),
                prefix: "/v1".into()
            }
        );
        assert_eq!(RouteSpec::parse("example.com").unwrap().prefix, "/");
        assert_eq!(RouteSpec::parse("//a//b").unwrap().prefix, "/a/b");
        assert_eq!(RouteSpec::parse(""), Err(RouteError::Empty));
        assert!(matches!(
            RouteSpec::parse("/a/../b"),
            Err(RouteError::DotSegment(_))
        ));
        assert!(matches!(
            RouteSpec::parse("/a b"),
            Err(RouteError::InvalidPath(_))
        ));
        assert!(matches!(
            RouteSpec::parse("exa mple/x"),
            Err(RouteError::InvalidHost(..))
        ));
        assert!(matches!(
            RouteSpec::parse("../x"),
            Err(RouteError::Relative(_))
        ));
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let t = table(&[("/", "root"), ("/shop", "shop"), ("/shop/admin", "admin")]);
        assert_eq!(app_for(&t, None, "/shop").as_deref(), Some("shop"));
        assert_eq!(app_for(&t, None, "/shop/").as_deref(), Some("shop"));
        assert_eq!(app_for(&t, None, "/shop/x?y=1").as_deref(), Some("shop"));
        assert_eq!(app_for(&t, None, "/shopping").as_deref(), Some("root"));
        assert_eq!(app_for(&t, None, "/shop/admin/x").as_deref(), Some("admin"));
        assert_eq!(
            app_for(&t, None, "/shop/administrator").as_deref(),
            Some("shop")
        );
        assert_eq!(app_for(&t, None, "/").as_deref(), Some("root"));
    }

    #[test]
    fn host_routes_beat_hostless_ones() {
        let t = table(&[("/v1/users", "any"), ("api.example.com/v1", "api")]);
        assert_eq!(
            app_for(&t, Some("api.example.com:8080"), "/v1/users").as_deref(),
            Some("api")
        );
        assert_eq!(
            app_for(&t, Some("API.Example.com"), "/v1").as_deref(),
            Some("api")
        );
        assert_eq!(
            app_for(&t, Some("other.example.com"), "/v1/users").as_deref(),
            Some("any")
        );
        // A routed host that does not match the path answers nothing (no fallback).
        assert_eq!(app_for(&t, Some("api.example.com"), "/v2"), None);
        assert_eq!(app_for(&t, None, "/nothing"), None);
    }

    #[test]
    fn hosts_match_in_canonical_form() {
        let t = table(&[("localhost/shop", "shop"), ("127.0.0.1:8080/x", "x")]);
        for host in ["localhost", "LOCALHOST.", "localhost:8080", "Localhost.:9"] {
            assert_eq!(
                app_for(&t, Some(host), "/shop/a").as_deref(),
                Some("shop"),
                "{host}"
            );
        }
        assert_eq!(app_for(&t, Some("127.0.0.1"), "/x").as_deref(), Some("x"));
        assert_eq!(
            RouteSpec::parse("LOCALHOST.:8080/shop").unwrap(),
            RouteSpec::parse("localhost/shop").unwrap()
        );
    }

    #[test]
    fn wildcards_sit_between_exact_hosts_and_hostless_routes() {
        let t = table(&[
            ("/", "root"),
            ("*.example.com/", "wild"),
            ("*.eu.example.com/api", "eu"),
            ("shop.example.com/cart", "cart"),
        ]);
        assert_eq!(
            app_for(&t, Some("a.example.com"), "/x").as_deref(),
            Some("wild")
        );
        assert_eq!(
            app_for(&t, Some("a.eu.example.com"), "/api/1").as_deref(),
            Some("eu")
        );
        // The most specific wildcard without a matching path falls back to a wider one.
        assert_eq!(
            app_for(&t, Some("a.eu.example.com"), "/other").as_deref(),
            Some("wild")
        );
        assert_eq!(
            app_for(&t, Some("shop.example.com"), "/cart").as_deref(),
            Some("cart")
        );
        assert_eq!(
            app_for(&t, Some("shop.example.com"), "/x").as_deref(),
            Some("wild")
        );
        assert_eq!(
            app_for(&t, Some("example.com"), "/x").as_deref(),
            Some("root")
        );
    }

    #[test]
    fn a_routed_host_never_falls_back_to_hostless_routes() {
        let t = table(&[("/", "operator"), ("/other", "b"), ("acme.test/shop", "a")]);
        assert_eq!(
            app_for(&t, Some("acme.test"), "/shop").as_deref(),
            Some("a")
        );
        assert_eq!(app_for(&t, Some("acme.test"), "/other"), None);
        assert_eq!(app_for(&t, Some("acme.test"), "/"), None);
        assert_eq!(
            app_for(&t, Some("unrouted.test"), "/other").as_deref(),
            Some("b")
        );
    }

    #[test]
    fn conflicts_are_refused() {
        let err = RouteTable::build([
            (RouteSpec::parse("/a").unwrap(), target("one")),
            (RouteSpec::parse("/a/").unwrap(), target("two")),
        ])
        .unwrap_err();
        assert!(
            matches!(err, RouteError::Conflict { ref app, .. } if app == "one"),
            "{err}"
        );
    }

    #[test]
    fn handle_swaps_whole_tables() {
        let h = RouteTableHandle::default();
        assert!(!h.is_loaded());
        assert!(h.load().lookup(None, "/a").is_none());
        h.replace(table(&[("/a", "one")]));
        assert!(h.is_loaded());
        let before = h.load();
        h.replace(table(&[("/b", "two")]));
        // A reader holding the old table keeps a consistent view.
        assert!(before.lookup(None, "/a").is_some());
        assert!(h.load().lookup(None, "/a").is_none());
        assert!(h.load().lookup(None, "/b").is_some());
    }
}
