//! Stage 3: how usable a detected face is: size, sharpness, pose and brightness, with a gate
//! that explains in words what to fix. Enrollment uses the gate; recognition reports the values.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::align::{ALIGNED_SIZE, ARCFACE_TEMPLATE, alignment_transform};
use crate::detect::Detection;

/// Measured quality of one face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Detector score, 0..1.
    pub score: f32,
    /// Shorter side of the face box, in source image pixels.
    pub face_px: f32,
    /// Distance between the eyes, in source image pixels.
    pub interocular_px: f32,
    /// Variance of the Laplacian of the aligned grey face (higher is sharper).
    pub sharpness: f32,
    /// Mean luma of the aligned face's central region, 0..255.
    pub brightness: f32,
    /// Head turn left/right, degrees (estimate from the nose position between the eyes).
    pub yaw_deg: f32,
    /// Head nod up/down, degrees (estimate from the nose height between eyes and mouth).
    pub pitch_deg: f32,
    /// In-plane tilt, degrees (angle of the eye line).
    pub roll_deg: f32,
}

/// Thresholds for accepting a face for enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualityGate {
    pub min_score: f32,
    pub min_face_px: f32,
    pub min_sharpness: f32,
    pub min_brightness: f32,
    pub max_brightness: f32,
    pub max_yaw_deg: f32,
    pub max_pitch_deg: f32,
    pub max_roll_deg: f32,
}

impl Default for QualityGate {
    /// Measured on ../shared/faces portraits: sharpness 500-5400 for good photos, 133 after a
    /// Gaussian blur of sigma 2 and 33 at sigma 4 (so 50 rejects the heavy blur only). Pitch
    /// reads about +10° on frontal photos (YuNet's nose point sits lower than the template's),
    /// hence the wide pitch limit. Roll is what alignment undoes (the similarity transform
    /// rotates the face upright), so its limit is wider still: the fixture face tilted 31° in
    /// face-api's sample1 matches itself across two framings at 0.94 once its landmarks are
    /// refined.
    fn default() -> Self {
        Self {
            min_score: 0.8,
            min_face_px: 64.0,
            min_sharpness: 50.0,
            min_brightness: 50.0,
            max_brightness: 225.0,
            max_yaw_deg: 35.0,
            max_pitch_deg: 35.0,
            max_roll_deg: 40.0,
        }
    }
}

impl QualityGate {
    /// The gate under which a recognition that finds no match is not evidence that the person
    /// is not enrolled: such a face is "undecided" (too small, blurred, turned, dark), not
    /// "unknown". Measured with `visage eval --degrade-face-px` at the default operating point
    /// (BENCHMARKS.md, "Decisions"): same-person acceptance is 100% for faces 48 px wide, 90-95%
    /// at 40 px and 60% at 32 px with strong JPEG. The other limits are the enrolment gate's
    /// where a face is hard to read (blur, light) and wider for pose.
    pub const DECISION: QualityGate = QualityGate {
        min_score: 0.0,
        min_face_px: 48.0,
        min_sharpness: 50.0,
        min_brightness: 40.0,
        max_brightness: 235.0,
        max_yaw_deg: 45.0,
        max_pitch_deg: 45.0,
        max_roll_deg: 180.0,
    };
}

/// One reason a face fails the gate, with advice a person can follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum QualityIssue {
    LowScore { score: f32, min: f32 },
    TooSmall { face_px: f32, min: f32 },
    Blurry { sharpness: f32, min: f32 },
    TooDark { brightness: f32, min: f32 },
    TooBright { brightness: f32, max: f32 },
    TurnedAway { yaw_deg: f32, max: f32 },
    TiltedUpDown { pitch_deg: f32, max: f32 },
    HeadTilted { roll_deg: f32, max: f32 },
}

