//! Person templates: how a person's several enrolled faces become one score against a probe.
//!
//! Two rules, measured against each other by `visage eval --gallery` (BENCHMARKS.md, "Person
//! templates"): the best single face (the highest similarity over the person's faces), and the
//! quality-weighted mean of the unit embeddings, renormalised (one vector per person, which
//! averages out what is particular to one photo: light, expression, compression).

use serde::Serialize;

use crate::embed::Embedding;
use crate::quality::Quality;

/// How a person's enrolled faces are scored against a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateRule {
    /// The highest cosine similarity over the person's faces.
    BestFace,
    /// Cosine similarity to the quality-weighted mean of the person's unit embeddings.
    Mean,
}

/// The rule the service matches with: its search returns each person's nearest enrolled face.
pub const SERVICE_RULE: TemplateRule = TemplateRule::BestFace;

impl TemplateRule {
    pub const ALL: [TemplateRule; 2] = [TemplateRule::BestFace, TemplateRule::Mean];
}

/// A face's weight in its person's mean template, in (0, 1]: 1 for a face that meets the
/// enrolment gate comfortably (eyes 40 px or more apart, sharpness 200 or more), less for a
/// small or soft one, so that a poor photo cannot pull the template away from the good ones.
pub fn quality_weight(q: &Quality) -> f32 {
    let size = (q.interocular_px / 40.0).clamp(0.1, 1.0);
    let sharp = (q.sharpness / 200.0).clamp(0.1, 1.0);
    (size * sharp * q.score.clamp(0.1, 1.0)).max(1e-3)
}

/// The quality-weighted mean of unit embeddings, renormalised; `None` for no faces, or when
/// they cancel out.
pub fn mean_template<'a>(
    faces: impl IntoIterator<Item = (&'a Embedding, f32)>,
) -> Option<Embedding> {
    let mut sum: Option<(String, Vec<f32>)> = None;
    for (e, w) in faces {
        let (_, acc) =
            sum.get_or_insert_with(|| (e.model().to_string(), vec![0.0; e.vector().len()]));
        if acc.len() != e.vector().len() {
            return None;
        }
        for (a, v) in acc.iter_mut().zip(e.vector()) {
            *a += w.max(0.0) * v;
        }
    }
    let (model, v) = sum?;
    Embedding::new(&model, v).ok()
}

/// One person's enrolled faces, ready to score probes under a rule (the mean is worked out
/// once, not per probe).
pub enum PersonTemplate<'a> {
    BestFace(Vec<&'a Embedding>),
    Mean(Option<Embedding>),
}

impl<'a> PersonTemplate<'a> {
    pub fn new(faces: impl IntoIterator<Item = (&'a Embedding, f32)>, rule: TemplateRule) -> Self {
        match rule {
            TemplateRule::BestFace => Self::BestFace(faces.into_iter().map(|(e, _)| e).collect()),
            TemplateRule::Mean => Self::Mean(mean_template(faces)),
        }
    }

    /// The score of `probe` against this person; `None` for no faces.
    pub fn score(&self, probe: &Embedding) -> Option<f32> {
        match self {
            Self::BestFace(faces) => faces
                .iter()
                .filter_map(|e| probe.cosine(e).ok())
                .max_by(f32::total_cmp),
            Self::Mean(t) => t.as_ref().and_then(|t| probe.cosine(t).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EMBEDDER_ID, EMBEDDING_DIM};

    fn unit(axis: usize) -> Embedding {
        let mut v = vec![0.0; EMBEDDING_DIM];
        v[axis] = 1.0;
        Embedding::new(EMBEDDER_ID, v).unwrap()
    }

    #[test]
    fn mean_of_two_axes_sits_between_them() {
        let (a, b) = (unit(0), unit(1));
        let t = mean_template([(&a, 1.0), (&b, 1.0)]).unwrap();
        assert!((t.vector()[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        // Weights pull it: 3:1 gives (3, 1) / sqrt(10).
        let t = mean_template([(&a, 0.75), (&b, 0.25)]).unwrap();
        assert!((t.vector()[0] - 3.0 / 10f32.sqrt()).abs() < 1e-6);
        assert!(mean_template([]).is_none());
    }

    #[test]
    fn rules_differ_as_expected() {
        let (a, b) = (unit(0), unit(1));
        let probe = unit(0);
        let faces = [(&a, 1.0), (&b, 1.0)];
        let best = PersonTemplate::new(faces, TemplateRule::BestFace);
        assert_eq!(best.score(&probe), Some(1.0));
        let m = PersonTemplate::new(faces, TemplateRule::Mean)
            .score(&probe)
            .unwrap();
        assert!((m - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }
}
