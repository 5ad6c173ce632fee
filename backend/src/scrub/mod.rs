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
//!
//! The settings are in `config`, the statements of one scrub in `steps`, and the per-database
//! scheduling in `schedule`.

use std::time::Duration;

mod config;
mod schedule;
mod steps;

pub use config::ScrubConfig;
pub use schedule::{after_erasure, scrub_now, scrub_with, settled};

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
