use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::domain::BoundedText;
use crate::domain::Invalid;

pub use visage_shared::api::ConsentStatus;

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
}
