//! Recognition (1:N) and verification (1:1), by embeddings or by image.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;
use visage_shared::api::{Decision, FaceReport};
pub use visage_shared::api::{
    ProbeResult, RecognizeRequest, RecognizeResponse, VerifyRequest, VerifyResponse,
};
use visage_shared::model::ProbeClass;
use visage_shared::{Embedding, QualityGate};

use crate::auth::Caller;
use crate::domain::{AuditAction, AuditOutcome, OperatingPoint, Scope};
use crate::error::{ApiError, ApiResult};
use crate::oracle::{BudgetExhausted, Disclosure, check_plausible};
use crate::routes::common::{MatchParams, parse_embeddings, search, visible_person};
use crate::routes::extract::{ApiJson, ApiQuery, RawBody};
use crate::state::AppState;
use crate::store;

/// Most probe embeddings per request.
pub const MAX_PROBES: usize = 20;

/// Query of the image endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MatchQuery {
    /// Candidates per face, 1..50 (default 5; at most 5 for non-admin keys).
    #[param(minimum = 1, maximum = 50)]
    pub top_k: Option<u32>,
    pub threshold: Option<f32>,
    /// Instead of `threshold`: the highest false-match rate to accept, (0, 1] (see
    /// `RecognizeRequest`).
    pub max_false_match_rate: Option<f64>,
}

async fn run_search(
    state: &AppState,
    caller: &Caller,
    probes: Vec<(Option<FaceReport>, Embedding)>,
    p: MatchParams,
) -> ApiResult<RecognizeResponse> {
    let mut results = Vec::with_capacity(probes.len());
    let mut matches: Vec<String> = Vec::new();
    for (face, emb) in probes {
        // Only a face the service measured may use the small-probe table: a client's embedding
        // says nothing checkable about the face it came from.
        let class = face.as_ref().map_or(ProbeClass::Clean, |f| {
            ProbeClass::of_face_px(f.quality.face_px)
        });
        let probe = &emb;
        let candidates = state
            .reads
            .read(Some(caller.key_id), |pool| async move {
                search(&pool, probe, class, p).await
            })
            .await?;
        matches.extend(
            candidates
                .iter()
                .filter(|c| c.is_match)
                .map(|c| c.person_id.to_string()),
        );
        results.push(ProbeResult::new(face, candidates, p.thresholds.of(class)));
    }
    store::audit::record(
        &state.pool,
        &caller.actor(),
        AuditAction::Recognize,
        None,
        AuditOutcome::matched(!matches.is_empty()),
        Some(serde_json::json!({ "collection": p.collection, "probes": results.len(), "matches": matches })),
    )
    .await?;
    Ok(RecognizeResponse {
        model: visage_shared::model::EMBEDDER_ID.to_string(),
        threshold: p.thresholds.clean,
        top_k: p.top_k,
        results,
    })
}

/// Recognize embeddings computed on the client: top-k people for each.
#[utoipa::path(post, path = "/v1/recognize", tag = "recognize", request_body = RecognizeRequest,
    responses((status = 200, body = RecognizeResponse), (status = 400, body = crate::error::Problem)),
    security(("api_key" = ["recognize"])))]
pub async fn recognize(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<RecognizeRequest>,
) -> ApiResult<Json<RecognizeResponse>> {
    caller.require(Scope::Recognize)?;
    let disclosure = Disclosure::for_caller(&caller, state.threshold_floor);
    let op = OperatingPoint::parse(req.threshold, req.max_false_match_rate)?;
    let collection = caller.collection(&state).await?;
    let p = MatchParams::new(collection, disclosure, req.top_k, op, state.search)?;
    let embs = parse_embeddings(req.embeddings, MAX_PROBES)?;
    if disclosure != Disclosure::Full {
        for e in &embs {
            check_plausible(e)?;
        }
    }
    Ok(Json(
        run_search(
            &state,
            &caller,
            embs.into_iter().map(|e| (None, e)).collect(),
            p,
        )
        .await?,
    ))
}

/// Recognize every face in an image (raw JPEG, PNG or WebP body).
#[utoipa::path(post, path = "/v1/recognize/image", tag = "recognize", params(MatchQuery),
    request_body(content = Vec<u8>, content_type = "image/jpeg"),
    responses((status = 200, body = RecognizeResponse), (status = 422, body = crate::error::Problem)),
    security(("api_key" = ["recognize"])))]
pub async fn recognize_image(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<MatchQuery>,
    RawBody(body): RawBody,
) -> ApiResult<Json<RecognizeResponse>> {
    caller.require(Scope::Recognize)?;
    let disclosure = Disclosure::for_caller(&caller, state.threshold_floor);
    let op = OperatingPoint::parse(q.threshold, q.max_false_match_rate)?;
    let collection = caller.collection(&state).await?;
    let p = MatchParams::new(collection, disclosure, q.top_k, op, state.search)?;
    let analysis = state.pipeline.analyze(body).await?;
    let gate = QualityGate::default();
    // The largest faces first (the pipeline's order); at most MAX_PROBES per image.
    let probes = analysis
        .faces
        .into_iter()
        .take(MAX_PROBES)
        .map(|f| (Some(FaceReport::new(&f, &gate)), f.embedding))
        .collect();
    Ok(Json(run_search(&state, &caller, probes, p).await?))
}

/// `POST /v1/verify/image` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    pub person_id: Uuid,
    pub threshold: Option<f32>,
    /// Instead of `threshold`: the highest false-match rate to accept (see `RecognizeRequest`).
    pub max_false_match_rate: Option<f64>,
}

