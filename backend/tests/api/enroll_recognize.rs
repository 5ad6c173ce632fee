use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{MODEL, assert_problem, consent, spawn_app, vector};

#[tokio::test]
async fn enroll_recognize_erase_then_no_match_and_rows_gone() {
    let app = spawn_app().await;
    let ada = app.create_person("Ada", consent()).await;
    let bob = app.create_person("Bob", consent()).await;
    assert_eq!(
        app.add_faces(ada, &[vector(10, 11, 0.2), vector(10, 12, 0.2)])
            .await
            .status(),
        201
    );
    assert_eq!(
        app.add_faces(bob, &[vector(50, 51, 0.2)]).await.status(),
        201
    );

    let v = app.recognize(&vector(10, 13, 0.3)).await;
    let top = &v["results"][0]["candidates"][0];
    assert_eq!(top["person_id"], ada.to_string());
    assert_eq!(top["name"], "Ada");
    assert_eq!(top["match"], true);
    assert!(top["similarity"].as_f64().is_some_and(|s| s > 0.9));
    assert!(top["false_match_rate"].is_number());
    // Bob is far away: a recognize key is not told about him at all (SECURITY.md)...
    assert_eq!(
        v["results"][0]["candidates"].as_array().map(Vec::len),
        Some(1)
    );
    // ...an admin key sees him as a candidate without a match.
    let r = app
        .post_json(
            &app.admin_key,
            "/v1/recognize",
            &json!({ "embeddings": [{ "model": MODEL, "vector": vector(10, 13, 0.3) }] }),
        )
        .await;
    let v: Value = r.json().await.expect("json");
    let second = &v["results"][0]["candidates"][1];
    assert_eq!(second["person_id"], bob.to_string());
    assert_eq!(second["match"], false);

    let r = app
        .delete(&app.admin_key, &format!("/v1/people/{ada}"))
        .await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["faces_deleted"], 2);

    let v = app.recognize(&vector(10, 13, 0.3)).await;
    assert!(
        v["results"][0]["candidates"]
            .as_array()
            .expect("array")
            .iter()
            .all(|c| c["person_id"] != ada.to_string())
    );
    let id = ada.to_string();
    for (table, col) in [
        ("people", "id"),
        ("consents", "person_id"),
        ("faces", "person_id"),
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE {col}::text = $1"
        )))
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .expect("count");
        assert_eq!(n, 0, "{table} still holds the person");
    }
    // The audit log keeps the erasure, without the name.
    let rows: Vec<(String, Option<Value>)> =
        sqlx::query_as("SELECT action, detail FROM audit_log WHERE subject = $1")
            .bind(&id)
            .fetch_all(&app.pool)
            .await
            .expect("audit");
    assert!(rows.iter().any(|(a, _)| a == "erase_person"));
    let all: Vec<String> = sqlx::query_scalar("SELECT row_to_json(a)::text FROM audit_log a")
        .fetch_all(&app.pool)
        .await
        .expect("audit");
    assert!(
        all.iter().all(|r| !r.contains("Ada")),
        "no name in the audit log"
    );
    // Erasing again: 404.
    let r = app
        .delete(&app.admin_key, &format!("/v1/people/{ada}"))
        .await;
    assert_problem(r, 404, "not_found").await;
}

