//! Flood detection and temporary blacklist (ES-15.3).
//!
//! More than `threshold` (50) rate-limited frames from one sender within
//! one epoch blacklist it for `blacklist_secs` (300 s). Only verified frames
//! are ever counted ([`super::Guards`], SPEC-NOTES 20), so a forger cannot
//! blacklist a victim.
//!
//! Differences from the spec's sketch: the counter is per sender and rolls
//! over by itself one epoch after its first rejection (the spec's
//! `reset_flood_counters` is never called from ES-10.4's epoch tick;
//! [`FloodDetector::clear_counters`] is still there for a caller that
//! ticks); time comparisons are wrap-safe (`now + 300` overflows in 2106 and
//! `now < until` then fails); only rejections create a counter (the spec's
//! `total_this_epoch` is never read); the tables are bounded. A full counter
//! table reuses an expired counter, else the one with the fewest
//! rejections; a full blacklist drops the ban that ends soonest. Neither
//! loses rate limiting, which stays in force for every sender.

use super::{secs_since, GUARD_DEVICES};
use crate::types::{DeviceId, Timestamp, EPOCH_DURATION};

/// ES-15.3 constants as settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FloodConfig {
    /// Rejections per epoch tolerated; one more blacklists (FLOOD_THRESHOLD).
    pub threshold: u16,
    /// Blacklist duration in seconds (BLACKLIST_DURATION).
    pub blacklist_secs: u32,
    /// Counting window in seconds; 0 is read as 1.
    pub epoch_secs: u32,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig { threshold: 50, blacklist_secs: 300, epoch_secs: EPOCH_DURATION }
    }
}

/// What recording one rejection did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum FloodVerdict {
    /// Counted; still under the threshold.
    Counted,
    /// This rejection crossed the threshold: the sender is blacklisted now.
    Blacklisted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counter {
    device: DeviceId,
    epoch_start: Timestamp,
    rejected: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ban {
    device: DeviceId,
    until: Timestamp,
}

/// Rejection counters and blacklist for at most `N` senders each.
#[derive(Clone, Debug, Default)]
pub struct FloodDetector<const N: usize = GUARD_DEVICES> {
    counters: heapless::Vec<Counter, N>,
    blacklist: heapless::Vec<Ban, N>,
}

impl<const N: usize> FloodDetector<N> {
    /// Empty tables.
    pub fn new() -> Self {
        FloodDetector { counters: heapless::Vec::new(), blacklist: heapless::Vec::new() }
    }

    /// True while `device` is blacklisted (`now` before the end, wrap-safe).
    pub fn is_blacklisted(&self, device: DeviceId, now: Timestamp) -> bool {
        self.blacklist.iter().any(|b| b.device == device && secs_since(b.until, now) > 0)
    }

    /// When the ban of `device` ends, if one is recorded (possibly past).
    pub fn blacklisted_until(&self, device: DeviceId) -> Option<Timestamp> {
        self.blacklist.iter().find(|b| b.device == device).map(|b| b.until)
    }

    /// Rejections counted for `device` in its current epoch.
    pub fn rejected_this_epoch(&self, device: DeviceId, now: Timestamp, cfg: &FloodConfig) -> u16 {
        self.counters.iter().find(|c| c.device == device && !expired(c, now, cfg)).map_or(0, |c| c.rejected)
    }

    /// Counts one rate-limited (verified) frame from `device`.
    pub fn record_rejection(&mut self, device: DeviceId, now: Timestamp, cfg: &FloodConfig) -> FloodVerdict {
        let i = match self.counters.iter().position(|c| c.device == device) {
            Some(i) => i,
            None => self.new_counter(device, now, cfg),
        };
        let Some(c) = self.counters.get_mut(i) else {
            return FloodVerdict::Counted;
        };
        if expired(c, now, cfg) {
            c.epoch_start = now;
            c.rejected = 0;
        }
        c.rejected = c.rejected.saturating_add(1);
        if c.rejected <= cfg.threshold {
            return FloodVerdict::Counted;
        }
        self.counters.swap_remove(i);
        self.ban(device, now.wrapping_add(cfg.blacklist_secs), now);
        FloodVerdict::Blacklisted
    }

    /// The spec's `check_flood`: false if `device` is (or now becomes)
    /// blacklisted. An expired ban is lifted.
    pub fn check_flood(&mut self, device: DeviceId, was_rate_limited: bool, now: Timestamp, cfg: &FloodConfig) -> bool {
        if self.is_blacklisted(device, now) {
            return false;
        }
        self.blacklist.retain(|b| b.device != device);
        !was_rate_limited || self.record_rejection(device, now, cfg) == FloodVerdict::Counted
    }

    /// Epoch boundary: forget every counter (ES-15.3 `reset_flood_counters`).
    pub fn clear_counters(&mut self) {
        self.counters.clear();
    }

    /// Drops bans that have ended.
    pub fn purge(&mut self, now: Timestamp) {
        self.blacklist.retain(|b| secs_since(b.until, now) > 0);
    }

    /// Senders currently counted.
    pub fn counters_len(&self) -> usize {
        self.counters.len()
    }

    fn new_counter(&mut self, device: DeviceId, now: Timestamp, cfg: &FloodConfig) -> usize {
        let fresh = Counter { device, epoch_start: now, rejected: 0 };
        if self.counters.push(fresh).is_ok() {
            return self.counters.len() - 1;
        }
        let victim = self
            .counters
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| (!expired(c, now, cfg), c.rejected))
            .map_or(0, |(i, _)| i);
        if let Some(slot) = self.counters.get_mut(victim) {
            *slot = fresh;
        }
        victim
    }

    fn ban(&mut self, device: DeviceId, until: Timestamp, now: Timestamp) {
        self.blacklist.retain(|b| b.device != device);
        let entry = Ban { device, until };
        if self.blacklist.push(entry).is_ok() {
            return;
        }
        if let Some(slot) = self.blacklist.iter_mut().min_by_key(|b| secs_since(b.until, now)) {
            *slot = entry;
        }
    }
}

