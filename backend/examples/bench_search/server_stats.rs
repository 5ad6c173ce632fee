//! What the run measures on the server besides latency: the load average, the memory of the
//! server's processes (from /proc, so the server must be local) and the index and heap blocks
//! read from outside shared buffers.

use sqlx::PgPool;

pub(crate) fn loadavg() -> String {
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
pub(crate) struct Mem {
    pub(crate) pss: f64,
    pub(crate) rss_sum: f64,
    pub(crate) backend_shmem: f64,
}

pub(crate) fn server_mem(backend: u32) -> Mem {
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
pub(crate) async fn block_stats(pool: &PgPool) -> anyhow::Result<(i64, i64, i64)> {
    // Flush this backend's pending statistics, then read them (pool of one connection).
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await?;
    let r: (i64, i64, i64) = sqlx::query_as(
        "SELECT coalesce((SELECT idx_blks_read FROM pg_statio_user_indexes WHERE indexrelname = $1), 0),
                coalesce((SELECT idx_blks_hit FROM pg_statio_user_indexes WHERE indexrelname = $1), 0),
                coalesce((SELECT heap_blks_read FROM pg_statio_user_tables WHERE relname = 'faces'), 0)",
    )
    .bind(crate::populate::INDEX)
    .fetch_one(pool)
    .await?;
    Ok(r)
}
