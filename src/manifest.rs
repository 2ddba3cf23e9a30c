//! `platform.toml`: the app manifest, used by `platform up` and `platform deploy`.
//!
//! ```toml
//! [[apps]]
//! name = "shop"
//! module = "shop.wasm"                       # relative to this file
//! routes = ["/shop", "api.example.com/v1"]   # "/path" or "host/path"
//! env = { GREETING = "hello" }
//! limits = { memory = "128MiB", timeout = "2s", max_body = "10MiB", max_response = "64MiB" }
//! isolation = "pooled"                       # "pooled" | "per-request" (default: pooled for SDK modules, per-request for components)
//! allowed_outbound_hosts = ["api.example.com"]
//! ```
//!
//! Every error names the file, the line and column, and what is wrong. Unknown keys are
//! errors (a typo must not silently drop a limit).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use platform_runtime::{Isolation, Limits, RouteSpec};
use serde::Deserialize;
use toml::Spanned;

/// A parsed, validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it came from.
    pub path: PathBuf,
    /// Apps in file order.
    pub apps: Vec<ManifestApp>,
}

/// One app of the manifest.
#[derive(Debug, Clone)]
pub struct ManifestApp {
    /// App name.
    pub name: String,
    /// Absolute path of the module file.
    pub module: PathBuf,
    /// Routes, parsed.
    pub routes: Vec<RouteSpec>,
    /// Environment for the guest.
    pub env: Vec<(String, String)>,
    /// Limits (defaults filled in).
    pub limits: Limits,
    /// Isolation, when the manifest sets it; unset, the module's kind decides (`pooled`
    /// for SDK modules, `per-request` for components).
    pub isolation: Option<Isolation>,
    /// Outbound hosts SDK guests may call.
    pub allowed_outbound_hosts: Vec<String>,
    /// Events that invoke the app (`[apps.triggers]`); `None` when the table is absent, so
    /// a deploy leaves triggers set elsewhere (the CLI, the dashboard) alone.
    pub triggers: Option<ManifestTriggers>,
}

/// An app's `[apps.triggers]`: CloudEvent types and NATS subjects, each with the request
/// path it is posted to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestTriggers {
    /// (CloudEvents `type`, path), sorted by type.
    pub events: Vec<(String, String)>,
    /// (NATS subject, path), sorted by subject.
    pub subjects: Vec<(String, String)>,
}

/// A manifest problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    apps: Vec<Spanned<RawApp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: Spanned<String>,
    module: Spanned<String>,
    #[serde(default)]
    routes: Vec<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    limits: Option<Spanned<RawLimits>>,
    #[serde(default)]
    isolation: Option<Spanned<String>>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    triggers: Option<Spanned<RawTriggers>>,
}

/// `[apps.triggers]`: `events = { "com.example.created" = "/events" }` and
/// `subjects = { "orders.>" = "/" }` (value: the request path, `""` meaning `/`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTriggers {
    #[serde(default)]
    events: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    subjects: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    max_body: Option<Spanned<String>>,
    max_response: Option<Spanned<String>>,
}

/// Validates an app name: 1–63 of `a-z 0-9 -`, starting with a letter or digit.
pub fn check_app_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid app name {name:?}: use 1-63 lower-case letters, digits and '-'"
        ))
    }
}

/// Parses a size such as `128MiB`, `10MB`, `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| {
            format!("invalid size {s:?}: expected e.g. \"128MiB\", \"10MB\" or a number of bytes")
        })
}

/// Parses a duration such as `2s`, `500ms`, `1m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. \"2s\" or \"500ms\""))
}

