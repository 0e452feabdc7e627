//! Deviation of one reading from a profile (ES-4.2 `compute_deviation`,
//! `compute_neighbor_expectation`) and its σ verdict.
//!
//! The arithmetic is the spec's: weights 0.4 / 0.2 / 0.3 over the dimensions
//! present, normalised by their total; `z_value` divides by `sqrt(var)`,
//! `z_corr` by `sqrt(var) + 0.01` (SPEC-NOTES 3: TV6–8's prose divides by σ;
//! TV7 is therefore 3.835σ here, not 3.87σ, with the same verdict). Inputs
//! the spec takes from globals are explicit (SPEC-NOTES 26): the previous
//! observation and the neighbours' latest readings.

use super::{BehavioralProfile, Observation, ProfileError, SubjectKind, MAX_INTERVAL_MS};
use crate::types::{sigma_tenths, QuantityType, Reading, SIGMA_INFLAMMATION, SIGMA_PYREXIA, SIGMA_REJECTION};

/// Weight of the value dimension.
pub const WEIGHT_VALUE: f32 = 0.4;
/// Weight of the timing dimension.
pub const WEIGHT_TIMING: f32 = 0.2;
/// Weight of the neighbour-correlation dimension.
pub const WEIGHT_CORRELATION: f32 = 0.3;
/// Neighbours with `|corr|` below this are ignored (ES-4.2).
pub const MIN_CORRELATION: f32 = 0.1;
/// The neighbours' `Σ|corr|` must exceed this for an expectation (ES-4.2).
pub const MIN_NEIGHBOR_WEIGHT: f32 = 0.5;
/// Each z-score is capped here, so a degenerate variance (say 1e-40) gives a
/// huge finite deviation instead of infinity; anything ≥ 3σ rejects anyway.
/// A NaN z-score (a corrupted profile) counts as the cap: fail closed.
pub const Z_CAP: f32 = 1.0e6;

/// Verdict bands of a deviation (ES-3.1 with SPEC-NOTES 23 units).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DeviationVerdict {
    /// Below `SIGMA_PYREXIA`.
    Normal,
    /// At least `SIGMA_PYREXIA`, below `SIGMA_INFLAMMATION`.
    Pyrexia,
    /// At least `SIGMA_INFLAMMATION`, below `SIGMA_REJECTION`.
    Inflammation,
    /// At least `SIGMA_REJECTION` (or NaN).
    Rejection,
}

/// A threshold in tenths raised by 20 % for Dust subjects (ES-16.2).
fn band_tenths(t: u8, kind: SubjectKind) -> f32 {
    match kind {
        SubjectKind::Nano => sigma_tenths(t),
        SubjectKind::Dust => (t as f32 * 12.0) / 100.0,
    }
}

impl DeviationVerdict {
    /// Classifies `sigma` with `>=` bands; Dust thresholds are 1.2σ / 2.4σ / 3.6σ.
    pub fn classify(sigma: f32, kind: SubjectKind) -> Self {
        if sigma.is_nan() || sigma >= band_tenths(SIGMA_REJECTION, kind) {
            DeviationVerdict::Rejection
        } else if sigma >= band_tenths(SIGMA_INFLAMMATION, kind) {
            DeviationVerdict::Inflammation
        } else if sigma >= band_tenths(SIGMA_PYREXIA, kind) {
            DeviationVerdict::Pyrexia
        } else {
            DeviationVerdict::Normal
        }
    }
}

/// A deviation score with the figures behind it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Deviation {
    /// Weighted mean of the z-scores present, in σ; finite and ≥ 0.
    pub total: f32,
    /// Value z-score (0 while the profile has no variance).
    pub z_value: f32,
    /// Gap to the previous observation, if there is a usable one.
    pub interval_ms: Option<u64>,
    /// Timing z-score, present with `interval_ms`.
    pub z_timing: Option<f32>,
    /// What the correlated neighbours predict, physical units.
    pub expected: Option<f32>,
    /// Correlation z-score, present with `expected`.
    pub z_corr: Option<f32>,
}

impl Deviation {
    /// The verdict band of `total`.
    pub fn verdict(&self, kind: SubjectKind) -> DeviationVerdict {
        DeviationVerdict::classify(self.total, kind)
    }
}

/// Smallest value σ a deviation is measured with, in reading steps (0.1 °C,
/// 1 hPa, 10 ppm CO₂).
pub const MIN_SIGMA_STEPS: f32 = 10.0;

/// A z-score made safe: NaN and anything above [`Z_CAP`] become the cap.
fn capped(z: f32) -> f32 {
    if (0.0..Z_CAP).contains(&z) {
        z
    } else if z < 0.0 {
        0.0
    } else {
        Z_CAP
    }
}

