//! The models shipped in `models/`, embedded in the binary (and the wasm) so the pipeline needs
//! no files at run time, and their manifest: ids, sha256, the default match threshold and the
//! similarity to false-match-rate table measured by `visage eval`.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The YuNet detector ONNX bytes.
pub static DETECTOR_ONNX: &[u8] = include_bytes!("../../models/yunet_2023mar.onnx");
/// The MobileFaceNet embedder ONNX bytes.
pub static EMBEDDER_ONNX: &[u8] = include_bytes!("../../models/mobilefacenet.onnx");
static MANIFEST_JSON: &str = include_str!("../../models/manifest.json");

/// Id of the detector model.
pub const DETECTOR_ID: &str = "yunet-2023mar";
/// Id of the embedding model; every embedding carries it.
pub const EMBEDDER_ID: &str = "mobilefacenet-expo-1.0.24";
/// Length of an embedding vector.
pub const EMBEDDING_DIM: usize = 192;

/// `models/manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub models: Vec<ModelEntry>,
}

/// One model of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelEntry {
    pub id: String,
    pub file: String,
    pub sha256: String,
    pub license: String,
    pub source: serde_json::Value,
    pub input: String,
    pub output: String,
    pub preprocessing: String,
    /// Only for the embedder: matching calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// How similarity maps to a measured false-match rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Calibration {
    /// Cosine similarity at or above which two faces are called the same person.
    pub default_threshold: f32,
    /// What the table was measured on (pairs, impostor pair count).
    pub measured_on: String,
    /// Number of impostor (different-person) pairs behind the rates: a rate of 0 means
    /// "below 1 / impostor_pairs", not zero.
    pub impostor_pairs: u64,
    /// Ascending similarity thresholds with the share of impostor pairs scoring at or above.
    pub table: Vec<CalibrationPoint>,
}

/// One row of the calibration table.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CalibrationPoint {
    pub similarity: f32,
    pub false_match_rate: f64,
}

/// The parsed manifest (parsed once; it is compiled in, so a parse failure is a build defect
/// caught by the tests).
pub fn manifest() -> &'static Manifest {
    static M: OnceLock<Manifest> = OnceLock::new();
    M.get_or_init(|| serde_json::from_str(MANIFEST_JSON).unwrap_or(Manifest { models: Vec::new() }))
}

/// The embedder's calibration.
pub fn calibration() -> Option<&'static Calibration> {
    manifest()
        .models
        .iter()
        .find(|m| m.id == EMBEDDER_ID)
        .and_then(|m| m.calibration.as_ref())
}

/// The default match threshold for the shipped embedder.
pub fn default_threshold() -> f32 {
    calibration().map(|c| c.default_threshold).unwrap_or(0.5)
}

/// The false-match rate at `similarity` that the calibration can vouch for: the one-sided 95%
/// Clopper-Pearson upper bound of [`measured_false_match_rate`] over the table's
/// `impostor_pairs`. Never below what the table resolves: where no false match was seen among
/// the 14,245 pairs this is 2.1e-4, not 0. `None` without a calibration table.
pub fn false_match_rate(similarity: f32) -> Option<f64> {
    Some(rate_at(vouched_table()?, similarity))
}

/// The operating point for a false-match-rate target: the lowest table threshold at which the
/// calibration vouches for at most `target` ([`false_match_rate`], the 95% upper bound).
/// `Err` carries the lowest rate the table can vouch for when `target` is below it (14,245
/// impostor pairs cannot vouch for 1e-4), or 1.0 without a calibration table.
pub fn threshold_for_false_match_rate(target: f64) -> Result<f32, f64> {
    let table = vouched_table().ok_or(1.0)?;
    match table.iter().find(|p| p.false_match_rate <= target) {
        Some(p) => Ok(p.similarity),
        None => Err(table.iter().map(|p| p.false_match_rate).fold(1.0, f64::min)),
    }
}

/// The false-match rate measured at the highest table threshold not above `similarity`: the
/// share of different-person pairs that score at least that high. Conservative (rounds the
/// similarity down to the table). `None` without a calibration table.
pub fn measured_false_match_rate(similarity: f32) -> Option<f64> {
    Some(rate_at(&calibration()?.table, similarity))
}

/// The calibration table with each rate replaced by its 95% upper bound, worked out once (the
/// bound is a bisection; candidates of every request look it up).
fn vouched_table() -> Option<&'static [CalibrationPoint]> {
    static T: OnceLock<Vec<CalibrationPoint>> = OnceLock::new();
    let c = calibration()?;
    let table = T.get_or_init(|| {
        c.table
            .iter()
            .map(|p| {
                let events = (p.false_match_rate * c.impostor_pairs as f64).round() as u64;
                CalibrationPoint {
                    similarity: p.similarity,
                    false_match_rate: crate::eval::clopper_pearson_upper(
                        events,
                        c.impostor_pairs,
                        0.95,
                    ),
                }
            })
            .collect()
    });
    Some(table)
}

/// The rate of the highest row not above `similarity` (1.0 below the first row).
fn rate_at(table: &[CalibrationPoint], similarity: f32) -> f64 {
    table
        .iter()
        .take_while(|p| p.similarity <= similarity)
        .last()
        .map_or(1.0, |p| p.false_match_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_and_hashes_match() {
        let m: Manifest = serde_json::from_str(MANIFEST_JSON).expect("models/manifest.json parses");
        use sha2::Digest;
        for (id, bytes) in [(DETECTOR_ID, DETECTOR_ONNX), (EMBEDDER_ID, EMBEDDER_ONNX)] {
            let entry = m
                .models
                .iter()
                .find(|e| e.id == id)
                .expect("model in manifest");
            assert_eq!(
                entry.sha256,
                hex::encode(sha2::Sha256::digest(bytes)),
                "sha256 of {id}"
            );
        }
        let c = calibration().expect("embedder calibration");
        assert!(
            c.table.windows(2).all(|w| w[0].similarity < w[1].similarity
                && w[0].false_match_rate >= w[1].false_match_rate)
        );
        assert!(false_match_rate(-1.0).unwrap() >= false_match_rate(0.99).unwrap());
        // An operating point by false-match rate: the lowest threshold vouched for; below the
        // table's resolution, the floor it can vouch for.
        let t = threshold_for_false_match_rate(0.01).unwrap();
        assert!(false_match_rate(t).unwrap() <= 0.01);
        assert!(false_match_rate(t - 0.02).unwrap() > 0.01, "{t}");
        let floor = threshold_for_false_match_rate(1e-4).unwrap_err();
        assert!(floor > 1e-4 && floor < 1e-3, "{floor}");
        assert_eq!(threshold_for_false_match_rate(1.0), Ok(-1.0));
        // The default operating point: a false-match rate vouched <= 1e-3 (issue 14), at the
        // lowest such threshold.
        let t = threshold_for_false_match_rate(1e-3).unwrap();
        assert_eq!(t, c.default_threshold);
        assert!(false_match_rate(c.default_threshold).unwrap() <= 1e-3);
        // Where the table saw no false match, the claim is its resolution, not zero.
        let top = c.table.last().expect("rows");
        assert_eq!(top.false_match_rate, 0.0);
        let rule_of_three = 3.0 / c.impostor_pairs as f64;
        let at_top = false_match_rate(top.similarity).unwrap();
        assert!(
            at_top > 0.9 * rule_of_three && at_top < 1.1 * rule_of_three,
            "{at_top}"
        );
    }
}
