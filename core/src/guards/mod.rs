//! DoS guards (ES-15) and BLE legacy segmentation (ES-12.2).
//!
//! Resolves SPEC-NOTES 14 (saturating refill), 15 (limits are config),
//! 17 (replays 33–223 sequence steps behind), 20 (charge only verified
//! frames) and the segment-header part of 42. Decisions and the tests that
//! pin them are in `docs/spec-deviations.md`.
//!
//! # Dispatch order
//!
//! The spec's main loop (ES-10.2 4a) rate-limits before it verifies, so a
//! forged frame carrying a victim's `sender_id` drains the victim's bucket
//! and, 51 rejections later, blacklists it (SPEC-NOTES 20). [`Guards`] makes
//! the safe order the only one that type-checks:
//!
//! 1. decode the frame (wire module);
//! 2. [`Guards::precheck`] — blacklist, freshness, replay, duplicate. It takes
//!    `&self`, so it cannot charge or record anything, whoever sent the frame;
//! 3. verify the Ed25519 signature with the *registered* key of the sender
//!    (frames from unknown ids stop here), then call
//!    [`Unverified::signature_verified`] (or, for a frame without a sequence
//!    number, [`Unverified::signature_verified_with`] and its signature);
//! 4. [`Guards::admit_verified`] — re-checks, drops a frame whose signed
//!    content was charged within the content window (a relayed copy, see
//!    [`content`]), then charges the rate bucket and the flood counter and
//!    marks the sequence number or content seen, only for verified,
//!    non-duplicate frames from known ids;
//! 5. dispatch; relay decisions ([`Guards::relay`]) come after admission.
//!
//! Tables are keyed by `(DeviceId, u8)` where the `u8` is the ES-2.2
//! message-type code (see [`msg`]): the message-type enum belongs to the
//! wire module, and a plain code keeps unknown types countable.

pub mod content;
pub mod duplicate;
pub mod flood;
pub mod rate;
pub mod relay;
pub mod segment;

pub use content::{content_key, ContentCache, ContentKey, ContentVerdict, CONTENT_CACHE_LEN, CONTENT_WINDOW_S};
pub use duplicate::{DuplicateDetector, Freshness, SeqVerdict, SeqWindow};
pub use flood::{FloodConfig, FloodDetector, FloodVerdict};
pub use rate::{RateConfig, RateLimiter, RateRule};
pub use relay::{RelayCache, RelayConfig};
pub use segment::{Reassembled, Reassembler, SegError, SegLayout, SegmentHeader, Segments};

use crate::types::{DeviceId, Timestamp, MAX_NEIGHBORS};

/// ES-2.2 message-type codes the guards' tables use (ENROLLMENT_REQUEST is
/// ES-13.2's).
pub mod msg {
    use crate::wire::MessageType;

    /// TRACE_DEPOSIT, ES-2.3.
    pub const TRACE_DEPOSIT: u8 = MessageType::TraceDeposit.to_u8();
    /// CONSISTENCY_ALERT, ES-2.5.
    pub const CONSISTENCY_ALERT: u8 = MessageType::ConsistencyAlert.to_u8();
    /// PRESENCE_PULSE, ES-2.4.
    pub const PRESENCE_PULSE: u8 = MessageType::PresencePulse.to_u8();
    /// INFLAMMATION_QUERY, ES-2.6.
    pub const INFLAMMATION_QUERY: u8 = MessageType::InflammationQuery.to_u8();
    /// INFLAMMATION_REPLY, ES-2.7.
    pub const INFLAMMATION_REPLY: u8 = MessageType::InflammationReply.to_u8();
    /// VACCINE, ES-2.8.
    pub const VACCINE: u8 = MessageType::Vaccine.to_u8();
    /// PROFILE_SYNC, ES-2.11.
    pub const PROFILE_SYNC: u8 = MessageType::ProfileSync.to_u8();
    /// HEARTBEAT, ES-2.10.
    pub const HEARTBEAT: u8 = MessageType::Heartbeat.to_u8();
    /// DEATH_CERTIFICATE, ES-2.9.
    pub const DEATH_CERTIFICATE: u8 = MessageType::DeathCertificate.to_u8();
    /// ENROLLMENT_REQUEST, ES-13.2.
    pub const ENROLLMENT_REQUEST: u8 = MessageType::EnrollmentRequest.to_u8();
}

