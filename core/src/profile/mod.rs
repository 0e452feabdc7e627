//! Behavioural profiles (ES-4.2 Stratum 1), the NK random audit (ES-4.3,
//! Stratum 4) and the merge of conflicting profiles (ES-7.4).
//!
//! A [`BehavioralProfile`] describes one monitored device measuring one
//! quantity. The spec gives an update rule only for the value mean, variance
//! and histogram; SPEC-NOTES 29 asks for the rest, so every statistic here has
//! one (all in `docs/spec-deviations.md`):
//! - Every statistic is an exponentially weighted mean (and, where kept, a
//!   population variance) with sample weight `α`. A [`ProfileMode::Learning`]
//!   profile (the self-signature built during neonatal) uses `α = 1/n`, which
//!   is exactly Welford's algorithm. A [`ProfileMode::Running`] profile uses
//!   `α = max(1/n, floor)`: Welford while young, then the EMA the spec names
//!   (floor 0.01 for values, intervals and correlations, 0.1 for the per-epoch
//!   message rate of ES-10.4 and the per-day statistics). A
//!   [`ProfileMode::Frozen`] profile never changes.
//! - The variance step is `var ← (1−α)(var + α·δ²)` with `δ` the deviation
//!   from the old mean. At `α = 1/n` it is the spec's Welford step; at
//!   `α = 0.01` it is the unbiased exponentially weighted variance (the spec's
//!   comment squares the residual after the mean moved, which is low by 1 %).
//! - Values are kept in physical units (`QuantityType::to_value`, the spec's
//!   `reading / 100` generalised by SPEC-NOTES 16), so the spec's `+ 0.01`
//!   guards keep their meaning. [`ProfileSummary`] carries reading units.
//! - SPEC-NOTES 12: intervals are gaps between the receiver's local receive
//!   times in milliseconds ([`Observation::rx_ms`]), not whole-second wire
//!   timestamps.
//! - SPEC-NOTES 26: the previous observation is an explicit input, must be of
//!   the same quantity and must not be the current trace itself.
//! - SPEC-NOTES 30: `profile_version` is a `u32` compared wrap-aware
//!   ([`version_newer`]); `hourly_activity` counts are `u32`, saturating.
//! - SPEC-NOTES 42: the histogram range starts around the first reading and
//!   doubles toward readings that fall outside it; a zero-width range never
//!   divides (see `histogram.rs`).
//! - SPEC-NOTES 39: the NK audit runs when a per-profile random byte is below
//!   [`NK_AUDIT_PROBABILITY`] (p = 3/256), see [`nk_audit_due`].

mod audit;
mod deviation;
mod histogram;
mod merge;

pub use audit::{
    compute_profile_drift, drift_threshold, identify_drifted_dimensions, maybe_run_nk_audit, nk_audit_due,
    run_nk_audit, NkAuditResult, DIM_COMM, DIM_ENERGY, DIM_TIMING, DIM_VALUE, DRIFT_THRESHOLD_DUST,
};
pub use deviation::{
    compute_deviation, compute_neighbor_expectation, interval_between, Deviation, DeviationVerdict, MIN_CORRELATION,
    MIN_NEIGHBOR_WEIGHT, WEIGHT_CORRELATION, WEIGHT_TIMING, WEIGHT_VALUE, Z_CAP,
};
pub use merge::{merge_profiles, version_newer, MERGE_PRIMARY_WEIGHT};

#[cfg(doc)]
use crate::types::NK_AUDIT_PROBABILITY;
use crate::types::{DeviceId, QuantityType, Reading, Timestamp, MAX_NEIGHBORS, MAX_PROFILE_BINS};