impl QualityIssue {
    /// Human-readable advice.
    pub fn advice(&self) -> String {
        match self {
            QualityIssue::LowScore { score, .. } => format!(
                "the face is hard to see (detector score {score:.2}); face the camera in good light"
            ),
            QualityIssue::TooSmall { face_px, min } => {
                format!("move closer: the face is {face_px:.0} px, at least {min:.0} px needed")
            }
            QualityIssue::Blurry { .. } => "hold still: the face is blurred".to_string(),
            QualityIssue::TooDark { .. } => "more light: the face is too dark".to_string(),
            QualityIssue::TooBright { .. } => "less light: the face is overexposed".to_string(),
            QualityIssue::TurnedAway { yaw_deg, .. } => format!(
                "face the camera: head turned {:.0}° to the side",
                yaw_deg.abs()
            ),
            QualityIssue::TiltedUpDown { pitch_deg, .. } => format!(
                "look straight ahead: head tilted {:.0}° up or down",
                pitch_deg.abs()
            ),
            QualityIssue::HeadTilted { roll_deg, .. } => {
                format!("hold your head upright: tilted {:.0}°", roll_deg.abs())
            }
        }
    }
}

impl Quality {
    /// Measures a detection; `aligned` is its 112x112 aligned crop.
    pub fn measure(det: &Detection, aligned: &RgbImage) -> Quality {
        let l = &det.landmarks;
        let (dx, dy) = (l[1].x - l[0].x, l[1].y - l[0].y);
        let interocular_px = dx.hypot(dy);
        let roll_deg = dy.atan2(dx).to_degrees();
        // Pose from the landmarks brought into the template frame (scale and roll removed).
        let (mut yaw_deg, mut pitch_deg) = (0.0, 0.0);
        if let Some(t) = alignment_transform(l) {
            let p: Vec<_> = l.iter().map(|&p| t.apply(p)).collect();
            let eye_mid = ((p[0].x + p[1].x) / 2.0, (p[0].y + p[1].y) / 2.0);
            let mouth_mid_y = (p[3].y + p[4].y) / 2.0;
            let half_iod = ((p[1].x - p[0].x) / 2.0).abs().max(1e-3);
            yaw_deg = ((p[2].x - eye_mid.0) / half_iod)
                .clamp(-1.0, 1.0)
                .asin()
                .to_degrees();
            let t = &ARCFACE_TEMPLATE;
            let ref_ratio = (t[2].y - (t[0].y + t[1].y) / 2.0)
                / ((t[3].y + t[4].y) / 2.0 - (t[0].y + t[1].y) / 2.0);
            let span = (mouth_mid_y - eye_mid.1).abs().max(1e-3);
            let ratio = (p[2].y - eye_mid.1) / span;
            pitch_deg = ((ratio - ref_ratio) * 2.0)
                .clamp(-1.0, 1.0)
                .asin()
                .to_degrees();
        }
        let (sharpness, brightness) = sharpness_and_brightness(aligned);
        Quality {
            score: det.score,
            face_px: Self::face_px_of(det),
            interocular_px,
            sharpness,
            brightness,
            yaw_deg,
            pitch_deg,
            roll_deg,
        }
    }

    /// How wide a detected face is, in pixels: the shorter side of its box (what the gates and
    /// the small-probe calibration compare).
    pub fn face_px_of(det: &Detection) -> f32 {
        det.bbox.width.min(det.bbox.height)
    }

    /// Every reason this face fails `gate`; empty when it passes.
    pub fn issues(&self, gate: &QualityGate) -> Vec<QualityIssue> {
        let mut v = Vec::new();
        if self.score < gate.min_score {
            v.push(QualityIssue::LowScore {
                score: self.score,
                min: gate.min_score,
            });
        }
        if self.face_px < gate.min_face_px {
            v.push(QualityIssue::TooSmall {
                face_px: self.face_px,
                min: gate.min_face_px,
            });
        }
        if self.sharpness < gate.min_sharpness {
            v.push(QualityIssue::Blurry {
                sharpness: self.sharpness,
                min: gate.min_sharpness,
            });
        }
        if self.brightness < gate.min_brightness {
            v.push(QualityIssue::TooDark {
                brightness: self.brightness,
                min: gate.min_brightness,
            });
        }
        if self.brightness > gate.max_brightness {
            v.push(QualityIssue::TooBright {
                brightness: self.brightness,
                max: gate.max_brightness,
            });
        }
        if self.yaw_deg.abs() > gate.max_yaw_deg {
            v.push(QualityIssue::TurnedAway {
                yaw_deg: self.yaw_deg,
                max: gate.max_yaw_deg,
            });
        }
        if self.pitch_deg.abs() > gate.max_pitch_deg {
            v.push(QualityIssue::TiltedUpDown {
                pitch_deg: self.pitch_deg,
                max: gate.max_pitch_deg,
            });
        }
        if self.roll_deg.abs() > gate.max_roll_deg {
            v.push(QualityIssue::HeadTilted {
                roll_deg: self.roll_deg,
                max: gate.max_roll_deg,
            });
        }
        v
    }
}

