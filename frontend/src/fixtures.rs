//! Faces, qualities, embeddings and recognition answers for the unit tests.

use visage_shared::api::{Candidate, ProbeResult, RecognizeResponse, Uuid};
use visage_shared::geometry::{BBox, Point};
use visage_shared::{Detection, Embedding, Quality};

use crate::proto::FrameFace;

/// The person id of every candidate of [`answer`].
pub const ANN: &str = "6f1c2a54-8d0e-4c3b-9a7e-2b1f0c9d8e7a";

/// A recognition answer: per probe, no candidate or one (name, similarity, match).
pub fn answer(probes: &[Option<(&str, f32, bool)>]) -> RecognizeResponse {
    let results = probes
        .iter()
        .map(|c| {
            ProbeResult::new(
                None,
                c.iter()
                    .map(|&(name, similarity, is_match)| Candidate {
                        person_id: ANN.parse().unwrap(),
                        name: name.into(),
                        face_id: Uuid::nil(),
                        similarity,
                        is_match,
                        false_match_rate: None,
                    })
                    .collect(),
                0.67,
            )
        })
        .collect();
    RecognizeResponse {
        model: visage_shared::model::EMBEDDER_ID.into(),
        threshold: 0.67,
        top_k: 1,
        results,
    }
}

pub fn det(x: f32) -> Detection {
    Detection {
        score: 0.9,
        bbox: BBox::new(x, 0.0, 100.0, 100.0),
        landmarks: [Point::new(0.0, 0.0); 5],
    }
}

/// A quality the enrollment gate accepts.
pub fn good() -> Quality {
    Quality {
        score: 0.9,
        face_px: 100.0,
        interocular_px: 40.0,
        sharpness: 100.0,
        brightness: 120.0,
        yaw_deg: 0.0,
        pitch_deg: 0.0,
        roll_deg: 0.0,
    }
}

pub fn face(x: f32, quality: Option<Quality>) -> FrameFace {
    FrameFace {
        detection: det(x),
        quality,
    }
}

pub fn embedding() -> Embedding {
    Embedding::new(
        visage_shared::model::EMBEDDER_ID,
        vec![1.0; visage_shared::model::EMBEDDING_DIM],
    )
    .unwrap()
}
