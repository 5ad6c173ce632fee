//! Erasure that reaches the disk: the post-erasure scrub.
//!
//! `DELETE` only marks rows dead. PostgreSQL's plain `VACUUM` then compacts each page
//! (`PageRepairFragmentation`) without zeroing the space it frees, so a deleted name or
//! embedding can stay in the table's file until a later insert happens to overwrite it; a
//! `VACUUM` of a big table may also skip its indexes altogether ("index scan bypassed" when
//! under 2% of the pages have dead rows). The scrub removes those bytes from the table and
//! index files of the database:
//!
//! 1. `VACUUM FULL people`, `VACUUM FULL consents` (small rows): each table and its indexes
//!    and TOAST are rewritten into new files; the old files are truncated to zero at commit and
//!    unlinked at the next checkpoint.
//! 2. `faces`: with at most [`ScrubConfig::faces_full_max_rows`] rows, `VACUUM FULL faces`
//!    (which also rebuilds the HNSW index). Above it, where a rewrite would hold an exclusive
//!    lock for minutes, `VACUUM (INDEX_CLEANUP ON) faces`: online; pgvector's HNSW vacuum
//!    zeroes the vector of every deleted element in place, so the index no longer holds the
//!    embedding, but the table's freed space may keep it until reused or the next rewrite
//!    (docs/erasure.md says how long and what to run).
//! 3. `VACUUM FULL pg_statistic`: column statistics may hold sampled names and vectors taken
//!    before the migration that stopped collecting them (`20261130100001`).
//! 4. `pg_switch_wal()` and `CHECKPOINT`: dirty pages reach the disk, the old files are
//!    unlinked, and the WAL segments written before the scrub (they hold the rows as they were
//!    inserted and full-page images of their pages) are no longer needed, so the checkpoint
//!    removes or recycles them (docs/erasure.md).
//!
//! [`after_erasure`] is what an erasure calls once committed: it never blocks nor fails, and
//! schedules one scrub per database, debounced: [`ScrubConfig::delay`] after the first erasure
//! (a burst, such as the purge of expired consents, shares one scrub) and at most one start per
//! [`ScrubConfig::min_interval`]. [`scrub_now`] runs it at once (serialised with the background
//! one); [`settled`] waits until none is pending or running.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::sync::Notify;

/// Settings of the scrub, from the environment ([`ScrubConfig::from_env`]).
#[derive(Debug, Clone)]
pub struct ScrubConfig {
    /// Wait after an erasure before scrubbing, so that a burst shares one scrub
    /// (`VISAGE_SCRUB_DELAY_SECS`, default 2).
    pub delay: Duration,
    /// At most one scrub starts per this interval and database
    /// (`VISAGE_SCRUB_MIN_INTERVAL_SECS`, default 60).
    pub min_interval: Duration,
    /// `faces` is rewritten (`VACUUM FULL`, with its HNSW index) up to this many rows; above,
    /// it is vacuumed in place (`VISAGE_SCRUB_FACES_FULL_MAX_ROWS`, default 10000: the rewrite
    /// holds an exclusive lock, so recognition waits, for 3 to 8 s at 10,000 faces on 2 cores,
    /// 24 s at 20,000, 147 s at 100,000; docs/erasure.md).
    pub faces_full_max_rows: i64,
    /// How long a statement of the scrub waits for a lock before giving up (and retrying after
    /// `min_interval`), so that it never queues the service behind a long transaction
    /// (`VISAGE_SCRUB_LOCK_TIMEOUT_MS`, default 5000).
    pub lock_timeout: Duration,
    /// `maintenance_work_mem` of the scrub's session: the HNSW rebuild of `VACUUM FULL faces`
    /// is several times slower when the graph does not fit (`VISAGE_SCRUB_MAINTENANCE_WORK_MEM`,
    /// default `256MB`).
    pub maintenance_work_mem: String,
    /// Whether to close the current WAL segment before the checkpoint, so that the segments
    /// holding the erased rows are released at once (`VISAGE_SCRUB_SWITCH_WAL`, default on;
    /// `0`/`off`/`false` turns it off).
    pub switch_wal: bool,
    /// How long the scrub waits for the transactions of other sessions that began before it
    /// (`VISAGE_SCRUB_SNAPSHOT_WAIT_SECS`, default 30): while one runs, VACUUM must keep the
    /// rows it may still see, erased ones included, and VACUUM FULL would copy them into the
    /// new file. After the wait the scrub fails and is retried.
    pub snapshot_wait: Duration,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        Self {
            delay: Duration::from_secs(2),
            min_interval: Duration::from_secs(60),
            faces_full_max_rows: 10_000,
            lock_timeout: Duration::from_millis(5000),
            maintenance_work_mem: "256MB".into(),
            switch_wal: true,
            snapshot_wait: Duration::from_secs(30),
        }
    }
}

