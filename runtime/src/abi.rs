//! Tells what kind of guest a WebAssembly binary is, and refuses ones the host cannot run.
//!
//! - **WAGI**: a WASI preview 1 command (exports `_start`), run per request as CGI.
//! - **SDK**: a WASI preview 1 reactor that exports the Platform handler
//!   (`platform_handle`, see `sdk/ABI.md`); Go start-up runs once per instance.
//! - **Component**: a WebAssembly component (wasip2) exporting `wasi:http/incoming-handler`,
//!   served with `wasmtime-wasi-http` (see [`crate::component`]).
//!
//! The same check runs at upload (control) and at load (runtime), so a module with an
//! unknown import is refused with the import named, before it can reach traffic.

use wasmparser::{Encoding, ExternalKind, Parser, Payload, TypeRef};

use crate::sdk::abi::{SDK_EXPORT_HANDLE, SDK_IMPORT_MODULE, sdk_import_known};

/// The kind of guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbiKind {
    /// CGI command module.
    Wagi,
    /// Platform SDK reactor module.
    Sdk,
    /// WebAssembly component exporting `wasi:http/incoming-handler`.
    Component,
}

impl AbiKind {
    /// Lower-case name for APIs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AbiKind::Wagi => "wagi",
            AbiKind::Sdk => "sdk",
            AbiKind::Component => "component",
        }
    }
}

/// What [`detect`] learned about a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiInfo {
    /// The guest kind.
    pub kind: AbiKind,
    /// Whether the module exports `_initialize` (a reactor's start-up).
    pub has_initialize: bool,
    /// Whether the module exports `platform_warmup` (run before snapshotting).
    pub has_warmup: bool,
}

/// Why a binary was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbiError {
    /// Does not start with the WebAssembly magic number.
    #[error("not a WebAssembly binary (it does not start with \"\\0asm\")")]
    NotWasm,
    /// Structurally broken or cut short.
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    /// Imports a function the host does not provide.
    #[error("the module imports {module}::{name}, which this host does not provide{hint}")]
    UnknownImport {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
        /// Extra advice for well-known mistakes.
        hint: String,
    },
    /// Imports something other than a function (memory, table, global).
    #[error("the module imports {module}::{name} as a {kind}; only functions can be imported")]
    NonFunctionImport {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
        /// What kind of import.
        kind: &'static str,
    },
    /// Neither `_start` nor the SDK handler is exported.
    #[error(
        "the module exports neither `_start` (a WASI command, run as WAGI) nor `{SDK_EXPORT_HANDLE}` (the Platform SDK): nothing to call"
    )]
    NoEntryPoint,
    /// Declares a minimum no instance could ever get.
    #[error(
        "the module declares a minimum {what} of {asked}, more than any release may have ({limit}); lower the minimum the module declares"
    )]
    TooLarge {
        /// "memory" or "table".
        what: &'static str,
        /// The declared minimum, readable.
        asked: String,
        /// The host's limit, readable.
        limit: String,
    },
    /// Exports no memory; WASI needs one.
    #[error("the module exports no memory named `memory`")]
    NoMemory,
    /// A component importing an interface the host does not link.
    #[error("the component imports {name}, which this host does not provide{hint}")]
    UnknownComponentImport {
        /// The import's name (interface and version).
        name: String,
        /// Extra advice.
        hint: String,
    },
    /// A component that does not export `wasi:http/incoming-handler`.
    #[error(
        "the component does not export wasi:http/incoming-handler (the wasi:http/proxy world), so it cannot serve HTTP; it exports {exports}"
    )]
    NoHttpHandler {
        /// What it exports instead, comma-separated.
        exports: String,
    },
}

/// The WASI preview 1 functions the host provides (all of them).
pub const WASI_P1_FUNCTIONS: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

const WASI_P1: &str = "wasi_snapshot_preview1";

