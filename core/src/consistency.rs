//! Physical consistency check, Stratum 0 and the σ grading of a neighbour's
//! reading against one's own (ES-4.1).
//!
//! Follows the spec's algorithm with these fixes (see
//! `docs/spec-deviations.md`):
//! - SPEC-NOTES 4: the *received* reading is innate-checked too, so a
//!   neighbour's physically impossible value is rejected outright.
//! - SPEC-NOTES 5 / 16: bounds come from [`crate::bounds`] in per-quantity
//!   wire units with disabled checks as `None`, and all arithmetic is `i32`
//!   (the spec's `i16` overflows for CO₂ and saturates TV5's `max_diff`).
//! - SPEC-NOTES 2: `epsilon_*` are truncated toward zero as the algorithm's
//!   `as` cast says (TV4's 41.5 gives 41, not the prose's 42).

use crate::bounds::{bounds_for, PhysicalBounds};
use crate::types::{sigma_tenths, QuantityType, Reading, SIGMA_INFLAMMATION, SIGMA_PYREXIA, SIGMA_REJECTION};

/// Whose reading failed the innate (absolute bounds) check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum InnateFailure {
    /// The local sensor reports an impossible value: the sensor is broken.
    Mine,
    /// The neighbour reported an impossible value.
    Theirs,
}

/// Verdict of one consistency check (ES-4.1 `ConsistencyResult`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ConsistencyResult {
    /// Within physics and sensor noise (or less than 1 σ beyond).
    Consistent,
    /// Stratum 0: a reading is physically impossible.
    RejectInnate(InnateFailure),
    /// 1–2 σ beyond the permissible difference.
    Pyrexia(f32),
    /// 2–3 σ beyond.
    Inflammation(f32),
    /// 3 σ or more beyond.
    Rejection(f32),
    /// The quantity has no bounds entry.
    Unknown,
}

impl ConsistencyResult {
    /// σ beyond the permissible difference, for the graded verdicts.
    pub fn sigma(&self) -> Option<f32> {
        match *self {
            ConsistencyResult::Pyrexia(s) | ConsistencyResult::Inflammation(s) | ConsistencyResult::Rejection(s) => {
                Some(s)
            }
            _ => None,
        }
    }
}

/// Inputs of one check; readings are in the quantity's wire unit.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConsistencyInput {
    /// The local node's latest reading of the quantity.
    pub my_reading: Reading,
    /// The neighbour's reading.
    pub their_reading: Reading,
    /// What both measure.
    pub quantity: QuantityType,
    /// Estimated distance between the two sensors.
    pub distance_cm: u32,
    /// Time between the two readings, `|t_theirs − t_mine|`.
    pub time_delta_ms: u32,
}

/// A verdict with the figures that led to it, so an audit can explain it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConsistencyCheck {
    /// The verdict.
    pub result: ConsistencyResult,
    /// Allowed difference from the spatial gradient (`i32::MAX` if disabled).
    pub epsilon_spatial: i32,
    /// Allowed difference from the temporal rate (`i32::MAX` if disabled).
    pub epsilon_temporal: i32,
    /// `σ_i + σ_j`, both sensors assumed of the same type.
    pub sigma_sum: i32,
    /// Largest permissible difference (saturating sum of the three).
    pub max_diff: i32,
    /// `|my − their|`.
    pub actual_diff: i32,
}

/// Truncates `rate × amount` toward zero, as the spec's `as` cast does;
/// a disabled check allows any difference.
fn epsilon(rate: Option<f32>, amount: f32) -> i32 {
    match rate {
        // `as` saturates, so an absurd distance gives i32::MAX, not a wrap.
        Some(r) => (r * amount) as i32,
        None => i32::MAX,
    }
}

/// Runs ES-4.1 against the compiled bounds table.
pub fn check_physical_consistency(input: &ConsistencyInput) -> ConsistencyCheck {
    match bounds_for(input.quantity) {
        Some(b) => check_with_bounds(input, b),
        None => ConsistencyCheck {
            result: ConsistencyResult::Unknown,
            epsilon_spatial: 0,
            epsilon_temporal: 0,
            sigma_sum: 0,
            max_diff: 0,
            actual_diff: (input.my_reading as i32 - input.their_reading as i32).abs(),
        },
    }
}

