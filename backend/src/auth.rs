//! API keys (`Authorization: Bearer vsg_...`), stored as sha256 digests, with scopes and
//! per-key rate limits.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{AuditAction, AuditOutcome, Scope, Scopes};
use crate::error::ApiError;
use crate::once_per::OncePer;
use crate::state::AppState;
use crate::store;
pub use crate::store::keys::KeyInfo;

/// Prefix of every key, so leaked keys are easy to find in logs and code.
pub const KEY_PREFIX: &str = "vsg_";

/// The sha256 of a key, hex: what the database stores.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key: `vsg_` and 43 base64url characters (256 bits).
pub fn generate_key() -> String {
    generate_secret(KEY_PREFIX)
}

/// A new random secret: `prefix` and 43 base64url characters (256 bits).
pub fn generate_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Compares two digests in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Stores a new key and returns it (the only time it is visible) with its id.
pub async fn create_key(
    pool: &PgPool,
    name: &str,
    scopes: &Scopes,
    rate_per_minute: Option<u32>,
) -> Result<(String, Uuid), sqlx::Error> {
    create_key_with(
        pool,
        &NewKey {
            name,
            scopes,
            rate_per_minute,
            expires_at: None,
        },
        "cli",
    )
    .await
}

/// What a new key is.
#[derive(Debug, Clone, Copy)]
pub struct NewKey<'a> {
    pub name: &'a str,
    pub scopes: &'a Scopes,
    pub rate_per_minute: Option<u32>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Stores a new key for `actor` (audited) and returns it with its id.
pub async fn create_key_with(
    pool: &PgPool,
    new: &NewKey<'_>,
    actor: &str,
) -> Result<(String, Uuid), sqlx::Error> {
    let key = generate_key();
    let id = insert_key(pool, &key, new, actor).await?;
    Ok((key, id))
}

async fn insert_key(
    pool: &PgPool,
    key: &str,
    new: &NewKey<'_>,
    actor: &str,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::new_v4();
    let mut tx = pool.begin().await?;
    let row = StoredKey {
        name: new.name,
        scopes: &new.scopes.names(),
        rate_per_minute: new.rate_per_minute.map(|r| r.min(i32::MAX as u32) as i32),
        expires_at: new.expires_at,
    };
    insert_key_row(&mut tx, id, key, &row).await?;
    store::audit::record(
        &mut *tx,
        actor,
        AuditAction::CreateKey,
        Some(&id.to_string()),
        AuditOutcome::Ok,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// A key's stored attributes, as its row holds them.
struct StoredKey<'a> {
    name: &'a str,
    scopes: &'a [String],
    rate_per_minute: Option<i32>,
    expires_at: Option<DateTime<Utc>>,
}

/// Inserts the row of key `id` with secret `key` (stored as its digest and a display prefix).
async fn insert_key_row(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    key: &str,
    row: &StoredKey<'_>,
) -> Result<(), sqlx::Error> {
    let prefix: String = key.chars().take(12).collect();
    let key_sha256 = hash_key(key);
    let row = store::keys::KeyRow {
        id,
        name: row.name,
        prefix: &prefix,
        key_sha256: &key_sha256,
        scopes: row.scopes,
        rate_per_minute: row.rate_per_minute,
        expires_at: row.expires_at,
    };
    store::keys::insert(conn, &row).await
}

/// Why a bootstrap key is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the bootstrap key is too weak: it needs at least {MIN_BOOTSTRAP_KEY_LEN} characters with at least {MIN_BOOTSTRAP_KEY_DISTINCT} different ones (generate one with `visage create-key`, or leave it unset to get a random admin key)"
)]
pub struct WeakKey;

/// Shortest bootstrap key accepted (a generated key has 47 characters, 256 bits).
pub const MIN_BOOTSTRAP_KEY_LEN: usize = 32;
/// Fewest distinct characters in a bootstrap key (refuses `aaaa...` and `1234...` runs).
pub const MIN_BOOTSTRAP_KEY_DISTINCT: usize = 12;

/// Checks that a key chosen by an operator is strong enough to be an admin key: at least
/// 32 characters drawn from at least 12 different ones (about 115 bits even if each character
/// were only one of 12).
pub fn check_key_strength(key: &str) -> Result<(), WeakKey> {
    let distinct: std::collections::HashSet<char> = key.chars().collect();
    if key.chars().count() < MIN_BOOTSTRAP_KEY_LEN || distinct.len() < MIN_BOOTSTRAP_KEY_DISTINCT {
        return Err(WeakKey);
    }
    Ok(())
}

