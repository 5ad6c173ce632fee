//! API keys (`Authorization: Bearer vsg_...`), stored as sha256 digests, with scopes and
//! per-key rate limits.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{Scope, Scopes};
use crate::error::ApiError;
use crate::startup::AppState;

/// Prefix of every key, so leaked keys are easy to find in logs and code.
pub const KEY_PREFIX: &str = "vsg_";

/// The sha256 of a key, hex: what the database stores.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key: `vsg_` and 43 base64url characters (256 bits).
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Stores a new key and returns it (the only time it is visible) with its id.
pub async fn create_key(
    pool: &PgPool,
    name: &str,
    scopes: &Scopes,
    rate_per_minute: Option<u32>,
) -> Result<(String, Uuid), sqlx::Error> {
    let key = generate_key();
    let id = insert_key(pool, &key, name, scopes, rate_per_minute).await?;
    Ok((key, id))
}

async fn insert_key(
    pool: &PgPool,
    key: &str,
    name: &str,
    scopes: &Scopes,
    rate_per_minute: Option<u32>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::new_v4();
    let prefix: String = key.chars().take(12).collect();
    sqlx::query("INSERT INTO api_keys (id, name, prefix, key_sha256, scopes, rate_per_minute) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(id)
        .bind(name)
        .bind(prefix)
        .bind(hash_key(key))
        .bind(scopes.names())
        .bind(rate_per_minute.map(|r| r.min(i32::MAX as u32) as i32))
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO audit_log (actor, action, subject, outcome) VALUES ('cli', 'create_key', $1, 'ok')")
        .bind(id.to_string())
        .execute(pool)
        .await?;
    Ok(id)
}

/// Makes sure `key` exists with every scope (the bootstrap key of `visage serve`).
pub async fn ensure_key(pool: &PgPool, key: &str, name: &str) -> Result<(), sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_sha256 = $1)")
            .bind(hash_key(key))
            .fetch_one(pool)
            .await?;
    if !exists {
        insert_key(pool, key, name, &Scopes::all(), None).await?;
    }
    Ok(())
}

/// Per-key token buckets.
pub struct RateLimits {
    default_per_minute: NonZeroU32,
    buckets: Mutex<HashMap<Uuid, Arc<DefaultDirectRateLimiter>>>,
}

impl RateLimits {
    /// Buckets refilling `default_per_minute` per minute unless a key says otherwise.
    pub fn new(default_per_minute: u32) -> Self {
        Self {
            default_per_minute: NonZeroU32::new(default_per_minute).unwrap_or(NonZeroU32::MIN),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, key: Uuid, per_minute: Option<u32>) -> Result<(), ApiError> {
        let limiter = {
            let mut b = self
                .buckets
                .lock()
                .map_err(|_| ApiError::Internal("rate limiter poisoned".into()))?;
            b.entry(key)
                .or_insert_with(|| {
                    let rate = per_minute
                        .and_then(NonZeroU32::new)
                        .unwrap_or(self.default_per_minute);
                    Arc::new(RateLimiter::direct(Quota::per_minute(rate)))
                })
                .clone()
        };
        limiter.check().map_err(|not_until| ApiError::RateLimited {
            retry_after_secs: not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                + 1,
        })
    }
}

/// The caller of a request, authenticated by its API key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Uuid,
    pub scopes: Scopes,
}

impl Caller {
    /// Fails with 403 unless the key has `scope` (or admin).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scope.as_str()))
        }
    }

    /// Fails with 403 unless the key has one of `scopes`.
    pub fn require_any(&self, scopes: &[Scope]) -> Result<(), ApiError> {
        if scopes.iter().any(|s| self.scopes.allows(*s)) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                scopes.first().map(|s| s.as_str()).unwrap_or("admin"),
            ))
        }
    }

    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        format!("key:{}", self.key_id)
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    scopes: Vec<String>,
    rate_per_minute: Option<i32>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized("an API key is required: Authorization: Bearer <key>".into())
        })?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 200)
            .ok_or_else(|| ApiError::Unauthorized("expected Authorization: Bearer <key>".into()))?;
        let row: Option<KeyRow> = sqlx::query_as("SELECT id, scopes, rate_per_minute FROM api_keys WHERE key_sha256 = $1 AND revoked_at IS NULL")
            .bind(hash_key(key))
            .fetch_optional(&state.pool)
            .await?;
        let row = row.ok_or_else(|| ApiError::Unauthorized("unknown or revoked API key".into()))?;
        let scopes = Scopes::parse(&row.scopes)
            .map_err(|e| ApiError::Internal(format!("stored key scopes: {e}")))?;
        state
            .rate_limits
            .check(row.id, row.rate_per_minute.map(|r| r.max(1) as u32))?;
        Ok(Caller {
            key_id: row.id,
            scopes,
        })
    }
}