/// EMA floor for the value mean and variance of a running profile (ES-4.2).
pub const ALPHA_VALUE: f32 = 0.01;
/// EMA floor for the inter-reading interval statistics.
pub const ALPHA_INTERVAL: f32 = 0.01;
/// EMA floor for the per-neighbour correlation estimators.
pub const ALPHA_CORRELATION: f32 = 0.01;
/// EMA weight of one epoch's message count (ES-10.4: `0.9·rate + 0.1·count`).
pub const ALPHA_MSG_RATE: f32 = 0.1;
/// EMA floor for statistics sampled once a day or per heartbeat (neighbours,
/// battery trend, energy ratio): ten samples of memory.
pub const ALPHA_SLOW: f32 = 0.1;
/// Paired samples a neighbour slot needs before its correlation is published;
/// with fewer, a Pearson estimate is mostly noise (two points always give ±1).
pub const MIN_CORRELATION_PAIRS: u32 = 10;
/// Shortest gap between battery samples that feeds the trend; shorter gaps
/// would turn one level step of quantisation noise into a steep slope.
pub const BATTERY_MIN_GAP_S: u32 = 3_600;
/// `battery_level` meaning "mains powered" (ES-2.10); not a charge level.
pub const BATTERY_MAINS: u8 = 0xFF;
/// Interval gaps are capped here (49.7 days) before they enter `f32` maths.
pub const MAX_INTERVAL_MS: u64 = u32::MAX as u64;

/// How a profile learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ProfileMode {
    /// Building a self-signature: cumulative Welford (`α = 1/n`).
    Learning,
    /// Monitoring: `α = max(1/n, floor)`, so the profile follows slow change.
    Running,
    /// The self-signature after neonatal: immutable (ES-4.2 `is_frozen`).
    Frozen,
}

/// What kind of device is profiled; Dust profiles are noisier and their
/// thresholds are relaxed (ES-16.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SubjectKind {
    /// A Nano node, signing its own traces.
    Nano,
    /// A Dust node, vouched for by gateways.
    Dust,
}

/// Why a profile operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ProfileError {
    /// The profile is a frozen self-signature; it must never change.
    Frozen,
    /// The observation measures another quantity than the profile describes,
    /// so its value would poison the statistics.
    QuantityMismatch,
    /// The two profiles describe different devices; merging them is meaningless.
    SubjectMismatch,
    /// A statistic is NaN or infinite (or becomes so in the profile's units);
    /// it cannot have come from real readings.
    NonFinite,
    /// A variance or ratio is negative; no sample set produces that.
    Negative,
    /// The histogram range has `min > max`; no bin width can be derived.
    InvertedRange,
}

/// One received trace as the profile sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Observation {
    /// The reading, in the quantity's wire unit.
    pub reading: Reading,
    /// What was measured.
    pub quantity: QuantityType,
    /// The trace's wire timestamp (hour of day, `last_updated`).
    pub timestamp: Timestamp,
    /// The receiver's local monotonic receive time; intervals come from this
    /// because wire timestamps are whole seconds (SPEC-NOTES 12).
    pub rx_ms: u64,
}

/// Running Pearson estimator for one neighbour slot: weighted means,
/// variances and covariance of (subject, neighbour) reading pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PairStat {
    /// Pairs absorbed (saturating).
    pub n: u32,
    /// Mean of the subject's values.
    pub mean_x: f32,
    /// Mean of the neighbour's values.
    pub mean_y: f32,
    /// Variance of the subject's values.
    pub var_x: f32,
    /// Variance of the neighbour's values.
    pub var_y: f32,
    /// Covariance of the pair.
    pub cov: f32,
}

impl PairStat {
    /// Adds one pair with weight `a` (`1/n` is the exact cumulative estimator).
    fn push(&mut self, x: f32, y: f32, a: f32) {
        let dx = x - self.mean_x;
        let dy = y - self.mean_y;
        self.mean_x += a * dx;
        self.mean_y += a * dy;
        self.var_x = (1.0 - a) * (self.var_x + a * dx * dx);
        self.var_y = (1.0 - a) * (self.var_y + a * dy * dy);
        self.cov = (1.0 - a) * (self.cov + a * dx * dy);
    }

    /// The Pearson coefficient in [−1, 1]; 0 while there are too few pairs or
    /// either side has no variance (a constant neighbour predicts nothing).
    pub fn pearson(&self) -> f32 {
        let flat = |v: f32| v.is_nan() || v <= f32::EPSILON;
        if self.n < MIN_CORRELATION_PAIRS || flat(self.var_x) || flat(self.var_y) {
            return 0.0;
        }
        let r = self.cov / libm::sqrtf(self.var_x * self.var_y);
        if r.is_finite() {
            r.clamp(-1.0, 1.0)
        } else {
            0.0
        }
    }
}

