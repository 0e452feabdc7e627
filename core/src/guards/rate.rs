//! Per-(device, message type) token buckets (ES-15.1).
//!
//! Resolves SPEC-NOTES 14 (refill saturates instead of overflowing `u16`
//! after a long gap; elapsed time is wrap-safe), SPEC-NOTES 15 (the limits
//! are a [`RateConfig`] the deployment changes, so a faster honest sensor is
//! not dropped) and, with [`super::Guards`], SPEC-NOTES 20 (only verified
//! frames reach a bucket).
//!
//! Refill keeps the spec's whole-epoch steps but carries the unused part of
//! a partial epoch over instead of discarding it (`last_refill = now` in the
//! spec), so a sender exactly at its limit is not throttled by the phase of
//! its frames. A full table evicts the bucket idle longest, but only if it
//! has been idle a whole epoch: such a bucket has refilled to capacity, so
//! forgetting it changes no verdict. Otherwise the new frame is dropped
//! with [`DropReason::TableFull`].

use super::{msg, secs_since, stream_key, DropReason, RATE_BUCKETS};
use crate::types::{DeviceId, Timestamp, EPOCH_DURATION};

/// Capacity of [`RateConfig::rules`].
pub const MAX_RATE_RULES: usize = 16;

/// Tokens per epoch for one message type; also the bucket capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RateRule {
    /// ES-2.2 message-type code.
    pub msg_type: u8,
    /// Frames allowed per epoch (and burst size).
    pub per_epoch: u16,
}

/// Why a rate rule could not be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateConfigError {
    /// All [`MAX_RATE_RULES`] slots hold other types; the limit would
    /// silently fall back to the default.
    RulesFull,
}

/// The RATE_LIMITS table of ES-15.1 as data.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RateConfig {
    /// Limit for types without a rule ("All others: 5").
    pub default_per_epoch: u16,
    /// Length of an epoch in seconds (ES-1.2: 60); 0 is read as 1.
    pub epoch_secs: u32,
    /// Per-type limits.
    pub rules: heapless::Vec<RateRule, MAX_RATE_RULES>,
}

impl RateConfig {
    /// The spec's table (ES-15.1).
    pub fn spec() -> Self {
        let table: [(u8, u16); 10] = [
            (msg::TRACE_DEPOSIT, 15),
            (msg::PRESENCE_PULSE, 8),
            (msg::CONSISTENCY_ALERT, 5),
            (msg::INFLAMMATION_QUERY, 3),
            (msg::INFLAMMATION_REPLY, 10),
            (msg::VACCINE, 2),
            (msg::HEARTBEAT, 4),
            (msg::DEATH_CERTIFICATE, 1),
            (msg::PROFILE_SYNC, 2),
            (msg::ENROLLMENT_REQUEST, 1),
        ];
        let mut rules = heapless::Vec::new();
        for (msg_type, per_epoch) in table {
            // 10 rules into 16 slots: cannot fail.
            let _ = rules.push(RateRule { msg_type, per_epoch });
        }
        RateConfig { default_per_epoch: 5, epoch_secs: EPOCH_DURATION, rules }
    }

    /// The limit for `msg_type`.
    pub fn limit(&self, msg_type: u8) -> u16 {
        self.rules.iter().find(|r| r.msg_type == msg_type).map_or(self.default_per_epoch, |r| r.per_epoch)
    }

    /// Sets or replaces the limit for `msg_type` (SPEC-NOTES 15).
    pub fn set_limit(&mut self, msg_type: u8, per_epoch: u16) -> Result<(), RateConfigError> {
        if let Some(r) = self.rules.iter_mut().find(|r| r.msg_type == msg_type) {
            r.per_epoch = per_epoch;
            return Ok(());
        }
        self.rules.push(RateRule { msg_type, per_epoch }).map_err(|_| RateConfigError::RulesFull)
    }

    /// The TRACE_DEPOSIT limit a sensor sending every `interval_secs` needs:
    /// its frames per epoch plus 25 % (the spec's 12 → 15 headroom),
    /// rounded up.
    pub fn trace_limit_for_interval(&self, interval_secs: u32) -> u16 {
        let per_epoch = self.epoch().div_ceil(interval_secs.max(1));
        let with_headroom = (u64::from(per_epoch) * 5).div_ceil(4);
        with_headroom.min(u64::from(u16::MAX)) as u16
    }