/// Devices the duplicate, flood and blacklist tables hold by default: twice
/// a Nano's neighbour table, since relayed frames come from beyond it.
pub const GUARD_DEVICES: usize = 2 * MAX_NEIGHBORS;
/// `(device, type)` rate buckets held by default: four active types for
/// each of [`GUARD_DEVICES`].
pub const RATE_BUCKETS: usize = 4 * GUARD_DEVICES;
/// Entries in the relay cache (ES-12.2, ES-15.4).
pub const RELAY_CACHE_LEN: usize = 32;

/// Why a guard dropped a frame; every drop has exactly one reason, so the
/// simulator can count honest traffic lost to each (SPEC-NOTES 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DropReason {
    /// The sender's token bucket for this type is empty (ES-15.1).
    RateLimited,
    /// This rejection crossed the flood threshold: the sender is now
    /// blacklisted (ES-15.3). Reported once per blacklisting.
    Flooded,
    /// The sender is blacklisted (ES-15.3); dropped before verification.
    Blacklisted,
    /// The sequence number was seen, or lies 1–32 steps behind the window
    /// (ES-15.2), or a frame without one carries signed content admitted or
    /// rate-limited within the content window (a relayed copy).
    Duplicate,
    /// The signed timestamp is older than the freshness window allows
    /// against the receiver's clock (SPEC-NOTES 17).
    Stale,
    /// The signed timestamp is further ahead of the receiver's clock than the
    /// skew tolerance (SPEC-NOTES 17, 18).
    FromFuture,
    /// The signed timestamp is older than the sender's last accepted one by
    /// more than the tolerance: a replay the sequence window let through
    /// (SPEC-NOTES 17).
    Replay,
    /// A table is full of state that cannot be dropped without losing
    /// protection; the frame is dropped rather than the state.
    TableFull,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 8] = [
        DropReason::RateLimited,
        DropReason::Flooded,
        DropReason::Blacklisted,
        DropReason::Duplicate,
        DropReason::Stale,
        DropReason::FromFuture,
        DropReason::Replay,
        DropReason::TableFull,
    ];

    fn index(self) -> usize {
        match self {
            DropReason::RateLimited => 0,
            DropReason::Flooded => 1,
            DropReason::Blacklisted => 2,
            DropReason::Duplicate => 3,
            DropReason::Stale => 4,
            DropReason::FromFuture => 5,
            DropReason::Replay => 6,
            DropReason::TableFull => 7,
        }
    }
}

/// Drops counted by reason, for the caller to keep next to its [`Guards`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DropCounts {
    counts: [u32; 8],
}

impl DropCounts {
    /// Counts one drop (saturating).
    pub fn record(&mut self, reason: DropReason) {
        if let Some(c) = self.counts.get_mut(reason.index()) {
            *c = c.saturating_add(1);
        }
    }
    /// Drops counted for `reason`.
    pub fn get(&self, reason: DropReason) -> u32 {
        self.counts.get(reason.index()).copied().unwrap_or(0)
    }
    /// All drops.
    pub fn total(&self) -> u32 {
        self.counts.iter().fold(0u32, |a, c| a.saturating_add(*c))
    }
}

