use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_metrics_and_docs_answer() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.expect("json");
    assert!(doc["paths"]["/v1/recognize"].is_object());
    let r = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    assert!(text.contains("visage_http_requests_total"), "{text}");
    assert!(text.contains("visage_db_pool_connections"));
}

#[tokio::test]
async fn readyz_reports_database() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request");
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["database"], true);
}

#[tokio::test]
async fn unknown_route_is_a_problem() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/nope"))
        .send()
        .await
        .expect("request");
    crate::helpers::assert_problem(r, 404, "not_found").await;
}
