//! Key-value stores for SDK guests, scoped to (tenant, app, store name).
//!
//! - [`FileKv`]: the embedded default (`platform up`): one directory per store, one file
//!   per key (written atomically), under the data directory.
//! - [`NatsKv`]: NATS JetStream key-value buckets, one per store, for clusters.
//!
//! Values are limited to [`MAX_VALUE`] (1 MiB). Keys follow one rule on both backends,
//! NATS KV's own ([`check_key`]): 1 to [`MAX_KEY`] characters of `A-Z a-z 0-9 - _ / = .`,
//! not starting or ending with `.` and without `..`. So a key that works under `platform up` works in a
//! cluster, and NATS stores keys as they are (no escaping).
//!
//! # Naming, and why it cannot collide
//!
//! A scope becomes one opaque id, [`scope_id`]: SHA-256 over the tenant, app and store
//! names, each length-prefixed. Different scopes give different inputs, so they never share
//! a bucket or a directory, however the names are spelled (`t` + `labs-api` and
//! `t-labs` + `api` used to share one). The id is lower-case hex, within NATS's bucket rule
//! `[A-Za-z0-9_-]`, far under its 255-character limit, and safe on case-insensitive file
//! systems. Buckets are [`bucket_name`] (`platform_kv_v2_<id>`, with the scope in the
//! bucket's description); directories are `<kv dir>/v2/<id>`. In a store directory each
//! key is a file named by the SHA-256 of the key (see [`FileKv`]), so no key can name a
//! path outside its store, a temporary file, or another key.
//!
//! # Migrating from the first naming
//!
//! Stores written before this naming (buckets `platform_kv_<tenant>_<app>_<store>`,
//! directories `<kv dir>/<tenant>_<app>_<store>`) are not read: the old names were
//! ambiguous, so the runtime cannot tell whose data they hold. An operator who knows
//! whose they are can copy values once:
//!
//! - NATS: after the app has used its store once (or knowing the id from
//!   [`bucket_name`]), for each key `k` of the old bucket,
//!   `nats kv get OLD k --raw | nats kv put NEW k`. `nats kv ls` shows the new buckets
//!   with their tenant, app and store in the description.
//! - Files: for each file `f` in the old directory, the key is the file name with every
//!   `=XX` turned back into byte `XX`; write it as a new key file (key, a newline, then
//!   the value) named by the key's SHA-256, in the new directory.
//!
//! Keys outside the new rule (spaces, non-ASCII, a leading or trailing `.`) were escaped
//! (`=XX`) in the old stores and have no equivalent now: rename them while copying.

mod file;
mod naming;
mod nats;

use async_trait::async_trait;
use bytes::Bytes;

pub use file::FileKv;
pub use naming::{bucket_name, scope_id};
pub use nats::NatsKv;

/// Largest value.
pub const MAX_VALUE: usize = 1 << 20;
/// Largest key, in bytes (keys are ASCII, so also characters). NATS has no key limit of
/// its own below its 4 KiB protocol line, which holds the subject `$KV.<bucket>.<key>`.
pub const MAX_KEY: usize = 1024;

/// A store failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// Bad key or store name.
    #[error("{0}")]
    Invalid(String),
    /// Value over the limit.
    #[error("values are limited to 1 MiB; this one is {0} bytes")]
    TooLarge(usize),
    /// The backend failed.
    #[error("key-value store unavailable: {0}")]
    Unavailable(String),
}

/// Which store of which app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvScope {
    /// Tenant.
    pub tenant: String,
    /// App.
    pub app: String,
    /// Store name (`default`...).
    pub store: String,
}

/// A key-value backend. Every method checks the key ([`check_key`]) and store name
/// ([`check_store_name`]) itself, so each backend refuses the same keys.
#[async_trait]
pub trait KvBackend: Send + Sync {
    /// The value of `key`, if set.
    async fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Bytes>, KvError>;
    /// Sets `key`.
    async fn set(&self, scope: &KvScope, key: &str, value: Bytes) -> Result<(), KvError>;
    /// Removes `key`.
    async fn delete(&self, scope: &KvScope, key: &str) -> Result<(), KvError>;
    /// Keys starting with `prefix`, sorted.
    async fn keys(&self, scope: &KvScope, prefix: &str) -> Result<Vec<String>, KvError>;
}

/// Checks a store name (1-64 of `a-z A-Z 0-9 _ -`).
pub fn check_store_name(name: &str) -> Result<(), KvError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(KvError::Invalid(format!(
            "invalid store name {name:?}: use 1-64 letters, digits, '_' or '-'"
        )));
    }
    Ok(())
}

/// True for the characters NATS KV allows in keys.
fn key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'=' | b'.')
}

/// Checks a key against the one rule of both backends, NATS KV's: the characters and the
/// leading and trailing `.` of `async-nats`' `is_valid_key`, and no `..` (a key is a
/// subject's tail; the server files a subject with an empty token under no stream, so such
/// a key fails there). 1 to [`MAX_KEY`] characters of `A-Z a-z 0-9 - _ / = .`.
pub fn check_key(key: &str) -> Result<(), KvError> {
    const RULE: &str = "keys are 1 to 1024 characters of A-Z a-z 0-9 - _ / = . that do not \
                        start or end with '.' or contain '..'";
    if key.is_empty() {
        return Err(KvError::Invalid(format!("empty key: {RULE}")));
    }
    if key.len() > MAX_KEY {
        return Err(KvError::Invalid(format!(
            "key of {} bytes is too long: {RULE}",
            key.len()
        )));
    }
    if let Some(c) = key.chars().find(|c| !u8::try_from(*c).is_ok_and(key_char)) {
        return Err(KvError::Invalid(format!(
            "invalid key {key:?}: {c:?} is not allowed; {RULE}"
        )));
    }
    // NATS keys are subject tokens joined by '.': none may be empty.
    if key.starts_with('.') || key.ends_with('.') || key.contains("..") {
        return Err(KvError::Invalid(format!("invalid key {key:?}: {RULE}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_rule() {
        for good in [
            "a",
            "visits/alice",
            "A-Z_0-9=/.x",
            "a.b",
            "x/./y",
            "tmp",
            "a.b.c",
        ] {
            assert_eq!(check_key(good), Ok(()), "{good}");
        }
        let long = "k".repeat(MAX_KEY);
        assert_eq!(check_key(&long), Ok(()));
        for (bad, says) in [
            ("", "empty key"),
            (".", "start or end with '.'"),
            ("..", "start or end with '.'"),
            (".tmp123", "start or end with '.'"),
            ("a.", "start or end with '.'"),
            ("a..b", "contain '..'"),
            ("x/../y", "contain '..'"),
            ("a b", "' ' is not allowed"),
            ("ü", "'ü' is not allowed"),
            ("a*", "'*' is not allowed"),
            ("a>", "'>' is not allowed"),
            ("a\\b", "'\\\\' is not allowed"),
            ("a:b", "':' is not allowed"),
            ("a\nb", "'\\n' is not allowed"),
        ] {
            match check_key(bad) {
                Err(KvError::Invalid(msg)) => assert!(msg.contains(says), "{bad:?}: {msg}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let too_long = "k".repeat(MAX_KEY + 1);
        assert!(matches!(check_key(&too_long), Err(KvError::Invalid(m)) if m.contains("too long")));
    }

    #[test]
    fn store_names() {
        assert_eq!(check_store_name("default"), Ok(()));
        assert_eq!(check_store_name("A_b-9"), Ok(()));
        for bad in ["", "a b", "a.b", "../x", &"s".repeat(65)] {
            assert!(check_store_name(bad).is_err(), "{bad}");
        }
    }
}
