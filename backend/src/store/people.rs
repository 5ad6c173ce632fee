//! People: their rows, the consent condition as it applies to them, erasure.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

pub use visage_shared::api::PersonSummary;

/// A person's row with their face count.
#[derive(Debug)]
pub struct PersonRow {
    pub id: Uuid,
    pub display_name: String,
    pub external_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub face_count: i64,
}

/// A new person's row.
#[derive(Debug, Clone, Copy)]
pub struct NewPerson<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub external_ref: Option<&'a str>,
    pub created_by_key: Uuid,
    /// The sha256 (hex) of the withdrawal token.
    pub withdrawal_token_sha256: &'a str,
    /// The collection the person belongs to, for good.
    pub collection_id: Uuid,
}

/// Stores a person.
pub async fn insert<'e>(ex: impl PgExecutor<'e>, p: &NewPerson<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO people (id, display_name, external_ref, created_by_key, withdrawal_token_sha256, collection_id) VALUES ($1, $2, $3, $4, $5, $6)",
        p.id,
        p.name,
        p.external_ref,
        p.created_by_key,
        p.withdrawal_token_sha256,
        p.collection_id
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// Whether person `id` exists in one of `collections` (in any collection when `None`). Every
/// route that takes a person id asks this first: a person of another collection does not
/// exist for the caller.
pub async fn visible<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
    collections: Option<&[Uuid]>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM people WHERE id = $1 AND ($2::uuid[] IS NULL OR collection_id = ANY($2))) AS "visible!""#,
        id,
        collections as _
    )
    .fetch_one(ex)
    .await
}

/// Person `id` with their face count.
pub async fn find<'e>(ex: impl PgExecutor<'e>, id: Uuid) -> Result<Option<PersonRow>, sqlx::Error> {
    sqlx::query_as!(
        PersonRow,
        r#"SELECT p.id, p.display_name, p.external_ref, p.created_at, (SELECT count(*) FROM faces f WHERE f.person_id = p.id) AS "face_count!" FROM people p WHERE p.id = $1"#,
        id
    )
    .fetch_optional(ex)
    .await
}

/// A page of people of `collections` (every collection when `None`), oldest first: names
/// matching the `ILIKE` pattern (all without one), after the (created_at, id) cursor, at most
/// `limit`.
pub async fn list<'e>(
    ex: impl PgExecutor<'e>,
    collections: Option<&[Uuid]>,
    pattern: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<PersonSummary>, sqlx::Error> {
    sqlx::query_as!(
        PersonSummary,
        r#"SELECT p.id, p.display_name AS name, p.created_at, EXISTS (SELECT 1 FROM active_consents ac WHERE ac.person_id = p.id) AS "consent_active!",
                (SELECT count(*) FROM faces f WHERE f.person_id = p.id) AS "face_count!"
         FROM people p
         WHERE ($1::text IS NULL OR p.display_name ILIKE $1)
           AND ($2::timestamptz IS NULL OR (p.created_at, p.id) > ($2, $3))
           AND ($5::uuid[] IS NULL OR p.collection_id = ANY($5))
         ORDER BY p.created_at, p.id LIMIT $4"#,
        pattern,
        after.map(|c| c.0),
        after.map(|c| c.1).unwrap_or_default(),
        limit,
        collections as _
    )
    .fetch_all(ex)
    .await
}

/// The key that created person `id` (`Some(None)`: created before keys were recorded);
/// `None` if there is no such person.
pub async fn creator<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<Option<Uuid>>, sqlx::Error> {
    sqlx::query_scalar!("SELECT created_by_key FROM people WHERE id = $1", id)
        .fetch_optional(ex)
        .await
}

/// Whether person `id` has an active consent; `None` if there is no such person.
pub async fn consent_active<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM active_consents ac WHERE ac.person_id = p.id) AS "active!" FROM people p WHERE p.id = $1"#,
        id
    )
    .fetch_optional(ex)
    .await
}

/// Locks person `id`'s row for the rest of the transaction: its creator and whether its
/// consent is active; `None` if there is no such person.
pub async fn lock_for_change(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<(Option<Uuid>, bool)>, sqlx::Error> {
    Ok(sqlx::query!(
        r#"SELECT p.created_by_key, EXISTS (SELECT 1 FROM active_consents ac WHERE ac.person_id = p.id) AS "active!" FROM people p WHERE p.id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .map(|r| (r.created_by_key, r.active)))
}

/// The stored digest of person `id`'s withdrawal token (`Some(None)`: none was issued);
/// `None` if there is no such person.
pub async fn withdrawal_token_sha256<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<Option<String>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT withdrawal_token_sha256 FROM people WHERE id = $1",
        id
    )
    .fetch_optional(ex)
    .await
}

/// Up to 1000 people without an active consent (the purge's next batch).
pub async fn without_active_consent<'e>(ex: impl PgExecutor<'e>) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT p.id FROM people p WHERE NOT EXISTS (SELECT 1 FROM active_consents ac WHERE ac.person_id = p.id) LIMIT 1000"
    )
    .fetch_all(ex)
    .await
}

/// What deleting a person removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub faces: u64,
    pub consents: u64,
}

/// Deletes person `id` with their faces and consents, in the caller's transaction (the row is
/// locked first); `None` if there is no such person.
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<Option<Deleted>, sqlx::Error> {
    let found = sqlx::query_scalar!("SELECT id FROM people WHERE id = $1 FOR UPDATE", id)
        .fetch_optional(&mut *conn)
        .await?;
    if found.is_none() {
        return Ok(None);
    }
    let faces = sqlx::query!("DELETE FROM faces WHERE person_id = $1", id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let consents = sqlx::query!("DELETE FROM consents WHERE person_id = $1", id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query!("DELETE FROM people WHERE id = $1", id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(Deleted { faces, consents }))
}
