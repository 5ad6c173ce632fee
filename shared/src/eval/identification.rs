//! Open-set identification (1:N) metrics for `visage eval --gallery`: rank-1 and the
//! detection-and-identification rate (DIR) at a false-positive identification rate (FPIR), as in
//! NIST FRVT 1:N, for each way of turning a person's enrolled faces into scores.
//!
//! Protocol (see [`identification_report`]): every person with more than `k` photos is enrolled
//! with their first `k` and probed with the rest (mated searches). Non-mated searches come from
//! leaving one person out at a time: each photo of a person is searched against the gallery
//! without that person, so every photo in the set also tests the "not enrolled" answer.

use serde::Serialize;

use crate::embed::Embedding;
use crate::template::{PersonTemplate, TemplateRule};

/// One photo's face in an identification set.
#[derive(Debug, Clone)]
pub struct LabelledFace {
    /// Who it is (the sub-folder name in `--gallery`).
    pub identity: String,
    pub embedding: Embedding,
    /// The face's quality weight for templates ([`crate::template::quality_weight`]).
    pub weight: f32,
    /// What this photo searches with, when not `embedding`: the same photo degraded (a small,
    /// compressed face), while the gallery holds the clean one.
    pub probe: Option<Embedding>,
}

impl LabelledFace {
    fn search_with(&self) -> &Embedding {
        self.probe.as_ref().unwrap_or(&self.embedding)
    }
}

/// DIR at one FPIR target, with the threshold that reaches it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DirAtFpir {
    /// The FPIR asked for.
    pub fpir: f64,
    /// The lowest threshold whose measured FPIR is at most `fpir` (on the 0.01 grid).
    pub threshold: f32,
    /// FPIR measured at `threshold`.
    pub measured_fpir: f64,
    /// Share of mated searches whose top candidate is the right person at or above `threshold`.
    pub dir: f64,
}

/// Identification results for one template rule.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IdentificationReport {
    pub rule: TemplateRule,
    /// Photos per enrolled person.
    pub enrolled_per_person: usize,
    pub enrolled_people: usize,
    pub mated_searches: usize,
    pub non_mated_searches: usize,
    /// Share of mated searches whose top candidate is the right person (closed set, no
    /// threshold).
    pub rank1: f64,
    /// At each FPIR target asked for.
    pub dir_at_fpir: Vec<DirAtFpir>,
    /// At a fixed threshold (the shipped default): `(threshold, fpir, dir)`.
    pub at_threshold: (f32, f64, f64),
}

