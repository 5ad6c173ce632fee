//! Read replicas (issue 15) on a real hot standby of the embedded PostgreSQL (pg_basebackup,
//! streaming replication on loopback): reads are served by the standby, a key reads its own
//! writes, a lagging standby is skipped, an erasure stops matching at once, and killing the
//! standby under load fails no request.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::postgres::PgPoolOptions;
use visage_backend::configuration::ServeArgs;
use visage_backend::embedded::{self, Standby};

use crate::helpers::{MODEL, TestApp, consent, fresh_database, spawn_app_on, vector};

/// The readiness report: (replica-0's status, its reads, the primary's reads).
async fn readiness(app: &TestApp) -> (String, u64, u64) {
    let v: Value = app.get_public("/readyz").await.json().await.expect("json");
    let r = &v["replicas"][0];
    (
        r["status"].as_str().unwrap_or("?").to_string(),
        r["reads"].as_u64().unwrap_or(0),
        v["primary_reads"].as_u64().unwrap_or(0),
    )
}

/// Waits (10 s at most) until replica-0 has status `want`.
async fn wait_for_status(app: &TestApp, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, _) = readiness(app).await;
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica still {status}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether recognizing `v` with `key` matches `person`.
async fn matches(app: &TestApp, key: &str, v: &[f32], person: &str) -> bool {
    let r = app
        .post_json(
            key,
            "/v1/recognize",
            &json!({ "embeddings": [{ "model": MODEL, "vector": v }] }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    v["results"][0]["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .any(|c| c["match"] == true && c["person_id"] == person)
}

/// Enrolls a person with face `v` using the admin key; returns the id.
async fn enroll(app: &TestApp, name: &str, v: &[f32]) -> String {
    let p = app.create_person_as(&app.admin_key, name, consent()).await;
    let id = p["id"].as_str().expect("id").to_string();
    let r = app
        .post_json(
            &app.admin_key,
            &format!("/v1/people/{id}/faces"),
            &json!({ "embeddings": [{ "model": MODEL, "vector": v }] }),
        )
        .await;
    assert_eq!(r.status(), 201);
    id
}

/// Pauses or resumes WAL replay on the standby (what a standby far behind looks like).
async fn replay(standby_url: &str, run: bool) {
    let mut c = sqlx::PgConnection::connect(standby_url)
        .await
        .expect("connect to the standby");
    let sql = if run {
        "SELECT pg_wal_replay_resume()"
    } else {
        "SELECT pg_wal_replay_pause()"
    };
    sqlx::query(sql).execute(&mut c).await.expect(sql);
    let _ = c.close().await;
}

#[tokio::test]
async fn reads_go_to_a_fresh_standby_and_fail_over_to_the_primary() {
    if std::env::var("DATABASE_URL").is_ok() {
        eprintln!("skipped: the standby is made from the embedded server, not DATABASE_URL's");
        return;
    }
    let pg = tokio::task::spawn_blocking(embedded::acquire_for_process)
        .await
        .expect("join")
        .expect("embedded PostgreSQL")
        .0;
    let opts = fresh_database().await;
    let db = opts.get_database().expect("database name").to_string();
    let name = format!("api-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let standby: Standby = tokio::task::spawn_blocking(move || pg.start_standby(&name))
        .await
        .expect("join")
        .expect("the standby starts");
    let standby_url = standby.url(&db);
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .connect_with(opts)
        .await
        .expect("pool");
    let app = spawn_app_on(
        ServeArgs {
            port: 0,
            rate_per_minute: 1_000_000,
            web_dir: std::env::temp_dir().join("visage-no-web-replicas"),
            read_replicas: vec![standby_url.clone().into()],
            replica_max_lag_ms: 500,
            ..ServeArgs::default()
        },
        pool,
    )
    .await;
    wait_for_status(&app, "fresh").await;

    // Reads go to the standby: recognitions by a key that wrote nothing.
    let ann = enroll(&app, "Ann", &vector(1, 1, 0.05)).await;
    let ann_probe = vector(1, 2, 0.05);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches(&app, &app.recognize_key, &ann_probe, &ann).await {
        assert!(Instant::now() < deadline, "the standby never showed Ann");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, replica_before, _) = readiness(&app).await;
    for _ in 0..10 {
        assert!(matches(&app, &app.recognize_key, &ann_probe, &ann).await);
    }
    let (_, replica_after, _) = readiness(&app).await;
    assert!(
        replica_after >= replica_before + 10,
        "the standby served {} of 10 reads",
        replica_after - replica_before
    );

    // With replay paused the standby falls behind: a key reads its own enrollment at once
    // (from the primary), and after the lag bound every key is served by the primary.
    replay(&standby_url, false).await;
    let bob = enroll(&app, "Bob", &vector(2, 1, 0.05)).await;
    let bob_probe = vector(2, 2, 0.05);
    assert!(
        matches(&app, &app.admin_key, &bob_probe, &bob).await,
        "a key did not read its own write"
    );
    wait_for_status(&app, "lagging").await;
    let (_, _, primary_before) = readiness(&app).await;
    assert!(matches(&app, &app.recognize_key, &bob_probe, &bob).await);
    let (_, _, primary_after) = readiness(&app).await;
    assert!(
        primary_after > primary_before,
        "a lagging standby served a read"
    );

    // An erasure stops matching everywhere at once, even where the standby is behind.
    replay(&standby_url, true).await;
    wait_for_status(&app, "fresh").await;
    replay(&standby_url, false).await;
    let r = app
        .delete(&app.admin_key, &format!("/v1/people/{ann}"))
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        !matches(&app, &app.recognize_key, &ann_probe, &ann).await,
        "an erased person matched on a replica"
    );
    replay(&standby_url, true).await;
    wait_for_status(&app, "fresh").await;

    // The standby killed under load: no request fails; readiness says it is down.
    let stop = Instant::now() + Duration::from_secs(3);
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, url, key, probe) = (
            app.client.clone(),
            app.url("/v1/recognize"),
            app.recognize_key.clone(),
            bob_probe.clone(),
        );
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while Instant::now() < stop {
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({ "embeddings": [{ "model": MODEL, "vector": probe }] }))
                    .send()
                    .await
                    .expect("request");
                if r.status() == 200 {
                    ok += 1;
                } else {
                    failed.push(format!(
                        "{}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ));
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, served_before_kill, _) = readiness(&app).await;
    let standby = tokio::task::spawn_blocking(move || {
        standby.kill().expect("kill the standby");
        standby
    })
    .await
    .expect("join");
    let (mut ok, mut failed) = (0, Vec::new());
    for t in load {
        let (o, f) = t.await.expect("load task");
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 20, "only {ok} requests under load");
    assert!(
        served_before_kill > replica_after,
        "the standby served nothing under load"
    );
    wait_for_status(&app, "down").await;
    // Readiness is about the primary (and the models): a dead replica is reported, not fatal.
    let v: Value = app.get_public("/readyz").await.json().await.expect("json");
    assert_eq!(v["database"], true, "{v}");
    assert_eq!(v["replicas"][0]["status"], "down", "{v}");
    assert!(matches(&app, &app.recognize_key, &bob_probe, &bob).await);
    drop(standby);
}
