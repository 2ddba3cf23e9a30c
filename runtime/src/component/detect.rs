//! What a component imports and exports, and whether this host can serve it.
//!
//! Runs at upload (control) and at load (runtime) from the binary alone, with no compile:
//! a component must export `wasi:http/incoming-handler` (the `wasi:http/proxy` world) and
//! import only interfaces the host links ([`PROVIDED_INTERFACES`], any `0.2.x` version:
//! wasmtime's linker resolves semver-compatible versions). Anything else is refused with
//! the names in the message, before it can reach traffic.

use wasmparser::{Encoding, Parser, Payload};

use crate::abi::AbiError;

/// The export every served component must have.
pub const INCOMING_HANDLER: &str = "wasi:http/incoming-handler";

/// The interfaces the host links for components (WASI 0.2: the `wasi:http/proxy` world
/// plus the rest of `wasmtime-wasi`'s preview 2 set, so toolchains whose standard library
/// imports the filesystem or sockets still link). Filesystem and sockets are linked but
/// inert: no directory is preopened and every socket address is refused.
pub const PROVIDED_INTERFACES: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// Interfaces of WASI proposals still in draft that the host links, each at the one
/// version wasmtime 48 serves: `wasi:config/store` (the release's env vars, through
/// `wasmtime-wasi-config`) and `wasi:keyvalue` (the app's key-value stores,
/// [`super::keyvalue`]). A pre-release version only links with itself, so no other
/// version is accepted.
pub const DRAFT_INTERFACES: &[(&str, &str)] = &[
    ("wasi:config/store", "0.2.0-rc.1"),
    ("wasi:keyvalue/store", "0.2.0-draft"),
    ("wasi:keyvalue/atomics", "0.2.0-draft"),
    ("wasi:keyvalue/batch", "0.2.0-draft"),
];

/// The names a component's outer layer imports and exports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentWorld {
    /// Import names, e.g. `wasi:cli/environment@0.2.4`.
    pub imports: Vec<String>,
    /// Export names, e.g. `wasi:http/incoming-handler@0.2.4`.
    pub exports: Vec<String>,
}

impl ComponentWorld {
    /// Reads the top-level imports and exports of the component `bytes` (nested modules
    /// and components are skipped: they are satisfied inside the component).
    pub fn of(bytes: &[u8]) -> Result<Self, AbiError> {
        let mut world = ComponentWorld::default();
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(|e| AbiError::Invalid(e.to_string()))? {
                Payload::Version { encoding, .. } => {
                    depth += 1;
                    if depth == 1 && encoding != Encoding::Component {
                        return Err(AbiError::Invalid("not a component".into()));
                    }
                }
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(reader) if depth == 1 => {
                    for import in reader {
                        let import = import.map_err(|e| AbiError::Invalid(e.to_string()))?;
                        world.imports.push(import.name.name.to_string());
                    }
                }
                Payload::ComponentExportSection(reader) if depth == 1 => {
                    for export in reader {
                        let export = export.map_err(|e| AbiError::Invalid(e.to_string()))?;
                        world.exports.push(export.name.name.to_string());
                    }
                }
                _ => {}
            }
        }
        Ok(world)
    }

    /// Refuses a component this host cannot serve: one importing an interface the host
    /// does not link, or one that does not export [`INCOMING_HANDLER`].
    pub fn check(&self) -> Result<(), AbiError> {
        for import in &self.imports {
            if !provided(import) {
                return Err(AbiError::UnknownComponentImport {
                    name: import.clone(),
                    hint: import_hint(import),
                });
            }
        }
        if !self.exports.iter().any(|e| is_incoming_handler(e)) {
            return Err(AbiError::NoHttpHandler {
                exports: if self.exports.is_empty() {
                    "nothing".into()
                } else {
                    self.exports.join(", ")
                },
            });
        }
        Ok(())
    }
}

/// Splits `wasi:cli/stdout@0.2.4` into (`wasi:cli/stdout`, `Some("0.2.4")`).
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((iface, version)) => (iface, Some(version)),
        None => (name, None),
    }
}

