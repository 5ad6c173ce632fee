//! Benchmark of recognition throughput (issue 15): the primary alone, then with one hot
//! standby taking the reads, in the same run and on the same data.
//!
//! A gallery of synthetic faces (`synthetic`) is loaded into a database of the embedded
//! PostgreSQL, a standby of it is started (pg_basebackup on loopback), and the service runs
//! in-process twice: without and with `--read-replica`. Each time, `--clients` concurrent
//! clients send `POST /v1/recognize` (one probe embedding of an enrolled identity) for
//! `--seconds`; the run prints requests per second, latency percentiles and who served the
//! reads.
//!
//! ```text
//! VISAGE_PG_DIR=/var/tmp/visage-bench-pg cargo run --release -p visage-backend \
//!   --example bench_replicas -- [--faces 50000] [--clients 4] [--seconds 20]
//! ```

#[path = "synthetic/mod.rs"]
mod synthetic;

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use visage_backend::configuration::ServeArgs;
use visage_backend::domain::{DEFAULT_COLLECTION, DEFAULT_COLLECTION_ID, Scopes};
use visage_backend::startup::Application;
use visage_backend::{auth, db, embedded};
use visage_shared::model::EMBEDDER_ID;

use synthetic::{centres_of, load_collection, noisy};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the load against `base` and returns (requests, seconds, p50, p99, failures).
async fn load(
    base: &str,
    key: &str,
    centres: &[Vec<f32>],
    clients: usize,
    seconds: u64,
) -> (usize, f64, f64, f64, usize) {
    let stop = Instant::now() + Duration::from_secs(seconds);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (url, key, centres) = (
            format!("{base}/v1/recognize"),
            key.to_string(),
            centres.to_vec(),
        );
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
            let (mut lat, mut failed) = (Vec::new(), 0);
            while Instant::now() < stop {
                let k = rng.random_range(0..centres.len());
                let probe = noisy(&mut rng, &centres[k]);
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({ "embeddings": [{ "model": EMBEDDER_ID, "vector": probe }] }))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    _ => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    let (mut lat, mut failed) = (Vec::new(), 0);
    for task in tasks {
        if let Ok((l, f)) = task.await {
            lat.extend(l);
            failed += f;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let n = lat.len();
    let (p50, p99) = if n > 0 {
        (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99))
    } else {
        (f64::NAN, f64::NAN)
    };
    (n, secs, p50, p99, failed)
}

async fn readiness(base: &str) -> anyhow::Result<Value> {
    Ok(reqwest::get(format!("{base}/readyz")).await?.json().await?)
}

/// CPU seconds used so far by the PostgreSQL server whose data directory is `data`: its
/// postmaster, the children it reaped, and its live children (the backends of the pools).
fn server_cpu(data: &std::path::Path) -> f64 {
    let Some(pid) = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
    else {
        return f64::NAN;
    };
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // Fields after the command name: state ppid ... utime(14) stime(15) cutime(16) cstime(17).
    let fields = |p: &str| -> Option<Vec<String>> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        Some(rest.split_whitespace().map(str::to_string).collect())
    };
    let ticks = |f: &[String], from: usize, to: usize| -> f64 {
        (from..=to)
            .filter_map(|i| f.get(i - 3).and_then(|x| x.parse::<f64>().ok()))
            .sum()
    };
    let mut total = fields(&pid.to_string()).map_or(0.0, |f| ticks(&f, 14, 17));
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(f) = fields(&name)
                && f.get(1).is_some_and(|ppid| *ppid == pid.to_string())
            {
                total += ticks(&f, 14, 17);
            }
        }
    }
    total / tick
}