/// Makes sure `key` exists with every scope (the bootstrap key of `visage serve`).
pub async fn ensure_key(pool: &PgPool, key: &str, name: &str) -> Result<(), sqlx::Error> {
    if !store::keys::exists(pool, &hash_key(key)).await? {
        let new = NewKey {
            name,
            scopes: &Scopes::all(),
            rate_per_minute: None,
            expires_at: None,
        };
        insert_key(pool, key, &new, "bootstrap").await?;
    }
    Ok(())
}

/// Per-key token buckets.
pub struct RateLimits {
    default_per_minute: NonZeroU32,
    buckets: Mutex<HashMap<Uuid, Arc<DefaultDirectRateLimiter>>>,
    last_used: OncePer<Uuid>,
}

impl RateLimits {
    /// Buckets refilling `default_per_minute` per minute unless a key says otherwise.
    pub fn new(default_per_minute: u32) -> Self {
        Self {
            default_per_minute: NonZeroU32::new(default_per_minute).unwrap_or(NonZeroU32::MIN),
            buckets: Mutex::new(HashMap::new()),
            last_used: OncePer::new(Duration::from_secs(60)),
        }
    }

    /// Whether `key`'s `last_used_at` should be written now (at most once a minute).
    pub fn due_for_last_used(&self, key: Uuid) -> bool {
        self.last_used.due(key)
    }

    /// Forgets `key`'s bucket (and when it was last used): a revoked or rotated key is never
    /// seen again, and its entry would otherwise stay for the life of the process.
    pub fn forget(&self, key: Uuid) {
        if let Ok(mut b) = self.buckets.lock() {
            b.remove(&key);
        }
        self.last_used.forget(&key);
    }

    /// How many keys have a bucket.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, key: Uuid, per_minute: Option<u32>) -> Result<(), ApiError> {
        let limiter = {
            let mut b = self
                .buckets
                .lock()
                .map_err(|_| ApiError::internal("rate limiter poisoned"))?;
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

/// Failed authentications per client address: after `max_per_minute` wrong keys or withdrawal
/// tokens in a minute, every authentication from that address is refused with 429 until the
/// minute is over, so credentials cannot be guessed at network speed. A request without any
/// credential guesses nothing and is not counted.
pub struct FailedAuth {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    max_per_minute: u32,
}

impl FailedAuth {
    /// The default number of failures allowed per address and minute.
    pub const MAX_PER_MINUTE: u32 = 30;
    const WINDOW: Duration = Duration::from_secs(60);

    /// An empty table allowing `max_per_minute` failures per address and minute.
    pub fn new(max_per_minute: u32) -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
            max_per_minute: max_per_minute.max(1),
        }
    }

    /// Refuses with 429 while `ip` is over its failure budget.
    pub fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        let Ok(w) = self.windows.lock() else {
            return Ok(());
        };
        match w.get(&ip) {
            Some((start, n)) if *n >= self.max_per_minute && start.elapsed() < Self::WINDOW => {
                Err(ApiError::RateLimited {
                    retry_after_secs: (Self::WINDOW - start.elapsed()).as_secs() + 1,
                })
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure of `ip`.
    pub fn record(&self, ip: IpAddr) {
        let Ok(mut w) = self.windows.lock() else {
            return;
        };
        let now = Instant::now();
        if w.len() > 100_000 {
            w.retain(|_, (start, _)| now.duration_since(*start) < Self::WINDOW);
        }
        let e = w.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= Self::WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
        if e.1 == self.max_per_minute {
            tracing::warn!(%ip, "failed authentications throttled for this address");
            metrics::counter!("visage_auth_throttled_total").increment(1);
        }
    }
}

impl Default for FailedAuth {
    fn default() -> Self {
        Self::new(Self::MAX_PER_MINUTE)
    }
}

/// The client address of a request (the TCP peer; loopback when unknown, e.g. in-process).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
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

    /// Whether the key has the admin scope.
    pub fn is_admin(&self) -> bool {
        self.scopes.allows(Scope::Admin)
    }

    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        format!("key:{}", self.key_id)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = client_ip(parts);
        state.failed_auth.check(ip)?;
        match authenticate(parts, state).await {
            Err(e @ ApiError::Unauthorized(_)) if parts.headers.contains_key(AUTHORIZATION) => {
                state.failed_auth.record(ip);
                Err(e)
            }
            other => other,
        }
    }
}

