//! Benchmark of recognition filtered by collection (issue 15): many small collections and one
//! large one in one `faces` table, where the large one has its own HNSW graph (a partial index,
//! `store::hnsw`) and the small ones none, each searched two ways in the same run:
//!
//! - `exact`: the filtered query with index scans off (a bitmap scan of the collection through
//!   `faces_collection_idx`, every face compared): the ground truth of recall@1;
//! - `service`: `store::search::nearest`, what recognition runs (exact for a small collection,
//!   the collection's graph for the large one).
//!
//! Data: identity centres (uniform random unit vectors, 192-d) with 5 faces each (centre plus
//! noise of norm 0.9, same-person cosine about 0.55); probes are fresh noisy samples of enrolled
//! identities. recall@1: the method's nearest face is the exact nearest face.
//!
//! ```text
//! cargo run --release -p visage-backend --example bench_collections -- \
//!   [--small 100] [--per-small 10000] [--big 1000000] [--probes 200] [--ef 150,400] [--keep]
//! ```

use std::time::Instant;

#[path = "synthetic/mod.rs"]
mod synthetic;

use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use uuid::Uuid;
use visage_backend::configuration::{DEFAULT_EF_SEARCH, DEFAULT_EXACT_SEARCH_MAX_FACES, DbArgs};
use visage_backend::db;
use visage_backend::store::hnsw;
use visage_backend::store::search::Settings;
use visage_shared::Embedding;
use visage_shared::model::EMBEDDER_ID;

use synthetic::{centres_of, load_collection, noisy};

/// The service's defaults.
const SETTINGS: Settings = Settings {
    ef_search: DEFAULT_EF_SEARCH,
    exact_max_faces: DEFAULT_EXACT_SEARCH_MAX_FACES,
};
/// As the service asks (`routes::common::search_with`, top-k 5).
const LIMIT: i64 = 30;

struct Opts {
    small: usize,
    per_small: usize,
    big: usize,
    probes: usize,
    /// The service's `ef_search` values to measure (the default first).
    efs: Vec<u32>,
    keep: bool,
}

