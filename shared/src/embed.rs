//! Stage 5: aligned 112x112 faces to 192-d MobileFaceNet embeddings, L2-normalised, compared by
//! cosine similarity. Every embedding carries the id of the model that made it, and comparing
//! embeddings of different models is an error.

use std::sync::Arc;

use image::RgbImage;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

use crate::PipelineError;
use crate::align::ALIGNED_SIZE;
use crate::model;

/// Why a vector is not a usable embedding.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum EmbeddingError {
    #[error("unknown embedding model {0:?}; this server knows {known:?}", known = model::EMBEDDER_ID)]
    UnknownModel(String),
    #[error("embedding of model {model} must have {expected} values, got {got}")]
    WrongLength {
        model: String,
        expected: usize,
        got: usize,
    },
    #[error("embedding value at index {0} is not a finite number")]
    NotFinite(usize),
    #[error("embedding is the zero vector")]
    Zero,
    #[error("cannot compare embeddings of different models ({0} vs {1})")]
    ModelMismatch(String, String),
}

impl EmbeddingError {
    /// A stable machine-readable code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            EmbeddingError::UnknownModel(_) => "embedding_unknown_model",
            EmbeddingError::WrongLength { .. } => "embedding_wrong_length",
            EmbeddingError::NotFinite(_) => "embedding_not_finite",
            EmbeddingError::Zero => "embedding_zero",
            EmbeddingError::ModelMismatch(..) => "embedding_model_mismatch",
        }
    }
}

/// A face embedding: unit length, finite, of a known model. Only [`Embedding::new`] makes one,
/// so holding an `Embedding` means it is valid.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Embedding {
    model: String,
    vector: Vec<f32>,
}

impl Embedding {
    /// Validates and L2-normalises a vector from a client or from the model.
    pub fn new(model: &str, vector: Vec<f32>) -> Result<Self, EmbeddingError> {
        if model != model::EMBEDDER_ID {
            // Echo at most 64 characters: an error is no place to reflect a client's payload.
            let shown: String = model.chars().take(64).collect();
            let shown = if shown.len() < model.len() {
                format!("{shown}...")
            } else {
                shown
            };
            return Err(EmbeddingError::UnknownModel(shown));
        }
        if vector.len() != model::EMBEDDING_DIM {
            return Err(EmbeddingError::WrongLength {
                model: model.to_string(),
                expected: model::EMBEDDING_DIM,
                got: vector.len(),
            });
        }
        if let Some(i) = vector.iter().position(|v| !v.is_finite()) {
            return Err(EmbeddingError::NotFinite(i));
        }
        let norm = vector
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt();
        if norm < 1e-12 || !norm.is_finite() {
            return Err(EmbeddingError::Zero);
        }
        let vector = vector
            .into_iter()
            .map(|v| (v as f64 / norm) as f32)
            .collect();
        Ok(Self {
            model: model.to_string(),
            vector,
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// The unit-length vector.
    pub fn vector(&self) -> &[f32] {
        &self.vector
    }

    pub fn into_vector(self) -> Vec<f32> {
        self.vector
    }

    /// Cosine similarity in -1..1 (a dot product, both being unit length).
    pub fn cosine(&self, other: &Embedding) -> Result<f32, EmbeddingError> {
        if self.model != other.model {
            return Err(EmbeddingError::ModelMismatch(
                self.model.clone(),
                other.model.clone(),
            ));
        }
        Ok(self
            .vector
            .iter()
            .zip(&other.vector)
            .map(|(a, b)| a * b)
            .sum::<f32>()
            .clamp(-1.0, 1.0))
    }
}

impl<'de> Deserialize<'de> for Embedding {
    /// Deserialising validates, so an invalid vector never becomes an `Embedding`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            model: String,
            vector: Vec<f32>,
        }
        let raw = Raw::deserialize(d)?;
        Embedding::new(&raw.model, raw.vector).map_err(serde::de::Error::custom)
    }
}

/// The MobileFaceNet embedder with one optimised batch-1 plan. tract runs batch 1 about 4x
/// faster per face than larger batches on this model, so batches are run face by face.
pub struct Embedder {
    plan: Arc<TypedRunnableModel>,
}

impl Embedder {
    pub fn new(onnx: &[u8]) -> Result<Self, PipelineError> {
        let s = ALIGNED_SIZE as usize;
        let plan = crate::fuse::load_onnx(onnx)
            .and_then(|m| crate::fuse::optimise(m, [1, 3, s, s]))
            .map_err(|e| PipelineError::Model(format!("loading embedder: {e}")))?;
        Ok(Self { plan })
    }

