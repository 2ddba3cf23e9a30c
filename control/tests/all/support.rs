//! A control plane on a fresh database, with helpers to call it as a client would.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use platform_control::blobs::BlobStore;
use platform_control::events::EventBus;
use platform_control::store::Store;
use platform_control::{Control, ControlConfig};
use platform_runtime::engine::{EngineFingerprint, EngineSettings, build_engine};
use serde_json::{Value, json};
use sqlx::Row;
use tower::ServiceExt;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs a test body against both databases.
macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(crate::support::Db::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(crate::support::Db::Postgres).await
                }
            }
        )*
    };
}
pub(crate) use both_databases;

pub const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct Harness {
    pub ctl: Arc<Control>,
    pub router: axum::Router,
    /// Admin token of tenant `default`.
    pub admin: String,
    pub engine: wasmtime::Engine,
    pub dir: tempfile::TempDir,
    pub feed: futures::stream::BoxStream<'static, platform_proto::v1::FeedEvent>,
    schema: Option<String>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Leave the shared test database as we found it.
        if let Some(schema) = self.schema.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(PG).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA {schema} CASCADE"
                        )))
                        .execute(&pool)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

impl Harness {
    pub async fn new(db: Db) -> Self {
        Self::with_limit(db, 64 << 20).await
    }

    pub async fn with_limit(db: Db, max_module_size: u64) -> Self {
        Self::with_config(db, |c| c.max_module_size = max_module_size).await
    }

    /// A control plane whose configuration `configure` adjusts (caps, quotas...).
    pub async fn with_config(db: Db, configure: impl FnOnce(&mut ControlConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut schema = None;
        let url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("t.db").display()),
            Db::Postgres => {
                let name = format!("t_{}", uuid_like());
                let admin = sqlx::PgPool::connect(PG)
                    .await
                    .expect("PostgreSQL on 127.0.0.1:5432 (database test)");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
                    .execute(&admin)
                    .await
                    .unwrap();
                let url = format!("{PG}?options=-c%20search_path%3D{name}");
                schema = Some(name);
                url
            }
        };
        let store = Store::connect(&url).await.unwrap();
        let blobs =
            BlobStore::open(&format!("file://{}", dir.path().join("blobs").display())).unwrap();
        let engine = build_engine(&EngineSettings {
            pooling: false,
            ..Default::default()
        })
        .unwrap();
        let events = EventBus::in_process();
        let feed = events.subscribe_feed().await.unwrap();
        let mut config = ControlConfig {
            public_url: "http://127.0.0.1:8080".into(),
            max_module_size: 64 << 20,
            staging_dir: dir.path().join("staging"),
            engine: EngineFingerprint::of(&engine),
            app_addresses: None,
            caps: Default::default(),
            quotas: Default::default(),
            secrets: Some(platform_control::secrets::SecretKeys::from_bytes(
                &platform_control::secrets::SecretKeys::random_bytes(),
                &[],
            )),
            dedicated_addresses: Default::default(),
        };
        configure(&mut config);
        let ctl = Control::new(store, blobs, events, config);
        let token_file = dir.path().join("admin-token");
        let boot = ctl
            .bootstrap_admin(&token_file, None)
            .await
            .unwrap()
            .expect("bootstrap token");
        let router = platform_control::router(ctl.clone());
        Harness {
            ctl,
            router,
            admin: boot.secret,
            engine,
            dir,
            feed,
            schema,
        }
    }

    /// Calls `Service/Method` with a JSON body; returns status and JSON answer.
    pub async fn call(&self, token: &str, method: &str, body: Value) -> (StatusCode, Value) {
        let req = Request::post(format!("/platform.v1.{method}"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }

    /// Like [`Self::call`] but panics unless it succeeded.
    pub async fn ok(&self, token: &str, method: &str, body: Value) -> Value {
        let (s, v) = self.call(token, method, body).await;
        assert_eq!(s, StatusCode::OK, "{method}: {v}");
        v
    }

    pub async fn upload(&self, token: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let req = Request::post("/v1/modules?name=test.wasm")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(bytes))
            .unwrap();
        self.send(req).await
    }

    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&bytes) }));
        (status, v)
    }

    /// Runs the compile worker until no job is left.
    pub async fn compile_all(&self) {
        while platform_control::worker::run_one(&self.ctl, &self.engine)
            .await
            .unwrap()
        {}
    }

    /// A token for a new tenant.
    pub async fn tenant_token(&self, tenant: &str) -> String {
        let v = self
            .ok(
                &self.admin,
                "TokenService/CreateToken",
                json!({ "name": "t", "tenant": tenant }),
            )
            .await;
        v["secret"].as_str().unwrap().to_string()
    }

    /// Uploads a module, creates an app with a live release and a route.
    pub async fn deploy(&self, token: &str, app: &str, route: &str, wasm: Vec<u8>) -> Value {
        let (s, m) = self.upload(token, wasm).await;
        assert_eq!(s, StatusCode::OK, "{m}");
        self.ok(token, "AppService/CreateApp", json!({ "name": app }))
            .await;
        let r = self
            .ok(
                token,
                "ReleaseService/CreateRelease",
                json!({ "app": app, "moduleDigest": m["digest"], "activate": true }),
            )
            .await;
        self.compile_all().await;
        self.ok(
            token,
            "RouteService/CreateRoute",
            json!({ "app": app, "pathPrefix": route }),
        )
        .await;
        r
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(self.ctl.store.pool())
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    }

    pub async fn blobs(&self) -> Vec<String> {
        self.ctl.blobs.list("").await.unwrap()
    }

    /// Rows and blobs that uploads, releases and routes write.
    pub async fn footprint(&self) -> (i64, i64, i64, i64, Vec<String>) {
        (
            self.count("modules").await,
            self.count("artifacts").await,
            self.count("releases").await,
            self.count("routes").await,
            self.blobs().await,
        )
    }
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..16)
        .map(|_| char::from(b'a' + r.random_range(0..26)))
        .collect()
}

/// A minimal valid WAGI module; `tag` makes its bytes (and digest) unique.
pub fn wagi(tag: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 100) "{tag}")
            (func (export "_start")))"#
    ))
    .unwrap()
}