/// The nearest face of `collection`, by the service at `ef_search` (`Some`) or exactly
/// (`None`), and how long the query took (ms).
async fn nearest(
    pool: &PgPool,
    ef_search: Option<u32>,
    collection: Uuid,
    emb: &Embedding,
) -> anyhow::Result<(Option<Uuid>, f64)> {
    let t = Instant::now();
    let top = match ef_search {
        Some(ef_search) => {
            let settings = Settings {
                ef_search,
                ..SETTINGS
            };
            visage_backend::store::search::nearest(pool, collection, emb, settings, LIMIT, false)
                .await?
                .first()
                .map(|h| h.face_id)
        }
        None => {
            let mut tx = pool.begin().await?;
            sqlx::query("SET LOCAL enable_indexscan = off")
                .execute(&mut *tx)
                .await?;
            let id: Option<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT f.id FROM faces f WHERE f.collection_id = $2 AND f.model_id = $3
                 AND EXISTS (SELECT 1 FROM active_consents ac WHERE ac.person_id = f.person_id)
                 ORDER BY f.embedding <=> $1 LIMIT {LIMIT}"
            )))
            .bind(pgvector::Vector::from(emb.vector().to_vec()))
            .bind(collection)
            .bind(EMBEDDER_ID)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            id
        }
    };
    Ok((top, t.elapsed().as_secs_f64() * 1000.0))
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Opts {
        small: 100,
        per_small: 10_000,
        big: 1_000_000,
        probes: 200,
        efs: vec![SETTINGS.ef_search],
        keep: false,
    };
    let mut i = 0;
    while i < args.len() {
        let value = || -> anyhow::Result<usize> {
            args.get(i + 1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("{} needs a number", args[i]))
        };
        match args[i].as_str() {
            "--small" => o.small = value()?,
            "--per-small" => o.per_small = value()?,
            "--big" => o.big = value()?,
            "--probes" => o.probes = value()?,
            "--ef" => {
                o.efs = args
                    .get(i + 1)
                    .map(|l| l.split(',').map(str::parse).collect::<Result<_, _>>())
                    .transpose()?
                    .ok_or_else(|| anyhow::anyhow!("--ef needs a list such as 150,400"))?;
            }
            "--keep" => {
                o.keep = true;
                i -= 1;
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
        i += 2;
    }
    let base = db::resolve_url(&DbArgs {
        database_url: std::env::var("DATABASE_URL").ok().map(Into::into),
    })
    .await?;
    let Some((server, _)) = base.rsplit_once('/') else {
        anyhow::bail!("odd database URL");
    };
    let name = format!(
        "visage_bench_collections_{}x{}_{}",
        o.small, o.per_small, o.big
    );
    let url = format!("{server}/{name}");
    db::create_database_if_missing(&url).await?;
    let pool = db::connect(&url, 2).await?;
    db::migrate(&pool).await?;
    let loaded: i64 = sqlx::query_scalar("SELECT count(*) FROM faces")
        .fetch_one(&pool)
        .await?;
    let total = o.small * o.per_small + o.big;
    // The centres are regenerated from the seed whether or not the data is loaded.
    let mut collections: Vec<(Uuid, String, Vec<Vec<f32>>)> = Vec::new();
    let t = Instant::now();
    let fresh = loaded as usize != total;
    if fresh {
        sqlx::query("TRUNCATE faces, consents, people CASCADE")
            .execute(&pool)
            .await?;
        sqlx::query("DELETE FROM collections WHERE name LIKE 'bench-%'")
            .execute(&pool)
            .await?;
    }
    for k in 0..=o.small {
        let (name, faces) = if k == o.small {
            ("bench-big".to_string(), o.big)
        } else {
            (format!("bench-{k}"), o.per_small)
        };
        let id = Uuid::from_u128(0xbe_0000 + k as u128);
        if fresh {
            // An empty graph left by an earlier run would slow the load down (and be kept).
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP INDEX IF EXISTS {}",
                hnsw::index_name(id)
            )))
            .execute(&pool)
            .await?;
        }
        let centres = if fresh {
            load_collection(&pool, k, id, &name, faces).await?
        } else {
            centres_of(k, faces)
        };
        collections.push((id, name, centres));
    }
    // The graphs (the big collection's) are built when the data is new, or when an earlier run
    // was stopped while building them (the faces are kept, the graph is not there): what the
    // service's background job does, without CONCURRENTLY (nothing else writes here), with
    // the whole graph in memory.
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let built = hnsw::build_missing(
        &pool,
        SETTINGS.exact_max_faces,
        &hnsw::BuildOptions {
            concurrently: false,
            memory: "8GB".into(),
        },
    )
    .await?;
    if !built.is_empty() {
        sqlx::query("VACUUM ANALYZE faces").execute(&pool).await?;
        sqlx::query("ANALYZE").execute(&pool).await?;
        let built_s = t.elapsed().as_secs_f64();
        if fresh {
            println!(
                "loaded {total} faces in {load_s:.0} s, {} HNSW graph(s) built in {built_s:.0} s",
                built.len()
            );
        } else {
            println!(
                "{total} faces kept from an earlier run, {} HNSW graph(s) built in {built_s:.0} s",
                built.len()
            );
        }
    }
    // Probes: fresh samples of enrolled identities, half in small collections, half in the
    // big one.
    let mut probe_rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut rows = Vec::new();
    for (label, pick_big) in [("small collection", false), ("big collection", true)] {
        let mut per_method: Vec<(Option<u32>, usize, Vec<f64>)> = std::iter::once(None)
            .chain(o.efs.iter().copied().map(Some))
            .map(|m| (m, 0, Vec::new()))
            .collect();
        // The exact answers first, then each ef_search in a pass of its own: an exact scan of
        // the big collection reads its whole table through shared buffers, which would
        // otherwise evict the graph's pages before every service query.
        let mut probes = Vec::with_capacity(o.probes);
        for _ in 0..o.probes {
            let c = if pick_big {
                o.small
            } else {
                probe_rng.random_range(0..o.small)
            };
            let (id, _, centres) = &collections[c];
            let k = probe_rng.random_range(0..centres.len());
            let emb = Embedding::new(EMBEDDER_ID, noisy(&mut probe_rng, &centres[k]))?;
            let (truth, ms) = nearest(&pool, None, *id, &emb).await?;
            per_method[0].2.push(ms);
            per_method[0].1 += 1;
            probes.push((*id, emb, truth));
        }
        for m in per_method.iter_mut().skip(1) {
            // A warm-up pass, not counted.
            for (id, emb, _) in &probes {
                nearest(&pool, m.0, *id, emb).await?;
            }
            for (id, emb, truth) in &probes {
                let (top, ms) = nearest(&pool, m.0, *id, emb).await?;
                m.2.push(ms);
                m.1 += usize::from(top == *truth);
            }
        }
        for (ef, hits, mut ms) in per_method {
            let method = ef.map_or("exact".to_string(), |ef| format!("service, ef_search {ef}"));
            rows.push(format!(
                "| {label} | {method} | {:.3} | {:.2} | {:.2} |",
                hits as f64 / o.probes as f64,
                percentile(&mut ms, 0.5),
                percentile(&mut ms, 0.99)
            ));
        }
    }
    println!(
        "\n{} collections x {} faces + 1 x {} faces ({total} faces; an HNSW graph m=16 ef_construction=128 for each collection over {} faces), {} probes each",
        o.small, o.per_small, o.big, SETTINGS.exact_max_faces, o.probes
    );
    println!("\n| probes in | method | recall@1 | p50 (ms) | p99 (ms) |\n|---|---|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    pool.close().await;
    if !o.keep {
        let admin = db::connect(&format!("{server}/postgres"), 1).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&admin)
        .await?;
    }
    Ok(())
}
