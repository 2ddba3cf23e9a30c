//! Key-value stores for SDK guests, scoped to (tenant, app, store name).
//!
//! - [`FileKv`]: the embedded default (`platform up`): one directory per store, one file
//!   per key (written atomically), under the data directory.
//! - [`NatsKv`]: NATS JetStream key-value buckets, one per store, for clusters.
//!
//! Values are limited to [`MAX_VALUE`] (1 MiB); keys to [`MAX_KEY`] bytes.

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

/// Largest value.
pub const MAX_VALUE: usize = 1 << 20;
/// Largest key.
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

/// A key-value backend.
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

/// Checks a key (1-1024 bytes).
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(KvError::Invalid("keys are 1 to 1024 bytes".into()));
    }
    Ok(())
}

/// Escapes any string into `[-_/=.a-zA-Z0-9]+` (what NATS keys and file names allow),
/// character by character, so prefixes stay prefixes.
pub fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'/' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// Reverses [`escape_key`].
pub fn unescape_key(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn scope_id(scope: &KvScope) -> String {
    // Tenant and app names are already [a-z0-9-]; the store name is checked.
    format!("{}_{}_{}", scope.tenant, scope.app, scope.store)
}

/// Files on local disk.
#[derive(Debug, Clone)]
pub struct FileKv {
    root: PathBuf,
}

impl FileKv {
    /// Stores under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileKv { root: root.into() }
    }

    fn dir(&self, scope: &KvScope) -> PathBuf {
        self.root.join(scope_id(scope))
    }

    fn path(&self, scope: &KvScope, key: &str) -> PathBuf {
        // '/' is allowed in keys but not in file names: escape it too.
        self.dir(scope).join(escape_key(key).replace('/', "=2F"))
    }
}

fn io(e: std::io::Error) -> KvError {
    KvError::Unavailable(e.to_string())
}

