//! API keys: rows of `api_keys` (the secret itself is never stored, only its sha256).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A stored key as listed (never its secret or digest).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub id: Uuid,
    pub name: String,
    /// The first 12 characters of the key, to recognise it.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub rate_per_minute: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Updated at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key that replaced this one when it was rotated.
    pub replaced_by: Option<Uuid>,
    /// The collections the key may use (`null`: every collection).
    pub collections: Option<Vec<Uuid>>,
}

/// A key's row as stored.
#[derive(Debug, Clone, Copy)]
pub struct KeyRow<'a> {
    pub id: Uuid,
    pub name: &'a str,
    /// The first characters of the key, for display.
    pub prefix: &'a str,
    pub key_sha256: &'a str,
    pub scopes: &'a [String],
    pub rate_per_minute: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The collections the key may use (`None`: every collection).
    pub collections: Option<&'a [Uuid]>,
}

/// What authentication needs of a usable key.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    pub id: Uuid,
    pub scopes: Vec<String>,
    pub rate_per_minute: Option<i32>,
    pub collections: Option<Vec<Uuid>>,
}

/// Stores a key row.
pub async fn insert<'e>(ex: impl PgExecutor<'e>, k: &KeyRow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO api_keys (id, name, prefix, key_sha256, scopes, rate_per_minute, expires_at, collections) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        k.id,
        k.name,
        k.prefix,
        k.key_sha256,
        k.scopes,
        k.rate_per_minute,
        k.expires_at,
        k.collections as _
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// Whether a key with this digest exists (revoked or not).
pub async fn exists<'e>(ex: impl PgExecutor<'e>, key_sha256: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_sha256 = $1) AS "exists!""#,
        key_sha256
    )
    .fetch_one(ex)
    .await
}

/// How many keys are not revoked.
pub async fn count_unrevoked<'e>(ex: impl PgExecutor<'e>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM api_keys WHERE revoked_at IS NULL"#)
        .fetch_one(ex)
        .await
}

/// The key with this digest if it is neither revoked nor expired.
pub async fn find_active<'e>(
    ex: impl PgExecutor<'e>,
    key_sha256: &str,
) -> Result<Option<ActiveKey>, sqlx::Error> {
    sqlx::query_as!(
        ActiveKey,
        "SELECT id, scopes, rate_per_minute, collections FROM api_keys
         WHERE key_sha256 = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        key_sha256
    )
    .fetch_optional(ex)
    .await
}

/// Records that key `id` was used now.
pub async fn touch<'e>(ex: impl PgExecutor<'e>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE api_keys SET last_used_at = now() WHERE id = $1", id)
        .execute(ex)
        .await?;
    Ok(())
}

/// Every key, newest first.
pub async fn list<'e>(ex: impl PgExecutor<'e>) -> Result<Vec<KeyInfo>, sqlx::Error> {
    sqlx::query_as!(
        KeyInfo,
        "SELECT id, name, prefix, scopes, rate_per_minute, created_at, expires_at, revoked_at, last_used_at, replaced_by, collections FROM api_keys ORDER BY created_at DESC, id"
    )
    .fetch_all(ex)
    .await
}

/// Revokes key `id` (a revoked key keeps its first revocation time); `None` if there is no
/// such key.
pub async fn revoke<'e>(ex: impl PgExecutor<'e>, id: Uuid) -> Result<Option<KeyInfo>, sqlx::Error> {
    sqlx::query_as!(
        KeyInfo,
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id, name, prefix, scopes, rate_per_minute, created_at, expires_at, revoked_at, last_used_at, replaced_by, collections",
        id
    )
    .fetch_optional(ex)
    .await
}

/// Key `id` if it is not revoked, its row locked for the rest of the transaction.
pub async fn lock_unrevoked<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<KeyInfo>, sqlx::Error> {
    sqlx::query_as!(
        KeyInfo,
        "SELECT id, name, prefix, scopes, rate_per_minute, created_at, expires_at, revoked_at, last_used_at, replaced_by, collections FROM api_keys WHERE id = $1 AND revoked_at IS NULL FOR UPDATE",
        id
    )
    .fetch_optional(ex)
    .await
}

/// Revokes key `id` as replaced by `new_id`.
pub async fn mark_replaced<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
    new_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE api_keys SET revoked_at = now(), replaced_by = $2 WHERE id = $1",
        id,
        new_id
    )
    .execute(ex)
    .await?;
    Ok(())
}
