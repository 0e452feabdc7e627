//! Merging two profiles of the same device (ES-7.4).
//!
//! The spec's arithmetic: the profile with the newer version is primary,
//! mean and variance are the 70/30 mixture (with the `0.21·Δμ²` term), the
//! histogram is a 70/30 weighted sum per bin, and the result carries the
//! primary's version + 1; everything else is the primary's. Pinned choices:
//! - Versions compare wrap-aware ([`version_newer`], SPEC-NOTES 30). The spec
//!   uses `a > b`, so on equal versions `b` is primary; kept.
//! - A bin-wise merge needs one range. When the ranges differ, the merged
//!   range is the primary's grown (by doubling) to cover the secondary's,
//!   and both histograms are re-binned into it first; equal ranges merge
//!   bin by bin exactly as written.

use super::histogram::{grow_to_cover, rebin};
use super::{BehavioralProfile, ProfileError};
use crate::types::MAX_PROFILE_BINS;

/// Weight of the primary profile (ES-7.4); the secondary gets the rest.
pub const MERGE_PRIMARY_WEIGHT: f32 = 0.7;

/// True when version `a` is newer than `b` in serial-number arithmetic
/// (RFC 1982): `a` is ahead by 1 … 2³¹−1 steps, counting across the wrap.
/// Exactly 2³¹ apart is neither newer.
pub fn version_newer(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 0x8000_0000
}

