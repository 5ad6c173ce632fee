//! Face embeddings of people.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;
use visage_shared::Embedding;

use crate::domain::FaceSource;

/// A stored face with its embedding (export).
#[derive(Debug, Serialize, ToSchema)]
pub struct FaceExport {
    pub id: Uuid,
    pub model_id: String,
    #[schema(value_type = Vec<f32>)]
    #[serde(serialize_with = "ser_vector")]
    pub embedding: pgvector::Vector,
    #[schema(value_type = Object)]
    pub quality: Option<serde_json::Value>,
    pub source: String,
    pub created_at: DateTime<Utc>,
}

fn ser_vector<S: serde::Serializer>(v: &pgvector::Vector, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.as_slice())
}

/// How many faces `person` has.
pub async fn count<'e>(ex: impl PgExecutor<'e>, person: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM faces WHERE person_id = $1"#,
        person
    )
    .fetch_one(ex)
    .await
}

/// Stores face `id` of `person`.
pub async fn insert<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
    person: Uuid,
    embedding: Embedding,
    quality: Option<serde_json::Value>,
    source: FaceSource,
) -> Result<(), sqlx::Error> {
    let model = embedding.model().to_string();
    // pgvector's type is not one the macros know: `as _` leaves its check to the server.
    let vector = pgvector::Vector::from(embedding.into_vector());
    sqlx::query!(
        "INSERT INTO faces (id, person_id, model_id, embedding, quality, source, collection_id) SELECT $1, $2, $3, $4, $5, $6, p.collection_id FROM people p WHERE p.id = $2",
        id,
        person,
        model,
        vector as _,
        quality,
        source.as_str()
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// Deletes face `id` if it is one of `person`'s; whether it was.
pub async fn delete<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
    person: Uuid,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query!(
        "DELETE FROM faces WHERE id = $1 AND person_id = $2",
        id,
        person
    )
    .execute(ex)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Every face of `person` with its embedding, oldest first.
pub async fn of_person<'e>(
    ex: impl PgExecutor<'e>,
    person: Uuid,
) -> Result<Vec<FaceExport>, sqlx::Error> {
    sqlx::query_as!(
        FaceExport,
        r#"SELECT id, model_id, embedding AS "embedding: pgvector::Vector", quality, source, created_at FROM faces WHERE person_id = $1 ORDER BY created_at, id"#,
        person
    )
    .fetch_all(ex)
    .await
}

/// The best cosine similarity of `emb` to `person`'s faces of the same model; `None` without
/// such a face.
pub async fn best_similarity<'e>(
    ex: impl PgExecutor<'e>,
    person: Uuid,
    emb: &Embedding,
) -> Result<Option<f64>, sqlx::Error> {
    let vector = pgvector::Vector::from(emb.vector().to_vec());
    sqlx::query_scalar!(
        "SELECT max(1 - (embedding <=> $1)) FROM faces WHERE person_id = $2 AND model_id = $3",
        vector as _,
        person,
        emb.model()
    )
    .fetch_one(ex)
    .await
}
