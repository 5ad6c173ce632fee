//! The authenticated caller of a request: the `Caller` and `MaybeCaller` extractors, which
//! check the `Authorization: Bearer` key, its scopes and its rate limit, and the client address
//! whose failures are throttled.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

use super::secret::hash_key;
use crate::domain::{Scope, Scopes};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store;

/// The client address of a request (the TCP peer; loopback when unknown, e.g. in-process).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The caller of a request, authenticated by its API key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Uuid,
    pub scopes: Scopes,
}

impl Caller {
    /// Fails with 403 unless the key has `scope` (or admin).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scope.as_str()))
        }
    }

    /// Fails with 403 unless the key has one of `scopes`.
    pub fn require_any(&self, scopes: &[Scope]) -> Result<(), ApiError> {
        if scopes.iter().any(|s| self.scopes.allows(*s)) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                scopes.first().map(|s| s.as_str()).unwrap_or("admin"),
            ))
        }
    }

    /// Whether the key has the admin scope.
    pub fn is_admin(&self) -> bool {
        self.scopes.allows(Scope::Admin)
    }

    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        format!("key:{}", self.key_id)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = client_ip(parts);
        state.failed_auth.check(ip)?;
        match authenticate(parts, state).await {
            Err(e @ ApiError::Unauthorized(_)) if parts.headers.contains_key(AUTHORIZATION) => {
                state.failed_auth.record(ip);
                Err(e)
            }
            other => other,
        }
    }
}

/// Optional authentication: `None` without an `Authorization` header (routes that also accept
/// another credential, such as a withdrawal token); a bad key is still an error.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(AUTHORIZATION) {
            Caller::from_request_parts(parts, state)
                .await
                .map(|c| MaybeCaller(Some(c)))
        } else {
            Ok(MaybeCaller(None))
        }
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized("an API key is required: Authorization: Bearer <key>".into())
    })?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    let key = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .ok_or_else(|| ApiError::Unauthorized("expected Authorization: Bearer <key>".into()))?;
    let row = store::keys::find_active(&state.pool, &hash_key(key)).await?;
    let row =
        row.ok_or_else(|| ApiError::Unauthorized("unknown, revoked or expired API key".into()))?;
    let scopes = Scopes::parse(&row.scopes)
        .map_err(|e| ApiError::internal(format!("stored key scopes: {e}")))?;
    state
        .rate_limits
        .check(row.id, row.rate_per_minute.map(|r| r.max(1) as u32))?;
    if state.rate_limits.due_for_last_used(row.id) {
        // At most once a minute per key and process: not a write per request.
        let _ = store::keys::touch(&state.pool, row.id).await;
    }
    Ok(Caller {
        key_id: row.id,
        scopes,
    })
}
