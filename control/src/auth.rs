//! API tokens: random secrets shown once, stored as sha256 hashes, scoped to a tenant.
//!
//! A secret is `plt_` + 64 hex characters (256 random bits), so a fast hash is enough to
//! store it safely: nothing can be brute-forced from the hash. (Passwords, which people
//! choose, get argon2 in the dashboard instead.)

use axum::http::HeaderMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::error::ApiError;
use crate::store::{Store, Tx, new_id, now_ms};

/// What a token (or session) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything within its tenant.
    Member,
    /// Everything, across tenants (create tenants, read the serving feed).
    Admin,
    /// Read the serving feed and download modules and artifacts, nothing else: what a
    /// runtime (shared or dedicated) needs, so a runtime pod holds no admin rights.
    Runtime,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Runtime => "runtime",
        }
    }

    /// Parses a stored name; anything unknown is the least privileged role there is.
    pub fn parse(s: &str) -> Role {
        match s {
            "admin" => Role::Admin,
            "member" => Role::Member,
            _ => Role::Runtime,
        }
    }

    /// The API form.
    pub fn to_proto(self) -> platform_proto::v1::TokenRole {
        match self {
            Role::Member => platform_proto::v1::TokenRole::Member,
            Role::Admin => platform_proto::v1::TokenRole::Admin,
            Role::Runtime => platform_proto::v1::TokenRole::Runtime,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant the caller acts for.
    pub tenant: String,
    /// The token used.
    pub token_id: String,
    /// What the caller may do.
    pub role: Role,
}

impl Caller {
    /// True for admin callers.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Fails unless the caller is an admin.
    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::denied(format!("{what} needs an admin token")))
        }
    }

    /// Fails unless the caller may read what runtimes read (admin or runtime tokens).
    pub fn require_feed_reader(&self, what: &str) -> Result<(), ApiError> {
        match self.role {
            Role::Admin | Role::Runtime => Ok(()),
            Role::Member => Err(ApiError::denied(format!(
                "{what} needs an admin or runtime token"
            ))),
        }
    }
}

/// The refusal every call but the feed and downloads gives a runtime token.
pub fn runtime_refused() -> ApiError {
    ApiError::denied(
        "runtime tokens may only read the serving feed and download modules and artifacts",
    )
}

/// A freshly created token: its id and the secret to show once.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Token id.
    pub id: String,
    /// The secret.
    pub secret: String,
    /// Its recognisable prefix.
    pub prefix: String,
}

/// Hex sha256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a token row inside `tx` (the tenant must exist); the secret is random unless
/// `preset` gives one.
pub async fn create_token(
    tx: &mut Tx,
    tenant: &str,
    name: &str,
    role: Role,
    preset: Option<&str>,
) -> Result<NewToken, sqlx::Error> {
    let secret = match preset {
        Some(p) => p.to_string(),
        None => {
            let mut raw = [0u8; 32];
            rand::rng().fill_bytes(&mut raw);
            format!("plt_{}", hex::encode(raw))
        }
    };
    let prefix = secret[..12].to_string();
    let id = new_id();
    sqlx::query(
        "INSERT INTO tokens (id, tenant, name, secret_hash, prefix, admin, role, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(tenant)
    .bind(name)
    .bind(hash_secret(&secret))
    .bind(&prefix)
    .bind(i64::from(role == Role::Admin))
    .bind(role.as_str())
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(NewToken { id, secret, prefix })
}

/// Creates the tenant when it does not exist yet (race-free: concurrent callers both
/// succeed).
pub async fn ensure_tenant(tx: &mut Tx, tenant: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO tenants (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(tenant)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Resolves a secret to its caller; revoked and unknown tokens are refused alike.
pub async fn caller_for_secret(store: &Store, secret: &str) -> Result<Caller, ApiError> {
    let row = sqlx::query(
        "SELECT id, tenant, role, last_used_at FROM tokens WHERE secret_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash_secret(secret))
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else {
        return Err(ApiError::unauthenticated(
            "the token is unknown or revoked: create one with `platform tokens create` or use the admin token printed by `platform up`",
        ));
    };
    let caller = Caller {
        token_id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        role: Role::parse(&row.try_get::<String, _>("role")?),
    };
    // Record use at most once a minute per token, to keep reads read-only.
    let last: Option<i64> = row.try_get("last_used_at")?;
    let now = now_ms();
    if last.is_none_or(|l| now - l > 60_000) {
        let _ = sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&caller.token_id)
            .execute(store.pool())
            .await;
    }
    Ok(caller)
}

/// Validates a tenant or app name: 1-63 of `a-z 0-9 -`, not starting or ending with `-`,
/// and without `--` (which separates app and tenant in apps' default addresses, so
/// `<app>--<tenant>` names exactly one app).
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(format!(
            "invalid {kind} name {name:?}: use 1-63 lower-case letters, digits and '-'"
        ));
    }
    if name.contains("--") {
        return Err(format!(
            "invalid {kind} name {name:?}: '--' is reserved (it separates app and tenant in default addresses)"
        ));
    }
    Ok(())
}