#[tokio::test]
async fn withdrawing_consent_erases() {
    let app = spawn_app().await;
    let p = app.create_person("Carol", consent()).await;
    assert_eq!(app.add_faces(p, &[vector(3, 4, 0.1)]).await.status(), 201);
    let r = app
        .post_json(
            &app.admin_key,
            &format!("/v1/people/{p}/consent/withdraw"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let counts = app.counts().await;
    assert_eq!(&counts[..3], &[0, 0, 0]);
    let v = app.recognize(&vector(3, 4, 0.1)).await;
    assert_eq!(
        v["results"][0]["candidates"].as_array().map(Vec::len),
        Some(0)
    );
}

#[tokio::test]
async fn expired_consent_stops_matching_at_once_and_is_purged() {
    let app = spawn_app().await;
    let mut c = consent();
    c["expires_at"] = json!((chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339());
    let p = app.create_person("Dave", c).await;
    assert_eq!(app.add_faces(p, &[vector(7, 8, 0.1)]).await.status(), 201);
    let v = app.recognize(&vector(7, 8, 0.1)).await;
    assert_eq!(v["results"][0]["candidates"][0]["match"], true);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let v = app.recognize(&vector(7, 8, 0.1)).await;
    assert_eq!(
        v["results"][0]["candidates"].as_array().map(Vec::len),
        Some(0),
        "expired consent still matched: {v}"
    );
    // Enrolling more faces is refused too.
    assert_problem(
        app.add_faces(p, &[vector(7, 9, 0.1)]).await,
        409,
        "consent_inactive",
    )
    .await;
    let r = app.post_json(&app.recognize_key, "/v1/verify", &json!({ "person_id": p, "embedding": { "model": MODEL, "vector": vector(7, 8, 0.1) } })).await;
    assert_problem(r, 409, "consent_inactive").await;
    // The purge job erases them.
    assert_eq!(
        visage_backend::purge::purge_expired(&app.pool)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(&app.counts().await[..3], &[0, 0, 0]);
}

#[tokio::test]
async fn verify_one_to_one_and_delete_face() {
    let app = spawn_app().await;
    let p = app.create_person("Eve", consent()).await;
    let r = app.add_faces(p, &[vector(20, 21, 0.1)]).await;
    let added: Value = r.json().await.expect("json");
    let face = added["face_ids"][0].as_str().expect("face id").to_string();
    let r = app.post_json(&app.recognize_key, "/v1/verify", &json!({ "person_id": p, "embedding": { "model": MODEL, "vector": vector(20, 22, 0.1) } })).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["match"], true);
    let r = app.post_json(&app.recognize_key, "/v1/verify", &json!({ "person_id": p, "embedding": { "model": MODEL, "vector": vector(90, 91, 0.1) } })).await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["match"], false);
    let r = app
        .delete(&app.enroll_key, &format!("/v1/people/{p}/faces/{face}"))
        .await;
    assert_eq!(r.status(), 204);
    let r = app.post_json(&app.recognize_key, "/v1/verify", &json!({ "person_id": p, "embedding": { "model": MODEL, "vector": vector(20, 22, 0.1) } })).await;
    assert_problem(r, 409, "no_faces").await;
}

#[tokio::test]
async fn threshold_and_top_k_per_request() {
    let app = spawn_app().await;
    for i in 0..4 {
        let p = app.create_person(&format!("P{i}"), consent()).await;
        app.add_faces(p, &[vector(30 + i, 100, 0.5)]).await;
    }
    let r = app
        .post_json(&app.admin_key, "/v1/recognize", &json!({ "embeddings": [{ "model": MODEL, "vector": vector(30, 100, 0.5) }], "top_k": 2, "threshold": 0.99 }))
        .await;
    let v: Value = r.json().await.expect("json");
    let c = v["results"][0]["candidates"]
        .as_array()
        .expect("candidates");
    assert_eq!(c.len(), 2);
    assert_eq!(c[0]["match"], true);
    assert_eq!(c[1]["match"], false);
    assert!(c[0]["similarity"].as_f64() >= c[1]["similarity"].as_f64());
}

#[tokio::test]
async fn an_operating_point_by_false_match_rate_maps_through_the_calibration() {
    let app = spawn_app().await;
    let ada = app.create_person("Ada", consent()).await;
    assert_eq!(
        app.add_faces(ada, &[vector(10, 11, 0.2)]).await.status(),
        201
    );
    let probe = json!([{ "model": MODEL, "vector": vector(10, 13, 0.3) }]);
    let expected = visage_shared::model::threshold_for_false_match_rate(0.01)
        .expect("the calibration vouches for 1e-2");
    let r = app
        .post_json(
            &app.admin_key,
            "/v1/recognize",
            &json!({ "embeddings": probe, "max_false_match_rate": 0.01 }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert!((v["threshold"].as_f64().expect("threshold") - f64::from(expected)).abs() < 1e-6);
    assert_eq!(v["results"][0]["candidates"][0]["match"], true);
    // Below what the calibration's 14,245 impostor pairs can vouch for: refused, naming the
    // floor.
    let r = app
        .post_json(
            &app.admin_key,
            "/v1/recognize",
            &json!({ "embeddings": probe, "max_false_match_rate": 0.0001 }),
        )
        .await;
    let p = assert_problem(r, 422, "false_match_rate_unresolvable").await;
    assert!(
        p["extra"]["lowest_vouched_false_match_rate"]
            .as_f64()
            .is_some_and(|f| f > 0.0001)
    );
    // Verification takes the same operating point.
    let r = app
        .post_json(
            &app.admin_key,
            "/v1/verify",
            &json!({ "person_id": ada, "embedding": probe[0], "max_false_match_rate": 0.01 }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert!((v["threshold"].as_f64().expect("threshold") - f64::from(expected)).abs() < 1e-6);
    assert_eq!(v["match"], true);
    for (body, code) in [
        (
            json!({ "embeddings": probe, "max_false_match_rate": 0.01, "threshold": 0.5 }),
            "operating_point_conflict",
        ),
        (
            json!({ "embeddings": probe, "max_false_match_rate": 0.0 }),
            "false_match_rate_out_of_range",
        ),
        (
            json!({ "embeddings": probe, "max_false_match_rate": 1.5 }),
            "false_match_rate_out_of_range",
        ),
    ] {
        let r = app.post_json(&app.admin_key, "/v1/recognize", &body).await;
        assert_problem(r, 400, code).await;
    }
}
