//! Relative drift: a subject's level against our own (ES-4.3 slow drift,
//! extended; `docs/spec-deviations.md`, "Slow drift against the
//! neighbours' level").
//!
//! ES-4.3 audits a subject's running profile against its own frozen
//! baseline. Under a day's swing every profile moves by degrees, so the
//! audit cannot tell one sensor's slow drift from the weather, and the
//! rule that a drift many subjects share is the environment rebases the
//! drifter along with everyone else. What the weather does not move is the
//! *difference* between two nearby devices' readings: both see the same
//! air, so their offset stays at what position and calibration made it.
//! [`RelativeLevel`] learns that offset for one subject (the subject's
//! reading minus ours, taken within [`PAIR_MAX_DELTA_MS`] of each other)
//! and follows it with a short moving average. A subject whose offset
//! moved by [`RELATIVE_FLOOR_STEPS`] (and six learned spreads) has drifted
//! against us — unless several other subjects moved the same way, in which
//! case it is our own sensor or our surroundings that moved.
//!
//! Only a *slow* move is a drift. A zone around one of us can step (an HVAC
//! unit, a door) and move the offset for good within minutes; the
//! inflammation vote judges such a change. So the learned offset follows
//! every move made while the running offset stands more than half the
//! floor away from its one-hour average ([`SUDDEN_FRACTION`]): a step is
//! absorbed but for its first half-floor, while a sensor drifting slower
//! than half the floor per hour (1 °C/h, the steepest a ±4 °C day climbs)
//! never gets that far ahead of its hour and accumulates.

use crate::persist::StoredRelative;
use crate::types::{DeviceId, QuantityType};

/// Offset samples averaged into the learned (frozen) offset.
pub const RELATIVE_BASE_SAMPLES: u16 = 32;

/// Weight of one sample in the running offset: about the last 32 samples
/// (five minutes of a subject heard every ten seconds).
const RUNNING_WEIGHT: f32 = 1.0 / 32.0;

/// Smallest move of the offset, in reading steps, called a drift: 2 °C,
/// 20 hPa, 200 ppm CO₂. Four times the responders' smallest unexplained
/// shift: a gradient between two devices that the day changes (sun on one,
/// shade on the other) stays under it, a sensor drifting 0.5 °C/h passes
/// it within four hours.
pub const RELATIVE_FLOOR_STEPS: f32 = 200.0;

/// A subject's reading and ours pair only if taken this close in time.
pub const PAIR_MAX_DELTA_MS: u32 = 10_000;

/// Time constant of the offset's hour average, ms.
const HOUR_TAU_MS: f32 = 3_600_000.0;

/// A move of the running offset counts as sudden, and the learned offset
/// follows it, while the running offset is this fraction of the floor or
/// more away from its hour average.
pub const SUDDEN_FRACTION: f32 = 0.5;

/// The learned offset of one subject's readings from ours, and where it is
/// now. Physical units of `quantity`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelativeLevel {
    quantity: QuantityType,
    samples: u16,
    base_mean: f32,
    base_m2: f32,
    running: f32,
    hour: f32,
    last_ms: u64,
    /// The epoch of our last vote on this drift, so one drift opens a vote
    /// every [`crate::node::RELATIVE_VOTE_EPOCHS`], not every epoch.
    pub(super) voted_epoch: Option<u32>,
}

impl RelativeLevel {
    /// A tracker that has seen nothing of `quantity` yet.
    pub fn new(quantity: QuantityType) -> Self {
        RelativeLevel {
            quantity,
            samples: 0,
            base_mean: 0.0,
            base_m2: 0.0,
            running: 0.0,
            hour: 0.0,
            last_ms: 0,
            voted_epoch: None,
        }
    }

    /// The quantity tracked.
    pub fn quantity(&self) -> QuantityType {
        self.quantity
    }

