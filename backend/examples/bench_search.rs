//! Benchmark of recognize-by-embedding: HNSW against exact search in the same run.
//!
//! Face-like data: identity centres (random unit vectors, 192-d) with 5 faces each (centre plus
//! noise, same-person cosine about 0.7 like real embeddings), probes being fresh noisy samples
//! of enrolled identities. Bulk load with COPY, then `CREATE INDEX` (timed). The query is the
//! service's own (`routes::common::search_with`: consent filter, per-person grouping).
//! recall@1: the HNSW top-1 face equals the exact top-1 face.
//!
//! `cargo run -p visage-backend --example bench_search -- 10000 100000 [--probes 300] [--markdown FILE]`

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, PgPool};
use visage_backend::routes::common::{MatchParams, search_with};
use visage_backend::{configuration::DbArgs, db};
use visage_shared::Embedding;
use visage_shared::model::{EMBEDDER_ID, EMBEDDING_DIM};

const FACES_PER_ID: usize = 5;

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller.
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// centre + noise with noise norm `sigma` relative to the unit centre.
fn sample(rng: &mut StdRng, centre: &[f32], sigma: f32) -> Vec<f32> {
    let per = sigma / (EMBEDDING_DIM as f32).sqrt();
    let mut v: Vec<f32> = centre.iter().map(|c| c + per * gaussian(rng)).collect();
    unit(&mut v);
    v
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Row {
    size: usize,
    mode: String,
    recall1: f64,
    id_acc: f64,
    p50: f64,
    p99: f64,
}

async fn load(
    pool: &PgPool,
    n: usize,
    rng: &mut StdRng,
) -> anyhow::Result<(Vec<Vec<f32>>, f64, i64)> {
    let ids = n / FACES_PER_ID;
    let centres: Vec<Vec<f32>> = (0..ids)
        .map(|_| {
            let mut c: Vec<f32> = (0..EMBEDDING_DIM).map(|_| gaussian(rng)).collect();
            unit(&mut c);
            c
        })
        .collect();
    sqlx::query("TRUNCATE faces, consents, people")
        .execute(pool)
        .await?;
    sqlx::query("DROP INDEX IF EXISTS faces_embedding_hnsw")
        .execute(pool)
        .await?;
    let mut conn = pool.acquire().await?;
    let person_ids: Vec<uuid::Uuid> = (0..ids).map(|_| uuid::Uuid::new_v4()).collect();
    let mut people = String::new();
    let mut consents = String::new();
    for (i, p) in person_ids.iter().enumerate() {
        people.push_str(&format!("{p}\tbench {i}\n"));
        consents.push_str(&format!(
            "{}\t{p}\tv1\t{}\tbench\t2026-01-01 00:00:00+00\tbench\tbench\n",
            uuid::Uuid::new_v4(),
            "0".repeat(64)
        ));
    }
    let mut c = conn
        .copy_in_raw("COPY people (id, display_name) FROM STDIN")
        .await?;
    c.send(people.as_bytes()).await?;
    c.finish().await?;
    let mut c = conn
        .copy_in_raw("COPY consents (id, person_id, policy_version, policy_sha256, purpose, granted_at, evidence_method, collected_by) FROM STDIN")
        .await?;
    c.send(consents.as_bytes()).await?;
    c.finish().await?;
    let mut c = conn
        .copy_in_raw("COPY faces (id, person_id, model_id, embedding, source) FROM STDIN")
        .await?;
    let mut buf = String::with_capacity(1 << 22);
    for (i, p) in person_ids.iter().enumerate() {
        for _ in 0..FACES_PER_ID {
            let v = sample(rng, &centres[i], 0.9);
            buf.push_str(&format!("{}\t{p}\t{EMBEDDER_ID}\t[", uuid::Uuid::new_v4()));
            for (k, x) in v.iter().enumerate() {
                if k > 0 {
                    buf.push(',');
                }
                buf.push_str(&format!("{x:.6}"));
            }
            buf.push_str("]\tbrowser\n");
        }
        if buf.len() > (1 << 22) {
            c.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    c.send(buf.as_bytes()).await?;
    c.finish().await?;
    sqlx::query("ANALYZE").execute(&mut *conn).await?;
    sqlx::query("SET maintenance_work_mem = '2GB'")
        .execute(&mut *conn)
        .await?;
    sqlx::query("SET max_parallel_maintenance_workers = 1")
        .execute(&mut *conn)
        .await?;
    let t = Instant::now();
    sqlx::query(
        "CREATE INDEX faces_embedding_hnsw ON faces USING hnsw (embedding vector_cosine_ops)",
    )
    .execute(&mut *conn)
    .await?;
    let build = t.elapsed().as_secs_f64();
    let size: i64 = sqlx::query_scalar("SELECT pg_relation_size('faces_embedding_hnsw')")
        .fetch_one(&mut *conn)
        .await?;
    Ok((centres, build, size))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sizes = Vec::new();
    let mut probes = 300usize;
    let mut markdown: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--probes" => {
                probes = args
                    .get(i + 1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(probes);
                i += 1;
            }
            "--markdown" => {
                markdown = args.get(i + 1).cloned();
                i += 1;
            }
            s => sizes.push(s.parse::<usize>()?),
        }
        i += 1;
    }
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000];
    }
    // A dedicated database on the embedded server (or DATABASE_URL's server).
    let base = db::resolve_url(&DbArgs {
        database_url: std::env::var("DATABASE_URL").ok(),
    })
    .await?;
    let url = match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/visage_bench"),
        None => anyhow::bail!("odd database URL"),
    };
    db::create_database_if_missing(&url).await?;
    let pool = db::connect(&url, 4).await?;
    db::migrate(&pool).await?;
    let version: String =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .fetch_one(&pool)
            .await?;
    let pg: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await?;

    let mut rng = StdRng::seed_from_u64(42);
    let mut rows = Vec::new();
    let mut builds = Vec::new();
    for &n in &sizes {
        let t = Instant::now();
        let (centres, build, size) = load(&pool, n, &mut rng).await?;
        eprintln!(
            "{n}: loaded in {:.1} s, HNSW build {build:.1} s, index {:.0} MB",
            t.elapsed().as_secs_f64(),
            size as f64 / 1e6
        );
        builds.push((n, build, size));
        let probe_set: Vec<(usize, Embedding)> = (0..probes)
            .map(|_| {
                let id = rng.random_range(0..centres.len());
                (
                    id,
                    Embedding::new(EMBEDDER_ID, sample(&mut rng, &centres[id], 0.9))
                        .expect("valid"),
                )
            })
            .collect();
        // Person names are "bench <index>": identity accuracy from the name.
        let mut exact_top = Vec::new();
        let mut modes: Vec<(String, Option<u32>)> = vec![("exact".into(), None)];
        for ef in [40u32, 100, 200] {
            modes.push((format!("hnsw ef_search={ef}"), Some(ef)));
        }
        for (mode, ef) in modes {
            let p = MatchParams {
                top_k: 5,
                threshold: 0.3,
                ef_search: ef.unwrap_or(100),
            };
            // Warm-up.
            for (_, e) in probe_set.iter().take(20) {
                search_with(&pool, e, p, ef.is_none()).await?;
            }
            let mut lat = Vec::new();
            let mut hits = 0;
            let mut id_ok = 0;
            for (k, (id, e)) in probe_set.iter().enumerate() {
                let t = Instant::now();
                let c = search_with(&pool, e, p, ef.is_none()).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                let top = c.first().map(|c| c.face_id);
                if ef.is_none() {
                    exact_top.push(top);
                } else if top == exact_top[k] {
                    hits += 1;
                }
                if c.first().is_some_and(|c| c.name == format!("bench {id}")) {
                    id_ok += 1;
                }
            }
            if ef.is_none() {
                hits = probes;
            }
            lat.sort_by(f64::total_cmp);
            let row = Row {
                size: n,
                mode,
                recall1: hits as f64 / probes as f64,
                id_acc: id_ok as f64 / probes as f64,
                p50: percentile(&lat, 0.5),
                p99: percentile(&lat, 0.99),
            };
            eprintln!(
                "{n} {}: recall@1 {:.3}, identity {:.3}, p50 {:.2} ms, p99 {:.2} ms",
                row.mode, row.recall1, row.id_acc, row.p50, row.p99
            );
            rows.push(row);
        }
    }
    let mut md = String::new();
    md.push_str("## Recognize by embedding: HNSW vs exact (backend/examples/bench_search.rs)\n\n");
    md.push_str(&format!(
        "PostgreSQL {pg}, pgvector {version} (embedded), 2 cores; HNSW m=16, ef_construction=64 (defaults). \
         Face-like 192-d data: identity centres with {FACES_PER_ID} faces each (centre + noise), {probes} probes that are fresh noisy samples \
         of enrolled identities. The query is the service's (consent filter, per-person grouping, top-5). \
         recall@1 = HNSW top-1 face equals the exact top-1 face; identity = top-1 is the probe's identity. Latency is per query, \
         client side, one at a time. Reproduce: `cargo run -p visage-backend --example bench_search -- {}`.\n\n",
        sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ")
    ));
    md.push_str("| faces | search | recall@1 | identity top-1 | p50 ms | p99 ms |\n|---:|---|---:|---:|---:|---:|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.2} | {:.2} |\n",
            r.size, r.mode, r.recall1, r.id_acc, r.p50, r.p99
        ));
    }
    md.push_str("\n| faces | HNSW build (s) | index size (MB) |\n|---:|---:|---:|\n");
    for (n, b, s) in &builds {
        md.push_str(&format!("| {n} | {b:.1} | {:.0} |\n", *s as f64 / 1e6));
    }
    println!("{md}");
    if let Some(path) = markdown {
        std::fs::write(&path, &md)?;
    }
    // Leave the benchmark database small.
    sqlx::query("TRUNCATE faces, consents, people")
        .execute(&pool)
        .await?;
    pool.close().await;
    let _ = sqlx::PgConnection::connect(&url).await.map(|c| c.close());
    Ok(())
}
