//! Consent records.

use sqlx::PgExecutor;
use uuid::Uuid;

pub use visage_shared::api::ConsentView;

use crate::domain::NewConsent;

/// Stores consent record `id` of `person` (in the person's collection).
pub async fn insert<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
    person: Uuid,
    c: &NewConsent,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO consents (id, person_id, policy_version, policy_sha256, purpose, granted_at, expires_at, evidence_method, evidence_client_address, evidence_user_agent, collected_by, collection_id)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, p.collection_id FROM people p WHERE p.id = $2",
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
