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
use crate::domain::{BoundedText, ConsentEvidence, NewConsent, PersonName, PolicySha256, Scope};
use crate::error::{ApiError, ApiResult};
use crate::routes::common::{Erasure, audit, erase_person};
use crate::routes::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// How consent was collected.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EvidenceRequest {
    /// E.g. `checkbox`, `signed_form`, `verbal_recorded`.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub method: String,
    /// Who collected it (operator id or name of the kiosk).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub collected_by: String,
    /// The data subject's device address; defaults to the request's peer address.
    pub client_address: Option<String>,
    /// The data subject's user agent; defaults to the request's `User-Agent`.
    pub user_agent: Option<String>,
}

/// A consent record.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConsentRequest {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub policy_version: String,
    /// The policy text shown to the person (hashed, not stored); or give `policy_sha256`.
    pub policy_text: Option<String>,
    /// sha256 of the policy text, hex.
    #[schema(pattern = r"^\s*[0-9a-fA-F]{64}\s*$")]
    pub policy_sha256: Option<String>,
    /// What the biometric data is used for.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub purpose: String,
    /// When consent was given (default: now).
    pub granted_at: Option<DateTime<Utc>>,
    /// When it lapses (default: never).
    pub expires_at: Option<DateTime<Utc>>,
    pub evidence: EvidenceRequest,
}

/// `POST /v1/people`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreatePersonRequest {
    /// Display name, 1..200 characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// An id in another system, 1..200 characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub external_ref: Option<String>,
    /// Required: no consent, no person (its absence is a 400 `consent_required`).
    #[schema(required = true, nullable = false)]
    pub consent: Option<ConsentRequest>,
}

/// A consent record as stored.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ConsentView {
    pub id: Uuid,
    pub policy_version: String,
    pub policy_sha256: String,
    pub purpose: String,
    pub granted_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub withdrawn_at: Option<DateTime<Utc>>,
    pub evidence_method: String,
    pub evidence_client_address: Option<String>,
    pub evidence_user_agent: Option<String>,
    pub collected_by: String,
}

impl ConsentView {
    /// `active`, `expired` or `withdrawn`, now.
    pub fn status(&self) -> &'static str {
        if self.withdrawn_at.is_some() {
            "withdrawn"
        } else if self.expires_at.is_some_and(|e| e <= Utc::now()) {
            "expired"
        } else {
            "active"
        }
    }
}

/// A person with consent status and face count.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonView {
    pub id: Uuid,
    pub name: String,
    pub external_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    /// `active`, `expired`, `withdrawn` or `none`.
    pub consent_status: String,
    pub face_count: i64,
    pub consents: Vec<ConsentView>,
}

#[derive(sqlx::FromRow)]
struct PersonRow {
    id: Uuid,
    display_name: String,
    external_ref: Option<String>,
    created_at: DateTime<Utc>,
    face_count: i64,
}

const CONSENT_COLUMNS: &str = "id, policy_version, policy_sha256, purpose, granted_at, expires_at, withdrawn_at, evidence_method, evidence_client_address, evidence_user_agent, collected_by";

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
    let row: Option<PersonRow> = sqlx::query_as(
        "SELECT p.id, p.display_name, p.external_ref, p.created_at, (SELECT count(*) FROM faces f WHERE f.person_id = p.id) AS face_count FROM people p WHERE p.id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    let row = row.ok_or(ApiError::NotFound("person"))?;
    let consents: Vec<ConsentView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CONSENT_COLUMNS} FROM consents WHERE person_id = $1 ORDER BY granted_at"
    )))
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    let consent_status = if consents.iter().any(|c| c.status() == "active") {
        "active"
    } else {
        consents.last().map(|c| c.status()).unwrap_or("none")
    };
    Ok(PersonView {
        id: row.id,
        name: row.display_name,
        external_ref: row.external_ref,
        created_at: row.created_at,
        consent_status: consent_status.to_string(),
        face_count: row.face_count,
        consents,
    })
}