/// The gap between `new` and the subject's previous observation `prev`, in
/// local receive milliseconds (SPEC-NOTES 12, 26). `None` when there is no
/// previous observation, it measures another quantity, or it is the current
/// trace itself (ES-10.3 appends to the DAG before it looks).
pub fn interval_between(new: &Observation, prev: Option<&Observation>) -> Option<u64> {
    let prev = prev?;
    if prev == new || prev.quantity != new.quantity {
        return None;
    }
    Some(new.rx_ms.abs_diff(prev.rx_ms))
}

/// What correlated neighbours predict for the subject (ES-4.2):
/// `Σ corr_i·y_i / Σ|corr_i|` over slots with `|corr_i| ≥ 0.1` and a reading,
/// if `Σ|corr_i| > 0.5`. `correlations[i]` and `latest[i]` belong to the same
/// neighbour slot; `latest[i]` is `None` for a dead neighbour or one without a
/// fresh reading of `quantity`. Non-finite correlations are skipped.
pub fn compute_neighbor_expectation(
    quantity: QuantityType,
    correlations: &[f32],
    latest: &[Option<Reading>],
) -> Option<f32> {
    let mut weighted_sum = 0.0_f32;
    let mut weight_sum = 0.0_f32;
    for (&corr, theirs) in correlations.iter().zip(latest) {
        if !corr.is_finite() || libm::fabsf(corr) < MIN_CORRELATION {
            continue;
        }
        if let Some(r) = theirs {
            weighted_sum += corr * quantity.to_value(*r);
            weight_sum += libm::fabsf(corr);
        }
    }
    if weight_sum > MIN_NEIGHBOR_WEIGHT {
        Some(weighted_sum / weight_sum)
    } else {
        None
    }
}

