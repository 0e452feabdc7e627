//! TraceBatch (ES-6.1), the Nano → Full node settlement message, and its
//! TCP framing (ES-12.3). Layout with offsets: `docs/wire.md`.
//!
//! ES-6.1 gives a struct, not a byte layout. We frame it with the common
//! 12-byte header (type 0x71, `sender_id` = `nano_id`) so that version and
//! type are checkable like every other message, followed by the fields in
//! struct order, exactly `trace_count` traces (SPEC-NOTES 40: empty slots
//! are not sent), the aggregate, and the Nano's Ed25519 signature over
//! everything before it. The body is the same in versions 1 and 2.
//!
//! A batch of 256 traces is 3683 bytes, too large for a board's stack inside
//! [`super::Body`], so it has its own [`TraceBatch::parse`]/[`TraceBatch::emit`].

use super::{Header, MessageType, Reader, Version, WireError, Writer, HEADER_LEN, SIGNATURE_LEN};
use crate::types::{Confidence, DeviceId, QuantityType, Reading, Signature, Timestamp};
use half::f16;

/// Most traces one batch may carry (ES-6.1).
pub const MAX_BATCH_TRACES: usize = 256;
/// Wire size of one [`BatchedTrace`].
pub const BATCHED_TRACE_LEN: usize = 14;
/// Wire size of [`BatchAggregate`].
pub const AGGREGATE_LEN: usize = 9;
/// Bytes between the header and the first trace.
const FIXED_LEN: usize = 14;
/// Length of an empty batch.
pub const MIN_BATCH_LEN: usize = HEADER_LEN + FIXED_LEN + AGGREGATE_LEN + SIGNATURE_LEN;
/// Length of a full batch (256 traces): 3683 bytes.
pub const MAX_BATCH_LEN: usize = MIN_BATCH_LEN + MAX_BATCH_TRACES * BATCHED_TRACE_LEN;
/// Length of the ES-12.3 TCP length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;
/// Offset of `trace_count`.
const TRACE_COUNT_AT: usize = HEADER_LEN + 12;

/// `anomaly_flags` bit: pyrexia.
pub const ANOMALY_PYREXIA: u8 = 1;
/// `anomaly_flags` bit: inflammation.
pub const ANOMALY_INFLAMMATION: u8 = 2;
/// `anomaly_flags` bit: rejection.
pub const ANOMALY_REJECTION: u8 = 4;
const ANOMALY_ALL: u8 = ANOMALY_PYREXIA | ANOMALY_INFLAMMATION | ANOMALY_REJECTION;

/// One device's summary for the epoch (14 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BatchedTrace {
    /// The device the readings came from.
    pub device_id: DeviceId,
    /// What it measures.
    pub quantity: QuantityType,
    /// Mean of its readings this epoch.
    pub reading_mean: Reading,
    /// How many readings the mean covers.
    pub reading_count: u8,
    /// Weighted average confidence.
    pub confidence: Confidence,
    /// Bitfield of [`ANOMALY_PYREXIA`], [`ANOMALY_INFLAMMATION`],
    /// [`ANOMALY_REJECTION`]; other bits are invalid.
    pub anomaly_flags: u8,
}

/// Epoch summary statistics, the part that goes on chain (ES-6.2; 9 bytes).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BatchAggregate {
    /// Devices seen this epoch.
    pub total_devices: u16,
    /// Devices with weight > 0.5.
    pub healthy_devices: u16,
    /// Anomalies detected this epoch.
    pub anomalies_detected: u16,
    /// Devices rejected this epoch.
    pub rejections: u8,
    /// Pheromone-field entropy; finite and ≥ 0 (it goes on chain). Serde
    /// writes it as a plain float and rounds a read one to the nearest f16.
    #[cfg_attr(feature = "serde", serde(serialize_with = "f16::serialize_as_f32", deserialize_with = "f16_from_f32"))]
    pub field_entropy: f16,
}

#[cfg(feature = "serde")]
fn f16_from_f32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f16, D::Error> {
    <f32 as serde::Deserialize>::deserialize(d).map(f16::from_f32)
}