/// A new person, with the withdrawal token shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedPerson {
    #[serde(flatten)]
    pub person: PersonView,
    /// The data subject's token to withdraw consent (and so erase the record) without an
    /// operator: `POST /v1/people/{id}/consent/withdraw` with `X-Withdrawal-Token`. Returned
    /// only here; the service stores its sha256.
    pub withdrawal_token: String,
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
    let id = Uuid::new_v4();
    let token = crate::auth::generate_secret(WITHDRAWAL_TOKEN_PREFIX);
    let mut tx = state.pool.begin().await?;
    sqlx::query("INSERT INTO people (id, display_name, external_ref, created_by_key, withdrawal_token_sha256) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(name.as_str())
        .bind(external_ref.as_ref().map(|r| r.as_str()))
        .bind(caller.key_id)
        .bind(crate::auth::hash_key(&token))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO consents (id, person_id, policy_version, policy_sha256, purpose, granted_at, expires_at, evidence_method, evidence_client_address, evidence_user_agent, collected_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(Uuid::new_v4())
    .bind(id)
    .bind(consent.policy_version.as_str())
    .bind(consent.policy_sha256.as_str())
    .bind(consent.purpose.as_str())
    .bind(consent.granted_at)
    .bind(consent.expires_at)
    .bind(consent.evidence.method.as_str())
    .bind(consent.evidence.client_address.as_deref())
    .bind(consent.evidence.user_agent.as_deref())
    .bind(consent.evidence.collected_by.as_str())
    .execute(&mut *tx)
    .await?;
    audit(
        &mut *tx,
        &caller.actor(),
        "create_person",
        Some(&id.to_string()),
        "ok",
        None,
    )
    .await?;
    tx.commit().await?;
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

/// A person in a list.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct PersonSummary {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub consent_active: bool,
    pub face_count: i64,
}

/// A page of people.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeoplePage {
    pub items: Vec<PersonSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
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
    let sql = format!(
        "SELECT p.id, p.display_name AS name, p.created_at, {} AS consent_active,
                (SELECT count(*) FROM faces f WHERE f.person_id = p.id) AS face_count
         FROM people p
         WHERE ($1::text IS NULL OR p.display_name ILIKE $1)
           AND ($2::timestamptz IS NULL OR (p.created_at, p.id) > ($2, $3))
         ORDER BY p.created_at, p.id LIMIT $4",
        crate::routes::common::active_consent_sql("p.id")
    );
    let mut items: Vec<PersonSummary> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(pattern)
        .bind(cursor.map(|c| c.0))
        .bind(cursor.map(|c| c.1).unwrap_or_default())
        .bind(i64::from(limit) + 1)
        .fetch_all(&state.pool)
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
    Ok(Json(load_person(&state, id).await?))
}

/// A stored face with its embedding (export).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct FaceExport {
    pub id: Uuid,
    pub model_id: String,
    #[schema(value_type = Vec<f32>)]
    #[serde(serialize_with = "ser_vector")]
    pub embedding: pgvector::Vector,
    #[schema(value_type = Object)]
    pub quality: Option<serde_json::Value>,
    pub source: String,
    pub created_at: DateTime<Utc>,
}

fn ser_vector<S: serde::Serializer>(v: &pgvector::Vector, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.as_slice())
}

/// An audit entry.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub outcome: String,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
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
    let person = load_person(&state, id).await?;
    let faces: Vec<FaceExport> =
        sqlx::query_as("SELECT id, model_id, embedding, quality, source, created_at FROM faces WHERE person_id = $1 ORDER BY created_at, id")
            .bind(id)
            .fetch_all(&state.pool)
            .await?;
    let mut subjects: Vec<String> = faces.iter().map(|f| f.id.to_string()).collect();
    subjects.push(id.to_string());
    let audit_rows: Vec<AuditEntry> = sqlx::query_as(
        "SELECT at, actor, action, subject, outcome, detail FROM audit_log WHERE subject = ANY($1) OR detail->'matches' ? $2 ORDER BY id",
    )
    .bind(&subjects)
    .bind(id.to_string())
    .fetch_all(&state.pool)
    .await?;
    audit(
        &state.pool,
        &caller.actor(),
        "export_person",
        Some(&id.to_string()),
        "ok",
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
    let e = erase_person(&state.pool, id, &caller.actor(), "erase_person")
        .await?
        .ok_or(ApiError::NotFound("person"))?;
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
        (Some(c), _) if c.is_admin() => c.actor(),
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
    let e = erase_person(&state.pool, id, &actor, "withdraw_consent")
        .await?
        .ok_or(ApiError::NotFound("person"))?;
    Ok(Json(e))
}
