//! Verification metrics over scored pairs: ROC AUC, best-accuracy threshold, equal error rate,
//! true-accept rate at a fixed false-accept rate, and the similarity to false-match-rate table.

use serde::Serialize;

mod identification;
pub use identification::{DirAtFpir, IdentificationReport, LabelledFace, identification_report};

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

/// A pair's label as pairs files write it: `1`/`0`, `true`/`false`, `yes`/`no`, `y`/`n`,
/// `same`/`different` (any case, spaces around ignored). `None` for anything else: a label that
/// is not understood must stop an evaluation, not count as "different".
pub fn parse_same_label(label: &str) -> Option<bool> {
    match label.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" | "same" => Some(true),
        "0" | "false" | "no" | "n" | "different" => Some(false),
        _ => None,
    }
}

/// What [`parse_same_label`] accepts, for error messages.
pub const SAME_LABELS: &str = "1/0, true/false, yes/no, y/n or same/different";

/// The one-sided Clopper-Pearson upper confidence bound of a rate seen as `events` in `trials`:
/// the largest rate under which seeing `events` or fewer still has probability `1 - confidence`.
/// A false-match rate measured on `trials` impostor pairs cannot be claimed below this; with no
/// false match at all it is about `3 / trials` at 95% (the "rule of three").
pub fn clopper_pearson_upper(events: u64, trials: u64, confidence: f64) -> f64 {
    if trials == 0 || events >= trials {
        return 1.0;
    }
    let alpha = 1.0 - confidence;
    if events == 0 {
        return 1.0 - alpha.powf(1.0 / trials as f64);
    }
    // P(X <= events) for X ~ Binomial(trials, p) falls as p rises: bisect for alpha.
    let (mut lo, mut hi) = (events as f64 / trials as f64, 1.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if binomial_cdf(events, trials, mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// P(X <= k) for X ~ Binomial(n, p), summed in log space (n up to millions).
fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    // log C(n, i) built up term by term from log C(n, 0) = 0.
    let mut log_choose = 0.0f64;
    let mut sum = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            log_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        sum += (log_choose + i as f64 * lp + (n - i) as f64 * lq).exp();
    }
    sum.min(1.0)
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

    #[test]
    fn labels_in_the_usual_spellings_and_nothing_else() {
        for yes in ["1", "true", "Yes", " same ", "Y"] {
            assert_eq!(parse_same_label(yes), Some(true), "{yes}");
        }
        for no in ["0", "FALSE", "no", "different", "n"] {
            assert_eq!(parse_same_label(no), Some(false), "{no}");
        }
        for bad in ["", "2", "maybe", "1.0", "-1"] {
            assert_eq!(parse_same_label(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn clopper_pearson_bounds_match_known_values() {
        // No event in 357 trials: 1 - 0.05^(1/357) = 0.00836 (about 3/357, the rule of three).
        assert!((clopper_pearson_upper(0, 357, 0.95) - 0.008356).abs() < 1e-5);
        // 1 in 100, one-sided 95%: 0.04656 (the Beta(2, 99) 0.95 quantile).
        assert!((clopper_pearson_upper(1, 100, 0.95) - 0.04656).abs() < 1e-4);
        // 5 in 1,000,000: above the rate seen, below twice it.
        let u = clopper_pearson_upper(5, 1_000_000, 0.95);
        assert!(u > 5e-6 && u < 1.2e-5, "{u}");
        assert_eq!(clopper_pearson_upper(3, 3, 0.95), 1.0);
        assert_eq!(clopper_pearson_upper(0, 0, 0.95), 1.0);
    }
}