#[async_trait]
impl KvBackend for FileKv {
    async fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Bytes>, KvError> {
        match tokio::fs::read(self.path(scope, key)).await {
            Ok(v) => Ok(Some(v.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn set(&self, scope: &KvScope, key: &str, value: Bytes) -> Result<(), KvError> {
        let dir = self.dir(scope);
        let path = self.path(scope, key);
        tokio::task::spawn_blocking(move || -> Result<(), KvError> {
            std::fs::create_dir_all(&dir).map_err(io)?;
            let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
            std::io::Write::write_all(&mut tmp, &value).map_err(io)?;
            tmp.persist(&path).map_err(|e| io(e.error))?;
            Ok(())
        })
        .await
        .map_err(|e| KvError::Unavailable(e.to_string()))?
    }

    async fn delete(&self, scope: &KvScope, key: &str) -> Result<(), KvError> {
        match tokio::fs::remove_file(self.path(scope, key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    async fn keys(&self, scope: &KvScope, prefix: &str) -> Result<Vec<String>, KvError> {
        let mut out = Vec::new();
        let mut dir = match tokio::fs::read_dir(self.dir(scope)).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(e)),
        };
        while let Some(entry) = dir.next_entry().await.map_err(io)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp") {
                continue;
            }
            if let Some(key) = unescape_key(&name)
                && key.starts_with(prefix)
            {
                out.push(key);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// NATS JetStream key-value buckets (`platform_kv_<tenant>_<app>_<store>`).
#[derive(Clone)]
pub struct NatsKv {
    js: async_nats::jetstream::Context,
    buckets: std::sync::Arc<
        tokio::sync::Mutex<std::collections::HashMap<String, async_nats::jetstream::kv::Store>>,
    >,
}

impl std::fmt::Debug for NatsKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsKv")
    }
}

impl NatsKv {
    /// Connects to the NATS server at `url` (JetStream enabled), for cluster mode: every
    /// runtime then sees the same stores.
    pub async fn connect(url: &str) -> Result<Self, KvError> {
        let client = async_nats::ConnectOptions::new()
            .name("platform-runtime-kv")
            .connect(url)
            .await
            .map_err(|e| KvError::Unavailable(format!("NATS at {url}: {e}")))?;
        Ok(NatsKv::new(client))
    }

    /// Buckets on the NATS server `client` is connected to.
    pub fn new(client: async_nats::Client) -> Self {
        NatsKv {
            js: async_nats::jetstream::new(client),
            buckets: Default::default(),
        }
    }

    async fn bucket(&self, scope: &KvScope) -> Result<async_nats::jetstream::kv::Store, KvError> {
        let name = format!("platform_kv_{}", scope_id(scope)).replace('-', "_");
        let mut buckets = self.buckets.lock().await;
        if let Some(b) = buckets.get(&name) {
            return Ok(b.clone());
        }
        let store = match self.js.get_key_value(&name).await {
            Ok(s) => s,
            Err(_) => self
                .js
                .create_key_value(async_nats::jetstream::kv::Config {
                    bucket: name.clone(),
                    history: 1,
                    max_value_size: (MAX_VALUE + 1024) as i32,
                    ..Default::default()
                })
                .await
                .map_err(|e| KvError::Unavailable(format!("cannot create bucket {name}: {e}")))?,
        };
        buckets.insert(name, store.clone());
        Ok(store)
    }
}

fn nats(e: impl std::fmt::Display) -> KvError {
    KvError::Unavailable(e.to_string())
}

#[async_trait]
impl KvBackend for NatsKv {
    async fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Bytes>, KvError> {
        self.bucket(scope)
            .await?
            .get(escape_key(key))
            .await
            .map_err(nats)
    }

    async fn set(&self, scope: &KvScope, key: &str, value: Bytes) -> Result<(), KvError> {
        self.bucket(scope)
            .await?
            .put(escape_key(key), value)
            .await
            .map_err(nats)?;
        Ok(())
    }

    async fn delete(&self, scope: &KvScope, key: &str) -> Result<(), KvError> {
        self.bucket(scope)
            .await?
            .purge(escape_key(key))
            .await
            .map_err(nats)
    }

    async fn keys(&self, scope: &KvScope, prefix: &str) -> Result<Vec<String>, KvError> {
        let escaped = escape_key(prefix);
        let mut keys = self.bucket(scope).await?.keys().await.map_err(nats)?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(nats)?;
            if k.starts_with(&escaped)
                && let Some(key) = unescape_key(&k)
            {
                out.push(key);
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_and_keeps_prefixes() {
        for k in ["plain", "a b/c", "ünï", "=x=", "visits/alice"] {
            assert_eq!(unescape_key(&escape_key(k)).as_deref(), Some(k));
        }
        assert!(escape_key("a b/c").starts_with(&escape_key("a b")));
        assert!(
            escape_key("a b/c")
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_/=.".contains(&b))
        );
    }

    #[tokio::test]
    async fn file_store_sets_gets_lists_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let kv = FileKv::new(dir.path());
        let s = KvScope {
            tenant: "t".into(),
            app: "a".into(),
            store: "default".into(),
        };
        let other = KvScope {
            app: "b".into(),
            ..s.clone()
        };
        assert_eq!(kv.get(&s, "k").await.unwrap(), None);
        kv.set(&s, "visits/x y", Bytes::from_static(b"1"))
            .await
            .unwrap();
        kv.set(&s, "visits/z", Bytes::from_static(b"2"))
            .await
            .unwrap();
        kv.set(&s, "other", Bytes::from_static(b"3")).await.unwrap();
        assert_eq!(
            kv.get(&s, "visits/x y").await.unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(
            kv.keys(&s, "visits/").await.unwrap(),
            vec!["visits/x y", "visits/z"]
        );
        assert!(
            kv.keys(&other, "").await.unwrap().is_empty(),
            "apps are isolated"
        );
        kv.delete(&s, "visits/z").await.unwrap();
        kv.delete(&s, "never-set").await.unwrap();
        assert_eq!(kv.keys(&s, "").await.unwrap(), vec!["other", "visits/x y"]);
    }
}
