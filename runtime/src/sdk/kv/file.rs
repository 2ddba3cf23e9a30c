//! The embedded key-value store: one file per key on local disk.

use std::io::{Read, Write};
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;

use super::naming::{is_key_file_name, key_file_name, scope_id};
use super::{KvBackend, KvError, KvScope, MAX_KEY, MAX_VALUE, check_key, check_store_name};

/// Files on local disk: `<root>/v2/<scope id>/<key file name>`. A file holds the key, a
/// newline, then the value (keys never contain a newline), and is written atomically
/// (temporary file, then rename). Listing reads the first line of every file: fine at the
/// embedded store's scale (`platform up`); clusters use [`super::NatsKv`].
#[derive(Debug, Clone)]
pub struct FileKv {
    root: PathBuf,
}

impl FileKv {
    /// Stores under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileKv { root: root.into() }
    }

    /// The directory of a store (its files are written on the first `set`).
    pub fn store_dir(&self, scope: &KvScope) -> PathBuf {
        self.root.join("v2").join(scope_id(scope))
    }

    fn key_path(&self, scope: &KvScope, key: &str) -> Result<PathBuf, KvError> {
        check_store_name(&scope.store)?;
        check_key(key)?;
        Ok(self.store_dir(scope).join(key_file_name(key)))
    }
}

fn io(e: std::io::Error) -> KvError {
    KvError::Unavailable(e.to_string())
}

fn joined(e: tokio::task::JoinError) -> KvError {
    KvError::Unavailable(e.to_string())
}

/// Splits a key file into its key and value.
fn split_entry(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let key = std::str::from_utf8(&bytes[..nl]).ok()?;
    Some((key, &bytes[nl + 1..]))
}

/// The key stored in the file `name` of `dir`, if it is a key file that holds its key.
fn read_key(dir: &std::path::Path, name: &str) -> Result<Option<String>, KvError> {
    if !is_key_file_name(name) {
        return Ok(None);
    }
    let file = match std::fs::File::open(dir.join(name)) {
        Ok(f) => f,
        // Deleted since the directory was read.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut head = Vec::with_capacity(64);
    file.take(MAX_KEY as u64 + 1)
        .read_to_end(&mut head)
        .map_err(io)?;
    let Some(nl) = head.iter().position(|b| *b == b'\n') else {
        return Ok(None);
    };
    let Ok(key) = String::from_utf8(head[..nl].to_vec()) else {
        return Ok(None);
    };
    Ok((key_file_name(&key) == name).then_some(key))
}

#[async_trait]
impl KvBackend for FileKv {
    async fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Bytes>, KvError> {
        let path = self.key_path(scope, key)?;
        let bytes = match tokio::fs::read(&path).await {
            Ok(v) => Bytes::from(v),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        match split_entry(&bytes) {
            Some((stored, value)) if stored == key => Ok(Some(bytes.slice_ref(value))),
            _ => Err(KvError::Unavailable(format!(
                "the entry of key {key:?} is damaged ({})",
                path.display()
            ))),
        }
    }

    async fn set(&self, scope: &KvScope, key: &str, value: Bytes) -> Result<(), KvError> {
        if value.len() > MAX_VALUE {
            return Err(KvError::TooLarge(value.len()));
        }
        let path = self.key_path(scope, key)?;
        let dir = self.store_dir(scope);
        let key = key.to_string();
        tokio::task::spawn_blocking(move || -> Result<(), KvError> {
            std::fs::create_dir_all(&dir).map_err(io)?;
            let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
            tmp.write_all(key.as_bytes()).map_err(io)?;
            tmp.write_all(b"\n").map_err(io)?;
            tmp.write_all(&value).map_err(io)?;
            tmp.persist(&path).map_err(|e| io(e.error))?;
            Ok(())
        })
        .await
        .map_err(joined)?
    }

    async fn delete(&self, scope: &KvScope, key: &str) -> Result<(), KvError> {
        match tokio::fs::remove_file(self.key_path(scope, key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    async fn keys(&self, scope: &KvScope, prefix: &str) -> Result<Vec<String>, KvError> {
        check_store_name(&scope.store)?;
        let dir = self.store_dir(scope);
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || -> Result<Vec<String>, KvError> {
            let entries = match std::fs::read_dir(&dir) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io(e)),
            };
            let mut out = Vec::new();
            for entry in entries {
                let entry = entry.map_err(io)?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if let Some(key) = read_key(&dir, &name)?
                    && key.starts_with(&prefix)
                {
                    out.push(key);
                }
            }
            out.sort();
            Ok(out)
        })
        .await
        .map_err(joined)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(tenant: &str, app: &str) -> KvScope {
        KvScope {
            tenant: tenant.into(),
            app: app.into(),
            store: "default".into(),
        }
    }

    #[tokio::test]
    async fn sets_gets_lists_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let kv = FileKv::new(dir.path());
        let s = scope("t", "a");
        let other = scope("t", "b");
        assert_eq!(kv.get(&s, "k").await.unwrap(), None);
        kv.set(&s, "visits/x", Bytes::from_static(b"1"))
            .await
            .unwrap();
        kv.set(&s, "visits/z", Bytes::from_static(b"2\nwith a newline"))
            .await
            .unwrap();
        kv.set(&s, "other", Bytes::new()).await.unwrap();
        assert_eq!(
            kv.get(&s, "visits/x").await.unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(
            kv.get(&s, "visits/z").await.unwrap().as_deref(),
            Some(&b"2\nwith a newline"[..])
        );
        assert_eq!(
            kv.get(&s, "other").await.unwrap().as_deref(),
            Some(&b""[..])
        );
        assert_eq!(
            kv.keys(&s, "visits/").await.unwrap(),
            vec!["visits/x", "visits/z"]
        );
        assert!(
            kv.keys(&other, "").await.unwrap().is_empty(),
            "apps are isolated"
        );
        kv.delete(&s, "visits/z").await.unwrap();
        kv.delete(&s, "never-set").await.unwrap();
        assert_eq!(kv.keys(&s, "").await.unwrap(), vec!["other", "visits/x"]);
    }

    #[tokio::test]
    async fn stray_and_damaged_files_are_not_keys() {
        let dir = tempfile::tempdir().unwrap();
        let kv = FileKv::new(dir.path());
        let s = scope("t", "a");
        kv.set(&s, "real", Bytes::from_static(b"v")).await.unwrap();
        let store = kv.store_dir(&s);
        // A temporary file left by a crash, a file named like a key holding another key,
        // and one without a key line.
        std::fs::write(store.join(".tmpXYZ"), "real\nshadow").unwrap();
        std::fs::write(store.join(key_file_name("ghost")), "other\nv").unwrap();
        std::fs::write(store.join(key_file_name("nokey")), "no newline").unwrap();
        assert_eq!(kv.keys(&s, "").await.unwrap(), vec!["real"]);
        assert!(matches!(
            kv.get(&s, "ghost").await,
            Err(KvError::Unavailable(m)) if m.contains("damaged")
        ));
    }
}
