//! Reads from PostgreSQL hot standbys (streaming replication), writes to the primary.
//!
//! Recognition, verification and listing read through [`ReadRouter::read`]: on a replica that
//! is fresh enough, else on the primary. Freshness is measured in WAL positions, not times (an
//! idle primary writes nothing, and a replica that replayed everything is fresh however long
//! ago that was):
//!
//! - a monitor samples the primary's `pg_current_wal_lsn()` and each replica's
//!   `pg_last_wal_replay_lsn()` every [`POLL`]; a replica is *fresh* when it has replayed what
//!   the primary had written `max_lag` ago, and *lagging* otherwise; one that does not answer,
//!   or is not in recovery, is *down*. Lagging and down replicas take no reads until a later
//!   sample says otherwise.
//! - **read your writes**: after a key writes, the router keeps the primary's position; that
//!   key's reads go to a replica only once it has replayed past it (else to the primary), so a
//!   recognition right after an enrollment by the same key sees the enrollment.
//! - a read that fails on a replica (killed, restarted, a query cancelled by recovery) marks it
//!   down and runs again on the primary: the caller never sees the replica fail.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

/// How often the monitor samples the WAL positions.
pub const POLL: Duration = Duration::from_millis(200);

/// A write position not known yet (the primary did not say): past every replica.
const UNKNOWN: i64 = i64::MAX;

/// The longest a sample query may take before its server counts as down.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(1);

/// How a replica stands, as readiness reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaStatus {
    /// Not sampled yet.
    Unknown,
    /// Within the lag bound: takes reads.
    Fresh,
    /// Behind the lag bound: skipped.
    Lagging,
    /// Unreachable, or not a standby: skipped.
    Down,
}

/// One replica in the readiness report (never its URL: it holds a password).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplicaReport {
    /// `replica-0`, `replica-1`, ... in the order of `--read-replica`.
    pub name: String,
    pub status: ReplicaStatus,
    /// Bytes of WAL the replica had not replayed at the last sample.
    pub behind_bytes: Option<i64>,
    /// Reads it served since the service started.
    pub reads: u64,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    status: ReplicaStatus,
    replayed: Option<i64>,
    behind: Option<i64>,
}

struct Replica {
    name: String,
    pool: PgPool,
    sample: Mutex<Sample>,
    reads: AtomicU64,
}

