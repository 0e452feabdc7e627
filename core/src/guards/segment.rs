//! BLE legacy-advertising segmentation and reassembly (ES-12.2).
//!
//! A frame longer than one 31-byte legacy advertising payload is cut into
//! segments, each a PDU of at most [`SEG_PDU_LEN`] bytes.
//!
//! v1 (the spec's header, 4 bytes, 27 payload bytes per PDU):
//!
//! ```text
//! 0  segment_index   u8   0..total-1 (bit 7 clear)
//! 1  total_segments  u8   1..
//! 2  msg_id          u16 LE, chosen by the sender per frame
//! 4  payload         27 bytes (the last segment: 1..=27)
//! ```
//!
//! The v1 header names no sender (SPEC-NOTES 42), so two neighbours that
//! happen to use the same `msg_id` within 500 ms get their segments mixed;
//! the signature check then rejects the result. v2 adds the sender's
//! 2-byte short id (`device_id[0..2]`, little-endian u16) and marks itself
//! with bit 7 of the first byte, so one receiver reads both:
//!
//! ```text
//! 0  0x80 | segment_index  u8   index 0..=126 in bits 0-6
//! 1  total_segments        u8   1..=127
//! 2  msg_id                u16 LE
//! 4  sender_short          u16 LE (device_id[0..2])
//! 6  payload               25 bytes (the last segment: 1..=25)
//! ```
//!
//! A v1 receiver sees a v2 PDU's index as ≥ 128 ≥ total and drops it as
//! [`SegError::BadIndex`]; no v1 frame of [`MAX_FRAME_LEN`] bytes or less
//! needs an index ≥ 128. The segments belong in non-connectable
//! advertising (ADV_NONCONN_IND, SPEC-NOTES 42), which is the radio layer's
//! business; nothing here depends on it.
//!
//! Reassembly is keyed by `(sender_short or none for v1, msg_id)`, holds at
//! most `R` (default 8) frames in progress for all neighbours together, and
//! discards one not complete `timeout_ms` (default 500) after its first
//! segment arrived. A new reassembly when all slots are busy evicts the one
//! started earliest: it has the least time left, and refusing new ones
//! instead would let eight junk first-segments block all reassembly. Time
//! is a monotonic `u64` in milliseconds, passed in.

use crate::types::le;

/// Bytes in a legacy advertising payload (ES-12.2).
pub const SEG_PDU_LEN: usize = 31;
/// v1 header length.
pub const SEG_HEADER_V1: usize = 4;
/// v2 header length.
pub const SEG_HEADER_V2: usize = 6;
/// Bit 7 of byte 0 marks a v2 header.
pub const SEG_V2_FLAG: u8 = 0x80;
/// Largest frame the reassembler takes by default: the extended-advertising
/// payload in which ES-12.2 says every message fits.
pub const MAX_FRAME_LEN: usize = 255;
/// Concurrent reassemblies held by default (ES-12.2).
pub const MAX_REASSEMBLIES: usize = 8;
/// Reassembly timeout in milliseconds (ES-12.2).
pub const REASSEMBLY_TIMEOUT_MS: u64 = 500;

/// Why a frame could not be segmented or a PDU was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SegError {
    /// An empty frame has nothing to segment.
    EmptyFrame,
    /// The frame needs more segments than the header can number, or more
    /// bytes than the reassembler holds.
    FrameTooLong,
    /// The PDU is shorter than its header.
    TooShort,
    /// The PDU is longer than a legacy advertising payload.
    TooLong,
    /// `total_segments` is 0, or more than a maximum-size frame needs.
    BadTotal,
    /// `segment_index` is not below `total_segments`.
    BadIndex,
    /// A segment other than the last is not full, or the last is empty:
    /// the frame's bytes would not line up.
    BadLength,
    /// A segment names another total than earlier segments of the same
    /// `(sender, msg_id)`; it is dropped and the reassembly kept.
    InconsistentTotal,
    /// This segment of the reassembly arrived already (advertising repeats).
    DuplicateSegment,
}

/// Which header to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SegLayout {
    /// The spec's 4-byte header.
    V1,
    /// 6-byte header with the sender's short id.
    V2 {
        /// `device_id[0..2]` as a little-endian u16.
        sender_short: u16,
    },
}

