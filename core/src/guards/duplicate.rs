//! Duplicate and replay detection (ES-15.2), with the freshness check that
//! closes SPEC-NOTES 17.
//!
//! [`SeqWindow`] is the spec's 8-bit sequence number plus 32-bit bitmap,
//! unchanged: delta 0 is a duplicate, 1..=32 is looked up in the bitmap,
//! 33..=223 is "far ahead" and resets the window, ≥ 224 is an old frame.
//! That window alone accepts a frame 33–223 steps *behind* (it reads as far
//! ahead), i.e. any trace older than ~3 minutes at one per 5 s. The
//! [`DuplicateDetector`] therefore also checks the signed timestamp:
//! against the receiver's clock (not older than [`Freshness::max_age`], not
//! more than [`Freshness::skew`] ahead) and against the newest timestamp
//! accepted from the same sender (not older by more than `skew`). The
//! timestamp check runs first, so a stale frame never resets the window.
//!
//! `check` is read-only and `commit` records, so a forged frame cannot mark
//! a sequence number seen and get the genuine one dropped (SPEC-NOTES 20).

use super::{secs_since, stream_key, DropReason, GUARD_DEVICES};
use crate::types::{DeviceId, Timestamp};

/// The spec's per-sender sequence window (ES-15.2 `SeqTracker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SeqWindow {
    /// Base of the window.
    pub last_seq: u8,
    /// Bit `d - 1` set: `last_seq + d` was seen, for d in 1..=32.
    pub seen_bitmap: u32,
}

/// Where a sequence number falls in a [`SeqWindow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SeqVerdict {
    /// Delta 0, or a bitmap bit already set: a duplicate.
    Seen,
    /// Delta 1..=32, not seen yet: accepted, bit set.
    InWindow,
    /// Delta 33..=223: accepted, window reset to this number. Also where a
    /// frame 33–223 steps *behind* lands (SPEC-NOTES 17).
    FarAhead,
    /// Delta ≥ 224: taken for an old, wrapped-around frame and rejected.
    Behind,
}

impl SeqVerdict {
    /// The spec's `is_duplicate` result.
    pub fn is_duplicate(self) -> bool {
        matches!(self, SeqVerdict::Seen | SeqVerdict::Behind)
    }
}

impl SeqWindow {
    /// The spec's fresh tracker for a sender first seen with `seq`.
    pub fn starting_at(seq: u8) -> Self {
        SeqWindow { last_seq: seq.wrapping_sub(1), seen_bitmap: 0 }
    }

    /// Classifies `seq` without recording it.
    pub fn check(&self, seq: u8) -> SeqVerdict {
        let delta = seq.wrapping_sub(self.last_seq);
        match delta {
            0 => SeqVerdict::Seen,
            1..=32 => {
                if self.seen_bitmap & (1u32 << (delta - 1)) != 0 {
                    SeqVerdict::Seen
                } else {
                    SeqVerdict::InWindow
                }
            }
            33..=223 => SeqVerdict::FarAhead,
            _ => SeqVerdict::Behind,
        }
    }

    /// Records `seq` as the spec does for an accepted frame.
    pub fn commit(&mut self, seq: u8) {
        let delta = seq.wrapping_sub(self.last_seq);
        match self.check(seq) {
            SeqVerdict::InWindow => self.seen_bitmap |= 1u32 << (delta.wrapping_sub(1) & 31),
            SeqVerdict::FarAhead => {
                self.last_seq = seq;
                self.seen_bitmap = 0;
            }
            SeqVerdict::Seen | SeqVerdict::Behind => {}
        }
    }

    /// The spec's `is_duplicate` on an existing tracker: classify, record if
    /// accepted.
    pub fn is_duplicate(&mut self, seq: u8) -> bool {
        let v = self.check(seq);
        if !v.is_duplicate() {
            self.commit(seq);
        }
        v.is_duplicate()
    }
}

/// Timestamp freshness window (SPEC-NOTES 17, 18), in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Freshness {
    /// How far a timestamp may be ahead of the receiver's clock, and how far
    /// behind the sender's newest accepted one (clock skew, relay reorder).
    pub skew: u32,
    /// How far a timestamp may be behind the receiver's clock: skew plus
    /// delivery delay over relays and segmentation.
    pub max_age: u32,
}

impl Default for Freshness {
    /// ±30 s skew, 90 s maximum age: well inside the ~165 s at which the
    /// sequence window starts accepting replays (33 traces at 5 s).
    fn default() -> Self {
        Freshness { skew: 30, max_age: 90 }
    }
}

