//! # visage-shared: the face pipeline, for the server and the browser alike
//!
//! One module per stage, run in this order by [`Pipeline::analyze`]:
//! [`decode`] (bytes to pixels, with limits) → [`detect`] (YuNet: boxes, 5 landmarks) →
//! [`align`] (similarity transform to the 112x112 ArcFace template) → [`quality`] (size,
//! sharpness, pose, brightness) → [`embed`] (MobileFaceNet, 192-d, unit length).
//!
//! The models are compiled in ([`model`]), so native and wasm32 builds run the same bytes and
//! produce interchangeable embeddings.

pub mod align;
#[cfg(not(target_arch = "wasm32"))]
pub mod allocator;
pub mod api;
pub mod decode;
pub mod detect;
pub mod embed;
pub mod eval;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod fuse;
pub mod geometry;
pub mod model;
#[cfg(test)]
mod noise;
pub mod quality;
pub mod resize;
pub mod template;

use image::RgbImage;
use serde::{Deserialize, Serialize};

pub use decode::{DecodeError, DecodeLimits};
pub use detect::{DetectOptions, Detection, Detector};
pub use embed::{Embedder, Embedding, EmbeddingError};
pub use quality::{Quality, QualityGate, QualityIssue};

/// Failures of the pipeline itself (not of the input image, see [`DecodeError`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PipelineError {
    #[error("model error: {0}")]
    Model(String),
    #[error("inference failed: {0}")]
    Inference(String),
}

/// Options for [`Pipeline::analyze`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct AnalyzeOptions {
    pub detect: DetectOptions,
}

/// One face found by [`Pipeline::analyze`]: where it is, how good it is, and its embedding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalyzedFace {
    pub detection: Detection,
    pub quality: Quality,
    pub embedding: Embedding,
}

/// Both models, loaded and optimised once. `Send + Sync`: share one behind an `Arc`.
pub struct Pipeline {
    pub detector: Detector,
    pub embedder: Embedder,
}

impl Pipeline {
    /// Loads the compiled-in models.
    pub fn load() -> Result<Self, PipelineError> {
        Ok(Self {
            detector: Detector::new(model::DETECTOR_ONNX)?,
            embedder: Embedder::new(model::EMBEDDER_ONNX)?,
        })
    }

    /// Detects only: boxes, landmarks and scores, best first.
    pub fn detect(
        &self,
        img: &RgbImage,
        opts: &DetectOptions,
    ) -> Result<Vec<Detection>, PipelineError> {
        self.detector.detect(img, opts)
    }

    /// Aligns, measures and embeds one detection.
    pub fn analyze_detection(
        &self,
        img: &RgbImage,
        det: Detection,
    ) -> Result<Option<AnalyzedFace>, PipelineError> {
        let Some(aligned) = align::align(img, &det.landmarks) else {
            return Ok(None);
        };
        let quality = Quality::measure(&det, &aligned);
        let embedding = self.embedder.embed(&aligned)?;
        Ok(Some(AnalyzedFace {
            detection: det,
            quality,
            embedding,
        }))
    }

    /// Runs every stage on an image: every face with its quality and embedding, best first.
    pub fn analyze(
        &self,
        img: &RgbImage,
        opts: &AnalyzeOptions,
    ) -> Result<Vec<AnalyzedFace>, PipelineError> {
        let dets = self.detector.detect(img, &opts.detect)?;
        let mut out = Vec::with_capacity(dets.len());
        for d in dets {
            if let Some(f) = self.analyze_detection(img, d)? {
                out.push(f);
            }
        }
        Ok(out)
    }
}