/// Optional authentication: `None` without an `Authorization` header (routes that also accept
/// another credential, such as a withdrawal token); a bad key is still an error.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(AUTHORIZATION) {
            Caller::from_request_parts(parts, state)
                .await
                .map(|c| MaybeCaller(Some(c)))
        } else {
            Ok(MaybeCaller(None))
        }
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
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
    let row = store::keys::find_active(&state.pool, &hash_key(key)).await?;
    let row =
        row.ok_or_else(|| ApiError::Unauthorized("unknown, revoked or expired API key".into()))?;
    let scopes = Scopes::parse(&row.scopes)
        .map_err(|e| ApiError::internal(format!("stored key scopes: {e}")))?;
    state
        .rate_limits
        .check(row.id, row.rate_per_minute.map(|r| r.max(1) as u32))?;
    if state.rate_limits.due_for_last_used(row.id) {
        // At most once a minute per key and process: not a write per request.
        let _ = store::keys::touch(&state.pool, row.id).await;
    }
    Ok(Caller {
        key_id: row.id,
        scopes,
    })
}

/// Checks a data subject's withdrawal token for person `id` (its digest is stored at
/// creation), counting a wrong one as a failed authentication of `ip`. An unknown person and a
/// wrong token get the same 401: a token guesser learns nothing about which ids exist.
pub async fn check_withdrawal_token(
    state: &AppState,
    ip: IpAddr,
    id: Uuid,
    token: &str,
) -> Result<(), ApiError> {
    state.failed_auth.check(ip)?;
    let stored = store::people::withdrawal_token_sha256(&state.pool, id).await?;
    let ok = stored
        .flatten()
        .is_some_and(|sha| token.len() <= 200 && constant_time_eq(&sha, &hash_key(token)));
    if !ok {
        state.failed_auth.record(ip);
        return Err(ApiError::Unauthorized(
            "unknown person or wrong withdrawal token".into(),
        ));
    }
    Ok(())
}

/// Every key, newest first.
pub async fn list_keys(pool: &PgPool) -> Result<Vec<KeyInfo>, sqlx::Error> {
    store::keys::list(pool).await
}

/// Revokes a key (at once: every request looks its key up). `None` if there is no such key;
/// revoking a revoked key changes nothing.
pub async fn revoke_key(
    pool: &PgPool,
    id: Uuid,
    actor: &str,
) -> Result<Option<KeyInfo>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let info = store::keys::revoke(&mut *tx, id).await?;
    if info.is_some() {
        store::audit::record(
            &mut *tx,
            actor,
            AuditAction::RevokeKey,
            Some(&id.to_string()),
            AuditOutcome::Ok,
            None,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(info)
}

/// Rotates a key: a new secret with the same name, scopes, rate and expiry; the old key is
/// revoked at once and points at the new one. Returns the new key (shown once) and its id;
/// `None` if there is no such active key.
pub async fn rotate_key(
    pool: &PgPool,
    id: Uuid,
    actor: &str,
) -> Result<Option<RotatedKey>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let old = store::keys::lock_unrevoked(&mut *tx, id).await?;
    let Some(old) = old else {
        return Ok(None);
    };
    let key = generate_key();
    let new_id = Uuid::new_v4();
    let row = StoredKey {
        name: &old.name,
        scopes: &old.scopes,
        rate_per_minute: old.rate_per_minute,
        expires_at: old.expires_at,
    };
    insert_key_row(&mut tx, new_id, &key, &row).await?;
    store::keys::mark_replaced(&mut *tx, id, new_id).await?;
    store::audit::record(
        &mut *tx,
        actor,
        AuditAction::RotateKey,
        Some(&id.to_string()),
        AuditOutcome::Ok,
        Some(serde_json::json!({ "replaced_by": new_id })),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(RotatedKey {
        key,
        id: new_id,
        expires_at: old.expires_at,
    }))
}

/// The key that replaced a rotated one.
#[derive(Debug)]
pub struct RotatedKey {
    /// The new secret: shown once.
    pub key: String,
    pub id: Uuid,
    /// The old key's expiry, which the new one keeps.
    pub expires_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_bootstrap_keys_are_refused() {
        assert_eq!(check_key_strength("hunter2"), Err(WeakKey));
        assert_eq!(check_key_strength(&"a".repeat(64)), Err(WeakKey));
        assert_eq!(
            check_key_strength("0123456789012345678901234567890123"),
            Err(WeakKey)
        );
        assert!(check_key_strength(&generate_key()).is_ok());
        assert!(check_key_strength("vsg_e2e_0f3a9c1d2b4e5f60718293a4b5c6d7e8").is_ok());
    }

    #[test]
    fn a_forgotten_key_loses_its_bucket() {
        let limits = RateLimits::new(1);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(limits.check(a, None).is_ok());
        assert!(limits.check(a, None).is_err(), "one a minute");
        assert!(limits.check(b, None).is_ok());
        assert_eq!(limits.tracked(), 2);
        limits.forget(a);
        assert_eq!(limits.tracked(), 1);
        // A key seen again after being forgotten starts with a full bucket.
        assert!(limits.check(a, None).is_ok());
    }

    #[test]
    fn digests_compare_equal_only_when_equal() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
