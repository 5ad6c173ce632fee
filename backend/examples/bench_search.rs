//! Benchmark of recognize-by-embedding: HNSW against exact search in the same run.
//!
//! Face-like data: identity centres (unit vectors, 192-d) with 5 faces each (centre plus noise),
//! probes being fresh noisy samples of enrolled identities. Two data models (`--data`):
//! `isotropic` (the default): uniform random centres, noise norm 0.9 (same-person cosine about
//! 0.55, different-person cosine standard deviation 1/sqrt(192) = 0.07); `fitted`: centres from a
//! Gaussian with a power-law spectrum (variance of component i proportional to i^-0.85) and noise
//! norm uniform in 0.25..0.8, which reproduces what MobileFaceNet gives on the 24 fixture photos
//! of `../shared/faces/people` (same person: mean cosine 0.80; different people: mean 0.03,
//! standard deviation 0.13). The run prints the generated data's statistics. Bulk load with COPY, then `CREATE INDEX` (timed). The query is the service's own
//! (`routes::common::search_with`: consent filter, per-person grouping, top-5).
//! recall@1: the HNSW top-1 face equals the exact top-1 face.
//!
//! Each size gets its own database `visage_bench_[fitted_]<faces>_s<seed>`. With `--keep` it stays after
//! the run and a later run with the same size, seed and index parameters reuses it (data, index
//! and the exact ground truth of the probes): only the query phase runs again. Without `--keep`
//! it is loaded afresh and dropped at the end. Order of the query phase: exact ground truth
//! (computed once, then cached in the database), a warm-up pass of other probes, the HNSW
//! passes, then the timed exact pass (all probes when the ground truth was computed in this run).
//!
//! ```text
//! VISAGE_PG_DIR=/var/tmp/visage-bench-pg VISAGE_PG_SHARED_BUFFERS=3GB \
//!   cargo run --release -p visage-backend --example bench_search -- 10000 100000 1000000 \
//!   [--keep] [--rebuild] [--seed 42] [--probes 1000] [--ef 40,100,200,400] [--warm 1000]
//!   [--exact-probes N] [--m 16] [--ef-construction 128] [--maintenance-work-mem 2GB]
//!   [--data isotropic|fitted] [--markdown FILE]
//! ```

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};
use visage_backend::routes::common::{MatchParams, search_with};
use visage_backend::{configuration::DbArgs, db};
use visage_shared::Embedding;
use visage_shared::model::{EMBEDDER_ID, EMBEDDING_DIM};

const FACES_PER_ID: usize = 5;
const INDEX: &str = "faces_embedding_hnsw";

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

/// Independent random streams per purpose, so that a kept database's probes can be
/// regenerated from the seed without regenerating its faces.
fn stream(seed: u64, purpose: u64) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(16).wrapping_add(purpose))
}

#[derive(Clone, Copy, PartialEq)]
enum Data {
    Isotropic,
    Fitted,
}

impl Data {
    fn name(self) -> &'static str {
        match self {
            Data::Isotropic => "isotropic",
            Data::Fitted => "fitted",
        }
    }

    /// Noise norm of one face.
    fn sigma(self, rng: &mut StdRng) -> f32 {
        match self {
            Data::Isotropic => 0.9,
            Data::Fitted => rng.random_range(0.25..0.8),
        }
    }
}

fn centres(n: usize, seed: u64, data: Data) -> Vec<Vec<f32>> {
    let mut rng = stream(seed, 0);
    let scale: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|i| match data {
            Data::Isotropic => 1.0,
            Data::Fitted => ((i + 1) as f32).powf(-0.85 / 2.0),
        })
        .collect();
    (0..n / FACES_PER_ID)
        .map(|_| {
            let mut c: Vec<f32> = scale.iter().map(|s| s * gaussian(&mut rng)).collect();
            unit(&mut c);
            c
        })
        .collect()
}

fn probes(
    centres: &[Vec<f32>],
    count: usize,
    seed: u64,
    purpose: u64,
    data: Data,
) -> Vec<(usize, Embedding)> {
    let mut rng = stream(seed, purpose);
    (0..count)
        .map(|_| {
            let id = rng.random_range(0..centres.len());
            let sigma = data.sigma(&mut rng);
            let e = Embedding::new(EMBEDDER_ID, sample(&mut rng, &centres[id], sigma));
            (id, e.expect("valid"))
        })
        .collect()
}