/// Variance of the 4-neighbour Laplacian and mean luma over the central 64x64 of the aligned
/// face (the inner face; the crop's corners are background or black border).
fn sharpness_and_brightness(aligned: &RgbImage) -> (f32, f32) {
    let s = ALIGNED_SIZE as usize;
    if aligned.dimensions() != (ALIGNED_SIZE, ALIGNED_SIZE) {
        return (0.0, 0.0);
    }
    let raw = aligned.as_raw();
    let luma = |x: usize, y: usize| {
        let i = (y * s + x) * 3;
        0.299 * raw[i] as f32 + 0.587 * raw[i + 1] as f32 + 0.114 * raw[i + 2] as f32
    };
    let (x0, x1, y0, y1) = (24, 88, 36, 100);
    let (mut sum, mut lsum, mut lsq, mut n) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for y in y0..y1 {
        for x in x0..x1 {
            let c = luma(x, y);
            sum += c as f64;
            let lap = luma(x - 1, y) + luma(x + 1, y) + luma(x, y - 1) + luma(x, y + 1) - 4.0 * c;
            lsum += lap as f64;
            lsq += (lap as f64) * (lap as f64);
            n += 1.0;
        }
    }
    let mean_lap = lsum / n;
    ((lsq / n - mean_lap * mean_lap) as f32, (sum / n) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{BBox, Point};
    use image::Rgb;

    fn det(landmarks: [Point; 5]) -> Detection {
        Detection {
            score: 0.9,
            bbox: BBox::new(0.0, 0.0, 112.0, 112.0),
            landmarks,
        }
    }

    #[test]
    fn frontal_template_face_has_zero_pose() {
        let flat = RgbImage::from_pixel(112, 112, Rgb([128, 128, 128]));
        let q = Quality::measure(&det(ARCFACE_TEMPLATE), &flat);
        assert!(
            q.yaw_deg.abs() < 1.0 && q.pitch_deg.abs() < 1.0 && q.roll_deg.abs() < 1.0,
            "{q:?}"
        );
        assert_eq!(q.sharpness, 0.0);
        assert!((q.brightness - 128.0).abs() < 0.5);
        let issues = q.issues(&QualityGate::default());
        assert_eq!(
            issues,
            vec![QualityIssue::Blurry {
                sharpness: 0.0,
                min: 50.0
            }]
        );
    }

    #[test]
    fn turned_and_tilted_faces_are_flagged() {
        // Nose moved to the left eye's x: head turned far to the side.
        let mut lm = ARCFACE_TEMPLATE;
        lm[2].x = lm[1].x;
        let checker = RgbImage::from_fn(112, 112, |x, y| {
            if (x + y) % 2 == 0 {
                Rgb([200; 3])
            } else {
                Rgb([60; 3])
            }
        });
        let q = Quality::measure(&det(lm), &checker);
        assert!(q.yaw_deg > 60.0, "{q:?}");
        assert!(q.sharpness > 1000.0);
        assert!(
            q.issues(&QualityGate::default())
                .iter()
                .any(|i| matches!(i, QualityIssue::TurnedAway { .. }))
        );
        // Rotate all landmarks by 45° about the nose: roll 45.
        let c = ARCFACE_TEMPLATE[2];
        let (s, co) = (45f32.to_radians().sin(), 45f32.to_radians().cos());
        let rot = ARCFACE_TEMPLATE.map(|p| {
            Point::new(
                c.x + (p.x - c.x) * co - (p.y - c.y) * s,
                c.y + (p.x - c.x) * s + (p.y - c.y) * co,
            )
        });
        let q = Quality::measure(&det(rot), &checker);
        assert!(
            (q.roll_deg - 45.0).abs() < 1.0 && q.yaw_deg.abs() < 2.0,
            "{q:?}"
        );
        assert!(!q.issues(&QualityGate::default()).is_empty());
        assert!(
            q.issues(&QualityGate::default())[0]
                .advice()
                .contains("upright")
        );
    }
}
