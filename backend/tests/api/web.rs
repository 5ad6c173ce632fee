//! The browser app at `/`: static files from `--web-dir`, index.html for client routes,
//! content types, compression, revalidation, and the API's paths left alone.

use std::io::Read;
use std::path::{Path, PathBuf};

use visage_backend::configuration::ServeArgs;
use visage_backend::web::CONTENT_SECURITY_POLICY;

use crate::helpers::{TestApp, assert_problem, spawn_app_with};

/// The smallest valid wasm module: magic and version.
const WASM: &[u8] = b"\0asm\x01\0\0\0";

/// A temporary web directory, removed on drop.
struct WebDir(PathBuf);

impl WebDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("visage-web-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create web dir");
        Self(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.0.join(name), bytes).expect("write web file");
    }
}

impl Drop for WebDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An index.html long and repetitive enough to be worth compressing.
fn index_html() -> String {
    let rows: String = (0..200)
        .map(|i| format!("<p class=\"row\">row {i} of the test page</p>\n"))
        .collect();
    format!(
        "<!doctype html><html><head><title>visage test app</title></head><body>{rows}</body></html>\n"
    )
}

async fn app_on(dir: &Path) -> TestApp {
    spawn_app_with(ServeArgs {
        port: 0,
        rate_per_minute: 1_000_000,
        web_dir: dir.to_path_buf(),
        ..ServeArgs::default()
    })
    .await
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.get_public(path).await
}

#[tokio::test]
async fn serves_the_app_with_client_routes_types_and_headers() {
    let web = WebDir::new();
    let index = index_html();
    web.write("index.html", index.as_bytes());
    web.write("x.wasm", WASM);
    web.write("visage-frontend.js", b"export default function init() {}\n");
    let app = app_on(&web.0).await;

    for path in ["/", "/people", "/people/some-id"] {
        let r = get(&app, path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            header(&r, "content-type").starts_with("text/html"),
            "{path}"
        );
        assert_eq!(header(&r, "cache-control"), "no-cache", "{path}");
        assert_eq!(
            header(&r, "content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert_eq!(r.text().await.expect("body"), index, "{path}");
    }

    let r = get(&app, "/x.wasm").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "application/wasm");
    assert_eq!(r.bytes().await.expect("body").as_ref(), WASM);

    let r = get(&app, "/visage-frontend.js").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/javascript");

    // A missing asset is a 404, not index.html parsed as a script.
    let r = get(&app, "/missing.js").await;
    assert_problem(r, 404, "not_found").await;

    // The API's paths keep their problem responses; only GET/HEAD reach the files.
    for path in ["/v1/nope", "/v1", "/metrics/x", "/healthz/x"] {
        let r = get(&app, path).await;
        let v = assert_problem(r, 404, "not_found").await;
        assert_eq!(v["detail"], "route not found", "{path}");
    }
    let r = app
        .client
        .post(app.url("/people"))
        .send()
        .await
        .expect("request");
    assert_problem(r, 404, "not_found").await;
    let r = get(&app, "/healthz").await;
    assert_eq!(r.text().await.expect("body"), "ok");

    // The Swagger UI keeps working, with a policy of its own instead of the app's.
    let r = get(&app, "/docs/").await;
    assert_eq!(r.status(), 200);
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("wasm-unsafe-eval"),
        "{csp}"
    );
    assert!(r.text().await.expect("body").contains("swagger"));
}

#[tokio::test]
async fn compresses_on_request_and_revalidates_with_304() {
    let web = WebDir::new();
    let index = index_html();
    web.write("index.html", index.as_bytes());
    let app = app_on(&web.0).await;

    let r = app
        .client
        .get(app.url("/"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-encoding"), "gzip");
    assert!(
        header(&r, "vary")
            .to_ascii_lowercase()
            .contains("accept-encoding")
    );
    let last_modified = header(&r, "last-modified");
    assert!(!last_modified.is_empty());
    let gz = r.bytes().await.expect("body");
    assert!(gz.len() < index.len() / 4, "{} bytes compressed", gz.len());
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz.as_ref())
        .read_to_string(&mut text)
        .expect("valid gzip");
    assert_eq!(text, index);

    // Without Accept-Encoding: the plain file.
    let r = get(&app, "/index.html").await;
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.text().await.expect("body"), index);

    // Revalidation: unchanged since Last-Modified, so 304 without a body.
    let r = app
        .client
        .get(app.url("/"))
        .header("if-modified-since", &last_modified)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 304);
    assert_eq!(header(&r, "cache-control"), "no-cache");
    assert!(r.bytes().await.expect("body").is_empty());

    // An older copy is not revalidated: the file comes again.
    let r = app
        .client
        .get(app.url("/"))
        .header("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn without_a_built_app_the_root_says_how_to_build_it() {
    let web = WebDir::new();
    let missing = web.0.join("dist");
    let app = app_on(&missing).await;
    let r = get(&app, "/").await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/html"));
    let page = r.text().await.expect("body");
    assert!(page.contains("cargo xtask web"), "{page}");
    // Other paths stay API 404s; the API itself works.
    assert_problem(get(&app, "/people").await, 404, "not_found").await;
    assert_problem(get(&app, "/v1/nope").await, 404, "not_found").await;
    assert_eq!(get(&app, "/healthz").await.status(), 200);

    // Built while the service runs: served at once.
    std::fs::create_dir_all(&missing).expect("mkdir");
    std::fs::write(missing.join("index.html"), index_html()).expect("write");
    let r = get(&app, "/people").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), index_html());
}
