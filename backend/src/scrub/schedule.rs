//! Scheduling: one entry per database, the debounced background worker that
//! [`after_erasure`] starts, and the serialised runs of [`scrub_now`], [`scrub_with`] and
//! [`settled`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Notify;

use super::config::config;
use super::steps::scrub_once;
use super::{ScrubConfig, ScrubError, ScrubReport};

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
