//! The live view's decisions: which faces of a frame go to be recognised, what a recognition
//! answer votes, and how a tracked face is labelled and listed.

use visage_shared::{Detection, Quality, QualityGate, QualityIssue};

use crate::api::{ProbeResult, RecognizeResponse};
use crate::proto::FrameFace;
use crate::track::{Label, Tracker, Vote};

/// Recognition requests allowed in flight at once.
pub const MAX_IN_FLIGHT: usize = 2;

/// One face as listed beside the live view (and in `window.__visage`).
#[derive(Debug, Clone, PartialEq)]
pub struct FaceRow {
    pub track: u64,
    pub label: String,
    /// `Some(true)` for a recognised person, `Some(false)` for an unknown face, `None` while
    /// the votes do not agree yet or when the face is too poor to decide.
    pub known: Option<bool>,
    /// No match on a face too poor to decide (see [`decided`]).
    pub undecided: bool,
}

impl FaceRow {
    /// The row of a face of track `track` labelled `label`.
    pub fn new(track: u64, label: &Label) -> Self {
        Self {
            track,
            label: label.text(),
            known: match label {
                Label::Pending | Label::Undecided(_) => None,
                Label::Unknown => Some(false),
                Label::Person { .. } => Some(true),
            },
            undecided: matches!(label, Label::Undecided(_)),
        }
    }

    /// The list item's class, which colours it (and which the end-to-end test looks for).
    pub fn class(&self) -> &'static str {
        if self.undecided {
            return "undecided";
        }
        match self.known {
            Some(true) => "known",
            Some(false) => "unknown",
            None => "pending",
        }
    }
}

/// The rows listed beside the live view, one per face in the frame's order; `tracks` gives
/// each its track (0 past its end: enrollment does not track faces).
pub fn face_rows(labels: &[(Detection, Label)], tracks: &[u64]) -> Vec<FaceRow> {
    labels
        .iter()
        .zip(tracks.iter().copied().chain(std::iter::repeat(0)))
        .map(|((_, label), track)| FaceRow::new(track, label))
        .collect()
}

/// Whether this frame's faces may go to be embedded and recognised: only when the embedding
/// worker is idle and fewer than [`MAX_IN_FLIGHT`] recognition requests are on their way (a
/// face left out is taken on a later frame, rather than queueing behind a slow service), and
/// with the frame's pixels back to embed them from.
pub fn may_embed(embedding_idle: bool, requests_in_flight: usize, has_frame: bool) -> bool {
    embedding_idle && requests_in_flight < MAX_IN_FLIGHT && has_frame
}

/// What the live view makes of one frame.
#[derive(Debug, Default)]
pub struct LiveFrame {
    /// Each face with its track's label, in the frame's order.
    pub labels: Vec<(Detection, Label)>,
    /// Each face's track id, in the frame's order.
    pub tracks: Vec<u64>,
    /// The faces to embed and recognise now, with their track ids (marked embedded already).
    pub embed: Vec<(u64, Detection)>,
}

/// Follows this frame's faces with `tracker` and picks those to recognise: with `can_embed`
/// (see [`may_embed`]), each measurable face whose track wants an embedding now. A face
/// without quality (its landmarks could not be aligned) is shown but never embedded.
pub fn live_frame(tracker: &mut Tracker, faces: &[FrameFace], can_embed: bool) -> LiveFrame {
    let dets: Vec<Detection> = faces.iter().map(|f| f.detection.clone()).collect();
    let idx = tracker.update(&dets);
    let mut out = LiveFrame::default();
    for (f, &ti) in faces.iter().zip(&idx) {
        let id = tracker.tracks[ti].id;
        if can_embed && f.quality.is_some() && tracker.tracks[ti].wants_embedding() {
            out.embed.push((id, f.detection.clone()));
            tracker.mark_embedded(ti);
        }
        let label = decided(tracker.tracks[ti].label(), f.quality.as_ref());
        out.labels.push((f.detection.clone(), label));
        out.tracks.push(id);
    }
    out
}

/// `label`, except that "unknown" on a face that fails [`QualityGate::DECISION`] (too small,
/// blurred, turned or dark for a reliable decision) is undecided, saying why: no match there is
/// no evidence that the person is not enrolled. The service does the same for the images it
/// analyses (`outcome: undecided`).
pub fn decided(label: Label, quality: Option<&Quality>) -> Label {
    let Some(q) = quality.filter(|_| label == Label::Unknown) else {
        return label;
    };
    let why = match q.issues(&QualityGate::DECISION).first() {
        None => return label,
        Some(QualityIssue::TooSmall { .. }) => "too small to decide",
        Some(QualityIssue::Blurry { .. }) => "too blurred to decide",
        Some(QualityIssue::TooDark { .. }) => "too dark to decide",
        Some(QualityIssue::TooBright { .. }) => "too bright to decide",
        Some(_) => "turned away: undecided",
    };
    Label::Undecided(why.to_string())
}