/// The verification itself; the caller has checked that the key sees `person_id`
/// ([`visible_person`]).
async fn verify_one(
    state: &AppState,
    caller: &Caller,
    person_id: Uuid,
    emb: &Embedding,
    class: ProbeClass,
    operating_point: Option<OperatingPoint>,
) -> ApiResult<VerifyResponse> {
    let disclosure = Disclosure::for_caller(caller, state.threshold_floor);
    let thresholds = disclosure.thresholds(operating_point)?;
    let threshold = thresholds.of(class);
    if disclosure != Disclosure::Full {
        spend_verify_budget(state, caller, person_id).await?;
    }
    let (active, best) = state
        .reads
        .read(Some(caller.key_id), |pool| async move {
            let active = store::people::consent_active(&pool, person_id).await?;
            let best = store::faces::best_similarity(&pool, person_id, emb).await?;
            Ok((active, best))
        })
        .await?;
    match active {
        None => return Err(ApiError::NotFound("person")),
        Some(false) => {
            return Err(ApiError::Conflict {
                code: "consent_inactive",
                detail: "the person's consent has expired or was withdrawn".into(),
            });
        }
        Some(true) => {}
    }
    let raw = best.ok_or_else(|| ApiError::Conflict {
        code: "no_faces",
        detail: "the person has no enrolled face".into(),
    })? as f32;
    let is_match = raw >= threshold;
    let similarity = disclosure.similarity(raw, is_match);
    store::audit::record(
        &state.pool,
        &caller.actor(),
        AuditAction::Verify,
        Some(&person_id.to_string()),
        AuditOutcome::matched(is_match),
        None,
    )
    .await?;
    Ok(VerifyResponse {
        person_id,
        similarity,
        is_match,
        threshold,
        false_match_rate: similarity
            .and_then(|s| visage_shared::model::false_match_rate_of(class, s)),
        face: None,
        decision: Decision::of(is_match, None),
    })
}

/// Takes one verification of `person_id` from the caller's budgets, or refuses with 429 and
/// (once a minute per budget) an audit entry.
async fn spend_verify_budget(state: &AppState, caller: &Caller, person_id: Uuid) -> ApiResult<()> {
    let Err(which) = state.budgets.take(caller.key_id, person_id) else {
        return Ok(());
    };
    let (budget, detail) = match which {
        BudgetExhausted::KeyPerson => (
            "key_person",
            "this key has verified this person too often; try again later",
        ),
        BudgetExhausted::Person => (
            "person",
            "this person has been verified too often; try again later",
        ),
    };
    metrics::counter!("visage_query_budget_exhausted_total", "budget" => budget).increment(1);
    if state.budgets.should_report(caller.key_id, person_id, which) {
        tracing::warn!(key = %caller.key_id, person = %person_id, budget, "verification budget exhausted");
        store::audit::record(
            &state.pool,
            &caller.actor(),
            AuditAction::Verify,
            Some(&person_id.to_string()),
            AuditOutcome::BudgetExhausted,
            Some(serde_json::json!({ "budget": budget })),
        )
        .await?;
    }
    Err(ApiError::BudgetExhausted {
        detail,
        retry_after_secs: 60,
    })
}

/// Verify 1:1: is this embedding the given person?
#[utoipa::path(post, path = "/v1/verify", tag = "recognize", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("api_key" = ["recognize"])))]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<Json<VerifyResponse>> {
    caller.require(Scope::Recognize)?;
    let emb = parse_embeddings(vec![req.embedding], 1)?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("no embedding"))?;
    if !caller.is_admin() {
        check_plausible(&emb)?;
    }
    let op = OperatingPoint::parse(req.threshold, req.max_false_match_rate)?;
    visible_person(&state, &caller, req.person_id).await?;
    Ok(Json(
        verify_one(&state, &caller, req.person_id, &emb, ProbeClass::Clean, op).await?,
    ))
}

/// Verify 1:1 from an image holding exactly one face.
#[utoipa::path(post, path = "/v1/verify/image", tag = "recognize", params(VerifyQuery),
    request_body(content = Vec<u8>, content_type = "image/jpeg"),
    responses((status = 200, body = VerifyResponse), (status = 422, body = crate::error::Problem)),
    security(("api_key" = ["recognize"])))]
pub async fn verify_image(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<VerifyQuery>,
    RawBody(body): RawBody,
) -> ApiResult<Json<VerifyResponse>> {
    caller.require(Scope::Recognize)?;
    // Everything the request can be refused for without the image comes first: no pipeline
    // time is spent on a person the key cannot see (the same 404 either way).
    let op = OperatingPoint::parse(q.threshold, q.max_false_match_rate)?;
    visible_person(&state, &caller, q.person_id).await?;
    let analysis = state.pipeline.analyze(body).await?;
    let n = analysis.faces.len();
    if n != 1 {
        return Err(ApiError::unprocessable(
            if n == 0 { "no_face" } else { "multiple_faces" },
            format!("verification needs exactly one face in the image; found {n}"),
            Some(serde_json::json!({ "faces_found": n })),
        ));
    }
    let Some(face) = analysis.faces.into_iter().next() else {
        return Err(ApiError::internal("face vanished"));
    };
    let report = FaceReport::new(&face, &QualityGate::default());
    let class = ProbeClass::of_face_px(face.quality.face_px);
    let mut v = verify_one(&state, &caller, q.person_id, &face.embedding, class, op).await?;
    v.decision = Decision::of(v.is_match, Some(&report));
    v.face = Some(report);
    Ok(Json(v))
}
