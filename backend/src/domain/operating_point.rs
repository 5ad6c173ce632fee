//! Where a request asks to match: a raw cosine threshold, or a false-match rate that the
//! model's calibration turns into one threshold per probe class (issue 14: a small face in an
//! image is matched through its own table, so that the same rate accepts more of them).

use visage_shared::model::{self, ProbeClass};

use super::Invalid;

/// What a request asks to match at: its `threshold` or its `max_false_match_rate`, never both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OperatingPoint {
    /// A cosine similarity in -1..=1, the same for every probe.
    Threshold(f32),
    /// The highest false-match rate to accept, in (0, 1].
    FalseMatchRate(f64),
}

impl OperatingPoint {
    /// The service's default: false matches vouched at most 1e-3.
    pub const DEFAULT: Self = OperatingPoint::FalseMatchRate(model::DEFAULT_MAX_FALSE_MATCH_RATE);

    /// From a request's two optional fields; `None` when it gives neither.
    pub fn parse(
        threshold: Option<f32>,
        max_false_match_rate: Option<f64>,
    ) -> Result<Option<Self>, Invalid> {
        match (threshold, max_false_match_rate) {
            (Some(_), Some(_)) => Err(Invalid::new(
                "operating_point_conflict",
                "give threshold or max_false_match_rate, not both",
            )),
            (Some(t), None) if !(t.is_finite() && (-1.0..=1.0).contains(&t)) => Err(Invalid::new(
                "threshold_out_of_range",
                "threshold must be a cosine similarity between -1 and 1",
            )),
            (Some(t), None) => Ok(Some(OperatingPoint::Threshold(t))),
            (None, Some(r)) if !(r.is_finite() && r > 0.0 && r <= 1.0) => Err(Invalid::new(
                "false_match_rate_out_of_range",
                "max_false_match_rate must be above 0 and at most 1",
            )),
            (None, Some(r)) => Ok(Some(OperatingPoint::FalseMatchRate(r))),
            (None, None) => Ok(None),
        }
    }

    /// The thresholds this operating point means. `Err` carries the lowest false-match rate
    /// the calibration can vouch for, when the requested one is below it.
    pub fn thresholds(self) -> Result<Thresholds, f64> {
        match self {
            OperatingPoint::Threshold(t) => Ok(Thresholds::uniform(t)),
            OperatingPoint::FalseMatchRate(r) => Thresholds::for_false_match_rate(r),
        }
    }
}

/// The match thresholds of one operating point, per probe class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// For faces of 48 px and up, and for embeddings sent without their face.
    pub clean: f32,
    /// For faces under 48 px that the service measured in an image.
    pub small: f32,
}

impl Thresholds {
    /// One threshold for every probe.
    pub fn uniform(t: f32) -> Self {
        Self { clean: t, small: t }
    }

    /// The lowest thresholds at which each class's table vouches (95% upper bound) for at
    /// most `target`. Both must: otherwise `Err` with the lowest rate both can vouch for.
    pub fn for_false_match_rate(target: f64) -> Result<Self, f64> {
        let of = |class| model::threshold_for_false_match_rate_of(class, target);
        match (of(ProbeClass::Clean), of(ProbeClass::Small)) {
            (Ok(clean), Ok(small)) => Ok(Self { clean, small }),
            (Err(a), Err(b)) => Err(a.max(b)),
            (Err(floor), _) | (_, Err(floor)) => Err(floor),
        }
    }

    /// The threshold of a probe of `class`.
    pub fn of(self, class: ProbeClass) -> f32 {
        match class {
            ProbeClass::Clean => self.clean,
            ProbeClass::Small => self.small,
        }
    }

    /// Each threshold raised to `floor`'s where it is lower.
    pub fn at_least(self, floor: Thresholds) -> Self {
        Self {
            clean: self.clean.max(floor.clean),
            small: self.small.max(floor.small),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_gives_a_threshold_or_a_rate_and_each_is_checked() {
        assert_eq!(OperatingPoint::parse(None, None), Ok(None));
        assert_eq!(
            OperatingPoint::parse(Some(0.6), None),
            Ok(Some(OperatingPoint::Threshold(0.6)))
        );
        let code = |t, r| OperatingPoint::parse(t, r).map_err(|e| e.code);
        assert_eq!(code(Some(0.6), Some(1e-3)), Err("operating_point_conflict"));
        assert_eq!(code(Some(f32::NAN), None), Err("threshold_out_of_range"));
        assert_eq!(code(Some(1.5), None), Err("threshold_out_of_range"));
        assert_eq!(code(None, Some(0.0)), Err("false_match_rate_out_of_range"));
        assert_eq!(
            code(None, Some(f64::NAN)),
            Err("false_match_rate_out_of_range")
        );
    }

    #[test]
    fn the_default_rate_matches_small_faces_lower_than_clean_ones() {
        let t = OperatingPoint::DEFAULT.thresholds().expect("vouched");
        assert_eq!(t.clean, model::default_threshold());
        assert!(t.small < t.clean, "{t:?}");
        assert_eq!(t.of(ProbeClass::Small), t.small);
        // Below what both tables resolve: refused with the floor.
        let floor = OperatingPoint::FalseMatchRate(1e-5)
            .thresholds()
            .expect_err("unresolvable");
        assert!(floor > 1e-5 && floor < 1e-3, "{floor}");
        let raised = Thresholds::uniform(0.2).at_least(t);
        assert_eq!(raised, t);
        assert_eq!(
            Thresholds::uniform(0.9).at_least(t),
            Thresholds::uniform(0.9)
        );
    }
}