    fn epoch(&self) -> u32 {
        self.epoch_secs.max(1)
    }
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig::spec()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    device: DeviceId,
    msg_type: u8,
    tokens: u16,
    last_refill: Timestamp,
    last_seen: Timestamp,
}

impl Bucket {
    /// Whole-epoch refill, saturating at `cap` (SPEC-NOTES 14). A clock that
    /// stepped back restarts the epoch without credit.
    fn refill(&mut self, now: Timestamp, cap: u16, epoch: u32) {
        let elapsed = secs_since(now, self.last_refill);
        if elapsed < 0 {
            self.last_refill = now;
        } else {
            let epochs = elapsed / i64::from(epoch);
            if epochs > 0 {
                let add = (epochs as u64).saturating_mul(u64::from(cap));
                let sum = u64::from(self.tokens).saturating_add(add);
                self.tokens = sum.min(u64::from(cap)) as u16;
                // epochs * epoch <= elapsed < 2^31: fits a u32.
                self.last_refill = self.last_refill.wrapping_add((epochs as u32).wrapping_mul(epoch));
            }
        }
        self.tokens = self.tokens.min(cap);
    }
}

/// Token buckets for at most `N` `(device, type)` pairs.
#[derive(Clone, Debug, Default)]
pub struct RateLimiter<const N: usize = RATE_BUCKETS> {
    buckets: heapless::Vec<Bucket, N>,
    /// [`stream_key`] of each bucket, index for index.
    keys: heapless::Vec<u32, N>,
}

impl<const N: usize> RateLimiter<N> {
    /// An empty table.
    pub fn new() -> Self {
        RateLimiter { buckets: heapless::Vec::new(), keys: heapless::Vec::new() }
    }

    /// Takes a token for a *verified* frame (ES-15.1 `check_rate_limit`).
    /// A new pair starts with a full bucket.
    pub fn check(
        &mut self,
        device: DeviceId,
        msg_type: u8,
        now: Timestamp,
        cfg: &RateConfig,
    ) -> Result<(), DropReason> {
        let slot = self.slot_for(device, msg_type, now, cfg).ok_or(DropReason::TableFull)?;
        if self.take(slot, now, cfg) {
            Ok(())
        } else {
            Err(DropReason::RateLimited)
        }
    }

    /// Tokens the pair would have at `now`; `None` if it has no bucket
    /// (it would start full).
    pub fn tokens(&self, device: DeviceId, msg_type: u8, now: Timestamp, cfg: &RateConfig) -> Option<u16> {
        let mut b = *self.index(device, msg_type).and_then(|i| self.buckets.get(i))?;
        b.refill(now, cfg.limit(msg_type), cfg.epoch());
        Some(b.tokens)
    }

    /// Buckets in use.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no bucket is in use.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Finds or makes the bucket; `None` if the table is full of buckets
    /// used within the last epoch.
    pub(crate) fn slot_for(
        &mut self,
        device: DeviceId,
        msg_type: u8,
        now: Timestamp,
        cfg: &RateConfig,
    ) -> Option<usize> {
        if let Some(i) = self.index(device, msg_type) {
            return Some(i);
        }
        let fresh = Bucket { device, msg_type, tokens: cfg.limit(msg_type), last_refill: now, last_seen: now };
        let key = stream_key(&device, msg_type);
        if self.buckets.push(fresh).is_ok() {
            // Same capacity as `buckets`, which just had room.
            let _ = self.keys.push(key);
            return Some(self.buckets.len() - 1);
        }
        let epoch = i64::from(cfg.epoch());
        let (i, idle) =
            self.buckets.iter().map(|b| secs_since(now, b.last_seen)).enumerate().max_by_key(|&(_, idle)| idle)?;
        if idle < epoch {
            return None;
        }
        let slot = self.buckets.get_mut(i)?;
        *slot = fresh;
        if let Some(k) = self.keys.get_mut(i) {
            *k = key;
        }
        Some(i)
    }

    fn index(&self, device: DeviceId, msg_type: u8) -> Option<usize> {
        let key = stream_key(&device, msg_type);
        self.keys.iter().zip(&self.buckets).position(|(k, b)| *k == key && b.device == device && b.msg_type == msg_type)
    }