/// A parsed TraceBatch frame. `N` is the caller's trace capacity; the wire
/// never carries more than [`MAX_BATCH_TRACES`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TraceBatch<const N: usize = MAX_BATCH_TRACES> {
    /// Protocol version of the header (same body in both).
    pub version: Version,
    /// The submitting Nano, carried as the header's `sender_id`.
    pub nano_id: DeviceId,
    /// Batch number chosen by the Nano.
    pub batch_id: u32,
    /// First second of the batched epoch(s).
    pub epoch_start: Timestamp,
    /// Last second of the batched epoch(s).
    pub epoch_end: Timestamp,
    /// The traces; `trace_count` on the wire is their number.
    pub traces: heapless::Vec<BatchedTrace, N>,
    /// Epoch summary.
    pub aggregate: BatchAggregate,
    /// The Nano's Ed25519 signature over `bytes[0..signed_len]`.
    pub signature: Signature,
}

/// Wire length of a batch of `count` traces.
pub const fn batch_len(count: usize) -> usize {
    MIN_BATCH_LEN + count * BATCHED_TRACE_LEN
}

impl<const N: usize> TraceBatch<N> {
    /// Parses and checks a whole frame: header, `trace_count` within
    /// 256 and `N`, length exactly that of `trace_count` traces, flags and
    /// entropy valid.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let h = Header::parse(bytes)?;
        if h.msg_type != MessageType::TraceBatch {
            return Err(WireError::UnknownType(h.msg_type.to_u8()));
        }
        let got = bytes.len();
        if got < MIN_BATCH_LEN {
            return Err(WireError::TooShort { needed: MIN_BATCH_LEN, got });
        }
        let count = u16::from_le_bytes([bytes[TRACE_COUNT_AT], bytes[TRACE_COUNT_AT + 1]]);
        if count as usize > MAX_BATCH_TRACES.min(N) {
            return Err(WireError::InvalidField { field: "trace_count", value: count as u32 });
        }
        let expected = batch_len(count as usize);
        if got < expected {
            return Err(WireError::TooShort { needed: expected, got });
        }
        if got > expected {
            return Err(WireError::LengthMismatch { expected, got });
        }
        let signed = expected - SIGNATURE_LEN;
        let mut r = Reader::new(&bytes[HEADER_LEN..signed], HEADER_LEN);
        let batch_id = r.u32()?;
        let epoch_start = r.u32()?;
        let epoch_end = r.u32()?;
        r.u16()?;
        let mut traces = heapless::Vec::new();
        for _ in 0..count {
            let t = BatchedTrace {
                device_id: r.device_id()?,
                quantity: QuantityType::from_u8(r.u8()?),
                reading_mean: r.i16()?,
                reading_count: r.u8()?,
                confidence: r.u8()?,
                anomaly_flags: r.u8()?,
            };
            check_flags(t.anomaly_flags)?;
            traces.push(t).map_err(|_| WireError::InvalidField { field: "trace_count", value: count as u32 })?;
        }
        let aggregate = BatchAggregate {
            total_devices: r.u16()?,
            healthy_devices: r.u16()?,
            anomalies_detected: r.u16()?,
            rejections: r.u8()?,
            field_entropy: f16::from_bits(r.u16()?),
        };
        check_entropy(aggregate.field_entropy)?;
        r.finish()?;
        let signature = Signature::from_slice(&bytes[signed..]).ok_or(WireError::TooShort { needed: expected, got })?;
        Ok(TraceBatch {
            version: h.version,
            nano_id: h.sender_id,
            batch_id,
            epoch_start,
            epoch_end,
            traces,
            aggregate,
            signature,
        })
    }

    /// Total length of the emitted frame.
    pub fn buffer_len(&self) -> usize {
        batch_len(self.traces.len())
    }

    /// Length of the signed range `bytes[0..signed_len]`.
    pub fn signed_len(&self) -> usize {
        self.buffer_len() - SIGNATURE_LEN
    }

    /// The header this batch is sent under.
    pub fn header(&self) -> Header {
        Header { version: self.version, msg_type: MessageType::TraceBatch, sender_id: self.nano_id }
    }

    /// Writes the frame into `out` and returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let count = self.traces.len();
        if count > MAX_BATCH_TRACES {
            return Err(WireError::InvalidField { field: "trace_count", value: count as u32 });
        }
        check_entropy(self.aggregate.field_entropy)?;
        let len = self.buffer_len();
        let got = out.len();
        let out = out.get_mut(..len).ok_or(WireError::BufferTooSmall { needed: len, got })?;
        self.header().emit(out)?;
        let mut w = Writer::new(&mut out[HEADER_LEN..]);
        w.u32(self.batch_id)?;
        w.u32(self.epoch_start)?;
        w.u32(self.epoch_end)?;
        w.u16(count as u16)?;
        for t in &self.traces {
            check_flags(t.anomaly_flags)?;
            w.device_id(&t.device_id)?;
            w.u8(t.quantity.to_u8())?;
            w.i16(t.reading_mean)?;
            w.u8(t.reading_count)?;
            w.u8(t.confidence)?;
            w.u8(t.anomaly_flags)?;
        }
        let a = &self.aggregate;
        w.u16(a.total_devices)?;
        w.u16(a.healthy_devices)?;
        w.u16(a.anomalies_detected)?;
        w.u8(a.rejections)?;
        w.u16(a.field_entropy.to_bits())?;
        w.put(self.signature.as_bytes())?;
        Ok(len)
    }
}

