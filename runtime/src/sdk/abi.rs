//! Names and codes of the Platform host ABI, version 1 (`sdk/ABI.md`), shared by the loader
//! (which refuses modules importing anything else) and the linker.

/// Import module of every host function.
pub const SDK_IMPORT_MODULE: &str = "platform_v1";
/// The per-request export that marks an SDK module.
pub const SDK_EXPORT_HANDLE: &str = "platform_handle";
/// Called once per instance after `_initialize` (runs the program's `main`).
pub const SDK_EXPORT_INIT: &str = "platform_init";
/// Optional: called after `platform_init` before a snapshot is taken.
pub const SDK_EXPORT_WARMUP: &str = "platform_warmup";

/// Host functions of ABI v1.
pub const SDK_IMPORTS: &[&str] = &[
    "request_head",
    "request_body_read",
    "response_send",
    "response_write",
    "response_trailers",
    "env_get",
    "config_get",
    "http_send",
    "http_response_head",
    "http_body_read",
    "http_close",
    "kv_open",
    "kv_get",
    "kv_set",
    "kv_delete",
    "kv_keys",
    "error_message",
];

/// True when `name` is a function of [`SDK_IMPORT_MODULE`].
pub fn sdk_import_known(name: &str) -> bool {
    SDK_IMPORTS.contains(&name)
}

/// Error codes, returned negated by host functions.
pub mod code {
    /// Host failure.
    pub const INTERNAL: i32 = 1;
    /// Bad argument (pointer out of bounds, malformed data).
    pub const INVALID: i32 = 2;
    /// No such key, variable or handle.
    pub const NOT_FOUND: i32 = 3;
    /// Refused by policy (outbound host not allowed).
    pub const DENIED: i32 = 4;
    /// The stream is closed (client gone, body already ended).
    pub const CLOSED: i32 = 5;
    /// Over a size limit.
    pub const TOO_LARGE: i32 = 6;
    /// Timed out.
    pub const TIMEOUT: i32 = 7;
    /// The capability is not configured on this host.
    pub const UNAVAILABLE: i32 = 8;
    /// Called at the wrong time (e.g. writing before the response started).
    pub const STATE: i32 = 9;
    /// Too many open handles.
    pub const LIMIT: i32 = 10;
}

/// `response_send` flag: the body is complete.
pub const FLAG_END: i32 = 1;

/// Results of `platform_handle` and `platform_init`.
pub mod result {
    /// Served (or initialized).
    pub const OK: i32 = 0;
    /// The program registered no handler.
    pub const NO_HANDLER: i32 = 1;
    /// The handler panicked; the SDK answered 500 if it could.
    pub const PANICKED: i32 = 2;
    /// The SDK could not read the request.
    pub const BAD_HEAD: i32 = 3;
}
