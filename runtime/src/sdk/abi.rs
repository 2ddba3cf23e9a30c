//! Names of the Platform host ABI (version 1), shared by the loader and the linker.

/// Import module of every host function.
pub const SDK_IMPORT_MODULE: &str = "platform_v1";
/// The handler export that marks an SDK module.
pub const SDK_EXPORT_HANDLE: &str = "platform_handle";

/// Host functions of ABI v1.
pub const SDK_IMPORTS: &[&str] = &[];

/// True when `name` is a function of [`SDK_IMPORT_MODULE`].
pub fn sdk_import_known(name: &str) -> bool {
    SDK_IMPORTS.contains(&name)
}