fn check_flags(flags: u8) -> Result<(), WireError> {
    if flags & !ANOMALY_ALL != 0 {
        return Err(WireError::InvalidField { field: "anomaly_flags", value: flags as u32 });
    }
    Ok(())
}

fn check_entropy(e: f16) -> Result<(), WireError> {
    if !e.is_finite() || (e.is_sign_negative() && e != f16::ZERO) {
        return Err(WireError::InvalidField { field: "field_entropy", value: e.to_bits() as u32 });
    }
    Ok(())
}

/// Writes `payload` behind its 4-byte little-endian length (ES-12.3) and
/// returns the bytes written. Payloads over [`MAX_BATCH_LEN`] are refused.
pub fn encode_length_prefixed(payload: &[u8], out: &mut [u8]) -> Result<usize, WireError> {
    let n = payload.len();
    if n > MAX_BATCH_LEN {
        return Err(WireError::InvalidField { field: "length_prefix", value: n.min(u32::MAX as usize) as u32 });
    }
    let total = LENGTH_PREFIX_LEN + n;
    let got = out.len();
    let out = out.get_mut(..total).ok_or(WireError::BufferTooSmall { needed: total, got })?;
    out[..LENGTH_PREFIX_LEN].copy_from_slice(&(n as u32).to_le_bytes());
    out[LENGTH_PREFIX_LEN..].copy_from_slice(payload);
    Ok(total)
}

