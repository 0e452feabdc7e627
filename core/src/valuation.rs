//! Entropic data valuation (ES-4.4, interface level; runs on Full nodes).
//!
//! `estimate_entropy` is the spec's histogram entropy without a `HashMap`:
//! bin indices go into a bounded stack array, are sorted, and runs are
//! counted. Three choices the spec leaves open (`docs/spec-deviations.md`):
//!
//! - Bins are `floor(reading / width)`, not the spec's truncating `/`,
//!   which makes bin 0 twice as wide as the others (−w < r < w).
//! - Only readings of the valued reading's quantity count: a histogram
//!   mixing °C and %RH means nothing.
//! - The information gain follows the spec, `max(H_prior − H_posterior, 0)`.
//!   That measures corroboration: a reading that lands in a well-filled bin
//!   sharpens the local distribution and earns a gain; one in a new or
//!   sparse bin raises the entropy and earns 0, as does the first reading
//!   of a quantity. We keep it because a reward for raising entropy (novelty)
//!   would pay outliers, i.e. attackers.

use crate::bounds::bounds_for;
use crate::types::{unit_fraction, QuantityType, Reading, Weight};
use crate::wire::TraceDeposit;

/// Most readings one valuation looks at by default.
pub const MAX_VALUATION_READINGS: usize = 256;

/// Bin width when the quantity has no typical σ (ES-4.4 `unwrap_or(100)`).
pub const DEFAULT_BIN_WIDTH: i32 = 100;

/// Why a valuation could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ValuationError {
    /// More readings than the stack buffer holds; the caller should pass
    /// the most recent ones only.
    TooManyReadings {
        /// Buffer capacity.
        max: usize,
        /// Readings that would have gone in.
        got: usize,
    },
}

/// Histogram bin width for `quantity`: its typical σ (ES-1.4), else 100.
pub fn bin_width(quantity: QuantityType) -> i32 {
    bounds_for(quantity).and_then(|b| b.typical_sigma).map(i32::from).filter(|w| *w > 0).unwrap_or(DEFAULT_BIN_WIDTH)
}

fn bin_of(r: Reading, width: i32) -> i32 {
    (r as i32).div_euclid(width)
}

/// Shannon entropy (bits) of the bins, which it sorts in place.
fn entropy_of_bins(bins: &mut [i32]) -> f32 {
    if bins.is_empty() {
        return 0.0;
    }
    bins.sort_unstable();
    let n = bins.len() as f32;
    let mut h = 0.0f32;
    for run in bins.chunk_by(|a, b| a == b) {
        let p = run.len() as f32 / n;
        h -= p * libm::log2f(p);
    }
    h.max(0.0)
}

/// [`estimate_entropy`] with a buffer of `N` readings.
pub fn estimate_entropy_in<const N: usize>(
    readings: &[Reading],
    quantity: QuantityType,
) -> Result<f32, ValuationError> {
    let mut bins = [0i32; N];
    let slot = bins.get_mut(..readings.len()).ok_or(ValuationError::TooManyReadings { max: N, got: readings.len() })?;
    let w = bin_width(quantity);
    for (b, r) in slot.iter_mut().zip(readings) {
        *b = bin_of(*r, w);
    }
    Ok(entropy_of_bins(slot))
}

/// Histogram entropy in bits of readings of one quantity (ES-4.4), bin
/// width = the quantity's typical σ; 0 for no readings.
pub fn estimate_entropy(readings: &[Reading], quantity: QuantityType) -> Result<f32, ValuationError> {
    estimate_entropy_in::<MAX_VALUATION_READINGS>(readings, quantity)
}

/// [`compute_data_value`] with a buffer of `N` readings (the new one included).
pub fn compute_data_value_in<const N: usize>(
    reading: &TraceDeposit,
    local_readings: &[TraceDeposit],
    health: Weight,
) -> Result<f32, ValuationError> {
    let q = reading.quantity;
    let w = bin_width(q);
    let mut bins = [0i32; N];
    let mut n = 0usize;
    for r in local_readings.iter().filter(|r| r.quantity == q) {
        let b = bins.get_mut(n).ok_or(ValuationError::TooManyReadings { max: N, got: n + 1 })?;
        *b = bin_of(r.reading, w);
        n += 1;
    }
    let got = n + 1;
    let prior = entropy_of_bins(bins.get_mut(..n).ok_or(ValuationError::TooManyReadings { max: N, got })?);
    let all = bins.get_mut(..got).ok_or(ValuationError::TooManyReadings { max: N, got })?;
    if let Some(last) = all.last_mut() {
        *last = bin_of(reading.reading, w);
    }
    let posterior = entropy_of_bins(all);
    Ok((prior - posterior).max(0.0) * unit_fraction(health))
}