/// Routes reads to fresh replicas and writes (and reads that must see them) to the primary.
pub struct ReadRouter {
    primary: PgPool,
    replicas: Vec<Replica>,
    max_lag: Duration,
    /// The primary's WAL position over the last `max_lag` and a bit, oldest first.
    history: Mutex<VecDeque<(Instant, i64)>>,
    /// The primary's position after each key's last write (read your writes).
    last_write: Mutex<HashMap<Uuid, i64>>,
    /// The primary's position after the last erasure: no one reads from a replica that has
    /// not replayed it, so an erased face stops matching everywhere at once.
    last_erasure: AtomicI64,
    /// An erasure whose position is not known yet: no replica reads meanwhile.
    erasure_pending: AtomicBool,
    next: AtomicUsize,
    primary_reads: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind: keep using it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReadRouter {
    /// A router over `primary` and `replicas` (pools that connect lazily: a replica that is
    /// down at start-up delays nothing), skipping replicas more than `max_lag` behind.
    pub fn new(primary: PgPool, replicas: Vec<PgPool>, max_lag: Duration) -> Arc<Self> {
        Arc::new(Self {
            primary,
            replicas: replicas
                .into_iter()
                .enumerate()
                .map(|(i, pool)| Replica {
                    name: format!("replica-{i}"),
                    pool,
                    sample: Mutex::new(Sample {
                        status: ReplicaStatus::Unknown,
                        replayed: None,
                        behind: None,
                    }),
                    reads: AtomicU64::new(0),
                })
                .collect(),
            max_lag,
            history: Mutex::new(VecDeque::new()),
            last_write: Mutex::new(HashMap::new()),
            last_erasure: AtomicI64::new(0),
            erasure_pending: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            primary_reads: AtomicU64::new(0),
        })
    }

    /// Whether any replica is configured.
    pub fn has_replicas(&self) -> bool {
        !self.replicas.is_empty()
    }

    /// Runs the read `f` for `key` on a fresh replica that has replayed the key's last write
    /// (round robin), else on the primary. A failure on a replica marks it down and runs `f`
    /// again on the primary.
    pub async fn read<T, F, Fut>(&self, key: Option<Uuid>, f: F) -> Result<T, sqlx::Error>
    where
        F: Fn(PgPool) -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        if let Some(r) = self.pick(key) {
            match f(r.pool.clone()).await {
                Ok(v) => {
                    r.reads.fetch_add(1, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => {
                    tracing::warn!(replica = %r.name, error = %e, "read failed on a replica: it is skipped, the primary answers");
                    lock(&r.sample).status = ReplicaStatus::Down;
                }
            }
        }
        self.primary_reads.fetch_add(1, Ordering::Relaxed);
        f(self.primary.clone()).await
    }

    fn pick(&self, key: Option<Uuid>) -> Option<&Replica> {
        if self.replicas.is_empty() || self.erasure_pending.load(Ordering::SeqCst) {
            return None;
        }
        let own = key.and_then(|k| lock(&self.last_write).get(&k).copied());
        let needed = own
            .unwrap_or(0)
            .max(self.last_erasure.load(Ordering::Relaxed));
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.replicas.len())
            .map(|i| &self.replicas[(start + i) % self.replicas.len()])
            .find(|r| {
                let s = *lock(&r.sample);
                s.status == ReplicaStatus::Fresh && s.replayed.is_some_and(|p| p >= needed)
            })
    }

    /// Records that `key` just wrote (call after the commit): its reads stay on the primary
    /// until a replica has replayed this far. Without replicas, nothing to do.
    pub async fn wrote(&self, key: Uuid) {
        if self.replicas.is_empty() {
            return;
        }
        match primary_position(&self.primary).await {
            Ok(lsn) => {
                lock(&self.last_write).insert(key, lsn);
            }
            // Position unknown: the key reads from the primary until the monitor's next sample
            // of the primary (taken after this write) stands in for it.
            Err(_) => {
                lock(&self.last_write).insert(key, UNKNOWN);
            }
        }
    }

    /// Records an erasure (a person, a face, a withdrawal; call after the commit): until a
    /// replica has replayed it, every key's reads go elsewhere, so no replica can still match
    /// what was erased.
    pub async fn erased(&self) {
        if self.replicas.is_empty() {
            return;
        }
        match primary_position(&self.primary).await {
            Ok(lsn) => {
                self.last_erasure.fetch_max(lsn, Ordering::Relaxed);
            }
            // Position unknown: no replica reads until the monitor learns a primary position
            // taken after this erasure.
            Err(_) => self.erasure_pending.store(true, Ordering::SeqCst),
        }
    }

    /// The replicas as readiness reports them, and the reads the primary served.
    pub fn report(&self) -> (Vec<ReplicaReport>, u64) {
        let replicas = self
            .replicas
            .iter()
            .map(|r| {
                let s = *lock(&r.sample);
                ReplicaReport {
                    name: r.name.clone(),
                    status: s.status,
                    behind_bytes: s.behind,
                    reads: r.reads.load(Ordering::Relaxed),
                }
            })
            .collect();
        (replicas, self.primary_reads.load(Ordering::Relaxed))
    }

    /// Samples the WAL positions every [`POLL`] while the router lives (no task without
    /// replicas).
    pub fn spawn_monitor(self: &Arc<Self>) {
        if self.replicas.is_empty() {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(router) = weak.upgrade() else { return };
                router.sample().await;
            }
        });
    }

    /// One sample of every server.
    pub async fn sample(&self) {
        let Ok(Ok(now)) =
            tokio::time::timeout(SAMPLE_TIMEOUT, primary_position(&self.primary)).await
        else {
            // Without the primary's position nothing can be judged; reads keep their routes
            // (and fail over to the primary, which is down too, as they would anyway).
            return;
        };
        let target = {
            let mut h = lock(&self.history);
            let t = Instant::now();
            h.push_back((t, now));
            // Keep the newest sample that is at least max_lag old, and everything after it.
            while h.len() > 1 && h[1].0 + self.max_lag <= t {
                h.pop_front();
            }
            // The primary's position max_lag ago (or the oldest known, early on).
            h.front().map_or(now, |s| s.1)
        };
        self.resolve_unknown_positions().await;
        let mut lowest = i64::MAX;
        for r in &self.replicas {
            let replayed = tokio::time::timeout(SAMPLE_TIMEOUT, replayed_position(&r.pool)).await;
            let sample = match replayed {
                Ok(Ok(Some(p))) => Sample {
                    status: if p >= target {
                        ReplicaStatus::Fresh
                    } else {
                        ReplicaStatus::Lagging
                    },
                    replayed: Some(p),
                    behind: Some((now - p).max(0)),
                },
                // Not in recovery (a promoted or misconfigured server), or unreachable.
                _ => Sample {
                    status: ReplicaStatus::Down,
                    replayed: None,
                    behind: None,
                },
            };
            if let Some(p) = sample.replayed {
                lowest = lowest.min(p);
            }
            let mut s = lock(&r.sample);
            if s.status != sample.status {
                tracing::info!(replica = %r.name, from = ?s.status, to = ?sample.status, behind_bytes = ?sample.behind, "replica status");
            }
            *s = sample;
        }
        // Writes every replica has replayed need no more tracking.
        lock(&self.last_write).retain(|_, lsn| *lsn > lowest);
    }
}

impl ReadRouter {
    /// Writes and erasures whose position the primary did not give: a position read after
    /// they are seen here is past them (they committed before they were recorded).
    async fn resolve_unknown_positions(&self) {
        let keys: Vec<Uuid> = lock(&self.last_write)
            .iter()
            .filter(|(_, lsn)| **lsn == UNKNOWN)
            .map(|(k, _)| *k)
            .collect();
        let erasure = self.erasure_pending.swap(false, Ordering::SeqCst);
        if keys.is_empty() && !erasure {
            return;
        }
        match primary_position(&self.primary).await {
            Ok(after) => {
                let mut writes = lock(&self.last_write);
                for k in keys {
                    if let Some(lsn) = writes.get_mut(&k).filter(|l| **l == UNKNOWN) {
                        *lsn = after;
                    }
                }
                if erasure {
                    self.last_erasure.fetch_max(after, Ordering::Relaxed);
                }
            }
            Err(_) if erasure => self.erasure_pending.store(true, Ordering::SeqCst),
            Err(_) => {}
        }
    }
}

/// The primary's current WAL write position, in bytes.
async fn primary_position(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS "lsn!""#)
        .fetch_one(pool)
        .await
}

/// How far a standby has replayed, in bytes; `None` when the server is not in recovery.
async fn replayed_position(pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT CASE WHEN pg_is_in_recovery() THEN (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint END AS "lsn""#
    )
    .fetch_one(pool)
    .await
}
