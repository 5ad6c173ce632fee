//! Settings kept in the browser's localStorage: threshold, camera, backend address, API key.

use serde::{Deserialize, Serialize};

const KEY: &str = "visage.settings";

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Cosine similarity a match needs (when no false-match rate is set).
    pub threshold: f32,
    /// Instead of the threshold: the highest false-match rate to accept, which the service maps
    /// through its calibration to a threshold (and says which).
    pub max_false_match_rate: Option<f64>,
    /// `deviceId` of the chosen camera; empty for the default one.
    pub camera_id: String,
    /// Base address of the visage service; empty for the page's own origin.
    pub backend: String,
    /// API key (sent as `Authorization: Bearer`). Never logged, never shown in full.
    pub api_key: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            threshold: visage_shared::model::default_threshold(),
            max_false_match_rate: None,
            camera_id: String::new(),
            backend: String::new(),
            api_key: String::new(),
        }
    }
}

/// Redacts the key, so a stray `{:?}` can never log it.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("threshold", &self.threshold)
            .field("max_false_match_rate", &self.max_false_match_rate)
            .field("camera_id", &self.camera_id)
            .field("backend", &self.backend)
            .field(
                "api_key",
                &if self.api_key.is_empty() {
                    "(none)"
                } else {
                    "(set)"
                },
            )
            .finish()
    }
}

impl Settings {
    /// The operating point a recognition asks for: the false-match rate when set, else the
    /// threshold (never both: the service refuses that).
    pub fn operating_point(&self) -> (Option<f32>, Option<f64>) {
        match self.max_false_match_rate {
            Some(rate) => (None, Some(rate)),
            None => (Some(self.threshold), None),
        }
    }

    fn storage() -> Option<web_sys::Storage> {
        web_sys::window()?.local_storage().ok().flatten()
    }

    pub fn load() -> Self {
        Self::storage()
            .and_then(|s| s.get_item(KEY).ok().flatten())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    pub fn save(&self) -> Result<(), String> {
        let s = Self::storage().ok_or("localStorage is not available")?;
        let text = serde_json::to_string(self).map_err(|e| e.to_string())?;
        s.set_item(KEY, &text)
            .map_err(|_| "could not write localStorage".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let s = Settings {
            api_key: "vsg_secret".into(),
            ..Settings::default()
        };
        assert!(!format!("{s:?}").contains("vsg_secret"));
    }

    #[test]
    fn missing_fields_take_defaults() {
        let s: Settings = serde_json::from_str(r#"{"api_key":"k"}"#).unwrap();
        assert_eq!(s.threshold, visage_shared::model::default_threshold());
        assert_eq!(s.api_key, "k");
        assert_eq!(s.max_false_match_rate, None);
    }

    #[test]
    fn a_false_match_rate_replaces_the_threshold_in_requests() {
        let s = Settings::default();
        assert_eq!(s.operating_point(), (Some(s.threshold), None));
        let s = Settings {
            max_false_match_rate: Some(1e-3),
            ..Settings::default()
        };
        assert_eq!(s.operating_point(), (None, Some(1e-3)));
    }
}
