//! Consent records.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{ConsentStatus, NewConsent};

/// A consent record as stored.
#[derive(Debug, Serialize, ToSchema)]
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
    /// In force now (in the `active_consents` view); the status says it on the wire.
    #[serde(skip)]
    pub active: bool,
}

impl ConsentView {
    /// Active, expired or withdrawn, as the database saw it when the record was read.
    pub fn status(&self) -> ConsentStatus {
        ConsentStatus::of_record(self.withdrawn_at.is_some(), self.active)
    }
}

/// Stores consent record `id` of `person`.
pub async fn insert<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
    person: Uuid,
    c: &NewConsent,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO consents (id, person_id, policy_version, policy_sha256, purpose, granted_at, expires_at, evidence_method, evidence_client_address, evidence_user_agent, collected_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        id,
        person,
        c.policy_version.as_str(),
        c.policy_sha256.as_str(),
        c.purpose.as_str(),
        c.granted_at,
        c.expires_at,
        c.evidence.method.as_str(),
        c.evidence.client_address.as_deref(),
        c.evidence.user_agent.as_deref(),
        c.evidence.collected_by.as_str()
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// A person's consent records, oldest grant first.
pub async fn of_person<'e>(
    ex: impl PgExecutor<'e>,
    person: Uuid,
) -> Result<Vec<ConsentView>, sqlx::Error> {
    sqlx::query_as!(
        ConsentView,
        r#"SELECT c.id, c.policy_version, c.policy_sha256, c.purpose, c.granted_at, c.expires_at, c.withdrawn_at, c.evidence_method, c.evidence_client_address, c.evidence_user_agent, c.collected_by,
                  EXISTS (SELECT 1 FROM active_consents ac WHERE ac.id = c.id) AS "active!"
           FROM consents c WHERE c.person_id = $1 ORDER BY c.granted_at"#,
        person
    )
    .fetch_all(ex)
    .await
}
