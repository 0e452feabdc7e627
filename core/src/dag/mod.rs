//! Local DAG (ES-5.1 – ES-5.3) and the Dust micro-DAG (ES-5.4, [`dust`]).
//!
//! Resolutions:
//! - SPEC-NOTES 35: an entry's hash covers only what the sender put in the
//!   trace ([`Trace::hash_input`]), not the receiver's local parent, so the
//!   same trace hashes the same on every node and tips of equal DAGs agree.
//!   The per-device parent link is kept locally in `parent_hash`. Sync
//!   re-hashes every entry and also asks a caller-supplied verifier (the
//!   signature check of the original signed frame): a hash that matches its
//!   own contents proves nothing about who wrote them.
//! - SPEC-NOTES 18 / 25: GC uses the receiver's `now`; the score
//!   weight × recency is computed in `u64` with recency clamped to
//!   0 ..= 5 × T½, so it neither overflows nor underflows; ties are broken by
//!   hash so every node keeps the same entries.
//! - ES-5.1: an entry is 62 bytes, not 58: it also keeps the sender's 4-byte
//!   `prev_hash`, without which the sender-content hash could not be checked
//!   again after a reboot or a sync. 4096 × 62 B still fits ES-14's 256 KiB
//!   DAG partition.
//!
//! Entries are kept in time order (oldest first, arrival order among equal
//! timestamps until a score GC, hash order after it), so time GC, "latest
//! by device" and sync insertion of historical entries all work on one
//! ordered slice.

pub mod dust;

use crate::types::{
    le, Confidence, DeviceId, Hash20, HashPrefix4, QuantityType, Reading, Timestamp, Weight, MAX_DAG_ENTRIES,
    T_HALF_EPHEMERAL,
};
use sha1::{Digest, Sha1};

/// Entries older than this many seconds are collected (5 × T½ ephemeral).
pub const GC_MAX_AGE: u32 = 5 * T_HALF_EPHEMERAL;
/// How far ahead of the receiver's clock an entry may be stamped (seconds).
pub const DEFAULT_SKEW_TOLERANCE: u32 = 30;
/// Hashes a node sends to find the divergence point (ES-5.3: N = 32).
pub const SYNC_RECENT: usize = 32;

/// The sender-provided content of one TRACE_DEPOSIT (ES-2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Trace {
    /// The sender.
    pub device: DeviceId,
    /// The sender's timestamp.
    pub timestamp: Timestamp,
    /// What was measured.
    pub quantity: QuantityType,
    /// The reading, in the quantity's wire unit.
    pub reading: Reading,
    /// Confidence (255 for directly signed traces, ES-16.2).
    pub confidence: Confidence,
    /// The weight the sender claims for itself (SPEC-NOTES 7: a claim only).
    pub weight: Weight,
    /// The sender's wrapping sequence number.
    pub seq: u8,
    /// First 4 bytes of the sender's previous own entry hash.
    pub prev_hash: HashPrefix4,
}

impl Trace {
    /// The DAG content of a TRACE_DEPOSIT body from `device`.
    pub fn from_deposit(device: DeviceId, t: &crate::wire::TraceDeposit) -> Self {
        Trace {
            device,
            timestamp: t.timestamp,
            quantity: t.quantity,
            reading: t.reading,
            confidence: t.confidence,
            weight: t.weight,
            seq: t.seq,
            prev_hash: t.prev_hash,
        }
    }

    /// Length of [`Trace::hash_input`].
    pub const HASH_INPUT_LEN: usize = 22;

    /// The bytes the entry hash covers: `device_id` (8) ‖ `timestamp` (u32
    /// LE) ‖ `quantity` (1) ‖ `reading` (i16 LE) ‖ `confidence` (1) ‖
    /// `weight` (1) ‖ `seq` (1) ‖ `prev_hash` (4). No receiver state.
    pub fn hash_input(&self) -> [u8; Self::HASH_INPUT_LEN] {
        let mut b = [0u8; Self::HASH_INPUT_LEN];
        b[0..8].copy_from_slice(&self.device.0);
        b[8..12].copy_from_slice(&self.timestamp.to_le_bytes());
        b[12] = self.quantity.to_u8();
        b[13..15].copy_from_slice(&self.reading.to_le_bytes());
        b[15] = self.confidence;
        b[16] = self.weight;
        b[17] = self.seq;
        b[18..22].copy_from_slice(&self.prev_hash.0);
        b
    }