fn expired(c: &Counter, now: Timestamp, cfg: &FloodConfig) -> bool {
    let age = secs_since(now, c.epoch_start);
    age < 0 || age >= i64::from(cfg.epoch_secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(n: u8) -> DeviceId {
        DeviceId([9, 9, 9, 9, 9, 9, 9, n])
    }

    #[test]
    fn blacklist_on_51st_rejection() {
        let cfg = FloodConfig::default();
        let mut f: FloodDetector = FloodDetector::new();
        for _ in 0..50 {
            assert_eq!(f.record_rejection(dev(1), 1000, &cfg), FloodVerdict::Counted);
        }
        assert!(!f.is_blacklisted(dev(1), 1000));
        assert_eq!(f.record_rejection(dev(1), 1000, &cfg), FloodVerdict::Blacklisted);
        assert!(f.is_blacklisted(dev(1), 1000));
        assert!(f.is_blacklisted(dev(1), 1299));
        assert!(!f.is_blacklisted(dev(1), 1300), "expires after 300 s");
        assert!(!f.is_blacklisted(dev(2), 1000));
    }

    #[test]
    fn counter_rolls_over_each_epoch() {
        let cfg = FloodConfig::default();
        let mut f: FloodDetector = FloodDetector::new();
        for i in 0..200u32 {
            // 50 per minute forever: never blacklisted.
            let now = 1000 + (i / 50) * 60 + (i % 50);
            assert_eq!(f.record_rejection(dev(1), now, &cfg), FloodVerdict::Counted);
        }
        f.clear_counters();
        assert_eq!(f.rejected_this_epoch(dev(1), 1300, &cfg), 0);
    }

    #[test]
    fn blacklist_survives_u32_wrap() {
        let cfg = FloodConfig::default();
        let mut f: FloodDetector = FloodDetector::new();
        let t = u32::MAX - 100;
        for _ in 0..51 {
            f.record_rejection(dev(1), t, &cfg);
        }
        assert_eq!(f.blacklisted_until(dev(1)), Some(199));
        assert!(f.is_blacklisted(dev(1), t + 50));
        assert!(f.is_blacklisted(dev(1), 150));
        assert!(!f.is_blacklisted(dev(1), 199));
    }

    #[test]
    fn check_flood_spec_shape() {
        let cfg = FloodConfig::default();
        let mut f: FloodDetector = FloodDetector::new();
        assert!(f.check_flood(dev(1), false, 0, &cfg));
        for _ in 0..50 {
            assert!(f.check_flood(dev(1), true, 0, &cfg));
        }
        assert!(!f.check_flood(dev(1), true, 0, &cfg));
        assert!(!f.check_flood(dev(1), false, 100, &cfg));
        assert!(f.check_flood(dev(1), false, 300, &cfg));
        assert_eq!(f.blacklisted_until(dev(1)), None, "lifted");
    }

    #[test]
    fn full_tables_stay_bounded() {
        let cfg = FloodConfig::default();
        let mut f: FloodDetector<2> = FloodDetector::new();
        for _ in 0..10 {
            f.record_rejection(dev(1), 0, &cfg);
        }
        f.record_rejection(dev(2), 0, &cfg);
        f.record_rejection(dev(3), 0, &cfg);
        assert_eq!(f.counters_len(), 2);
        assert_eq!(f.rejected_this_epoch(dev(1), 0, &cfg), 10, "busiest kept");
        assert_eq!(f.rejected_this_epoch(dev(2), 0, &cfg), 0, "fewest evicted");
        for d in 1..=3 {
            for _ in 0..51 {
                f.record_rejection(dev(d), u32::from(d), &cfg);
            }
        }
        assert!(!f.is_blacklisted(dev(1), 10), "soonest-ending ban dropped");
        assert!(f.is_blacklisted(dev(2), 10));
        assert!(f.is_blacklisted(dev(3), 10));
    }
}