/// What the guards need to know about a decoded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FrameMeta {
    /// The header's `sender_id` (unverified until step 3).
    pub sender: DeviceId,
    /// The ES-2.2 message-type code.
    pub msg_type: u8,
    /// The frame's sequence number, if its layout has one (TRACE_DEPOSIT).
    pub seq: Option<u8>,
    /// The signed *send* time, if the layout has one (TRACE_DEPOSIT,
    /// HEARTBEAT). Not VACCINE's `origin_timestamp` or a query's "when
    /// observed": those are old by design.
    pub timestamp: Option<Timestamp>,
}

/// All guard settings; the defaults are the spec's values plus the
/// freshness window that closes SPEC-NOTES 17.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GuardConfig {
    /// Per-type token buckets (ES-15.1).
    pub rate: RateConfig,
    /// Timestamp freshness; `None` is the spec's sequence window alone.
    pub freshness: Option<Freshness>,
    /// Flood threshold and blacklist (ES-15.3).
    pub flood: FloodConfig,
    /// Relay TTLs (ES-15.4).
    pub relay: RelayConfig,
    /// Seconds within which a frame without a sequence number whose signed
    /// content was already charged is a duplicate ([`content`]); `None`
    /// is the spec, which charges every copy.
    #[cfg_attr(feature = "serde", serde(default))]
    pub content_window: Option<u32>,
}

impl GuardConfig {
    /// The spec's values with the default [`Freshness`] window and the
    /// content window for relayed copies.
    pub fn recommended() -> Self {
        GuardConfig {
            freshness: Some(Freshness::default()),
            content_window: Some(CONTENT_WINDOW_S),
            ..GuardConfig::default()
        }
    }
}

/// A frame that passed [`Guards::precheck`] but whose signature has not been
/// checked yet. Only [`Guards::precheck`] makes one.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "verify the signature, then call signature_verified() and admit_verified()"]
pub struct Unverified {
    meta: FrameMeta,
}

impl Unverified {
    /// The frame's metadata, e.g. to look up the sender's key.
    pub fn meta(&self) -> &FrameMeta {
        &self.meta
    }

    /// Call only after the Ed25519 signature verified against the key
    /// registered for `meta().sender`; unknown senders never get here.
    pub fn signature_verified(self) -> Verified {
        Verified { meta: self.meta, content: None }
    }

    /// [`signature_verified`](Self::signature_verified) for a frame whose
    /// verified signature is `signature`, heard `direct`ly from its sender
    /// or over relays: a frame without a sequence number is then also
    /// checked against, and recorded in, the content cache.
    pub fn signature_verified_with(self, signature: &[u8], direct: bool) -> Verified {
        let content = if self.meta.seq.is_none() { content_key(signature) } else { None };
        Verified { meta: self.meta, content: content.map(|k| (k, direct)) }
    }
}

/// A prechecked frame whose signature verified; the only input
/// [`Guards::admit_verified`] accepts.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "pass to admit_verified()"]
pub struct Verified {
    meta: FrameMeta,
    content: Option<(ContentKey, bool)>,
}

impl Verified {
    /// The frame's metadata.
    pub fn meta(&self) -> &FrameMeta {
        &self.meta
    }
}

/// The ES-15 detectors combined, with one method per dispatch stage.
///
/// `D` sizes the per-device tables (duplicate trackers, flood counters,
/// blacklist), `B` the rate buckets.
#[derive(Clone, Debug)]
pub struct Guards<const D: usize = GUARD_DEVICES, const B: usize = RATE_BUCKETS> {
    config: GuardConfig,
    rate: RateLimiter<B>,
    dup: DuplicateDetector<D>,
    flood: FloodDetector<D>,
    relay: RelayCache<RELAY_CACHE_LEN>,
    content: ContentCache<CONTENT_CACHE_LEN>,
}