    /// What a reboot must keep of it (`persist::StoredRelative`); the vote
    /// pacing is not kept, the epoch count restarts at boot.
    pub fn stored(&self, device: DeviceId) -> StoredRelative {
        StoredRelative {
            device,
            quantity: self.quantity,
            samples: self.samples,
            base_mean: self.base_mean,
            base_m2: self.base_m2,
            running: self.running,
            hour: self.hour,
        }
    }

    /// The tracker a reboot brings back, its hour average aged from
    /// `now_ms` on (the monotonic clock restarted, and time switched off
    /// moved nothing). `None` for more samples than a tracker learns.
    pub fn from_stored(r: &StoredRelative, now_ms: u64) -> Option<Self> {
        (r.samples <= RELATIVE_BASE_SAMPLES).then_some(RelativeLevel {
            quantity: r.quantity,
            samples: r.samples,
            base_mean: r.base_mean,
            base_m2: r.base_m2,
            running: r.running,
            hour: r.hour,
            last_ms: now_ms,
            voted_epoch: None,
        })
    }

    /// One pair heard at `now_ms`: the subject read `theirs` when we read
    /// `ours`. The first [`RELATIVE_BASE_SAMPLES`] learn the offset
    /// (Welford); later ones move the running average and its hour average,
    /// and the learned offset follows a sudden move. A non-finite offset
    /// is ignored.
    pub fn observe(&mut self, theirs: f32, ours: f32, now_ms: u64) {
        let x = theirs - ours;
        if !x.is_finite() {
            return;
        }
        if self.samples < RELATIVE_BASE_SAMPLES {
            self.samples += 1;
            let d = x - self.base_mean;
            self.base_mean += d / f32::from(self.samples);
            self.base_m2 += d * (x - self.base_mean);
            self.running = self.base_mean;
            self.hour = self.base_mean;
        } else {
            let dt = now_ms.saturating_sub(self.last_ms) as f32;
            self.hour += (1.0 - libm::expf(-dt / HOUR_TAU_MS)) * (self.running - self.hour);
            let before = self.running;
            self.running += RUNNING_WEIGHT * (x - self.running);
            if libm::fabsf(self.running - self.hour) >= SUDDEN_FRACTION * self.floor() {
                self.base_mean += self.running - before;
            }
        }
        self.last_ms = now_ms;
    }

    /// True once the offset is learned.
    pub fn is_learned(&self) -> bool {
        self.samples >= RELATIVE_BASE_SAMPLES
    }

    /// How far the running offset moved from the learned one (physical
    /// units, positive when the subject now reads higher against us), if
    /// the offset is learned.
    pub fn drift(&self) -> Option<f32> {
        self.is_learned().then_some(self.running - self.base_mean)
    }

    /// The learned offset's standard deviation.
    pub fn spread(&self) -> f32 {
        if self.samples < 2 {
            return 0.0;
        }
        libm::sqrtf((self.base_m2 / f32::from(self.samples - 1)).max(0.0))
    }

    /// Smallest drift this tracker calls one: [`RELATIVE_FLOOR_STEPS`], or
    /// six learned spreads if the pair is noisier than that.
    pub fn floor(&self) -> f32 {
        (RELATIVE_FLOOR_STEPS * self.quantity.scale().unit_per_step).max(6.0 * self.spread())
    }

    /// The drift, if it is at least [`RelativeLevel::floor`].
    pub fn drifted(&self) -> Option<f32> {
        self.drift().filter(|d| libm::fabsf(*d) >= self.floor())
    }

