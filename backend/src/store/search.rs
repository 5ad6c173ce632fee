//! Nearest faces through the HNSW index, among people with an active consent.

use sqlx::PgPool;
use uuid::Uuid;
use visage_shared::Embedding;

/// One face near the probe.
#[derive(Debug, Clone)]
pub struct Hit {
    pub face_id: Uuid,
    pub person_id: Uuid,
    pub display_name: String,
    /// Cosine distance, 0..2.
    pub distance: f64,
}

/// The `limit` faces of `collection` nearest to `emb` (same model, people with an active
/// consent), nearest first, through the HNSW index searched with `ef_search` (10..1000),
/// relaxed iterative scans on (the index holds every collection: the scan goes on until enough
/// faces of this one are found); with `exact`, an exhaustive scan without the index (the
/// benchmark's reference).
pub async fn nearest(
    pool: &PgPool,
    collection: Uuid,
    emb: &Embedding,
    ef_search: u32,
    limit: i64,
    exact: bool,
) -> Result<Vec<Hit>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The session settings are not queries the macros can check (the value of `ef_search`
    // is formatted in): plain `sqlx::query`.
    if exact {
        sqlx::query("SET LOCAL enable_indexscan = off")
            .execute(&mut *tx)
            .await?;
    }
    // Integers formatted in, not user text.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL hnsw.ef_search = {}",
        ef_search.clamp(10, 1000)
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query("SET LOCAL hnsw.iterative_scan = relaxed_order")
        .execute(&mut *tx)
        .await?;
    let vector = pgvector::Vector::from(emb.vector().to_vec());
    let rows = sqlx::query_as!(
        Hit,
        r#"SELECT f.id AS face_id, f.person_id, p.display_name, (f.embedding <=> $1) AS "distance!"
         FROM faces f JOIN people p ON p.id = f.person_id
         WHERE f.collection_id = $4 AND f.model_id = $2 AND EXISTS (SELECT 1 FROM active_consents ac WHERE ac.person_id = f.person_id)
         ORDER BY f.embedding <=> $1 LIMIT $3"#,
        vector as _,
        emb.model(),
        limit,
        collection
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}