/// Cosine statistics of generated faces: same person (mean, min), different people (mean,
/// standard deviation, max), from 5000 pairs each.
fn data_stats(centres: &[Vec<f32>], seed: u64, data: Data) -> String {
    let mut rng = stream(seed, 4);
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() as f64;
    let face = |rng: &mut StdRng, c: usize| {
        let sigma = data.sigma(rng);
        sample(rng, &centres[c], sigma)
    };
    let (mut gen_, mut imp) = (Vec::new(), Vec::new());
    for _ in 0..5000 {
        let a = rng.random_range(0..centres.len());
        let b = rng.random_range(0..centres.len());
        let fa = face(&mut rng, a);
        let fa2 = face(&mut rng, a);
        let fb = face(&mut rng, b);
        gen_.push(dot(&fa, &fa2));
        if a != b {
            imp.push(dot(&fa, &fb));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mg, mi) = (mean(&gen_), mean(&imp));
    let sd = (imp.iter().map(|x| (x - mi).powi(2)).sum::<f64>() / imp.len() as f64).sqrt();
    format!(
        "same person: mean cosine {mg:.2} (min {:.2}); different people: mean {mi:.2}, sd {sd:.2}, max {:.2}",
        gen_.iter().copied().fold(f64::INFINITY, f64::min),
        imp.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn proc_kb(pid: u32, file: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The postmaster and its children, found from a backend's pid (the server must be local).
fn server_pids(backend: u32) -> Vec<u32> {
    let Some(pm) = proc_kb(backend, "status", "PPid:").map(|p| p as u32) else {
        return Vec::new();
    };
    let mut pids = vec![pm];
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>()
                && proc_kb(pid, "status", "PPid:") == Some(pm as u64)
            {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Server memory in MB: sum of PSS over its processes (shared buffers counted once), sum of
/// VmRSS (shared pages counted in every process touching them), and the query backend's RssShmem
/// (the shared buffers it has touched).
#[derive(Clone, Copy, Default)]
struct Mem {
    pss: f64,
    rss_sum: f64,
    backend_shmem: f64,
}

fn server_mem(backend: u32) -> Mem {
    let pids = server_pids(backend);
    let sum = |file: &str, key: &str| {
        pids.iter()
            .filter_map(|&p| proc_kb(p, file, key))
            .sum::<u64>() as f64
            / 1024.0
    };
    Mem {
        pss: sum("smaps_rollup", "Pss:"),
        rss_sum: sum("status", "VmRSS:"),
        backend_shmem: proc_kb(backend, "status", "RssShmem:").unwrap_or(0) as f64 / 1024.0,
    }
}

/// Blocks of the HNSW index and of the faces table read from outside shared buffers, and hit.
async fn block_stats(pool: &PgPool) -> anyhow::Result<(i64, i64, i64)> {
    // Flush this backend's pending statistics, then read them (pool of one connection).
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await?;
    let r: (i64, i64, i64) = sqlx::query_as(
        "SELECT coalesce((SELECT idx_blks_read FROM pg_statio_user_indexes WHERE indexrelname = 'faces_embedding_hnsw'), 0),
                coalesce((SELECT idx_blks_hit FROM pg_statio_user_indexes WHERE indexrelname = 'faces_embedding_hnsw'), 0),
                coalesce((SELECT heap_blks_read FROM pg_statio_user_tables WHERE relname = 'faces'), 0)",
    )
    .fetch_one(pool)
    .await?;
    Ok(r)
}

struct Row {
    size: usize,
    mode: String,
    n: usize,
    recall1: f64,
    id_acc: f64,
    p50: f64,
    p99: f64,
    idx_read: i64,
    idx_hit: i64,
    heap_read: i64,
    load: String,
}

struct Build {
    size: usize,
    reused: bool,
    load_s: Option<f64>,
    build_s: f64,
    peak_pss_mb: Option<f64>,
    table_mb: f64,
    index_mb: f64,
    mem_after_warm: Mem,
    mem_after: Mem,
    load: String,
}

struct Opts {
    seed: u64,
    probes: usize,
    efs: Vec<u32>,
    warm: usize,
    exact_probes: Option<usize>,
    m: u32,
    ef_construction: u32,
    keep: bool,
    rebuild: bool,
    data: Data,
    mwm: String,
}

async fn load(
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
            buf.push_str("]\tbrowser\n");
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
async fn build_index(
    pool: &PgPool,
    m: u32,
    efc: u32,
    mwm: &str,
) -> anyhow::Result<(f64, Option<f64>)> {
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
        "CREATE INDEX {INDEX} ON faces USING hnsw (embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {efc})"
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

/// One timed pass of the service's query; `truth` is the exact top-1 face per probe.
async fn pass(
    pool: &PgPool,
    set: &[(usize, Embedding)],
    ef: Option<u32>,
    truth: &[Option<uuid::Uuid>],
) -> anyhow::Result<(Vec<f64>, Vec<Option<uuid::Uuid>>, usize, usize)> {
    let p = MatchParams {
        top_k: 5,
        threshold: 0.3,
        ef_search: ef.unwrap_or(100),
        disclosure: visage_backend::oracle::Disclosure::Full,
    };
    let mut lat = Vec::with_capacity(set.len());
    let mut tops = Vec::with_capacity(set.len());
    let (mut hits, mut id_ok) = (0, 0);
    for (k, (id, e)) in set.iter().enumerate() {
        let t = Instant::now();
        let c = search_with(pool, e, p, ef.is_none()).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        let top = c.first().map(|c| c.face_id);
        if truth.get(k).is_some_and(|t| *t == top) {
            hits += 1;
        }
        // Person names are "bench <index>": identity accuracy from the name.
        if c.first().is_some_and(|c| c.name == format!("bench {id}")) {
            id_ok += 1;
        }
        tops.push(top);
    }
    lat.sort_by(f64::total_cmp);
    Ok((lat, tops, hits, id_ok))
}

#[allow(clippy::too_many_arguments)]
fn row(
    size: usize,
    mode: String,
    lat: &[f64],
    hits: usize,
    id_ok: usize,
    blocks: ((i64, i64, i64), (i64, i64, i64)),
) -> Row {
    let n = lat.len();
    let (b0, b1) = blocks;
    let r = Row {
        size,
        mode,
        n,
        recall1: hits as f64 / n as f64,
        id_acc: id_ok as f64 / n as f64,
        p50: percentile(lat, 0.5),
        p99: percentile(lat, 0.99),
        idx_read: b1.0 - b0.0,
        idx_hit: b1.1 - b0.1,
        heap_read: b1.2 - b0.2,
        load: loadavg(),
    };
    eprintln!(
        "{size} {} (n={n}): recall@1 {:.3}, identity {:.3}, p50 {:.2} ms, p99 {:.2} ms, index blocks read {} hit {}, heap read {}, load {}",
        r.mode, r.recall1, r.id_acc, r.p50, r.p99, r.idx_read, r.idx_hit, r.heap_read, r.load
    );
    r
}

async fn run_size(server: &str, n: usize, o: &Opts, rows: &mut Vec<Row>) -> anyhow::Result<Build> {
    let prefix = match o.data {
        Data::Isotropic => "",
        Data::Fitted => "fitted_",
    };
    // A throw-away run never touches a kept database.
    let name = if o.keep {
        format!("visage_bench_{}{n}_s{}", prefix, o.seed)
    } else {
        format!("visage_bench_tmp_{}{n}_s{}", prefix, o.seed)
    };
    let url = format!("{server}/{name}");
    db::create_database_if_missing(&url).await?;
    let admin = db::connect(&url, 2).await?;
    db::migrate(&admin).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_meta (faces bigint NOT NULL, seed bigint NOT NULL, m int, ef_construction int, build_s float8)")
        .execute(&admin)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_truth (idx int PRIMARY KEY, face_id uuid)")
        .execute(&admin)
        .await?;
    type Meta = (i64, i64, Option<i32>, Option<i32>, Option<f64>);
    let meta: Option<Meta> =
        sqlx::query_as("SELECT faces, seed, m, ef_construction, build_s FROM bench_meta")
            .fetch_optional(&admin)
            .await?;
    let index_exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(INDEX)
        .fetch_one(&admin)
        .await?;
    let centres = centres(n, o.seed, o.data);
    eprintln!(
        "{n}: {} data: {}",
        o.data.name(),
        data_stats(&centres, o.seed, o.data)
    );
    let loaded = o.keep
        && !o.rebuild
        && meta
            .as_ref()
            .is_some_and(|m| m.0 == n as i64 && m.1 == o.seed as i64);
    let mut load_s = None;
    if !loaded {
        let t = Instant::now();
        load(&admin, n, o.seed, o.data, &centres).await?;
        load_s = Some(t.elapsed().as_secs_f64());
        eprintln!("{n}: loaded in {:.1} s", t.elapsed().as_secs_f64());
    }
    let index_ok = loaded
        && index_exists
        && meta.as_ref().is_some_and(|m| {
            m.2 == Some(o.m as i32) && m.3 == Some(o.ef_construction as i32) && m.4.is_some()
        });
    let (build_s, peak) = if index_ok {
        eprintln!("{n}: reusing {name} and its index");
        (meta.and_then(|m| m.4).unwrap_or(f64::NAN), None)
    } else {
        if loaded {
            // Another index: the ground truth stays valid (it does not depend on the index).
            eprintln!("{n}: reusing {name}'s data, building the index");
        }
        let (b, peak) = build_index(&admin, o.m, o.ef_construction, &o.mwm).await?;
        eprintln!(
            "{n}: HNSW build {b:.1} s, server peak PSS {:.0} MB",
            peak.unwrap_or(f64::NAN)
        );
        (b, peak)
    };
    let (table, index): (i64, i64) =
        sqlx::query_as("SELECT pg_table_size('faces'), pg_relation_size($1::regclass)")
            .bind(INDEX)
            .fetch_one(&admin)
            .await?;
    eprintln!(
        "{n}: table {:.0} MB, index {:.0} MB",
        table as f64 / 1e6,
        index as f64 / 1e6
    );

    // All timed queries on one connection, one at a time.
    let pool = db::connect(&url, 1).await?;
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await?;
    let set = probes(&centres, o.probes, o.seed, 2, o.data);
    let warm = probes(&centres, o.warm, o.seed, 3, o.data);

    // Exact ground truth, cached in the database.
    let cached: Vec<(i32, Option<uuid::Uuid>)> =
        sqlx::query_as("SELECT idx, face_id FROM bench_truth WHERE idx < $1 ORDER BY idx")
            .bind(o.probes as i32)
            .fetch_all(&admin)
            .await?;
    let mut exact_row = None;
    let truth: Vec<Option<uuid::Uuid>> = if cached.len() == o.probes {
        eprintln!(
            "{n}: exact ground truth of {} probes from the database",
            o.probes
        );
        cached.into_iter().map(|(_, f)| f).collect()
    } else {
        eprintln!(
            "{n}: computing the exact ground truth of {} probes",
            o.probes
        );
        let b0 = block_stats(&pool).await?;
        let (lat, tops, _, id_ok) = pass(&pool, &set, None, &[]).await?;
        let b1 = block_stats(&pool).await?;
        exact_row = Some(row(n, "exact".into(), &lat, lat.len(), id_ok, (b0, b1)));
        sqlx::query("TRUNCATE bench_truth").execute(&admin).await?;
        // One statement for all probes (idx is the array position, from 1).
        sqlx::query(
            "INSERT INTO bench_truth (idx, face_id) SELECT n - 1, f FROM UNNEST($1::uuid[]) WITH ORDINALITY AS t(f, n)",
        )
        .bind(&tops)
        .execute(&admin)
        .await?;
        tops
    };

    // Warm the tables into shared buffers (bitmap heap scans do not use a ring buffer, unlike
    // sequential scans of large tables; pg_prewarm is not in the embedded build), then the
    // index with queries of other probes.
    let t = Instant::now();
    let mut tx = pool.begin().await?;
    for q in [
        "SET LOCAL enable_seqscan = off",
        "SET LOCAL enable_indexscan = off",
        "SET LOCAL enable_indexonlyscan = off",
    ] {
        sqlx::query(q).execute(&mut *tx).await?;
    }
    for q in [
        "SELECT count(embedding) FROM faces WHERE id >= '00000000-0000-0000-0000-000000000000'",
        "SELECT count(display_name) FROM people WHERE id >= '00000000-0000-0000-0000-000000000000'",
        "SELECT count(purpose) FROM consents WHERE person_id >= '00000000-0000-0000-0000-000000000000'",
    ] {
        sqlx::query(q).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    eprintln!("{n}: tables read in {:.1} s", t.elapsed().as_secs_f64());
    let max_ef = o.efs.iter().copied().max().unwrap_or(100);
    let t = Instant::now();
    pass(&pool, &warm, Some(max_ef), &[]).await?;
    let mem_after_warm = server_mem(backend as u32);
    eprintln!(
        "{n}: warm-up {} queries at ef_search={max_ef} in {:.1} s; server PSS {:.0} MB, backend shared {:.0} MB",
        warm.len(),
        t.elapsed().as_secs_f64(),
        mem_after_warm.pss,
        mem_after_warm.backend_shmem
    );

    for &ef in &o.efs {
        let b0 = block_stats(&pool).await?;
        let (lat, _, hits, id_ok) = pass(&pool, &set, Some(ef), &truth).await?;
        let b1 = block_stats(&pool).await?;
        rows.push(row(
            n,
            format!("hnsw ef_search={ef}"),
            &lat,
            hits,
            id_ok,
            (b0, b1),
        ));
    }
    let mem_after = server_mem(backend as u32);

    match exact_row {
        Some(r) => rows.push(r),
        None => {
            let k = o
                .exact_probes
                .unwrap_or(if n >= 500_000 { 50 } else { o.probes })
                .min(o.probes);
            let b0 = block_stats(&pool).await?;
            let (lat, _, hits, id_ok) = pass(&pool, &set[..k], None, &truth).await?;
            let b1 = block_stats(&pool).await?;
            if hits != k {
                eprintln!(
                    "{n}: warning: {} of {k} exact answers differ from the cached ground truth",
                    k - hits
                );
            }
            rows.push(row(n, "exact".into(), &lat, hits, id_ok, (b0, b1)));
        }
    }
    let load = loadavg();
    pool.close().await;
    admin.close().await;
    if !o.keep {
        let mut c = PgConnectOptions::from_str(&url)?
            .database("postgres")
            .connect()
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(&mut c)
            .await?;
        c.close().await?;
    }
    Ok(Build {
        size: n,
        reused: index_ok,
        load_s,
        build_s,
        peak_pss_mb: peak,
        table_mb: table as f64 / 1e6,
        index_mb: index as f64 / 1e6,
        mem_after_warm,
        mem_after,
        load,
    })
}

fn parse<T: FromStr>(args: &[String], i: usize, what: &str) -> anyhow::Result<T> {
    args.get(i + 1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{what} needs a value"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // PostgreSQL notices (pgvector says when the graph no longer fits in maintenance_work_mem).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,sqlx::postgres::notice=debug",
        ))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sizes = Vec::new();
    let mut o = Opts {
        seed: 42,
        probes: 1000,
        efs: vec![40, 100, 200, 400],
        warm: 1000,
        exact_probes: None,
        m: 16,
        ef_construction: 128,
        keep: false,
        rebuild: false,
        data: Data::Isotropic,
        mwm: "2GB".into(),
    };
    let mut markdown: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "--keep" => o.keep = true,
            "--rebuild" => o.rebuild = true,
            "--data" => {
                o.data = match parse::<String>(&args, i, a)?.as_str() {
                    "isotropic" => Data::Isotropic,
                    "fitted" => Data::Fitted,
                    d => anyhow::bail!("--data {d}: isotropic or fitted"),
                }
            }
            "--seed" => o.seed = parse(&args, i, a)?,
            "--probes" => o.probes = parse(&args, i, a)?,
            "--warm" => o.warm = parse(&args, i, a)?,
            "--exact-probes" => o.exact_probes = Some(parse(&args, i, a)?),
            "--m" => o.m = parse(&args, i, a)?,
            "--ef-construction" => o.ef_construction = parse(&args, i, a)?,
            "--maintenance-work-mem" => o.mwm = parse(&args, i, a)?,
            "--ef" => {
                let s: String = parse(&args, i, a)?;
                o.efs = s
                    .split(',')
                    .map(|x| x.trim().parse())
                    .collect::<Result<_, _>>()?;
            }
            "--markdown" => markdown = Some(parse(&args, i, a)?),
            s => {
                sizes.push(s.parse::<usize>()?);
                i += 1;
                continue;
            }
        }
        i += if matches!(a, "--keep" | "--rebuild") {
            1
        } else {
            2
        };
    }
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000];
    }
    o.efs.sort_unstable();
    // Databases on the embedded server (or DATABASE_URL's server).
    let base = db::resolve_url(&DbArgs {
        database_url: std::env::var("DATABASE_URL").ok().map(Into::into),
    })
    .await?;
    let Some((server, _)) = base.rsplit_once('/') else {
        anyhow::bail!("odd database URL");
    };
    let pool = db::connect(&base, 1).await?;
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting || coalesce(unit, '') FROM pg_settings
         WHERE name IN ('server_version', 'shared_buffers', 'work_mem', 'effective_cache_size',
                        'max_parallel_workers_per_gather', 'jit')
         ORDER BY name",
    )
    .fetch_all(&pool)
    .await?;
    let version: String = sqlx::query_scalar(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    let settings = settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!("pgvector {version}; {settings}; load {}", loadavg());

    let mut rows = Vec::new();
    let mut builds = Vec::new();
    for &n in &sizes {
        builds.push(run_size(server, n, &o, &mut rows).await?);
    }

    let mut md = String::new();
    md.push_str(&format!(
        "pgvector {version}; {settings}; HNSW m={}, ef_construction={}, built with maintenance_work_mem={} and 1 parallel worker. \
         Data: {} ({}). {} probes (seed {}), warm-up {} other probes. \
         Command: `cargo run --release -p visage-backend --example bench_search -- {}`\n\n",
        o.m,
        o.ef_construction,
        o.mwm,
        o.data.name(),
        data_stats(&centres(100_000, o.seed, o.data), o.seed, o.data),
        o.probes,
        o.seed,
        o.warm,
        args.join(" "),
    ));
    md.push_str("| faces | search | probes | recall@1 | identity top-1 | p50 ms | p99 ms | index pages / query | pages read from outside shared buffers: index / heap | load avg |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.2} | {:.2} | {:.0} | {} / {} | {} |\n",
            r.size,
            r.mode,
            r.n,
            r.recall1,
            r.id_acc,
            r.p50,
            r.p99,
            (r.idx_read + r.idx_hit) as f64 / r.n as f64,
            r.idx_read,
            r.heap_read,
            r.load
        ));
    }
    md.push_str("\n| faces | load (s) | HNSW build (s) | peak server PSS in build (MB) | table (MB) | index (MB) | server PSS after warm-up / passes (MB) | sum VmRSS (MB) | query backend shared (MB) | load avg |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for b in &builds {
        md.push_str(&format!(
            "| {} | {} | {:.1}{} | {} | {:.0} | {:.0} | {:.0} / {:.0} | {:.0} | {:.0} | {} |\n",
            b.size,
            b.load_s.map_or("reused".into(), |s| format!("{s:.0}")),
            b.build_s,
            if b.reused { " (earlier run)" } else { "" },
            b.peak_pss_mb.map_or("-".into(), |p| format!("{p:.0}")),
            b.table_mb,
            b.index_mb,
            b.mem_after_warm.pss,
            b.mem_after.pss,
            b.mem_after.rss_sum,
            b.mem_after.backend_shmem,
            b.load
        ));
    }
    println!("{md}");
    if let Some(path) = markdown {
        std::fs::write(&path, &md)?;
    }
    Ok(())
}
