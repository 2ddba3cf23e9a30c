//! `wasi:keyvalue@0.2.0-draft` for components, backed by the same stores as the SDK's
//! key-value API ([`crate::sdk::kv`]): one scope per (tenant, app, store), the same key
//! rule and value limit, the embedded files under `platform up` and NATS buckets in a
//! cluster. So a component and an SDK module of one app see the same data.
//!
//! `wasmtime-wasi-keyvalue` 48 cannot be used for this: it serves only an in-memory map
//! given at start-up, through synchronous host functions, and copies that map into every
//! bucket it opens (writes never outlive the bucket). The same WIT (copied from that crate
//! into `runtime/wit/keyvalue`) is implemented here with async host functions instead.
//!
//! - `open(identifier)`: the app's store of that name (`""` is `default`); another app's
//!   or tenant's store cannot be named (the scope comes from the release, not the guest).
//! - `list-keys`: sorted keys in pages of [`PAGE`]; the cursor is the index of the next.
//! - `atomics.increment`: read, add, write; atomic within one instance's call, not across
//!   instances or runtimes (the SDK stores have no compare-and-swap).

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::sdk::kv::{self, KvBackend, KvError, KvScope};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::StoreError,
        },
    });
}

use generated::wasi::keyvalue::{atomics, batch, store};

/// Keys per `list-keys` page.
pub const PAGE: usize = 1000;

/// Most stores one instance may have open at once.
pub const MAX_OPEN: usize = 64;

/// An open store: the scope every call on it uses.
pub struct Bucket {
    scope: KvScope,
}

/// A failed key-value call, as the guest sees it.
#[derive(Debug)]
pub enum StoreError {
    /// The store name is not allowed.
    NoSuchStore,
    /// Key-value is not configured on this host.
    AccessDenied,
    /// Anything else, with the reason.
    Other(String),
}

impl From<KvError> for StoreError {
    fn from(e: KvError) -> Self {
        StoreError::Other(e.to_string())
    }
}

impl From<wasmtime::component::ResourceTableError> for StoreError {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        StoreError::Other(e.to_string())
    }
}

/// What a component's key-value calls need: the backend and the release's tenant and app.
pub struct KvCtx {
    /// The backend (`None`: key-value is not configured; every open is refused).
    pub backend: Option<Arc<dyn KvBackend>>,
    /// The release's tenant.
    pub tenant: String,
    /// The release's app.
    pub app: String,
    /// Stores open now (bounded by [`MAX_OPEN`]: each holds host memory).
    open: usize,
}

impl KvCtx {
    /// Key-value for a release of `app` in `tenant`, through `backend`.
    pub fn new(backend: Option<Arc<dyn KvBackend>>, tenant: &str, app: &str) -> Self {
        KvCtx {
            backend,
            tenant: tenant.to_string(),
            app: app.to_string(),
            open: 0,
        }
    }
}

/// The view the host functions run on.
pub struct KvView<'a> {
    ctx: &'a mut KvCtx,
    table: &'a mut ResourceTable,
}

impl<'a> KvView<'a> {
    /// A view over `ctx` and the store's resource table.
    pub fn new(ctx: &'a mut KvCtx, table: &'a mut ResourceTable) -> Self {
        KvView { ctx, table }
    }

    fn backend(&self) -> Result<Arc<dyn KvBackend>, StoreError> {
        self.ctx.backend.clone().ok_or(StoreError::AccessDenied)
    }

    fn scope(&self, bucket: &Resource<Bucket>) -> Result<KvScope, StoreError> {
        Ok(self.table.get(bucket)?.scope.clone())
    }
}

fn check_value(value: &[u8]) -> Result<(), StoreError> {
    if value.len() > kv::MAX_VALUE {
        return Err(KvError::TooLarge(value.len()).into());
    }
    Ok(())
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, StoreError> {
        self.backend()?;
        let name = if identifier.is_empty() {
            "default".to_string()
        } else {
            identifier
        };
        if kv::check_store_name(&name).is_err() {
            return Err(StoreError::NoSuchStore);
        }
        if self.ctx.open >= MAX_OPEN {
            return Err(StoreError::Other(format!(
                "at most {MAX_OPEN} stores may be open at once"
            )));
        }
        let scope = KvScope {
            tenant: self.ctx.tenant.clone(),
            app: self.ctx.app.clone(),
            store: name,
        };
        let bucket = self.table.push(Bucket { scope })?;
        self.ctx.open += 1;
        Ok(bucket)
    }

    fn convert_error(&mut self, err: StoreError) -> wasmtime::Result<store::Error> {
        Ok(match err {
            StoreError::NoSuchStore => store::Error::NoSuchStore,
            StoreError::AccessDenied => store::Error::AccessDenied,
            StoreError::Other(e) => store::Error::Other(e),
        })
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let scope = self.scope(&bucket)?;
        let value = self.backend()?.get(&scope, &key).await?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        check_value(&value)?;
        let scope = self.scope(&bucket)?;
        self.backend()?
            .set(&scope, &key, Bytes::from(value))
            .await?;
        Ok(())
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), StoreError> {
        let scope = self.scope(&bucket)?;
        self.backend()?.delete(&scope, &key).await?;
        Ok(())
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, StoreError> {
        let scope = self.scope(&bucket)?;
        Ok(self.backend()?.get(&scope, &key).await?.is_some())
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, StoreError> {
        let scope = self.scope(&bucket)?;
        let keys = self.backend()?.keys(&scope, "").await?;
        let start = usize::try_from(cursor.unwrap_or(0))
            .unwrap_or(usize::MAX)
            .min(keys.len());
        let end = start.saturating_add(PAGE).min(keys.len());
        Ok(store::KeyResponse {
            keys: keys[start..end].to_vec(),
            cursor: (end < keys.len()).then_some(end as u64),
        })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        self.ctx.open = self.ctx.open.saturating_sub(1);
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, StoreError> {
        let scope = self.scope(&bucket)?;
        let backend = self.backend()?;
        let current = match backend.get(&scope, &key).await? {
            None => 0,
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    StoreError::Other(format!("the value of {key:?} is not a decimal number"))
                })?,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| StoreError::Other(format!("incrementing {key:?} overflows")))?;
        backend
            .set(&scope, &key, Bytes::from(next.to_string()))
            .await?;
        Ok(next)
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, StoreError> {
        let scope = self.scope(&bucket)?;
        let backend = self.backend()?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let value = backend.get(&scope, &key).await?;
            out.push(value.map(|v| (key, v.to_vec())));
        }
        Ok(out)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let scope = self.scope(&bucket)?;
        let backend = self.backend()?;
        for (key, value) in key_values {
            check_value(&value)?;
            backend.set(&scope, &key, Bytes::from(value)).await?;
        }
        Ok(())
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), StoreError> {
        let scope = self.scope(&bucket)?;
        let backend = self.backend()?;
        for key in keys {
            backend.delete(&scope, &key).await?;
        }
        Ok(())
    }
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Adds `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft` to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasKv>(linker, view)?;
    atomics::add_to_linker::<_, HasKv>(linker, view)?;
    batch::add_to_linker::<_, HasKv>(linker, view)?;
    Ok(())
}
