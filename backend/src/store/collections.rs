//! Collections: rows of `collections`.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A collection as listed.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CollectionInfo {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// The id of the collection named `name`.
pub async fn id_of<'e>(ex: impl PgExecutor<'e>, name: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!("SELECT id FROM collections WHERE name = $1", name)
        .fetch_optional(ex)
        .await
}

/// The ids of the collections named `names` (unknown names are left out).
pub async fn ids_of<'e>(
    ex: impl PgExecutor<'e>,
    names: &[String],
) -> Result<Vec<(String, Uuid)>, sqlx::Error> {
    Ok(sqlx::query!(
        "SELECT name, id FROM collections WHERE name = ANY($1)",
        names
    )
    .fetch_all(ex)
    .await?
    .into_iter()
    .map(|r| (r.name, r.id))
    .collect())
}

/// Creates collection `name`; `false` when one of that name exists.
pub async fn create<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
    name: &str,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query!(
        "INSERT INTO collections (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        id,
        name
    )
    .execute(ex)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The collections among `only` (every one when `None`), by name.
pub async fn list<'e>(
    ex: impl PgExecutor<'e>,
    only: Option<&[Uuid]>,
) -> Result<Vec<CollectionInfo>, sqlx::Error> {
    sqlx::query_as!(
        CollectionInfo,
        "SELECT id, name, created_at FROM collections WHERE $1::uuid[] IS NULL OR id = ANY($1) ORDER BY name",
        only as _
    )
    .fetch_all(ex)
    .await
}