/// How far `new` lies from `profile` (ES-4.2), in σ.
///
/// `prev` is the subject's previous observation (see [`interval_between`]);
/// `neighbor_latest` is indexed like `profile.correlation_scores`. Fails only
/// when `new` measures another quantity than the profile.
pub fn compute_deviation<const N: usize>(
    profile: &BehavioralProfile<N>,
    new: &Observation,
    prev: Option<&Observation>,
    neighbor_latest: &[Option<Reading>],
) -> Result<Deviation, ProfileError> {
    if new.quantity != profile.quantity {
        return Err(ProfileError::QuantityMismatch);
    }
    let x = profile.quantity.to_value(new.reading);
    // A spread below the sensor's resolution class would turn a 0.01 °C
    // wobble into thousands of σ (docs/spec-deviations.md, "σ floor").
    let sigma = libm::sqrtf(profile.value_var).max(MIN_SIGMA_STEPS * profile.quantity.scale().unit_per_step);

    let mut total = 0.0_f32;
    let mut weight = 0.0_f32;

    let z_value = if profile.value_var > 0.0 { capped(libm::fabsf(x - profile.value_mean) / sigma) } else { 0.0 };
    total += WEIGHT_VALUE * z_value;
    weight += WEIGHT_VALUE;

    let interval_ms = interval_between(new, prev);
    let z_timing = interval_ms.map(|gap| {
        let gap = gap.min(MAX_INTERVAL_MS) as f32;
        if profile.interval_var_ms > 0.0 {
            // A gap of k periods is k − 1 lost frames, not a timing anomaly:
            // measure from the nearest whole number of periods (≥ 1).
            let avg = profile.avg_interval_ms;
            let periods = if avg > 0.0 { libm::roundf(gap / avg).max(1.0) } else { 1.0 };
            let sigma = libm::sqrtf(profile.interval_var_ms).max(super::audit::TIMING_SIGMA_FLOOR * avg);
            capped(libm::fabsf(gap - periods * avg) / sigma)
        } else {
            0.0
        }
    });
    if let Some(z) = z_timing {
        total += WEIGHT_TIMING * z;
        weight += WEIGHT_TIMING;
    }

    let expected = compute_neighbor_expectation(profile.quantity, &profile.correlation_scores, neighbor_latest);
    let z_corr = expected.map(|e| capped(libm::fabsf(x - e) / (sigma + 0.01)));
    if let Some(z) = z_corr {
        total += WEIGHT_CORRELATION * z;
        weight += WEIGHT_CORRELATION;
    }

    Ok(Deviation { total: total / weight, z_value, interval_ms, z_timing, expected, z_corr })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileMode;
    use crate::types::DeviceId;
    use proptest::prelude::*;

    const T: QuantityType = QuantityType::Temperature;

    fn tv_profile() -> BehavioralProfile {
        let mut p = BehavioralProfile::new(DeviceId([7; 8]), T, ProfileMode::Running);
        p.value_mean = 23.10;
        p.value_var = 0.25;
        p.avg_interval_ms = 5000.0;
        p.interval_var_ms = 250_000.0;
        p.correlation_scores[0] = 0.92;
        p
    }

    fn obs(reading: Reading, rx_ms: u64) -> Observation {
        Observation { reading, quantity: T, timestamp: 1_707_800_000, rx_ms }
    }

    fn tv(reading: Reading, interval: u64, neighbour: Reading) -> Deviation {
        let prev = obs(2300, 1_000_000);
        let new = obs(reading, 1_000_000 + interval);
        compute_deviation(&tv_profile(), &new, Some(&prev), &[Some(neighbour)]).unwrap()
    }

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn tv6_normal_device() {
        let d = tv(2340, 4800, 2330);
        assert!(close(d.z_value, 0.60, 1e-4));
        assert!(close(d.z_timing.unwrap(), 0.40, 1e-6));
        assert!(close(d.expected.unwrap(), 23.30, 1e-4));
        // SPEC-NOTES 3: 0.10 / 0.51 = 0.196, not 0.20.
        assert!(close(d.z_corr.unwrap(), 0.196_08, 1e-4));
        assert!(close(d.total, 0.420_9, 1e-3) && close(d.total, 0.42, 0.01));
        assert_eq!(d.verdict(SubjectKind::Nano), DeviationVerdict::Normal);
    }

    #[test]
    fn tv7_value_manipulation_is_rejected() {
        let d = tv(2560, 5100, 2320);
        assert!(close(d.z_value, 5.0, 1e-3));
        assert!(close(d.z_timing.unwrap(), 0.2, 1e-6));
        assert!(close(d.z_corr.unwrap(), 4.705_9, 1e-3));
        assert!(close(d.total, 3.835_3, 1e-3) && close(d.total, 3.87, 0.04));
        assert_eq!(d.verdict(SubjectKind::Nano), DeviationVerdict::Rejection);
    }

    #[test]
    fn tv8_environmental_change_is_inflammation() {
        let d = tv(2560, 5100, 2540);
        assert!(close(d.z_corr.unwrap(), 0.392_2, 1e-3));
        assert!(close(d.total, 2.397_4, 1e-3) && close(d.total, 2.40, 0.01));
        assert_eq!(d.verdict(SubjectKind::Nano), DeviationVerdict::Inflammation);
    }

    #[test]
    fn the_current_trace_is_not_its_own_predecessor() {
        // SPEC-NOTES 26: with the trace itself as "previous", the interval is
        // 0 and TV6 would score 2.56σ; it must be ignored instead.
        let p = tv_profile();
        let new = obs(2340, 1_004_800);
        let d = compute_deviation(&p, &new, Some(&new), &[Some(2330)]).unwrap();
        assert_eq!(d.interval_ms, None);
        assert!(close(d.total, (0.4 * 0.6 + 0.3 * 0.196_08) / 0.7, 1e-3));
    }

    #[test]
    fn a_previous_reading_of_another_quantity_is_ignored() {
        let p = tv_profile();
        let prev = Observation { quantity: QuantityType::Humidity, ..obs(4000, 1_000_000) };
        let d = compute_deviation(&p, &obs(2340, 1_004_800), Some(&prev), &[]).unwrap();
        assert_eq!(d.interval_ms, None);
        assert!(close(d.total, 0.6, 1e-3));
    }

    #[test]
    fn interval_is_the_gap_either_way() {
        let a = obs(1, 10_000);
        let b = obs(2, 14_800);
        assert_eq!(interval_between(&b, Some(&a)), Some(4800));
        assert_eq!(interval_between(&a, Some(&b)), Some(4800));
        assert_eq!(interval_between(&a, None), None);
    }

    #[test]
    fn a_reading_of_another_quantity_is_refused() {
        let p = tv_profile();
        let new = Observation { quantity: QuantityType::Co2, ..obs(400, 1) };
        assert_eq!(compute_deviation(&p, &new, None, &[]), Err(ProfileError::QuantityMismatch));
    }

    #[test]
    fn weakly_correlated_or_too_few_neighbours_give_no_expectation() {
        assert_eq!(compute_neighbor_expectation(T, &[0.09, 0.3], &[Some(2000), Some(2100)]), None);
        assert_eq!(compute_neighbor_expectation(T, &[0.5], &[Some(2000)]), None);
        assert_eq!(compute_neighbor_expectation(T, &[0.92, 0.9], &[None, Some(2000)]), Some(20.0));
        let e = compute_neighbor_expectation(T, &[0.4, 0.4], &[Some(2000), Some(2200)]).unwrap();
        assert!(close(e, 21.0, 1e-4));
        assert_eq!(compute_neighbor_expectation(T, &[f32::NAN, 0.9], &[Some(0), Some(2000)]), Some(20.0));
    }

    #[test]
    fn zero_variance_scores_only_what_it_can() {
        let mut p = tv_profile();
        p.value_var = 0.0;
        p.interval_var_ms = 0.0;
        let d = compute_deviation(&p, &obs(3000, 5000), Some(&obs(2310, 0)), &[Some(2310)]).unwrap();
        assert_eq!(d.z_value, 0.0);
        assert_eq!(d.z_timing, Some(0.0));
        // z_corr divides by the σ floor (0.1 °C) + 0.01: 6.9 °C / 0.11 ≈ 62.7σ.
        assert!(close(d.z_corr.unwrap(), 6.9 / 0.11, 0.01));
        assert_eq!(d.verdict(SubjectKind::Nano), DeviationVerdict::Rejection);
    }

    #[test]
    fn lost_frames_and_sub_resolution_spreads_do_not_inflate_sigma() {
        let mut p = tv_profile();
        p.value_var = 1e-9;
        p.interval_var_ms = 1.0;
        // Two lost frames: a 15 s gap on a 5 s period is on the period grid.
        let d = compute_deviation(&p, &obs(2312, 15_000), Some(&obs(2310, 0)), &[]).unwrap();
        assert!(d.z_timing.unwrap() < 1e-3, "{d:?}");
        // 0.02 °C off a 23.10 °C mean is 0.2σ of the 0.1 °C floor, not 600σ.
        assert!(close(d.z_value, 0.2, 1e-3), "{d:?}");
        // A real timing anomaly, half a period off the grid, still counts.
        let d = compute_deviation(&p, &obs(2310, 7_500), Some(&obs(2310, 0)), &[]).unwrap();
        assert!(d.z_timing.unwrap() >= 4.9, "{d:?}");
    }

    #[test]
    fn degenerate_variance_is_capped_not_infinite() {
        let mut p = tv_profile();
        p.value_var = 1e-44;
        p.value_mean = -3.0e38;
        let d = compute_deviation(&p, &obs(2310, 1), None, &[]).unwrap();
        assert_eq!(d.z_value, Z_CAP);
        assert!(d.total.is_finite());
        p.value_mean = f32::NAN;
        let d = compute_deviation(&p, &obs(2310, 1), None, &[]).unwrap();
        assert_eq!(d.z_value, Z_CAP, "a NaN profile fails closed");
    }

    #[test]
    fn dust_bands_are_relaxed_by_a_fifth() {
        use DeviationVerdict::*;
        let cases = [
            (0.99, Normal, Normal),
            (1.0, Pyrexia, Normal),
            (1.2, Pyrexia, Pyrexia),
            (2.2, Inflammation, Pyrexia),
            (2.4, Inflammation, Inflammation),
            (3.0, Rejection, Inflammation),
            (3.6, Rejection, Rejection),
            (f32::NAN, Rejection, Rejection),
            (f32::INFINITY, Rejection, Rejection),
        ];
        for (s, nano, dust) in cases {
            assert_eq!(DeviationVerdict::classify(s, SubjectKind::Nano), nano, "{s} nano");
            assert_eq!(DeviationVerdict::classify(s, SubjectKind::Dust), dust, "{s} dust");
        }
    }

    fn finite() -> impl Strategy<Value = f32> {
        prop_oneof![Just(0.0f32), -1e30f32..1e30f32, proptest::num::f32::NORMAL, proptest::num::f32::SUBNORMAL]
    }

    proptest! {
        #[test]
        fn deviation_is_finite_and_non_negative(
            mean in finite(), var in finite(), avg in finite(), ivar in finite(),
            corr in proptest::collection::vec(finite(), 0..40),
            latest in proptest::collection::vec(proptest::option::of(any::<i16>()), 0..40),
            reading in any::<i16>(), prev in proptest::option::of((any::<i16>(), any::<u64>())), rx in any::<u64>(),
        ) {
            let mut p = tv_profile();
            p.value_mean = mean;
            p.value_var = var;
            p.avg_interval_ms = avg;
            p.interval_var_ms = ivar;
            for (s, c) in p.correlation_scores.iter_mut().zip(&corr) {
                *s = *c;
            }
            let prev = prev.map(|(r, t)| obs(r, t));
            let d = compute_deviation(&p, &obs(reading, rx), prev.as_ref(), &latest).unwrap();
            prop_assert!(d.total.is_finite() && d.total >= 0.0, "{d:?}");
        }
    }
}
