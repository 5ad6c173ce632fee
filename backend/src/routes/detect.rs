//! Detection only: boxes, landmarks and quality; nothing stored, nothing matched.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use visage_shared::QualityGate;
use visage_shared::api::FaceReport;

use crate::auth::Caller;
use crate::domain::Scope;
use crate::error::ApiResult;
use crate::routes::extract::RawBody;
use crate::state::AppState;

/// Faces found in an image.
#[derive(Debug, Serialize, ToSchema)]
pub struct DetectResponse {
    pub width: u32,
    pub height: u32,
    /// Each face: box, 5 landmarks, quality and the quality gate's issues.
    #[schema(value_type = Vec<Object>)]
    pub faces: Vec<FaceReport>,
}

/// Detect faces (raw JPEG, PNG or WebP body).
#[utoipa::path(post, path = "/v1/detect", tag = "recognize",
    request_body(content = Vec<u8>, content_type = "image/jpeg"),
    responses((status = 200, body = DetectResponse), (status = 422, body = crate::error::Problem)),
    security(("api_key" = ["recognize"])))]
pub async fn detect(
    State(state): State<AppState>,
    caller: Caller,
    RawBody(body): RawBody,
) -> ApiResult<Json<DetectResponse>> {
    caller.require_any(&[Scope::Recognize, Scope::Enroll])?;
    let a = state.pipeline.analyze(body).await?;
    let gate = QualityGate::default();
    Ok(Json(DetectResponse {
        width: a.width,
        height: a.height,
        faces: a.faces.iter().map(|f| FaceReport::new(f, &gate)).collect(),
    }))
}
