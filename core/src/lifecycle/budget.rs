//! The per-epoch rejection cap (ES-1.2 `REJECTION_RATE_LIMIT`, which the
//! spec defines and never uses — SPEC-NOTES 42).
//!
//! At most 51/255 (20 %) of the monitored cluster may be moved into
//! REJECTION per epoch, so a burst of forged votes or a real event that
//! upsets everyone can't empty the cluster at once. Rounded down, but never
//! below one, so a cluster of fewer than five can still reject someone.

use crate::types::{EPOCH_DURATION, REJECTION_RATE_LIMIT};

/// The most rejections allowed per epoch in a cluster of `cluster_size`.
pub fn rejection_cap(cluster_size: u16) -> u16 {
    if cluster_size == 0 {
        return 0;
    }
    let cap = (cluster_size as u32 * REJECTION_RATE_LIMIT as u32) / 255;
    cap.max(1) as u16
}

/// A rejection that must wait for the next epoch, with the figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RejectionCapped {
    /// Rejections already made this epoch.
    pub used: u16,
    /// The cap for this cluster size.
    pub cap: u16,
    /// The cluster size it was computed from.
    pub cluster_size: u16,
}

/// Rejections made in the current epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RejectionBudget {
    epoch: u64,
    used: u16,
}

impl RejectionBudget {
    /// An unused budget.
    pub const fn new() -> Self {
        RejectionBudget { epoch: 0, used: 0 }
    }

    /// Epoch index of a monotonic time (60 s epochs).
    pub fn epoch_of(now_ms: u64) -> u64 {
        now_ms / (EPOCH_DURATION as u64 * 1000)
    }

    /// Rejections used in the epoch of `now_ms`.
    pub fn used(&self, now_ms: u64) -> u16 {
        if Self::epoch_of(now_ms) == self.epoch {
            self.used
        } else {
            0
        }
    }

    /// Takes one rejection from the budget, or says why not.
    pub fn try_take(&mut self, now_ms: u64, cluster_size: u16) -> Result<(), RejectionCapped> {
        let epoch = Self::epoch_of(now_ms);
        if epoch != self.epoch {
            self.epoch = epoch;
            self.used = 0;
        }
        let cap = rejection_cap(cluster_size);
        if self.used >= cap {
            return Err(RejectionCapped { used: self.used, cap, cluster_size });
        }
        self.used += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn twenty_percent_of_a_cluster_then_wait_for_the_next_epoch() {
        assert_eq!((rejection_cap(0), rejection_cap(4), rejection_cap(5), rejection_cap(10)), (0, 1, 1, 2));
        assert_eq!(rejection_cap(255), 51);
        let mut b = RejectionBudget::new();
        assert!(b.try_take(1000, 10).is_ok());
        assert!(b.try_take(2000, 10).is_ok());
        assert_eq!(b.try_take(59_999, 10), Err(RejectionCapped { used: 2, cap: 2, cluster_size: 10 }));
        assert!(b.try_take(60_000, 10).is_ok(), "a new epoch starts a new budget");
    }

    proptest! {
        #[test]
        fn never_more_than_the_cap_per_epoch(size in 0u16..400, times in proptest::collection::vec(0u64..600_000, 0..200)) {
            let mut times = times;
            times.sort_unstable();
            let mut b = RejectionBudget::new();
            let mut per_epoch = std::collections::HashMap::<u64, u16>::new();
            for t in times {
                if b.try_take(t, size).is_ok() {
                    *per_epoch.entry(RejectionBudget::epoch_of(t)).or_default() += 1;
                }
            }
            for n in per_epoch.values() {
                prop_assert!(*n <= rejection_cap(size));
                prop_assert!(*n as u32 * 255 <= (size as u32 * 51).max(255));
            }
        }
    }
}
