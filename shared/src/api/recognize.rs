//! Recognition (1:N) and verification (1:1).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{EmbeddingInput, FaceReport, QualityIssueReport};

/// `POST /v1/recognize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecognizeRequest {
    /// 1..20 probe embeddings.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 20))]
    pub embeddings: Vec<EmbeddingInput>,
    /// Candidates per probe, 1..50 (default 5; at most 5 for non-admin keys).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 50))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Match threshold on cosine similarity (default: the model manifest's). For non-admin
    /// keys a value below the service's floor is raised to it; the response says which was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// Instead of `threshold`: the highest false-match rate to accept, (0, 1]. The service
    /// uses the lowest threshold at which its calibration vouches (95% upper bound) for at
    /// most this rate, and refuses (422 `false_match_rate_unresolvable`) a target below what
    /// the calibration can vouch for.
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0.0, maximum = 1.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_false_match_rate: Option<f64>,
}

/// One candidate identity for a probe face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Candidate {
    pub person_id: Uuid,
    pub name: String,
    /// The enrolled face that matched best.
    pub face_id: Uuid,
    /// Cosine similarity, -1..1 (for non-admin keys rounded down to 0.01; only matches are
    /// listed for them).
    pub similarity: f32,
    /// Whether `similarity` reaches the threshold.
    #[serde(rename = "match")]
    pub is_match: bool,
    /// The false-match rate at this similarity: the one-sided 95% upper confidence bound
    /// (Clopper-Pearson) of the share of different-person pairs that scored at least this high
    /// in the model's evaluation (from the manifest), so never below what that evaluation can
    /// resolve; `null` without a calibration table. This, not the raw similarity, says how much
    /// a match can be trusted.
    pub false_match_rate: Option<f64>,
}

/// What the service concludes about one probe face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The best candidate matches.
    Match,
    /// No enrolled person matches.
    #[default]
    Unknown,
    /// No match, but the face (of an image the service analysed) is too small, blurred, turned
    /// or dark for that to mean the person is not enrolled: `undecided_because` says why.
    /// Faces 48 px wide and up are decided (`QualityGate::DECISION`).
    Undecided,
}

/// The candidates of one probe face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProbeResult {
    /// For images: where the face is and its quality.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face: Option<FaceReport>,
    /// Best first. For keys without the admin scope only matches are listed, so an unknown
    /// face has none.
    pub candidates: Vec<Candidate>,
    /// The threshold this probe was decided at: the response's `threshold`, except for a face
    /// under 48 px found in an image, which is matched through the small-probe calibration at
    /// the same false-match rate (a lower threshold: small faces score lower against everyone).
    pub threshold: f32,
    /// The conclusion: match, unknown, or undecided (images only), with the reasons.
    #[serde(flatten)]
    pub decision: Decision,
}

/// A probe's conclusion and, when undecided, why.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decision {
    #[serde(default)]
    pub outcome: Outcome,
    /// Why an undecided face could not be decided, with advice.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undecided_because: Vec<QualityIssueReport>,
}

impl Decision {
    /// The conclusion for a probe that matched or not, with the face when the service analysed
    /// an image: its quality decides whether "no match" means unknown or undecided.
    pub fn of(is_match: bool, face: Option<&FaceReport>) -> Self {
        if is_match {
            return Self {
                outcome: Outcome::Match,
                undecided_because: Vec::new(),
            };
        }
        let because = face
            .map(|f| QualityIssueReport::all(&f.quality, &crate::QualityGate::DECISION))
            .unwrap_or_default();
        Self {
            outcome: if because.is_empty() {
                Outcome::Unknown
            } else {
                Outcome::Undecided
            },
            undecided_because: because,
        }
    }
}

impl ProbeResult {
    /// The result of a probe: `face` when the service analysed an image, its candidates, and
    /// the threshold they were decided at.
    pub fn new(face: Option<FaceReport>, candidates: Vec<Candidate>, threshold: f32) -> Self {
        let decision = Decision::of(candidates.iter().any(|c| c.is_match), face.as_ref());
        Self {
            face,
            candidates,
            threshold,
            decision,
        }
    }
}

/// Recognition results, one per probe face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecognizeResponse {
    pub model: String,
    /// The threshold used for faces of 48 px and up and for embeddings (for non-admin keys,
    /// never below the service's floor). Each result says the threshold it was decided at.
    pub threshold: f32,
    /// The candidates per probe used (at most 5 for non-admin keys).
    pub top_k: usize,
    pub results: Vec<ProbeResult>,
}

impl RecognizeResponse {
    /// The matched person of probe `result`, if any: its best candidate when the service
    /// says it matches. An empty candidate list is an unknown face.
    pub fn best_match<'a>(&self, result: &'a ProbeResult) -> Option<&'a Candidate> {
        result.candidates.first().filter(|c| c.is_match)
    }
}

/// `POST /v1/verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyRequest {
    pub person_id: Uuid,
    pub embedding: EmbeddingInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// Instead of `threshold`: the highest false-match rate to accept (see `RecognizeRequest`).
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0.0, maximum = 1.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_false_match_rate: Option<f64>,
}

/// A 1:1 verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyResponse {
    pub person_id: Uuid,
    /// Best cosine similarity over the person's faces. Non-admin keys get it only with a
    /// match, rounded down to 0.01; otherwise `null`.
    pub similarity: Option<f32>,
    #[serde(rename = "match")]
    pub is_match: bool,
    pub threshold: f32,
    pub false_match_rate: Option<f64>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face: Option<FaceReport>,
    /// The conclusion: match, unknown (not this person), or undecided (images only: the face
    /// is too small, blurred, turned or dark for a "no" to mean anything), with the reasons.
    #[serde(flatten)]
    pub decision: Decision,
}
