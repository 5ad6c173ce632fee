//! A detected face as reported to clients.

use serde::{Deserialize, Serialize};

use crate::{AnalyzedFace, Detection, Quality, QualityGate, QualityIssue};

/// A face as reported to clients: where it is, its quality and what the gate says about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceReport {
    pub detection: Detection,
    pub quality: Quality,
    /// Why this face would not be accepted for enrollment (empty when it would).
    pub quality_issues: Vec<QualityIssueReport>,
}

/// A quality issue with its advice in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityIssueReport {
    #[serde(flatten)]
    pub issue: QualityIssue,
    pub advice: String,
}

impl FaceReport {
    /// The report of `face`, with the issues `gate` finds in its quality.
    pub fn new(face: &AnalyzedFace, gate: &QualityGate) -> Self {
        Self {
            detection: face.detection.clone(),
            quality: face.quality,
            quality_issues: QualityIssueReport::all(&face.quality, gate),
        }
    }
}

impl QualityIssueReport {
    /// Every issue `gate` finds in `quality`, with its advice.
    pub fn all(quality: &Quality, gate: &QualityGate) -> Vec<Self> {
        quality
            .issues(gate)
            .into_iter()
            .map(|issue| QualityIssueReport {
                advice: issue.advice(),
                issue,
            })
            .collect()
    }
}
