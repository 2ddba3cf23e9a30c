//! Key-value stores on NATS JetStream, shared by every runtime of a cluster.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream::kv::Store;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::naming::bucket_name;
use super::{KvBackend, KvError, KvScope, MAX_VALUE, check_key, check_store_name};

/// NATS JetStream key-value buckets, one per store ([`bucket_name`]); keys are stored as
/// they are (the key rule is NATS's own).
#[derive(Clone)]
pub struct NatsKv {
    js: async_nats::jetstream::Context,
    buckets: Arc<tokio::sync::Mutex<HashMap<String, Store>>>,
}

impl std::fmt::Debug for NatsKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsKv")
    }
}

impl NatsKv {
    /// Connects to the NATS server at `url` (JetStream enabled), for cluster mode: every
    /// runtime then sees the same stores. `options` carry the runtime role's credentials.
    pub async fn connect(url: &str, options: async_nats::ConnectOptions) -> Result<Self, KvError> {
        let client = options
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

    async fn bucket(&self, scope: &KvScope) -> Result<Store, KvError> {
        check_store_name(&scope.store)?;
        let name = bucket_name(scope);
        let mut buckets = self.buckets.lock().await;
        if let Some(b) = buckets.get(&name) {
            return Ok(b.clone());
        }
        let store = match self.js.get_key_value(&name).await {
            Ok(s) => s,
            Err(_) => {
                // The name is opaque: say whose store it is where `nats kv ls` shows it.
                let description: String = format!(
                    "Platform key-value store {:?} of app {:?} (tenant {:?})",
                    scope.store, scope.app, scope.tenant
                )
                .chars()
                .take(1024)
                .collect();
                // The bucket's stream, made the way `create_key_value` makes it. That call
                // reads the account's JetStream info first, which async-nats 0.51 cannot
                // parse from NATS 2.9 servers (no `reserved_memory`); creating the stream
                // and opening it as a bucket works on every server version.
                let config = async_nats::jetstream::stream::Config {
                    name: format!("KV_{name}"),
                    description: Some(description),
                    subjects: vec![format!("$KV.{name}.>")],
                    max_messages_per_subject: 1,
                    max_message_size: (MAX_VALUE + 1024) as i32,
                    allow_rollup: true,
                    deny_delete: true,
                    deny_purge: false,
                    allow_direct: true,
                    discard: async_nats::jetstream::stream::DiscardPolicy::New,
                    num_replicas: 1,
                    ..Default::default()
                };
                self.js.get_or_create_stream(config).await.map_err(|e| {
                    KvError::Unavailable(format!("cannot create bucket {name}: {e}"))
                })?;
                let store =
                    self.js.get_key_value(&name).await.map_err(|e| {
                        KvError::Unavailable(format!("cannot open bucket {name}: {e}"))
                    })?;
                tracing::info!(
                    bucket = %name,
                    tenant = %scope.tenant,
                    app = %scope.app,
                    store = %scope.store,
                    "created a key-value bucket"
                );
                store
            }
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
        check_key(key)?;
        self.bucket(scope).await?.get(key).await.map_err(nats)
    }

    async fn set(&self, scope: &KvScope, key: &str, value: Bytes) -> Result<(), KvError> {
        if value.len() > MAX_VALUE {
            return Err(KvError::TooLarge(value.len()));
        }
        check_key(key)?;
        self.bucket(scope)
            .await?
            .put(key, value)
            .await
            .map_err(nats)?;
        Ok(())
    }

    async fn delete(&self, scope: &KvScope, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        self.bucket(scope).await?.purge(key).await.map_err(nats)
    }

    async fn keys(&self, scope: &KvScope, prefix: &str) -> Result<Vec<String>, KvError> {
        let mut keys = self.bucket(scope).await?.keys().await.map_err(nats)?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(nats)?;
            if k.starts_with(prefix) {
                out.push(k);
            }
        }
        out.sort();
        Ok(out)
    }
}
