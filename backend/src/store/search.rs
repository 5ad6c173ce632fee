//! Nearest faces of one collection, among people with an active consent: exactly for a small
//! collection, through the collection's own HNSW graph for a large one (`store::hnsw`).
//!
//! Measured with `backend/examples/bench_collections.rs` (BENCHMARKS.md, "Collections"): a small
//! collection is found exactly, and faster, by reading its own faces through the btree
//! `faces_collection_idx` than by walking a graph; a large one is searched through a partial
//! HNSW index of its faces alone, as an unfiltered graph (no share of the candidate list lost
//! to other collections).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;
use visage_shared::Embedding;

use super::hnsw;

/// How recognition searches (the service's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// HNSW `ef_search` (10..1000).
    pub ef_search: u32,
    /// Collections of at most this many faces are searched exactly.
    pub exact_max_faces: i64,
}

/// How long a collection's measured size (graph or not) is reused.
const SIZE_TTL: Duration = Duration::from_secs(30);

/// One face near the probe.
#[derive(Debug, Clone)]
pub struct Hit {
    pub face_id: Uuid,
    pub person_id: Uuid,
    pub display_name: String,
    /// Cosine distance, 0..2.
    pub distance: f64,
}

/// Whether `collection` is searched through its graph: it holds more than `exact_max_faces`
/// faces (counted up to just past the bound: the btree makes it an index-only scan of at most
/// that many entries) and its graph is valid. Measured at most every [`SIZE_TTL`] per process:
/// a collection that crosses the bound, or whose graph is built, meanwhile is still searched
/// correctly, only by the other path.
async fn has_usable_graph(
    conn: &mut sqlx::PgConnection,
    collection: Uuid,
    exact_max_faces: i64,
) -> Result<bool, sqlx::Error> {
    /// Per (collection, bound): whether it had a usable graph, and when that was measured.
    type Seen = HashMap<(Uuid, i64), (bool, Instant)>;
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    let cache = SEEN.get_or_init(Default::default);
    let key = (collection, exact_max_faces);
    if let Some((graph, at)) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
        && at.elapsed() < SIZE_TTL
    {
        return Ok(*graph);
    }
    let faces: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM (SELECT 1 FROM faces WHERE collection_id = $1 LIMIT $2) s"#,
        collection,
        exact_max_faces + 1
    )
    .fetch_one(&mut *conn)
    .await?;
    let graph = faces > exact_max_faces && hnsw::has_graph(conn, collection).await?;
    if faces > exact_max_faces && !graph {
        // Once per measurement, not per search.
        tracing::warn!(%collection, "a large collection without its HNSW graph yet: searched exactly until it is built");
    }
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, (graph, Instant::now()));
    Ok(graph)
}

/// The `limit` faces of `collection` nearest to `emb` (same model, people with an active
/// consent), nearest first. A collection of at most `settings.exact_max_faces` faces is searched
/// exactly, and so is a larger one whose graph is not built yet (with a warning); otherwise its
/// HNSW graph with relaxed iterative scans. With `exact`, always an exhaustive scan (the
/// benchmark's reference).
pub async fn nearest(
    pool: &PgPool,
    collection: Uuid,
    emb: &Embedding,
    settings: Settings,
    limit: i64,
    exact: bool,
) -> Result<Vec<Hit>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let graph = !exact && has_usable_graph(&mut tx, collection, settings.exact_max_faces).await?;
    // The session settings, sent in one round trip (a hot path): not queries the macros can
    // check, and `ef_search` is formatted in (an integer, not user text).
    let settings_sql = if graph {
        format!(
            // The partial index applies only where the planner sees the collection's id: a
            // custom plan for every execution, never the prepared statement's generic one. The
            // graph orders the rows: not a scan of the collection's btree and a sort.
            "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL enable_bitmapscan = off; \
             SET LOCAL enable_seqscan = off; SET LOCAL hnsw.iterative_scan = relaxed_order; \
             SET LOCAL hnsw.ef_search = {}",
            settings.ef_search.clamp(10, 1000)
        )
    } else {
        // The planner reads the collection through a bitmap scan of its btree (or the table)
        // and compares every face.
        "SET LOCAL enable_indexscan = off".to_string()
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(settings_sql))
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
