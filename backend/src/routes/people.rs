//! People and their consent: create, list, show, export, erase, withdraw consent.

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header::USER_AGENT};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Caller, MaybeCaller};
use crate::domain::{
    AuditAction, AuditOutcome, BoundedText, ConsentEvidence, ConsentStatus, NewConsent, PersonName,
    PolicySha256, Scope,
};
use crate::error::{ApiError, ApiResult};
use crate::routes::common::{Erasure, erase_person, visible_person};
use crate::routes::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::store;
pub use crate::store::audit::AuditEntry;
pub use crate::store::consents::ConsentView;
pub use crate::store::faces::FaceExport;
pub use crate::store::people::PersonSummary;
pub use visage_shared::api::{
    ConsentRequest, CreatePersonRequest, CreatedPerson, EvidenceRequest, PeoplePage, PersonView,
};

fn parse_consent(
    c: ConsentRequest,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<NewConsent, ApiError> {
    let policy_sha256 = match (&c.policy_text, &c.policy_sha256) {
        (Some(t), None) if !t.trim().is_empty() => PolicySha256::of_text(t),
        (None, Some(h)) => PolicySha256::parse(h)?,
        (Some(t), Some(h)) => {
            let from_text = PolicySha256::of_text(t);
            if from_text != PolicySha256::parse(h)? {
                return Err(ApiError::bad_request(
                    "consent_policy_hash_mismatch",
                    "policy_sha256 is not the sha256 of policy_text",
                ));
            }
            from_text
        }
        _ => {
            return Err(ApiError::bad_request(
                "consent_policy_missing",
                "consent needs policy_text or policy_sha256",
            ));
        }
    };
    let now = Utc::now();
    let granted_at = c.granted_at.unwrap_or(now);
    NewConsent::check_window(granted_at, c.expires_at, now)?;
    let clip = |s: String| -> String { s.chars().take(500).collect() };
    Ok(NewConsent {
        policy_version: BoundedText::parse(&c.policy_version, "consent.policy_version")?,
        policy_sha256,
        purpose: BoundedText::parse(&c.purpose, "consent.purpose")?,
        granted_at,
        expires_at: c.expires_at,
        evidence: ConsentEvidence {
            method: BoundedText::parse(&c.evidence.method, "consent.evidence.method")?,
            collected_by: BoundedText::parse(
                &c.evidence.collected_by,
                "consent.evidence.collected_by",
            )?,
            client_address: c
                .evidence
                .client_address
                .or_else(|| peer.map(|p| p.ip().to_string()))
                .map(clip),
            user_agent: c
                .evidence
                .user_agent
                .or_else(|| {
                    headers
                        .get(USER_AGENT)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                })
                .map(clip),
        },
    })
}

async fn load_person(state: &AppState, id: Uuid) -> ApiResult<PersonView> {
    let row = store::people::find(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound("person"))?;
    let consents = store::consents::of_person(&state.pool, id).await?;
    Ok(PersonView {
        id: row.id,
        name: row.display_name,
        external_ref: row.external_ref,
        created_at: row.created_at,
        consent_status: ConsentStatus::of_person(consents.iter().map(ConsentView::status)),
        face_count: row.face_count,
        consents,
    })
}

/// Prefix of withdrawal tokens.
pub const WITHDRAWAL_TOKEN_PREFIX: &str = "vwt_";

/// The header that carries a withdrawal token.
pub const WITHDRAWAL_TOKEN_HEADER: &str = "x-withdrawal-token";

/// Create a person with their consent record. The response carries the person's withdrawal
/// token, once.
#[utoipa::path(post, path = "/v1/people", tag = "people", request_body = CreatePersonRequest,
    responses((status = 201, body = CreatedPerson), (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem)),
    security(("api_key" = ["enroll"])))]
pub async fn create_person(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreatePersonRequest>,
) -> ApiResult<(StatusCode, Json<CreatedPerson>)> {
    caller.require(Scope::Enroll)?;
    let name = PersonName::parse(&req.name, "name")?;
    let external_ref = req
        .external_ref
        .as_deref()
        .map(|r| BoundedText::<200>::parse(r, "external_ref"))
        .transpose()?;
    let consent = req.consent.ok_or_else(|| {
        ApiError::bad_request(
            "consent_required",
            "a person can only be created with a consent record",
        )
    })?;
    let consent = parse_consent(consent, Some(peer), &headers)?;
    let collection_id = caller.collection(&state).await?;
    let id = Uuid::new_v4();
    let token = crate::auth::generate_secret(WITHDRAWAL_TOKEN_PREFIX);
    let mut tx = state.pool.begin().await?;
    let person = store::people::NewPerson {
        id,
        name: name.as_str(),
        external_ref: external_ref.as_ref().map(|r| r.as_str()),
        created_by_key: caller.key_id,
        withdrawal_token_sha256: &crate::auth::hash_key(&token),
        collection_id,
    };
    store::people::insert(&mut *tx, &person).await?;
    store::consents::insert(&mut *tx, Uuid::new_v4(), id, &consent).await?;
    store::audit::record(
        &mut *tx,
        &caller.actor(),
        AuditAction::CreatePerson,
        Some(&id.to_string()),
        AuditOutcome::Ok,
        None,
    )
    .await?;
    tx.commit().await?;
    state.reads.wrote(caller.key_id).await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedPerson {
            person: load_person(&state, id).await?,
            withdrawal_token: token,
        }),
    ))
}

/// `GET /v1/people` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
    /// 1..200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn encode_cursor(t: DateTime<Utc>, id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}|{id}", t.timestamp_micros()))
}

