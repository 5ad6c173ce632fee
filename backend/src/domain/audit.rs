//! What the audit log records: actions and their outcomes, as stored (text).

/// An audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    CreatePerson,
    ExportPerson,
    ErasePerson,
    WithdrawConsent,
    /// The background job's erasure of a person whose consent expired.
    PurgeExpiredConsent,
    AddFaces,
    DeleteFace,
    Recognize,
    Verify,
    CreateKey,
    RevokeKey,
    RotateKey,
    CreateCollection,
}

impl AuditAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::CreatePerson => "create_person",
            AuditAction::ExportPerson => "export_person",
            AuditAction::ErasePerson => "erase_person",
            AuditAction::WithdrawConsent => "withdraw_consent",
            AuditAction::PurgeExpiredConsent => "purge_expired_consent",
            AuditAction::AddFaces => "add_faces",
            AuditAction::DeleteFace => "delete_face",
            AuditAction::Recognize => "recognize",
            AuditAction::Verify => "verify",
            AuditAction::CreateKey => "create_key",
            AuditAction::RevokeKey => "revoke_key",
            AuditAction::RotateKey => "rotate_key",
            AuditAction::CreateCollection => "create_collection",
        }
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    Ok,
    /// A recognition or verification that matched.
    Match,
    NoMatch,
    /// A verification refused because a query budget ran out.
    BudgetExhausted,
}

impl AuditOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Match => "match",
            AuditOutcome::NoMatch => "no_match",
            AuditOutcome::BudgetExhausted => "budget_exhausted",
        }
    }

    /// `Match` or `NoMatch`.
    pub fn matched(is_match: bool) -> Self {
        if is_match {
            AuditOutcome::Match
        } else {
            AuditOutcome::NoMatch
        }
    }
}