/// Inspects `bytes` and says what kind of guest it is, or why it cannot run here.
pub fn detect(bytes: &[u8]) -> Result<AbiInfo, AbiError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(AbiError::NotWasm);
    }
    let mut exports_start = false;
    let mut exports_handle = false;
    let mut exports_memory = false;
    let mut has_initialize = false;
    let mut has_warmup = false;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| AbiError::Invalid(e.to_string()))?;
        match payload {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => {
                wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
                    .validate_all(bytes)
                    .map_err(|e| AbiError::Invalid(e.to_string()))?;
                crate::component::ComponentWorld::of(bytes)?.check()?;
                return Ok(AbiInfo {
                    kind: AbiKind::Component,
                    has_initialize: false,
                    has_warmup: false,
                });
            }
            Payload::ImportSection(reader) => {
                for imports in reader {
                    let imports = imports.map_err(|e| AbiError::Invalid(e.to_string()))?;
                    for import in imports {
                        let (_, import) = import.map_err(|e| AbiError::Invalid(e.to_string()))?;
                        check_import(import.module, import.name, import.ty)?;
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(|e| AbiError::Invalid(e.to_string()))?;
                    check_memory_minimum(&memory)?;
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(|e| AbiError::Invalid(e.to_string()))?;
                    check_table_minimum(table.ty.initial)?;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| AbiError::Invalid(e.to_string()))?;
                    match (export.kind, export.name) {
                        (ExternalKind::Func, "_start") => exports_start = true,
                        (ExternalKind::Func, "_initialize") => has_initialize = true,
                        (ExternalKind::Func, "platform_warmup") => has_warmup = true,
                        (ExternalKind::Func, n) if n == SDK_EXPORT_HANDLE => exports_handle = true,
                        (ExternalKind::Memory, "memory") => exports_memory = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // Full validation catches truncation and type errors the section walk does not.
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| AbiError::Invalid(e.to_string()))?;
    let kind = if exports_handle {
        AbiKind::Sdk
    } else if exports_start {
        AbiKind::Wagi
    } else {
        return Err(AbiError::NoEntryPoint);
    };
    if !exports_memory {
        return Err(AbiError::NoMemory);
    }
    Ok(AbiInfo {
        kind,
        has_initialize,
        has_warmup,
    })
}

/// The largest linear memory any release may be given (its memory limit's maximum).
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;

/// Refuses a memory whose declared minimum exceeds what any release may have: every
/// instance would fail to start.
fn check_memory_minimum(memory: &wasmparser::MemoryType) -> Result<(), AbiError> {
    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
    let bytes = memory.initial.saturating_mul(page);
    if bytes > MAX_MEMORY_BYTES {
        return Err(AbiError::TooLarge {
            what: "memory",
            asked: format!("{} pages ({} MiB)", memory.initial, bytes >> 20),
            limit: format!("{} MiB", MAX_MEMORY_BYTES >> 20),
        });
    }
    Ok(())
}

/// Refuses a table whose declared minimum exceeds the host's table size.
fn check_table_minimum(initial: u64) -> Result<(), AbiError> {
    let limit = crate::guest::MAX_TABLE_ELEMENTS as u64;
    if initial > limit {
        return Err(AbiError::TooLarge {
            what: "table",
            asked: format!("{initial} elements"),
            limit: format!("{limit} elements"),
        });
    }
    Ok(())
}

fn check_import(module: &str, name: &str, ty: TypeRef) -> Result<(), AbiError> {
    let kind = match ty {
        TypeRef::Func(_) | TypeRef::FuncExact(_) => None,
        TypeRef::Memory(_) => Some("memory"),
        TypeRef::Table(_) => Some("table"),
        TypeRef::Global(_) => Some("global"),
        TypeRef::Tag(_) => Some("tag"),
    };
    if let Some(kind) = kind {
        return Err(AbiError::NonFunctionImport {
            module: module.into(),
            name: name.into(),
            kind,
        });
    }
    let known = match module {
        WASI_P1 => WASI_P1_FUNCTIONS.contains(&name),
        SDK_IMPORT_MODULE => sdk_import_known(name),
        _ => false,
    };
    if known {
        return Ok(());
    }
    let hint = match module {
        "gojs" | "go" => ": this is a GOOS=js build; build with GOOS=wasip1 GOARCH=wasm".into(),
        "env" => ": the module expects an Emscripten-style or custom host".into(),
        m if m.starts_with("wasi:") => {
            ": WASI preview 2 interfaces are for components, not core modules".into()
        }
        m if m.starts_with("platform_") => format!(
            ": this host speaks the Platform ABI `{SDK_IMPORT_MODULE}`; rebuild against a matching SDK"
        ),
        _ => String::new(),
    };
    Err(AbiError::UnknownImport {
        module: module.into(),
        name: name.into(),
        hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wat(src: &str) -> Vec<u8> {
        wat::parse_str(src).unwrap()
    }

    #[test]
    fn tells_wagi_from_sdk() {
        let wagi = wat(r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_start")))"#);
        assert_eq!(detect(&wagi).unwrap().kind, AbiKind::Wagi);
        let sdk = wat(&format!(
            r#"(module (memory (export "memory") 1)
            (func (export "_initialize")) (func (export "{SDK_EXPORT_HANDLE}") (param i32) (result i32) i32.const 0))"#
        ));
        let info = detect(&sdk).unwrap();
        assert_eq!(info.kind, AbiKind::Sdk);
        assert!(info.has_initialize);
    }

    #[test]
    fn refuses_bad_input_with_reasons() {
        assert_eq!(detect(b"hello world, not wasm"), Err(AbiError::NotWasm));
        let good = wat(r#"(module (memory (export "memory") 1) (func (export "_start")))"#);
        assert!(matches!(
            detect(&good[..good.len() - 3]),
            Err(AbiError::Invalid(_))
        ));
        let unknown = wat(r#"(module
            (import "wasi_snapshot_preview1" "fd_teleport" (func))
            (memory (export "memory") 1) (func (export "_start")))"#);
        let err = detect(&unknown).unwrap_err();
        assert!(
            err.to_string()
                .contains("wasi_snapshot_preview1::fd_teleport"),
            "{err}"
        );
        let gojs = wat(
            r#"(module (import "gojs" "runtime.wasmExit" (func (param i32)))
            (memory (export "memory") 1) (func (export "_start")))"#,
        );
        assert!(
            detect(&gojs)
                .unwrap_err()
                .to_string()
                .contains("GOOS=wasip1")
        );
        let none = wat(r#"(module (memory (export "memory") 1) (func (export "main")))"#);
        assert_eq!(detect(&none), Err(AbiError::NoEntryPoint));
        let component = wat("(component)");
        assert!(matches!(
            detect(&component),
            Err(AbiError::NoHttpHandler { .. })
        ));
    }
}
