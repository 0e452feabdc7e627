//! The value histogram of a profile (ES-4.2 component 0) and its range
//! (SPEC-NOTES 42).
//!
//! The spec never sets `value_min`/`value_max`, so a fresh profile has a zero
//! bin width. Here the range is closed, `[value_min, value_max]`, in reading
//! units:
//! - The first reading opens a range of `MAX_PROFILE_BINS` steps (one step
//!   per bin) centred on it.
//! - A reading outside the range doubles the width toward it (anchored at the
//!   opposite edge, shifted to stay inside `i16`) until it fits, and the
//!   counts are re-binned by their bin centres; an aligned doubling merges
//!   exact pairs of bins. At most ten doublings cover every `i16`.
//! - `min == max` with counts (e.g. from a v1 PROFILE_SYNC) is a range of one
//!   value: its counts move to the bin of that value, and no division by the
//!   zero width ever happens.
//! - A bin about to pass `u16::MAX` halves every bin first, so the shape
//!   survives instead of flattening into saturated bins (the spec's
//!   `saturating_add` would make any steady sensor's histogram flat after
//!   ~4 days at one reading per 5 s).

use super::BehavioralProfile;
use crate::types::{Reading, MAX_PROFILE_BINS};

const BINS: i64 = MAX_PROFILE_BINS as i64;

/// Histogram bin of `reading` in the closed range `[min, max]`; `None` when
/// the range is empty or inverted (no bin width).
pub(crate) fn bin_index(min: Reading, max: Reading, reading: Reading) -> Option<usize> {
    let width = max as i64 - min as i64;
    if width <= 0 {
        return None;
    }
    let idx = (reading as i64 - min as i64).saturating_mul(BINS).div_euclid(width);
    Some(idx.clamp(0, BINS - 1) as usize)
}

/// Moves counts from one range into another by the centre of each old bin;
/// the result is scaled down by powers of two until every bin fits a `u16`.
pub(crate) fn rebin(
    bins: &[u16; MAX_PROFILE_BINS],
    (old_min, old_max): (Reading, Reading),
    (new_min, new_max): (Reading, Reading),
) -> [u16; MAX_PROFILE_BINS] {
    let old_w = (old_max as i64 - old_min as i64).max(0);
    let new_w = new_max as i64 - new_min as i64;
    let mut wide = [0u32; MAX_PROFILE_BINS];
    for (i, &c) in bins.iter().enumerate() {
        if c == 0 {
            continue;
        }
        // Centre of old bin i is old_min + (2i+1)·old_w/(2·BINS); its new bin
        // is floor((centre − new_min)·BINS/new_w), computed without rounding.
        let j = if new_w <= 0 {
            0
        } else {
            let num = ((old_min as i64 - new_min as i64) * 2 * BINS + (2 * i as i64 + 1) * old_w) * BINS;
            num.div_euclid(2 * BINS * new_w).clamp(0, BINS - 1) as usize
        };
        if let Some(w) = wide.get_mut(j) {
            *w = w.saturating_add(c as u32);
        }
    }
    let top = wide.iter().copied().max().unwrap_or(0);
    let mut shift = 0;
    while shift < 32 && (top >> shift) > u16::MAX as u32 {
        shift += 1;
    }
    let mut out = [0u16; MAX_PROFILE_BINS];
    for (o, w) in out.iter_mut().zip(wide) {
        *o = (w >> shift) as u16;
    }
    out
}

/// The smallest range grown from `[min, max]` by doublings that holds
/// `reading`; a zero-width range first opens around its own value.
pub(crate) fn grow_to_cover(min: Reading, max: Reading, reading: Reading) -> (Reading, Reading) {
    let (mut lo, mut hi) = (min as i64, max as i64);
    if hi <= lo {
        (lo, hi) = initial_range(if hi < lo { reading } else { min });
    }
    let r = reading as i64;
    // Ten doublings of a 50-step range exceed 65535, so 16 always suffices.
    for _ in 0..16 {
        if (lo..=hi).contains(&r) {
            break;
        }
        let w = ((hi - lo) * 2).min(u16::MAX as i64);
        if r < lo {
            lo = hi - w;
        } else {
            hi = lo + w;
        }
        if lo < i16::MIN as i64 {
            lo = i16::MIN as i64;
            hi = lo + w;
        }
        if hi > i16::MAX as i64 {
            hi = i16::MAX as i64;
            lo = hi - w;
        }
    }
    (lo as Reading, hi as Reading)
}

/// `MAX_PROFILE_BINS` steps centred on `v`, inside `i16`.
fn initial_range(v: Reading) -> (i64, i64) {
    let lo = (v as i64 - BINS / 2).clamp(i16::MIN as i64, i16::MAX as i64 - BINS);
    (lo, lo + BINS)
}

impl<const N: usize> BehavioralProfile<N> {
    /// The histogram bin `reading` falls into now; `None` while the range is unset.
    pub fn histogram_bin(&self, reading: Reading) -> Option<usize> {
        bin_index(self.value_min, self.value_max, reading)
    }

    /// Widens the range (re-binning) until it holds `reading`.
    pub(crate) fn histogram_cover(&mut self, reading: Reading) {
        if self.value_max <= self.value_min && self.value_hist.iter().all(|&b| b == 0) {
            let (lo, hi) = initial_range(reading);
            self.value_min = lo as Reading;
            self.value_max = hi as Reading;
            return;
        }
        let (lo, hi) = grow_to_cover(self.value_min, self.value_max, reading);
        if (lo, hi) != (self.value_min, self.value_max) {
            self.value_hist = rebin(&self.value_hist, (self.value_min, self.value_max), (lo, hi));
            self.value_min = lo;
            self.value_max = hi;
        }
    }