/// The behavioural fingerprint of one device (ES-4.2), with `N` neighbour
/// slots (the caller's neighbour-table capacity).
///
/// Fields are public so that tests, vectors and the simulator can state a
/// profile directly; the update methods keep them consistent. Units: values
/// in the quantity's physical unit, intervals in ms.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BehavioralProfile<const N: usize = MAX_NEIGHBORS> {
    /// The profiled device.
    pub subject_id: DeviceId,
    /// The quantity whose readings the profile describes.
    pub quantity: QuantityType,
    /// How the profile learns (replaces the spec's `is_frozen`).
    pub mode: ProfileMode,

    /// Component 0: histogram counts; halved together when one would overflow.
    #[cfg_attr(feature = "serde", serde(with = "arrays"))]
    pub value_hist: [u16; MAX_PROFILE_BINS],
    /// Lower edge of the histogram range, in reading units.
    pub value_min: Reading,
    /// Upper edge (inclusive); `min == max` means "not yet set".
    pub value_max: Reading,
    /// Readings absorbed (saturating).
    pub value_count: u32,
    /// Weighted mean value.
    pub value_mean: f32,
    /// Weighted population variance of the value.
    pub value_var: f32,

    /// Component 1: readings per UTC hour of day (u32: SPEC-NOTES 30).
    #[cfg_attr(feature = "serde", serde(with = "arrays"))]
    pub hourly_activity: [u32; 24],
    /// Intervals absorbed (saturating).
    pub interval_count: u32,
    /// Mean gap between readings, ms of local receive time (f32: an integer
    /// EMA with α = 0.01 would never move for gaps within 50 ms of the mean).
    pub avg_interval_ms: f32,
    /// Variance of the gaps, ms².
    pub interval_var_ms: f32,

    /// Component 2: days absorbed into `unique_neighbors` (saturating).
    pub day_count: u32,
    /// Distinct neighbours contacted per day, smoothed.
    pub unique_neighbors: f32,
    /// Epochs absorbed into `msg_rate_per_epoch` (saturating).
    pub epoch_count: u32,
    /// Messages per epoch, smoothed (ES-10.4).
    pub msg_rate_per_epoch: f32,

    /// Component 3: the last battery sample that fed the trend (level, time).
    pub battery_last: Option<(u8, Timestamp)>,
    /// Slopes absorbed into `battery_trend` (saturating).
    pub battery_count: u32,
    /// Battery change in `battery_level` steps per day (HEARTBEAT carries a
    /// 0–254 level, not mV); negative while discharging.
    pub battery_trend: f32,
    /// Samples absorbed into `active_energy_ratio` (saturating).
    pub energy_count: u32,
    /// Energy spent active relative to asleep, smoothed.
    pub active_energy_ratio: f32,

    /// Component 4: Pearson correlation with each neighbour slot, as used by
    /// [`compute_deviation`].
    #[cfg_attr(feature = "serde", serde(with = "arrays"))]
    pub correlation_scores: [f32; N],
    /// The estimators behind `correlation_scores`.
    #[cfg_attr(feature = "serde", serde(with = "arrays"))]
    pub correlation_state: [PairStat; N],

    /// Incremented (wrapping) by every reading; compare with [`version_newer`].
    pub profile_version: u32,
    /// Wire timestamp of the last reading absorbed.
    pub last_updated: Timestamp,
}

/// What a PROFILE_SYNC (v2) carries of a profile (SPEC-NOTES 30). Mean and
/// variance are in the quantity's reading units, like `value_min`/`value_max`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProfileSummary {
    /// The profile's version.
    pub profile_version: u32,
    /// Readings absorbed.
    pub value_count: u32,
    /// Mean reading, reading units.
    pub value_mean: f32,
    /// Variance, reading units squared.
    pub value_var: f32,
    /// Histogram lower edge.
    pub value_min: Reading,
    /// Histogram upper edge.
    pub value_max: Reading,
    /// When the profile last changed.
    pub last_updated: Timestamp,
    /// Histogram counts.
    #[cfg_attr(feature = "serde", serde(with = "arrays"))]
    pub bins: [u16; MAX_PROFILE_BINS],
}

