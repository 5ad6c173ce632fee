//! Enrolled faces: embeddings as clients send them, and what storing them returns.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::FaceReport;

/// An embedding as clients send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EmbeddingInput {
    /// Model id: the embedder this server runs (`visage_shared::model::EMBEDDER_ID`; a unit
    /// test keeps this pattern equal to it).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^mobilefacenet-expo-1\.0\.24$")
    )]
    pub model: String,
    /// The vector (192 finite values, not all zero, for the default model); normalised by the
    /// server.
    #[cfg_attr(feature = "openapi", schema(min_items = 192, max_items = 192))]
    pub vector: Vec<f32>,
}

impl From<&crate::Embedding> for EmbeddingInput {
    fn from(e: &crate::Embedding) -> Self {
        Self {
            model: e.model().to_string(),
            vector: e.vector().to_vec(),
        }
    }
}

/// Where a face's embedding was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum FaceSource {
    /// On the client (the browser computes the embedding; no image leaves the device).
    #[default]
    Browser,
    /// On the server, from an uploaded image.
    Upload,
}

impl FaceSource {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FaceSource::Browser => "browser",
            FaceSource::Upload => "upload",
        }
    }
}

/// `POST /v1/people/{id}/faces`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddFacesRequest {
    /// 1..10 embeddings.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10))]
    pub embeddings: Vec<EmbeddingInput>,
    /// Where they were computed (default `browser`).
    #[serde(default)]
    pub source: FaceSource,
    /// The client's quality measurements, stored as given.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub quality: Option<serde_json::Value>,
}

/// Faces stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddedFaces {
    pub person_id: Uuid,
    pub face_ids: Vec<Uuid>,
    /// The person's face count after the insert.
    pub face_count: i64,
    /// For image uploads: the face that was found.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face: Option<FaceReport>,
}