/// ES-7.4 `merge_profiles`. Fails when the profiles describe different
/// devices or quantities.
pub fn merge_profiles<const N: usize>(
    a: &BehavioralProfile<N>,
    b: &BehavioralProfile<N>,
) -> Result<BehavioralProfile<N>, ProfileError> {
    if a.subject_id != b.subject_id {
        return Err(ProfileError::SubjectMismatch);
    }
    if a.quantity != b.quantity {
        return Err(ProfileError::QuantityMismatch);
    }
    let (primary, secondary) = if version_newer(a.profile_version, b.profile_version) { (a, b) } else { (b, a) };
    let wp = MERGE_PRIMARY_WEIGHT;
    let ws = 1.0 - MERGE_PRIMARY_WEIGHT;

    let mut merged = primary.clone();
    merged.value_mean = wp * primary.value_mean + ws * secondary.value_mean;
    let dm = primary.value_mean - secondary.value_mean;
    merged.value_var = wp * primary.value_var + ws * secondary.value_var + wp * ws * dm * dm;

    let p_range = (primary.value_min, primary.value_max);
    let s_range = (secondary.value_min, secondary.value_max);
    let (p_bins, s_bins) = if p_range == s_range {
        (primary.value_hist, secondary.value_hist)
    } else {
        let s_has_counts = secondary.value_hist.iter().any(|&c| c != 0);
        let p_has_counts = primary.value_hist.iter().any(|&c| c != 0);
        let mut range = p_range;
        if s_has_counts || s_range.1 > s_range.0 {
            if !p_has_counts && p_range.1 <= p_range.0 {
                range = s_range;
            } else {
                range = grow_to_cover(range.0, range.1, s_range.0);
                range = grow_to_cover(range.0, range.1, s_range.1);
            }
        }
        merged.value_min = range.0;
        merged.value_max = range.1;
        let into = |bins: &[u16; MAX_PROFILE_BINS], from| if from == range { *bins } else { rebin(bins, from, range) };
        (into(&primary.value_hist, p_range), into(&secondary.value_hist, s_range))
    };
    for i in 0..MAX_PROFILE_BINS {
        // `as u16` saturates; 0.7·p + 0.3·s never exceeds u16::MAX anyway.
        merged.value_hist[i] = (wp * p_bins[i] as f32 + ws * s_bins[i] as f32) as u16;
    }

    merged.profile_version = primary.profile_version.wrapping_add(1);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileMode;
    use crate::types::{DeviceId, QuantityType};
    use proptest::prelude::*;

    fn prof(version: u32, mean: f32, var: f32) -> BehavioralProfile {
        let mut p = BehavioralProfile::new(DeviceId([3; 8]), QuantityType::Temperature, ProfileMode::Running);
        p.profile_version = version;
        p.value_mean = mean;
        p.value_var = var;
        p.value_min = 2000;
        p.value_max = 2500;
        p
    }

    #[test]
    fn newer_version_is_primary_and_mixture_variance_holds() {
        let mut a = prof(10, 23.0, 0.25);
        let mut b = prof(9, 24.0, 0.36);
        a.value_hist[5] = 100;
        b.value_hist[5] = 10;
        b.value_hist[6] = 10;
        a.value_count = 77;
        let m = merge_profiles(&a, &b).unwrap();
        assert!((m.value_mean - 23.3).abs() < 1e-5);
        assert!((m.value_var - (0.7 * 0.25 + 0.3 * 0.36 + 0.21)).abs() < 1e-5);
        assert_eq!(m.value_hist[5], 73);
        assert_eq!(m.value_hist[6], 3);
        assert_eq!(m.profile_version, 11);
        assert_eq!(m.value_count, 77, "the rest is the primary's");
    }

    #[test]
    fn equal_versions_pick_b_as_primary() {
        let a = prof(5, 20.0, 1.0);
        let b = prof(5, 30.0, 1.0);
        let m = merge_profiles(&a, &b).unwrap();
        assert!((m.value_mean - 27.0).abs() < 1e-5);
        assert_eq!(m.profile_version, 6);
    }

    #[test]
    fn versions_compare_across_the_wrap() {
        assert!(version_newer(3, u32::MAX - 2));
        assert!(!version_newer(u32::MAX - 2, 3));
        assert!(version_newer(1, 0));
        assert!(!version_newer(7, 7));
        assert!(!version_newer(0x8000_0000, 0) && !version_newer(0, 0x8000_0000));
        let a = prof(u32::MAX, 20.0, 1.0);
        let b = prof(1, 30.0, 1.0);
        let m = merge_profiles(&a, &b).unwrap();
        assert!((m.value_mean - 27.0).abs() < 1e-5, "version 1 is newer than u32::MAX");
        assert_eq!(m.profile_version, 2);
        let m = merge_profiles(&prof(u32::MAX, 20.0, 1.0), &prof(u32::MAX - 1, 30.0, 1.0)).unwrap();
        assert_eq!(m.profile_version, 0);
    }

    #[test]
    fn different_ranges_are_rebinned_into_one() {
        let mut a = prof(2, 20.5, 0.1);
        a.value_min = 2000;
        a.value_max = 2100;
        a.value_hist[25] = 100; // 2050..2052
        let mut b = prof(1, 21.5, 0.1);
        b.value_min = 2100;
        b.value_max = 2200;
        b.value_hist[25] = 100; // 2150..2152
        let m = merge_profiles(&a, &b).unwrap();
        assert_eq!((m.value_min, m.value_max), (2000, 2200));
        assert_eq!(m.value_hist[m.histogram_bin(2051).unwrap()], 70);
        assert_eq!(m.value_hist[m.histogram_bin(2151).unwrap()], 30);
    }

    #[test]
    fn an_empty_unranged_primary_takes_the_secondary_range() {
        let mut a = prof(2, 0.0, 0.0);
        a.value_min = 0;
        a.value_max = 0;
        let mut b = prof(1, 23.0, 0.25);
        b.value_hist[10] = 50;
        let m = merge_profiles(&a, &b).unwrap();
        assert_eq!((m.value_min, m.value_max), (2000, 2500));
        assert_eq!(m.value_hist[10], 15);
    }

    #[test]
    fn different_subjects_or_quantities_are_refused() {
        let a = prof(1, 0.0, 0.0);
        let mut b = prof(1, 0.0, 0.0);
        b.subject_id = DeviceId([4; 8]);
        assert_eq!(merge_profiles(&a, &b), Err(ProfileError::SubjectMismatch));
        let mut b = prof(1, 0.0, 0.0);
        b.quantity = QuantityType::Humidity;
        assert_eq!(merge_profiles(&a, &b), Err(ProfileError::QuantityMismatch));
    }

    proptest! {
        #[test]
        fn merging_a_profile_with_itself_keeps_mean_and_variance(
            mean in -1e4f32..1e4, var in 0f32..1e6, v in any::<u32>(),
            bins in proptest::array::uniform32(any::<u16>()),
        ) {
            let mut p = prof(v, mean, var);
            p.value_hist[..32].copy_from_slice(&bins);
            let m = merge_profiles(&p, &p).unwrap();
            prop_assert!((m.value_mean - mean).abs() <= 1e-6 * mean.abs().max(1.0), "{} vs {}", m.value_mean, mean);
            prop_assert!((m.value_var - var).abs() <= 1e-6 * var.max(1.0), "{} vs {}", m.value_var, var);
            for (got, want) in m.value_hist.iter().zip(p.value_hist.iter()) {
                prop_assert!((0..=1).contains(&(*want as i32 - *got as i32)), "{} vs {}", got, want);
            }
            prop_assert_eq!(m.profile_version, v.wrapping_add(1));
        }

        #[test]
        fn merge_never_panics(
            a in proptest::array::uniform4(any::<i16>()), f in proptest::array::uniform4(any::<f32>()),
            va in any::<u32>(), vb in any::<u32>(), ba in proptest::array::uniform32(any::<u16>()),
        ) {
            let mut p = prof(va, f[0], f[1]);
            let mut q = prof(vb, f[2], f[3]);
            p.value_min = a[0];
            p.value_max = a[1];
            q.value_min = a[2];
            q.value_max = a[3];
            p.value_hist[..32].copy_from_slice(&ba);
            q.value_hist[18..].copy_from_slice(&ba);
            let m = merge_profiles(&p, &q).unwrap();
            let primary = if version_newer(va, vb) { &p } else { &q };
            prop_assert_eq!(m.profile_version, primary.profile_version.wrapping_add(1));
        }
    }
}