impl ScrubConfig {
    /// The defaults, overridden by the `VISAGE_SCRUB_*` variables that parse.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let d = Self::default();
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<u64>().ok());
        let mem = get("VISAGE_SCRUB_MAINTENANCE_WORK_MEM")
            .map(|v| v.trim().to_string())
            .filter(|v| valid_memory_setting(v))
            .unwrap_or(d.maintenance_work_mem);
        Self {
            delay: num("VISAGE_SCRUB_DELAY_SECS").map_or(d.delay, Duration::from_secs),
            min_interval: num("VISAGE_SCRUB_MIN_INTERVAL_SECS")
                .map_or(d.min_interval, Duration::from_secs),
            faces_full_max_rows: num("VISAGE_SCRUB_FACES_FULL_MAX_ROWS")
                .map_or(d.faces_full_max_rows, |n| n.min(i64::MAX as u64) as i64),
            lock_timeout: num("VISAGE_SCRUB_LOCK_TIMEOUT_MS")
                .map_or(d.lock_timeout, Duration::from_millis),
            maintenance_work_mem: mem,
            switch_wal: get("VISAGE_SCRUB_SWITCH_WAL").map_or(d.switch_wal, |v| {
                !matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "0" | "off" | "false" | "no"
                )
            }),
            snapshot_wait: num("VISAGE_SCRUB_SNAPSHOT_WAIT_SECS")
                .map_or(d.snapshot_wait, Duration::from_secs),
        }
    }
}

/// A number with an optional unit kB, MB, GB (formatted into a `SET`, so nothing else).
fn valid_memory_setting(v: &str) -> bool {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && ["", "kB", "MB", "GB"].contains(&&v[digits..])
}

/// Why a scrub did not run to the end (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum ScrubError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(
        "{0} transaction(s) of other sessions begun before the scrub still run after {1:?}; \
         their snapshots keep the erased rows"
    )]
    OlderTransactions(i64, Duration),
}

/// What one scrub did.
#[derive(Debug, Clone)]
pub struct ScrubReport {
    /// Rows of `faces` (the planner's estimate, or a count when there is none).
    pub faces_rows: i64,
    /// Whether `faces` was rewritten (`VACUUM FULL`) rather than vacuumed in place.
    pub faces_rewritten: bool,
    /// Whether the current WAL segment was closed (`pg_switch_wal`).
    pub wal_switched: bool,
    /// Whether a checkpoint ran (needs superuser or `pg_checkpoint`).
    pub checkpointed: bool,
    /// Steps that could not run (missing privileges), for the log.
    pub warnings: Vec<String>,
    /// Server settings that keep WAL (and so the erased rows in it) beyond the checkpoint.
    pub wal_retention: Vec<String>,
    /// Time spent waiting for older transactions of other sessions to end.
    pub waited: Duration,
    /// Wall time of each step, in order.
    pub steps: Vec<(String, Duration)>,
}

/// Runs one statement outside a transaction (VACUUM cannot run in one) and times it. (The
/// maintenance statements cannot be prepared, so the query macros cannot check them: plain
/// `raw_sql`. The catalog queries below are checked ones.)
async fn step(
    conn: &mut PgConnection,
    report: &mut ScrubReport,
    sql: &'static str,
) -> Result<(), sqlx::Error> {
    let t = Instant::now();
    sqlx::raw_sql(sql).execute(&mut *conn).await?;
    report.steps.push((sql.to_string(), t.elapsed()));
    Ok(())
}

/// A step that needs privileges the service's role may lack: failure is a warning.
async fn optional_step(
    conn: &mut PgConnection,
    report: &mut ScrubReport,
    sql: &'static str,
) -> bool {
    match step(conn, report, sql).await {
        Ok(()) => true,
        Err(e) => {
            report.warnings.push(format!("{sql}: {e}"));
            false
        }
    }
}