impl SegLayout {
    /// Header bytes.
    pub const fn header_len(self) -> usize {
        match self {
            SegLayout::V1 => SEG_HEADER_V1,
            SegLayout::V2 { .. } => SEG_HEADER_V2,
        }
    }

    /// Frame bytes per full segment: 27 (v1) or 25 (v2).
    pub const fn payload_len(self) -> usize {
        SEG_PDU_LEN - self.header_len()
    }

    /// Most segments the header can number.
    pub const fn max_total(self) -> usize {
        match self {
            SegLayout::V1 => u8::MAX as usize,
            SegLayout::V2 { .. } => (!SEG_V2_FLAG) as usize,
        }
    }

    /// Segments a frame of `len` bytes needs.
    pub const fn segments_for(self, len: usize) -> usize {
        len.div_ceil(self.payload_len())
    }
}

/// A parsed segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SegmentHeader {
    /// 0-based position of this segment.
    pub index: u8,
    /// Segments in the frame.
    pub total: u8,
    /// Sender's frame id.
    pub msg_id: u16,
    /// The sender's short id (v2 only).
    pub sender_short: Option<u16>,
}

impl SegmentHeader {
    /// Splits a PDU into header and payload; checks only what the PDU alone
    /// shows (length, total ≠ 0, index < total).
    pub fn parse(pdu: &[u8]) -> Result<(SegmentHeader, &[u8]), SegError> {
        if pdu.len() > SEG_PDU_LEN {
            return Err(SegError::TooLong);
        }
        let b0 = *pdu.first().ok_or(SegError::TooShort)?;
        let v2 = b0 & SEG_V2_FLAG != 0;
        let hlen = if v2 { SEG_HEADER_V2 } else { SEG_HEADER_V1 };
        let payload = pdu.get(hlen..).ok_or(SegError::TooShort)?;
        let total = *pdu.get(1).ok_or(SegError::TooShort)?;
        let msg_id = le::u16_at(pdu, 2).ok_or(SegError::TooShort)?;
        let (index, sender_short) =
            if v2 { (b0 & !SEG_V2_FLAG, Some(le::u16_at(pdu, 4).ok_or(SegError::TooShort)?)) } else { (b0, None) };
        if total == 0 {
            return Err(SegError::BadTotal);
        }
        if index >= total {
            return Err(SegError::BadIndex);
        }
        Ok((SegmentHeader { index, total, msg_id, sender_short }, payload))
    }

    /// The layout this header was written in.
    pub fn layout(&self) -> SegLayout {
        match self.sender_short {
            None => SegLayout::V1,
            Some(sender_short) => SegLayout::V2 { sender_short },
        }
    }

    fn write(&self, out: &mut heapless::Vec<u8, SEG_PDU_LEN>) {
        let [m0, m1] = self.msg_id.to_le_bytes();
        let bytes: &[u8] = match self.sender_short {
            None => &[self.index, self.total, m0, m1],
            Some(s) => {
                let [s0, s1] = s.to_le_bytes();
                &[SEG_V2_FLAG | self.index, self.total, m0, m1, s0, s1]
            }
        };
        // At most 6 bytes into an empty 31-byte vector.
        let _ = out.extend_from_slice(bytes);
    }
}

/// One segment PDU.
pub type SegmentPdu = heapless::Vec<u8, SEG_PDU_LEN>;

/// The PDUs of one frame, in order; see [`segment`].
#[derive(Clone, Debug)]
pub struct Segments<'a> {
    frame: &'a [u8],
    layout: SegLayout,
    msg_id: u16,
    total: u8,
    next: u8,
}

/// Cuts `frame` into PDUs with header `layout`. No allocation: the
/// iterator borrows `frame` and yields one PDU at a time.
pub fn segment(frame: &[u8], msg_id: u16, layout: SegLayout) -> Result<Segments<'_>, SegError> {
    if frame.is_empty() {
        return Err(SegError::EmptyFrame);
    }
    let total = layout.segments_for(frame.len());
    if total > layout.max_total() {
        return Err(SegError::FrameTooLong);
    }
    Ok(Segments { frame, layout, msg_id, total: total as u8, next: 0 })
}