/// True for a WASI 0.2 release version (`0.2.N`, no pre-release): what the host's
/// `0.2.x` definitions satisfy.
fn is_wasi_p2_version(version: Option<&str>) -> bool {
    version
        .and_then(|v| v.strip_prefix("0.2."))
        .is_some_and(|patch| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()))
}

fn provided(import: &str) -> bool {
    let (iface, version) = split_version(import);
    (PROVIDED_INTERFACES.contains(&iface) && is_wasi_p2_version(version))
        || DRAFT_INTERFACES
            .iter()
            .any(|(i, v)| *i == iface && version == Some(*v))
}

fn is_incoming_handler(export: &str) -> bool {
    let (iface, version) = split_version(export);
    iface == INCOMING_HANDLER && is_wasi_p2_version(version)
}

fn import_hint(import: &str) -> String {
    let (iface, version) = split_version(import);
    if let Some((_, v)) = DRAFT_INTERFACES.iter().find(|(i, _)| *i == iface) {
        return format!(
            ": this host provides {iface} at {v} only, not {}",
            version.unwrap_or("without a version")
        );
    }
    if PROVIDED_INTERFACES.contains(&iface) {
        return format!(
            ": this host provides {iface} at WASI 0.2.x, not {}",
            version.unwrap_or("without a version")
        );
    }
    if iface.starts_with("wasi:") {
        return ": this host provides WASI 0.2 (the wasi:http/proxy world, wasi:cli, wasi:clocks, wasi:random, wasi:io), wasi:config/store@0.2.0-rc.1 and wasi:keyvalue@0.2.0-draft".into();
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(imports: &[&str], exports: &[&str]) -> ComponentWorld {
        ComponentWorld {
            imports: imports.iter().map(|s| s.to_string()).collect(),
            exports: exports.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn accepts_a_proxy_with_any_wasi_0_2_version() {
        let w = world(
            &["wasi:io/streams@0.2.0", "wasi:http/types@0.2.4"],
            &["wasi:http/incoming-handler@0.2.12"],
        );
        assert_eq!(w.check(), Ok(()));
    }

    #[test]
    fn refuses_unknown_imports_by_name() {
        let w = world(
            &["acme:missing/thing@1.0.0"],
            &["wasi:http/incoming-handler@0.2.0"],
        );
        let err = w.check().unwrap_err().to_string();
        assert!(err.contains("acme:missing/thing@1.0.0"), "{err}");
        let rc = world(
            &["wasi:http/types@0.2.0-rc-2023-10-18"],
            &["wasi:http/incoming-handler@0.2.0"],
        );
        let err = rc.check().unwrap_err().to_string();
        assert!(err.contains("not 0.2.0-rc-2023-10-18"), "{err}");
    }

    #[test]
    fn draft_interfaces_only_at_their_version() {
        let ok = world(
            &[
                "wasi:config/store@0.2.0-rc.1",
                "wasi:keyvalue/store@0.2.0-draft",
            ],
            &["wasi:http/incoming-handler@0.2.0"],
        );
        assert_eq!(ok.check(), Ok(()));
        let other = world(
            &["wasi:keyvalue/store@0.2.0-draft2"],
            &["wasi:http/incoming-handler@0.2.0"],
        );
        let err = other.check().unwrap_err().to_string();
        assert!(err.contains("wasi:keyvalue/store@0.2.0-draft2"), "{err}");
        assert!(err.contains("at 0.2.0-draft only"), "{err}");
    }

    #[test]
    fn refuses_a_component_without_the_handler_naming_its_exports() {
        let w = world(&["wasi:cli/stdout@0.2.0"], &["wasi:cli/run@0.2.0"]);
        let err = w.check().unwrap_err().to_string();
        assert!(err.contains("wasi:cli/run@0.2.0"), "{err}");
        assert!(err.contains(INCOMING_HANDLER), "{err}");
    }

    #[test]
    fn reads_only_the_outer_layer() {
        let bytes = wat::parse_str(
            r#"(component
                (import "acme:missing/thing@1.0.0" (instance))
                (component $inner (import "inner:only/x" (instance)))
            )"#,
        )
        .unwrap();
        let w = ComponentWorld::of(&bytes).unwrap();
        assert_eq!(w.imports, vec!["acme:missing/thing@1.0.0".to_string()]);
        assert!(w.exports.is_empty());
    }
}
