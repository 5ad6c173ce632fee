//! What a caller may learn from matching: the defence against the API as an oracle.
//!
//! The API takes raw embeddings from clients (the browser sends only vectors), so whatever a
//! key can ask, an attacker holding it can ask 10,000 times. Raw similarities against a stored
//! template are enough to rebuild it (one `verify` per basis vector, or random probes and least
//! squares), and candidates below the threshold list the gallery. So only admin keys see raw
//! scores; every other key gets **decisions**:
//!
//! - the match threshold never goes below a floor (the thresholds of the default operating
//!   point, a false-match rate of 1e-3, one per probe class): a lower request is raised to it,
//!   and the response says which threshold was used;
//! - only candidates at or above that threshold are returned, at most [`MAX_TOP_K_DECISIONS`];
//! - a similarity is returned only with a match, rounded down to [`SIMILARITY_STEP`];
//! - probes must look like face embeddings ([`check_plausible`]): a basis vector or a sparse
//!   vector is refused;
//! - 1:1 verification of one person is budgeted per key and per person ([`QueryBudgets`]), and
//!   hitting a budget writes an audit entry.
//!
//! A probe far from every template (cosine below the floor, which a random or crafted vector is
//! by a wide margin in 192 dimensions) therefore learns one bit, "no match", whatever its
//! values: nothing to solve a least-squares system with. SECURITY.md has the measured numbers.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;
use visage_shared::Embedding;

use crate::auth::Caller;
use crate::domain::{OperatingPoint, Scope, Thresholds};
use crate::error::ApiError;
use crate::once_per::OncePer;

/// Similarities shown to non-admin keys are rounded down to a multiple of this.
pub const SIMILARITY_STEP: f32 = 0.01;

/// Most candidates per probe for non-admin keys (admins: 50).
pub const MAX_TOP_K_DECISIONS: usize = 5;

/// Most candidates per probe for admin keys.
pub const MAX_TOP_K: u32 = 50;

/// How much a caller may learn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Disclosure {
    /// Admin keys: raw similarities, every candidate, any threshold in -1..1.
    Full,
    /// Every other key: decisions above the floor only.
    Decisions {
        /// The lowest thresholds this caller may match with.
        floor: Thresholds,
    },
}

impl Disclosure {
    /// The disclosure for `caller`, with the service's threshold floor.
    pub fn for_caller(caller: &Caller, floor: Thresholds) -> Self {
        if caller.scopes.allows(Scope::Admin) {
            Disclosure::Full
        } else {
            Disclosure::Decisions { floor }
        }
    }

    /// The thresholds to match with: the requested operating point's (default: a false-match
    /// rate of 1e-3), raised to the floor if needed. A rate below what the calibration can
    /// vouch for is refused (422 `false_match_rate_unresolvable`).
    pub fn thresholds(self, requested: Option<OperatingPoint>) -> Result<Thresholds, ApiError> {
        let wanted = requested
            .unwrap_or(OperatingPoint::DEFAULT)
            .thresholds()
            .map_err(|floor| {
                ApiError::unprocessable(
                    "false_match_rate_unresolvable",
                    format!(
                        "the model's calibration can vouch for false-match rates down to \
                         {floor:.2e} (95% upper bound), not {:.2e}",
                        match requested {
                            Some(OperatingPoint::FalseMatchRate(r)) => r,
                            _ => visage_shared::model::DEFAULT_MAX_FALSE_MATCH_RATE,
                        }
                    ),
                    Some(serde_json::json!({ "lowest_vouched_false_match_rate": floor })),
                )
            })?;
        Ok(match self {
            Disclosure::Full => wanted,
            Disclosure::Decisions { floor } => wanted.at_least(floor),
        })
    }

    /// Candidates per probe: the request's (checked, default 5), capped for non-admin keys.
    pub fn top_k(self, requested: Option<u32>) -> Result<usize, ApiError> {
        let k = requested.unwrap_or(5);
        if !(1..=MAX_TOP_K).contains(&k) {
            return Err(ApiError::bad_request(
                "top_k_out_of_range",
                format!("top_k must be between 1 and {MAX_TOP_K}"),
            ));
        }
        Ok(match self {
            Disclosure::Full => k as usize,
            Disclosure::Decisions { .. } => (k as usize).min(MAX_TOP_K_DECISIONS),
        })
    }

    /// Whether candidates below the threshold may be shown.
    pub fn shows_non_matches(self) -> bool {
        matches!(self, Disclosure::Full)
    }