impl Segments<'_> {
    /// Segments in the frame.
    pub fn total(&self) -> u8 {
        self.total
    }
}

impl Iterator for Segments<'_> {
    type Item = SegmentPdu;

    fn next(&mut self) -> Option<SegmentPdu> {
        if self.next >= self.total {
            return None;
        }
        let p = self.layout.payload_len();
        let start = usize::from(self.next) * p;
        let chunk = self.frame.get(start..)?;
        let chunk = chunk.get(..p.min(chunk.len()))?;
        let header = SegmentHeader {
            index: self.next,
            total: self.total,
            msg_id: self.msg_id,
            sender_short: match self.layout {
                SegLayout::V1 => None,
                SegLayout::V2 { sender_short } => Some(sender_short),
            },
        };
        let mut pdu = SegmentPdu::new();
        header.write(&mut pdu);
        pdu.extend_from_slice(chunk).ok()?;
        self.next += 1;
        Some(pdu)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.total.saturating_sub(self.next));
        (n, Some(n))
    }
}

impl ExactSizeIterator for Segments<'_> {}

/// A reassembled frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassembled<const M: usize = MAX_FRAME_LEN> {
    /// The sender's short id (v2), `None` for v1.
    pub sender_short: Option<u16>,
    /// The sender's frame id.
    pub msg_id: u16,
    /// The frame bytes, ready for the wire decoder.
    pub frame: heapless::Vec<u8, M>,
}

/// Counters of what the reassembler did, for the simulator's reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReassemblyStats {
    /// Frames completed.
    pub completed: u32,
    /// Reassemblies discarded at the timeout.
    pub timed_out: u32,
    /// Reassemblies evicted for a new one while all slots were busy.
    pub evicted: u32,
    /// PDUs refused with a [`SegError`].
    pub rejected: u32,
}

#[derive(Clone, Debug)]
struct Slot<const M: usize> {
    sender_short: Option<u16>,
    msg_id: u16,
    total: u8,
    started_ms: u64,
    received: [u32; 8],
    count: u8,
    len: usize,
    buf: [u8; M],
}

impl<const M: usize> Slot<M> {
    fn has(&self, index: u8) -> bool {
        let i = usize::from(index);
        self.received.get(i / 32).is_some_and(|w| w & (1 << (i % 32)) != 0)
    }
    fn mark(&mut self, index: u8) {
        let i = usize::from(index);
        if let Some(w) = self.received.get_mut(i / 32) {
            *w |= 1 << (i % 32);
        }
    }
}

/// Reassembly buffers for `R` frames of up to `M` bytes.
#[derive(Clone, Debug)]
pub struct Reassembler<const R: usize = MAX_REASSEMBLIES, const M: usize = MAX_FRAME_LEN> {
    slots: heapless::Vec<Slot<M>, R>,
    timeout_ms: u64,
    stats: ReassemblyStats,
}

impl<const R: usize, const M: usize> Default for Reassembler<R, M> {
    fn default() -> Self {
        Reassembler::new(REASSEMBLY_TIMEOUT_MS)
    }
}

impl<const R: usize, const M: usize> Reassembler<R, M> {
    /// Empty buffers discarding incomplete frames after `timeout_ms`.
    ///
    /// At the 1000 ms sleep-phase advertising interval a 4-segment frame
    /// needs ≥ 3 s, so the spec's 500 ms never completes one there: pick at
    /// least `(total - 1) × interval` plus jitter.
    pub fn new(timeout_ms: u64) -> Self {
        Reassembler { slots: heapless::Vec::new(), timeout_ms, stats: ReassemblyStats::default() }
    }

    /// What happened so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Reassemblies in progress.
    pub fn active(&self) -> usize {
        self.slots.len()
    }

    /// True if a reassembly for `(sender_short, msg_id)` is in progress.
    pub fn in_progress(&self, sender_short: Option<u16>, msg_id: u16) -> bool {
        self.slots.iter().any(|s| s.sender_short == sender_short && s.msg_id == msg_id)
    }

