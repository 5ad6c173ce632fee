//! Messages between the page and its pipeline workers (pure, unit-tested on the host).
//!
//! A message is a JS object `{ meta, buf }`: `meta` is one of the JSON types below, `buf` an
//! `ArrayBuffer` moved with the message (transferred, not copied): the RGBA camera frame (sent
//! to a detection worker, handed back for display, then on to the embedding worker with the
//! faces to embed), or a photo's bytes or pixels.

use serde::{Deserialize, Serialize};
use visage_shared::{AnalyzedFace, DetectOptions, Detection, Embedding, Quality};

/// What a worker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Detection on camera frames, with alignment and quality of every face.
    Detect,
    /// Landmark refinement and embedding of chosen faces of camera frames, and whole uploaded
    /// photos.
    Embed,
}

/// Page to worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Load the models the role needs (the first message; the wasm module comes beside it).
    Load { role: Role, detect: DetectOptions },
    /// Detect faces in an RGBA frame (`buf`: `width * height * 4` bytes).
    Frame {
        seq: u64,
        width: u32,
        height: u32,
        detect: DetectOptions,
    },
    /// Embed these faces of an RGBA camera frame (`buf`: `width * height * 4` bytes, after the
    /// page has drawn it), each after refining its landmarks on a crop around it
    /// ([`visage_shared::Detector::refine`]; `detect`: what found them). Refining here, for
    /// the few faces that get embedded, keeps the second detector pass off the overlay's path.
    EmbedFaces {
        job: u64,
        width: u32,
        height: u32,
        faces: Vec<Detection>,
        detect: DetectOptions,
    },
    /// Decode a photo (`buf`: the file), find and embed every face.
    Photo { job: u64 },
    /// Benchmark only (`frontend/e2e/bench-ort.mjs`, which compares the pipeline with
    /// onnxruntime-web on the same models): run `task` `iterations` times, each timed here in
    /// the worker with the code the app runs. The app never sends it. `buf`: an RGBA frame of
    /// `width` x `height` for [`BenchTask::Detect`] and [`BenchTask::EmbedFace`]; `faces`: the
    /// face to embed (the first); `detect`: what finds (or found) the faces and the plan the
    /// detector's set-up builds for `width` x `height`; `None`, the app's own for camera frames
    /// (`LoopConfig::default().detect()`), so the benchmark follows the app's settings.
    Bench {
        task: BenchTask,
        iterations: u32,
        width: u32,
        height: u32,
        #[serde(default)]
        faces: Vec<Detection>,
        #[serde(default)]
        detect: Option<DetectOptions>,
    },
}

/// What a [`Request::Bench`] times per iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchTask {
    /// What a `Detect` worker does per frame after RGBA to RGB: [`visage_shared::Detector::detect`]
    /// (resize, network, decoding, NMS) with the worker's loaded detector.
    Detect,
    /// What the `Embed` worker does per face of [`Request::EmbedFaces`] after RGBA to RGB:
    /// refine on a crop around the face, align, embed, with the worker's loaded models.
    EmbedFace,
    /// A fresh detector: parse the model and build the plan for `width` x `height`, as a
    /// `Detect` worker's `Load` does.
    SetUpDetector,
    /// A fresh embedder: parse and optimise MobileFaceNet.
    SetUpEmbedder,
    /// Time every node of the detector's plan for `width` x `height` (at `detect`'s size) over
    /// `iterations` runs of zeros: where the wasm build spends its time, by operator, beside
    /// the native table of `shared/examples/profile_plan.rs`.
    ProfileDetector,
    /// The same for the embedder's 112x112 plan.
    ProfileEmbedder,
}

/// A profiled operator (or node) and its milliseconds per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpTime {
    pub op: String,
    pub ms: f64,
}

/// One face of a camera frame, as the detection worker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameFace {
    pub detection: Detection,
    /// Measured on the aligned crop; `None` when the landmarks cannot be aligned (such a face
    /// is shown but never embedded).
    pub quality: Option<Quality>,
}

/// One face of a photo: everything [`AnalyzedFace`] holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoFace {
    pub detection: Detection,
    pub quality: Quality,
    pub embedding: Embedding,
}

impl From<AnalyzedFace> for PhotoFace {
    fn from(f: AnalyzedFace) -> Self {
        Self {
            detection: f.detection,
            quality: f.quality,
            embedding: f.embedding,
        }
    }
}

impl From<PhotoFace> for AnalyzedFace {
    fn from(f: PhotoFace) -> Self {
        Self {
            detection: f.detection,
            quality: f.quality,
            embedding: f.embedding,
        }
    }
}

/// Worker to page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Reply {
    /// Models loaded (and the detector's plan for the video size built) in `load_ms`.
    Ready { role: Role, load_ms: f64 },
    /// The models could not be loaded: the worker is useless.
    Failed { error: String },
    /// Faces of frame `seq`, best first; `buf` is the frame back.
    Detected {
        seq: u64,
        faces: Vec<FrameFace>,
        /// RGBA to RGB in the worker.
        prep_ms: f64,
        /// Detection (resize, network, decoding, NMS).
        detect_ms: f64,
        /// Alignment and quality of every face.
        align_ms: f64,
        error: Option<String>,
    },
    /// Embeddings of job `job`'s faces, in order (`None` for a face that failed).
    Embedded {
        job: u64,
        embeddings: Vec<Option<Embedding>>,
        embed_ms: f64,
        error: Option<String>,
    },
    /// A photo's faces and its RGBA pixels (`buf`, `width` x `height`) to show it.
    Photo {
        job: u64,
        width: u32,
        height: u32,
        faces: Vec<PhotoFace>,
        error: Option<String>,
    },
    /// The timings of a [`Request::Bench`] (milliseconds, one per iteration), the detector
    /// options it ran with, and what the last iteration gave, to check it did the work: the
    /// faces found, or the embedding.
    Bench {
        task: BenchTask,
        detect: DetectOptions,
        ms: Vec<f64>,
        faces: Vec<Detection>,
        embedding: Option<Embedding>,
        /// For the `profile_*` tasks: milliseconds per run by operator, then the slowest
        /// nodes (`ms` holds the median whole run).
        #[serde(default)]
        ops: Vec<OpTime>,
        #[serde(default)]
        nodes: Vec<OpTime>,
        error: Option<String>,
    },
}