    /// Counts one reading, widening the range and halving on overflow.
    pub(crate) fn histogram_insert(&mut self, reading: Reading) {
        self.histogram_cover(reading);
        let Some(i) = self.histogram_bin(reading) else { return };
        if self.value_hist.get(i) == Some(&u16::MAX) {
            for b in self.value_hist.iter_mut() {
                *b >>= 1;
            }
        }
        if let Some(b) = self.value_hist.get_mut(i) {
            *b = b.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileMode;
    use crate::types::{DeviceId, QuantityType};
    use proptest::prelude::*;

    fn fresh() -> BehavioralProfile {
        BehavioralProfile::new(DeviceId([1; 8]), QuantityType::Temperature, ProfileMode::Running)
    }

    #[test]
    fn zero_width_range_has_no_bin_and_first_reading_opens_one() {
        let mut p = fresh();
        assert_eq!((p.value_min, p.value_max), (0, 0));
        assert_eq!(p.histogram_bin(2310), None);
        p.histogram_insert(2310);
        assert_eq!((p.value_min, p.value_max), (2285, 2335));
        assert_eq!(p.histogram_bin(2310), Some(25));
        assert_eq!(p.value_hist[25], 1);
        assert_eq!(p.value_hist.iter().map(|&b| b as u32).sum::<u32>(), 1);
    }

    #[test]
    fn zero_width_range_with_counts_keeps_them_at_its_value() {
        let mut p = fresh();
        p.value_min = 2300;
        p.value_max = 2300;
        p.value_hist[7] = 40;
        p.histogram_insert(2310);
        assert_eq!((p.value_min, p.value_max), (2275, 2325));
        assert_eq!(p.value_hist[p.histogram_bin(2300).unwrap()], 40);
        assert_eq!(p.value_hist[p.histogram_bin(2310).unwrap()], 1);
    }

    #[test]
    fn doubling_upward_merges_pairs() {
        let mut p = fresh();
        p.value_min = 0;
        p.value_max = 50;
        for (i, b) in p.value_hist.iter_mut().enumerate() {
            *b = i as u16;
        }
        p.histogram_insert(90);
        assert_eq!((p.value_min, p.value_max), (0, 100));
        for j in 0..25 {
            assert_eq!(p.value_hist[j], (4 * j + 1) as u16, "bin {j}");
        }
        assert_eq!(p.value_hist[45], 1);
        assert_eq!(p.value_hist[25..].iter().map(|&b| b as u32).sum::<u32>(), 1);
    }

    #[test]
    fn doubling_downward_shifts_pairs_up() {
        let mut p = fresh();
        p.value_min = 0;
        p.value_max = 50;
        p.value_hist[0] = 3;
        p.value_hist[1] = 4;
        p.value_hist[49] = 5;
        p.histogram_insert(-10);
        assert_eq!((p.value_min, p.value_max), (-50, 50));
        assert_eq!(p.value_hist[25], 7);
        assert_eq!(p.value_hist[49], 5);
        assert_eq!(p.value_hist[20], 1);
    }

    #[test]
    fn range_stays_inside_i16() {
        let mut p = fresh();
        p.histogram_insert(i16::MAX);
        assert_eq!(p.value_max, i16::MAX);
        p.histogram_insert(i16::MIN);
        assert_eq!((p.value_min, p.value_max), (i16::MIN, i16::MAX));
        assert_eq!(p.histogram_bin(i16::MAX), Some(49));
        assert_eq!(p.histogram_bin(i16::MIN), Some(0));
    }

    #[test]
    fn a_full_bin_halves_the_histogram() {
        let mut p = fresh();
        p.value_min = 0;
        p.value_max = 50;
        p.value_hist[10] = u16::MAX;
        p.value_hist[11] = 1001;
        p.histogram_insert(10);
        assert_eq!(p.value_hist[10], 32_768);
        assert_eq!(p.value_hist[11], 500);
    }

    #[test]
    fn rebinning_overflow_scales_down() {
        let mut bins = [0u16; MAX_PROFILE_BINS];
        bins[0] = u16::MAX;
        bins[1] = u16::MAX;
        bins[2] = 4;
        let out = rebin(&bins, (0, 50), (0, 100));
        assert_eq!(out[0], u16::MAX);
        assert_eq!(out[1], 2);
    }

    #[test]
    fn rebinning_into_the_same_range_is_identity_for_any_width() {
        for w in [1i16, 7, 50, 75, 333, 30000] {
            let mut bins = [0u16; MAX_PROFILE_BINS];
            for (i, b) in bins.iter_mut().enumerate() {
                *b = (i * 3 + 1) as u16;
            }
            assert_eq!(rebin(&bins, (-100, -100 + w), (-100, -100 + w)), bins, "width {w}");
        }
    }

    proptest! {
        #[test]
        fn every_reading_lands_in_range_and_counts_are_kept(
            readings in proptest::collection::vec(any::<i16>(), 1..60),
        ) {
            let mut p = fresh();
            for (i, r) in readings.into_iter().enumerate() {
                p.histogram_insert(r);
                let total = i as u32 + 1;
                prop_assert!(p.value_min <= r && r <= p.value_max);
                prop_assert!(p.value_max > p.value_min);
                let sum: u32 = p.value_hist.iter().map(|&b| b as u32).sum();
                prop_assert_eq!(sum, total);
            }
        }

        #[test]
        fn bin_index_never_panics(min in any::<i16>(), max in any::<i16>(), r in any::<i16>()) {
            if let Some(i) = bin_index(min, max, r) {
                prop_assert!(i < MAX_PROFILE_BINS);
            } else {
                prop_assert!(max <= min);
            }
        }
    }
}