    /// The drift as σ on the scale whose INFLAMMATION band starts at the
    /// floor: `sigma_inflammation · |drift| / floor`.
    pub fn sigma(&self, sigma_inflammation: f32) -> f32 {
        self.drift().map_or(0.0, |d| sigma_inflammation * libm::fabsf(d) / self.floor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten seconds between pairs.
    fn t(k: u32) -> u64 {
        10_000 * u64::from(k)
    }

    fn learned(offset: f32) -> RelativeLevel {
        let mut r = RelativeLevel::new(QuantityType::Temperature);
        for k in 0..RELATIVE_BASE_SAMPLES {
            let noise = if k % 2 == 0 { 0.05 } else { -0.05 };
            r.observe(20.0 + offset + noise, 20.0, t(k.into()));
        }
        r
    }

    #[test]
    fn nothing_is_drift_before_the_offset_is_learned() {
        let mut r = RelativeLevel::new(QuantityType::Temperature);
        for k in 0..RELATIVE_BASE_SAMPLES - 1 {
            r.observe(30.0, 20.0, t(k.into()));
        }
        assert_eq!(r.drift(), None);
        r.observe(30.0, 20.0, t(40));
        assert_eq!(r.drift(), Some(0.0));
        assert!((r.running - 10.0).abs() < 1e-4);
    }

    #[test]
    fn a_common_swing_is_no_drift_a_slow_lone_one_is() {
        let mut r = learned(0.7);
        // Both warm by 4 °C over the morning: the offset stays.
        for k in 0..2000 {
            let air = 12.0 + 4.0 * k as f32 / 2000.0;
            r.observe(air + 0.7, air, t(100 + k));
        }
        assert!(r.drift().unwrap().abs() < 0.01, "{:?}", r.drift());
        assert_eq!(r.drifted(), None);
        // The subject alone drifts 0.5 °C/h for six hours: 3 °C.
        for k in 0..2160 {
            r.observe(16.0 + 0.7 + 0.5 * k as f32 / 360.0, 16.0, t(2100 + k));
        }
        let d = r.drifted().expect("3 °C is past the 2 °C floor");
        assert!((d - 3.0).abs() < 0.1, "{d}");
        assert!(r.sigma(3.0) > 3.0);
    }

    #[test]
    fn a_step_is_absorbed_a_drift_is_not() {
        // A 3 °C step (a zone's HVAC switching on), over a minute, then
        // two hours at the new offset: what stays is under the floor.
        let mut r = learned(0.0);
        for k in 0..6 {
            r.observe(20.0 + 0.5 * k as f32, 20.0, t(100 + k));
        }
        for k in 0..720 {
            r.observe(23.0, 20.0, t(106 + k));
        }
        let left = r.drift().unwrap();
        assert!(left > 0.5 && left < r.floor(), "{left}");
        assert_eq!(r.drifted(), None);
        // The same 3 °C reached at 1.5 °C/h is absorbed at least in part;
        // at 0.5 °C/h it is not at all.
        for (rate, absorbed) in [(1.5, true), (0.5, false)] {
            let mut r = learned(0.0);
            let hours = 3.0 / rate;
            let n = (hours * 360.0) as u32;
            for k in 0..=n {
                r.observe(20.0 + rate * k as f32 / 360.0, 20.0, t(100 + k));
            }
            let d = r.drift().unwrap();
            assert_eq!(d < 2.8, absorbed, "{rate} °C/h left {d}");
        }
    }

    #[test]
    fn a_noisy_pair_needs_six_spreads() {
        let mut r = RelativeLevel::new(QuantityType::Temperature);
        for k in 0..RELATIVE_BASE_SAMPLES {
            r.observe(if k % 2 == 0 { 21.0 } else { 19.0 }, 20.0, t(k.into()));
        }
        assert!(r.spread() > 0.9);
        assert!(r.floor() > 5.0, "{}", r.floor());
        for k in 0..3000 {
            r.observe(20.0 + 3.0 * k as f32 / 3000.0, 20.0, t(100 + k));
        }
        assert_eq!(r.drifted(), None, "3 °C is within six spreads of a ±1 °C pair");
    }

    #[test]
    fn a_non_finite_reading_is_ignored() {
        let mut r = learned(0.0);
        let before = r;
        r.observe(f32::NAN, 20.0, t(100));
        r.observe(f32::INFINITY, 20.0, t(101));
        assert_eq!(r, before);
    }
}
