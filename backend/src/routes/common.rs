//! Queries and types shared by several resources: audit entries, erasure, matching.

use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;
use visage_shared::Embedding;

use crate::domain::ParsedEmbeddings;
use crate::error::ApiError;
use crate::oracle::Disclosure;

/// SQL condition: person `person` (a column expression) has a consent in force now. What "in
/// force" means is defined once, in the `active_consents` view (its migration).
pub fn active_consent_sql(person: &str) -> String {
    format!("EXISTS (SELECT 1 FROM active_consents ac WHERE ac.person_id = {person})")
}

/// Writes an audit entry. `subject` is an opaque id, never a name; `detail` never holds
/// personal data, embeddings or images.
pub async fn audit<'e>(
    ex: impl PgExecutor<'e>,
    actor: &str,
    action: &str,
    subject: Option<&str>,
    outcome: &str,
    detail: Option<serde_json::Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_log (actor, action, subject, outcome, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(outcome)
        .bind(detail)
        .execute(ex)
        .await?;
    Ok(())
}

/// What an erasure removed.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Erasure {
    /// The erased person.
    pub person_id: Uuid,
    /// Face embeddings deleted.
    pub faces_deleted: u64,
    /// Consent records deleted.
    pub consents_deleted: u64,
}

/// Erases a person in one transaction: faces, consents and the person row; one audit entry
/// (without personal data) stays. `None` if there is no such person.
pub async fn erase_person(
    pool: &PgPool,
    id: Uuid,
    actor: &str,
    action: &str,
) -> Result<Option<Erasure>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM people WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Ok(None);
    }
    let faces = sqlx::query("DELETE FROM faces WHERE person_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let consents = sqlx::query("DELETE FROM consents WHERE person_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM people WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let e = Erasure {
        person_id: id,
        faces_deleted: faces,
        consents_deleted: consents,
    };
    audit(
        &mut *tx,
        actor,
        action,
        Some(&id.to_string()),
        "ok",
        Some(serde_json::json!({ "faces_deleted": faces, "consents_deleted": consents })),
    )
    .await?;
    tx.commit().await?;
    crate::scrub::after_erasure(pool);
    Ok(Some(e))
}

/// An embedding as clients send it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct EmbeddingInput {
    /// Model id: the embedder this server runs (`visage_shared::model::EMBEDDER_ID`; a unit
    /// test keeps this pattern equal to it).
    #[schema(pattern = r"^mobilefacenet-expo-1\.0\.24$")]
    pub model: String,
    /// The vector (192 finite values, not all zero, for the default model); normalised by the
    /// server.
    #[schema(min_items = 192, max_items = 192)]
    pub vector: Vec<f32>,
}

impl EmbeddingInput {
    /// Validates a list.
    pub fn parse_all(list: Vec<EmbeddingInput>, max: usize) -> Result<Vec<Embedding>, ApiError> {
        Ok(
            ParsedEmbeddings::parse(list.into_iter().map(|e| (e.model, e.vector)).collect(), max)?
                .into_inner(),
        )
    }
}

/// One candidate identity for a probe face.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Candidate {
    pub person_id: Uuid,
    pub name: String,
    /// The enrolled face that matched best.
    pub face_id: Uuid,
    /// Cosine similarity, -1..1 (for non-admin keys rounded down to 0.01; only matches are
    /// listed for them).
    pub similarity: f32,
    /// Whether `similarity` reaches the threshold.
    #[serde(rename = "match")]
    pub is_match: bool,
    /// Share of different-person pairs that score at least this similarity in the model's
    /// evaluation (from the manifest); `null` without a calibration table. This, not the raw
    /// similarity, says how much a match can be trusted.
    pub false_match_rate: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct HitRow {
    face_id: Uuid,
    person_id: Uuid,
    display_name: String,
    distance: f64,
}

/// Matching parameters.
#[derive(Debug, Clone, Copy)]
pub struct MatchParams {
    pub top_k: usize,
    pub threshold: f32,
    pub ef_search: u32,
    /// What the caller may see of the result.
    pub disclosure: Disclosure,
}

impl MatchParams {
    /// From request values (default: the manifest's threshold and 5 candidates), within what
    /// the caller's disclosure allows.
    pub fn new(
        disclosure: Disclosure,
        top_k: Option<u32>,
        threshold: Option<f32>,
        ef_search: u32,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            top_k: disclosure.top_k(top_k)?,
            threshold: disclosure.threshold(threshold)?,
            ef_search,
            disclosure,
        })
    }
}

/// Top-k people for one embedding, best first, through the HNSW index. Only people with an
/// active consent are searched, so an expired or withdrawn consent stops matching at once.
pub async fn search(
    pool: &PgPool,
    emb: &Embedding,
    p: MatchParams,
) -> Result<Vec<Candidate>, sqlx::Error> {
    search_with(pool, emb, p, false).await
}

/// [`search`], or with `exact` an exhaustive scan without the index (the benchmark's reference).
pub async fn search_with(
    pool: &PgPool,
    emb: &Embedding,
    p: MatchParams,
    exact: bool,
) -> Result<Vec<Candidate>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if exact {
        sqlx::query("SET LOCAL enable_indexscan = off")
            .execute(&mut *tx)
            .await?;
    }
    // Integers formatted in, not user text.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL hnsw.ef_search = {}",
        p.ef_search.clamp(10, 1000)
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query("SET LOCAL hnsw.iterative_scan = relaxed_order")
        .execute(&mut *tx)
        .await?;
    // Several faces per person: fetch more rows than people wanted, keep each person's best.
    let limit = (p.top_k * 4 + 10).min(1000) as i64;
    let sql = format!(
        "SELECT f.id AS face_id, f.person_id, p.display_name, (f.embedding <=> $1) AS distance
         FROM faces f JOIN people p ON p.id = f.person_id
         WHERE f.model_id = $2 AND {}
         ORDER BY f.embedding <=> $1 LIMIT $3",
        active_consent_sql("f.person_id")
    );
    let rows: Vec<HitRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(pgvector::Vector::from(emb.vector().to_vec()))
        .bind(emb.model())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut out: Vec<Candidate> = Vec::new();
    for r in rows {
        let similarity = (1.0 - r.distance) as f32;
        if let Some(c) = out.iter_mut().find(|c| c.person_id == r.person_id) {
            if similarity > c.similarity {
                c.similarity = similarity;
                c.face_id = r.face_id;
            }
            continue;
        }
        out.push(Candidate {
            person_id: r.person_id,
            name: r.display_name,
            face_id: r.face_id,
            similarity,
            is_match: false,
            false_match_rate: None,
        });
    }
    out.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    out.truncate(p.top_k);
    for c in &mut out {
        c.is_match = c.similarity >= p.threshold;
    }
    if !p.disclosure.shows_non_matches() {
        out.retain(|c| c.is_match);
    }
    for c in &mut out {
        c.similarity = p
            .disclosure
            .similarity(c.similarity, c.is_match)
            .unwrap_or(c.similarity);
        c.false_match_rate = visage_shared::model::false_match_rate(c.similarity);
    }
    Ok(out)
}
