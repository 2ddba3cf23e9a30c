//! Local dashboard users of the embedded installation: names with argon2 password hashes.
//!
//! A user name is unique within its tenant, not across tenants (a global name would tell
//! one tenant, by collision, which names another tenant uses). So sign-in names the tenant:
//! `alice@acme` is user `alice` of tenant `acme`, and a plain `alice` is a user of tenant
//! `default` (the embedded installation's own). The part after the last `@` is the tenant
//! when it is a valid tenant name; names that would read that way cannot be created.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Argon2, PasswordHash};
use platform_control::store::{is_unique_violation, new_id, now_ms};
use sqlx::Row;

use crate::WebState;

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Bad name or password.
    #[error("{0}")]
    Invalid(String),
    /// Taken (in this tenant).
    #[error("the user name {0:?} is taken")]
    Taken(String),
    /// Database trouble.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Creates a user in `tenant`.
pub async fn create(
    state: &WebState,
    tenant: &str,
    username: &str,
    password: &str,
) -> Result<(), UserError> {
    let username = username.trim();
    if username.is_empty()
        || username.len() > 64
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        return Err(UserError::Invalid(
            "user names are 1-64 letters, digits and . _ - @".into(),
        ));
    }
    if let Some((_, suffix)) = username.rsplit_once('@')
        && platform_control::auth::check_name("tenant", suffix).is_ok()
    {
        return Err(UserError::Invalid(format!(
            "a user name may not end in @{suffix}: sign-in would read it as tenant {suffix:?} (sign in as {username}@TENANT instead)"
        )));
    }
    if password.chars().count() < 10 {
        return Err(UserError::Invalid(
            "use a password of at least 10 characters".into(),
        ));
    }
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| UserError::Invalid(e.to_string()))?
        .to_string();
    let res = sqlx::query("INSERT INTO users (id, tenant, username, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(new_id())
        .bind(tenant)
        .bind(username)
        .bind(hash)
        .bind(now_ms())
        .execute(state.ctl.store.pool())
        .await;
    match res {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(UserError::Taken(username.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Splits a sign-in name into user name and tenant: `alice@acme` is (`alice`, `acme`) when
/// `acme` is a valid tenant name; anything else is a user of tenant `default`.
pub fn split_login(login: &str) -> (&str, &str) {
    let login = login.trim();
    match login.rsplit_once('@') {
        Some((user, tenant))
            if !user.is_empty() && platform_control::auth::check_name("tenant", tenant).is_ok() =>
        {
            (user, tenant)
        }
        _ => (login, "default"),
    }
}

/// The sign-in name of `username` in `tenant` (see [`split_login`]).
pub fn login_name(username: &str, tenant: &str) -> String {
    if tenant == "default" {
        username.to_string()
    } else {
        format!("{username}@{tenant}")
    }
}

/// The tenant of the user `login` names (`user` or `user@tenant`) when `password` is
/// right. The hash is checked even for unknown names, so timing does not tell which names
/// exist.
pub async fn verify(
    state: &WebState,
    login: &str,
    password: &str,
) -> Result<Option<String>, sqlx::Error> {
    let (username, tenant) = split_login(login);
    let row =
        sqlx::query("SELECT tenant, password_hash FROM users WHERE tenant = $1 AND username = $2")
            .bind(tenant)
            .bind(username)
            .fetch_optional(state.ctl.store.pool())
            .await?;
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$W4AKc2oEHb2PH3eoKsG0EaV7BRvzlPL1aMbj6/d6Nn4";
    let (tenant, stored) = match &row {
        Some(r) => (
            Some(r.try_get::<String, _>("tenant")?),
            r.try_get::<String, _>("password_hash")?,
        ),
        None => (None, DUMMY.to_string()),
    };
    let ok = PasswordHash::new(&stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false);
    Ok(if ok { tenant } else { None })
}

/// User names of a tenant.
pub async fn list(state: &WebState, tenant: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query("SELECT username FROM users WHERE tenant = $1 ORDER BY username")
        .bind(tenant)
        .fetch_all(state.ctl.store.pool())
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}
