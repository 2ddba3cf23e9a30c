//! `Store`: the control plane's database, SQLite (embedded default) or PostgreSQL.
//!
//! One code path serves both through sqlx's `Any` driver; the two schemas live in
//! `migrations/sqlite` and `migrations/postgres` and are applied at start-up. Queries use
//! `$1, $2, ...` placeholders in order of appearance, which both databases accept.
//!
//! SQLite runs with one connection (WAL mode), so its writes are serialized; PostgreSQL
//! serializes serving changes on the `feed_state` row (see [`Store::bump_revision`]).

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Errors opening the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    Url(String),
    /// Connecting failed.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("cannot migrate the database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// A transaction.
pub type Tx = Transaction<'static, Any>;

impl Store {
    /// Connects and migrates. `url` is `sqlite://path` (created when missing) or
    /// `postgres://...` (a `search_path` may be set with `?options=-c search_path=x`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Url(url.to_string()));
        };
        if backend == Backend::Sqlite {
            sqlite_private_file(url).map_err(|e| {
                StoreError::Connect(sqlx::Error::Configuration(
                    format!("cannot create the database file owner-only: {e}").into(),
                ))
            })?;
        }
        let url = if backend == Backend::Sqlite && !url.contains("mode=") {
            if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            }
        } else {
            url.to_string()
        };
        let options: AnyConnectOptions = url.parse().map_err(StoreError::Connect)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .connect_with(options)
                    .await
            }
        }
        .map_err(StoreError::Connect)?;
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&self.pool).await,
        }
        .map_err(StoreError::Migrate)
    }

    /// The connection pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.pool.begin().await
    }

    /// Increments the feed revision inside `tx` and returns the new value. On PostgreSQL the
    /// row lock this takes serializes serving changes until `tx` ends, so revisions are
    /// handed out in commit order.
    pub async fn bump_revision(tx: &mut Tx) -> Result<u64, sqlx::Error> {
        let row = sqlx::query(
            "UPDATE feed_state SET revision = revision + 1 WHERE id = 1 RETURNING revision",
        )
        .fetch_one(&mut **tx)
        .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    /// Serializes serving changes that check before they write (route ownership, domain
    /// assignments) until `tx` ends: a row lock on PostgreSQL, the write lock on SQLite.
    pub async fn lock_serving(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE feed_state SET revision = revision WHERE id = 1")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Locks the app's row until `tx` ends (on PostgreSQL; SQLite serializes all writes).
    /// Every transaction that changes an app's releases or live state takes this lock
    /// first, so such transactions never deadlock on each other and see each other whole.
    pub async fn lock_app(tx: &mut Tx, app_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE apps SET release_seq = release_seq WHERE id = $1")
            .bind(app_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Takes the app's next release number inside `tx` (and, like [`Store::lock_app`],
    /// locks its row): concurrent callers get distinct numbers on either database.
    pub async fn next_release_number(tx: &mut Tx, app_id: &str) -> Result<i64, sqlx::Error> {
        let row = sqlx::query(
            "UPDATE apps SET release_seq = release_seq + 1 WHERE id = $1 RETURNING release_seq",
        )
        .bind(app_id)
        .fetch_one(&mut **tx)
        .await?;
        row.try_get::<i64, _>(0)
    }

    /// The current feed revision.
    pub async fn revision(&self) -> Result<u64, sqlx::Error> {
        let row = sqlx::query("SELECT revision FROM feed_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }
}

/// Creates the SQLite file of `url` 0600 (in a 0700 directory when that is missing) before
/// SQLite opens it; its `-wal` and `-shm` files take the same mode. In-memory databases
/// have no file.
fn sqlite_private_file(url: &str) -> std::io::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return Ok(());
    }
    let path = std::path::Path::new(path);
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        crate::private_fs::private_dir(dir)?;
    }
    crate::private_fs::private_file(path)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new object id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A protobuf timestamp from Unix milliseconds.
pub fn timestamp(ms: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// True when `e` is a unique-constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation()
                || d.message().contains("UNIQUE constraint failed")
                || d.code()
                    .is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
        }
        _ => false,
    }
}
