//! Types and steps shared by several resources: erasure, embeddings as sent, matching.

use sqlx::PgPool;
use uuid::Uuid;
use visage_shared::Embedding;

use visage_shared::model::ProbeClass;

use crate::auth::Caller;
use crate::domain::{AuditAction, AuditOutcome, OperatingPoint, ParsedEmbeddings, Thresholds};
use crate::error::ApiError;
use crate::oracle::Disclosure;
use crate::state::AppState;
use crate::store;

pub use visage_shared::api::{Candidate, EmbeddingInput, Erasure};

/// Succeeds if person `id` is one the caller may see: in the collection the request names,
/// else in one of its key's collections. A person of another collection is the same 404 as
/// none at all, so ids cannot be probed across collections.
pub async fn visible_person(state: &AppState, caller: &Caller, id: Uuid) -> Result<(), ApiError> {
    let scope = caller.visible_collections(state).await?;
    if store::people::visible(&state.pool, id, scope.as_deref()).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound("person"))
    }
}

/// Validates embeddings as sent: 1 to `max` of them, each of the model this server runs.
pub fn parse_embeddings(list: Vec<EmbeddingInput>, max: usize) -> Result<Vec<Embedding>, ApiError> {
    Ok(
        ParsedEmbeddings::parse(list.into_iter().map(|e| (e.model, e.vector)).collect(), max)?
            .into_inner(),
    )
}

/// Erases a person in one transaction: faces, consents and the person row; one audit entry
/// (without personal data) stays. `None` if there is no such person.
pub async fn erase_person(
    pool: &PgPool,
    id: Uuid,
    actor: &str,
    action: AuditAction,
) -> Result<Option<Erasure>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(deleted) = store::people::delete(&mut tx, id).await? else {
        return Ok(None);
    };
    let e = Erasure {
        person_id: id,
        faces_deleted: deleted.faces,
        consents_deleted: deleted.consents,
    };
    store::audit::record(
        &mut *tx,
        actor,
        action,
        Some(&id.to_string()),
        AuditOutcome::Ok,
        Some(serde_json::json!({ "faces_deleted": deleted.faces, "consents_deleted": deleted.consents })),
    )
    .await?;
    tx.commit().await?;
    crate::scrub::after_erasure(pool);
    Ok(Some(e))
}

/// Matching parameters.
#[derive(Debug, Clone, Copy)]
pub struct MatchParams {
    /// The collection searched.
    pub collection: Uuid,
    pub top_k: usize,
    pub thresholds: Thresholds,
    pub search: store::search::Settings,
    /// What the caller may see of the result.
    pub disclosure: Disclosure,
}

impl MatchParams {
    /// From request values (default: the default operating point and 5 candidates), within
    /// what the caller's disclosure allows.
    pub fn new(
        collection: Uuid,
        disclosure: Disclosure,
        top_k: Option<u32>,
        operating_point: Option<OperatingPoint>,
        search: store::search::Settings,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            collection,
            top_k: disclosure.top_k(top_k)?,
            thresholds: disclosure.thresholds(operating_point)?,
            search,
            disclosure,
        })
    }
}

/// Top-k people for one embedding, best first, through the HNSW index, decided at the
/// threshold of the probe's class. Only people with an active consent are searched, so an
/// expired or withdrawn consent stops matching at once.
pub async fn search(
    pool: &PgPool,
    emb: &Embedding,
    class: ProbeClass,
    p: MatchParams,
) -> Result<Vec<Candidate>, sqlx::Error> {
    search_with(pool, emb, class, p, false).await
}

/// [`search`], or with `exact` an exhaustive scan without the index (the benchmark's reference).
pub async fn search_with(
    pool: &PgPool,
    emb: &Embedding,
    class: ProbeClass,
    p: MatchParams,
    exact: bool,
) -> Result<Vec<Candidate>, sqlx::Error> {
    let threshold = p.thresholds.of(class);
    // Several faces per person: fetch more rows than people wanted, keep each person's best.
    let limit = (p.top_k * 4 + 10).min(1000) as i64;
    let rows = store::search::nearest(pool, p.collection, emb, p.search, limit, exact).await?;
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
        c.is_match = c.similarity >= threshold;
    }
    if !p.disclosure.shows_non_matches() {
        out.retain(|c| c.is_match);
    }
    for c in &mut out {
        c.similarity = p
            .disclosure
            .similarity(c.similarity, c.is_match)
            .unwrap_or(c.similarity);
        c.false_match_rate = visage_shared::model::false_match_rate_of(class, c.similarity);
    }
    Ok(out)
}