    pub(crate) fn take(&mut self, slot: usize, now: Timestamp, cfg: &RateConfig) -> bool {
        let Some(b) = self.buckets.get_mut(slot) else {
            return false;
        };
        b.refill(now, cfg.limit(b.msg_type), cfg.epoch());
        b.last_seen = now;
        if b.tokens > 0 {
            b.tokens -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dev(n: u8) -> DeviceId {
        DeviceId([n, 0, 0, 0, 0, 0, 0, 1])
    }

    #[test]
    fn spec_table_and_default() {
        let c = RateConfig::spec();
        assert_eq!(c.limit(msg::TRACE_DEPOSIT), 15);
        assert_eq!(c.limit(msg::PRESENCE_PULSE), 8);
        assert_eq!(c.limit(msg::VACCINE), 2);
        assert_eq!(c.limit(msg::ENROLLMENT_REQUEST), 1);
        assert_eq!(c.limit(0x11), 5);
    }

    #[test]
    fn bucket_allows_limit_then_drops() {
        let c = RateConfig::spec();
        let mut r: RateLimiter = RateLimiter::new();
        for _ in 0..15 {
            assert_eq!(r.check(dev(1), msg::TRACE_DEPOSIT, 1000, &c), Ok(()));
        }
        assert_eq!(r.check(dev(1), msg::TRACE_DEPOSIT, 1059, &c), Err(DropReason::RateLimited));
        // Other type, other device: own buckets.
        assert_eq!(r.check(dev(1), msg::HEARTBEAT, 1000, &c), Ok(()));
        assert_eq!(r.check(dev(2), msg::TRACE_DEPOSIT, 1000, &c), Ok(()));
        // One epoch later: full again.
        assert_eq!(r.tokens(dev(1), msg::TRACE_DEPOSIT, 1060, &c), Some(15));
    }

    #[test]
    fn devices_sharing_an_index_key_keep_their_own_buckets() {
        let c = RateConfig::spec();
        let mut r: RateLimiter = RateLimiter::new();
        let (a, b) = (DeviceId([9, 9, 9, 0, 0, 0, 0, 1]), DeviceId([9, 9, 9, 0, 0, 0, 0, 2]));
        assert_eq!(stream_key(&a, msg::TRACE_DEPOSIT), stream_key(&b, msg::TRACE_DEPOSIT));
        for _ in 0..15 {
            assert_eq!(r.check(a, msg::TRACE_DEPOSIT, 1000, &c), Ok(()));
        }
        assert_eq!(r.check(a, msg::TRACE_DEPOSIT, 1000, &c), Err(DropReason::RateLimited));
        assert_eq!(r.tokens(b, msg::TRACE_DEPOSIT, 1000, &c), None);
        assert_eq!(r.check(b, msg::TRACE_DEPOSIT, 1000, &c), Ok(()));
        assert_eq!(r.tokens(b, msg::TRACE_DEPOSIT, 1000, &c), Some(14));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn refill_saturates_after_long_gap() {
        // SPEC-NOTES 14: 15 * 4370 = 65550 overflows the spec's u16 sum.
        let c = RateConfig::spec();
        let mut r: RateLimiter = RateLimiter::new();
        for _ in 0..15 {
            r.check(dev(1), msg::TRACE_DEPOSIT, 0, &c).unwrap();
        }
        let later = 4370 * 60;
        assert_eq!(r.tokens(dev(1), msg::TRACE_DEPOSIT, later, &c), Some(15));
        assert_eq!(r.tokens(dev(1), msg::TRACE_DEPOSIT, u32::MAX / 2, &c), Some(15));
        // The spec's arithmetic really overflows here.
        assert!(15u16.checked_mul(4370).is_none());
    }

    #[test]
    fn refill_keeps_partial_epoch() {
        let c = RateConfig::spec();
        let mut r: RateLimiter = RateLimiter::new();
        for _ in 0..15 {
            r.check(dev(1), msg::TRACE_DEPOSIT, 0, &c).unwrap();
        }
        // 119 s: one epoch refilled, the next refill is due at 120, not 179.
        r.check(dev(1), msg::TRACE_DEPOSIT, 119, &c).unwrap();
        for _ in 0..14 {
            r.check(dev(1), msg::TRACE_DEPOSIT, 119, &c).unwrap();
        }
        assert_eq!(r.check(dev(1), msg::TRACE_DEPOSIT, 119, &c), Err(DropReason::RateLimited));
        assert_eq!(r.tokens(dev(1), msg::TRACE_DEPOSIT, 120, &c), Some(15));
    }

    #[test]
    fn refill_is_wrap_safe() {
        let c = RateConfig::spec();
        let mut r: RateLimiter = RateLimiter::new();
        let t0 = u32::MAX - 30;
        for _ in 0..15 {
            r.check(dev(1), msg::TRACE_DEPOSIT, t0, &c).unwrap();
        }
        // 60 s later the u32 clock has wrapped.
        assert_eq!(r.tokens(dev(1), msg::TRACE_DEPOSIT, t0.wrapping_add(60), &c), Some(15));
        // A clock stepped back grants nothing.
        assert_eq!(r.tokens(dev(1), msg::TRACE_DEPOSIT, t0 - 1000, &c), Some(0));
    }

    #[test]
    fn configured_limit_admits_faster_sensor() {
        // SPEC-NOTES 15: a sensor every 3 s sends 20/min; the spec drops 5.
        let spec = RateConfig::spec();
        let mut fast = RateConfig::spec();
        let lim = fast.trace_limit_for_interval(3);
        assert_eq!(lim, 25);
        fast.set_limit(msg::TRACE_DEPOSIT, lim).unwrap();
        let (mut a, mut b): (RateLimiter, RateLimiter) = (RateLimiter::new(), RateLimiter::new());
        let (mut dropped_spec, mut dropped_cfg) = (0, 0);
        for i in 0..200u32 {
            let t = 1000 + 3 * i;
            dropped_spec += a.check(dev(1), msg::TRACE_DEPOSIT, t, &spec).is_err() as u32;
            dropped_cfg += b.check(dev(1), msg::TRACE_DEPOSIT, t, &fast).is_err() as u32;
        }
        assert!(dropped_spec > 40, "{dropped_spec}");
        assert_eq!(dropped_cfg, 0);
        assert_eq!(spec.trace_limit_for_interval(5), 15);
    }

    #[test]
    fn rules_full_is_reported() {
        let mut c = RateConfig::spec();
        for t in 0x70..0x76 {
            c.set_limit(t, 1).unwrap();
        }
        assert_eq!(c.set_limit(0x80, 1), Err(RateConfigError::RulesFull));
        c.set_limit(msg::VACCINE, 9).unwrap();
        assert_eq!(c.limit(msg::VACCINE), 9);
    }

    #[test]
    fn full_table_evicts_only_idle_buckets() {
        let c = RateConfig::spec();
        let mut r: RateLimiter<2> = RateLimiter::new();
        r.check(dev(1), msg::TRACE_DEPOSIT, 0, &c).unwrap();
        r.check(dev(2), msg::TRACE_DEPOSIT, 30, &c).unwrap();
        assert_eq!(r.check(dev(3), msg::TRACE_DEPOSIT, 59, &c), Err(DropReason::TableFull));
        // dev 1 idle 60 s: its bucket is full again, so it can go.
        assert_eq!(r.check(dev(3), msg::TRACE_DEPOSIT, 60, &c), Ok(()));
        assert_eq!(r.tokens(dev(1), msg::TRACE_DEPOSIT, 60, &c), None);
        assert!(r.tokens(dev(2), msg::TRACE_DEPOSIT, 60, &c).is_some());
    }

    /// Naive model: absolute u64 time, unbounded integers.
    #[derive(Default)]
    struct Model {
        b: std::collections::HashMap<(u8, u8), (u64, u64)>,
    }
    impl Model {
        fn check(&mut self, d: u8, t: u8, now: u64, cap: u64) -> bool {
            let e = self.b.entry((d, t)).or_insert((cap, now));
            let epochs = (now - e.1) / 60;
            e.0 = (e.0 + cap * epochs).min(cap);
            e.1 += epochs * 60;
            if e.0 > 0 {
                e.0 -= 1;
                true
            } else {
                false
            }
        }
    }

    proptest! {
        #[test]
        fn matches_naive_model(
            start in any::<u32>(),
            events in proptest::collection::vec((0u8..3, 0u8..2, 0u32..400), 1..300),
        ) {
            let c = RateConfig::spec();
            let types = [msg::TRACE_DEPOSIT, msg::VACCINE];
            let mut r: RateLimiter = RateLimiter::new();
            let mut m = Model::default();
            let mut now = u64::from(start);
            for (d, t, dt) in events {
                now += u64::from(dt);
                let ty = types[t as usize];
                let got = r.check(dev(d), ty, now as u32, &c).is_ok();
                let want = m.check(d, t, now, u64::from(c.limit(ty)));
                prop_assert_eq!(got, want);
            }
        }
    }
}
