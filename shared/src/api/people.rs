//! People and their consent records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How consent was collected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvidenceRequest {
    /// E.g. `checkbox`, `signed_form`, `verbal_recorded`.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    pub method: String,
    /// Who collected it (operator id or name of the kiosk).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    pub collected_by: String,
    /// The data subject's device address; defaults to the request's peer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
    /// The data subject's user agent; defaults to the request's `User-Agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// A consent record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentRequest {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    pub policy_version: String,
    /// The policy text shown to the person (hashed, not stored); or give `policy_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_text: Option<String>,
    /// sha256 of the policy text, hex.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^\s*[0-9a-fA-F]{64}\s*$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_sha256: Option<String>,
    /// What the biometric data is used for.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 500,
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    pub purpose: String,
    /// When consent was given (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<DateTime<Utc>>,
    /// When it lapses (default: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub evidence: EvidenceRequest,
}

/// `POST /v1/people`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatePersonRequest {
    /// Display name, 1..200 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    pub name: String,
    /// An id in another system, 1..200 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    /// Required: no consent, no person (its absence is a 400 `consent_required`).
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false))]
    pub consent: Option<ConsentRequest>,
}

/// Where a consent record, or a person's consent, stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ConsentStatus {
    /// In force: not withdrawn, not expired.
    Active,
    Expired,
    Withdrawn,
    /// A person without any consent record.
    None,
}

impl ConsentStatus {
    /// A record's status: withdrawn, else active if it is in force (the `active_consents`
    /// view says), else expired.
    pub fn of_record(withdrawn: bool, in_force: bool) -> Self {
        if withdrawn {
            ConsentStatus::Withdrawn
        } else if in_force {
            ConsentStatus::Active
        } else {
            ConsentStatus::Expired
        }
    }

    /// A person's status from their records' (oldest grant first): active if any is, else
    /// the latest record's, `None` without records.
    pub fn of_person(records: impl IntoIterator<Item = ConsentStatus>) -> Self {
        let mut last = ConsentStatus::None;
        for s in records {
            if s == ConsentStatus::Active {
                return s;
            }
            last = s;
        }
        last
    }
}

/// A consent record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// A person with consent status and face count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PersonView {
    pub id: Uuid,
    pub name: String,
    pub external_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub consent_status: ConsentStatus,
    pub face_count: i64,
    pub consents: Vec<ConsentView>,
}

/// A new person, with the withdrawal token shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedPerson {
    #[serde(flatten)]
    pub person: PersonView,
    /// The data subject's token to withdraw consent (and so erase the record) without an
    /// operator: `POST /v1/people/{id}/consent/withdraw` with `X-Withdrawal-Token`. Returned
    /// only here; the service stores its sha256.
    pub withdrawal_token: String,
}

/// A person in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PersonSummary {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub consent_active: bool,
    pub face_count: i64,
}

/// A page of people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeoplePage {
    pub items: Vec<PersonSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// What an erasure removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Erasure {
    /// The erased person.
    pub person_id: Uuid,
    /// Face embeddings deleted.
    pub faces_deleted: u64,
    /// Consent records deleted.
    pub consents_deleted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_their_wire_names() {
        use ConsentStatus as S;
        assert_eq!(S::of_record(false, true), S::Active);
        assert_eq!(S::of_record(false, false), S::Expired);
        assert_eq!(S::of_record(true, false), S::Withdrawn);
        assert_eq!(
            S::of_person([S::Expired, S::Active, S::Withdrawn]),
            S::Active
        );
        assert_eq!(
            S::of_person([S::Active, S::Expired][1..].to_vec()),
            S::Expired
        );
        assert_eq!(S::of_person([]), S::None);
        let names: Vec<String> = [S::Active, S::Expired, S::Withdrawn, S::None]
            .iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [r#""active""#, r#""expired""#, r#""withdrawn""#, r#""none""#]
        );
    }
}
