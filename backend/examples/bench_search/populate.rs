//! Filling a bench database: people, consents and faces bulk-loaded with COPY, then the HNSW
//! index built (timed, with the server's peak memory sampled meanwhile).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use visage_backend::domain::DEFAULT_COLLECTION_ID;
use visage_shared::model::EMBEDDER_ID;

use crate::data::{Data, FACES_PER_ID, sample, stream};
use crate::server_stats::server_mem;

/// The default collection's HNSW graph (`store::hnsw::index_name(DEFAULT_COLLECTION_ID)`,
/// checked by `build_index`): the whole bench gallery is that collection.
pub(crate) const INDEX: &str = "faces_hnsw_00000000000000000000000000000001";

pub(crate) async fn load(
    pool: &PgPool,
    n: usize,
    seed: u64,
    data: Data,
    centres: &[Vec<f32>],
) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE faces, consents, people, bench_truth")
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM bench_meta").execute(pool).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX IF EXISTS {INDEX}")))
        .execute(pool)
        .await?;
    let mut conn = pool.acquire().await?;
    let person_ids: Vec<uuid::Uuid> = (0..centres.len()).map(|_| uuid::Uuid::new_v4()).collect();
    let mut people = String::new();
    let mut consents = String::new();
    for (i, p) in person_ids.iter().enumerate() {
        let coll = visage_backend::domain::DEFAULT_COLLECTION_ID;
        people.push_str(&format!("{p}\tbench {i}\t{coll}\n"));
        consents.push_str(&format!(
            "{}\t{p}\tv1\t{}\tbench\t2026-01-01 00:00:00+00\tbench\tbench\t{coll}\n",
            uuid::Uuid::new_v4(),
            "0".repeat(64)
        ));
    }
    let mut c = conn
        .copy_in_raw("COPY people (id, display_name, collection_id) FROM STDIN")
        .await?;
    c.send(people.as_bytes()).await?;
    c.finish().await?;
    let mut c = conn
        .copy_in_raw("COPY consents (id, person_id, policy_version, policy_sha256, purpose, granted_at, evidence_method, collected_by, collection_id) FROM STDIN")
        .await?;
    c.send(consents.as_bytes()).await?;
    c.finish().await?;
    let mut c = conn
        .copy_in_raw(
            "COPY faces (id, person_id, model_id, embedding, source, collection_id) FROM STDIN",
        )
        .await?;
    let mut rng = stream(seed, 1);
    let mut buf = String::with_capacity(1 << 23);
    for (i, p) in person_ids.iter().enumerate() {
        for _ in 0..FACES_PER_ID {
            let sigma = data.sigma(&mut rng);
            let v = sample(&mut rng, &centres[i], sigma);
            buf.push_str(&format!("{}\t{p}\t{EMBEDDER_ID}\t[", uuid::Uuid::new_v4()));
            for (k, x) in v.iter().enumerate() {
                if k > 0 {
                    buf.push(',');
                }
                buf.push_str(&format!("{x:.6}"));
            }
            buf.push_str(&format!(
                "]\tbrowser\t{}\n",
                visage_backend::domain::DEFAULT_COLLECTION_ID
            ));
        }
        if buf.len() > (1 << 22) {
            c.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    c.send(buf.as_bytes()).await?;
    c.finish().await?;
    sqlx::query("VACUUM ANALYZE faces")
        .execute(&mut *conn)
        .await?;
    sqlx::query("ANALYZE").execute(&mut *conn).await?;
    sqlx::query("INSERT INTO bench_meta (faces, seed) VALUES ($1, $2)")
        .bind(n as i64)
        .bind(seed as i64)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Builds the HNSW index; returns the build time and the server's peak PSS (MB) meanwhile.
pub(crate) async fn build_index(
    pool: &PgPool,
    m: u32,
    efc: u32,
    mwm: &str,
) -> anyhow::Result<(f64, Option<f64>)> {
    anyhow::ensure!(
        INDEX == visage_backend::store::hnsw::index_name(DEFAULT_COLLECTION_ID),
        "INDEX is not the default collection's graph"
    );
    let mut conn = pool.acquire().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX IF EXISTS {INDEX}")))
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE bench_meta SET m = NULL, ef_construction = NULL, build_s = NULL")
        .execute(&mut *conn)
        .await?;
    // A graph larger than this is built on disk, much slower (pgvector says so in a notice).
    sqlx::query("SELECT set_config('maintenance_work_mem', $1, false)")
        .bind(mwm)
        .execute(&mut *conn)
        .await?;
    sqlx::query("SET max_parallel_maintenance_workers = 1")
        .execute(&mut *conn)
        .await?;
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await?;
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::task::spawn_blocking(move || {
            while !done.load(Ordering::Relaxed) {
                let kb = (server_mem(backend as u32).pss * 1024.0) as u64;
                peak.fetch_max(kb, Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(2));
            }
        })
    };
    let t = Instant::now();
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE INDEX {INDEX} ON faces USING hnsw (embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {efc}) WHERE collection_id = '{DEFAULT_COLLECTION_ID}'"
    )))
    .execute(&mut *conn)
    .await;
    let build = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    r?;
    sqlx::query("UPDATE bench_meta SET m = $1, ef_construction = $2, build_s = $3")
        .bind(m as i32)
        .bind(efc as i32)
        .bind(build)
        .execute(&mut *conn)
        .await?;
    let peak = peak.load(Ordering::Relaxed) as f64 / 1024.0;
    Ok((build, (peak > 0.0).then_some(peak)))
}
