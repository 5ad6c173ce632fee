//! What the live view and enrollment make of a frame, apart from the browser (pure,
//! unit-tested on the host): the label, row and colour a tracked face gets, when faces are
//! sent to be embedded and recognised, what a recognition answer votes, which enrollment faces
//! are accepted and what the person enrolling is told.

mod enroll;
mod live;

use super::Mode;
use crate::track::Label;

pub use enroll::{add_photo_face, enroll_frame, enrollment_gate};
pub use live::{FaceRow, decided, face_rows, live_frame, may_embed, vote};

/// The colour of a face's box and label: on the live view green for a person, red for an
/// unknown face, grey for one too poor to decide, yellow while pending; while enrolling green for a face that passes the
/// quality gate, yellow otherwise.
pub fn colour(mode: Mode, label: &Label, good_face: Option<bool>) -> &'static str {
    match (mode, label, good_face) {
        (Mode::Enroll, _, Some(true)) => "#2ecc71",
        (Mode::Enroll, _, _) => "#f1c40f",
        (_, Label::Person { .. }, _) => "#2ecc71",
        (_, Label::Unknown, _) => "#e74c3c",
        (_, Label::Undecided(_), _) => "#95a5a6",
        (_, Label::Pending, _) => "#f1c40f",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_say_known_unknown_pending_or_good_enough() {
        let ann = Label::Person {
            id: "p".into(),
            name: "Ann".into(),
            similarity: 0.9,
        };
        assert_eq!(colour(Mode::Live, &ann, None), "#2ecc71");
        assert_eq!(colour(Mode::Live, &Label::Unknown, None), "#e74c3c");
        assert_eq!(colour(Mode::Live, &Label::Pending, None), "#f1c40f");
        // While enrolling only the gate counts.
        assert_eq!(colour(Mode::Enroll, &Label::Pending, Some(true)), "#2ecc71");
        assert_eq!(
            colour(Mode::Enroll, &Label::Pending, Some(false)),
            "#f1c40f"
        );
        assert_eq!(colour(Mode::Enroll, &ann, None), "#f1c40f");
    }
}
