//! Names of stores and key files: opaque hashes, so no two scopes and no two keys can ever
//! share a name, whatever characters their parts use (see the module docs of `kv`).

use sha2::{Digest, Sha256};

use super::KvScope;

/// Domain separation: these hashes mean nothing anywhere else, and a future naming can
/// change the tag instead of colliding with this one.
const SCOPE_TAG: &[u8] = b"platform kv scope v2\0";
const KEY_TAG: &[u8] = b"platform kv key v2\0";

/// The store's id: lower-case hex SHA-256 of the length-prefixed tenant, app and store
/// names. Length prefixes make the input of two different scopes differ, so only a SHA-256
/// collision could give two scopes one id.
pub fn scope_id(scope: &KvScope) -> String {
    let mut h = Sha256::new();
    h.update(SCOPE_TAG);
    for part in [&scope.tenant, &scope.app, &scope.store] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The NATS JetStream key-value bucket of a store: `platform_kv_v2_<scope id>` (79
/// characters of `[a-z0-9_]`; NATS allows `[A-Za-z0-9_-]`, up to 255 with its `KV_`
/// stream prefix).
pub fn bucket_name(scope: &KvScope) -> String {
    format!("platform_kv_v2_{}", scope_id(scope))
}

/// The file holding `key` in a store directory: the key's lower-case hex SHA-256. Never
/// `.` or `..`, never starts with `.` (temporary files do), never contains a separator.
pub(super) fn key_file_name(key: &str) -> String {
    let mut h = Sha256::new();
    h.update(KEY_TAG);
    h.update(key.as_bytes());
    hex::encode(h.finalize())
}

/// True for names [`key_file_name`] makes (anything else in a store directory, a
/// temporary file above all, is not a key).
pub(super) fn is_key_file_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(tenant: &str, app: &str, store: &str) -> KvScope {
        KvScope {
            tenant: tenant.into(),
            app: app.into(),
            store: store.into(),
        }
    }

    #[test]
    fn lookalike_scopes_get_different_buckets() {
        let pairs = [
            (
                scope("t", "labs-api", "default"),
                scope("t-labs", "api", "default"),
            ),
            (
                scope("t", "labs_api", "default"),
                scope("t_labs", "api", "default"),
            ),
            (scope("a_b", "c", "d"), scope("a", "b_c", "d")),
            (scope("a", "b", "c_d"), scope("a", "b_c", "d")),
            (scope("a", "", "bc"), scope("a", "b", "c")),
            (scope("t", "a", "Default"), scope("t", "a", "default")),
        ];
        for (x, y) in pairs {
            assert_ne!(bucket_name(&x), bucket_name(&y), "{x:?} {y:?}");
        }
        let s = scope("t", "labs-api", "default");
        assert_eq!(bucket_name(&s), bucket_name(&s.clone()), "stable");
        let name = bucket_name(&s);
        assert!(name.len() <= 252, "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}"
        );
    }

    #[test]
    fn key_file_names_are_plain_and_recognised() {
        for key in ["a", ".", "..", ".tmp1", "x/../../etc", "A", "a"] {
            let name = key_file_name(key);
            assert!(is_key_file_name(&name), "{name}");
            assert!(!name.starts_with('.') && !name.contains('/'));
        }
        assert_ne!(key_file_name("A"), key_file_name("a"), "case kept apart");
        for other in [
            ".tmpAbC123",
            "",
            ".",
            "..",
            &"A".repeat(64),
            &"a".repeat(63),
        ] {
            assert!(!is_key_file_name(other), "{other}");
        }
    }
}