    /// Embeds one aligned 112x112 face.
    pub fn embed(&self, face: &RgbImage) -> Result<Embedding, PipelineError> {
        let input = to_input_tensor(face)?;
        let out = crate::fuse::run(&self.plan, input)
            .map_err(|e| PipelineError::Inference(format!("embedder: {e}")))?;
        let v = out
            .first()
            .and_then(|t| t.try_as_plain_ram().and_then(|v| v.as_slice::<f32>()).ok())
            .ok_or_else(|| PipelineError::Inference("embedder gave no output".into()))?;
        Embedding::new(model::EMBEDDER_ID, v.to_vec())
            .map_err(|e| PipelineError::Inference(format!("embedder output: {e}")))
    }

    /// Embeds several aligned faces, in order.
    pub fn embed_batch(&self, faces: &[RgbImage]) -> Result<Vec<Embedding>, PipelineError> {
        faces.iter().map(|f| self.embed(f)).collect()
    }
}

/// 1x3x112x112 RGB, (x - 127.5) / 128: the preprocessing of the model's own Kotlin code.
fn to_input_tensor(face: &RgbImage) -> Result<Tensor, PipelineError> {
    let s = ALIGNED_SIZE as usize;
    if face.dimensions() != (ALIGNED_SIZE, ALIGNED_SIZE) {
        return Err(PipelineError::Inference(format!(
            "aligned face must be {s}x{s}"
        )));
    }
    let plane = s * s;
    let mut data = vec![0f32; 3 * plane];
    for (i, px) in face.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            data[c * plane + i] = (px[c] as f32 - 127.5) / 128.0;
        }
    }
    Tensor::from_shape(&[1, 3, s, s], &data).map_err(|e| PipelineError::Inference(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: f32) -> Vec<f32> {
        let mut v = vec![0.0; model::EMBEDDING_DIM];
        v[0] = x;
        v[1] = 1.0;
        v
    }

    #[test]
    fn validation_rejects_bad_vectors() {
        let id = model::EMBEDDER_ID;
        assert!(matches!(
            Embedding::new("other", v(1.0)),
            Err(EmbeddingError::UnknownModel(_))
        ));
        assert!(matches!(
            Embedding::new(id, vec![1.0; 3]),
            Err(EmbeddingError::WrongLength { got: 3, .. })
        ));
        assert_eq!(
            Embedding::new(id, v(f32::NAN)),
            Err(EmbeddingError::NotFinite(0))
        );
        assert_eq!(
            Embedding::new(id, v(f32::INFINITY)),
            Err(EmbeddingError::NotFinite(0))
        );
        assert_eq!(
            Embedding::new(id, vec![0.0; model::EMBEDDING_DIM]),
            Err(EmbeddingError::Zero)
        );
        let e = Embedding::new(id, v(1.0)).unwrap();
        let n: f32 = e.vector().iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-6);
        // (1,1)/√2 · (0,1) = 1/√2
        let f = Embedding::new(id, v(0.0)).unwrap();
        assert!((e.cosine(&f).unwrap() - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }

    #[test]
    fn deserialising_validates() {
        let bad = format!(r#"{{"model":"{}","vector":[1.0,2.0]}}"#, model::EMBEDDER_ID);
        assert!(serde_json::from_str::<Embedding>(&bad).is_err());
    }
}
