//! Small pieces of wording shared by the screens.

use crate::api::{self, ApiError};

/// What the People screen says to a key without the admin scope.
pub const NEEDS_ADMIN: &str = "The People screen needs an admin key. The key in Settings may only enroll and \
recognise faces, which is all the Live and Enroll screens need (and all this browser should hold). To list, \
search, export or erase people, an operator puts an admin key in Settings.";

/// A failed call on the People screen (admin routes), in words: a missing scope or a refused
/// key say what to do about it rather than the raw error.
pub fn people_error(what: &str, e: &ApiError) -> String {
    if e.is_forbidden() {
        NEEDS_ADMIN.to_string()
    } else if e.is_unauthorized() {
        "The API key in Settings was refused (unknown, revoked or expired): check it.".to_string()
    } else if e.status == 0 && e.detail == api::NO_KEY {
        "Set an admin API key in Settings to list people.".to_string()
    } else {
        format!("{what}: {e}")
    }
}

/// The threshold note of the Live screen: the one the service used, and why it differs from
/// the setting when it does; `setting` is `None` when Settings ask for a false-match rate.
pub fn threshold_note(used: f32, setting: Option<f32>) -> String {
    let mut s = format!("match threshold used by the service: {used:.2}");
    match setting {
        Some(setting) if used > setting + 0.005 => s.push_str(&format!(
            " (your setting {setting:.2} is below the lowest it allows for this key)"
        )),
        Some(_) => {}
        // Set by false-match rate: the service chose the threshold from its calibration.
        None => s.push_str(" (for your false-match rate)"),
    }
    s
}

/// `n` with the singular or plural noun: "1 person", "2 people", "0 faces".
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Whether `s` has the form of a person id (a UUID: 8-4-4-4-12 hex digits).
pub fn looks_like_id(s: &str) -> bool {
    let s = s.trim();
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(count(1, "person", "people"), "1 person");
        assert_eq!(count(0, "person", "people"), "0 people");
        assert_eq!(count(2, "face", "faces"), "2 faces");
        assert_eq!(count(1, "face", "faces"), "1 face");
    }

    #[test]
    fn a_missing_admin_scope_is_explained() {
        let forbidden = ApiError::from_answer(
            403,
            &serde_json::json!({ "code": "forbidden", "detail": "this key lacks the admin scope" }),
        );
        assert_eq!(
            people_error("could not list people", &forbidden),
            NEEDS_ADMIN
        );
        assert!(NEEDS_ADMIN.contains("needs an admin key"));
        let refused = ApiError::from_answer(401, &serde_json::json!({ "code": "unauthorized" }));
        assert!(people_error("x", &refused).contains("refused"));
        let other = ApiError::from_answer(500, &serde_json::json!({ "detail": "database down" }));
        assert_eq!(
            people_error("could not list people", &other),
            "could not list people: database down"
        );
    }

    #[test]
    fn the_threshold_note_says_when_the_service_raised_it() {
        assert_eq!(
            threshold_note(0.67, Some(0.67)),
            "match threshold used by the service: 0.67"
        );
        assert!(threshold_note(0.67, Some(0.5)).contains("your setting 0.50 is below"));
        assert!(threshold_note(0.54, None).contains("for your false-match rate"));
        assert!(!threshold_note(0.8, Some(0.8)).contains("below"));
    }

    #[test]
    fn person_ids_are_uuids() {
        assert!(looks_like_id("6f1c2a3b-0d4e-4f5a-8b9c-0123456789ab"));
        assert!(looks_like_id(" 6F1C2A3B-0D4E-4F5A-8B9C-0123456789AB "));
        assert!(!looks_like_id("6f1c2a3b0d4e4f5a8b9c0123456789ab"));
        assert!(!looks_like_id("../../keys"));
        assert!(!looks_like_id("6f1c2a3b-0d4e-4f5a-8b9c-0123456789ag"));
    }
}
