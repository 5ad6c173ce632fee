//! Collections: independent galleries. Admins of every collection create them; any key lists
//! the ones it may use.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::{AuditAction, AuditOutcome, CollectionName};
use crate::error::{ApiError, ApiResult};
use crate::routes::extract::ApiJson;
use crate::state::AppState;
use crate::store;
pub use crate::store::collections::CollectionInfo;

/// `POST /v1/collections`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateCollectionRequest {
    /// 1..63 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit.
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub name: String,
}

/// Create a collection.
#[utoipa::path(post, path = "/v1/collections", tag = "collections", request_body = CreateCollectionRequest,
    responses((status = 201, body = CollectionInfo), (status = 409, body = crate::error::Problem)),
    security(("api_key" = ["admin"])))]
pub async fn create_collection(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateCollectionRequest>,
) -> ApiResult<(StatusCode, Json<CollectionInfo>)> {
    caller.require_global_admin()?;
    let name = CollectionName::parse(&req.name)?;
    let id = Uuid::new_v4();
    let mut tx = state.pool.begin().await?;
    if !store::collections::create(&mut *tx, id, name.as_str()).await? {
        return Err(ApiError::Conflict {
            code: "collection_exists",
            detail: format!("a collection named {:?} exists", name.as_str()),
        });
    }
    store::audit::record(
        &mut *tx,
        &caller.actor(),
        AuditAction::CreateCollection,
        Some(&id.to_string()),
        AuditOutcome::Ok,
        None,
    )
    .await?;
    // Read back in the same transaction: what is answered is what is committed.
    let created = store::collections::list(&mut *tx, Some(&[id]))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the new collection is not readable"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The collections this key may use.
#[utoipa::path(get, path = "/v1/collections", tag = "collections",
    responses((status = 200, body = Vec<CollectionInfo>)),
    security(("api_key" = ["enroll", "recognize", "admin"])))]
pub async fn list_collections(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<CollectionInfo>>> {
    let only = caller.collections.to_stored();
    Ok(Json(
        store::collections::list(&state.pool, only.as_deref()).await?,
    ))
}
