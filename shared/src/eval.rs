//! Verification metrics over scored pairs: ROC AUC, best-accuracy threshold, equal error rate,
//! true-accept rate at a fixed false-accept rate, and the similarity to false-match-rate table.

use serde::Serialize;

use crate::model::CalibrationPoint;

/// A scored pair: cosine similarity and whether both faces are the same person.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPair {
    pub score: f32,
    pub same: bool,
}

/// Summary of a verification run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VerificationReport {
    pub genuine_pairs: usize,
    pub impostor_pairs: usize,
    /// Area under the ROC curve (ties count one half).
    pub auc: f64,
    /// Best accuracy over all thresholds, and the threshold (midpoint between the two scores
    /// it separates) that reaches it.
    pub best_accuracy: f64,
    pub best_threshold: f32,
    /// Equal error rate (mean of FAR and FRR where they cross).
    pub eer: f64,
    /// True-accept rate at the lowest threshold with false-accept rate <= 1e-3.
    pub tar_at_far_1e3: f64,
    /// The threshold for `tar_at_far_1e3`.
    pub threshold_at_far_1e3: f32,
}

/// Computes the report; `None` without at least one genuine and one impostor pair.
pub fn verification_report(pairs: &[ScoredPair]) -> Option<VerificationReport> {
    let genuine: Vec<f32> = pairs.iter().filter(|p| p.same).map(|p| p.score).collect();
    let imp: Vec<f32> = pairs.iter().filter(|p| !p.same).map(|p| p.score).collect();
    if genuine.is_empty() || imp.is_empty() {
        return None;
    }
    let (ng, ni) = (genuine.len() as f64, imp.len() as f64);
    // AUC = P(genuine > impostor) + 0.5 P(equal).
    let mut wins = 0.0;
    for &g in &genuine {
        for &i in &imp {
            wins += if g > i {
                1.0
            } else if g == i {
                0.5
            } else {
                0.0
            };
        }
    }
    let auc = wins / (ng * ni);
    // Candidate thresholds: "accept if score >= t" at each distinct score, plus above all.
    let mut cands: Vec<f32> = pairs.iter().map(|p| p.score).collect();
    cands.sort_by(f32::total_cmp);
    cands.dedup();
    cands.push(f32::INFINITY);
    let rates = |t: f32| {
        let far = imp.iter().filter(|&&s| s >= t).count() as f64 / ni;
        let tar = genuine.iter().filter(|&&s| s >= t).count() as f64 / ng;
        (far, tar)
    };
    let (mut best_acc, mut best_t) = (-1.0, 0.0f32);
    let (mut eer, mut eer_gap) = (1.0, f64::INFINITY);
    let (mut tar3, mut t3) = (0.0, f32::INFINITY);
    for (k, &t) in cands.iter().enumerate() {
        let (far, tar) = rates(t);
        let acc = (tar * ng + (1.0 - far) * ni) / (ng + ni);
        if acc > best_acc {
            best_acc = acc;
            // Midpoint to the next lower score, so the threshold sits in the gap.
            best_t = if k > 0 && t.is_finite() {
                (t + cands[k - 1]) / 2.0
            } else {
                t
            };
        }
        let frr = 1.0 - tar;
        if (far - frr).abs() < eer_gap {
            eer_gap = (far - frr).abs();
            eer = (far + frr) / 2.0;
        }
        if far <= 1e-3 && t < t3 {
            t3 = t;
            tar3 = tar;
        }
    }
    Some(VerificationReport {
        genuine_pairs: genuine.len(),
        impostor_pairs: imp.len(),
        auc,
        best_accuracy: best_acc,
        best_threshold: best_t,
        eer,
        tar_at_far_1e3: tar3,
        threshold_at_far_1e3: t3,
    })
}

/// False-match rate at each similarity threshold on a grid (-1, then 0.00 to 0.98 in steps of
/// 0.02): the share of impostor scores at or above it.
pub fn calibration_table(impostor_scores: &[f32]) -> Vec<CalibrationPoint> {
    let n = impostor_scores.len().max(1) as f64;
    std::iter::once(-1.0)
        .chain((0..50).map(|k| k as f32 * 0.02))
        .map(|s| {
            let s = (s * 100.0).round() / 100.0;
            let above = impostor_scores.iter().filter(|&&x| x >= s).count() as f64;
            CalibrationPoint {
                similarity: s,
                false_match_rate: above / n,
            }
        })
        .collect()
}

/// The lowest threshold on the 0.01 grid above every impostor score: no observed false match.
pub fn zero_false_match_threshold(impostor_scores: &[f32]) -> f32 {
    let max = impostor_scores.iter().cloned().fold(-1.0f32, f32::max);
    ((max * 100.0).floor() + 1.0) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(score: f32, same: bool) -> ScoredPair {
        ScoredPair { score, same }
    }

    #[test]
    fn perfect_separation() {
        let r = verification_report(&[p(0.9, true), p(0.8, true), p(0.1, false), p(0.3, false)])
            .unwrap();
        assert_eq!(r.auc, 1.0);
        assert_eq!(r.best_accuracy, 1.0);
        assert!((r.best_threshold - 0.55).abs() < 1e-6);
        assert_eq!(r.eer, 0.0);
        assert_eq!(r.tar_at_far_1e3, 1.0);
    }

    #[test]
    fn by_hand_with_overlap() {
        // genuine 0.9, 0.4; impostor 0.5, 0.1. Pairs (g>i): (0.9,0.5) (0.9,0.1) (0.4,0.1) = 3/4.
        let r = verification_report(&[p(0.9, true), p(0.4, true), p(0.5, false), p(0.1, false)])
            .unwrap();
        assert_eq!(r.auc, 0.75);
        assert_eq!(r.best_accuracy, 0.75);
        assert_eq!(r.tar_at_far_1e3, 0.5);
        assert_eq!(r.threshold_at_far_1e3, 0.9);
        assert!(verification_report(&[p(0.1, true)]).is_none());
    }

    #[test]
    fn calibration_is_monotone() {
        let t = calibration_table(&[0.0, 0.1, 0.2, 0.3]);
        assert_eq!(t[0].false_match_rate, 1.0);
        assert!(
            t.windows(2)
                .all(|w| w[0].false_match_rate >= w[1].false_match_rate)
        );
        let at = |s: f32| {
            t.iter()
                .find(|c| (c.similarity - s).abs() < 1e-4)
                .unwrap()
                .false_match_rate
        };
        assert_eq!(at(0.14), 0.5);
        assert_eq!(at(0.3), 0.25);
        assert_eq!(at(0.32), 0.0);
        assert_eq!(zero_false_match_threshold(&[0.1, 0.55, 0.3]), 0.56);
    }
}