/// CPU seconds used so far by this process (the service and the load clients).
fn own_cpu() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut faces, mut clients, mut seconds) = (50_000usize, 4usize, 20u64);
    let mut i = 0;
    while i < args.len() {
        let v = args
            .get(i + 1)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("{} needs a number", args[i]))?;
        match args[i].as_str() {
            "--faces" => faces = v as usize,
            "--clients" => clients = v as usize,
            "--seconds" => seconds = v,
            other => anyhow::bail!("unknown argument {other}"),
        }
        i += 2;
    }
    let pg = tokio::task::spawn_blocking(embedded::acquire_for_process)
        .await??
        .0;
    let server = pg.url("postgres")?;
    let server = server.trim_end_matches("/postgres");
    let name = format!("visage_bench_replicas_{faces}");
    let url = format!("{server}/{name}");
    db::create_database_if_missing(&url).await?;
    let pool = db::connect(&url, 20).await?;
    db::migrate(&pool).await?;
    let loaded: i64 = sqlx::query_scalar("SELECT count(*) FROM faces WHERE collection_id = $1")
        .bind(DEFAULT_COLLECTION_ID)
        .fetch_one(&pool)
        .await?;
    // The default collection (where the key below searches), loaded once and kept: a later
    // run reuses it.
    let centres = if loaded as usize == faces {
        centres_of(0, faces)
    } else {
        sqlx::query("TRUNCATE faces, consents, people CASCADE")
            .execute(&pool)
            .await?;
        // Loaded without a graph (faster), which is built below.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP INDEX IF EXISTS {}",
            visage_backend::store::hnsw::index_name(DEFAULT_COLLECTION_ID)
        )))
        .execute(&pool)
        .await?;
        let c = load_collection(&pool, 0, DEFAULT_COLLECTION_ID, DEFAULT_COLLECTION, faces).await?;
        sqlx::query("VACUUM ANALYZE faces").execute(&pool).await?;
        c
    };
    // The collection's HNSW graph (past the exact-search bound), as the service's background
    // job builds it; a no-op when a kept run built it already.
    visage_backend::store::hnsw::build_missing(
        &pool,
        visage_backend::configuration::DEFAULT_EXACT_SEARCH_MAX_FACES,
        &visage_backend::store::hnsw::BuildOptions {
            concurrently: false,
            memory: "1GB".into(),
        },
    )
    .await?;
    let (key, _) = auth::create_key(&pool, "bench", &Scopes::all(), None, None).await?;
    let standby = {
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || pg.start_standby("bench-replicas")).await??
    };
    println!(
        "{faces} faces in collection {DEFAULT_COLLECTION}, {clients} clients, {seconds} s per run, ef_search {} (one primary and one hot standby on this machine's {} cores)",
        visage_backend::configuration::DEFAULT_EF_SEARCH,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "\n| reads served by | requests/s | p50 (ms) | p99 (ms) | failed | replica reads | primary reads | load avg |\n|---|---:|---:|---:|---:|---:|---:|---|"
    );
    let mut cpu_rows = Vec::new();
    for with_standby in [false, true] {
        let args = ServeArgs {
            port: 0,
            rate_per_minute: 10_000_000,
            web_dir: std::env::temp_dir().join("visage-bench-no-web"),
            read_replicas: if with_standby {
                vec![standby.url(&name).into()]
            } else {
                Vec::new()
            },
            ..ServeArgs::default()
        };
        let app = Application::build(&args, pool.clone()).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        if with_standby {
            let deadline = Instant::now() + Duration::from_secs(30);
            while readiness(&base).await?["replicas"][0]["status"] != "fresh" {
                anyhow::ensure!(Instant::now() < deadline, "the standby never became fresh");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // Warm-up, then the measured run.
        load(&base, &key, &centres, clients, 3).await;
        let before = readiness(&base).await?;
        let cpu = |d: &std::path::Path| server_cpu(d);
        let (p0, s0, o0) = (cpu(&pg.data_dir()), cpu(&standby.data_dir()), own_cpu());
        let (n, secs, p50, p99, failed) = load(&base, &key, &centres, clients, seconds).await;
        let (p1, s1, o1) = (cpu(&pg.data_dir()), cpu(&standby.data_dir()), own_cpu());
        cpu_rows.push(format!(
            "| {} | {:.2} | {:.2} | {:.2} |",
            if with_standby {
                "the standby"
            } else {
                "the primary"
            },
            1000.0 * (p1 - p0) / n as f64,
            1000.0 * (s1 - s0) / n as f64,
            1000.0 * (o1 - o0) / n as f64
        ));
        let after = readiness(&base).await?;
        let reads = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        println!(
            "| {} | {:.0} | {p50:.1} | {p99:.1} | {failed} | {} | {} | {} |",
            if with_standby {
                "the standby (primary: keys, audit)"
            } else {
                "the primary"
            },
            n as f64 / secs,
            reads(&after, "/replicas/0/reads") - reads(&before, "/replicas/0/reads"),
            reads(&after, "/primary_reads") - reads(&before, "/primary_reads"),
            loadavg()
        );
        let _ = stop.send(());
        let _ = server.await;
    }
    println!(
        "\nCPU per request (ms):\n\n| reads served by | primary | standby | service and clients |\n|---|---:|---:|---:|"
    );
    for r in cpu_rows {
        println!("{r}");
    }
    drop(standby);
    pool.close().await;
    tokio::task::spawn_blocking(embedded::release_for_process).await?;
    Ok(())
}
