//! The error body of every failed request.

use serde::{Deserialize, Serialize};

/// A problem details body (RFC 9457), served as `application/problem+json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI naming the problem type (`urn:visage:problem:<code>`).
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong in this request.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
    /// Extra structured information (quality issues, face counts, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub extra: Option<serde_json::Value>,
}
