//! Dust micro-DAG (ES-5.4): the node's own last traces and the latest entry
//! of each neighbour.
//!
//! The spec leaves the neighbour table's eviction open: when it is full, a
//! new neighbour replaces the one whose latest entry is oldest (ties: the
//! smaller device id), since that neighbour is the likeliest to be gone.
//! Hashes and parent links follow [`super`] (SPEC-NOTES 35).

use super::{is_after, DagEntry, Trace};
use crate::types::{DeviceId, Hash20, HashPrefix4, MAX_NEIGHBORS};
use heapless::{Deque, Vec};

/// Own traces a Dust node keeps (ES-5.4).
pub const DUST_OWN_TRACES: usize = 64;

/// What [`DustDag::record_neighbor`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum NeighborUpdate {
    /// A neighbour not seen before took a free slot.
    Added,
    /// The neighbour's previous latest entry was replaced.
    Replaced,
    /// The table was full; the neighbour with the oldest latest entry left.
    Evicted(DeviceId),
    /// Not newer than the entry held for that neighbour, so ignored.
    Stale,
}

/// The micro-DAG: `OWN` own traces in a ring, one entry per neighbour.
#[derive(Clone, Debug)]
pub struct DustDag<const OWN: usize = DUST_OWN_TRACES, const NB: usize = MAX_NEIGHBORS> {
    own: Deque<DagEntry, OWN>,
    neighbors: Vec<DagEntry, NB>,
}

impl<const OWN: usize, const NB: usize> Default for DustDag<OWN, NB> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const OWN: usize, const NB: usize> DustDag<OWN, NB> {
    /// An empty micro-DAG.
    pub const fn new() -> Self {
        DustDag { own: Deque::new(), neighbors: Vec::new() }
    }

    /// Records an own trace, dropping the oldest when the ring is full.
    pub fn record_own(&mut self, trace: &Trace) -> Hash20 {
        let parent = self.own.back().map(|e| e.hash).unwrap_or_default();
        let entry = DagEntry::new(trace, parent);
        if self.own.is_full() {
            self.own.pop_front();
        }
        // Room was made above unless OWN is 0, in which case nothing is kept.
        let _ = self.own.push_back(entry);
        entry.hash
    }

    /// Sequence number and `prev_hash` for the next own trace.
    pub fn next_own(&self) -> (u8, HashPrefix4) {
        match self.own.back() {
            Some(e) => (e.seq.wrapping_add(1), e.hash.prefix4()),
            None => (0, HashPrefix4::default()),
        }
    }

    /// Own traces, oldest first.
    pub fn own_traces(&self) -> impl Iterator<Item = &DagEntry> + '_ {
        self.own.iter()
    }

    /// The newest own trace's hash, zero when none.
    pub fn tip_hash(&self) -> Hash20 {
        self.own.back().map(|e| e.hash).unwrap_or_default()
    }

    /// Keeps `trace` as the latest of its sender if it is newer than what
    /// is held (wrapping timestamps).
    pub fn record_neighbor(&mut self, trace: &Trace) -> NeighborUpdate {
        if let Some(held) = self.neighbors.iter_mut().find(|e| e.device == trace.device) {
            if !is_after(trace.timestamp, held.timestamp) {
                return NeighborUpdate::Stale;
            }
            *held = DagEntry::new(trace, held.hash);
            return NeighborUpdate::Replaced;
        }
        let entry = DagEntry::new(trace, Hash20::default());
        if !self.neighbors.is_full() {
            let _ = self.neighbors.push(entry);
            return NeighborUpdate::Added;
        }
        let oldest = self.neighbors.iter_mut().reduce(|a, b| {
            if is_after(a.timestamp, b.timestamp) || (a.timestamp == b.timestamp && b.device < a.device) {
                b
            } else {
                a
            }
        });
        match oldest {
            Some(slot) => {
                let gone = slot.device;
                *slot = entry;
                NeighborUpdate::Evicted(gone)
            }
            None => NeighborUpdate::Stale,
        }
    }

    /// The latest entry held for `device`.
    pub fn neighbor(&self, device: DeviceId) -> Option<&DagEntry> {
        self.neighbors.iter().find(|e| e.device == device)
    }

    /// Every neighbour's latest entry.
    pub fn neighbors(&self) -> &[DagEntry] {
        &self.neighbors
    }

    /// Forgets a neighbour (death certificate); true if it was held.
    pub fn invalidate_device(&mut self, device: DeviceId) -> bool {
        let before = self.neighbors.len();
        self.neighbors.retain(|e| e.device != device);
        before != self.neighbors.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::QuantityType;
    use std::vec::Vec as StdVec;

    fn tr(d: u8, ts: u32, seq: u8) -> Trace {
        Trace {
            device: DeviceId([d; 8]),
            timestamp: ts,
            quantity: QuantityType::Temperature,
            reading: 2000,
            confidence: 255,
            weight: 255,
            seq,
            prev_hash: HashPrefix4::default(),
        }
    }

    #[test]
    fn own_ring_keeps_the_last_traces_linked() {
        let mut d = DustDag::<4, 2>::new();
        let mut hs = StdVec::new();
        for i in 0..6u8 {
            let (seq, prev) = d.next_own();
            assert_eq!(seq, i);
            let mut t = tr(1, 100 + i as u32, seq);
            t.prev_hash = prev;
            hs.push(d.record_own(&t));
        }
        let held: StdVec<u8> = d.own_traces().map(|e| e.seq).collect();
        assert_eq!(held, [2, 3, 4, 5]);
        assert_eq!(d.own_traces().last().unwrap().parent_hash, hs[4]);
        assert_eq!(d.tip_hash(), hs[5]);
    }

    #[test]
    fn neighbour_table_replaces_newer_and_evicts_oldest() {
        let mut d = DustDag::<4, 2>::new();
        assert_eq!(d.record_neighbor(&tr(1, 100, 0)), NeighborUpdate::Added);
        assert_eq!(d.record_neighbor(&tr(2, 90, 0)), NeighborUpdate::Added);
        assert_eq!(d.record_neighbor(&tr(1, 99, 1)), NeighborUpdate::Stale);
        assert_eq!(d.record_neighbor(&tr(1, 110, 1)), NeighborUpdate::Replaced);
        assert_eq!(d.record_neighbor(&tr(3, 120, 0)), NeighborUpdate::Evicted(DeviceId([2; 8])));
        assert!(d.neighbor(DeviceId([2; 8])).is_none());
        assert!(d.invalidate_device(DeviceId([1; 8])));
        assert_eq!(d.neighbors().len(), 1);
    }
}