/// Weight of the `n`-th sample under `mode` (`n ≥ 1`).
fn alpha(mode: ProfileMode, n: u32, floor: f32) -> f32 {
    let cumulative = 1.0 / n.max(1) as f32;
    match mode {
        ProfileMode::Learning | ProfileMode::Frozen => cumulative,
        ProfileMode::Running => cumulative.max(floor),
    }
}

/// One weighted step of a mean and population variance.
fn mean_var_step(mean: &mut f32, var: &mut f32, x: f32, a: f32) {
    let delta = x - *mean;
    *mean += a * delta;
    *var = (1.0 - a) * (*var + a * delta * delta);
}

/// One weighted step of a mean.
fn mean_step(mean: &mut f32, x: f32, a: f32) {
    *mean += a * (x - *mean);
}

impl<const N: usize> BehavioralProfile<N> {
    /// An empty profile of `subject_id`'s `quantity` readings.
    pub fn new(subject_id: DeviceId, quantity: QuantityType, mode: ProfileMode) -> Self {
        BehavioralProfile {
            subject_id,
            quantity,
            mode,
            value_hist: [0; MAX_PROFILE_BINS],
            value_min: 0,
            value_max: 0,
            value_count: 0,
            value_mean: 0.0,
            value_var: 0.0,
            hourly_activity: [0; 24],
            interval_count: 0,
            avg_interval_ms: 0.0,
            interval_var_ms: 0.0,
            day_count: 0,
            unique_neighbors: 0.0,
            epoch_count: 0,
            msg_rate_per_epoch: 0.0,
            battery_last: None,
            battery_count: 0,
            battery_trend: 0.0,
            energy_count: 0,
            active_energy_ratio: 0.0,
            correlation_scores: [0.0; N],
            correlation_state: [PairStat::default(); N],
            profile_version: 0,
            last_updated: 0,
        }
    }

    /// True for a self-signature, which must never change.
    pub fn is_frozen(&self) -> bool {
        self.mode == ProfileMode::Frozen
    }

    /// Ends learning: the profile becomes an immutable self-signature.
    pub fn freeze(&mut self) {
        self.mode = ProfileMode::Frozen;
    }

    /// A copy that keeps learning as a running profile, e.g. the current
    /// profile started from a self-signature at the end of neonatal.
    pub fn running_copy(&self) -> Self {
        let mut p = self.clone();
        p.mode = ProfileMode::Running;
        p
    }

    fn check_mutable(&self) -> Result<(), ProfileError> {
        if self.is_frozen() {
            Err(ProfileError::Frozen)
        } else {
            Ok(())
        }
    }

    /// Absorbs one accepted reading (ES-4.2 `update_profile`).
    ///
    /// `prev` is the subject's previous observation of the same quantity
    /// (not this one); the gap between them feeds the interval statistics.
    /// `neighbor_latest[i]` is the latest fresh reading of the same quantity
    /// by neighbour slot `i`, paired with this one for the correlation
    /// estimators; slots beyond `N` are ignored.
    pub fn update(
        &mut self,
        obs: &Observation,
        prev: Option<&Observation>,
        neighbor_latest: &[Option<Reading>],
    ) -> Result<(), ProfileError> {
        self.check_mutable()?;
        if obs.quantity != self.quantity {
            return Err(ProfileError::QuantityMismatch);
        }
        let x = self.quantity.to_value(obs.reading);

        self.value_count = self.value_count.saturating_add(1);
        let a = alpha(self.mode, self.value_count, ALPHA_VALUE);
        mean_var_step(&mut self.value_mean, &mut self.value_var, x, a);
        self.histogram_insert(obs.reading);

        let hour = ((obs.timestamp % 86_400) / 3_600) as usize;
        if let Some(h) = self.hourly_activity.get_mut(hour) {
            *h = h.saturating_add(1);
        }

        if let Some(gap) = interval_between(obs, prev) {
            self.interval_count = self.interval_count.saturating_add(1);
            let a = alpha(self.mode, self.interval_count, ALPHA_INTERVAL);
            let gap = gap.min(MAX_INTERVAL_MS) as f32;
            mean_var_step(&mut self.avg_interval_ms, &mut self.interval_var_ms, gap, a);
        }

        for ((state, score), theirs) in
            self.correlation_state.iter_mut().zip(self.correlation_scores.iter_mut()).zip(neighbor_latest)
        {
            if let Some(y) = theirs {
                state.n = state.n.saturating_add(1);
                let a = alpha(self.mode, state.n, ALPHA_CORRELATION);
                state.push(x, self.quantity.to_value(*y), a);
                *score = state.pearson();
            }
        }

        self.last_updated = obs.timestamp;
        self.profile_version = self.profile_version.wrapping_add(1);
        Ok(())
    }

