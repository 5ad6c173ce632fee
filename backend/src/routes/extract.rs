//! Extractors whose rejections are problem responses (axum's own answer in plain text). The
//! body extractors are written out: their 413 names the configured limit, which a rejection
//! type's `From` cannot see.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

fn from_status(status: StatusCode, code: &'static str, text: String, limit: usize) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
        _ => ApiError::bad_request(code, text),
    }
}

/// The configured body limit, for error messages.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

impl BodyLimit {
    /// The limit the router put in the request's extensions (0 if none).
    fn of(req: &Request) -> usize {
        req.extensions().get::<BodyLimit>().map_or(0, |b| b.0)
    }
}

/// JSON body.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = BodyLimit::of(&req);
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) => {
                let code = match &e {
                    JsonRejection::JsonSyntaxError(_) => "invalid_json",
                    JsonRejection::JsonDataError(_) => "invalid_request",
                    JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
                    _ => "invalid_body",
                };
                Err(from_status(e.status(), code, e.body_text(), limit))
            }
        }
    }
}

/// Raw body bytes (an image).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = BodyLimit::of(&req);
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e: BytesRejection| {
                from_status(e.status(), "invalid_body", e.body_text(), limit)
            })
    }
}

/// Path parameters (axum's `Path`, its rejection a 400 `invalid_id` problem).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::bad_request("invalid_id", e.body_text())
    }
}

/// Query parameters (axum's `Query`, its rejection a 400 `invalid_query` problem).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", e.body_text())
    }
}