impl Manifest {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            message: format!("cannot read the manifest: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses manifest `text` as if read from `path` (module paths are relative to it).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        let err_at = |span: Option<Range<usize>>, message: String| {
            let (line, column) = match span {
                Some(s) => {
                    let (l, c) = line_col(text, s.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            ManifestError {
                file: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            err_at(e.span(), msg)
        })?;
        if raw.apps.is_empty() {
            return Err(err_at(
                None,
                "no [[apps]] defined: add at least one app with a name, a module and routes".into(),
            ));
        }
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut apps: Vec<ManifestApp> = Vec::new();
        let mut route_owner: BTreeMap<RouteSpec, String> = BTreeMap::new();
        // Event types and subjects already declared, with their app: one owner each.
        let mut event_owner: BTreeMap<String, String> = BTreeMap::new();
        let mut subject_owner: Vec<(String, String)> = Vec::new();
        for app in raw.apps {
            let app_span = app.span();
            let app = app.into_inner();
            let name = app.name.get_ref().clone();
            check_app_name(&name).map_err(|m| err_at(Some(app.name.span()), m))?;
            if apps.iter().any(|a| a.name == name) {
                return Err(err_at(
                    Some(app.name.span()),
                    format!("app {name:?} is defined twice"),
                ));
            }
            let module_rel = app.module.get_ref();
            let module = base.join(module_rel);
            if !module.is_file() {
                return Err(err_at(
                    Some(app.module.span()),
                    format!(
                        "module file {} does not exist (paths are relative to the manifest)",
                        module.display()
                    ),
                ));
            }
            let module = module.canonicalize().unwrap_or(module);
            let triggers = match &app.triggers {
                Some(t) => Some(check_triggers(
                    &name,
                    t,
                    &mut event_owner,
                    &mut subject_owner,
                    &err_at,
                )?),
                None => None,
            };
            let has_triggers = triggers
                .as_ref()
                .is_some_and(|t| !t.events.is_empty() || !t.subjects.is_empty());
            if app.routes.is_empty() && !has_triggers {
                return Err(err_at(
                    Some(app_span),
                    format!(
                        "app {name:?} has no routes: add routes = [\"/{name}\"] (or [apps.triggers])"
                    ),
                ));
            }
            let mut routes = Vec::new();
            for r in &app.routes {
                let spec = RouteSpec::parse(r.get_ref())
                    .map_err(|e| err_at(Some(r.span()), e.to_string()))?;
                if let Some(owner) = route_owner.get(&spec) {
                    return Err(err_at(
                        Some(r.span()),
                        format!("route {spec} is already used by app {owner:?}"),
                    ));
                }
                route_owner.insert(spec.clone(), name.clone());
                routes.push(spec);
            }
            let mut env = Vec::new();
            for (k, v) in &app.env {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    return Err(err_at(
                        Some(v.span()),
                        format!("invalid environment variable name {k:?}"),
                    ));
                }
                env.push((k.clone(), v.get_ref().clone()));
            }
            let mut limits = Limits::default();
            if let Some(l) = &app.limits {
                let l = l.get_ref();
                if let Some(v) = &l.memory {
                    limits.memory =
                        parse_size(v.get_ref()).map_err(|m| err_at(Some(v.span()), m))?;
                    if limits.memory < 4 << 20 {
                        return Err(err_at(
                            Some(v.span()),
                            "memory limit must be at least 4MiB".into(),
                        ));
                    }
                }
                if let Some(v) = &l.timeout {
                    limits.timeout =
                        parse_duration(v.get_ref()).map_err(|m| err_at(Some(v.span()), m))?;
                    if limits.timeout.is_zero() {
                        return Err(err_at(Some(v.span()), "timeout must be more than 0".into()));
                    }
                }
                if let Some(v) = &l.max_body {
                    limits.max_body =
                        parse_size(v.get_ref()).map_err(|m| err_at(Some(v.span()), m))?;
                }
                if let Some(v) = &l.max_response {
                    limits.max_response =
                        parse_size(v.get_ref()).map_err(|m| err_at(Some(v.span()), m))?;
                }
            }
            let isolation = match &app.isolation {
                Some(i) => Some(
                    i.get_ref()
                        .parse::<Isolation>()
                        .map_err(|m| err_at(Some(i.span()), m))?,
                ),
                None => None,
            };
            let allowed_outbound_hosts = app
                .allowed_outbound_hosts
                .iter()
                .map(|h| {
                    let host = h.get_ref().trim().to_ascii_lowercase();
                    if host.is_empty() || host.contains('/') || host.contains(' ') {
                        Err(err_at(
                            Some(h.span()),
                            format!("invalid outbound host {:?}: use \"host\", \"host:port\" or \"*.domain\"", h.get_ref()),
                        ))
                    } else {
                        Ok(host)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            apps.push(ManifestApp {
                name,
                module,
                routes,
                env,
                limits,
                isolation,
                allowed_outbound_hosts,
                triggers,
            });
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            apps,
        })
    }
}

/// Validates one app's `[apps.triggers]` with the control plane's own rules (the same
/// messages as the API), and that no type or subject is claimed by two apps of the
/// manifest (subjects: no overlap, e.g. `orders.>` and `orders.created`).
fn check_triggers(
    app: &str,
    raw: &Spanned<RawTriggers>,
    event_owner: &mut BTreeMap<String, String>,
    subject_owner: &mut Vec<(String, String)>,
    err_at: &dyn Fn(Option<Range<usize>>, String) -> ManifestError,
) -> Result<ManifestTriggers, ManifestError> {
    use platform_control::api::triggers::{
        check_event_type, check_subject, check_trigger_path, subjects_overlap,
    };
    let table = Some(raw.span());
    let raw = raw.get_ref();
    let mut out = ManifestTriggers::default();
    for (ty, path) in &raw.events {
        let ty = check_event_type(ty).map_err(|m| err_at(table.clone(), m))?;
        let p = check_trigger_path(path.get_ref()).map_err(|m| err_at(Some(path.span()), m))?;
        if let Some(owner) = event_owner.get(&ty) {
            return Err(err_at(
                Some(path.span()),
                format!("event type {ty:?} is already routed to app {owner:?}"),
            ));
        }
        event_owner.insert(ty.clone(), app.to_string());
        out.events.push((ty, p));
    }
    for (subject, path) in &raw.subjects {
        let subject = check_subject(subject).map_err(|m| err_at(table.clone(), m))?;
        let p = check_trigger_path(path.get_ref()).map_err(|m| err_at(Some(path.span()), m))?;
        if let Some((other, owner)) = subject_owner
            .iter()
            .find(|(s, _)| subjects_overlap(s, &subject))
        {
            return Err(err_at(
                Some(path.span()),
                format!("subject {subject:?} overlaps {other:?} of app {owner:?}"),
            ));
        }
        subject_owner.push((subject.clone(), app.to_string()));
        out.subjects.push((subject, p));
    }
    Ok(out)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shop.wasm"), b"\0asm").unwrap();
        let path = dir.path().join("platform.toml");
        Manifest::parse(&path, text)
    }

    #[test]
    fn the_documented_shape_parses() {
        let m = parse(
            r#"
[[apps]]
name = "shop"
module = "shop.wasm"
routes = ["/shop", "api.example.com/v1"]
env = { GREETING = "hello" }
limits = { memory = "128MiB", timeout = "2s", max_body = "10MiB" }
"#,
        )
        .unwrap();
        let app = &m.apps[0];
        assert_eq!(app.name, "shop");
        assert_eq!(app.routes.len(), 2);
        assert_eq!(app.routes[1].host.as_deref(), Some("api.example.com"));
        assert_eq!(app.env, vec![("GREETING".into(), "hello".into())]);
        assert_eq!(app.limits.memory, 128 << 20);
        assert_eq!(app.limits.timeout, Duration::from_secs(2));
        assert_eq!(app.limits.max_body, 10 << 20);
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let e = parse("[[apps]]\nname = \"shop\"\nmodule = \"missing.wasm\"\nroutes = [\"/x\"]\n")
            .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(
            e.to_string().contains("platform.toml:3:10: module file"),
            "{e}"
        );

        let e = parse(
            "[[apps]]\nname = \"shop\"\nmodule = \"shop.wasm\"\nroutes = [\"/a\", \"/a/../b\"]\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("'..'"), "{e}");

        let e = parse("[[apps]]\nname = \"shop\"\nmodule = \"shop.wasm\"\nroutes = [\"/a\"]\nlimits = { memory = \"lots\" }\n").unwrap_err();
        assert_eq!(e.line, Some(5));
        assert!(e.message.contains("invalid size"), "{e}");

        let e = parse("[[apps]]\nname = \"shop\"\nmodule = \"shop.wasm\"\nroutes = [\"/a\"]\ntimeout = \"2s\"\n").unwrap_err();
        assert!(e.message.contains("unknown field `timeout`"), "{e}");

        let e = parse("[[apps]]\nname = \"a\"\nmodule = \"shop.wasm\"\nroutes = [\"/x\"]\n[[apps]]\nname = \"b\"\nmodule = \"shop.wasm\"\nroutes = [\"/x/\"]\n").unwrap_err();
        assert_eq!(e.line, Some(8));
        assert!(e.message.contains("already used by app \"a\""), "{e}");

        let e = parse("[[apps]\nname=1").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");

        let e = parse("[[apps]]\nname = \"Bad Name\"\nmodule = \"shop.wasm\"\nroutes = [\"/x\"]\n")
            .unwrap_err();
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn triggers_parse_and_an_app_may_have_only_triggers() {
        let m = parse(
            r#"
[[apps]]
name = "orders"
module = "shop.wasm"
routes = ["/orders"]

[apps.triggers]
events = { "com.example.order.created" = "/events" }
subjects = { "orders.>" = "", "payments.*" = "/pay" }

[[apps]]
name = "audit"
module = "shop.wasm"

[apps.triggers]
events = { "com.example.audit" = "/" }

[[apps]]
name = "plain"
module = "shop.wasm"
routes = ["/plain"]
"#,
        )
        .unwrap();
        let t = m.apps[0].triggers.as_ref().unwrap();
        assert_eq!(
            t.events,
            vec![("com.example.order.created".into(), "/events".into())]
        );
        assert_eq!(
            t.subjects,
            vec![
                ("orders.>".into(), "/".into()),
                ("payments.*".into(), "/pay".into())
            ]
        );
        assert!(m.apps[1].routes.is_empty());
        assert_eq!(m.apps[1].triggers.as_ref().unwrap().events.len(), 1);
        assert_eq!(m.apps[2].triggers, None, "no table: triggers left alone");
    }

    #[test]
    fn bad_triggers_are_refused_with_their_place() {
        let app = "[[apps]]\nname = \"a\"\nmodule = \"shop.wasm\"\nroutes = [\"/a\"]\n";
        let cases = [
            (
                "[apps.triggers]\nevents = { \"has space\" = \"/\" }\n",
                5,
                "printable ASCII",
            ),
            (
                "[apps.triggers]\nsubjects = { \"platform.feed\" = \"/\" }\n",
                5,
                "reserved",
            ),
            (
                "[apps.triggers]\nsubjects = { \">\" = \"/\" }\n",
                5,
                "not valid",
            ),
            (
                "[apps.triggers]\nevents = { \"x.y\" = \"relative\" }\n",
                6,
                "must start with '/'",
            ),
            (
                "[apps.triggers]\nsubjects = { \"a.b\" = \"/../x\" }\n",
                6,
                "not allowed",
            ),
            (
                "[apps.triggers]\nqueues = { \"a\" = \"/\" }\n",
                6,
                "unknown field `queues`",
            ),
        ];
        for (table, line, msg) in cases {
            let e = parse(&format!("{app}{table}")).unwrap_err();
            assert!(e.message.contains(msg), "{table}: {e}");
            assert_eq!(e.line, Some(line), "{table}: {e}");
        }
        let two = "[[apps]]\nname = \"a\"\nmodule = \"shop.wasm\"\n[apps.triggers]\nsubjects = { \"orders.>\" = \"/\" }\n[[apps]]\nname = \"b\"\nmodule = \"shop.wasm\"\n[apps.triggers]\nsubjects = { \"orders.created\" = \"/\" }\n";
        let e = parse(two).unwrap_err();
        assert!(
            e.message.contains("overlaps \"orders.>\" of app \"a\""),
            "{e}"
        );
        assert_eq!(e.line, Some(10));
        let two = two
            .replace("subjects = { \"orders.>\"", "events = { \"t\"")
            .replace("subjects = { \"orders.created\"", "events = { \"t\"");
        let e = parse(&two).unwrap_err();
        assert!(e.message.contains("already routed to app \"a\""), "{e}");
        let e =
            parse("[[apps]]\nname = \"a\"\nmodule = \"shop.wasm\"\n[apps.triggers]\n").unwrap_err();
        assert!(e.message.contains("has no routes"), "{e}");
    }
}

/// Property-based tests: bounded here, longer through `scripts/fuzz` (`PROPTEST_CASES`).
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A directory holding `shop.wasm`, so manifests naming it can be accepted.
    fn manifest_path() -> PathBuf {
        static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let dir = DIR.get_or_init(|| {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("shop.wasm"), b"\0asm").unwrap();
            d
        });
        dir.path().join("platform.toml")
    }

    /// Manifest-shaped text from pieces users write, right and wrong.
    fn manifest_text() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            Just("\"shop\"".to_string()),
            Just("\"shop.wasm\"".to_string()),
            Just("[\"/a\", \"x.com/b\", \"*.x.com/\"]".to_string()),
            Just("[\"/a/../b\"]".to_string()),
            Just("{ memory = \"64MiB\", timeout = \"2s\" }".to_string()),
            Just("{ memory = \"lots\" }".to_string()),
            Just("\"per-request\"".to_string()),
            Just("{ A = \"1\" }".to_string()),
            Just("1".to_string()),
            Just("[1, 2]".to_string()),
            "\"[ -~]{0,12}\"",
        ];
        let key = prop_oneof![
            Just("name"),
            Just("module"),
            Just("routes"),
            Just("limits"),
            Just("isolation"),
            Just("env"),
            Just("allowed_outbound_hosts"),
            Just("timeout"),
        ];
        proptest::collection::vec(
            (
                prop_oneof![Just("[[apps]]\n"), Just(""), Just("[apps]\n")],
                proptest::collection::vec((key, value), 0..6),
            ),
            0..4,
        )
        .prop_map(|tables| {
            let mut out = String::new();
            for (header, fields) in tables {
                out.push_str(header);
                for (k, v) in fields {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            }
            out
        })
    }

    proptest! {
        /// Any text: a manifest or an error with a position inside the text (the line after
        /// a final newline is the end of the file), never a panic.
        #[test]
        fn any_text_parses_or_fails_cleanly(text in "(?s).{0,200}") {
            if let Err(e) = Manifest::parse(&manifest_path(), &text) {
                prop_assert!(e.line.is_none_or(|l| l <= text.matches('\n').count() + 1));
            }
        }

        /// Manifest-shaped text: accepted manifests hold what a deploy needs.
        #[test]
        fn manifest_shaped_text(text in manifest_text()) {
            match Manifest::parse(&manifest_path(), &text) {
                Ok(m) => {
                    prop_assert!(!m.apps.is_empty());
                    for app in &m.apps {
                        prop_assert!(check_app_name(&app.name).is_ok());
                        prop_assert!(!app.routes.is_empty());
                    }
                }
                Err(e) => {
                    prop_assert!(!e.message.is_empty());
                    prop_assert!(e.line.is_none_or(|l| l <= text.matches('\n').count() + 1));
                }
            }
        }
    }
}
