//! API keys, for admins: list, create, revoke, rotate. (The same operations are in the CLI:
//! `visage keys`.)

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{self, Caller, KeyInfo, NewKey};
use crate::domain::{CollectionName, PersonName, Scope, Scopes};
use crate::error::{ApiError, ApiResult};
use crate::routes::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use crate::store;

/// `POST /v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateKeyRequest {
    /// Who or what uses the key, 1..200 characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// `enroll`, `recognize`, `admin`.
    #[schema(min_items = 1, value_type = Vec<Scope>)]
    pub scopes: Vec<String>,
    /// Requests per minute, 1..1,000,000 (default: the server's).
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub rate_per_minute: Option<u32>,
    /// Days until the key expires (default: never), 1..3650.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
    /// The collections the key may use, by name (default: every collection for an admin key,
    /// the default collection for any other).
    #[schema(min_items = 1, max_items = 100)]
    pub collections: Option<Vec<String>>,
}

/// A new key: the secret is in this response only.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKeyResponse {
    pub id: Uuid,
    /// The key itself (`Authorization: Bearer <key>`); shown only this once.
    pub key: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// List every API key (never their secrets).
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, body = Vec<KeyInfo>), (status = 401, body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = ["admin"])))]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<KeyInfo>>> {
    caller.require_global_admin()?;
    Ok(Json(auth::list_keys(&state.pool).await?))
}

/// Create an API key.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKeyRequest,
    responses((status = 201, body = NewKeyResponse), (status = 400, body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = ["admin"])))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> ApiResult<(StatusCode, Json<NewKeyResponse>)> {
    caller.require_global_admin()?;
    let name = PersonName::parse(&req.name, "name")?;
    let scopes =
        Scopes::parse(&req.scopes).map_err(|e| ApiError::bad_request("invalid_scopes", e))?;
    if req
        .rate_per_minute
        .is_some_and(|r| !(1..=1_000_000).contains(&r))
    {
        return Err(ApiError::bad_request(
            "invalid_rate",
            "rate_per_minute must be between 1 and 1000000",
        ));
    }
    let expires_at = match req.expires_in_days {
        None => None,
        Some(d @ 1..=3650) => Some(Utc::now() + Duration::days(i64::from(d))),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_expiry",
                "expires_in_days must be between 1 and 3650",
            ));
        }
    };
    let collections = match &req.collections {
        None => None,
        Some(names) => Some(collection_ids(&state, names).await?),
    };
    let new = NewKey {
        name: name.as_str(),
        scopes: &scopes,
        rate_per_minute: req.rate_per_minute,
        expires_at,
        collections: collections.as_deref(),
    };
    let (key, id) = auth::create_key_with(&state.pool, &new, &caller.actor()).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewKeyResponse {
            id,
            key,
            expires_at,
        }),
    ))
}

/// The ids of collections named in a key request: each must exist; 1 to 100 of them.
async fn collection_ids(state: &AppState, names: &[String]) -> ApiResult<Vec<Uuid>> {
    if names.is_empty() || names.len() > 100 {
        return Err(ApiError::bad_request(
            "invalid_collections",
            "a key is given 1 to 100 collections",
        ));
    }
    for n in names {
        CollectionName::parse(n)?;
    }
    let found = store::collections::ids_of(&state.pool, names).await?;
    if let Some(missing) = names.iter().find(|n| !found.iter().any(|(f, _)| f == *n)) {
        return Err(ApiError::bad_request(
            "unknown_collection",
            format!("there is no collection {missing:?}"),
        ));
    }
    Ok(found.into_iter().map(|(_, id)| id).collect())
}

/// Revoke an API key, effective at once.
#[utoipa::path(post, path = "/v1/keys/{id}/revoke", tag = "keys", params(("id" = Uuid, Path)),
    responses((status = 200, body = KeyInfo), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = ["admin"])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<KeyInfo>> {
    caller.require_global_admin()?;
    let info = auth::revoke_key(&state.pool, id, &caller.actor())
        .await?
        .ok_or(ApiError::NotFound("key"))?;
    state.rate_limits.forget(id);
    Ok(Json(info))
}

/// Rotate an API key: a new secret with the same name, scopes, rate and expiry; the old key
/// stops working at once.
#[utoipa::path(post, path = "/v1/keys/{id}/rotate", tag = "keys", params(("id" = Uuid, Path)),
    responses((status = 201, body = NewKeyResponse), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = ["admin"])))]
pub async fn rotate_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, Json<NewKeyResponse>)> {
    caller.require_global_admin()?;
    let rotated = auth::rotate_key(&state.pool, id, &caller.actor())
        .await?
        .ok_or(ApiError::NotFound("key"))?;
    state.rate_limits.forget(id);
    Ok((
        StatusCode::CREATED,
        Json(NewKeyResponse {
            id: rotated.id,
            key: rotated.key,
            expires_at: rotated.expires_at,
        }),
    ))
}