/// The scrub itself, on its own connection (its settings never reach the pool).
async fn scrub_once(pool: &PgPool, cfg: &ScrubConfig) -> Result<ScrubReport, ScrubError> {
    let mut conn = pool
        .connect_options()
        .as_ref()
        .clone()
        .application_name("visage-scrub")
        .connect()
        .await?;
    let res = scrub_on(&mut conn, cfg).await;
    let _ = conn.close().await;
    res
}

/// Waits until no other session of this database runs a transaction (or holds a prepared one)
/// that began before this call. Such a transaction holds back the horizon below which VACUUM
/// may remove deleted rows (a backup by `pg_dump`, for one, holds a snapshot for its whole run).
async fn wait_for_older_transactions(
    conn: &mut PgConnection,
    wait: Duration,
) -> Result<(), ScrubError> {
    let deadline = Instant::now() + wait;
    let started = sqlx::query_scalar!(r#"SELECT clock_timestamp() AS "now!""#)
        .fetch_one(&mut *conn)
        .await?;
    loop {
        let older = sqlx::query_scalar!(
            r#"SELECT (SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()
                       AND xact_start < $1
                       AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL))
                  + (SELECT count(*) FROM pg_prepared_xacts
                     WHERE database = current_database() AND prepared < $1) AS "older!""#,
            started
        )
        .fetch_one(&mut *conn)
        .await?;
        if older == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ScrubError::OlderTransactions(older, wait));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn scrub_on(conn: &mut PgConnection, cfg: &ScrubConfig) -> Result<ScrubReport, ScrubError> {
    // Both values are checked above (an integer, a number with a unit), not user text.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET lock_timeout = {}; SET maintenance_work_mem = '{}'",
        cfg.lock_timeout.as_millis().max(1),
        cfg.maintenance_work_mem
    )))
    .execute(&mut *conn)
    .await?;
    let mut report = ScrubReport {
        faces_rows: 0,
        faces_rewritten: false,
        wal_switched: false,
        checkpointed: false,
        warnings: Vec::new(),
        wal_retention: Vec::new(),
        waited: Duration::ZERO,
        steps: Vec::new(),
    };
    let t = Instant::now();
    wait_for_older_transactions(conn, cfg.snapshot_wait).await?;
    report.waited = t.elapsed();
    step(conn, &mut report, "VACUUM FULL people").await?;
    step(conn, &mut report, "VACUUM FULL consents").await?;
    let estimate =
        sqlx::query_scalar!("SELECT reltuples FROM pg_class WHERE oid = 'faces'::regclass")
            .fetch_one(&mut *conn)
            .await?;
    // -1: never vacuumed nor analysed (a new gallery), so count.
    report.faces_rows = if estimate >= 0.0 {
        estimate as i64
    } else {
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM faces"#)
            .fetch_one(&mut *conn)
            .await?
    };
    if report.faces_rows <= cfg.faces_full_max_rows {
        step(conn, &mut report, "VACUUM FULL faces").await?;
        report.faces_rewritten = true;
    } else {
        // INDEX_CLEANUP ON: without it a VACUUM that finds few dead rows skips the index,
        // and the HNSW element (with its vector) stays.
        step(conn, &mut report, "VACUUM (INDEX_CLEANUP ON) faces").await?;
    }
    // Database owner or superuser; otherwise PostgreSQL skips it with a warning.
    optional_step(conn, &mut report, "VACUUM FULL pg_catalog.pg_statistic").await;
    if cfg.switch_wal {
        report.wal_switched =
            optional_step(conn, &mut report, "SELECT pg_catalog.pg_switch_wal()").await;
    }
    report.checkpointed = optional_step(conn, &mut report, "CHECKPOINT").await;
    match wal_retention(conn).await {
        Ok(r) => report.wal_retention = r,
        Err(e) => report.warnings.push(format!("WAL settings: {e}")),
    }
    Ok(report)
}

