use futures::future::join_all;
use serde_json::json;

use crate::helpers::{consent, spawn_app, vector};

#[tokio::test]
async fn fifty_concurrent_enrollments_stay_consistent() {
    let app = spawn_app().await;
    let tasks = (0..50).map(|i| {
        let app = &app;
        async move {
            let r = app
                .post_json(
                    &app.enroll_key,
                    "/v1/people",
                    &json!({ "name": format!("Concurrent {i}"), "consent": consent() }),
                )
                .await;
            assert_eq!(r.status(), 201);
            let v: serde_json::Value = r.json().await.expect("json");
            let id: uuid::Uuid = v["id"].as_str().expect("id").parse().expect("uuid");
            let r = app
                .add_faces(id, &[vector(i, i + 1, 0.1), vector(i, i + 2, 0.1)])
                .await;
            assert_eq!(r.status(), 201);
            (i, id)
        }
    });
    let people = join_all(tasks).await;
    let counts = app.counts().await;
    assert_eq!(counts[0], 50, "people");
    assert_eq!(counts[1], 50, "consents");
    assert_eq!(counts[2], 100, "faces");
    let per_person: Vec<i64> = sqlx::query_scalar("SELECT count(*) FROM faces GROUP BY person_id")
        .fetch_all(&app.pool)
        .await
        .expect("group");
    assert!(per_person.iter().all(|&n| n == 2));
    // Each one is found as itself (distinct axes for i < 50).
    for (i, id) in people.into_iter().step_by(7) {
        let v = app.recognize(&vector(i, i + 1, 0.1)).await;
        assert_eq!(
            v["results"][0]["candidates"][0]["person_id"],
            id.to_string()
        );
    }
}
