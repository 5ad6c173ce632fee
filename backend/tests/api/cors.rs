//! CORS: preflights from configured origins are allowed, others get no CORS headers (so the
//! browser refuses), and without configured origins nobody cross-origin is allowed.

use reqwest::Method;
use serde_json::json;
use visage_backend::configuration::ServeArgs;

use crate::helpers::{TestApp, spawn_app, spawn_app_with, vector};

const ALLOWED: &str = "https://app.example.org";
const OTHER: &str = "https://evil.example.net";

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/v1/recognize"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .expect("request")
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_ascii_lowercase())
}

#[tokio::test]
async fn preflight_allows_configured_origins_only() {
    let app = spawn_app_with(ServeArgs {
        port: 0,
        rate_per_minute: 1_000_000,
        // Configured with upper case: browsers send lower case.
        cors_origins: vec![
            "https://App.Example.org".into(),
            "http://localhost:3000".into(),
        ],
        ..ServeArgs::default()
    })
    .await;

    let r = preflight(&app, ALLOWED).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(ALLOWED)
    );
    let methods = header(&r, "access-control-allow-methods").unwrap_or_default();
    for m in ["get", "post", "delete"] {
        assert!(methods.contains(m), "{methods}");
    }
    let headers = header(&r, "access-control-allow-headers").unwrap_or_default();
    assert!(headers.contains("authorization"), "{headers}");
    assert!(headers.contains("content-type"), "{headers}");
    assert_eq!(header(&r, "access-control-max-age").as_deref(), Some("600"));
    assert!(header(&r, "access-control-allow-credentials").is_none());

    // No Access-Control-Allow-Origin: the browser refuses to send the request (the layer
    // still lists methods and headers, which tell nothing about who may call).
    let r = preflight(&app, OTHER).await;
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // The actual request: the allowed origin may read the answer, the other may not.
    let body =
        json!({ "embeddings": [{ "model": crate::helpers::MODEL, "vector": vector(1, 2, 0.1) }] });
    for (origin, readable) in [
        (ALLOWED, true),
        ("http://localhost:3000", true),
        (OTHER, false),
    ] {
        let r = app
            .client
            .post(app.url("/v1/recognize"))
            .header("origin", origin)
            .bearer_auth(&app.recognize_key)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "access-control-allow-origin"),
            readable.then(|| origin.to_string()),
            "{origin}"
        );
        if readable {
            assert!(
                header(&r, "access-control-expose-headers")
                    .is_some_and(|h| h.contains("retry-after"))
            );
        }
    }
}

#[tokio::test]
async fn without_configured_origins_nothing_cross_origin_is_allowed() {
    let app = spawn_app().await;
    let r = preflight(&app, ALLOWED).await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert!(r.headers().get("access-control-allow-methods").is_none());
}
