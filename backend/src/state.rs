//! The state every handler shares ([`AppState`]), in a module of its own so that the routes
//! and the extractors (`auth`) depend on it without depending on `startup`, which builds it.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

use crate::auth::{FailedAuth, RateLimits};
use crate::domain::Thresholds;
use crate::oracle::QueryBudgets;
use crate::pipeline::PipelineService;
use crate::replicas::ReadRouter;

/// Shared state of the handlers.
pub struct Inner {
    pub pool: PgPool,
    pub pipeline: PipelineService,
    pub rate_limits: RateLimits,
    pub metrics: PrometheusHandle,
    /// How recognition searches (`ef_search`, the exact-search bound).
    pub search: crate::store::search::Settings,
    /// Failed authentications per client address.
    pub failed_auth: FailedAuth,
    /// Verification budgets of non-admin keys.
    pub budgets: QueryBudgets,
    /// The lowest match thresholds a non-admin key may use.
    pub threshold_floor: Thresholds,
    /// Where reads go: fresh replicas, else the primary (`pool`).
    pub reads: Arc<ReadRouter>,
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
