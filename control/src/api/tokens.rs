//! `TokenService`: create (secret shown once), list, revoke.

use std::sync::Arc;

use platform_proto::v1::{
    CreateTokenRequest, CreateTokenResponse, ListTokensRequest, ListTokensResponse,
    RevokeTokenRequest, RevokeTokenResponse, Token, TokenRole,
};
use sqlx::Row;

use crate::Control;
use crate::auth::{self, Caller, Role, check_name};
use crate::error::ApiError;
use crate::store::{now_ms, timestamp};

/// Creates a token for the caller's tenant, or (admins) for another, new or existing.
pub async fn create_token(
    ctl: Arc<Control>,
    caller: Caller,
    req: CreateTokenRequest,
) -> Result<CreateTokenResponse, ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid(
            "name",
            "give the token a name (1-100 characters) to recognise it later",
        ));
    }
    let tenant = if req.tenant.is_empty() {
        caller.tenant.clone()
    } else {
        req.tenant.clone()
    };
    if tenant != caller.tenant {
        caller.require_admin("creating tokens for another tenant")?;
        check_name("tenant", &tenant).map_err(|m| ApiError::invalid("tenant", m))?;
    }
    let role = match TokenRole::try_from(req.role).unwrap_or(TokenRole::Unspecified) {
        TokenRole::Unspecified if req.admin => Role::Admin,
        TokenRole::Unspecified | TokenRole::Member => Role::Member,
        TokenRole::Admin => Role::Admin,
        TokenRole::Runtime => Role::Runtime,
    };
    if req.admin && role != Role::Admin {
        return Err(ApiError::invalid(
            "role",
            "`admin` contradicts the role asked for: give one of them",
        ));
    }
    match role {
        Role::Admin => caller.require_admin("creating admin tokens")?,
        Role::Runtime => caller.require_admin("creating runtime tokens")?,
        Role::Member => {}
    }
    let mut tx = ctl.store.begin().await?;
    auth::ensure_tenant(&mut tx, &tenant).await?;
    let t = auth::create_token(&mut tx, &tenant, name, role, None).await?;
    tx.commit().await?;
    Ok(CreateTokenResponse {
        token: Some(Token {
            id: t.id,
            name: name.to_string(),
            tenant,
            prefix: t.prefix,
            admin: role == Role::Admin,
            create_time: Some(timestamp(now_ms())),
            revoke_time: None,
            last_use_time: None,
            role: role.to_proto() as i32,
        }),
        secret: t.secret,
    })
}

/// The caller's tenant's tokens (never their secrets).
pub async fn list_tokens(
    ctl: Arc<Control>,
    caller: Caller,
    _req: ListTokensRequest,
) -> Result<ListTokensResponse, ApiError> {
    let rows = sqlx::query("SELECT * FROM tokens WHERE tenant = $1 ORDER BY created_at")
        .bind(&caller.tenant)
        .fetch_all(ctl.store.pool())
        .await?;
    let tokens = rows
        .iter()
        .map(|r| {
            let role = Role::parse(&r.try_get::<String, _>("role")?);
            Ok(Token {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                tenant: r.try_get("tenant")?,
                prefix: r.try_get("prefix")?,
                admin: role == Role::Admin,
                role: role.to_proto() as i32,
                create_time: Some(timestamp(r.try_get("created_at")?)),
                revoke_time: r.try_get::<Option<i64>, _>("revoked_at")?.map(timestamp),
                last_use_time: r.try_get::<Option<i64>, _>("last_used_at")?.map(timestamp),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(ListTokensResponse { tokens })
}

/// Revokes one of the caller's tenant's tokens; it stops working at once.
pub async fn revoke_token(
    ctl: Arc<Control>,
    caller: Caller,
    req: RevokeTokenRequest,
) -> Result<RevokeTokenResponse, ApiError> {
    let res = sqlx::query(
        "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND tenant = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(&req.id)
    .bind(&caller.tenant)
    .execute(ctl.store.pool())
    .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("no active token {:?}", req.id)));
    }
    Ok(RevokeTokenResponse {})
}
