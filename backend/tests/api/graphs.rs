//! A collection past the exact-search bound gets its own HNSW graph (a partial index of its
//! faces, `store::hnsw`) and recognition goes through it; until then it is searched exactly.
//! (Every other test's gallery is below the bound: the exact path.)

use std::time::{Duration, Instant};

use visage_backend::configuration::ServeArgs;
use visage_backend::domain::DEFAULT_COLLECTION_ID;
use visage_backend::store::hnsw;

use crate::helpers::{TestApp, consent, spawn_app_with, vector};

/// The bound of this test: small enough for a quick gallery.
const EXACT_MAX: i64 = 20;

/// Index scans of the collection's graph so far, as the statistics show them (the service's
/// connections report theirs within about 10 s of going idle).
async fn graph_scans(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce((SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = $1), -1)",
    )
    .bind(hnsw::index_name(DEFAULT_COLLECTION_ID))
    .fetch_one(&app.pool)
    .await
    .expect("statistics")
}

fn top(v: &serde_json::Value) -> String {
    v["results"][0]["candidates"][0]["person_id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_large_collection_is_searched_through_its_own_graph() {
    let app = spawn_app_with(ServeArgs {
        port: 0,
        rate_per_minute: 1_000_000,
        exact_search_max_faces: EXACT_MAX,
        // The test builds the graph itself, at a known moment.
        index_interval_secs: 3600,
        web_dir: std::env::temp_dir().join(format!("visage-no-web-{}", uuid::Uuid::new_v4())),
        ..ServeArgs::default()
    })
    .await;
    let opts = hnsw::BuildOptions {
        concurrently: true,
        memory: "64MB".into(),
    };
    let mut people = Vec::new();
    for i in 0..EXACT_MAX as usize {
        let id = app.create_person(&format!("Person {i}"), consent()).await;
        assert_eq!(app.add_faces(id, &[vector(i, i, 0.1)]).await.status(), 201);
        people.push(id);
    }
    // At the bound: no graph is due.
    assert!(
        hnsw::build_missing(&app.pool, EXACT_MAX, &opts)
            .await
            .expect("build")
            .is_empty()
    );
    for i in EXACT_MAX as usize..EXACT_MAX as usize + 10 {
        let id = app.create_person(&format!("Person {i}"), consent()).await;
        assert_eq!(app.add_faces(id, &[vector(i, i, 0.1)]).await.status(), 201);
        people.push(id);
    }
    // Past it, before the graph exists: searched exactly, the right person all the same.
    assert_eq!(
        top(&app.recognize(&vector(7, 500, 0.2)).await),
        people[7].to_string()
    );
    assert_eq!(graph_scans(&app).await, -1, "no graph yet");
    // Two service processes looking at once (as two instances on one database would): one
    // builds, the other leaves it alone.
    let (a, b) = tokio::join!(
        hnsw::build_missing(&app.pool, EXACT_MAX, &opts),
        hnsw::build_missing(&app.pool, EXACT_MAX, &opts)
    );
    let mut built = a.expect("build");
    built.extend(b.expect("build"));
    assert_eq!(built, [DEFAULT_COLLECTION_ID]);
    // Built once: the next look finds it valid.
    assert!(
        hnsw::build_missing(&app.pool, EXACT_MAX, &opts)
            .await
            .expect("build")
            .is_empty()
    );
    let mut conn = app.pool.acquire().await.expect("connection");
    assert!(
        hnsw::has_graph(&mut conn, DEFAULT_COLLECTION_ID)
            .await
            .expect("graph")
    );
    drop(conn);
    // The service measures a collection at most every 30 s: wait for it to see the graph,
    // searching meanwhile (every answer right), until the graph's scans count goes up.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut round = 0;
    loop {
        let k = round % people.len();
        let v = app.recognize(&vector(k, 600 + round, 0.2)).await;
        assert_eq!(top(&v), people[k].to_string(), "round {round}");
        if graph_scans(&app).await > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "recognition never went through the collection's graph"
        );
        round += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Enrolments go on into the graph, and are found through it.
    let late = app.create_person("Late Person", consent()).await;
    assert_eq!(
        app.add_faces(late, &[vector(99, 99, 0.1)]).await.status(),
        201
    );
    assert_eq!(
        top(&app.recognize(&vector(99, 700, 0.2)).await),
        late.to_string()
    );
}
