use serde_json::{Value, json};

use crate::helpers::{assert_problem, consent, spawn_app, vector};

#[tokio::test]
async fn create_show_and_export_a_person() {
    let app = spawn_app().await;
    let id = app.create_person("Ada Lovelace", consent()).await;
    assert_eq!(app.add_faces(id, &[vector(1, 2, 0.1)]).await.status(), 201);
    let r = app.get(&app.admin_key, &format!("/v1/people/{id}")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["name"], "Ada Lovelace");
    assert_eq!(v["consent_status"], "active");
    assert_eq!(v["face_count"], 1);
    assert_eq!(v["consents"][0]["evidence_method"], "checkbox");
    assert_eq!(
        v["consents"][0]["policy_sha256"].as_str().map(str::len),
        Some(64)
    );
    let r = app
        .get(&app.admin_key, &format!("/v1/people/{id}/export"))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v["faces"][0]["embedding"].as_array().map(Vec::len),
        Some(192)
    );
    assert!(
        v["audit"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["action"] == "add_faces"))
    );
}

#[tokio::test]
async fn no_consent_no_person() {
    let app = spawn_app().await;
    let before = app.counts().await;
    let r = app
        .post_json(&app.enroll_key, "/v1/people", &json!({ "name": "Nobody" }))
        .await;
    assert_problem(r, 400, "consent_required").await;
    let mut expired = consent();
    expired["expires_at"] = json!("2020-01-01T00:00:00Z");
    expired["granted_at"] = json!("2019-01-01T00:00:00Z");
    let r = app
        .post_json(
            &app.enroll_key,
            "/v1/people",
            &json!({ "name": "Late", "consent": expired }),
        )
        .await;
    assert_problem(r, 400, "consent_expired").await;
    let mut no_policy = consent();
    no_policy.as_object_mut().map(|o| o.remove("policy_text"));
    let r = app
        .post_json(
            &app.enroll_key,
            "/v1/people",
            &json!({ "name": "X", "consent": no_policy }),
        )
        .await;
    assert_problem(r, 400, "consent_policy_missing").await;
    let r = app
        .post_json(
            &app.enroll_key,
            "/v1/people",
            &json!({ "name": "   ", "consent": consent() }),
        )
        .await;
    assert_problem(r, 400, "field_empty").await;
    assert_eq!(app.counts().await, before);
}

#[tokio::test]
async fn list_people_with_cursor_and_search() {
    let app = spawn_app().await;
    for i in 0..7 {
        app.create_person(&format!("Person {i}"), consent()).await;
    }
    app.create_person("Grace Hopper", consent()).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = app.url("/v1/people?limit=3");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let v: Value = app
            .call("GET", &url, Some(&app.admin_key))
            .await
            .json()
            .await
            .expect("json");
        for p in v["items"].as_array().expect("items") {
            seen.push(p["id"].as_str().expect("id").to_string());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8, "no duplicates across pages");
    let v: Value = app
        .get(&app.admin_key, "/v1/people?q=hopper")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["items"][0]["name"], "Grace Hopper");
    let r = app.get(&app.admin_key, "/v1/people?cursor=garbage!").await;
    assert_problem(r, 400, "invalid_cursor").await;
}