    /// SHA-1 of [`Trace::hash_input`]: the same on every node.
    pub fn hash(&self) -> Hash20 {
        let digest = Sha1::digest(self.hash_input());
        let mut out = [0u8; 20];
        out.copy_from_slice(digest.as_slice());
        Hash20(out)
    }
}

/// One DAG entry (ES-5.1), plus the sender's `prev_hash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DagEntry {
    /// [`Trace::hash`] of the content.
    pub hash: Hash20,
    /// Hash of the previous entry by the same device in this node's DAG,
    /// zero if none (local, not hashed).
    pub parent_hash: Hash20,
    /// The sender.
    pub device: DeviceId,
    /// The sender's timestamp.
    pub timestamp: Timestamp,
    /// What was measured.
    pub quantity: QuantityType,
    /// The reading.
    pub reading: Reading,
    /// Confidence.
    pub confidence: Confidence,
    /// The sender's claimed weight, kept as sent so the hash can be checked.
    pub weight: Weight,
    /// The sender's sequence number.
    pub seq: u8,
    /// The sender's link to its previous trace, as sent.
    pub prev_hash: HashPrefix4,
}

/// Why stored bytes could not be read back as an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DecodeError {
    /// Fewer than [`DagEntry::LEN`] bytes: a torn flash write or a short read.
    Truncated,
}

impl DagEntry {
    /// Bytes per entry: hash 20, parent 20, device 8, timestamp 4, quantity
    /// 1, reading 2, confidence 1, weight 1, seq 1, prev_hash 4.
    pub const LEN: usize = 62;

    /// An entry for `trace` whose local parent is `parent`.
    pub fn new(trace: &Trace, parent: Hash20) -> Self {
        DagEntry {
            hash: trace.hash(),
            parent_hash: parent,
            device: trace.device,
            timestamp: trace.timestamp,
            quantity: trace.quantity,
            reading: trace.reading,
            confidence: trace.confidence,
            weight: trace.weight,
            seq: trace.seq,
            prev_hash: trace.prev_hash,
        }
    }

    /// The sender-provided content.
    pub fn trace(&self) -> Trace {
        Trace {
            device: self.device,
            timestamp: self.timestamp,
            quantity: self.quantity,
            reading: self.reading,
            confidence: self.confidence,
            weight: self.weight,
            seq: self.seq,
            prev_hash: self.prev_hash,
        }
    }

    /// True when `hash` is the hash of the content.
    pub fn hash_is_valid(&self) -> bool {
        self.trace().hash() == self.hash
    }

    /// The flash/sync layout, little-endian (ES-1.1).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..20].copy_from_slice(&self.hash.0);
        b[20..40].copy_from_slice(&self.parent_hash.0);
        b[40..48].copy_from_slice(&self.device.0);
        b[48..52].copy_from_slice(&self.timestamp.to_le_bytes());
        b[52] = self.quantity.to_u8();
        b[53..55].copy_from_slice(&self.reading.to_le_bytes());
        b[55] = self.confidence;
        b[56] = self.weight;
        b[57] = self.seq;
        b[58..62].copy_from_slice(&self.prev_hash.0);
        b
    }

    /// Reads the layout of [`DagEntry::to_bytes`]; does not check the hash
    /// (see [`DagEntry::hash_is_valid`]).
    pub fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        let t = DecodeError::Truncated;
        Ok(DagEntry {
            hash: Hash20::from_slice(b.get(0..20).ok_or(t)?).ok_or(t)?,
            parent_hash: Hash20::from_slice(b.get(20..40).ok_or(t)?).ok_or(t)?,
            device: DeviceId::from_slice(b.get(40..48).ok_or(t)?).ok_or(t)?,
            timestamp: le::u32_at(b, 48).ok_or(t)?,
            quantity: QuantityType::from_u8(*b.get(52).ok_or(t)?),
            reading: le::i16_at(b, 53).ok_or(t)?,
            confidence: *b.get(55).ok_or(t)?,
            weight: *b.get(56).ok_or(t)?,
            seq: *b.get(57).ok_or(t)?,
            prev_hash: HashPrefix4::from_slice(b.get(58..62).ok_or(t)?).ok_or(t)?,
        })
    }
}

