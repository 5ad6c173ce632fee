//! The browser app at `/`: the static files `cargo xtask web` writes to `frontend/dist`
//! (index.html, the wasm-bindgen glue, the wasm, the stylesheet), served from disk.
//!
//! Every request no API route takes ends here. API paths (`/v1/...`, `/docs`, probes) keep
//! their problem+json 404; other paths are files of the app, and a path that names no file
//! and looks like a client-side route (no extension) gets index.html so a reload of such a
//! page works. Files go out with `Cache-Control: no-cache`: the names are stable (no content
//! hash), so the browser must revalidate, which costs one 304 (Last-Modified) instead of
//! downloading the wasm again.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::error::ApiError;

/// Content-Security-Policy of the app's pages. `wasm-unsafe-eval` lets the page compile its
/// wasm (nothing else evaluates code); `blob:` workers and media are the camera pipeline's;
/// `connect-src 'self'` keeps embeddings going only to this service; `frame-ancestors 'none'`
/// keeps other sites from framing the camera page (clickjacking). `/docs` has its own
/// ([`DOCS_CONTENT_SECURITY_POLICY`]).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
worker-src 'self' blob:; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; \
style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; \
form-action 'self'";

/// Content-Security-Policy of the vendored Swagger UI at `/docs`: its scripts are files of
/// its own (no inline script), its styles partly inline, its images partly data URLs.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// Paths owned by the API: an unknown path under them is an API 404, never the app.
const API_PATHS: [&str; 6] = [
    "/v1",
    "/docs",
    "/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// Whether `path` is one of the API's paths or below one.
pub fn is_api_path(path: &str) -> bool {
    API_PATHS.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Whether a path that names no file may be a route of the client (gets index.html): its
/// last segment has no extension. A missing `x.js` or `x.wasm` stays a 404 so a stale page
/// fails loudly instead of parsing HTML as a script.
pub fn is_client_route(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or_default();
    !last.contains('.')
}

/// Shown at `/` when the app is not built. It reloads itself: `cargo xtask serve` starts the
/// service first and builds the app while the service runs, so the app replaces this page.
const NOT_BUILT_PAGE: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>visage</title>
<meta http-equiv=\"refresh\" content=\"15\"></head>
<body>
<h1>visage</h1>
<p>The service runs, but the browser app is not built yet.</p>
<p>If <code>cargo xtask serve</code> started this service, it is building the app now (its
terminal shows the stage and the time): this page turns into the app when it is done (it
checks every 15 s). Otherwise build it with <code>cargo xtask web</code>, or point
<code>--web-dir</code> / <code>VISAGE_WEB_DIR</code> at a built app.</p>
<p>The API and its documentation are at <a href=\"/docs/\">/docs</a> already.</p>
</body></html>
";

/// The static app of one directory. Cheap to clone.
#[derive(Clone)]
pub struct WebApp {
    dir: PathBuf,
    files: ServeDir,
    index: ServeFile,
}

impl WebApp {
    /// Serves `dir` (made absolute against the current directory, so a later `chdir` cannot
    /// change what is served). The directory may be missing or empty: it is looked up on
    /// every request, so an app built while the service runs is served without a restart.
    pub fn new(dir: &Path) -> Self {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self {
            // `cargo xtask web --release` writes brotli-11 copies (`*.br`) of the wasm and its
            // glue: sent as they are to browsers that accept brotli, a sixth smaller than the
            // compression layer's on-the-fly quality 4 (BENCHMARKS.md, "First contact").
            files: ServeDir::new(&dir).precompressed_br(),
            index: ServeFile::new(dir.join("index.html")),
            dir,
        }
    }

    /// The directory served.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the directory holds a built app (an index.html).
    pub fn is_built(&self) -> bool {
        self.dir.join("index.html").is_file()
    }

    /// Answers a request that no API route took.
    pub async fn serve(self, req: Request) -> Response {
        let path = req.uri().path().to_owned();
        if is_api_path(&path) || !matches!(*req.method(), Method::GET | Method::HEAD) {
            return ApiError::NotFound("route").into_response();
        }
        // GET and HEAD carry no body: keep the head to try index.html after a miss.
        let (parts, _) = req.into_parts();
        let again = || Request::from_parts(parts.clone(), Body::empty());
        let resp = match self.files.clone().oneshot(again()).await {
            Ok(r) => r.map(Body::new),
            Err(never) => match never {},
        };
        let resp = if resp.status() != StatusCode::NOT_FOUND {
            resp
        } else if !is_client_route(&path) {
            return ApiError::NotFound("file").into_response();
        } else {
            let index = match self.index.clone().oneshot(again()).await {
                Ok(r) => r.map(Body::new),
                Err(never) => match never {},
            };
            if index.status() != StatusCode::NOT_FOUND {
                index
            } else if path == "/" {
                Html(NOT_BUILT_PAGE).into_response()
            } else {
                return ApiError::NotFound("route").into_response();
            }
        };
        with_page_headers(resp)
    }
}

fn with_page_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    // Revalidate every time (cheap 304s): the file names do not change between builds.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_recognised_by_segment() {
        for p in [
            "/v1",
            "/v1/nope",
            "/docs",
            "/docs/",
            "/docs/x.js",
            "/healthz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(is_api_path(p), "{p}");
        }
        for p in ["/", "/people", "/v1x", "/docsy", "/healthz2", "/index.html"] {
            assert!(!is_api_path(p), "{p}");
        }
    }

    #[test]
    fn client_routes_have_no_extension() {
        assert!(is_client_route("/"));
        assert!(is_client_route("/people"));
        assert!(is_client_route("/people/abc-1"));
        assert!(!is_client_route("/visage-frontend.js"));
        assert!(!is_client_route("/snippets/x/inline0.js"));
    }
}
