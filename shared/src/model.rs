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
    /// The table of small probes, which score differently against enrolled faces: a face
    /// narrower than `below_face_px` in an image the service analysed is matched through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_probes: Option<SmallProbeCalibration>,
}

/// How similarity maps to a false-match rate when the probe is a small face (a poor camera,
/// a distant face) and the enrolled face is clean: measured with `visage eval --impostor-set
/// ... --degrade-face-px N`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmallProbeCalibration {
    /// Probe faces narrower than this (`Quality::face_px`) use this table; it is the decision
    /// gate's smallest face (`QualityGate::DECISION`).
    pub below_face_px: f32,
    /// What the table was measured on.
    pub measured_on: String,
    /// Number of impostor scores (a small probe against a clean different person).
    pub impostor_pairs: u64,
    /// As [`Calibration::table`].
    pub table: Vec<CalibrationPoint>,
}

/// Which calibration table a probe is matched through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeClass {
    /// A face of ordinary size, or an embedding sent without its face (whose size the service
    /// cannot check, so it never gets the small-probe table).
    #[default]
    Clean,
    /// A face the service measured narrower than the small-probe table's `below_face_px`.
    Small,
}

impl ProbeClass {
    /// The class of a face the service measured `face_px` wide.
    pub fn of_face_px(face_px: f32) -> Self {
        match calibration().and_then(|c| c.small_probes.as_ref()) {
            Some(s) if face_px < s.below_face_px => ProbeClass::Small,
            _ => ProbeClass::Clean,
        }
    }
}

/// The default operating point, as a false-match rate: the service matches at the lowest
/// threshold at which its calibration vouches for at most this rate (issue 14). The manifest's
/// `default_threshold` is that threshold for clean probes (a test checks it).
pub const DEFAULT_MAX_FALSE_MATCH_RATE: f64 = 1e-3;

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
    false_match_rate_of(ProbeClass::Clean, similarity)
}

/// [`false_match_rate`] through the table of a probe class.
pub fn false_match_rate_of(class: ProbeClass, similarity: f32) -> Option<f64> {
    Some(rate_at(vouched_table(class)?, similarity))
}

/// The operating point for a false-match-rate target: the lowest table threshold at which the
/// calibration vouches for at most `target` ([`false_match_rate`], the 95% upper bound).
/// `Err` carries the lowest rate the table can vouch for when `target` is below it (14,245
/// impostor pairs cannot vouch for 1e-4), or 1.0 without a calibration table.
pub fn threshold_for_false_match_rate(target: f64) -> Result<f32, f64> {
    threshold_for_false_match_rate_of(ProbeClass::Clean, target)
}

/// [`threshold_for_false_match_rate`] through the table of a probe class.
pub fn threshold_for_false_match_rate_of(class: ProbeClass, target: f64) -> Result<f32, f64> {
    let table = vouched_table(class).ok_or(1.0)?;
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

/// The calibration table of a probe class with each rate replaced by its 95% upper bound,
/// worked out once (the bound is a bisection; candidates of every request look it up). Small
/// probes fall back to the clean table when the manifest has none for them.
fn vouched_table(class: ProbeClass) -> Option<&'static [CalibrationPoint]> {
    static CLEAN: OnceLock<Vec<CalibrationPoint>> = OnceLock::new();
    static SMALL: OnceLock<Vec<CalibrationPoint>> = OnceLock::new();
    let c = calibration()?;
    let (cell, table, pairs) = match (class, &c.small_probes) {
        (ProbeClass::Small, Some(s)) => (&SMALL, &s.table, s.impostor_pairs),
        _ => (&CLEAN, &c.table, c.impostor_pairs),
    };
    Some(cell.get_or_init(|| upper_bounds(table, pairs)))
}

fn upper_bounds(table: &[CalibrationPoint], impostor_pairs: u64) -> Vec<CalibrationPoint> {
    table
        .iter()
        .map(|p| {
            let events = (p.false_match_rate * impostor_pairs as f64).round() as u64;
            CalibrationPoint {
                similarity: p.similarity,
                false_match_rate: crate::eval::clopper_pearson_upper(events, impostor_pairs, 0.95),
            }
        })
        .collect()
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
        // Small probes (issue 14) have their own table: a small face scores lower against its
        // enrolled face, and against strangers too, so the same rate is vouched lower down.
        let small = c.small_probes.as_ref().expect("small-probe table");
        assert_eq!(
            small.below_face_px,
            crate::QualityGate::DECISION.min_face_px
        );
        assert_eq!(ProbeClass::of_face_px(32.0), ProbeClass::Small);
        assert_eq!(ProbeClass::of_face_px(48.0), ProbeClass::Clean);
        let t_small = threshold_for_false_match_rate_of(ProbeClass::Small, 1e-3).unwrap();
        assert!(t_small < c.default_threshold, "{t_small}");
        assert!(false_match_rate_of(ProbeClass::Small, t_small).unwrap() <= 1e-3);
        assert!(false_match_rate_of(ProbeClass::Small, t_small - 0.02).unwrap() > 1e-3);
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
