//! One database size's run: its database created (or a kept one reused), loaded and indexed,
//! then the query phase (exact ground truth, warm-up, HNSW passes, timed exact pass), giving
//! the result rows and the figures of the build.

use std::str::FromStr;
use std::time::Instant;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use visage_backend::db;

use crate::Opts;
use crate::data::{Data, centres, data_stats, probes};
use crate::passes::{Row, pass, row};
use crate::populate::{INDEX, build_index, load};
use crate::server_stats::{Mem, block_stats, loadavg, server_mem};

pub(crate) struct Build {
    pub(crate) size: usize,
    pub(crate) reused: bool,
    pub(crate) load_s: Option<f64>,
    pub(crate) build_s: f64,
    pub(crate) peak_pss_mb: Option<f64>,
    pub(crate) table_mb: f64,
    pub(crate) index_mb: f64,
    pub(crate) mem_after_warm: Mem,
    pub(crate) mem_after: Mem,
    pub(crate) load: String,
}

pub(crate) async fn run_size(
    server: &str,
    n: usize,
    o: &Opts,
    rows: &mut Vec<Row>,
) -> anyhow::Result<Build> {
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
