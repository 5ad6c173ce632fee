//! Faces of a person: add by embeddings (computed on the client) or by image, delete.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use uuid::Uuid;
use visage_shared::api::FaceReport;
pub use visage_shared::api::{AddFacesRequest, AddedFaces};
use visage_shared::{Embedding, QualityGate};

use crate::auth::Caller;
use crate::domain::{AuditAction, AuditOutcome, FaceSource, Scope};
use crate::error::{ApiError, ApiResult};
use crate::routes::common::{parse_embeddings, visible_person};
use crate::routes::extract::{ApiJson, ApiPath, RawBody};
use crate::state::AppState;
use crate::store;

/// Most faces one person may have.
pub const MAX_FACES_PER_PERSON: i64 = 50;
/// Most embeddings in one request.
pub const MAX_EMBEDDINGS_PER_REQUEST: usize = 10;

/// Whether `caller` may add or delete faces of a person created by `created_by`: admin keys
/// may change anyone; an enroll key only the people it enrolled itself. Otherwise one leaked
/// enroll key could add its holder's face to anyone's record and be recognised as them.
fn may_change(caller: &Caller, created_by: Option<Uuid>) -> bool {
    caller.is_admin() || created_by == Some(caller.key_id)
}

fn not_theirs() -> ApiError {
    ApiError::NotPermitted("an enroll key may only change the faces of people it enrolled")
}

/// The creator of a person the caller may see, or 404.
async fn person_creator(
    state: &AppState,
    caller: &Caller,
    person_id: Uuid,
) -> ApiResult<Option<Uuid>> {
    visible_person(state, caller, person_id).await?;
    store::people::creator(&state.pool, person_id)
        .await?
        .ok_or(ApiError::NotFound("person"))
}

/// Stores faces for a person whose consent is active, in one transaction.
async fn store_faces(
    state: &AppState,
    caller: &Caller,
    person_id: Uuid,
    faces: Vec<(Embedding, Option<serde_json::Value>)>,
    source: FaceSource,
) -> ApiResult<(Vec<Uuid>, i64)> {
    visible_person(state, caller, person_id).await?;
    let mut tx = state.pool.begin().await?;
    let row = store::people::lock_for_change(&mut tx, person_id).await?;
    match row {
        None => return Err(ApiError::NotFound("person")),
        Some((created_by, _)) if !may_change(caller, created_by) => {
            return Err(not_theirs());
        }
        Some((_, false)) => {
            return Err(ApiError::Conflict {
                code: "consent_inactive",
                detail: "the person's consent has expired or was withdrawn".into(),
            });
        }
        Some(_) => {}
    }
    let count = store::faces::count(&mut *tx, person_id).await?;
    if count + faces.len() as i64 > MAX_FACES_PER_PERSON {
        return Err(ApiError::Conflict {
            code: "too_many_faces",
            detail: format!(
                "a person may have at most {MAX_FACES_PER_PERSON} faces; they have {count}"
            ),
        });
    }
    let mut ids = Vec::with_capacity(faces.len());
    for (emb, quality) in faces {
        let id = Uuid::new_v4();
        store::faces::insert(&mut *tx, id, person_id, emb, quality, source).await?;
        ids.push(id);
    }
    store::audit::record(
        &mut *tx,
        &caller.actor(),
        AuditAction::AddFaces,
        Some(&person_id.to_string()),
        AuditOutcome::Ok,
        Some(serde_json::json!({ "faces": ids.len(), "source": source.as_str() })),
    )
    .await?;
    tx.commit().await?;
    state.reads.wrote(caller.key_id).await;
    Ok((ids.clone(), count + ids.len() as i64))
}

/// Add faces by embeddings computed on the client (no image leaves the device).
#[utoipa::path(post, path = "/v1/people/{id}/faces", tag = "faces", params(("id" = Uuid, Path)), request_body = AddFacesRequest,
    responses((status = 201, body = AddedFaces), (status = 400, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("api_key" = ["enroll"])))]
