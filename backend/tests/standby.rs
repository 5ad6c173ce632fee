//! Hot standbys of the embedded server (issue 15): a standby replays the primary's writes
//! (pgvector included), refuses its own, refuses connections once killed, and its folder goes
//! with its handle; a second one runs beside it, and a name's leftover folder is wiped.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use visage_backend::embedded::{self, EmbeddedPostgres, Standby};

/// Starts a standby off the runtime (it blocks for seconds).
async fn start_standby(pg: &EmbeddedPostgres, name: &str) -> embedded::Standby {
    let (pg, name) = (pg.clone(), name.to_string());
    tokio::task::spawn_blocking(move || pg.start_standby(&name))
        .await
        .expect("join")
        .expect("the standby starts")
}

/// Runs `f` on the standby off the runtime and gives the standby back.
async fn blocking(standby: Standby, f: impl FnOnce(&Standby) + Send + 'static) -> Standby {
    tokio::task::spawn_blocking(move || {
        f(&standby);
        standby
    })
    .await
    .expect("join")
}

/// Polls the standby until row `id` of `items` is there (replication is asynchronous).
async fn wait_for_row(standby: &mut PgConnection, id: i32) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let note: Option<String> = sqlx::query_scalar("SELECT note FROM items WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *standby)
            .await
            .expect("read on the standby");
        if let Some(note) = note {
            return note;
        }
        assert!(
            Instant::now() < deadline,
            "row {id} not replicated within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_standby_replays_the_primary_read_only_and_dies_when_killed() {
    let t0 = Instant::now();
    let pg = tokio::task::spawn_blocking(embedded::acquire_for_process)
        .await
        .expect("join")
        .expect("embedded PostgreSQL starts")
        .0;
    let admin = PgConnectOptions::from_str(&pg.url("postgres").expect("url")).expect("valid URL");
    let db = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = admin.connect().await.expect("connect to the primary");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    let mut primary = admin.clone().database(&db).connect().await.expect("db");
    for sql in [
        "CREATE EXTENSION vector",
        "CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL, v vector(3))",
    ] {
        sqlx::query(sql).execute(&mut primary).await.expect(sql);
    }

    // A folder left by a run that crashed under this name must not get in the way.
    let name = format!("test-{}", std::process::id());
    let leftover = pg.base_dir().join("standbys").join(&name).join("data");
    std::fs::create_dir_all(&leftover).expect("leftover folder");
    std::fs::write(leftover.join("PG_VERSION"), "16\n").expect("leftover file");

    let t_start = Instant::now();
    let standby = start_standby(&pg, &name).await;
    let start_secs = t_start.elapsed().as_secs_f64();
    assert_ne!(standby.port(), pg.port().expect("primary port"));
    assert!(standby.data_dir().join("standby.signal").exists());

    sqlx::query("INSERT INTO items VALUES (1, 'written on the primary', '[1,2,3]')")
        .execute(&mut primary)
        .await
        .expect("insert on the primary");
    let standby_opts = PgConnectOptions::from_str(&standby.url(&db)).expect("standby URL");
    let mut replica = standby_opts
        .connect()
        .await
        .expect("connect to the standby");
    assert_eq!(
        wait_for_row(&mut replica, 1).await,
        "written on the primary"
    );
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut replica)
        .await
        .expect("pg_is_in_recovery");
    assert!(in_recovery, "the standby is in recovery");

    // pgvector works there: the literal, the replicated column and its operators.
    let literal: String = sqlx::query_scalar("SELECT '[1,2,3]'::vector::text")
        .fetch_one(&mut replica)
        .await
        .expect("vector literal on the standby");
    assert_eq!(literal, "[1,2,3]");
    let distance: f64 = sqlx::query_scalar("SELECT v <-> '[1,2,4]' FROM items WHERE id = 1")
        .fetch_one(&mut replica)
        .await
        .expect("vector distance on the standby");
    assert!((distance - 1.0).abs() < 1e-9, "{distance}");

    // Read-only: SQLSTATE 25006 (read_only_sql_transaction).
    let err = sqlx::query("INSERT INTO items VALUES (2, 'written on the standby', NULL)")
        .execute(&mut replica)
        .await
        .expect_err("a write on the standby fails");
    let code = err
        .as_database_error()
        .and_then(|e| e.code().map(|c| c.into_owned()));
    assert_eq!(code.as_deref(), Some("25006"), "{err}");

    // One name, one standby; another name runs beside it.
    let pg2 = pg.clone();
    let same = tokio::task::spawn_blocking({
        let name = name.clone();
        move || pg2.start_standby(&name)
    })
    .await
    .expect("join");
    assert!(
        same.is_err_and(|e| e.to_string().contains("in use")),
        "a second standby of one name is refused"
    );
    let second = start_standby(&pg, &format!("{name}-b")).await;
    assert_ne!(second.port(), standby.port());
    sqlx::query("INSERT INTO items VALUES (3, 'for both', NULL)")
        .execute(&mut primary)
        .await
        .expect("insert on the primary");
    let mut replica2 = PgConnectOptions::from_str(&second.url(&db))
        .expect("URL")
        .connect()
        .await
        .expect("connect to the second standby");
    assert_eq!(wait_for_row(&mut replica2, 3).await, "for both");
    assert_eq!(wait_for_row(&mut replica, 3).await, "for both");
    let _ = replica2.close().await;
    let second_dir = second.data_dir();
    tokio::task::spawn_blocking(move || drop(second))
        .await
        .expect("join");
    assert!(!second_dir.exists(), "dropping a standby deletes its data");
    let second_lock = pg.base_dir().join(format!("standbys/{name}-b.lock"));
    assert!(!second_lock.exists(), "and its lock file");

    // A crash: the postmaster gets SIGKILL, connections are refused from then on.
    let standby = blocking(standby, |s| s.kill().expect("kill the standby")).await;
    drop(replica);
    let refused = standby_opts.connect().await;
    assert!(refused.is_err(), "a killed standby refuses connections");
    let data = standby.data_dir();
    assert!(
        data.exists(),
        "a killed standby keeps its data until dropped"
    );
    tokio::task::spawn_blocking(move || drop(standby))
        .await
        .expect("join");
    assert!(!data.exists(), "dropping a killed standby deletes its data");

    let _ = primary.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE \"{db}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .expect("drop the test database");
    let _ = conn.close().await;
    eprintln!(
        "standby test: first standby ready in {start_secs:.1} s, whole test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