/// Why a trace was not added to the DAG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AppendError {
    /// Stamped further ahead of the receiver's clock than the skew
    /// tolerance: it would never be collected by time (SPEC-NOTES 18).
    FromFuture,
    /// Older than [`GC_MAX_AGE`] at the receiver's clock: the next GC would
    /// drop it anyway.
    Expired,
    /// An entry with the same hash is already held; a second copy would
    /// become its own parent.
    Duplicate,
}

/// What one garbage collection removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GcReport {
    /// Entries older than [`GC_MAX_AGE`].
    pub by_time: usize,
    /// Entries dropped by the weight × recency score when still full.
    pub by_score: usize,
}

/// What [`LocalDag::sync_accept`] did with the offered entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SyncReport {
    /// Inserted as historical entries.
    pub accepted: usize,
    /// Hash did not match the content: corrupted in flight or forged.
    pub corrupted: usize,
    /// Already held.
    pub duplicate: usize,
    /// Outside the receiver's time window (too old or too far ahead).
    pub out_of_window: usize,
    /// The caller's verifier (signature of the original frame) refused it.
    pub unverified: usize,
}

/// True when `a` is later than `b` on the wrapping u32 clock.
fn is_after(a: Timestamp, b: Timestamp) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// `now − ts`, 0 for a timestamp ahead of `now`.
fn age(now: Timestamp, ts: Timestamp) -> u32 {
    let d = now.wrapping_sub(ts) as i32;
    if d < 0 {
        0
    } else {
        d as u32
    }
}

/// The ES-5.2 GC score, weight × (timestamp − cutoff), in `u64` and with
/// the recency clamped to 0 ..= [`GC_MAX_AGE`] (SPEC-NOTES 25).
pub fn gc_score(weight: Weight, timestamp: Timestamp, now: Timestamp) -> u64 {
    let recency = GC_MAX_AGE.saturating_sub(age(now, timestamp));
    weight as u64 * recency as u64
}

/// A node's local DAG with room for `N` entries.
#[derive(Clone)]
pub struct LocalDag<const N: usize = MAX_DAG_ENTRIES> {
    entries: heapless::Vec<DagEntry, N>,
    /// [`hash_key`] of each entry, index for index: [`LocalDag::contains`]
    /// scans these 2 N bytes instead of 64 N bytes of entries. (An append
    /// looks only at the entries stamped like the new one.)
    keys: heapless::Vec<u16, N>,
    /// [`device_key`] of each entry, index for index: "newest of a device"
    /// (a node's own latest reading, at every received trace) walks back
    /// over 2-byte keys instead of one cache line per entry.
    devices: heapless::Vec<u16, N>,
    skew: u32,
}

impl<const N: usize> core::fmt::Debug for LocalDag<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalDag").field("entries", &self.entries).field("skew", &self.skew).finish()
    }
}

/// The first two bytes of an entry hash, as [`LocalDag`] indexes them.
fn hash_key(h: &Hash20) -> u16 {
    u16::from_le_bytes([h.0[0], h.0[1]])
}

/// The first two bytes of a device id, as [`LocalDag`] indexes them.
fn device_key(d: &DeviceId) -> u16 {
    u16::from_le_bytes([d.0[0], d.0[1]])
}

/// Keys compared per step of [`LocalDag::contains`]: a block without an
/// early exit inside compiles to vector compares.
const KEY_BLOCK: usize = 32;

impl<const N: usize> Default for LocalDag<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LocalDag<N> {
    /// An empty DAG with the default skew tolerance.
    pub fn new() -> Self {
        LocalDag {
            entries: heapless::Vec::new(),
            keys: heapless::Vec::new(),
            devices: heapless::Vec::new(),
            skew: DEFAULT_SKEW_TOLERANCE,
        }
    }

