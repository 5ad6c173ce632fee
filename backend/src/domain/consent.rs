use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::domain::BoundedText;
use crate::domain::Invalid;

/// The sha256 of a consent policy text, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySha256(String);

impl PolicySha256 {
    /// From the policy text itself.
    pub fn of_text(text: &str) -> Self {
        Self(hex::encode(Sha256::digest(text.as_bytes())))
    }

    /// From a given hex digest.
    pub fn parse(hex_digest: &str) -> Result<Self, Invalid> {
        let h = hex_digest.trim().to_ascii_lowercase();
        if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(h))
        } else {
            Err(Invalid::new(
                "consent_policy_hash_invalid",
                "policy_sha256 must be 64 hex digits",
            ))
        }
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a consent record, or a person's consent, stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
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

/// How consent was collected.
#[derive(Debug, Clone)]
pub struct ConsentEvidence {
    pub method: BoundedText<100>,
    pub collected_by: BoundedText<200>,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
}

/// A consent record ready to store: a policy, a purpose, a validity window and evidence.
#[derive(Debug, Clone)]
pub struct NewConsent {
    pub policy_version: BoundedText<100>,
    pub policy_sha256: PolicySha256,
    pub purpose: BoundedText<500>,
    pub granted_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub evidence: ConsentEvidence,
}

impl NewConsent {
    /// Checks the validity window: granted not in the future (5 minutes of clock skew
    /// allowed), expiry after both the grant and now.
    pub fn check_window(
        granted_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), Invalid> {
        if granted_at > now + chrono::Duration::minutes(5) {
            return Err(Invalid::new(
                "consent_granted_in_future",
                "consent granted_at is in the future",
            ));
        }
        if let Some(exp) = expires_at
            && (exp <= granted_at || exp <= now)
        {
            return Err(Invalid::new(
                "consent_expired",
                "consent expires_at must be after granted_at and in the future",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_windows() {
        assert_eq!(
            PolicySha256::of_text("").as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(PolicySha256::parse("abc").is_err());
        let now = Utc::now();
        assert!(
            NewConsent::check_window(now, Some(now - chrono::Duration::seconds(1)), now).is_err()
        );
        assert!(NewConsent::check_window(now + chrono::Duration::hours(1), None, now).is_err());
        assert!(NewConsent::check_window(now, Some(now + chrono::Duration::days(1)), now).is_ok());
    }

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