pub async fn add_faces(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(person_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<AddFacesRequest>,
) -> ApiResult<(StatusCode, Json<AddedFaces>)> {
    caller.require(Scope::Enroll)?;
    let embs = parse_embeddings(req.embeddings, MAX_EMBEDDINGS_PER_REQUEST)?;
    if req
        .quality
        .as_ref()
        .is_some_and(|q| q.to_string().len() > 4096)
    {
        return Err(ApiError::bad_request(
            "quality_too_large",
            "quality must be a small JSON object",
        ));
    }
    let faces = embs.into_iter().map(|e| (e, req.quality.clone())).collect();
    let (face_ids, face_count) = store_faces(&state, &caller, person_id, faces, req.source).await?;
    Ok((
        StatusCode::CREATED,
        Json(AddedFaces {
            person_id,
            face_ids,
            face_count,
            face: None,
        }),
    ))
}

/// Add a face from an uploaded image (JPEG, PNG or WebP as the raw body): exactly one face
/// must be found and pass the quality gate.
#[utoipa::path(post, path = "/v1/people/{id}/faces/image", tag = "faces", params(("id" = Uuid, Path)),
    request_body(content = Vec<u8>, content_type = "image/jpeg"),
    responses((status = 201, body = AddedFaces), (status = 422, body = crate::error::Problem), (status = 413, body = crate::error::Problem)),
    security(("api_key" = ["enroll"])))]
pub async fn add_face_image(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(person_id): ApiPath<Uuid>,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<AddedFaces>)> {
    caller.require(Scope::Enroll)?;
    // Fail fast on unknown or others' people before the costly pipeline.
    if !may_change(&caller, person_creator(&state, &caller, person_id).await?) {
        return Err(not_theirs());
    }
    let analysis = state.pipeline.analyze_strict(body).await?;
    let gate = QualityGate::default();
    let n = analysis.faces.len();
    if n != 1 {
        let code = if n == 0 { "no_face" } else { "multiple_faces" };
        return Err(ApiError::unprocessable(
            code,
            format!("enrollment needs exactly one face in the image; found {n}"),
            Some(serde_json::json!({ "faces_found": n })),
        ));
    }
    let Some(face) = analysis.faces.into_iter().next() else {
        return Err(ApiError::internal("face vanished"));
    };
    let report = FaceReport::new(&face, &gate);
    if !report.quality_issues.is_empty() {
        let advice: Vec<String> = report
            .quality_issues
            .iter()
            .map(|i| i.advice.clone())
            .collect();
        return Err(ApiError::unprocessable(
            "face_quality",
            format!(
                "the face is not good enough to enroll: {}",
                advice.join("; ")
            ),
            Some(serde_json::json!({ "issues": report.quality_issues })),
        ));
    }
    let quality = serde_json::to_value(face.quality).ok();
    let (face_ids, face_count) = store_faces(
        &state,
        &caller,
        person_id,
        vec![(face.embedding, quality)],
        FaceSource::Upload,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(AddedFaces {
            person_id,
            face_ids,
            face_count,
            face: Some(report),
        }),
    ))
}

/// Delete one face.
#[utoipa::path(delete, path = "/v1/people/{id}/faces/{face_id}", tag = "faces", params(("id" = Uuid, Path), ("face_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)),
    security(("api_key" = ["enroll"])))]
pub async fn delete_face(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((person_id, face_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Enroll)?;
    if !may_change(&caller, person_creator(&state, &caller, person_id).await?) {
        return Err(not_theirs());
    }
    let mut tx = state.pool.begin().await?;
    if !store::faces::delete(&mut *tx, face_id, person_id).await? {
        return Err(ApiError::NotFound("face"));
    }
    store::audit::record(
        &mut *tx,
        &caller.actor(),
        AuditAction::DeleteFace,
        Some(&face_id.to_string()),
        AuditOutcome::Ok,
        Some(serde_json::json!({ "person_id": person_id })),
    )
    .await?;
    tx.commit().await?;
    state.reads.erased().await;
    // A deleted face is erased biometric data too: its bytes leave the files the same way.
    crate::scrub::after_erasure(&state.pool);
    Ok(StatusCode::NO_CONTENT)
}