    /// Sets how far ahead of `now` an entry may be stamped (seconds).
    pub fn set_skew_tolerance(&mut self, seconds: u32) {
        self.skew = seconds.min(i32::MAX as u32);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The fixed capacity `N`.
    pub fn capacity(&self) -> usize {
        N
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> &[DagEntry] {
        &self.entries
    }

    /// Hash of the newest entry, zero when empty. Equal DAGs have equal
    /// tips on every node (SPEC-NOTES 35).
    pub fn tip_hash(&self) -> Hash20 {
        self.entries.last().map(|e| e.hash).unwrap_or_default()
    }

    /// True when an entry with this hash is held.
    pub fn contains(&self, hash: &Hash20) -> bool {
        let key = hash_key(hash);
        let mut base = 0;
        for block in self.keys.chunks(KEY_BLOCK) {
            if block.iter().fold(false, |hit, k| hit | (*k == key)) {
                let held = block
                    .iter()
                    .zip(base..)
                    .any(|(k, i)| *k == key && self.entries.get(i).is_some_and(|e| e.hash == *hash));
                if held {
                    return true;
                }
            }
            base += block.len();
        }
        false
    }

    /// Rebuilds the key indexes after entries were removed or reordered.
    fn reindex(&mut self) {
        self.keys.clear();
        self.devices.clear();
        for e in &self.entries {
            // All have room for N.
            let _ = self.keys.push(hash_key(&e.hash));
            let _ = self.devices.push(device_key(&e.device));
        }
    }

    /// The newest entry of `device`.
    pub fn latest_by_device(&self, device: DeviceId) -> Option<&DagEntry> {
        self.by_device(device).next()
    }

    /// Entries of `device` and `quantity`, newest first.
    pub fn recent_by_device(&self, device: DeviceId, quantity: QuantityType) -> impl Iterator<Item = &DagEntry> + '_ {
        self.by_device(device).filter(move |e| e.quantity == quantity)
    }

    /// Entries of `device`, newest first; an entry is read only when its
    /// device key matches.
    fn by_device(&self, device: DeviceId) -> impl Iterator<Item = &DagEntry> + '_ {
        let key = device_key(&device);
        self.devices
            .iter()
            .zip(self.entries.iter())
            .rev()
            .filter_map(move |(k, e)| (*k == key && e.device == device).then_some(e))
    }

    /// The sequence number and `prev_hash` for this node's next own trace:
    /// one past its newest entry (wrapping at 255), linked to it.
    pub fn next_own(&self, me: DeviceId) -> (u8, HashPrefix4) {
        match self.latest_by_device(me) {
            Some(e) => (e.seq.wrapping_add(1), e.hash.prefix4()),
            None => (0, HashPrefix4::default()),
        }
    }