impl Request {
    pub fn to_json(&self) -> String {
        // Plain data: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Reply {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Appends RGB pixels (a photo's, to show it on a canvas) as RGBA.
pub fn push_rgba(packed: &mut Vec<u8>, rgb: &[u8]) {
    packed.reserve(rgb.len() / 3 * 4);
    for p in rgb.chunks_exact(3) {
        packed.extend_from_slice(&[p[0], p[1], p[2], 255]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use visage_shared::geometry::{BBox, Point};

    fn det() -> Detection {
        Detection {
            score: 0.93,
            bbox: BBox::new(10.0, 20.0, 150.0, 170.0),
            landmarks: [Point::new(50.0, 60.0); 5],
        }
    }

    fn quality() -> Quality {
        Quality {
            score: 0.93,
            face_px: 160.0,
            interocular_px: 60.0,
            sharpness: 120.0,
            brightness: 110.0,
            yaw_deg: 3.0,
            pitch_deg: -2.0,
            roll_deg: 1.0,
        }
    }

    fn embedding() -> Embedding {
        let mut v = vec![0.0; visage_shared::model::EMBEDDING_DIM];
        v[0] = 0.6;
        v[1] = 0.8;
        Embedding::new(visage_shared::model::EMBEDDER_ID, v).unwrap()
    }

    #[test]
    fn requests_and_replies_survive_json() {
        let reqs = [
            Request::Load {
                role: Role::Detect,
                detect: DetectOptions::VIDEO,
            },
            Request::Frame {
                seq: 7,
                width: 640,
                height: 480,
                detect: DetectOptions {
                    max_side: 256,
                    ..DetectOptions::VIDEO
                },
            },
            Request::EmbedFaces {
                job: 5,
                width: 640,
                height: 480,
                faces: vec![det()],
                detect: DetectOptions::VIDEO,
            },
            Request::Photo { job: 4 },
            Request::Bench {
                task: BenchTask::EmbedFace,
                iterations: 10,
                width: 640,
                height: 480,
                faces: vec![det()],
                detect: Some(DetectOptions::VIDEO),
            },
        ];
        for r in reqs {
            let back: Request = serde_json::from_str(&r.to_json()).unwrap();
            assert_eq!(back, r);
        }
        let replies = [
            Reply::Ready {
                role: Role::Embed,
                load_ms: 812.5,
            },
            Reply::Failed {
                error: "model error".into(),
            },
            Reply::Detected {
                seq: 9,
                faces: vec![
                    FrameFace {
                        detection: det(),
                        quality: Some(quality()),
                    },
                    FrameFace {
                        detection: det(),
                        quality: None,
                    },
                ],
                prep_ms: 1.0,
                detect_ms: 20.0,
                align_ms: 0.5,
                error: None,
            },
            Reply::Embedded {
                job: 3,
                embeddings: vec![Some(embedding()), None],
                embed_ms: 40.0,
                error: None,
            },
            Reply::Photo {
                job: 4,
                width: 10,
                height: 12,
                faces: vec![PhotoFace {
                    detection: det(),
                    quality: quality(),
                    embedding: embedding(),
                }],
                error: None,
            },
            Reply::Bench {
                task: BenchTask::Detect,
                detect: DetectOptions::VIDEO,
                ms: vec![4.5, 4.25],
                faces: vec![det()],
                embedding: Some(embedding()),
                ops: vec![OpTime {
                    op: "VisageConv3x3Act".into(),
                    ms: 1.5,
                }],
                nodes: vec![],
                error: None,
            },
        ];
        for r in replies {
            let back: Reply = serde_json::from_str(&r.to_json()).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn a_bench_request_from_the_bench_page_parses() {
        // As frontend/e2e/bench-ort.mjs writes it: no faces for a set-up, no detector options
        // (the app's own).
        let json =
            r#"{"op":"bench","task":"set_up_detector","iterations":1,"width":640,"height":480}"#;
        let r: Request = serde_json::from_str(json).unwrap();
        assert_eq!(
            r,
            Request::Bench {
                task: BenchTask::SetUpDetector,
                iterations: 1,
                width: 640,
                height: 480,
                faces: vec![],
                detect: None,
            }
        );
    }

    #[test]
    fn an_invalid_embedding_is_refused_when_decoding() {
        let json = r#"{"op":"embedded","job":1,"embeddings":[{"model":"x","vector":[0.0]}],"embed_ms":1.0,"error":null}"#;
        assert!(serde_json::from_str::<Reply>(json).is_err());
    }

    #[test]
    fn rgb_is_packed_as_opaque_rgba() {
        let mut packed = Vec::new();
        push_rgba(&mut packed, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(packed, [1, 2, 3, 255, 4, 5, 6, 255]);
    }
}