/// ES-4.4 value of `reading` given recent neighbour readings: the entropy
/// reduction it causes, times the sender's health (weight ÷ 255).
pub fn compute_data_value(
    reading: &TraceDeposit,
    local_readings: &[TraceDeposit],
    health: Weight,
) -> Result<f32, ValuationError> {
    compute_data_value_in::<MAX_VALUATION_READINGS>(reading, local_readings, health)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::HashPrefix4;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::vec::Vec;

    fn naive_entropy(readings: &[Reading], q: QuantityType) -> f32 {
        if readings.is_empty() {
            return 0.0;
        }
        let w = bin_width(q);
        let mut bins: HashMap<i32, u32> = HashMap::new();
        for r in readings {
            *bins.entry((*r as i32).div_euclid(w)).or_insert(0) += 1;
        }
        let n = readings.len() as f64;
        -bins.values().map(|c| *c as f64 / n).map(|p| p * p.log2()).sum::<f64>() as f32
    }

    fn trace(q: QuantityType, r: Reading) -> TraceDeposit {
        TraceDeposit {
            timestamp: 0,
            quantity: q,
            reading: r,
            confidence: 255,
            weight: 204,
            seq: 0,
            prev_hash: HashPrefix4([0; 4]),
            vouch: None,
        }
    }

    #[test]
    fn known_entropies() {
        let t = QuantityType::Temperature;
        assert_eq!(estimate_entropy(&[], t), Ok(0.0));
        assert_eq!(estimate_entropy(&[2310; 10], t), Ok(0.0));
        assert_eq!(estimate_entropy(&[0, 50, 100, 150], t), Ok(2.0));
        let h = estimate_entropy(&[2310, 2320, 2330, 2400], t).unwrap();
        assert!((h - 0.811_278).abs() < 1e-5);
        // Floor bins: −10 and +10 are different bins (the spec's `/` merges them).
        assert_eq!(estimate_entropy(&[-10, 10], t), Ok(1.0));
        // No σ for light: width 100.
        assert_eq!(estimate_entropy(&[0, 99], QuantityType::Light), Ok(0.0));
        assert_eq!(estimate_entropy_in::<2>(&[1, 2, 3], t), Err(ValuationError::TooManyReadings { max: 2, got: 3 }));
    }

    #[test]
    fn gain_rewards_corroboration_and_is_zero_for_novelty() {
        let t = QuantityType::Temperature;
        let local: Vec<_> = [2310, 2310, 2310, 2400].iter().map(|r| trace(t, *r)).collect();
        let v = compute_data_value(&trace(t, 2315), &local, 255).unwrap();
        assert!((v - (0.811_278 - 0.721_928)).abs() < 1e-5, "{v}");
        let half = compute_data_value(&trace(t, 2315), &local, 51).unwrap();
        assert!((half - v * 0.2).abs() < 1e-6);
        assert_eq!(compute_data_value(&trace(t, 2600), &local, 255), Ok(0.0));
        assert_eq!(compute_data_value(&trace(t, 2310), &[], 255), Ok(0.0));
        // Other quantities are ignored.
        let mut mixed = local.clone();
        mixed.push(trace(QuantityType::Humidity, 5000));
        assert_eq!(compute_data_value(&trace(t, 2315), &mixed, 255), Ok(v));
        let many: Vec<_> = (0..256).map(|_| trace(t, 0)).collect();
        assert_eq!(
            compute_data_value(&trace(t, 0), &many, 255),
            Err(ValuationError::TooManyReadings { max: 256, got: 257 })
        );
    }

    proptest! {
        #[test]
        fn entropy_matches_naive_histogram(rs in proptest::collection::vec(any::<i16>(), 0..256), q in 0u8..8) {
            let q = QuantityType::from_u8(q);
            let got = estimate_entropy(&rs, q).unwrap();
            let want = naive_entropy(&rs, q);
            prop_assert!((got - want).abs() < 1e-4, "{} vs {}", got, want);
            prop_assert!((0.0..=8.0 + 1e-4).contains(&got));
        }

        #[test]
        fn value_is_finite_and_non_negative(rs in proptest::collection::vec(any::<i16>(), 0..64), r in any::<i16>(), h in any::<u8>()) {
            let local: Vec<_> = rs.iter().map(|x| trace(QuantityType::Temperature, *x)).collect();
            let v = compute_data_value(&trace(QuantityType::Temperature, r), &local, h).unwrap();
            prop_assert!(v.is_finite() && v >= 0.0);
        }
    }
}