    /// The hashes of the newest `k` entries, newest first (ES-5.3 step 3).
    pub fn recent_hashes(&self, k: usize) -> impl Iterator<Item = Hash20> + '_ {
        self.entries.iter().rev().take(k).map(|e| e.hash)
    }

    /// Records a trace (ES-5.2 `dag_append`) at the receiver's `now`,
    /// collecting garbage first when full. Returns the entry hash.
    pub fn append(&mut self, trace: &Trace, now: Timestamp) -> Result<Hash20, AppendError> {
        self.check_window(trace.timestamp, now)?;
        let entry = DagEntry::new(trace, Hash20::default());
        if self.holds_at(&entry.hash, entry.timestamp) {
            return Err(AppendError::Duplicate);
        }
        self.insert(entry, now);
        Ok(entry.hash)
    }

    /// [`LocalDag::contains`] for an entry stamped `ts`: the hash covers the
    /// timestamp, so a copy has the same one, and the entries are in time
    /// order, so only the run stamped `ts` needs a look. A new trace is
    /// among the newest, which makes this a few steps from the end instead
    /// of a pass over every key.
    fn holds_at(&self, hash: &Hash20, ts: Timestamp) -> bool {
        let end = self.time_position(ts);
        self.entries
            .get(..end)
            .unwrap_or_default()
            .iter()
            .rev()
            .take_while(|e| e.timestamp == ts)
            .any(|e| e.hash == *hash)
    }

    /// Where an entry stamped `ts` goes in time order: after every entry not
    /// later than it.
    fn time_position(&self, ts: Timestamp) -> usize {
        self.entries.iter().rposition(|e| !is_after(e.timestamp, ts)).map_or(0, |i| i + 1)
    }

    fn check_window(&self, ts: Timestamp, now: Timestamp) -> Result<(), AppendError> {
        if ts.wrapping_sub(now) as i32 > self.skew as i32 {
            return Err(AppendError::FromFuture);
        }
        if age(now, ts) > GC_MAX_AGE {
            return Err(AppendError::Expired);
        }
        Ok(())
    }

    /// Inserts at its place in time order, links it to the previous entry
    /// of its device and relinks the next one of its device to it.
    fn insert(&mut self, mut entry: DagEntry, now: Timestamp) {
        if self.entries.len() >= N {
            self.gc(now);
        }
        let pos = self.time_position(entry.timestamp);
        // The device keys find the neighbouring entries of the same device
        // without reading the entries in between.
        let key = device_key(&entry.device);
        let (before, after) = self.entries.split_at_mut(pos);
        let (keys_before, keys_after) = self.devices.split_at(pos.min(self.devices.len()));
        entry.parent_hash = keys_before
            .iter()
            .zip(before.iter())
            .rev()
            .find(|(k, e)| **k == key && e.device == entry.device)
            .map(|(_, e)| e.hash)
            .unwrap_or_default();
        if let Some((_, next)) =
            keys_after.iter().zip(after.iter_mut()).find(|(k, e)| **k == key && e.device == entry.device)
        {
            next.parent_hash = entry.hash;
        }
        // After a GC at least a quarter of N is free (N > 0), so this fits.
        if self.entries.insert(pos, entry).is_ok() {
            let _ = self.keys.insert(pos, hash_key(&entry.hash));
            let _ = self.devices.insert(pos, device_key(&entry.device));
        }
    }

    /// ES-5.2 `dag_gc` at the receiver's `now`: drops entries older than
    /// [`GC_MAX_AGE`], then, if still full, keeps the best 75 % by
    /// [`gc_score`] (ties: smaller hash kept), in time order.
    pub fn gc(&mut self, now: Timestamp) -> GcReport {
        let before = self.entries.len();
        self.entries.retain(|e| age(now, e.timestamp) <= GC_MAX_AGE);
        let by_time = before - self.entries.len();
        let mut by_score = 0;
        if self.entries.len() >= N {
            let keep = self.entries.len() * 3 / 4;
            self.entries.sort_unstable_by(|a, b| {
                gc_score(b.weight, b.timestamp, now)
                    .cmp(&gc_score(a.weight, a.timestamp, now))
                    .then_with(|| a.hash.cmp(&b.hash))
            });
            by_score = self.entries.len() - keep;
            self.entries.truncate(keep);
            self.entries.sort_unstable_by(|a, b| {
                (a.timestamp.wrapping_sub(now) as i32)
                    .cmp(&(b.timestamp.wrapping_sub(now) as i32))
                    .then_with(|| a.hash.cmp(&b.hash))
            });
        }
        if self.entries.len() != before || by_score > 0 {
            self.reindex();
        }
        GcReport { by_time, by_score }
    }

    /// Drops every entry of `device` (ES-10.3 death certificate); returns
    /// how many.
    pub fn invalidate_device(&mut self, device: DeviceId) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.device != device);
        if self.entries.len() != before {
            self.reindex();
        }
        before - self.entries.len()
    }

    /// ES-5.3 step 4, the answering side: entries to send to a neighbour
    /// whose newest hashes are `their_recent`, oldest first, at most
    /// `limit`. They start after the newest entry the neighbour also holds;
    /// with none in common, they are the newest `limit` entries. Repeating
    /// the exchange catches a neighbour up step by step.
    pub fn sync_offer<'a>(
        &'a self,
        their_recent: &'a [Hash20],
        limit: usize,
    ) -> impl Iterator<Item = &'a DagEntry> + 'a {
        let start = match self.entries.iter().rposition(|e| their_recent.contains(&e.hash)) {
            Some(i) => i + 1,
            None => self.entries.len().saturating_sub(limit),
        };
        self.entries
            .get(start..)
            .unwrap_or_default()
            .iter()
            .filter(move |e| !their_recent.contains(&e.hash))
            .take(limit)
    }

    /// ES-5.3 step 5: takes entries a neighbour sent. Each is re-hashed
    /// (corrupted ones are counted and skipped), skipped when already held
    /// or outside the time window, and then must pass `verify`, which the
    /// caller backs with the signature of the original signed frame
    /// (SPEC-NOTES 35: an entry that only hashes to itself is not trusted).
    /// Accepted entries are inserted at their place in time order with
    /// local parent links.
    pub fn sync_accept<I, V>(&mut self, entries: I, now: Timestamp, mut verify: V) -> SyncReport
    where
        I: IntoIterator<Item = DagEntry>,
        V: FnMut(&DagEntry) -> bool,
    {
        let mut r = SyncReport::default();
        for e in entries {
            if !e.hash_is_valid() {
                r.corrupted += 1;
            } else if self.contains(&e.hash) {
                r.duplicate += 1;
            } else if self.check_window(e.timestamp, now).is_err() {
                r.out_of_window += 1;
            } else if !verify(&e) {
                r.unverified += 1;
            } else {
                self.insert(e, now);
                r.accepted += 1;
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const T0: Timestamp = 1_707_800_000;

    fn dev(n: u8) -> DeviceId {
        DeviceId([n, 1, 2, 3, 4, 5, 6, 7])
    }

    fn tr(d: u8, ts: Timestamp, seq: u8, w: Weight) -> Trace {
        Trace {
            device: dev(d),
            timestamp: ts,
            quantity: QuantityType::Temperature,
            reading: 2300 + seq as i16,
            confidence: 255,
            weight: w,
            seq,
            prev_hash: HashPrefix4::default(),
        }
    }

    #[test]
    fn entry_layout_round_trips_and_is_62_bytes() {
        let e = DagEntry::new(&tr(1, T0, 7, 200), Hash20([9; 20]));
        let b = e.to_bytes();
        assert_eq!(b.len(), 62);
        assert_eq!(&b[48..52], &T0.to_le_bytes());
        assert_eq!(DagEntry::from_bytes(&b), Ok(e));
        assert_eq!(DagEntry::from_bytes(&b[..61]), Err(DecodeError::Truncated));
    }

    #[test]
    fn hash_is_the_same_on_every_node() {
        let t = tr(1, T0, 3, 200);
        let mut a = LocalDag::<16>::new();
        let mut b = LocalDag::<16>::new();
        a.append(&tr(2, T0 - 5, 0, 100), T0).unwrap();
        a.append(&tr(1, T0 - 4, 2, 200), T0).unwrap();
        let ha = a.append(&t, T0).unwrap();
        let hb = b.append(&t, T0).unwrap();
        assert_eq!(ha, hb);
        assert_ne!(a.latest_by_device(dev(1)).unwrap().parent_hash, b.latest_by_device(dev(1)).unwrap().parent_hash);
        assert_eq!(a.tip_hash(), b.tip_hash());
    }

    #[test]
    fn parents_link_per_device_even_out_of_order() {
        let mut d = LocalDag::<16>::new();
        let h1 = d.append(&tr(1, T0, 1, 200), T0).unwrap();
        let h3 = d.append(&tr(1, T0 + 10, 3, 200), T0 + 10).unwrap();
        d.append(&tr(2, T0 + 11, 0, 200), T0 + 11).unwrap();
        let h2 = d.append(&tr(1, T0 + 5, 2, 200), T0 + 11).unwrap();
        let chain: Vec<_> =
            d.recent_by_device(dev(1), QuantityType::Temperature).map(|e| (e.hash, e.parent_hash)).collect();
        assert_eq!(chain, [(h3, h2), (h2, h1), (h1, Hash20::default())]);
        assert_eq!(d.next_own(dev(1)), (4, h3.prefix4()));
    }

    #[test]
    fn gc_by_time_uses_the_receiver_clock() {
        let mut d = LocalDag::<4>::new();
        for i in 0..4u8 {
            d.append(&tr(i, T0 + i as u32, i, 200), T0 + 3).unwrap();
        }
        let now = T0 + 3002;
        d.append(&tr(9, now, 0, 200), now).unwrap();
        assert_eq!(d.len(), 3, "entries at T0 and T0+1 are older than 3000 s");
        assert_eq!(d.entries()[0].timestamp, T0 + 2);
        assert_eq!(d.append(&tr(8, now + 31, 0, 200), now), Err(AppendError::FromFuture));
        assert_eq!(d.append(&tr(8, now - 3001, 0, 200), now), Err(AppendError::Expired));
    }

    #[test]
    fn gc_by_score_keeps_three_quarters_without_overflow() {
        let mut d = LocalDag::<8>::new();
        let now: Timestamp = 40;
        for i in 0..8u8 {
            let ts = now.wrapping_sub(100).wrapping_add(i as u32 * 10);
            d.append(&tr(i, ts, i, if i % 2 == 0 { 255 } else { 10 }), now).unwrap();
        }
        let rep = d.gc(now);
        assert_eq!(rep, GcReport { by_time: 0, by_score: 2 });
        let kept: Vec<u8> = d.entries().iter().map(|e| e.device.0[0]).collect();
        assert_eq!(kept, [0, 2, 4, 5, 6, 7]);
        assert!(gc_score(255, now + 20, now) <= 255 * GC_MAX_AGE as u64);
        assert_eq!(gc_score(255, now.wrapping_sub(5000), now), 0);
    }

    #[test]
    fn sync_rejects_corrupted_and_unverified_entries() {
        let mut a = LocalDag::<32>::new();
        let mut b = LocalDag::<32>::new();
        for i in 0..6u8 {
            let t = tr(1, T0 + i as u32 * 5, i, 200);
            a.append(&t, T0 + 30).unwrap();
            if i < 3 {
                b.append(&t, T0 + 30).unwrap();
            }
        }
        let theirs: Vec<Hash20> = b.recent_hashes(SYNC_RECENT).collect();
        let mut offer: Vec<DagEntry> = a.sync_offer(&theirs, 16).copied().collect();
        assert_eq!(offer.len(), 3);
        offer[0].reading = 9999;
        let forged = DagEntry::new(&tr(6, T0 + 29, 0, 255), Hash20::default());
        offer.push(forged);
        offer.push(offer[1]);
        let rep = b.sync_accept(offer, T0 + 30, |e| e.device != dev(6));
        assert_eq!(rep, SyncReport { accepted: 2, corrupted: 1, duplicate: 1, out_of_window: 0, unverified: 1 });
        assert_eq!(b.len(), 5);
    }

    #[test]
    fn seq_wraps_and_parent_links_continue() {
        let mut d = LocalDag::<16>::new();
        let mut hashes = Vec::new();
        for (i, seq) in [254u8, 255, 0, 1].into_iter().enumerate() {
            let (next, prev) = d.next_own(dev(1));
            if i > 0 {
                assert_eq!(next, seq);
            }
            let mut t = tr(1, T0 + i as u32, seq, 255);
            t.prev_hash = prev;
            hashes.push(d.append(&t, T0 + i as u32).unwrap());
        }
        assert_eq!(d.next_own(dev(1)).0, 2);
        assert_eq!(d.entries()[2].parent_hash, hashes[1]);
        assert_eq!(d.entries()[2].prev_hash, hashes[1].prefix4());
    }

    #[test]
    fn invalidate_device_and_duplicates() {
        let mut d = LocalDag::<8>::new();
        let t = tr(1, T0, 0, 1);
        d.append(&t, T0).unwrap();
        assert_eq!(d.append(&t, T0), Err(AppendError::Duplicate));
        d.append(&tr(2, T0, 0, 1), T0).unwrap();
        assert_eq!(d.invalidate_device(dev(1)), 1);
        assert!(d.latest_by_device(dev(1)).is_none());
    }

    #[test]
    fn newest_by_device_is_exact_when_device_keys_collide() {
        let a = DeviceId([7, 1, 0, 0, 0, 0, 0, 1]);
        let b = DeviceId([7, 1, 0, 0, 0, 0, 0, 2]);
        assert_eq!(device_key(&a), device_key(&b));
        let mut d = LocalDag::<16>::new();
        let mut t = tr(0, T0, 4, 200);
        t.device = a;
        d.append(&t, T0 + 2).unwrap();
        t.device = b;
        t.timestamp = T0 + 1;
        t.seq = 9;
        d.append(&t, T0 + 2).unwrap();
        assert_eq!(d.latest_by_device(a).map(|e| e.seq), Some(4));
        assert_eq!(d.latest_by_device(b).map(|e| e.seq), Some(9));
        assert_eq!(d.next_own(a).0, 5);
        assert_eq!(d.recent_by_device(b, QuantityType::Humidity).count(), 0);
        assert_eq!(d.invalidate_device(b), 1);
        assert!(d.latest_by_device(b).is_none());
        assert_eq!(d.latest_by_device(a).map(|e| e.seq), Some(4));
    }

    #[test]
    fn contains_is_exact_when_index_keys_collide() {
        let mut d = LocalDag::<512>::new();
        let mut seen: Vec<(u16, Trace)> = Vec::new();
        let twin = (0..2000u32).map(|i| tr((i % 200) as u8, T0 + i / 200, (i / 200) as u8, 100)).find_map(|t| {
            let k = hash_key(&t.hash());
            match seen.iter().find(|(sk, _)| *sk == k) {
                Some((_, first)) => Some((*first, t)),
                None => {
                    seen.push((k, t));
                    None
                }
            }
        });
        let (first, second) = twin.expect("2000 hashes share a 16-bit key somewhere");
        assert_ne!(first.hash(), second.hash());
        d.append(&first, T0 + 10).unwrap();
        assert!(d.contains(&first.hash()));
        assert!(!d.contains(&second.hash()), "same key, different hash");
        d.append(&second, T0 + 10).unwrap();
        assert!(d.contains(&second.hash()));
        assert_eq!(d.invalidate_device(first.device), 1);
        assert!(!d.contains(&first.hash()));
        assert!(d.contains(&second.hash()));
    }

    proptest! {
        #[test]
        fn entry_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 62)) {
            let e = DagEntry::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&e.to_bytes()[..], &bytes[..]);
        }

        #[test]
        fn dag_stays_time_ordered_bounded_and_linked(
            steps in proptest::collection::vec((0u32..400, -20i32..20, 0u8..6, any::<u8>()), 1..200)
        ) {
            let mut d = LocalDag::<16>::new();
            let mut now = u32::MAX - 20_000;
            for (i, (dt, off, dv, w)) in steps.into_iter().enumerate() {
                now = now.wrapping_add(dt);
                let t = tr(dv, now.wrapping_add(off as u32), i as u8, w);
                let _ = d.append(&t, now);
                prop_assert!(d.len() <= 16);
                for pair in d.entries().windows(2) {
                    prop_assert!(!is_after(pair[0].timestamp, pair[1].timestamp));
                }
                let keys: Vec<u16> = d.entries().iter().map(|e| hash_key(&e.hash)).collect();
                prop_assert_eq!(&d.keys[..], &keys[..]);
                let devices: Vec<u16> = d.entries().iter().map(|e| device_key(&e.device)).collect();
                prop_assert_eq!(&d.devices[..], &devices[..]);
                for dv in 0..6u8 {
                    let slow = d.entries().iter().rev().find(|e| e.device == dev(dv));
                    prop_assert_eq!(d.latest_by_device(dev(dv)), slow);
                }
                for e in d.entries() {
                    prop_assert!(d.contains(&e.hash));
                    prop_assert!(e.hash_is_valid());
                    if let Some(p) = d.entries().iter().find(|p| p.hash == e.parent_hash) {
                        prop_assert_eq!(p.device, e.device);
                        prop_assert!(!is_after(p.timestamp, e.timestamp));
                    }
                }
            }
        }

        #[test]
        fn append_refuses_exactly_the_held_copies_and_links_like_a_full_scan(
            steps in proptest::collection::vec((0u32..60, -20i32..20, 0u8..6, 0u8..4, any::<bool>()), 1..300)
        ) {
            let mut d = LocalDag::<64>::new();
            let mut sent: Vec<Trace> = Vec::new();
            let mut now = u32::MAX - 2_000;
            for (i, (dt, off, dv, seq, again)) in steps.into_iter().enumerate() {
                now = now.wrapping_add(dt);
                // Either a copy of an earlier trace or a new one; few seqs
                // and readings make equal timestamps of a device common.
                let t = match sent.get(i % sent.len().max(1)) {
                    Some(old) if again => *old,
                    _ => tr(dv, now.wrapping_add(off as u32), seq, 100),
                };
                let held = d.contains(&t.hash());
                let before: Vec<DagEntry> = d.entries().to_vec();
                match d.append(&t, now) {
                    Err(AppendError::Duplicate) => prop_assert!(held),
                    Err(_) => prop_assert_eq!(d.entries(), &before[..]),
                    Ok(h) => {
                        prop_assert!(!held);
                        sent.push(t);
                        let at = d.entries().iter().position(|e| e.hash == h).unwrap();
                        let parent = d.entries()[..at].iter().rev().find(|e| e.device == t.device);
                        prop_assert_eq!(d.entries()[at].parent_hash, parent.map(|e| e.hash).unwrap_or_default());
                        if let Some(next) = d.entries()[at + 1..].iter().find(|e| e.device == t.device) {
                            prop_assert_eq!(next.parent_hash, h);
                        }
                    }
                }
            }
        }
    }
}
