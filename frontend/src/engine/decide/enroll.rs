//! Enrollment's decisions: which faces are good enough and taken, and what the person
//! enrolling is told.

use visage_shared::{AnalyzedFace, Detection, Quality, QualityGate};

use crate::proto::FrameFace;
use crate::track::Collector;

/// The enrollment quality gate: `Err` with advice the person can follow when `q` fails it.
pub fn enrollment_gate(q: &Quality) -> Result<(), String> {
    let issues = q.issues(&QualityGate::default());
    if issues.is_empty() {
        return Ok(());
    }
    Err(issues
        .iter()
        .map(|i| i.advice())
        .collect::<Vec<_>>()
        .join("; "))
}

/// What enrollment makes of one frame.
#[derive(Debug, PartialEq)]
pub struct EnrollFrame {
    /// What the person enrolling is told.
    pub advice: String,
    /// Whether the one face in view passes the gate (`None`: no single measurable face); it
    /// colours the face's box.
    pub good_face: Option<bool>,
    /// The face to embed for the enrollment, already reserved in the collector.
    pub embed: Option<(Detection, Quality)>,
}

/// Counts the frame in `collector` and judges its faces: only one person may be in view, and
/// their face must pass the gate; such a face is kept (reserved, to be embedded) when the
/// collector wants one and `can_embed` (the embedding worker is idle and the frame's pixels
/// are back).
pub fn enroll_frame(
    collector: &mut Collector,
    faces: &[FrameFace],
    can_embed: bool,
) -> EnrollFrame {
    collector.tick();
    let mut out = EnrollFrame {
        advice: String::new(),
        good_face: None,
        embed: None,
    };
    out.advice = match faces {
        [] => "no face in view: look at the camera".to_string(),
        [f] => match f.quality {
            None => "face the camera".to_string(),
            Some(q) => {
                let gate = enrollment_gate(&q);
                out.good_face = Some(gate.is_ok());
                match gate {
                    Err(advice) => advice,
                    Ok(()) => {
                        if collector.wants() && can_embed {
                            collector.reserve();
                            out.embed = Some((f.detection.clone(), q));
                        }
                        if collector.is_full() {
                            "done: all frames collected".to_string()
                        } else {
                            "good: hold still".to_string()
                        }
                    }
                }
            }
        },
        faces => format!(
            "{} faces in view: only the person enrolling, please",
            faces.len()
        ),
    };
    out
}

/// Adds a face of an uploaded photo, which passed [`enrollment_gate`], to the enrollment at
/// once (a photo is no near-duplicate of the last camera frame, so the spacing between faces
/// does not apply); returns the number of faces collected.
pub fn add_photo_face(collector: &mut Collector, face: &AnalyzedFace) -> usize {
    collector.frames_since = u32::MAX / 2;
    collector.offer(Some((face.embedding.clone(), face.quality)));
    collector.items.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{det, embedding, face, good};

    #[test]
    fn the_gate_explains_a_refused_face() {
        assert_eq!(enrollment_gate(&good()), Ok(()));
        let dark_and_small = Quality {
            brightness: 10.0,
            face_px: 20.0,
            ..good()
        };
        assert_eq!(
            enrollment_gate(&dark_and_small),
            Err("move closer: the face is 20 px, at least 64 px needed; more light: the face is too dark".into())
        );
    }

    #[test]
    fn enrollment_wants_one_good_face_and_takes_it_when_it_can() {
        let mut c = Collector::new(2, 3);
        let none = enroll_frame(&mut c, &[], true);
        assert_eq!(none.advice, "no face in view: look at the camera");
        assert_eq!(none.good_face, None);
        let two = enroll_frame(
            &mut c,
            &[face(0.0, Some(good())), face(300.0, Some(good()))],
            true,
        );
        assert_eq!(
            two.advice,
            "2 faces in view: only the person enrolling, please"
        );
        assert!(two.embed.is_none());
        let unaligned = enroll_frame(&mut c, &[face(0.0, None)], true);
        assert_eq!(unaligned.advice, "face the camera");
        let blurry = Quality {
            sharpness: 1.0,
            ..good()
        };
        let refused = enroll_frame(&mut c, &[face(0.0, Some(blurry))], true);
        assert_eq!(refused.good_face, Some(false));
        assert_eq!(Err(refused.advice), enrollment_gate(&blurry));
        assert!(refused.embed.is_none());
        // A good face, but the worker is busy: good, not taken.
        let busy = enroll_frame(&mut c, &[face(0.0, Some(good()))], false);
        assert_eq!(
            (busy.advice.as_str(), busy.good_face),
            ("good: hold still", Some(true))
        );
        assert!(busy.embed.is_none());
        assert_eq!(c.pending, 0);
        // Free: taken and reserved; the next good frames wait for it.
        let taken = enroll_frame(&mut c, &[face(0.0, Some(good()))], true);
        assert_eq!(taken.embed, Some((det(0.0), good())));
        assert_eq!(c.pending, 1);
        let next = enroll_frame(&mut c, &[face(0.0, Some(good()))], true);
        assert!(next.embed.is_none());
    }

    #[test]
    fn enrollment_says_when_it_is_done() {
        let mut c = Collector::new(1, 0);
        let f = enroll_frame(&mut c, &[face(0.0, Some(good()))], true);
        assert!(f.embed.is_some());
        c.fulfil(Some((embedding(), good())));
        let done = enroll_frame(&mut c, &[face(0.0, Some(good()))], true);
        assert_eq!(done.advice, "done: all frames collected");
        assert!(done.embed.is_none());
    }

    #[test]
    fn a_photo_face_is_added_without_waiting_for_the_gap() {
        let photo = AnalyzedFace {
            detection: det(0.0),
            quality: good(),
            embedding: embedding(),
        };
        let mut c = Collector::new(2, 3);
        assert_eq!(add_photo_face(&mut c, &photo), 1);
        // Right after it (no frame between), a second photo counts too.
        assert_eq!(add_photo_face(&mut c, &photo), 2);
        // A full enrollment keeps its count.
        assert_eq!(add_photo_face(&mut c, &photo), 2);
    }
}
