//! The one error type of the HTTP API: every failure becomes an `application/problem+json`
//! response (RFC 9457) with a stable machine-readable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use visage_shared::api::Problem;

/// The cause of an internal error, with its own chain of sources.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every way an API request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed input, with a code naming what is wrong.
    #[error("{detail}")]
    BadRequest {
        code: &'static str,
        detail: String,
        extra: Option<serde_json::Value>,
    },
    /// 422: well-formed but unusable input (an image without one usable face, ...).
    #[error("{detail}")]
    Unprocessable {
        code: &'static str,
        detail: String,
        extra: Option<serde_json::Value>,
    },
    /// 401: no or bad API key.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the key lacks a scope.
    #[error("this API key lacks the {0:?} scope")]
    Forbidden(&'static str),
    /// 403: the key has the scope but not the right to this record.
    #[error("{0}")]
    NotPermitted(&'static str),
    /// 404: no such record.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 405: the route exists, the method does not.
    #[error("this method is not allowed on this route")]
    MethodNotAllowed,
    /// 409: the request conflicts with the record's state (consent no longer active, ...).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// 413: the body is over the limit.
    #[error("the request body is over the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415: wrong content type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: per-key rate limit (or too many failed authentications from one address).
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 429: a query budget (verifications of one person) ran out.
    #[error("{detail}")]
    BudgetExhausted {
        detail: &'static str,
        retry_after_secs: u64,
    },
    /// 503: a dependency (database, models) is not available.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; details (the error and its sources) are logged
    /// where it becomes a response, not returned.
    #[error("internal error: {0}")]
    Internal(#[source] BoxError),
}

impl ApiError {
    /// 400 with a code.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
            extra: None,
        }
    }

    /// 422 with a code.
    pub fn unprocessable(
        code: &'static str,
        detail: impl Into<String>,
        extra: Option<serde_json::Value>,
    ) -> Self {
        ApiError::Unprocessable {
            code,
            detail: detail.into(),
            extra,
        }
    }

    /// 500 caused by `e` (an error, kept with its sources, or a message).
    pub fn internal(e: impl Into<BoxError>) -> Self {
        ApiError::Internal(e.into())
    }

    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::NotPermitted(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } | ApiError::BudgetExhausted { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::Conflict { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotPermitted(_) => "not_permitted",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::BudgetExhausted { .. } => "query_budget_exhausted",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The problem body.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            ApiError::Internal(_) => "an internal error occurred; it has been logged".to_string(),
            other => other.to_string(),
        };
        let extra = match self {
            ApiError::BadRequest { extra, .. } | ApiError::Unprocessable { extra, .. } => {
                extra.clone()
            }
            _ => None,
        };
        Problem {
            type_: format!("urn:visage:problem:{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            code: self.code().to_string(),
            extra,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => {
                ApiError::Unavailable("the database is not reachable".into())
            }
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // character_not_in_repertoire, untranslatable_character: a NUL byte (or an
                // unpaired surrogate escape) in text or JSON, which PostgreSQL cannot store.
                Some("22021" | "22P05") => ApiError::bad_request(
                    "invalid_text",
                    "text fields cannot contain NUL characters (\\u0000)",
                ),
                // The server is shutting down, crashed or refuses connections (class 57P), or
                // the connection broke (class 08): the request may be retried.
                Some(c) if c.starts_with("57P") || c.starts_with("08") => {
                    ApiError::Unavailable("the database is not reachable".into())
                }
                _ => ApiError::internal(e),
            },
            _ => ApiError::internal(e),
        }
    }
}

impl From<crate::domain::Invalid> for ApiError {
    fn from(e: crate::domain::Invalid) -> Self {
        ApiError::BadRequest {
            code: e.code,
            detail: e.detail,
            extra: e.extra,
        }
    }
}

impl From<visage_shared::EmbeddingError> for ApiError {
    fn from(e: visage_shared::EmbeddingError) -> Self {
        ApiError::bad_request(e.code(), e.to_string())
    }
}

impl From<visage_shared::DecodeError> for ApiError {
    fn from(e: visage_shared::DecodeError) -> Self {
        use visage_shared::DecodeError as D;
        match &e {
            D::TooManyBytes { max, .. } => ApiError::PayloadTooLarge { limit: *max },
            D::Empty => ApiError::bad_request(e.code(), e.to_string()),
            _ => ApiError::unprocessable(e.code(), e.to_string(), None),
        }
    }
}

impl From<visage_shared::PipelineError> for ApiError {
    fn from(e: visage_shared::PipelineError) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = %error_chain(e.as_ref()), "internal error");
        }
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (self.status(), body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::RateLimited { retry_after_secs }
        | ApiError::BudgetExhausted {
            retry_after_secs, ..
        } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(1).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// An error and its sources, `: `-separated (what the log gets of an internal error).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_database_is_503_not_500() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            sqlx::Error::Protocol("unexpected end of stream".into()),
            sqlx::Error::WorkerCrashed,
        ] {
            let api = ApiError::from(e);
            assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE, "{api:?}");
            assert_eq!(api.code(), "unavailable");
        }
        assert_eq!(
            ApiError::from(sqlx::Error::RowNotFound).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn internal_errors_keep_their_source_and_hide_it() {
        let io = std::io::Error::other("disk on fire");
        let api = ApiError::from(sqlx::Error::Io(io));
        assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE);
        let api = ApiError::from(sqlx::Error::ColumnNotFound("x".into()));
        let source = std::error::Error::source(&api).expect("the sqlx error is its source");
        assert!(source.to_string().contains("x"), "{source}");
        assert!(
            error_chain(&api).contains("internal error: "),
            "{}",
            error_chain(&api)
        );
        assert!(
            !api.problem().detail.contains("x"),
            "{}",
            api.problem().detail
        );
        let wrapped = ApiError::internal(
            anyhow::Error::new(std::io::Error::other("root cause")).context("loading models"),
        );
        let ApiError::Internal(e) = &wrapped else {
            panic!("{wrapped:?}")
        };
        assert_eq!(error_chain(e.as_ref()), "loading models: root cause");
    }

    #[test]
    fn budget_refusals_say_when_to_retry() {
        let r = ApiError::BudgetExhausted {
            detail: "too often",
            retry_after_secs: 60,
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("60")
        );
    }
}
