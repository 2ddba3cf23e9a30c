//! wasi:http components (wasip2): the same binaries `wasmtime serve` and Spin run.
//!
//! A component exporting `wasi:http/incoming-handler` is detected at upload
//! ([`detect`]), compiled ahead of time like a module (`Engine::precompile_component`,
//! mapped back with `Component::deserialize_file` by the
//! [`ModuleCache`](crate::module_cache::ModuleCache)), pre-instantiated against the
//! component linker built here, and served ([`serve`]) with a fresh instance per request,
//! or for a `pooled` release with reused instances ([`pool`]), on the same engine,
//! pooling allocator, epoch deadlines and memory limits as modules.
//!
//! The guest gets no ambient authority: env only as the release configures it (through
//! `wasi:cli/environment`, and the same variables through `wasi:config/store`),
//! stdout/stderr captured per request into the log, no preopened directory, every socket
//! address refused, outbound `wasi:http` requests only to the release's allowed hosts
//! within the operator's address policy ([`hooks`]), and key-value only in its own app's
//! stores ([`keyvalue`]).

pub mod body;
pub mod detect;
pub mod hooks;
pub mod keyvalue;
pub mod pool;
pub mod serve;

use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::app::AppSpec;
use crate::guest::MemoryLimiter;
use crate::logs::CappedPipe;

pub use detect::{ComponentWorld, DRAFT_INTERFACES, INCOMING_HANDLER, PROVIDED_INTERFACES};
pub use pool::{ComponentPools, ReuseSettings};
pub use serve::ComponentExec;

/// A component pre-instantiated against the component linker: instantiating it per
/// request resolves no imports.
pub type ComponentPre = ProxyPre<ComponentState>;

/// The data in every component [`wasmtime::Store`].
pub struct ComponentState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: hooks::PlatformHooks,
    /// The release's env, also served through `wasi:config/store`.
    config: WasiConfigVariables,
    /// The app's key-value stores.
    kv: keyvalue::KvCtx,
    /// Memory cap for this instance.
    pub limiter: MemoryLimiter,
}

impl ComponentState {
    /// State for an instance of `spec`: its env, captured stdout/stderr, its memory cap,
    /// its outbound HTTP policy and its app's key-value stores.
    pub fn new(
        spec: &AppSpec,
        stdout: CappedPipe,
        stderr: CappedPipe,
        hooks: hooks::PlatformHooks,
        kv: Option<std::sync::Arc<dyn crate::sdk::kv::KvBackend>>,
    ) -> Self {
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout)
            .stderr(stderr)
            .envs(&spec.env)
            .arg(&spec.app)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        ComponentState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks,
            config: spec
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            kv: keyvalue::KvCtx::new(kv, &spec.tenant, &spec.app),
            limiter: MemoryLimiter::new(spec.limits.memory),
        }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Builds the component linker: WASI 0.2 (async), `wasi:http` (types and
/// outgoing-handler), `wasi:config/store` and `wasi:keyvalue`. [`PROVIDED_INTERFACES`]
/// and [`DRAFT_INTERFACES`] list what it defines, for the upload check.
pub fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<ComponentState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, |s: &mut ComponentState| {
        WasiConfig::new(&s.config)
    })?;
    keyvalue::add_to_linker(&mut linker, |s: &mut ComponentState| {
        keyvalue::KvView::new(&mut s.kv, &mut s.table)
    })?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interfaces the upload check accepts are defined in the linker. An import of an
    /// interface the linker lacks is treated as an empty instance, so each probe names
    /// something the interface really has (a resource, or a function with a simple
    /// type); the interfaces whose functions all take other interfaces' resources are
    /// covered by the Rust components of the integration tests.
    #[test]
    fn the_upload_list_matches_the_linker() {
        let engine = Engine::default();
        let linker = build_linker(&engine).unwrap();
        let resource = |name: &str| format!(r#"(export "{name}" (type (sub resource)))"#);
        let probes = [
            ("wasi:io/error", resource("error")),
            ("wasi:io/poll", resource("pollable")),
            ("wasi:io/streams", resource("input-stream")),
            ("wasi:filesystem/types", resource("descriptor")),
            ("wasi:sockets/network", resource("network")),
            ("wasi:sockets/tcp", resource("tcp-socket")),
            ("wasi:sockets/udp", resource("udp-socket")),
            (
                "wasi:sockets/ip-name-lookup",
                resource("resolve-address-stream"),
            ),
            ("wasi:http/types", resource("fields")),
            ("wasi:cli/terminal-input", resource("terminal-input")),
            ("wasi:cli/terminal-output", resource("terminal-output")),
            (
                "wasi:clocks/monotonic-clock",
                r#"(export "now" (func (result u64)))"#.to_string(),
            ),
            (
                "wasi:random/random",
                r#"(export "get-random-u64" (func (result u64)))"#.to_string(),
            ),
            (
                "wasi:random/insecure",
                r#"(export "get-insecure-random-u64" (func (result u64)))"#.to_string(),
            ),
            (
                "wasi:cli/environment",
                r#"(export "initial-cwd" (func (result (option string))))"#.to_string(),
            ),
        ];
        let instantiates = |name: &str, body: &str| {
            let src = format!(r#"(component (import "{name}" (instance {body})))"#);
            let component = wasmtime::component::Component::new(&engine, &src).unwrap();
            linker.instantiate_pre(&component).map(|_| ())
        };
        for (iface, body) in &probes {
            assert!(PROVIDED_INTERFACES.contains(iface), "{iface}");
            for version in ["0.2.0", "0.2.6"] {
                instantiates(&format!("{iface}@{version}"), body)
                    .unwrap_or_else(|e| panic!("{iface}@{version} is not linked: {e:#}"));
            }
        }
        assert!(instantiates("acme:missing/thing@1.0.0", &resource("thing")).is_err());
    }
}