/// Runs ES-4.1 against explicit bounds (deployment-specific tables, tests).
pub fn check_with_bounds(input: &ConsistencyInput, b: &PhysicalBounds) -> ConsistencyCheck {
    let actual_diff = (input.my_reading as i32 - input.their_reading as i32).abs();
    let epsilon_spatial = epsilon(b.max_spatial_grad, input.distance_cm as f32 / 100.0);
    let epsilon_temporal = epsilon(b.max_temporal_rate, input.time_delta_ms as f32 / 1000.0);
    let sigma = b.typical_sigma.unwrap_or(0) as i32;
    let sigma_sum = 2 * sigma;
    let max_diff = epsilon_spatial.saturating_add(epsilon_temporal).saturating_add(sigma_sum);
    let mut check = ConsistencyCheck {
        result: ConsistencyResult::Consistent,
        epsilon_spatial,
        epsilon_temporal,
        sigma_sum,
        max_diff,
        actual_diff,
    };

    if !b.admits(input.my_reading) {
        check.result = ConsistencyResult::RejectInnate(InnateFailure::Mine);
        return check;
    }
    if !b.admits(input.their_reading) {
        check.result = ConsistencyResult::RejectInnate(InnateFailure::Theirs);
        return check;
    }
    if actual_diff <= max_diff {
        return check;
    }
    // Without a known σ, grade in wire steps (σ = 1) rather than divide by 0.
    let deviation = (actual_diff - max_diff) as f32 / sigma.max(1) as f32;
    check.result = if deviation < sigma_tenths(SIGMA_PYREXIA) {
        ConsistencyResult::Consistent
    } else if deviation < sigma_tenths(SIGMA_INFLAMMATION) {
        ConsistencyResult::Pyrexia(deviation)
    } else if deviation < sigma_tenths(SIGMA_REJECTION) {
        ConsistencyResult::Inflammation(deviation)
    } else {
        ConsistencyResult::Rejection(deviation)
    };
    check
}

/// Stratum 0 on a single reading: `None` when the quantity has no bounds.
pub fn check_absolute_bounds(reading: Reading, quantity: QuantityType) -> Option<bool> {
    bounds_for(quantity).map(|b| b.admits(reading))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn temp(my: i16, their: i16, distance_cm: u32, time_delta_ms: u32) -> ConsistencyCheck {
        check_physical_consistency(&ConsistencyInput {
            my_reading: my,
            their_reading: their,
            quantity: QuantityType::Temperature,
            distance_cm,
            time_delta_ms,
        })
    }

    #[test]
    fn spec_vectors_tv1_to_tv4() {
        let tv1 = temp(2310, 2340, 200, 5000);
        assert_eq!((tv1.max_diff, tv1.actual_diff, tv1.result), (1515, 30, ConsistencyResult::Consistent));
        let tv2 = temp(2310, 8500, 100, 2000);
        assert_eq!(tv2.max_diff, 766);
        match tv2.result {
            ConsistencyResult::Rejection(s) => assert!((s - 108.48).abs() < 1e-3),
            other => panic!("TV2 gave {other:?}"),
        }
        assert_eq!(temp(2310, 2480, 50, 1000).max_diff, 433);
        let tv4 = temp(2310, 2620, 30, 500);
        assert_eq!((tv4.epsilon_temporal, tv4.max_diff), (41, 291), "SPEC-NOTES 2: truncation gives 41");
        assert_eq!(tv4.result, ConsistencyResult::Consistent);
    }

    #[test]
    fn tv5_restated_in_ppm_keeps_its_rejection() {
        let c = check_physical_consistency(&ConsistencyInput {
            my_reading: 420,
            their_reading: 890,
            quantity: QuantityType::Co2,
            distance_cm: 300,
            time_delta_ms: 10_000,
        });
        assert_eq!((c.epsilon_spatial, c.epsilon_temporal, c.sigma_sum, c.max_diff), (300, 8, 60, 368));
        assert_eq!(c.result, ConsistencyResult::Rejection(3.4));
    }

    #[test]
    fn impossible_neighbour_reading_is_innate_rejected() {
        let c = temp(2310, -30000, 100, 1000);
        assert_eq!(c.result, ConsistencyResult::RejectInnate(InnateFailure::Theirs));
        assert_eq!(temp(-30000, 2310, 100, 1000).result, ConsistencyResult::RejectInnate(InnateFailure::Mine));
    }

    #[test]
    fn vertical_pressure_gradient_is_not_an_anomaly() {
        // 6 m of height is ≈ 0.72 hPa of hydrostatic difference (SPEC-NOTES 36).
        let c = check_physical_consistency(&ConsistencyInput {
            my_reading: 10132,
            their_reading: 10125,
            quantity: QuantityType::Pressure,
            distance_cm: 600,
            time_delta_ms: 5000,
        });
        assert_eq!(c.result, ConsistencyResult::Consistent);
    }

    proptest! {
        #[test]
        fn never_panics_and_is_symmetric(my: i16, their: i16, d: u32, t: u32, q: u8) {
            let q = QuantityType::from_u8(q);
            let a = check_physical_consistency(&ConsistencyInput { my_reading: my, their_reading: their, quantity: q, distance_cm: d, time_delta_ms: t });
            let b = check_physical_consistency(&ConsistencyInput { my_reading: their, their_reading: my, quantity: q, distance_cm: d, time_delta_ms: t });
            prop_assert_eq!(a.max_diff, b.max_diff);
            prop_assert_eq!(a.actual_diff, b.actual_diff);
            prop_assert!(a.actual_diff >= 0);
            if let Some(s) = a.result.sigma() { prop_assert!(s >= 1.0); }
        }

        #[test]
        fn more_distance_or_time_never_makes_a_verdict_worse(my in -5000i16..12000, their in -5000i16..12000, d in 0u32..100_000, t in 0u32..1_000_000) {
            let base = temp(my, their, d, t);
            let wider = temp(my, their, d.saturating_mul(2), t.saturating_mul(2));
            let s = |c: &ConsistencyCheck| c.result.sigma().unwrap_or(0.0);
            prop_assert!(s(&wider) <= s(&base));
        }
    }
}