impl Freshness {
    /// Checks `ts` against the receiver's `now` only.
    pub fn check(&self, ts: Timestamp, now: Timestamp) -> Result<(), DropReason> {
        let age = secs_since(now, ts);
        if age > i64::from(self.max_age) {
            Err(DropReason::Stale)
        } else if -age > i64::from(self.skew) {
            Err(DropReason::FromFuture)
        } else {
            Ok(())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tracker {
    device: DeviceId,
    msg_type: u8,
    window: Option<SeqWindow>,
    last_ts: Option<Timestamp>,
    last_seen: Timestamp,
}

/// Sequence windows and newest timestamps for at most `N`
/// `(device, type)` streams (each type may number its own frames).
///
/// When full, with freshness on, the tracker idle longest is reused only if
/// idle more than `max_age + skew`: every frame it remembers is then Stale
/// anyway, so nothing is lost; otherwise the frame is dropped with
/// [`DropReason::TableFull`]. Without freshness (the spec alone) the
/// tracker idle longest is reused regardless: that mode has no lossless
/// choice.
#[derive(Clone, Debug, Default)]
pub struct DuplicateDetector<const N: usize = GUARD_DEVICES> {
    trackers: heapless::Vec<Tracker, N>,
    /// [`stream_key`] of each tracker, index for index.
    keys: heapless::Vec<u32, N>,
}

impl<const N: usize> DuplicateDetector<N> {
    /// An empty table.
    pub fn new() -> Self {
        DuplicateDetector { trackers: heapless::Vec::new(), keys: heapless::Vec::new() }
    }

    /// Read-only verdict for a frame: freshness, per-sender replay, then the
    /// sequence window. Unknown senders pass the last two.
    pub fn check(
        &self,
        device: DeviceId,
        msg_type: u8,
        seq: Option<u8>,
        ts: Option<Timestamp>,
        now: Timestamp,
        fresh: Option<Freshness>,
    ) -> Result<(), DropReason> {
        if let (Some(f), Some(ts)) = (fresh, ts) {
            f.check(ts, now)?;
        }
        let Some(t) = self.find(device, msg_type) else {
            return Ok(());
        };
        if let (Some(f), Some(ts), Some(last)) = (fresh, ts, t.last_ts) {
            if secs_since(last, ts) > i64::from(f.skew) {
                return Err(DropReason::Replay);
            }
        }
        if let (Some(seq), Some(w)) = (seq, t.window) {
            if w.check(seq).is_duplicate() {
                return Err(DropReason::Duplicate);
            }
        }
        Ok(())
    }

    /// `check`, then record the frame if accepted. For callers that verified
    /// the frame already; [`super::Guards`] splits the two.
    pub fn accept(
        &mut self,
        device: DeviceId,
        msg_type: u8,
        seq: Option<u8>,
        ts: Option<Timestamp>,
        now: Timestamp,
        fresh: Option<Freshness>,
    ) -> Result<(), DropReason> {
        self.check(device, msg_type, seq, ts, now, fresh)?;
        let slot = self.slot_for(device, msg_type, now, fresh).ok_or(DropReason::TableFull)?;
        self.commit(slot, seq, ts, now);
        Ok(())
    }

    /// The sequence window held for a stream.
    pub fn window(&self, device: DeviceId, msg_type: u8) -> Option<SeqWindow> {
        self.find(device, msg_type)?.window
    }

    /// The newest timestamp accepted from a stream.
    pub fn last_timestamp(&self, device: DeviceId, msg_type: u8) -> Option<Timestamp> {
        self.find(device, msg_type)?.last_ts
    }

    /// Streams tracked.
    pub fn len(&self) -> usize {
        self.trackers.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.trackers.is_empty()
    }

    fn find(&self, device: DeviceId, msg_type: u8) -> Option<&Tracker> {
        self.index(device, msg_type).and_then(|i| self.trackers.get(i))
    }

    fn index(&self, device: DeviceId, msg_type: u8) -> Option<usize> {
        let key = stream_key(&device, msg_type);
        self.keys
            .iter()
            .zip(&self.trackers)
            .position(|(k, t)| *k == key && t.device == device && t.msg_type == msg_type)
    }

    pub(crate) fn slot_for(
        &mut self,
        device: DeviceId,
        msg_type: u8,
        now: Timestamp,
        fresh: Option<Freshness>,
    ) -> Option<usize> {
        if let Some(i) = self.index(device, msg_type) {
            return Some(i);
        }
        let blank = Tracker { device, msg_type, window: None, last_ts: None, last_seen: now };
        let key = stream_key(&device, msg_type);
        if self.trackers.push(blank).is_ok() {
            // Same capacity as `trackers`, which just had room.
            let _ = self.keys.push(key);
            return Some(self.trackers.len() - 1);
        }
        let (i, idle) =
            self.trackers.iter().map(|t| secs_since(now, t.last_seen)).enumerate().max_by_key(|&(_, idle)| idle)?;
        if let Some(f) = fresh {
            if idle <= i64::from(f.max_age) + i64::from(f.skew) {
                return None;
            }
        }
        let slot = self.trackers.get_mut(i)?;
        *slot = blank;
        if let Some(k) = self.keys.get_mut(i) {
            *k = key;
        }
        Some(i)
    }

    pub(crate) fn commit(&mut self, slot: usize, seq: Option<u8>, ts: Option<Timestamp>, now: Timestamp) {
        let Some(t) = self.trackers.get_mut(slot) else {
            return;
        };
        if let Some(seq) = seq {
            t.window.get_or_insert_with(|| SeqWindow::starting_at(seq)).commit(seq);
        }
        if let Some(ts) = ts {
            t.last_ts = Some(match t.last_ts {
                Some(last) if secs_since(last, ts) > 0 => last,
                _ => ts,
            });
        }
        t.last_seen = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TD: u8 = super::super::msg::TRACE_DEPOSIT;

    fn dev(n: u8) -> DeviceId {
        DeviceId([n, 1, 2, 3, 4, 5, 6, 7])
    }

    #[test]
    fn devices_sharing_an_index_key_keep_their_own_windows() {
        let mut d: DuplicateDetector = DuplicateDetector::new();
        let (a, b) = (DeviceId([4, 4, 4, 0, 0, 0, 0, 1]), DeviceId([4, 4, 4, 0, 0, 0, 0, 2]));
        assert_eq!(stream_key(&a, TD), stream_key(&b, TD));
        assert_eq!(d.accept(a, TD, Some(7), None, 100, None), Ok(()));
        assert_eq!(d.accept(a, TD, Some(7), None, 100, None), Err(DropReason::Duplicate));
        assert_eq!(d.window(b, TD), None);
        assert_eq!(d.accept(b, TD, Some(7), None, 100, None), Ok(()));
        assert_eq!(d.accept(b, TD, Some(7), None, 100, None), Err(DropReason::Duplicate));
        assert_eq!(d.len(), 2);
    }

    /// ES-15.2 `is_duplicate`, transcribed literally.
    fn spec_is_duplicate(tracker: &mut Option<(u8, u32)>, seq_num: u8) -> bool {
        let t = tracker.get_or_insert((seq_num.wrapping_sub(1), 0));
        let delta = seq_num.wrapping_sub(t.0);
        if delta == 0 {
            return true;
        }
        if delta <= 32 {
            let bit = 1u32 << (delta - 1);
            if t.1 & bit != 0 {
                return true;
            }
            t.1 |= bit;
            return false;
        }
        if delta > 32 && delta < 224 {
            t.0 = seq_num;
            t.1 = 0;
            return false;
        }
        true
    }

    #[test]
    fn window_cases() {
        let mut w = SeqWindow::starting_at(10);
        assert!(!w.is_duplicate(10));
        assert!(w.is_duplicate(10));
        assert!(!w.is_duplicate(12));
        assert!(!w.is_duplicate(11), "reordered within the window");
        assert!(w.is_duplicate(9), "the base itself");
        assert!(w.is_duplicate(9 + 224), "224 ahead = 32 behind the base");
        assert!(!w.is_duplicate(200), "182 ahead: far ahead");
        let mut w = SeqWindow { last_seq: 9, seen_bitmap: 0 };
        assert_eq!(w.check(9 + 33), SeqVerdict::FarAhead);
        assert!(!w.is_duplicate(9 + 33));
        assert_eq!(w, SeqWindow { last_seq: 42, seen_bitmap: 0 });
    }

    #[test]
    fn window_wraps_255_to_0() {
        let mut w = SeqWindow::starting_at(254);
        for s in [254u8, 255, 0, 1] {
            assert!(!w.is_duplicate(s), "{s}");
        }
        for s in [254u8, 255, 0, 1] {
            assert!(w.is_duplicate(s), "{s}");
        }
    }

    #[test]
    fn spec_window_accepts_replay_33_to_223_behind() {
        // SPEC-NOTES 17, pinned: the window alone takes a 3-minute-old trace.
        // Traces 0..=100: the base jumps 255 -> 32 -> 65 -> 98.
        let mut w = SeqWindow::starting_at(0);
        for s in 0..=100u8 {
            assert!(!w.is_duplicate(s));
        }
        assert_eq!(w.last_seq, 98);
        // 36 behind the newest (3 min at 5 s) is 34 behind the base.
        assert_eq!(w.check(64), SeqVerdict::FarAhead);
        // 1..=32 behind the base is rejected.
        assert_eq!(w.check(66), SeqVerdict::Behind);
        assert!(!w.is_duplicate(64));
        assert_eq!(w.last_seq, 64, "and the replay reset the window");
    }

    #[test]
    fn freshness_rejects_three_minute_replay() {
        let t0 = 1_707_800_000u32;
        let mut d: DuplicateDetector = DuplicateDetector::new();
        let f = Some(Freshness::default());
        for s in 0..=100u8 {
            let ts = t0 + 5 * u32::from(s);
            assert_eq!(d.accept(dev(1), TD, Some(s), Some(ts), ts, f), Ok(()));
        }
        let now = t0 + 500;
        let replay = (Some(64u8), Some(t0 + 320));
        // Spec window alone (freshness off) takes it.
        let mut spec_only: DuplicateDetector = DuplicateDetector::new();
        for s in 0..=100u8 {
            let ts = t0 + 5 * u32::from(s);
            spec_only.accept(dev(1), TD, Some(s), Some(ts), ts, None).unwrap();
        }
        assert_eq!(spec_only.accept(dev(1), TD, replay.0, replay.1, now, None), Ok(()));
        // With freshness: stale against the clock...
        assert_eq!(d.check(dev(1), TD, replay.0, replay.1, now, f), Err(DropReason::Stale));
        // ...and a replay against the sender's newest, even with a lax max age.
        let lax = Some(Freshness { skew: 30, max_age: 3600 });
        assert_eq!(d.check(dev(1), TD, replay.0, replay.1, now, lax), Err(DropReason::Replay));
        // The rejected replay did not reset the window.
        assert_eq!(d.window(dev(1), TD).unwrap().check(101), SeqVerdict::InWindow);
    }

    #[test]
    fn freshness_bounds_and_wrap() {
        let f = Freshness::default();
        let now = 1000;
        assert_eq!(f.check(910, now), Ok(()));
        assert_eq!(f.check(909, now), Err(DropReason::Stale));
        assert_eq!(f.check(1030, now), Ok(()));
        assert_eq!(f.check(1031, now), Err(DropReason::FromFuture));
        // Across the 2106 wrap.
        assert_eq!(f.check(u32::MAX - 5, 10), Ok(()));
        assert_eq!(f.check(20, u32::MAX - 5), Ok(()));
        assert_eq!(f.check(40, u32::MAX - 5), Err(DropReason::FromFuture));
    }

    #[test]
    fn check_does_not_record() {
        let mut d: DuplicateDetector = DuplicateDetector::new();
        let f = Some(Freshness::default());
        assert_eq!(d.check(dev(1), TD, Some(5), Some(100), 100, f), Ok(()));
        assert!(d.is_empty());
        d.accept(dev(1), TD, Some(5), Some(100), 100, f).unwrap();
        assert_eq!(d.check(dev(1), TD, Some(5), Some(100), 100, f), Err(DropReason::Duplicate));
        assert_eq!(d.check(dev(1), 0x30, Some(5), Some(100), 100, f), Ok(()), "per type");
    }

    #[test]
    fn full_table_evicts_only_what_freshness_covers() {
        let f = Some(Freshness::default());
        let mut d: DuplicateDetector<2> = DuplicateDetector::new();
        d.accept(dev(1), TD, Some(1), Some(0), 0, f).unwrap();
        d.accept(dev(2), TD, Some(1), Some(50), 50, f).unwrap();
        assert_eq!(d.accept(dev(3), TD, Some(1), Some(120), 120, f), Err(DropReason::TableFull));
        // dev 1 idle 121 s > 90 + 30: any of its frames is Stale now.
        assert_eq!(d.accept(dev(3), TD, Some(1), Some(121), 121, f), Ok(()));
        assert!(d.window(dev(1), TD).is_none());
        // Spec-only mode evicts the idlest regardless.
        let mut s: DuplicateDetector<1> = DuplicateDetector::new();
        s.accept(dev(1), TD, Some(1), None, 0, None).unwrap();
        assert_eq!(s.accept(dev(2), TD, Some(1), None, 1, None), Ok(()));
    }

    proptest! {
        #[test]
        fn window_matches_spec_transcription(
            first in any::<u8>(),
            steps in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut spec = None;
            spec_is_duplicate(&mut spec, first);
            let mut w = SeqWindow::starting_at(first);
            prop_assert!(!w.is_duplicate(first));
            for s in steps {
                prop_assert_eq!(w.is_duplicate(s), spec_is_duplicate(&mut spec, s));
            }
        }

        #[test]
        fn in_order_stream_never_dropped(start in any::<u8>(), t0 in any::<u32>(), n in 1usize..600) {
            let f = Some(Freshness::default());
            let mut d: DuplicateDetector = DuplicateDetector::new();
            for i in 0..n {
                let seq = start.wrapping_add(i as u8);
                let ts = t0.wrapping_add(5 * i as u32);
                prop_assert_eq!(d.accept(dev(1), TD, Some(seq), Some(ts), ts, f), Ok(()));
                prop_assert_eq!(d.check(dev(1), TD, Some(seq), Some(ts), ts, f), Err(DropReason::Duplicate));
            }
        }
    }
}