/// A recognition answer for one probe as a vote of its track: the best candidate when the
/// service says it matches; no candidate (what keys without the admin scope get for an
/// unknown face) or none that matches is unknown, with the best similarity seen.
pub fn vote(r: &RecognizeResponse, result: &ProbeResult) -> Vote {
    match r.best_match(result) {
        Some(c) => Vote::Person {
            id: c.person_id.to_string(),
            name: c.name.clone(),
            similarity: c.similarity,
        },
        None => Vote::Unknown {
            best: result.candidates.first().map(|c| c.similarity),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ANN, answer, det, face, good};

    #[test]
    fn unknown_on_a_poor_face_is_undecided_with_the_reason() {
        let small = Quality {
            face_px: 30.0,
            ..good()
        };
        let blurred = Quality {
            sharpness: 10.0,
            ..good()
        };
        let cases = [
            (Label::Unknown, Some(good()), Label::Unknown),
            (Label::Unknown, None, Label::Unknown),
            (
                Label::Unknown,
                Some(small),
                Label::Undecided("too small to decide".into()),
            ),
            (
                Label::Unknown,
                Some(blurred),
                Label::Undecided("too blurred to decide".into()),
            ),
            // A match or a pending vote stays what it is, whatever the face.
            (Label::Pending, Some(small), Label::Pending),
        ];
        for (label, quality, want) in cases {
            assert_eq!(decided(label, quality.as_ref()), want);
        }
        let row = FaceRow::new(3, &Label::Undecided("too small to decide".into()));
        assert_eq!((row.class(), row.known), ("undecided", None));
        assert_eq!(row.label, "too small to decide");
    }

    fn person(name: &str) -> Vote {
        Vote::Person {
            id: format!("id-{name}"),
            name: name.into(),
            similarity: 0.9,
        }
    }

    #[test]
    fn rows_and_classes_follow_the_label() {
        let ann = Label::Person {
            id: "p".into(),
            name: "Ann".into(),
            similarity: 0.93,
        };
        let rows: Vec<(String, Option<bool>, &str)> = [Label::Pending, Label::Unknown, ann]
            .iter()
            .map(|l| FaceRow::new(7, l))
            .map(|r| (r.label.clone(), r.known, r.class()))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("…".into(), None, "pending"),
                ("unknown".into(), Some(false), "unknown"),
                ("Ann 0.93".into(), Some(true), "known"),
            ]
        );
        // Enrollment lists its faces without tracks.
        let labels = vec![(det(0.0), Label::Pending), (det(200.0), Label::Unknown)];
        let tracks: Vec<u64> = face_rows(&labels, &[]).iter().map(|r| r.track).collect();
        assert_eq!(tracks, vec![0, 0]);
        let tracks: Vec<u64> = face_rows(&labels, &[4, 5])
            .iter()
            .map(|r| r.track)
            .collect();
        assert_eq!(tracks, vec![4, 5]);
    }

    #[test]
    fn faces_are_embedded_only_when_the_pipeline_has_room() {
        assert!(may_embed(true, 0, true));
        assert!(may_embed(true, MAX_IN_FLIGHT - 1, true));
        assert!(
            !may_embed(true, MAX_IN_FLIGHT, true),
            "enough requests on their way"
        );
        assert!(!may_embed(false, 0, true), "the embedding worker is busy");
        assert!(!may_embed(true, 0, false), "no pixels to embed from");
    }

    #[test]
    fn live_frames_embed_new_measurable_faces_and_label_every_face() {
        let mut t = Tracker::default();
        let faces = [face(0.0, Some(good())), face(300.0, None)];
        // Busy: both faces are tracked and shown as pending, none embedded.
        let busy = live_frame(&mut t, &faces, false);
        assert!(busy.embed.is_empty());
        assert_eq!(busy.labels.len(), 2);
        assert!(busy.labels.iter().all(|(_, l)| *l == Label::Pending));
        // Free: the measurable face goes, the one that could not be aligned never does.
        let free = live_frame(&mut t, &faces, true);
        assert_eq!(free.tracks, busy.tracks, "the same faces keep their tracks");
        assert_eq!(free.embed.len(), 1);
        assert_eq!(free.embed[0].0, free.tracks[0]);
        assert_eq!(free.embed[0].1, det(0.0));
        // Votes agree: the face is named.
        for _ in 0..3 {
            t.vote(free.tracks[0], person("Ann"));
        }
        let named = live_frame(&mut t, &faces, true);
        assert_eq!(named.labels[0].1.text(), "Ann 0.90");
        assert_eq!(named.labels[1].1, Label::Pending);
    }

    #[test]
    fn answers_vote_for_a_match_or_unknown() {
        let r = answer(&[None, Some(("Ann", 0.4, false)), Some(("Ann", 0.93, true))]);
        assert_eq!(vote(&r, &r.results[0]), Vote::Unknown { best: None });
        assert_eq!(vote(&r, &r.results[1]), Vote::Unknown { best: Some(0.4) });
        assert_eq!(
            vote(&r, &r.results[2]),
            Vote::Person {
                id: ANN.into(),
                name: "Ann".into(),
                similarity: 0.93
            }
        );
    }
}
