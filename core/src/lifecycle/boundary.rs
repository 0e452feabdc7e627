//! Boundary learning for an inconclusive inflammation vote (ES-7.6).
//!
//! Two sensors on either side of an undeclared wall disagree, and nobody
//! can outvote either of them. ES-7.6 says the node drops back to PYREXIA
//! and "over subsequent days, the consistent difference is learned", with
//! confidence above 0.8 after 3–7 days, but gives no rule. Ours:
//!
//! - Each inconclusive vote is one observation of `suspect − mine`.
//! - The offset is an EMA (α = 1/4) of the differences; an observation is
//!   *consistent* when it lies within a tolerance of the EMA (the larger of
//!   the caller's tolerance and a quarter of the offset's magnitude).
//! - Confidence grows linearly with the time the consistent run has lasted:
//!   `min(1, span / 5 days)`. An inconsistent observation restarts the run.
//! - The boundary is accepted at confidence ≥ 0.8 (4 days) with at least
//!   [`BOUNDARY_MIN_OBSERVATIONS`] consistent observations; from then on the
//!   monitor subtracts [`BoundaryProfile::offset`] before comparing readings.

use crate::types::Reading;

/// Confidence at which a boundary is accepted (ES-7.6: "exceeds 0.8").
pub const BOUNDARY_ACCEPT_CONFIDENCE: f32 = 0.8;
/// Consistent span that gives confidence 1.0 (5 days).
pub const BOUNDARY_FULL_CONFIDENCE_MS: u64 = 5 * 86_400_000;
/// Fewest consistent observations before a boundary can be accepted.
pub const BOUNDARY_MIN_OBSERVATIONS: u16 = 3;

/// The learned constant difference between a subject and this node.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BoundaryProfile {
    offset: f32,
    observations: u16,
    run_started_ms: u64,
    last_ms: u64,
}

impl BoundaryProfile {
    /// Records one observed difference `suspect − mine` at `now_ms`;
    /// `tolerance` is in wire steps (e.g. the consistency check's `max_diff`).
    pub fn observe(&mut self, suspect: Reading, mine: Reading, tolerance: i32, now_ms: u64) {
        let diff = suspect as f32 - mine as f32;
        let tol = (tolerance.max(0) as f32).max(libm::fabsf(self.offset) / 4.0);
        if self.observations == 0 || libm::fabsf(diff - self.offset) > tol {
            self.offset = diff;
            self.observations = 1;
            self.run_started_ms = now_ms;
        } else {
            self.offset += (diff - self.offset) / 4.0;
            self.observations = self.observations.saturating_add(1);
        }
        self.last_ms = now_ms;
    }

    /// The learned offset, wire steps.
    pub fn offset(&self) -> f32 {
        self.offset
    }

    /// Consistent observations in the current run.
    pub fn observations(&self) -> u16 {
        self.observations
    }

    /// Confidence in the offset, 0–1.
    pub fn confidence(&self) -> f32 {
        if self.observations < 2 {
            return 0.0;
        }
        let span = self.last_ms.saturating_sub(self.run_started_ms);
        (span as f32 / BOUNDARY_FULL_CONFIDENCE_MS as f32).min(1.0)
    }

    /// True when the boundary is learned well enough to be applied.
    pub fn is_accepted(&self) -> bool {
        self.observations >= BOUNDARY_MIN_OBSERVATIONS && self.confidence() >= BOUNDARY_ACCEPT_CONFIDENCE
    }

    /// The subject's reading with an accepted offset removed, for comparison
    /// with this node's own reading; unchanged while not accepted.
    pub fn corrected(&self, suspect: Reading) -> Reading {
        if !self.is_accepted() {
            return suspect;
        }
        let v = suspect as f32 - libm::roundf(self.offset);
        v.clamp(i16::MIN as f32, i16::MAX as f32) as Reading
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    #[test]
    fn a_steady_difference_is_accepted_after_four_days() {
        let mut b = BoundaryProfile::default();
        for day in 0..=3 {
            b.observe(4800, 2300, 100, day * DAY);
        }
        assert!((b.confidence() - 0.6).abs() < 1e-6);
        assert!(!b.is_accepted());
        b.observe(4790, 2300, 100, 4 * DAY);
        assert!(b.is_accepted(), "confidence {}", b.confidence());
        assert_eq!(b.corrected(4800), 4800 - libm::roundf(b.offset()) as i16);
        assert!((b.offset() - 2497.5).abs() < 1.0);
    }

    #[test]
    fn an_inconsistent_observation_restarts_learning() {
        let mut b = BoundaryProfile::default();
        for day in 0..5 {
            b.observe(4800, 2300, 100, day * DAY);
        }
        assert!(b.is_accepted());
        b.observe(2300, 2300, 100, 5 * DAY);
        assert_eq!((b.observations(), b.confidence(), b.is_accepted()), (1, 0.0, false));
        assert_eq!(b.corrected(4800), 4800);
    }
}
