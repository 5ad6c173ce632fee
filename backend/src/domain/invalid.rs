//! Why a value is not valid: the domain's one error, with a stable code. It becomes an HTTP
//! problem (400) only at the edge (`From<Invalid> for ApiError`).

/// A value that is not valid: `code` names the rule, `detail` says what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{detail}")]
pub struct Invalid {
    pub code: &'static str,
    pub detail: String,
    /// Structured detail (which item of a list, ...).
    pub extra: Option<serde_json::Value>,
}

impl Invalid {
    /// `code` with `detail`.
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            extra: None,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}