    /// The similarity as this caller may see it: raw for admins; for others, only with a match
    /// and rounded down (so a shown value never exceeds the true one).
    pub fn similarity(self, similarity: f32, is_match: bool) -> Option<f32> {
        match self {
            Disclosure::Full => Some(similarity),
            Disclosure::Decisions { .. } if is_match => Some(coarsen(similarity)),
            Disclosure::Decisions { .. } => None,
        }
    }
}

/// Rounds down to a multiple of [`SIMILARITY_STEP`].
pub fn coarsen(similarity: f32) -> f32 {
    let steps = (similarity / SIMILARITY_STEP + 1e-4).floor();
    // Printed as e.g. 0.83, not 0.83000004.
    ((steps * SIMILARITY_STEP) * 100.0).round() / 100.0
}

/// The largest share of a probe's energy that one coordinate may hold.
///
/// Measured on the MobileFaceNet embeddings of the 49 faces of `../shared/faces`: the largest
/// share is 0.252 (`kit_harington/3.jpg`); a basis vector's is 1.
pub const MAX_COORDINATE_ENERGY: f32 = 0.5;

/// The fewest coordinates that must carry 90% of a probe's energy.
///
/// Real embeddings spread theirs over many coordinates (measured on `../shared/faces` and the
/// e2e fixture photos: 30 to 44 of 192 for 90%, browser and native alike); a sparse probe,
/// which isolates coordinates of the template, does not (a basis vector: 1).
pub const MIN_SUPPORT_90: usize = 16;

/// How a vector's energy (squared coordinates) spreads over its coordinates: what
/// [`check_plausible`] judges, and what the evaluation gate reports for real faces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergyProfile {
    /// The largest share of the energy held by one coordinate.
    pub max_share: f32,
    /// The fewest coordinates that together hold 90% of the energy.
    pub support_90: usize,
}

impl EnergyProfile {
    /// The profile of `v`; `None` for the zero vector, which has none.
    pub fn of(v: &[f32]) -> Option<Self> {
        let mut energy: Vec<f32> = v.iter().map(|x| x * x).collect();
        let total: f32 = energy.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            return None;
        }
        energy.sort_by(|a, b| b.total_cmp(a));
        let mut acc = 0.0;
        let mut support_90 = 0;
        for x in &energy {
            acc += x;
            support_90 += 1;
            if acc >= 0.9 * total {
                break;
            }
        }
        Some(Self {
            max_share: energy[0] / total,
            support_90,
        })
    }
}

/// Refuses probes that cannot be face embeddings: one dominant coordinate, or energy
/// concentrated on few coordinates. Real embeddings pass with a wide margin (the test suite
/// checks every fixture face); the basis and sparse probes of a reconstruction attack do not.
pub fn check_plausible(e: &Embedding) -> Result<(), ApiError> {
    let p = EnergyProfile::of(e.vector()).ok_or_else(|| implausible("the vector is zero"))?;
    if p.max_share > MAX_COORDINATE_ENERGY {
        return Err(implausible("one coordinate holds most of its energy"));
    }
    if p.support_90 < MIN_SUPPORT_90 {
        return Err(implausible("its energy is concentrated on few coordinates"));
    }
    Ok(())
}

fn implausible(why: &str) -> ApiError {
    ApiError::unprocessable(
        "embedding_implausible",
        format!("the probe is not a plausible face embedding: {why}"),
        None,
    )
}

/// Verification budgets: how often one key may verify one person, and how often one person
/// may be verified by all non-admin keys together, per hour.
#[derive(Debug, Clone, Copy)]
pub struct BudgetSettings {
    /// Verifications of one person by one key per hour.
    pub per_key_person_hour: u32,
    /// Verifications of one person by all non-admin keys per hour.
    pub per_person_hour: u32,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            per_key_person_hour: 60,
            per_person_hour: 600,
        }
    }
}

/// Which budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetExhausted {
    /// This key asked about this person too often.
    KeyPerson,
    /// This person was asked about too often (by any keys).
    Person,
}

/// The per-key and per-person query budgets of non-admin verification.
pub struct QueryBudgets {
    key_person: DefaultKeyedRateLimiter<(Uuid, Uuid)>,
    person: DefaultKeyedRateLimiter<Uuid>,
    /// When each exhausted budget was last audited (one entry a minute per budget, not one
    /// per refused request).
    reported: OncePer<(Uuid, Option<Uuid>)>,
}

fn hourly(n: u32) -> Quota {
    let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    Quota::per_hour(n).allow_burst(n)
}

impl QueryBudgets {
    /// Budgets with these settings.
    pub fn new(s: BudgetSettings) -> Self {
        Self {
            key_person: RateLimiter::keyed(hourly(s.per_key_person_hour)),
            person: RateLimiter::keyed(hourly(s.per_person_hour)),
            reported: OncePer::new(Duration::from_secs(60)),
        }
    }

