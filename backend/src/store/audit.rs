//! The audit log: entries written by every change and every match, read by the export.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use utoipa::ToSchema;

use crate::domain::{AuditAction, AuditOutcome};

/// An audit entry as stored (`action` and `outcome` as text: the log is history, and may hold
/// names older than this build's enums).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub outcome: String,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

/// Writes an audit entry. `subject` is an opaque id, never a name; `detail` never holds
/// personal data, embeddings or images.
pub async fn record<'e>(
    ex: impl PgExecutor<'e>,
    actor: &str,
    action: AuditAction,
    subject: Option<&str>,
    outcome: AuditOutcome,
    detail: Option<serde_json::Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO audit_log (actor, action, subject, outcome, detail) VALUES ($1, $2, $3, $4, $5)",
        actor,
        action.as_str(),
        subject,
        outcome.as_str(),
        detail
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// The entries about any of `subjects` or naming `person` among their matches, oldest first.
pub async fn about<'e>(
    ex: impl PgExecutor<'e>,
    subjects: &[String],
    person: &str,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    sqlx::query_as!(
        AuditEntry,
        "SELECT at, actor, action, subject, outcome, detail FROM audit_log WHERE subject = ANY($1) OR detail->'matches' ? $2 ORDER BY id",
        subjects,
        person
    )
    .fetch_all(ex)
    .await
}
