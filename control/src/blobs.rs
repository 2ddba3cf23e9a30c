//! `BlobStore`: module bytes and compiled artifacts, content-addressed, on the local
//! filesystem (default) or S3-compatible object storage, through the `object_store` crate.
//!
//! Keys: `modules/<digest>.wasm`, `artifacts/<digest>-<engine>.cwasm`. The same bytes are
//! stored once, whoever uploads them. Objects are written from and read into files in
//! chunks, so a 100 MB module never sits whole in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The URL is not understood.
    #[error("unsupported blob URL {0:?}: use file:///path or s3://bucket[/prefix]")]
    Url(String),
    /// The backing store failed.
    #[error("blob store: {0}")]
    Store(#[from] object_store::Error),
    /// Local file trouble.
    #[error("blob I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The blob store.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    local_root: Option<PathBuf>,
    url: String,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore").field("url", &self.url).finish()
    }
}

const CHUNK: usize = 1 << 20;

impl BlobStore {
    /// Opens `file:///path` (created when missing) or `s3://bucket[/prefix]` (credentials,
    /// region and endpoint from the usual `AWS_*` environment variables).
    pub fn open(url: &str) -> Result<Self, BlobError> {
        if let Some(path) = url.strip_prefix("file://") {
            let root = PathBuf::from(path);
            crate::private_fs::private_dir(&root)?;
            let root = root.canonicalize()?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&root)?;
            return Ok(BlobStore {
                store: Arc::new(store),
                local_root: Some(root),
                url: url.to_string(),
            });
        }
        if url.starts_with("s3://") {
            let parsed = url::Url::parse(url).map_err(|_| BlobError::Url(url.to_string()))?;
            let bucket = parsed
                .host_str()
                .ok_or_else(|| BlobError::Url(url.to_string()))?;
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()?;
            let prefix = parsed.path().trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
            };
            return Ok(BlobStore {
                store,
                local_root: None,
                url: url.to_string(),
            });
        }
        Err(BlobError::Url(url.to_string()))
    }

    /// Key of a module's bytes.
    pub fn module_key(digest: &str) -> String {
        format!("modules/{digest}.wasm")
    }

    /// Key of a compiled artifact.
    pub fn artifact_key(digest: &str, engine: &str) -> String {
        format!("artifacts/{digest}-{engine}.cwasm")
    }

    /// The file behind `key` when the store is local (lets an in-process runtime read it
    /// without a copy).
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.local_root.as_ref().map(|r| r.join(key))
    }

    /// True when `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores the contents of `file` under `key`, streaming in chunks.
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<(), BlobError> {
        let upload = self.store.put_multipart(&ObjectPath::from(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK * 5);
        let mut f = tokio::fs::File::open(file).await?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            // Back-pressure: at most two parts in flight, so a large file is never
            // buffered whole while the store catches up.
            writer.wait_for_capacity(2).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        if let Some(path) = self.local_path(key) {
            // object_store writes with the process umask: owner-only, like the root.
            crate::private_fs::restrict(&path, 0o600)?;
            if let Some(dir) = path.parent() {
                crate::private_fs::restrict(dir, 0o700)?;
            }
        }
        Ok(())
    }

    /// Copies the object under `key` into the file `dest` (written atomically).
    pub async fn get_to_file(&self, key: &str, dest: &Path) -> Result<(), BlobError> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir).await?;
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        let (std_file, tmp_path) = tmp.into_parts();
        let mut f = tokio::fs::File::from_std(std_file);
        let mut stream = self.store.get(&ObjectPath::from(key)).await?.into_stream();
        while let Some(chunk) = stream.next().await {
            f.write_all(&chunk?).await?;
        }
        f.flush().await?;
        drop(f);
        tmp_path.persist(dest).map_err(|e| BlobError::Io(e.error))?;
        Ok(())
    }

    /// The object under `key` as a stream of chunks, for HTTP downloads.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<
        (
            u64,
            futures::stream::BoxStream<'static, Result<Bytes, object_store::Error>>,
        ),
        BlobError,
    > {
        let r = self.store.get(&ObjectPath::from(key)).await?;
        let size = r.meta.size;
        Ok((size, r.into_stream()))
    }

    /// Removes `key` (missing is fine).
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every key under `prefix` (for tests and garbage collection).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let mut out = Vec::new();
        let prefix = ObjectPath::from(prefix);
        let mut s = self.store.list(Some(&prefix));
        while let Some(m) = s.next().await {
            out.push(m?.location.to_string());
        }
        Ok(out)
    }
}