    /// Takes one verification of `person` by `key` from both budgets.
    pub fn take(&self, key: Uuid, person: Uuid) -> Result<(), BudgetExhausted> {
        if self.key_person.len() > 100_000 {
            self.key_person.retain_recent();
        }
        if self.person.len() > 100_000 {
            self.person.retain_recent();
        }
        self.key_person
            .check_key(&(key, person))
            .map_err(|_| BudgetExhausted::KeyPerson)?;
        self.person
            .check_key(&person)
            .map_err(|_| BudgetExhausted::Person)
    }

    /// Whether an exhaustion of this budget should be audited now (at most once a minute).
    pub fn should_report(&self, key: Uuid, person: Uuid, which: BudgetExhausted) -> bool {
        let id = match which {
            BudgetExhausted::KeyPerson => (key, Some(person)),
            BudgetExhausted::Person => (person, None),
        };
        self.reported.due(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emb(v: Vec<f32>) -> Embedding {
        Embedding::new(visage_shared::model::EMBEDDER_ID, v).expect("valid")
    }

    #[test]
    fn basis_and_sparse_probes_are_refused_dense_ones_pass() {
        for i in [0, 17, 191] {
            let mut v = vec![0.0; 192];
            v[i] = 1.0;
            assert!(check_plausible(&emb(v)).is_err(), "basis vector {i}");
        }
        // Ten equal coordinates: no one dominates, but the energy sits on ten.
        let mut v = vec![0.0; 192];
        for x in v.iter_mut().take(10) {
            *x = 1.0;
        }
        assert!(check_plausible(&emb(v)).is_err());
        // A basis vector hidden in small dense noise is still refused.
        let mut v: Vec<f32> = (0..192)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.002)
            .collect();
        v[3] = 1.0;
        assert!(check_plausible(&emb(v)).is_err());
        // A dense vector passes.
        let v: Vec<f32> = (0..192)
            .map(|i| ((i * 7919 % 101) as f32 / 50.0) - 1.0)
            .collect();
        assert!(check_plausible(&emb(v)).is_ok());
    }

    #[test]
    fn decisions_raise_the_threshold_cap_top_k_and_hide_non_matches() {
        let floor = Thresholds {
            clean: 0.67,
            small: 0.6,
        };
        let d = Disclosure::Decisions { floor };
        let at = |t| {
            d.thresholds(Some(OperatingPoint::Threshold(t)))
                .expect("valid")
        };
        assert_eq!(at(-1.0), floor);
        assert_eq!(at(0.9), Thresholds::uniform(0.9));
        assert_eq!(
            at(0.65),
            Thresholds {
                clean: 0.67,
                small: 0.65
            }
        );
        assert!(
            d.thresholds(Some(OperatingPoint::FalseMatchRate(1e-9)))
                .is_err()
        );
        assert_eq!(d.top_k(Some(50)).expect("valid"), MAX_TOP_K_DECISIONS);
        assert!(d.top_k(Some(0)).is_err());
        assert_eq!(d.similarity(0.5, false), None);
        assert_eq!(d.similarity(0.8375, true), Some(0.83));
        assert!(!d.shows_non_matches());
        let f = Disclosure::Full;
        assert_eq!(
            f.thresholds(Some(OperatingPoint::Threshold(-1.0)))
                .expect("valid"),
            Thresholds::uniform(-1.0)
        );
        assert_eq!(f.similarity(0.8375, false), Some(0.8375));
        assert_eq!(f.top_k(Some(50)).expect("valid"), 50);
    }

    #[test]
    fn coarsening_never_rounds_up() {
        for s in [0.67f32, 0.6799, 0.7, 0.99999, 1.0, 0.123456] {
            let c = coarsen(s);
            assert!(c <= s + 1e-6, "{s} -> {c}");
            assert!(s - c < SIMILARITY_STEP + 1e-6, "{s} -> {c}");
        }
    }

    #[test]
    fn budgets_run_out_per_key_and_person() {
        let b = QueryBudgets::new(BudgetSettings {
            per_key_person_hour: 3,
            per_person_hour: 5,
        });
        let (k1, k2, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..3 {
            assert!(b.take(k1, p).is_ok());
        }
        assert_eq!(b.take(k1, p), Err(BudgetExhausted::KeyPerson));
        assert!(b.take(k2, p).is_ok());
        assert!(b.take(k2, p).is_ok());
        assert_eq!(b.take(k2, p), Err(BudgetExhausted::Person));
        assert!(b.should_report(k2, p, BudgetExhausted::Person));
        assert!(!b.should_report(k1, p, BudgetExhausted::Person));
    }
}
