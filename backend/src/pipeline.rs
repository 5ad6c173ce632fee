//! The face pipeline off the async runtime: models loaded on first use ([`Models`], one load
//! per process shared by every service it builds), CPU work on the blocking pool behind a
//! semaphore sized to the cores.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Bytes;
use tokio::sync::{OnceCell, Semaphore};
use visage_shared::{AnalyzeOptions, AnalyzedFace, DecodeLimits, Pipeline};

use crate::error::ApiError;

/// The face models, loaded on first use; clones share one load.
#[derive(Clone, Default)]
pub struct Models(Arc<OnceCell<Arc<Pipeline>>>);

impl Models {
    /// The models of this process: every service built in it shares them (the tests build
    /// many, and a load takes seconds).
    pub fn process_wide() -> Self {
        static MODELS: OnceLock<Models> = OnceLock::new();
        MODELS.get_or_init(Models::default).clone()
    }

    /// Whether they are loaded.
    pub fn is_loaded(&self) -> bool {
        self.0.initialized()
    }

    /// The pipeline, loading the models on first use.
    pub async fn get(&self) -> Result<Arc<Pipeline>, ApiError> {
        self.0
            .get_or_try_init(|| async {
                let t = Instant::now();
                let p = tokio::task::spawn_blocking(Pipeline::load)
                    .await
                    .map_err(|e| {
                        ApiError::internal(anyhow::Error::new(e).context("loading models"))
                    })?
                    .map_err(ApiError::from)?;
                tracing::info!(seconds = t.elapsed().as_secs_f64(), "face models loaded");
                Ok::<_, ApiError>(Arc::new(p))
            })
            .await
            .cloned()
    }
}

/// An image analysed by the pipeline.
pub struct Analysis {
    pub width: u32,
    pub height: u32,
    pub faces: Vec<AnalyzedFace>,
}

/// Runs the pipeline on a bounded number of blocking threads.
#[derive(Clone)]
pub struct PipelineService {
    models: Models,
    permits: Arc<Semaphore>,
    threads: usize,
    limits: DecodeLimits,
}

impl PipelineService {
    /// `threads` concurrent analyses (0: one per core) with `models`.
    pub fn new(threads: usize, limits: DecodeLimits, models: Models) -> Self {
        let n = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            threads
        };
        Self {
            models,
            permits: Arc::new(Semaphore::new(n)),
            threads: n,
            limits,
        }
    }

    /// How many analyses run at once (the pool size).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether the models are loaded (for `/readyz`).
    pub fn is_loaded(&self) -> bool {
        self.models.is_loaded()
    }

    /// The pipeline, loading the models on first use.
    pub async fn get(&self) -> Result<Arc<Pipeline>, ApiError> {
        self.models.get().await
    }

    /// Decodes and analyses an image: every face with box, landmarks, quality and embedding.
    pub async fn analyze(&self, bytes: Bytes) -> Result<Analysis, ApiError> {
        self.analyze_with(bytes, false).await
    }

    /// [`Self::analyze`] for an enrollment photo: a damaged JPEG is refused instead of being
    /// decoded with grey where its data is missing.
    pub async fn analyze_strict(&self, bytes: Bytes) -> Result<Analysis, ApiError> {
        self.analyze_with(bytes, true).await
    }

    async fn analyze_with(&self, bytes: Bytes, strict: bool) -> Result<Analysis, ApiError> {
        if bytes.is_empty() {
            return Err(visage_shared::DecodeError::Empty.into());
        }
        let pipeline = self.get().await?;
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Unavailable("pipeline closed".into()))?;
        let limits = self.limits;
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let img = visage_shared::decode::decode_image(&bytes, &limits)?;
            if strict {
                // After the lenient decode, so size limits and bombs are refused first.
                visage_shared::decode::check_jpeg_strict(&bytes)?;
            }
            metrics::histogram!("visage_pipeline_stage_seconds", "stage" => "decode")
                .record(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let dets = pipeline.detect(&img, &AnalyzeOptions::default().detect)?;
            metrics::histogram!("visage_pipeline_stage_seconds", "stage" => "detect")
                .record(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let mut faces = Vec::with_capacity(dets.len());
            for d in dets {
                if let Some(f) = pipeline.analyze_detection(&img, d)? {
                    faces.push(f);
                }
            }
            metrics::histogram!("visage_pipeline_stage_seconds", "stage" => "align_quality_embed")
                .record(t.elapsed().as_secs_f64());
            Ok(Analysis {
                width: img.width(),
                height: img.height(),
                faces,
            })
        })
        .await
        .map_err(|e| ApiError::internal(anyhow::Error::new(e).context("pipeline task")))?
    }
}
