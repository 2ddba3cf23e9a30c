//! Platform's data plane: serves HTTP traffic to tenant WebAssembly modules run in wasmtime.
//!
//! What it does: match a request's host and path to a release ([`route_table`]), get the
//! release's module compiled and mapped ([`module_cache`]), run it as a CGI program
//! ([`wagi`]) or through the Platform SDK ABI ([`sdk`]) under hard limits, and answer.
//!
//! What it does not do: keep state about apps. It serves what a feed tells it: a local
//! `platform.toml` or the control plane. It never talks to a database.

pub mod abi;
pub mod admin;
pub mod admission;
pub mod app;
pub mod body_timeout;
pub mod cloud_events;
pub mod component;
pub mod cpu_share;
pub mod dedicated_forward;
pub mod engine;
pub mod executor;
pub mod failure;
pub mod feed;
pub mod guest;
pub mod host;
pub mod host_name;
pub mod logs;
pub mod metrics;
pub mod module_cache;
pub mod obs;
pub mod readiness;
pub mod release_binding;
pub mod request_target;
pub mod reserved_cookies;
pub mod route_table;
pub mod sdk;
pub mod server;
pub mod subject_triggers;
pub mod traffic;
pub mod wagi;

pub use app::{AppSpec, AppTarget, Isolation, Limits};
pub use host::{ConnInfo, Runtime, RuntimeConfig};
pub use module_cache::{Digest, LocalModuleStore, ModuleCache, ModuleSource};
pub use route_table::{RouteSpec, RouteTable};
