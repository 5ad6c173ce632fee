//! The HNSW graphs: one per large collection, each a partial index of `faces` on that collection
//! alone (`faces_hnsw_<collection id in hex>`); a small collection has none and is searched
//! exactly (`store::search`).
//!
//! Why not one graph for every face (migrations before `20261202000001`): the graph of all
//! collections must be built, rebuilt and searched whole for the sake of the few collections
//! that need it. At the size issue 15 asks for (100 collections of 10,000 faces and one of
//! 1,000,000), building it on 2 cores went from 20,000 faces a minute to 10,500 as it grew and
//! held 640,000 of the 2M faces after 53 minutes (the large collection's own graph: 18 minutes
//! for its 1M, BENCHMARKS.md "Collections"); a filtered search of it keeps only the
//! collection's share of each candidate list, so `ef_search` had to grow as that share shrank;
//! and every enrolment into a small collection inserted into a graph its searches never use. A
//! partial graph holds the large collection's faces only: built in the time of that collection,
//! searched as an unfiltered graph.
//!
//! [`build_missing`] builds the graphs that are due; the service runs it in the background
//! ([`spawn`], `CREATE INDEX CONCURRENTLY`: enrolments and searches go on). Until a collection's
//! graph is valid, the collection is searched exactly: slower, never wrong.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The graph's parameters, as the migrations always built it (`20261126000001`).
const GRAPH: &str = "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128)";

/// The name of `collection`'s graph.
pub fn index_name(collection: Uuid) -> String {
    format!("faces_hnsw_{}", collection.simple())
}

/// Whether `collection` has a graph that searches can use (built and valid: a concurrent build
/// that failed leaves an invalid index behind, which the planner ignores).
pub async fn has_graph(conn: &mut PgConnection, collection: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
          WHERE c.relname = $1 AND i.indisvalid AND i.indisready)",
    )
    .bind(index_name(collection))
    .fetch_one(conn)
    .await
}

/// How [`build_missing`] builds.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `CREATE INDEX CONCURRENTLY`: writes go on during the build (the service). Without it
    /// the table is locked against writes, and the build is somewhat faster (benchmarks).
    pub concurrently: bool,
    /// The build session's `maintenance_work_mem` (PostgreSQL syntax, e.g. `1GB`): pgvector
    /// builds several times faster while the graph fits in it (about 1.2 KB per face).
    pub memory: String,
}

/// Builds the graph of every collection of more than `exact_max_faces` faces that has no valid
/// one (dropping an invalid leftover first), one at a time. Returns the collections it built.
pub async fn build_missing(
    pool: &PgPool,
    exact_max_faces: i64,
    opts: &BuildOptions,
) -> Result<Vec<Uuid>, sqlx::Error> {
    // Each collection's faces counted up to just past the bound through the btree
    // `faces_collection_idx`: bounded work per collection, whatever its size.
    let due: Vec<Uuid> = sqlx::query_scalar(
        "SELECT c.id FROM collections c
          WHERE (SELECT count(*) FROM (SELECT 1 FROM faces f WHERE f.collection_id = c.id LIMIT $1 + 1) s) > $1
          ORDER BY c.id",
    )
    .bind(exact_max_faces)
    .fetch_all(pool)
    .await?;
    let mut built = Vec::new();
    for collection in due {
        let mut conn = pool.acquire().await?;
        // Several service processes may share the database: one builds a collection's graph
        // at a time. Without this, a second one would find the first one's build in progress
        // (an index not valid yet), take it for a failed build's leftover and drop it.
        let key = lock_key(collection);
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            continue;
        }
        let result = match has_graph(&mut conn, collection).await {
            Ok(true) => Ok(false),
            Ok(false) => build(&mut conn, collection, opts).await.map(|()| true),
            Err(e) => Err(e),
        };
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await?;
        if result? {
            built.push(collection);
        }
    }
    Ok(built)
}

/// The advisory lock of `collection`'s graph build: its id folded to 64 bits, in a range of
/// its own (the high bits of "hnsw"), so it does not collide with other advisory locks.
fn lock_key(collection: Uuid) -> i64 {
    let (hi, lo) = collection.as_u64_pair();
    ((hi ^ lo) as i64 & 0x0000_FFFF_FFFF_FFFF) | (0x686e_i64 << 48)
}

/// Builds `collection`'s graph on `conn`.
async fn build(
    conn: &mut PgConnection,
    collection: Uuid,
    opts: &BuildOptions,
) -> Result<(), sqlx::Error> {
    let name = index_name(collection);
    let concurrently = if opts.concurrently {
        "CONCURRENTLY "
    } else {
        ""
    };
    // A uuid and a hex name formatted in, and the memory setting quoted as a literal: no
    // caller text reaches the SQL unquoted. (DDL takes no bind parameters.)
    let memory = opts.memory.replace('\'', "''");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET maintenance_work_mem = '{memory}'"
    )))
    .execute(&mut *conn)
    .await?;
    // What a failed concurrent build left (invalid: `has_graph` said no).
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP INDEX {concurrently}IF EXISTS {name}"
    )))
    .execute(&mut *conn)
    .await?;
    tracing::info!(%collection, index = %name, "building the collection's HNSW graph");
    let t = std::time::Instant::now();
    let result = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE INDEX {concurrently}{name} ON faces {GRAPH} WHERE collection_id = '{collection}'"
    )))
    .execute(&mut *conn)
    .await;
    // The connection goes back to the pool: not with this session's memory setting.
    let reset = sqlx::raw_sql("RESET maintenance_work_mem")
        .execute(&mut *conn)
        .await;
    result?;
    reset?;
    tracing::info!(%collection, index = %name, seconds = t.elapsed().as_secs(), "HNSW graph built");
    metrics::counter!("visage_hnsw_graphs_built_total").increment(1);
    Ok(())
}

/// Runs [`build_missing`] (concurrently) every `interval` until the runtime ends.
pub fn spawn(
    pool: PgPool,
    interval: Duration,
    exact_max_faces: i64,
    memory: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let opts = BuildOptions {
            concurrently: true,
            memory,
        };
        let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
        loop {
            tick.tick().await;
            if let Err(e) = build_missing(&pool, exact_max_faces, &opts).await {
                tracing::warn!(error = %e, "building HNSW graphs failed (retried at the next tick)");
            }
        }
    })
}
