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

mod data;
mod passes;
mod populate;
mod run_size;
mod server_stats;

use std::str::FromStr;

use visage_backend::{configuration::DbArgs, db};

use data::{Data, centres, data_stats};
use run_size::run_size;
use server_stats::loadavg;

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