    /// Discards reassemblies older than the timeout; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let timeout = self.timeout_ms;
        let before = self.slots.len();
        self.slots.retain(|s| now_ms.saturating_sub(s.started_ms) < timeout);
        let gone = before - self.slots.len();
        self.stats.timed_out = self.stats.timed_out.saturating_add(gone as u32);
        gone
    }

    /// Takes one received PDU: `Ok(Some(frame))` when it completes one,
    /// `Ok(None)` when stored. Untrusted input: never panics.
    pub fn push(&mut self, pdu: &[u8], now_ms: u64) -> Result<Option<Reassembled<M>>, SegError> {
        let r = self.push_inner(pdu, now_ms);
        match &r {
            Ok(Some(_)) => self.stats.completed = self.stats.completed.saturating_add(1),
            Ok(None) => {}
            Err(_) => self.stats.rejected = self.stats.rejected.saturating_add(1),
        }
        r
    }

    fn push_inner(&mut self, pdu: &[u8], now_ms: u64) -> Result<Option<Reassembled<M>>, SegError> {
        let (h, payload) = SegmentHeader::parse(pdu)?;
        let layout = h.layout();
        let p = layout.payload_len();
        if usize::from(h.total) > layout.segments_for(M) {
            return Err(SegError::BadTotal);
        }
        let start = usize::from(h.index) * p;
        let last = h.index + 1 == h.total;
        if payload.is_empty() || (!last && payload.len() != p) {
            return Err(SegError::BadLength);
        }
        let end = start + payload.len();
        if end > M {
            return Err(SegError::FrameTooLong);
        }
        if h.total == 1 {
            return Ok(Some(Reassembled {
                sender_short: h.sender_short,
                msg_id: h.msg_id,
                frame: heapless::Vec::from_slice(payload).map_err(|_| SegError::FrameTooLong)?,
            }));
        }
        self.expire(now_ms);
        let i = match self.slots.iter().position(|s| s.sender_short == h.sender_short && s.msg_id == h.msg_id) {
            Some(i) => i,
            None => self.open(&h, now_ms).ok_or(SegError::BadTotal)?,
        };
        let slot = self.slots.get_mut(i).ok_or(SegError::BadTotal)?;
        if slot.total != h.total {
            return Err(SegError::InconsistentTotal);
        }
        if slot.has(h.index) {
            return Err(SegError::DuplicateSegment);
        }
        slot.buf.get_mut(start..end).ok_or(SegError::FrameTooLong)?.copy_from_slice(payload);
        slot.mark(h.index);
        slot.count += 1;
        if last {
            slot.len = end;
        }
        if slot.count < slot.total {
            return Ok(None);
        }
        let done = self.slots.swap_remove(i);
        let frame =
            done.buf.get(..done.len).and_then(|b| heapless::Vec::from_slice(b).ok()).ok_or(SegError::FrameTooLong)?;
        Ok(Some(Reassembled { sender_short: done.sender_short, msg_id: done.msg_id, frame }))
    }

    /// Opens a slot, evicting the reassembly started earliest if all are
    /// busy. `None` only when `R` is 0.
    fn open(&mut self, h: &SegmentHeader, now_ms: u64) -> Option<usize> {
        let slot = Slot {
            sender_short: h.sender_short,
            msg_id: h.msg_id,
            total: h.total,
            started_ms: now_ms,
            received: [0; 8],
            count: 0,
            len: 0,
            buf: [0; M],
        };
        match self.slots.push(slot) {
            Ok(()) => Some(self.slots.len() - 1),
            Err(slot) => {
                let (i, _) = self.slots.iter().enumerate().min_by_key(|(_, s)| s.started_ms)?;
                *self.slots.get_mut(i)? = slot;
                self.stats.evicted = self.stats.evicted.saturating_add(1);
                Some(i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
    }

    #[test]
    fn trace_deposit_is_four_segments() {
        let f = frame(90, 1);
        let pdus: Vec<SegmentPdu> = segment(&f, 0x1234, SegLayout::V1).unwrap().collect();
        assert_eq!(pdus.len(), 4);
        assert_eq!(&pdus[0][..4], &[0, 4, 0x34, 0x12]);
        assert_eq!(pdus.iter().map(|p| p.len()).collect::<Vec<_>>(), [31, 31, 31, 13]);
        // PRESENCE_PULSE (78 B): 3 segments, as ES-12.2 says.
        assert_eq!(segment(&frame(78, 0), 1, SegLayout::V1).unwrap().total(), 3);
        // v2: 25 bytes each, 90 B still 4 segments; 78 B now 4.
        let v2: Vec<SegmentPdu> = segment(&f, 7, SegLayout::V2 { sender_short: 0xA1B2 }).unwrap().collect();
        assert_eq!(v2.len(), 4);
        assert_eq!(&v2[1][..6], &[0x81, 4, 7, 0, 0xB2, 0xA1]);
        assert_eq!(segment(&frame(78, 0), 1, SegLayout::V2 { sender_short: 0 }).unwrap().total(), 4);
    }

    #[test]
    fn reassembles_out_of_order() {
        let f = frame(90, 3);
        let mut pdus: Vec<SegmentPdu> = segment(&f, 9, SegLayout::V1).unwrap().collect();
        pdus.reverse();
        let mut r: Reassembler = Reassembler::default();
        for (i, p) in pdus.iter().enumerate() {
            let out = r.push(p, 100 + i as u64 * 100).unwrap();
            if i < 3 {
                assert!(out.is_none());
            } else {
                let out = out.unwrap();
                assert_eq!(out.frame.as_slice(), f.as_slice());
                assert_eq!((out.sender_short, out.msg_id), (None, 9));
            }
        }
        assert_eq!(r.active(), 0);
    }

    #[test]
    fn timeout_at_500_ms() {
        let f = frame(90, 0);
        let pdus: Vec<SegmentPdu> = segment(&f, 1, SegLayout::V1).unwrap().collect();
        let mut r: Reassembler = Reassembler::default();
        for p in &pdus[..3] {
            assert_eq!(r.push(p, 1000), Ok(None));
        }
        // 499 ms: still there, completes.
        assert!(r.clone().push(&pdus[3], 1499).unwrap().is_some());
        // 500 ms: discarded; the late segment starts a new, hopeless one.
        assert_eq!(r.push(&pdus[3], 1500), Ok(None));
        assert_eq!(r.stats().timed_out, 1);
        assert_eq!(r.active(), 1);
    }

    #[test]
    fn ninth_reassembly_evicts_the_oldest() {
        let f = frame(90, 0);
        let mut r: Reassembler = Reassembler::default();
        for id in 0..9u16 {
            let first = segment(&f, id, SegLayout::V1).unwrap().next().unwrap();
            assert_eq!(r.push(&first, u64::from(id)), Ok(None));
        }
        assert_eq!(r.active(), 8);
        assert_eq!(r.stats().evicted, 1);
        assert!(!r.in_progress(None, 0));
        assert!(r.in_progress(None, 8));
    }

    #[test]
    fn v2_separates_senders_v1_cannot() {
        let (a, b) = (frame(60, 1), frame(60, 2));
        let mut r: Reassembler = Reassembler::default();
        let pa: Vec<SegmentPdu> = segment(&a, 5, SegLayout::V2 { sender_short: 1 }).unwrap().collect();
        let pb: Vec<SegmentPdu> = segment(&b, 5, SegLayout::V2 { sender_short: 2 }).unwrap().collect();
        let mut done = Vec::new();
        for (x, y) in pa.iter().zip(pb.iter()) {
            done.extend(r.push(x, 0).unwrap());
            done.extend(r.push(y, 0).unwrap());
        }
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].frame.as_slice(), a.as_slice());
        assert_eq!(done[1].frame.as_slice(), b.as_slice());
        // v1: same msg_id from two senders collides.
        let mut r: Reassembler = Reassembler::default();
        let qa: Vec<SegmentPdu> = segment(&a, 5, SegLayout::V1).unwrap().collect();
        let qb: Vec<SegmentPdu> = segment(&b, 5, SegLayout::V1).unwrap().collect();
        assert_eq!(r.push(&qa[0], 0), Ok(None));
        assert_eq!(r.push(&qb[0], 0), Err(SegError::DuplicateSegment));
    }

    #[test]
    fn typed_errors() {
        let mut r: Reassembler = Reassembler::default();
        assert_eq!(r.push(&[], 0), Err(SegError::TooShort));
        assert_eq!(r.push(&[0, 1, 0], 0), Err(SegError::TooShort));
        assert_eq!(r.push(&[0; 32], 0), Err(SegError::TooLong));
        assert_eq!(r.push(&[0, 0, 0, 0, 1], 0), Err(SegError::BadTotal));
        assert_eq!(r.push(&[3, 3, 0, 0, 1], 0), Err(SegError::BadIndex));
        // 255 B max: v1 needs at most 10 segments.
        assert_eq!(r.push(&[0, 11, 0, 0, 1], 0), Err(SegError::BadTotal));
        assert_eq!(r.push(&[0, 2, 0, 0, 1], 0), Err(SegError::BadLength), "short non-last");
        assert_eq!(r.push(&[1, 2, 0, 0], 0), Err(SegError::BadLength), "empty last");
        // Last segment of a 10-segment frame may only carry 12 bytes (243 + 12).
        let mut pdu = std::vec![9u8, 10, 0, 0];
        pdu.extend([0u8; 13]);
        assert_eq!(r.push(&pdu, 0), Err(SegError::FrameTooLong));
        let f = frame(60, 0);
        let p: Vec<SegmentPdu> = segment(&f, 1, SegLayout::V1).unwrap().collect();
        r.push(&p[0], 0).unwrap();
        assert_eq!(r.push(&p[0], 0), Err(SegError::DuplicateSegment));
        let mut other = p[1].clone();
        other[1] = 4;
        assert_eq!(r.push(&other, 0), Err(SegError::InconsistentTotal));
        assert_eq!(segment(&[], 1, SegLayout::V1).err(), Some(SegError::EmptyFrame));
        assert_eq!(segment(&[0; 128 * 25], 1, SegLayout::V2 { sender_short: 0 }).err(), Some(SegError::FrameTooLong));
        assert_eq!(r.stats().rejected, 11);
    }

    proptest! {
        #[test]
        fn any_frame_round_trips_in_any_order(
            f in proptest::collection::vec(any::<u8>(), 1..=MAX_FRAME_LEN),
            msg_id in any::<u16>(),
            v2 in proptest::option::of(any::<u16>()),
            order in any::<u64>(),
        ) {
            let layout = v2.map_or(SegLayout::V1, |s| SegLayout::V2 { sender_short: s });
            let mut pdus: Vec<SegmentPdu> = segment(&f, msg_id, layout).unwrap().collect();
            prop_assert!(pdus.iter().all(|p| p.len() <= SEG_PDU_LEN));
            // Fisher-Yates with a seed from proptest.
            let mut s = order | 1;
            for i in (1..pdus.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                pdus.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut r: Reassembler = Reassembler::default();
            let mut out = None;
            for (k, p) in pdus.iter().enumerate() {
                let got = r.push(p, 10 * k as u64).unwrap();
                prop_assert_eq!(got.is_some(), k + 1 == pdus.len());
                out = out.or(got);
            }
            let out = out.unwrap();
            prop_assert_eq!(out.frame.as_slice(), f.as_slice());
            prop_assert_eq!(out.msg_id, msg_id);
            prop_assert_eq!(out.sender_short, v2);
            prop_assert_eq!(r.active(), 0);
        }

        #[test]
        fn arbitrary_pdus_never_panic(
            pdus in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40), 0u64..2000), 0..200),
        ) {
            let mut r: Reassembler<8, 255> = Reassembler::default();
            let mut now = 0u64;
            for (p, dt) in pdus {
                now += dt;
                if let Ok(Some(out)) = r.push(&p, now) {
                    prop_assert!(!out.frame.is_empty() && out.frame.len() <= 255);
                }
                prop_assert!(r.active() <= 8);
            }
        }

        #[test]
        fn small_headers_of_crafted_pdus_never_panic(
            b0 in any::<u8>(), total in any::<u8>(), tail in proptest::collection::vec(any::<u8>(), 0..30),
        ) {
            let mut p = std::vec![b0, total, 0, 0];
            p.extend(tail);
            let mut r: Reassembler<2, 64> = Reassembler::default();
            let _ = r.push(&p, 0);
            let _ = r.push(&p, 1);
        }
    }
}