/// What, on this server, keeps WAL segments after the checkpoint that no longer needs them.
async fn wal_retention(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT current_setting('wal_recycle') AS "recycle!", current_setting('archive_mode') AS "archive!",
                current_setting('wal_keep_size') AS "keep!", (SELECT count(*) FROM pg_replication_slots) AS "slots!""#
    )
    .fetch_one(&mut *conn)
    .await?;
    let (recycle, archive, keep, slots) = (r.recycle, r.archive, r.keep, r.slots);
    let mut out = Vec::new();
    if recycle == "on" {
        out.push(
            "wal_recycle is on: released WAL segments are renamed for reuse and keep their \
             content until the WAL reaches them again (wal_recycle=off unlinks them)"
                .to_string(),
        );
    }
    if archive != "off" {
        out.push(format!(
            "archive_mode is {archive}: archived WAL keeps erased rows as long as the archive"
        ));
    }
    if keep != "0" {
        out.push(format!(
            "wal_keep_size is {keep}: that much WAL is kept for standbys"
        ));
    }
    if slots > 0 {
        out.push(format!(
            "{slots} replication slot(s): WAL is kept until their consumers have read it"
        ));
    }
    Ok(out)
}

#[derive(Default)]
struct Slot {
    /// An erasure committed since the last scrub started.
    pending: bool,
    /// A background worker is alive for this database.
    worker: bool,
    /// A scrub runs.
    running: bool,
    last_start: Option<Instant>,
}

struct DbScrub {
    key: String,
    slot: Mutex<Slot>,
    /// Serialises the scrubs of one database.
    run: tokio::sync::Mutex<()>,
    /// Woken whenever a scrub or a worker ends.
    changed: Notify,
}

impl DbScrub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn idle(&self) -> bool {
        let s = self.lock();
        !s.pending && !s.worker && !s.running
    }
}

/// One entry per database (host, port, name): several pools may share a database, and tests
/// run many databases in one process.
fn db_scrub(pool: &PgPool) -> Arc<DbScrub> {
    static ALL: OnceLock<Mutex<HashMap<String, Arc<DbScrub>>>> = OnceLock::new();
    let o = pool.connect_options();
    let key = format!(
        "{}:{}/{}",
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or_default()
    );
    let mut all = ALL
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    all.entry(key.clone())
        .or_insert_with(|| {
            Arc::new(DbScrub {
                key,
                slot: Mutex::new(Slot::default()),
                run: tokio::sync::Mutex::new(()),
                changed: Notify::new(),
            })
        })
        .clone()
}

/// Runs one scrub of `db`, serialised with the others; every erasure committed before it
/// starts is covered.
async fn run_serialised(
    pool: &PgPool,
    db: &DbScrub,
    cfg: &ScrubConfig,
) -> Result<ScrubReport, ScrubError> {
    let _run = db.run.lock().await;
    {
        let mut s = db.lock();
        s.pending = false;
        s.running = true;
        s.last_start = Some(Instant::now());
    }
    // Reset even if this future is dropped half-way (a runtime that ends).
    struct Running<'a>(&'a DbScrub);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.lock().running = false;
            self.0.changed.notify_waiters();
        }
    }
    let _running = Running(db);
    let t = Instant::now();
    let res = scrub_once(pool, cfg).await;
    metrics::histogram!("visage_scrub_seconds").record(t.elapsed().as_secs_f64());
    match &res {
        Ok(r) => {
            metrics::counter!("visage_scrub_total", "outcome" => "ok").increment(1);
            tracing::info!(
                database = %db.key,
                seconds = t.elapsed().as_secs_f64(),
                faces_rows = r.faces_rows,
                faces_rewritten = r.faces_rewritten,
                checkpointed = r.checkpointed,
                wal_switched = r.wal_switched,
                "post-erasure scrub done"
            );
            for w in &r.warnings {
                tracing::warn!(database = %db.key, "post-erasure scrub: {w}");
            }
            // Server settings: said once per process.
            static TOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !r.wal_retention.is_empty() && !TOLD.swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                for w in &r.wal_retention {
                    tracing::warn!("erased rows may stay in the WAL: {w}");
                }
            }
        }
        Err(e) => {
            metrics::counter!("visage_scrub_total", "outcome" => "error").increment(1);
            tracing::warn!(database = %db.key, error = %e, "post-erasure scrub failed; retried later");
            db.lock().pending = true;
        }
    }
    res
}