/// Takes one length-prefixed message off the front of a TCP stream buffer.
///
/// `Ok(Some((payload, consumed)))` when the message is complete,
/// `Ok(None)` when more bytes are needed, and an error as soon as the
/// prefix announces more than [`MAX_BATCH_LEN`] or less than
/// [`MIN_BATCH_LEN`], so a receiver never buffers for a frame that cannot
/// be a batch (the connection should then be dropped: the stream has lost
/// its framing).
pub fn decode_length_prefixed(stream: &[u8]) -> Result<Option<(&[u8], usize)>, WireError> {
    let Some(prefix) = stream.get(..LENGTH_PREFIX_LEN) else {
        return Ok(None);
    };
    let n = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if n as usize > MAX_BATCH_LEN || (n as usize) < MIN_BATCH_LEN {
        return Err(WireError::InvalidField { field: "length_prefix", value: n });
    }
    let end = LENGTH_PREFIX_LEN + n as usize;
    Ok(stream.get(LENGTH_PREFIX_LEN..end).map(|p| (p, end)))
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    const NANO: DeviceId = DeviceId([0x18, 0x07, 0xF6, 0xE5, 0xD4, 0xC3, 0xB2, 0xA1]);

    fn trace(i: u8) -> BatchedTrace {
        BatchedTrace {
            device_id: DeviceId([i, 1, 2, 3, 4, 5, 6, 7]),
            quantity: QuantityType::Temperature,
            reading_mean: 2310 + i as i16,
            reading_count: 12,
            confidence: 204,
            anomaly_flags: i & 0x07,
        }
    }

    fn batch(n: usize) -> TraceBatch {
        let mut traces = heapless::Vec::new();
        for i in 0..n {
            traces.push(trace(i as u8)).unwrap();
        }
        TraceBatch {
            version: Version::V2,
            nano_id: NANO,
            batch_id: 7,
            epoch_start: 1_707_800_000,
            epoch_end: 1_707_800_059,
            traces,
            aggregate: BatchAggregate {
                total_devices: n as u16,
                healthy_devices: n as u16,
                anomalies_detected: 0,
                rejections: 0,
                field_entropy: f16::from_f32(2.5),
            },
            signature: Signature([0x5A; 64]),
        }
    }

    /// One trace, written out by hand from the ES-6.1 field order.
    const ONE: [u8; 49] = [
        0x4B, 0x42, 0x02, 0x71, 0x18, 0x07, 0xF6, 0xE5, 0xD4, 0xC3, 0xB2, 0xA1, // header
        0x07, 0x00, 0x00, 0x00, // batch_id
        0xC0, 0xF5, 0xCA, 0x65, // epoch_start
        0xFB, 0xF5, 0xCA, 0x65, // epoch_end
        0x01, 0x00, // trace_count
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x01, 0x06, 0x09, 0x0C, 0xCC, 0x00, // trace 0
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x41, // aggregate, 2.5 = 0x4100
    ];

    fn one_bytes() -> [u8; 113] {
        let mut f = [0x5A; 113];
        f[..49].copy_from_slice(&ONE);
        f
    }

    #[test]
    fn construct_one() {
        let mut out = [0u8; 113];
        assert_eq!(batch(1).emit(&mut out), Ok(113));
        assert_eq!(out, one_bytes());
        assert_eq!(batch(1).signed_len(), 49);
    }

    #[test]
    fn parse_one() {
        assert_eq!(TraceBatch::<256>::parse(&one_bytes()), Ok(batch(1)));
    }

    #[test]
    fn sizes_of_empty_and_full_batches() {
        assert_eq!((MIN_BATCH_LEN, MAX_BATCH_LEN), (99, 3683));
        let mut out = [0u8; MAX_BATCH_LEN];
        for n in [0, 256] {
            let b = batch(n);
            let len = b.emit(&mut out).unwrap();
            assert_eq!(len, batch_len(n));
            assert_eq!(TraceBatch::<256>::parse(&out[..len]), Ok(b));
        }
    }

    #[test]
    fn trace_count_must_match_and_stay_within_256() {
        let f = one_bytes();
        let mut more = f;
        more[TRACE_COUNT_AT] = 2;
        assert_eq!(TraceBatch::<256>::parse(&more), Err(WireError::TooShort { needed: 127, got: 113 }));
        let mut fewer = f;
        fewer[TRACE_COUNT_AT] = 0;
        assert_eq!(TraceBatch::<256>::parse(&fewer), Err(WireError::LengthMismatch { expected: 99, got: 113 }));
        let mut big = [0u8; MAX_BATCH_LEN + BATCHED_TRACE_LEN];
        big[..TRACE_COUNT_AT].copy_from_slice(&f[..TRACE_COUNT_AT]);
        big[TRACE_COUNT_AT..TRACE_COUNT_AT + 2].copy_from_slice(&257u16.to_le_bytes());
        assert_eq!(TraceBatch::<256>::parse(&big), Err(WireError::InvalidField { field: "trace_count", value: 257 }));
        assert_eq!(TraceBatch::<0>::parse(&f), Err(WireError::InvalidField { field: "trace_count", value: 1 }));
    }

    #[test]
    fn header_and_field_errors() {
        let f = one_bytes();
        let mut t = f;
        t[3] = 0x01;
        assert_eq!(TraceBatch::<256>::parse(&t), Err(WireError::UnknownType(0x01)));
        t = f;
        t[2] = 0x09;
        assert_eq!(TraceBatch::<256>::parse(&t), Err(WireError::UnknownVersion(9)));
        assert_eq!(TraceBatch::<256>::parse(&f[..98]), Err(WireError::TooShort { needed: 99, got: 98 }));
        t = f;
        t[26 + 13] = 0x08;
        assert_eq!(TraceBatch::<256>::parse(&t), Err(WireError::InvalidField { field: "anomaly_flags", value: 8 }));
        t = f;
        t[47..49].copy_from_slice(&f16::NAN.to_bits().to_le_bytes());
        assert!(matches!(TraceBatch::<256>::parse(&t), Err(WireError::InvalidField { field: "field_entropy", .. })));
        t[47..49].copy_from_slice(&f16::from_f32(-1.0).to_bits().to_le_bytes());
        assert!(matches!(TraceBatch::<256>::parse(&t), Err(WireError::InvalidField { field: "field_entropy", .. })));
        let mut out = [0u8; 112];
        assert_eq!(batch(1).emit(&mut out), Err(WireError::BufferTooSmall { needed: 113, got: 112 }));
    }

    #[test]
    fn length_prefix_framing() {
        let f = one_bytes();
        let mut stream = [0u8; 300];
        let n = encode_length_prefixed(&f, &mut stream).unwrap();
        assert_eq!(n, 117);
        assert_eq!(stream[..4], [113, 0, 0, 0]);
        assert_eq!(decode_length_prefixed(&stream[..n]), Ok(Some((&f[..], 117))));
        assert_eq!(decode_length_prefixed(&stream[..n - 1]), Ok(None));
        assert_eq!(decode_length_prefixed(&stream[..3]), Ok(None));
        let huge = 3684u32.to_le_bytes();
        assert_eq!(decode_length_prefixed(&huge), Err(WireError::InvalidField { field: "length_prefix", value: 3684 }));
        assert_eq!(
            decode_length_prefixed(&[0xFF; 4]),
            Err(WireError::InvalidField { field: "length_prefix", value: u32::MAX })
        );
        assert!(decode_length_prefixed(&[5, 0, 0, 0]).is_err());
        let big = [0u8; MAX_BATCH_LEN + 1];
        let mut out = [0u8; MAX_BATCH_LEN + 8];
        assert!(encode_length_prefixed(&big, &mut out).is_err());
        assert_eq!(
            encode_length_prefixed(&f, &mut out[..100]),
            Err(WireError::BufferTooSmall { needed: 117, got: 100 })
        );
    }

    proptest! {
        #[test]
        fn round_trips(n in 0usize..=256, id in any::<u32>(), bits in 0u16..0x7C00) {
            let mut b = batch(n);
            b.batch_id = id;
            b.aggregate.field_entropy = f16::from_bits(bits);
            let mut out = [0u8; MAX_BATCH_LEN];
            let len = b.emit(&mut out).unwrap();
            prop_assert_eq!(TraceBatch::<256>::parse(&out[..len]), Ok(b));
        }

        #[test]
        fn parse_never_panics_and_accepts_only_canonical(mut bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                                          count in 0u16..4) {
            if bytes.len() >= 26 {
                bytes[..4].copy_from_slice(&[0x4B, 0x42, 0x01, 0x71]);
                bytes[24..26].copy_from_slice(&count.to_le_bytes());
            }
            if let Ok(b) = TraceBatch::<256>::parse(&bytes) {
                let mut out = [0u8; 200];
                let len = b.emit(&mut out).unwrap();
                prop_assert_eq!(&out[..len], &bytes[..]);
            }
        }
    }
}
