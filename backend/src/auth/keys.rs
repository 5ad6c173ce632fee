//! Key lifecycle: creating (and bootstrapping) keys, the bootstrap key's strength check,
//! listing, revoking and rotating keys, each change audited.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::KeyInfo;
use super::secret::{generate_key, hash_key};
use crate::domain::{AuditAction, AuditOutcome, DEFAULT_COLLECTION_ID, Scope, Scopes};
use crate::store;

/// Stores a new key and returns it (the only time it is visible) with its id.
pub async fn create_key(
    pool: &PgPool,
    name: &str,
    scopes: &Scopes,
    rate_per_minute: Option<u32>,
    collections: Option<&[Uuid]>,
) -> Result<(String, Uuid), sqlx::Error> {
    create_key_with(
        pool,
        &NewKey {
            name,
            scopes,
            rate_per_minute,
            expires_at: None,
            collections,
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
    /// The collections the key may use. `None`: every collection for an admin key, the
    /// default collection for any other (a key that is not admin never holds every collection).
    pub collections: Option<&'a [Uuid]>,
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
        collections: match new.collections {
            None if !new.scopes.allows(Scope::Admin) => Some(&[DEFAULT_COLLECTION_ID][..]),
            c => c,
        },
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
    collections: Option<&'a [Uuid]>,
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
        collections: row.collections,
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
            collections: None,
        };
        insert_key(pool, key, &new, "bootstrap").await?;
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
        collections: old.collections.as_deref(),
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
}