/// Schedules a scrub of `pool`'s database after a committed erasure (or a deleted face).
/// Returns at once and never fails: the scrub runs in the background on the current tokio
/// runtime, debounced as [`ScrubConfig`] says, and is retried after a failure.
pub fn after_erasure(pool: &PgPool) {
    let db = db_scrub(pool);
    let spawn = {
        let mut s = db.lock();
        s.pending = true;
        !std::mem::replace(&mut s.worker, true)
    };
    if !spawn {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        db.lock().worker = false;
        tracing::warn!("post-erasure scrub not scheduled: no tokio runtime");
        return;
    };
    let pool = pool.clone();
    rt.spawn(async move {
        // Clears `worker` if the task ends abnormally (its runtime shuts down); a normal end
        // clears it under the lock where it saw nothing pending.
        struct Worker(Arc<DbScrub>, bool);
        impl Drop for Worker {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.lock().worker = false;
                }
                self.0.changed.notify_waiters();
            }
        }
        impl Worker {
            /// Ends the worker if nothing is pending (covered by a scrub, ours or
            /// `scrub_now`'s). Under the lock, so a new erasure sees `worker == false` and
            /// starts another worker.
            fn finish_if_idle(&mut self) -> bool {
                let mut s = self.0.lock();
                if s.pending {
                    return false;
                }
                s.worker = false;
                self.1 = true;
                true
            }
        }
        let mut w = Worker(db, false);
        let cfg = config();
        loop {
            let wait = {
                let s = w.0.lock();
                let since = s.last_start.map(|t| t.elapsed());
                let spacing = since.map_or(Duration::ZERO, |e| cfg.min_interval.saturating_sub(e));
                cfg.delay.max(spacing)
            };
            tokio::time::sleep(wait).await;
            if w.finish_if_idle() {
                break;
            }
            let _ = run_serialised(&pool, &w.0, cfg).await;
            if w.finish_if_idle() {
                break;
            }
        }
    });
}

fn config() -> &'static ScrubConfig {
    static CFG: OnceLock<ScrubConfig> = OnceLock::new();
    CFG.get_or_init(ScrubConfig::from_env)
}

/// Scrubs `pool`'s database now with the settings of the environment, after any scrub already
/// running; covers every erasure committed before it starts.
pub async fn scrub_now(pool: &PgPool) -> Result<ScrubReport, ScrubError> {
    scrub_with(pool, config()).await
}

/// [`scrub_now`] with explicit settings (`faces_full_max_rows` chooses the way for `faces`).
pub async fn scrub_with(pool: &PgPool, cfg: &ScrubConfig) -> Result<ScrubReport, ScrubError> {
    let db = db_scrub(pool);
    let res = run_serialised(pool, &db, cfg).await;
    if res.is_err() {
        // Leave it to a background worker to retry.
        after_erasure(pool);
    }
    res
}

/// Waits until no scrub of `pool`'s database is pending or running (at once if none is).
pub async fn settled(pool: &PgPool) {
    let db = db_scrub(pool);
    loop {
        let changed = db.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if db.idle() {
            return;
        }
        changed.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_environment() {
        let c = ScrubConfig::from_lookup(|_| None);
        assert_eq!(c.delay, Duration::from_secs(2));
        assert_eq!(c.faces_full_max_rows, 10_000);
        assert!(c.switch_wal);
        let c = ScrubConfig::from_lookup(|k| {
            Some(
                match k {
                    "VISAGE_SCRUB_DELAY_SECS" => "0",
                    "VISAGE_SCRUB_FACES_FULL_MAX_ROWS" => "500",
                    "VISAGE_SCRUB_SWITCH_WAL" => "off",
                    "VISAGE_SCRUB_MAINTENANCE_WORK_MEM" => "1GB; DROP TABLE faces",
                    _ => "x",
                }
                .to_string(),
            )
        });
        assert_eq!(c.delay, Duration::ZERO);
        assert_eq!(c.min_interval, Duration::from_secs(60));
        assert_eq!(c.faces_full_max_rows, 500);
        assert!(!c.switch_wal);
        assert_eq!(c.maintenance_work_mem, "256MB");
        assert!(valid_memory_setting("512MB") && valid_memory_setting("65536"));
        assert!(!valid_memory_setting("MB") && !valid_memory_setting("1 GB"));
    }
}