fn decode_cursor(s: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_cursor",
            "the cursor is not one this server gave out",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = text.split_once('|').ok_or_else(bad)?;
    let t = DateTime::from_timestamp_micros(t.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((t, id.parse().map_err(|_| bad())?))
}

/// List people, oldest first, with cursor pagination and name search.
#[utoipa::path(get, path = "/v1/people", tag = "people", params(ListQuery),
    responses((status = 200, body = PeoplePage), (status = 400, body = crate::error::Problem)),
    security(("api_key" = ["admin"])))]
pub async fn list_people(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<PeoplePage>> {
    caller.require(Scope::Admin)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request(
            "limit_out_of_range",
            "limit must be between 1 and 200",
        ));
    }
    let cursor = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let collections = caller.visible_collections(&state).await?;
    let pattern =
        q.q.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let escaped = s
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                format!("%{escaped}%")
            });
    let (collections, pattern) = (collections.as_deref(), pattern.as_deref());
    let mut items = state
        .reads
        .read(Some(caller.key_id), |pool| async move {
            store::people::list(&pool, collections, pattern, cursor, i64::from(limit) + 1).await
        })
        .await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|p| encode_cursor(p.created_at, p.id))
    } else {
        None
    };
    Ok(Json(PeoplePage { items, next_cursor }))
}

/// Show one person: consent status and face count.
#[utoipa::path(get, path = "/v1/people/{id}", tag = "people", params(("id" = Uuid, Path)),
    responses((status = 200, body = PersonView), (status = 404, body = crate::error::Problem)),
    security(("api_key" = ["admin"])))]
pub async fn show_person(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<PersonView>> {
    caller.require(Scope::Admin)?;
    visible_person(&state, &caller, id).await?;
    Ok(Json(load_person(&state, id).await?))
}

/// Everything held about a person (right of access).
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonExport {
    pub person: PersonView,
    pub faces: Vec<FaceExport>,
    pub audit: Vec<AuditEntry>,
}

/// Export everything held about a person: record, consents, faces with embeddings, audit.
#[utoipa::path(get, path = "/v1/people/{id}/export", tag = "people", params(("id" = Uuid, Path)),
    responses((status = 200, body = PersonExport), (status = 404, body = crate::error::Problem)),
    security(("api_key" = ["admin"])))]
pub async fn export_person(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<PersonExport>> {
    caller.require(Scope::Admin)?;
    visible_person(&state, &caller, id).await?;
    let person = load_person(&state, id).await?;
    let faces = store::faces::of_person(&state.pool, id).await?;
    let mut subjects: Vec<String> = faces.iter().map(|f| f.id.to_string()).collect();
    subjects.push(id.to_string());
    let audit_rows = store::audit::about(&state.pool, &subjects, &id.to_string()).await?;
    store::audit::record(
        &state.pool,
        &caller.actor(),
        AuditAction::ExportPerson,
        Some(&id.to_string()),
        AuditOutcome::Ok,
        None,
    )
    .await?;
    Ok(Json(PersonExport {
        person,
        faces,
        audit: audit_rows,
    }))
}

/// Erase a person: faces, consents and personal data go in one transaction; the audit entry
/// stays, without personal data.
#[utoipa::path(delete, path = "/v1/people/{id}", tag = "people", params(("id" = Uuid, Path)),
    responses((status = 200, body = Erasure), (status = 404, body = crate::error::Problem)),
    security(("api_key" = ["admin"])))]
pub async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Erasure>> {
    caller.require(Scope::Admin)?;
    visible_person(&state, &caller, id).await?;
    let e = erase_person(&state.pool, id, &caller.actor(), AuditAction::ErasePerson)
        .await?
        .ok_or(ApiError::NotFound("person"))?;
    state.reads.erased().await;
    Ok(Json(e))
}

/// Withdraw consent: the same as erasure (nothing biometric is kept without consent). The
/// data subject's act: with the person's withdrawal token in `X-Withdrawal-Token` (no API key
/// needed), or an admin key. Enroll keys cannot withdraw anyone's consent: a key pasted into a
/// browser page is exposed to everyone who uses that browser.
#[utoipa::path(post, path = "/v1/people/{id}/consent/withdraw", tag = "people",
    params(("id" = Uuid, Path), ("X-Withdrawal-Token" = Option<String>, Header, description = "The token returned when the person was created")),
    responses((status = 200, body = Erasure), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security((), ("api_key" = ["admin"])))]
pub async fn withdraw_consent(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Erasure>> {
    let token = headers
        .get(WITHDRAWAL_TOKEN_HEADER)
        .map(|v| v.to_str().unwrap_or_default().trim().to_string());
    let actor = match (&caller, token) {
        (Some(c), _) if c.is_admin() => {
            visible_person(&state, c, id).await?;
            c.actor()
        }
        (_, Some(token)) => {
            crate::auth::check_withdrawal_token(&state, peer.ip(), id, &token).await?;
            "data_subject".to_string()
        }
        (Some(c), None) => {
            c.require(Scope::Admin)?;
            c.actor()
        }
        (None, None) => {
            return Err(ApiError::Unauthorized(
                "withdrawal needs the person's X-Withdrawal-Token or an admin API key".into(),
            ));
        }
    };
    let e = erase_person(&state.pool, id, &actor, AuditAction::WithdrawConsent)
        .await?
        .ok_or(ApiError::NotFound("person"))?;
    state.reads.erased().await;
    Ok(Json(e))
}