    /// Absorbs one epoch's message count from the subject (ES-10.4 step 1:
    /// `rate ← 0.9·rate + 0.1·count` once ten epochs are in).
    pub fn end_epoch(&mut self, msg_count: u16) -> Result<(), ProfileError> {
        self.check_mutable()?;
        self.epoch_count = self.epoch_count.saturating_add(1);
        let a = alpha(self.mode, self.epoch_count, ALPHA_MSG_RATE);
        mean_step(&mut self.msg_rate_per_epoch, msg_count as f32, a);
        Ok(())
    }

    /// Absorbs one day's count of distinct neighbours the subject contacted.
    pub fn end_day(&mut self, distinct_neighbors: u8) -> Result<(), ProfileError> {
        self.check_mutable()?;
        self.day_count = self.day_count.saturating_add(1);
        let a = alpha(self.mode, self.day_count, ALPHA_SLOW);
        mean_step(&mut self.unique_neighbors, distinct_neighbors as f32, a);
        Ok(())
    }

    /// Absorbs a HEARTBEAT `battery_level` taken at `at`.
    ///
    /// A slope (steps per day) is formed against the last sample once at
    /// least [`BATTERY_MIN_GAP_S`] have passed; mains power (0xFF) and samples
    /// older than the last one are ignored.
    pub fn record_battery(&mut self, level: u8, at: Timestamp) -> Result<(), ProfileError> {
        self.check_mutable()?;
        if level == BATTERY_MAINS {
            return Ok(());
        }
        let Some((last_level, last_at)) = self.battery_last else {
            self.battery_last = Some((level, at));
            return Ok(());
        };
        let gap = at.wrapping_sub(last_at);
        if gap > i32::MAX as u32 || gap < BATTERY_MIN_GAP_S {
            return Ok(());
        }
        let slope = (level as f32 - last_level as f32) * 86_400.0 / gap as f32;
        self.battery_count = self.battery_count.saturating_add(1);
        let a = alpha(self.mode, self.battery_count, ALPHA_SLOW);
        mean_step(&mut self.battery_trend, slope, a);
        self.battery_last = Some((level, at));
        Ok(())
    }

    /// `battery_trend` as the spec's `i8` (steps per day, saturating).
    pub fn battery_trend_i8(&self) -> i8 {
        // `as` saturates and maps NaN to 0.
        libm::roundf(self.battery_trend) as i8
    }

    /// Absorbs one measured active-vs-sleep energy ratio (from the board's
    /// power monitor; no message carries it for remote devices).
    pub fn record_energy_ratio(&mut self, ratio: f32) -> Result<(), ProfileError> {
        self.check_mutable()?;
        if !ratio.is_finite() {
            return Err(ProfileError::NonFinite);
        }
        if ratio < 0.0 {
            return Err(ProfileError::Negative);
        }
        self.energy_count = self.energy_count.saturating_add(1);
        let a = alpha(self.mode, self.energy_count, ALPHA_SLOW);
        mean_step(&mut self.active_energy_ratio, ratio, a);
        Ok(())
    }