/// Top candidate (identity index, score) of `probe` over `gallery`, skipping `exclude`.
fn top1(
    probe: &Embedding,
    gallery: &[(String, PersonTemplate)],
    exclude: Option<usize>,
) -> Option<(usize, f32)> {
    gallery
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != exclude)
        .filter_map(|(i, (_, template))| template.score(probe).map(|s| (i, s)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Runs the protocol on `faces` (photo order within a person is enrolment order) with `k`
/// enrolled photos per person. `None` when no person has more than `k` photos (no mated
/// search) or fewer than two people are enrolled (no non-mated search against a gallery).
pub fn identification_report(
    faces: &[LabelledFace],
    k: usize,
    rule: TemplateRule,
    fpir_targets: &[f64],
    fixed_threshold: f32,
) -> Option<IdentificationReport> {
    let mut people: Vec<(String, Vec<&LabelledFace>)> = Vec::new();
    for f in faces {
        match people.iter_mut().find(|(id, _)| *id == f.identity) {
            Some((_, v)) => v.push(f),
            None => people.push((f.identity.clone(), vec![f])),
        }
    }
    let k = k.max(1);
    // Each enrolled person's template, made once from their first k photos.
    let gallery: Vec<(String, PersonTemplate)> = people
        .iter()
        .filter(|(_, v)| v.len() > k)
        .map(|(id, v)| {
            let faces = v[..k].iter().map(|f| (&f.embedding, f.weight));
            (id.clone(), PersonTemplate::new(faces, rule))
        })
        .collect();
    if gallery.len() < 2 {
        return None;
    }
    // Mated: the photos past the first k, against the whole gallery.
    let mut mated = Vec::new(); // (correct top-1, score)
    for (gi, (id, _)) in gallery.iter().enumerate() {
        let (_, all) = people.iter().find(|(p, _)| p == id)?;
        for probe in &all[k..] {
            let (top, score) = top1(probe.search_with(), &gallery, None)?;
            mated.push((top == gi, score));
        }
    }
    // Non-mated: every photo, against the gallery without its own person.
    let mut non_mated = Vec::new();
    for (id, all) in &people {
        let own = gallery.iter().position(|(g, _)| g == id);
        for probe in all {
            non_mated.push(top1(probe.search_with(), &gallery, own)?.1);
        }
    }
    let rates = |t: f32| {
        let fpir = non_mated.iter().filter(|&&s| s >= t).count() as f64 / non_mated.len() as f64;
        let dir = mated.iter().filter(|&&(ok, s)| ok && s >= t).count() as f64 / mated.len() as f64;
        (fpir, dir)
    };
    let dir_at_fpir = fpir_targets
        .iter()
        .map(|&target| {
            // The lowest threshold on a 0.01 grid meeting the target: DIR falls as t rises.
            let threshold = (-100..=101)
                .map(|i| i as f32 / 100.0)
                .find(|&t| rates(t).0 <= target)
                .unwrap_or(1.01);
            let (measured_fpir, dir) = rates(threshold);
            DirAtFpir {
                fpir: target,
                threshold,
                measured_fpir,
                dir,
            }
        })
        .collect();
    let (fpir, dir) = rates(fixed_threshold);
    Some(IdentificationReport {
        rule,
        enrolled_per_person: k,
        enrolled_people: gallery.len(),
        mated_searches: mated.len(),
        non_mated_searches: non_mated.len(),
        rank1: mated.iter().filter(|m| m.0).count() as f64 / mated.len().max(1) as f64,
        dir_at_fpir,
        at_threshold: (fixed_threshold, fpir, dir),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EMBEDDER_ID, EMBEDDING_DIM};

    /// A unit vector along axis `a`, tilted towards axis `b` by `t`.
    fn face(identity: &str, a: usize, b: usize, t: f32) -> LabelledFace {
        let mut v = vec![0.0; EMBEDDING_DIM];
        v[a] = 1.0;
        v[b] += t;
        LabelledFace {
            identity: identity.into(),
            embedding: Embedding::new(EMBEDDER_ID, v).unwrap(),
            weight: 1.0,
            probe: None,
        }
    }

    #[test]
    fn counts_by_hand() {
        // Alice (axis 0) and Bob (axis 1) have 2 photos each, Carol 1: with k = 1 Alice and Bob
        // are enrolled, each probed once (mated = 2). Non-mated: all 5 photos.
        let faces = vec![
            face("alice", 0, 5, 0.0),
            face("alice", 0, 5, 0.3),
            face("bob", 1, 6, 0.0),
            // Bob's probe leans towards Alice: rank-1 wrong.
            face("bob", 0, 1, 0.9),
            face("carol", 2, 7, 0.0),
        ];
        let r = identification_report(&faces, 1, TemplateRule::BestFace, &[0.0, 1.0], 0.5).unwrap();
        assert_eq!(r.enrolled_people, 2);
        assert_eq!(r.mated_searches, 2);
        assert_eq!(r.non_mated_searches, 5);
        assert_eq!(r.rank1, 0.5);
        // FPIR 1.0 allows any threshold: DIR = rank-1 = 0.5 at the lowest.
        assert_eq!(r.dir_at_fpir[1].dir, 0.5);
        // FPIR 0: above every non-mated top score. Bob's second photo against Alice alone
        // scores 1/sqrt(1.81) = 0.743, the highest non-mated score, so t = 0.75 and Alice's
        // probe (0.958) still counts.
        assert_eq!(r.dir_at_fpir[0].threshold, 0.75);
        assert_eq!(r.dir_at_fpir[0].measured_fpir, 0.0);
        assert_eq!(r.dir_at_fpir[0].dir, 0.5);
    }

    #[test]
    fn too_few_people_is_none() {
        let faces = vec![face("alice", 0, 5, 0.0), face("alice", 0, 5, 0.3)];
        assert!(identification_report(&faces, 1, TemplateRule::Mean, &[0.01], 0.5).is_none());
    }
}
