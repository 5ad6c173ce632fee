//! Builds the application: state, router, OpenAPI document and docs page, the browser app,
//! listener.

use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;
use visage_shared::DecodeLimits;

use crate::auth::{FailedAuth, RateLimits};
use crate::configuration::ServeArgs;
use crate::domain::Thresholds;
use crate::openapi::ApiDoc;
use crate::oracle::{BudgetSettings, QueryBudgets};
use crate::pipeline::{Models, PipelineService};
use crate::replicas::ReadRouter;
use crate::routes::extract::BodyLimit;
use crate::routes::{collections, detect, faces, health, keys, people, recognize};
use crate::state::{AppState, Inner};
use crate::telemetry;
use crate::web::WebApp;

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
        .route(
            "/v1/collections",
            get(collections::list_collections).post(collections::create_collection),
        )
        .route("/v1/keys", get(keys::list_keys).post(keys::create_key))
        .route("/v1/keys/{id}/revoke", post(keys::revoke_key))
        .route("/v1/keys/{id}/rotate", post(keys::rotate_key))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let docs = Router::from(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi())).layer(
        SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(crate::web::DOCS_CONTENT_SECURITY_POLICY),
        ),
    );
    let app = api
        .merge(docs)
        .fallback(move |req: Request| web.serve(req))
        // gzip or brotli (quality 4) when the client asks: the app's wasm shrinks about 4x;
        // small bodies, images and 304s are left alone by the default predicate.
        .layer(CompressionLayer::new())
        // Nothing here is meant to be sniffed into another type (problem JSON, wasm, ...).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // No page of this service may be framed by another site (clickjacking), also in
        // browsers that predate CSP's frame-ancestors.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        // API responses are data, never a document: they may load and run nothing. (The app's
        // pages and /docs set their own policy first.)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(axum::middleware::from_fn(telemetry::track_metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(Extension(BodyLimit(max_body_bytes)))
        .layer(
            // The span names the path, never the query: `?q=` carries names being searched.
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &Request| {
                tracing::info_span!(
                    "request",
                    method = %crate::telemetry::method_label(req.method()),
                    path = %req.uri().path(),
                )
            }),
        );
    // Outermost, so preflights are answered before authentication and rate limiting.
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

/// 405 as a problem (axum's own answer has an empty body).
async fn method_not_allowed() -> crate::error::ApiError {
    crate::error::ApiError::MethodNotAllowed
}

/// A bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    port: u16,
    web: WebApp,
    pipeline: PipelineService,
}

impl Application {
    /// Binds the listener and builds the state on an already migrated pool.
    pub async fn build(args: &ServeArgs, pool: PgPool) -> anyhow::Result<Self> {
        let limits = DecodeLimits {
            max_bytes: args.max_body_bytes,
            max_pixels: args.max_image_pixels,
            ..DecodeLimits::default()
        };
        let pipeline = PipelineService::new(args.pipeline_threads, limits, Models::process_wide());
        tracing::info!(
            threads = pipeline.threads(),
            "face pipeline: this many images analysed at once"
        );
        let mut replicas = Vec::new();
        for url in &args.read_replicas {
            let opts = PgConnectOptions::from_str(url.expose_secret())
                .map_err(|e| anyhow::anyhow!("a --read-replica URL does not parse: {e}"))?;
            // Lazy: a replica that is down at start-up is reported, not waited for.
            replicas.push(
                PgPoolOptions::new()
                    .max_connections(args.db_pool)
                    .acquire_timeout(crate::db::ACQUIRE_TIMEOUT)
                    .connect_lazy_with(opts.disable_statement_logging()),
            );
        }
        let reads = ReadRouter::new(
            pool.clone(),
            replicas,
            Duration::from_millis(args.replica_max_lag_ms),
        );
        reads.spawn_monitor();
        let state = AppState(Arc::new(Inner {
            pool,
            reads,
            pipeline,
            rate_limits: RateLimits::new(args.rate_per_minute),
            metrics: telemetry::metrics_handle(),
            search: crate::store::search::Settings {
                ef_search: args.ef_search,
                exact_max_faces: args.exact_search_max_faces,
            },
            failed_auth: FailedAuth::new(args.failed_auth_per_minute),
            budgets: QueryBudgets::new(BudgetSettings {
                per_key_person_hour: args.verify_budget_per_key_person,
                per_person_hour: args.verify_budget_per_person,
            }),
            threshold_floor: Thresholds::for_false_match_rate(args.non_admin_max_false_match_rate)
                .map_err(|floor| {
                    anyhow::anyhow!(
                        "--non-admin-max-false-match-rate {}: the calibration vouches for rates down to {floor:.2e}",
                        args.non_admin_max_false_match_rate
                    )
                })?,
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
            router: router(state.clone(), args.max_body_bytes, web.clone(), cors),
            port,
            web,
            pipeline: state.pipeline.clone(),
        })
    }

    /// Its face pipeline (to load the models before the first request needs them).
    pub fn pipeline(&self) -> &PipelineService {
        &self.pipeline
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