    /// Forgets a neighbour slot whose device changed (the neighbour table
    /// reused the slot); a stale correlation would mislead the expectation.
    pub fn reset_neighbor_slot(&mut self, slot: usize) {
        if let Some(s) = self.correlation_state.get_mut(slot) {
            *s = PairStat::default();
        }
        if let Some(c) = self.correlation_scores.get_mut(slot) {
            *c = 0.0;
        }
    }

    /// Moves the value level by `delta` reading steps, leaving the shape
    /// alone: the mean and the histogram range shift, the variance, counts,
    /// timing, communication and energy components do not. This is the one
    /// change a frozen self-signature takes: ES-3.1 "confirm (update
    /// profile)" after neighbours confirmed that the environment itself
    /// moved, so neither the deviation of the next reading nor the NK audit
    /// counts the confirmed step as the subject's own drift. The range stops
    /// at the `i16` edge (a reading outside it widens it as usual).
    pub fn rebase_level(&mut self, delta: i32) {
        let step = self.quantity.scale().unit_per_step;
        let shifted = self.value_mean + delta as f32 * step;
        if shifted.is_finite() {
            self.value_mean = shifted;
        }
        let (lo, hi) = (self.value_min as i64, self.value_max as i64);
        let d = (delta as i64).clamp(i16::MIN as i64 - lo, i16::MAX as i64 - hi);
        self.value_min = (lo + d) as Reading;
        self.value_max = (hi + d) as Reading;
        self.profile_version = self.profile_version.wrapping_add(1);
    }

    /// What a PROFILE_SYNC carries of this profile.
    pub fn summary(&self) -> ProfileSummary {
        let step = self.quantity.scale().unit_per_step;
        ProfileSummary {
            profile_version: self.profile_version,
            value_count: self.value_count,
            value_mean: self.value_mean / step,
            value_var: self.value_var / (step * step),
            value_min: self.value_min,
            value_max: self.value_max,
            last_updated: self.last_updated,
            bins: self.value_hist,
        }
    }

    /// A running profile of `subject_id` from a received summary. Components
    /// the summary does not carry start empty. Statistics no sample set can
    /// produce are refused rather than allowed to poison later scores.
    pub fn from_summary(
        subject_id: DeviceId,
        quantity: QuantityType,
        s: &ProfileSummary,
    ) -> Result<Self, ProfileError> {
        let step = quantity.scale().unit_per_step;
        let mean = s.value_mean * step;
        let var = s.value_var * step * step;
        if !mean.is_finite() || !var.is_finite() || !s.value_mean.is_finite() || !s.value_var.is_finite() {
            return Err(ProfileError::NonFinite);
        }
        if var < 0.0 {
            return Err(ProfileError::Negative);
        }
        if s.value_min > s.value_max {
            return Err(ProfileError::InvertedRange);
        }
        let mut p = Self::new(subject_id, quantity, ProfileMode::Running);
        p.profile_version = s.profile_version;
        p.value_count = s.value_count;
        p.value_mean = mean;
        p.value_var = var;
        p.value_min = s.value_min;
        p.value_max = s.value_max;
        p.last_updated = s.last_updated;
        p.value_hist = s.bins;
        Ok(p)
    }
}

/// serde for fixed arrays of any length (serde's own impls stop at 32).
#[cfg(feature = "serde")]
mod arrays {
    use core::fmt;
    use core::marker::PhantomData;
    use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};
    use serde::ser::{Serialize, SerializeTuple, Serializer};

    pub fn serialize<S: Serializer, T: Serialize, const N: usize>(a: &[T; N], s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(N)?;
        for v in a {
            t.serialize_element(v)?;
        }
        t.end()
    }

    struct ArrayVisitor<T, const N: usize>(PhantomData<T>);

    impl<'de, T: Deserialize<'de> + Default + Copy, const N: usize> Visitor<'de> for ArrayVisitor<T, N> {
        type Value = [T; N];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of {N} elements")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[T; N], A::Error> {
            let mut out = [T::default(); N];
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(i, &self))?;
            }
            Ok(out)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default + Copy, const N: usize>(
        d: D,
    ) -> Result<[T; N], D::Error> {
        d.deserialize_tuple(N, ArrayVisitor::<T, N>(PhantomData))
    }
}

#[cfg(test)]
mod tests;
