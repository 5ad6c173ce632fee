//! Builds the application: state, router, OpenAPI document and docs page, the browser app,
//! listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;
use visage_shared::DecodeLimits;

use crate::auth::RateLimits;
use crate::configuration::ServeArgs;
use crate::pipeline::PipelineService;
use crate::routes::extract::BodyLimit;
use crate::routes::{common, detect, faces, health, people, recognize};
use crate::telemetry;
use crate::web::WebApp;

/// Shared state of the handlers.
pub struct Inner {
    pub pool: PgPool,
    pub pipeline: PipelineService,
    pub rate_limits: RateLimits,
    pub metrics: PrometheusHandle,
    pub ef_search: u32,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("vsg_...")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, generated from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "visage", description = "Privacy-first face recognition: consented enrollment, recognition and erasure. Errors are application/problem+json with a stable `code`."),
    paths(
        health::healthz, health::readyz, health::metrics,
        people::create_person, people::list_people, people::show_person, people::export_person, people::erase, people::withdraw_consent,
        faces::add_faces, faces::add_face_image, faces::delete_face,
        recognize::recognize, recognize::recognize_image, recognize::verify, recognize::verify_image,
        detect::detect,
    ),
    components(schemas(crate::error::Problem, common::Candidate, common::Erasure, common::EmbeddingInput)),
    modifiers(&SecurityAddon),
    tags((name = "people", description = "People and consent"), (name = "faces", description = "Enrolled faces"),
         (name = "recognize", description = "Recognition, verification, detection"), (name = "health", description = "Probes and metrics"))
)]
pub struct ApiDoc;

/// The router with every route and layer; what no route takes goes to `web` (the browser
/// app, or a problem+json 404 under the API's paths).
pub fn router(
    state: AppState,
    max_body_bytes: usize,
    web: WebApp,
    cors: Option<CorsLayer>,
) -> Router {
    let api = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route(
            "/v1/people",
            post(people::create_person).get(people::list_people),
        )
        .route(
            "/v1/people/{id}",
            get(people::show_person).delete(people::erase),
        )
        .route("/v1/people/{id}/export", get(people::export_person))
        .route(
            "/v1/people/{id}/consent/withdraw",
            post(people::withdraw_consent),
        )
        .route("/v1/people/{id}/faces", post(faces::add_faces))
        .route("/v1/people/{id}/faces/image", post(faces::add_face_image))
        .route(
            "/v1/people/{id}/faces/{face_id}",
            delete(faces::delete_face),
        )
        .route("/v1/recognize", post(recognize::recognize))
        .route("/v1/recognize/image", post(recognize::recognize_image))
        .route("/v1/verify", post(recognize::verify))
        .route("/v1/verify/image", post(recognize::verify_image))
        .route("/v1/detect", post(detect::detect))
        .with_state(state);
    let app = api
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .fallback(move |req: Request| web.serve(req))
        // gzip or brotli (quality 4) when the client asks: the app's wasm shrinks about 4x;
        // small bodies, images and 304s are left alone by the default predicate.
        .layer(CompressionLayer::new())
        // Nothing here is meant to be sniffed into another type (problem JSON, wasm, ...).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(axum::middleware::from_fn(telemetry::track_metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(Extension(BodyLimit(max_body_bytes)))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    // Outermost, so preflights are answered before authentication and rate limiting.
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

/// A bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    port: u16,
    web: WebApp,
}

impl Application {
    /// Binds the listener and builds the state on an already migrated pool.
    pub async fn build(args: &ServeArgs, pool: PgPool) -> anyhow::Result<Self> {
        let limits = DecodeLimits {
            max_bytes: args.max_body_bytes,
            max_pixels: args.max_image_pixels,
            ..DecodeLimits::default()
        };
        let pipeline = PipelineService::new(args.pipeline_threads, limits);
        tracing::info!(
            threads = pipeline.threads(),
            "face pipeline: this many images analysed at once"
        );
        let state = AppState(Arc::new(Inner {
            pool,
            pipeline,
            rate_limits: RateLimits::new(args.rate_per_minute),
            metrics: telemetry::metrics_handle(),
            ef_search: args.ef_search,
        }));
        let cors = crate::cors::layer(&args.cors_origins)?;
        if !args.cors_origins.is_empty() {
            tracing::info!(origins = ?args.cors_origins, "browser pages of these origins may call the API (CORS)");
        }
        let web = WebApp::new(&args.web_dir);
        if !web.is_built() {
            tracing::warn!(
                dir = %web.dir().display(),
                "the browser app is not built (no index.html there): run `cargo xtask web`, \
                 or set --web-dir / VISAGE_WEB_DIR; / says how until then"
            );
        }
        let listener = TcpListener::bind(SocketAddr::new(args.host, args.port)).await?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            router: router(state, args.max_body_bytes, web.clone(), cors),
            port,
            web,
        })
    }

    /// The browser app it serves at `/`.
    pub fn web(&self) -> &WebApp {
        &self.web
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` completes (then finishes in-flight requests).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}