impl<const D: usize, const B: usize> Guards<D, B> {
    /// Empty tables with `config`.
    pub fn new(config: GuardConfig) -> Self {
        Guards {
            config,
            rate: RateLimiter::new(),
            dup: DuplicateDetector::new(),
            flood: FloodDetector::new(),
            relay: RelayCache::new(),
            content: ContentCache::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Changes settings; buckets read their limit at each check, so a new
    /// limit applies from the next frame.
    pub fn config_mut(&mut self) -> &mut GuardConfig {
        &mut self.config
    }

    /// Stage 2, before signature verification: drops blacklisted senders,
    /// stale or future timestamps, replays and duplicates. Charges nothing
    /// and creates no table entry (`&self`), so forged frames cost the
    /// victim nothing.
    pub fn precheck(&self, meta: FrameMeta, now: Timestamp) -> Result<Unverified, DropReason> {
        self.check_only(&meta, now)?;
        Ok(Unverified { meta })
    }

    /// Stage 4, after verification: re-checks (state may have moved since
    /// the precheck), drops a copy of content charged within the content
    /// window (a first direct copy after relayed ones of an admitted frame
    /// passes uncharged), then charges the rate bucket; a rate-limited
    /// frame feeds the flood counter. An admitted frame's sequence number
    /// and timestamp are recorded, and the content key of an admitted or
    /// rate-limited one.
    pub fn admit_verified(&mut self, frame: Verified, now: Timestamp) -> Result<(), DropReason> {
        let meta = frame.meta;
        self.check_only(&meta, now)?;
        let content = frame.content.zip(self.config.content_window);
        if let Some(((key, direct), window)) = content {
            match self.content.check(&key, direct, now, window) {
                ContentVerdict::New => {}
                ContentVerdict::Copy => return Err(DropReason::Duplicate),
                // Charged with the relayed copy already.
                ContentVerdict::FirstDirect(i) => {
                    self.content.mark_direct(i);
                    return Ok(());
                }
            }
        }
        let fresh = self.config.freshness;
        let dup_slot = if meta.seq.is_some() || meta.timestamp.is_some() {
            Some(self.dup.slot_for(meta.sender, meta.msg_type, now, fresh).ok_or(DropReason::TableFull)?)
        } else {
            None
        };
        let bucket =
            self.rate.slot_for(meta.sender, meta.msg_type, now, &self.config.rate).ok_or(DropReason::TableFull)?;
        if !self.rate.take(bucket, now, &self.config.rate) {
            if let Some(((key, direct), _)) = content {
                self.content.insert(key, direct, false, now);
            }
            return Err(match self.flood.record_rejection(meta.sender, now, &self.config.flood) {
                FloodVerdict::Blacklisted => DropReason::Flooded,
                FloodVerdict::Counted => DropReason::RateLimited,
            });
        }
        if let Some(slot) = dup_slot {
            self.dup.commit(slot, meta.seq, meta.timestamp, now);
        }
        if let Some(((key, direct), _)) = content {
            self.content.insert(key, direct, true, now);
        }
        Ok(())
    }

    /// Stage 5, for an admitted frame the node would relay: `Some(new_ttl)`
    /// if it is new to the relay cache and its `ttl` allows another hop.
    /// `key` is the caller's 4-byte hash of the frame (see [`RelayCache`]).
    pub fn relay(&mut self, key: [u8; 4], ttl: u8) -> Option<u8> {
        if !self.relay.check_and_insert(key) {
            return None;
        }
        relay::should_relay(ttl)
    }

    /// True while `sender` is blacklisted.
    pub fn is_blacklisted(&self, sender: DeviceId, now: Timestamp) -> bool {
        self.flood.is_blacklisted(sender, now)
    }

    /// Epoch boundary (ES-10.4): clears flood counters. Counters also roll
    /// over by themselves after one epoch, so this is optional.
    pub fn epoch_tick(&mut self) {
        self.flood.clear_counters();
    }

    /// The rate limiter, for inspection.
    pub fn rate(&self) -> &RateLimiter<B> {
        &self.rate
    }

    /// The duplicate detector, for inspection.
    pub fn duplicates(&self) -> &DuplicateDetector<D> {
        &self.dup
    }

    /// The flood detector, for inspection.
    pub fn flood(&self) -> &FloodDetector<D> {
        &self.flood
    }

    /// The content cache, for inspection.
    pub fn contents(&self) -> &ContentCache<CONTENT_CACHE_LEN> {
        &self.content
    }

    fn check_only(&self, meta: &FrameMeta, now: Timestamp) -> Result<(), DropReason> {
        if self.flood.is_blacklisted(meta.sender, now) {
            return Err(DropReason::Blacklisted);
        }
        self.dup.check(meta.sender, meta.msg_type, meta.seq, meta.timestamp, now, self.config.freshness)
    }
}

impl<const D: usize, const B: usize> Default for Guards<D, B> {
    fn default() -> Self {
        Guards::new(GuardConfig::recommended())
    }
}

/// A `(device, type)` stream as the rate and duplicate tables index it: 24
/// bits of the device id and the type. Equal keys are then compared in
/// full, so a shared key costs a look, never a wrong answer; the tables
/// scan 4-byte keys instead of their 20-odd-byte records at every frame.
pub(crate) fn stream_key(device: &DeviceId, msg_type: u8) -> u32 {
    u32::from_le_bytes([msg_type, device.0[0], device.0[1], device.0[2]])
}

/// `a - b` in seconds on a wrapping `u32` clock, as a signed difference:
/// positive when `a` is later. Correct while the two are within ~68 years.
pub(crate) fn secs_since(a: Timestamp, b: Timestamp) -> i64 {
    a.wrapping_sub(b) as i32 as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(n: u8) -> DeviceId {
        DeviceId([0xA0, n, 0, 0, 0, 0, 0, 0])
    }

    fn trace(n: u8, seq: u8, ts: Timestamp) -> FrameMeta {
        FrameMeta { sender: dev(n), msg_type: msg::TRACE_DEPOSIT, seq: Some(seq), timestamp: Some(ts) }
    }

    fn admit(g: &mut Guards, f: FrameMeta, now: Timestamp) -> Result<(), DropReason> {
        let u = g.precheck(f, now)?;
        g.admit_verified(u.signature_verified(), now)
    }

    #[test]
    fn forged_frames_charge_nothing() {
        // SPEC-NOTES 20: 15 + 51 forged traces a minute in the victim's name.
        let mut g: Guards = Guards::default();
        let t0 = 1_000_000;
        for i in 0..66u32 {
            // A forgery passes precheck, fails verification, is dropped.
            let forged = g.precheck(trace(1, i as u8, t0), t0);
            assert!(forged.is_ok());
        }
        assert!(g.rate().is_empty());
        assert!(g.duplicates().is_empty());
        assert!(!g.is_blacklisted(dev(1), t0));
        // The victim's own first trace is admitted.
        assert_eq!(admit(&mut g, trace(1, 0, t0), t0), Ok(()));
    }

    #[test]
    fn verified_flooder_is_rate_limited_then_blacklisted() {
        let mut g: Guards = Guards::default();
        let t0 = 1_000_000;
        let mut counts = DropCounts::default();
        for i in 0..66u32 {
            if let Err(d) = admit(&mut g, trace(2, i as u8, t0), t0) {
                counts.record(d);
            }
        }
        assert_eq!(counts.get(DropReason::RateLimited), 50);
        assert_eq!(counts.get(DropReason::Flooded), 1);
        assert_eq!(counts.total(), 51);
        assert_eq!(admit(&mut g, trace(2, 70, t0 + 1), t0 + 1), Err(DropReason::Blacklisted));
        assert_eq!(g.precheck(trace(2, 71, t0 + 299), t0 + 299).err(), Some(DropReason::Blacklisted));
        assert_eq!(admit(&mut g, trace(2, 72, t0 + 300), t0 + 300), Ok(()));
    }

    #[test]
    fn duplicates_and_replays_are_dropped_before_charging() {
        let mut g: Guards = Guards::default();
        let t0 = 5_000;
        assert_eq!(admit(&mut g, trace(3, 1, t0), t0), Ok(()));
        assert_eq!(admit(&mut g, trace(3, 1, t0), t0 + 1).err(), Some(DropReason::Duplicate));
        assert_eq!(g.rate().tokens(dev(3), msg::TRACE_DEPOSIT, t0 + 1, &g.config().rate), Some(14));
        assert_eq!(admit(&mut g, trace(3, 2, t0 - 100), t0 + 1).err(), Some(DropReason::Stale));
        assert_eq!(admit(&mut g, trace(3, 2, t0 + 40), t0 + 1).err(), Some(DropReason::FromFuture));
    }

    #[test]
    fn rate_limited_frame_is_not_marked_seen() {
        let mut cfg = GuardConfig::recommended();
        cfg.rate.set_limit(msg::TRACE_DEPOSIT, 1).unwrap();
        let mut g: Guards = Guards::new(cfg);
        assert_eq!(admit(&mut g, trace(4, 1, 100), 100), Ok(()));
        assert_eq!(admit(&mut g, trace(4, 2, 101), 101), Err(DropReason::RateLimited));
        // After refill the same frame (relayed late) is still admissible.
        assert_eq!(admit(&mut g, trace(4, 2, 101), 160), Ok(()));
    }

    fn pulse(n: u8) -> FrameMeta {
        FrameMeta { sender: dev(n), msg_type: msg::PRESENCE_PULSE, seq: None, timestamp: None }
    }

    fn sig(b: u8) -> [u8; 64] {
        [b; 64]
    }

    fn admit_copy(g: &mut Guards, f: FrameMeta, s: &[u8], direct: bool, now: Timestamp) -> Result<(), DropReason> {
        let u = g.precheck(f, now)?;
        g.admit_verified(u.signature_verified_with(s, direct), now)
    }

    fn pulse_tokens(g: &Guards, n: u8, now: Timestamp) -> Option<u16> {
        g.rate().tokens(dev(n), msg::PRESENCE_PULSE, now, &g.config().rate)
    }

    #[test]
    fn relayed_copies_of_sequence_less_frames_are_charged_once() {
        let mut g: Guards = Guards::default();
        let t0 = 10_000;
        assert_eq!(admit_copy(&mut g, pulse(5), &sig(1), true, t0), Ok(()));
        // 48 relayed copies of the same pulse (one per relaying neighbour).
        for _ in 0..48 {
            assert_eq!(admit_copy(&mut g, pulse(5), &sig(1), false, t0 + 1), Err(DropReason::Duplicate));
        }
        assert_eq!(pulse_tokens(&g, 5, t0 + 1), Some(7), "one token for the pulse, none for its copies");
        assert_eq!(g.flood().rejected_this_epoch(dev(5), t0 + 1, &g.config().flood), 0);
        // The sender's next pulse is another frame.
        assert_eq!(admit_copy(&mut g, pulse(5), &sig(2), false, t0 + 10), Ok(()));
        assert_eq!(pulse_tokens(&g, 5, t0 + 10), Some(6));
        // So is the same content signed by another sender.
        assert_eq!(admit_copy(&mut g, pulse(6), &sig(2), true, t0 + 10), Ok(()));
        // After the window an identical frame is new again.
        let later = t0 + 10 + CONTENT_WINDOW_S + 1;
        assert_eq!(admit_copy(&mut g, pulse(5), &sig(2), true, later), Ok(()));
    }

    #[test]
    fn spec_mode_charges_every_copy() {
        let mut g: Guards = Guards::new(GuardConfig::default());
        let mut counts = DropCounts::default();
        for _ in 0..20 {
            if let Err(d) = admit_copy(&mut g, pulse(5), &sig(1), false, 10_000) {
                counts.record(d);
            }
        }
        assert_eq!(counts.get(DropReason::RateLimited), 12, "8 admitted, the rest rate-limited");
        assert!(g.contents().is_empty());
    }

    #[test]
    fn first_direct_copy_after_relayed_ones_passes_uncharged() {
        let mut g: Guards = Guards::default();
        let t0 = 10_000;
        assert_eq!(admit_copy(&mut g, pulse(5), &sig(1), false, t0), Ok(()));
        assert_eq!(admit_copy(&mut g, pulse(5), &sig(1), false, t0), Err(DropReason::Duplicate));
        assert_eq!(admit_copy(&mut g, pulse(5), &sig(1), true, t0), Ok(()), "the neighbour is heard directly");
        assert_eq!(admit_copy(&mut g, pulse(5), &sig(1), true, t0), Err(DropReason::Duplicate));
        assert_eq!(pulse_tokens(&g, 5, t0), Some(7));
    }

    #[test]
    fn forged_copies_leave_no_content_key() {
        let mut g: Guards = Guards::default();
        let t0 = 10_000;
        // A forged copy stops at the signature check: nothing is recorded,
        // so the genuine frame with that signature is still admitted.
        for _ in 0..10 {
            let _forged = g.precheck(pulse(5), t0).unwrap();
        }
        assert!(g.contents().is_empty());
        assert_eq!(admit_copy(&mut g, pulse(5), &sig(1), true, t0), Ok(()));
        assert_eq!(g.contents().len(), 1);
    }

    #[test]
    fn copies_of_a_rate_limited_frame_feed_the_flood_counter_once() {
        let mut cfg = GuardConfig::recommended();
        cfg.rate.set_limit(msg::PRESENCE_PULSE, 1).unwrap();
        let mut g: Guards = Guards::new(cfg);
        let t0 = 10_000;
        assert_eq!(admit_copy(&mut g, pulse(5), &sig(1), true, t0), Ok(()));
        assert_eq!(admit_copy(&mut g, pulse(5), &sig(2), true, t0 + 1), Err(DropReason::RateLimited));
        // 60 relayed copies (more than the flood threshold of 50): duplicates.
        for _ in 0..60 {
            assert_eq!(admit_copy(&mut g, pulse(5), &sig(2), false, t0 + 1), Err(DropReason::Duplicate));
        }
        assert_eq!(admit_copy(&mut g, pulse(5), &sig(2), true, t0 + 2), Err(DropReason::Duplicate));
        assert_eq!(g.flood().rejected_this_epoch(dev(5), t0 + 2, &g.config().flood), 1);
        assert!(!g.is_blacklisted(dev(5), t0 + 2));
        // The sender's next frame after the refill is admitted.
        assert_eq!(admit_copy(&mut g, pulse(5), &sig(3), false, t0 + 61), Ok(()));
    }

    #[test]
    fn sequenced_frames_keep_the_sequence_window_only() {
        let mut g: Guards = Guards::default();
        let t0 = 5_000;
        assert_eq!(admit_copy(&mut g, trace(3, 1, t0), &sig(9), true, t0), Ok(()));
        assert!(g.contents().is_empty());
        assert_eq!(admit_copy(&mut g, trace(3, 1, t0), &sig(9), false, t0), Err(DropReason::Duplicate));
    }

    #[test]
    fn relay_decision() {
        let mut g: Guards = Guards::default();
        assert_eq!(g.relay([1, 2, 3, 4], 3), Some(2));
        assert_eq!(g.relay([1, 2, 3, 4], 3), None, "seen");
        assert_eq!(g.relay([5, 6, 7, 8], 0), None, "TTL 0");
    }

    #[test]
    fn drop_counts_by_reason() {
        let mut c = DropCounts::default();
        for d in DropReason::ALL {
            c.record(d);
        }
        c.record(DropReason::Stale);
        assert_eq!(c.get(DropReason::Stale), 2);
        assert_eq!(c.get(DropReason::TableFull), 1);
        assert_eq!(c.total(), 9);
    }
}
