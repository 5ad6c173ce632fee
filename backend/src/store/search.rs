//! Nearest faces of one collection, among people with an active consent: exactly for a small
//! collection, through the HNSW graph of every collection for a large one.
//!
//! One HNSW graph holds every collection, and PostgreSQL filters its candidates by collection
//! afterwards (pgvector's iterative scan goes on while too few pass). Measured with
//! `backend/examples/bench_collections.rs` (BENCHMARKS.md, "Collections"):
//! - a small collection among many is found faster and exactly by reading its own faces through
//!   the btree `faces_collection_idx` than by walking the shared graph;
//! - a large collection keeps only its share of each candidate list, so `ef_search` is divided
//!   by that share (capped at 1000) to keep the recall of an unfiltered search.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;
use visage_shared::Embedding;

/// Collections of at most this many faces are searched exactly (about 20 ms on 2 cores at
/// this size; a larger one goes through the HNSW graph).
pub const EXACT_SEARCH_MAX_FACES: i64 = 20_000;

/// How long a collection's measured size is reused.
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

/// A collection's size: its faces (counted up to just past [`EXACT_SEARCH_MAX_FACES`] when
/// small, in full when large) and its share of all faces.
#[derive(Debug, Clone, Copy)]
struct Size {
    faces: i64,
    share: f64,
}

/// The size of `collection`, measured at most every [`SIZE_TTL`] per process (the btree makes
/// the count an index-only scan; a collection that crosses the bound meanwhile is still
/// searched correctly, only by the other path).
async fn size(conn: &mut sqlx::PgConnection, collection: Uuid) -> Result<Size, sqlx::Error> {
    static SIZES: OnceLock<Mutex<HashMap<Uuid, (Size, Instant)>>> = OnceLock::new();
    let cache = SIZES.get_or_init(Default::default);
    if let Some((s, at)) = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&collection)
        && at.elapsed() < SIZE_TTL
    {
        return Ok(*s);
    }
    let small: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM (SELECT 1 FROM faces WHERE collection_id = $1 LIMIT $2) s"#,
        collection,
        EXACT_SEARCH_MAX_FACES + 1
    )
    .fetch_one(&mut *conn)
    .await?;
    let faces = if small > EXACT_SEARCH_MAX_FACES {
        sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM faces WHERE collection_id = $1"#,
            collection
        )
        .fetch_one(&mut *conn)
        .await?
    } else {
        small
    };
    // The table's size as the planner knows it (no full count of every collection).
    let total: f64 = sqlx::query_scalar!(
        r#"SELECT greatest(reltuples, 1)::float8 AS "n!" FROM pg_class WHERE oid = 'faces'::regclass"#
    )
    .fetch_one(&mut *conn)
    .await?;
    let s = Size {
        faces,
        share: (faces as f64 / total.max(faces as f64)).clamp(1e-6, 1.0),
    };
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(collection, (s, Instant::now()));
    Ok(s)
}

/// The `limit` faces of `collection` nearest to `emb` (same model, people with an active
/// consent), nearest first. A collection of at most [`EXACT_SEARCH_MAX_FACES`] faces is
/// searched exactly; a larger one through the HNSW index with relaxed iterative scans and
/// `ef_search` (10..1000) divided by the collection's share of all faces. With `exact`, always
/// an exhaustive scan (the benchmark's reference).
pub async fn nearest(
    pool: &PgPool,
    collection: Uuid,
    emb: &Embedding,
    ef_search: u32,
    limit: i64,
    exact: bool,
) -> Result<Vec<Hit>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let size = size(&mut tx, collection).await?;
    let exact = exact || size.faces <= EXACT_SEARCH_MAX_FACES;
    // The session settings are not queries the macros can check (the value of `ef_search`
    // is formatted in): plain `sqlx::query`.
    if exact {
        // No index scan: the planner reads the collection through a bitmap scan of its btree
        // (or the table) and compares every face.
        sqlx::query("SET LOCAL enable_indexscan = off")
            .execute(&mut *tx)
            .await?;
    }
    let ef = (f64::from(ef_search.clamp(10, 1000)) / size.share).min(1000.0) as u32;
    // Integers formatted in, not user text.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL hnsw.ef_search = {}",
        ef.clamp(10, 1000)
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query("SET LOCAL hnsw.iterative_scan = relaxed_order")
        .execute(&mut *tx)
        .await?;
    let vector = pgvector::Vector::from(emb.vector().to_vec());
    let rows = if exact {
        sqlx::query_as!(
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
        .await?
    } else {
        // The same query with the collection test written so that no btree can serve it
        // (`IS TRUE`): only the HNSW graph orders the rows, whatever the planner estimates
        // for this collection (the btree's exact path is slow at this size).
        sqlx::query_as!(
            Hit,
            r#"SELECT f.id AS face_id, f.person_id, p.display_name, (f.embedding <=> $1) AS "distance!"
             FROM faces f JOIN people p ON p.id = f.person_id
             WHERE (f.collection_id = $4) IS TRUE AND f.model_id = $2 AND EXISTS (SELECT 1 FROM active_consents ac WHERE ac.person_id = f.person_id)
             ORDER BY f.embedding <=> $1 LIMIT $3"#,
            vector as _,
            emb.model(),
            limit,
            collection
        )
        .fetch_all(&mut *tx)
        .await?
    };
    tx.commit().await?;
    Ok(rows)
}
