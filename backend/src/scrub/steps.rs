//! One scrub on its own connection: the wait for older transactions, the VACUUMs, the WAL
//! switch and checkpoint, and the catalog reads (the size of `faces`, the server's WAL
//! retention settings).

use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use super::{ScrubConfig, ScrubError, ScrubReport};

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
pub(super) async fn scrub_once(
    pool: &PgPool,
    cfg: &ScrubConfig,
) -> Result<ScrubReport, ScrubError> {
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
    // Both values are checked (an integer, a number with a unit: `ScrubConfig::from_lookup`),
    // not user text.
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
