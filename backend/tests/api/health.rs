use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_metrics_and_docs_answer() {
    let app = spawn_app().await;
    let r = app.get_public("/healthz").await;
    assert_eq!(r.status(), 200);
    let r = app.get_public("/openapi.json").await;
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.expect("json");
    assert!(doc["paths"]["/v1/recognize"].is_object());
    let r = app.get_public("/docs/").await;
    assert_eq!(r.status(), 200);
    let r = app.get(&app.admin_key, "/metrics").await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    assert!(text.contains("visage_http_requests_total"), "{text}");
    assert!(text.contains("visage_db_pool_connections"));
}

#[tokio::test]
async fn readyz_reports_database() {
    let app = spawn_app().await;
    let r = app.get_public("/readyz").await;
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["database"], true);
}

#[tokio::test]
async fn unknown_route_is_a_problem() {
    let app = spawn_app().await;
    let r = app.get_public("/nope").await;
    crate::helpers::assert_problem(r, 404, "not_found").await;
}
