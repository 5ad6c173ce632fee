//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::domain::Scope;
use crate::error::ApiError;
use crate::state::AppState;

/// Readiness report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// The primary answers.
    pub database: bool,
    pub models: bool,
    /// The read replicas (none without `--read-replica`): a lagging or down one is skipped,
    /// so it does not make the service unready; the primary takes its reads.
    pub replicas: Vec<crate::replicas::ReplicaReport>,
    /// Reads the primary served (with replicas: those no fresh replica could take).
    pub primary_reads: u64,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready to serve: the database answers and the models are loaded.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    // Answer within a second whatever the database does (a load balancer's probe times out).
    let database = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        crate::store::ping(&state.pool),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let models = state.pipeline.is_loaded();
    let status = if database && models {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let (replicas, primary_reads) = state.reads.report();
    (
        status,
        Json(Readiness {
            database,
            models,
            replicas,
            primary_reads,
        }),
    )
}

/// Prometheus metrics: requests, latencies, pipeline stage timings, pool use. Admin keys only
/// (Prometheus sends one with `authorization: { credentials: ... }`): the counters tell who
/// is enrolled how often and when.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
              (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = ["admin"])))]
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::Admin)?;
    metrics::gauge!("visage_db_pool_connections").set(f64::from(state.pool.size()));
    metrics::gauge!("visage_db_pool_idle").set(state.pool.num_idle() as f64);
    metrics::gauge!("visage_models_loaded").set(if state.pipeline.is_loaded() { 1.0 } else { 0.0 });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}
