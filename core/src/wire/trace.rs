//! TRACE_DEPOSIT (ES-2.3), the most frequent message.
//!
//! Version 1 is the spec's layout with SPEC-NOTES 6 applied: `prev_hash` at
//! offset 22 is 4 bytes, so the signed range is `bytes[0..26]` and the frame
//! is 90 bytes. Version 2 appends who vouches for the trace (SPEC-NOTES 21):
//! a Dust trace wrapped by a gateway is signed by the gateway, so the frame
//! names the gateway (to find the verifying key) and carries the Dust
//! frame counter (so Nanos can pair copies from several gateways and reject
//! replays). Direct traces carry origin 0 and zeros.

use super::{BodyRepr, Frame, MessageType, Reader, Version, WireError, Writer, HEADER_LEN, SIGNATURE_LEN};
use crate::types::{Confidence, DeviceId, HashPrefix4, QuantityType, Reading, Timestamp, Weight};

/// Who vouches for a trace that its subject did not sign itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GatewayVouch {
    /// The gateway that wrapped and signed the Dust trace.
    pub gateway_id: DeviceId,
    /// The Dust device's uplink frame counter.
    pub dust_counter: u32,
}

/// A TRACE_DEPOSIT body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TraceDeposit {
    /// When the reading was taken (sender's synced clock).
    pub timestamp: Timestamp,
    /// What was measured.
    pub quantity: QuantityType,
    /// The reading in the quantity's wire unit.
    pub reading: Reading,
    /// Sender's confidence, 0–255.
    pub confidence: Confidence,
    /// Weight the sender claims; receivers use their own assessment.
    pub weight: Weight,
    /// Wrapping per-sender sequence number.
    pub seq: u8,
    /// First 4 bytes of the sender's previous trace hash (DAG parent).
    pub prev_hash: HashPrefix4,
    /// Set on gateway-wrapped Dust traces (version 2 only).
    pub vouch: Option<GatewayVouch>,
}

/// Body length of a version-1 TRACE_DEPOSIT.
pub const TRACE_BODY_V1: usize = 14;
/// Body length of a version-2 TRACE_DEPOSIT.
pub const TRACE_BODY_V2: usize = 27;

const ORIGIN_DIRECT: u8 = 0;
const ORIGIN_GATEWAY: u8 = 1;

impl BodyRepr for TraceDeposit {
    const MSG_TYPE: MessageType = MessageType::TraceDeposit;

    fn parse_body(version: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut t = TraceDeposit {
            timestamp: r.u32()?,
            quantity: QuantityType::from_u8(r.u8()?),
            reading: r.i16()?,
            confidence: r.u8()?,
            weight: r.u8()?,
            seq: r.u8()?,
            prev_hash: HashPrefix4(r.array()?),
            vouch: None,
        };
        if version == Version::V2 {
            let origin = r.u8()?;
            let gateway_id = r.device_id()?;
            let dust_counter = r.u32()?;
            t.vouch = match origin {
                ORIGIN_DIRECT if gateway_id == DeviceId::default() && dust_counter == 0 => None,
                ORIGIN_DIRECT => return Err(WireError::InvalidField { field: "gateway_id", value: 0 }),
                ORIGIN_GATEWAY => Some(GatewayVouch { gateway_id, dust_counter }),
                other => return Err(WireError::InvalidField { field: "origin", value: other as u32 }),
            };
        }
        Ok(t)
    }

    fn emit_body(&self, version: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        if version == Version::V1 && self.vouch.is_some() {
            return Err(WireError::VersionMismatch { msg_type: Self::MSG_TYPE.to_u8(), version: 1 });
        }
        w.u32(self.timestamp)?;
        w.u8(self.quantity.to_u8())?;
        w.i16(self.reading)?;
        w.u8(self.confidence)?;
        w.u8(self.weight)?;
        w.u8(self.seq)?;
        w.put(self.prev_hash.as_bytes())?;
        if version == Version::V2 {
            match self.vouch {
                None => {
                    w.u8(ORIGIN_DIRECT)?;
                    w.device_id(&DeviceId::default())?;
                    w.u32(0)?;
                }
                Some(v) => {
                    w.u8(ORIGIN_GATEWAY)?;
                    w.device_id(&v.gateway_id)?;
                    w.u32(v.dust_counter)?;
                }
            }
        }
        Ok(())
    }

    fn body_len(&self, version: Version) -> usize {
        match version {
            Version::V1 => TRACE_BODY_V1,
            Version::V2 => TRACE_BODY_V2,
        }
    }
}

/// Zero-copy view of a TRACE_DEPOSIT frame, for the receive hot path.
///
/// `new_checked` verifies header, type and exact length; the accessors then
/// read fixed offsets and cannot panic.
#[derive(Debug, Clone)]
pub struct TraceDepositPacket<T: AsRef<[u8]>> {
    frame: Frame<T>,
}

mod field {
    pub const TIMESTAMP: usize = 12;
    pub const QUANTITY: usize = 16;
    pub const READING: usize = 17;
    pub const CONFIDENCE: usize = 19;
    pub const WEIGHT: usize = 20;
    pub const SEQ: usize = 21;
    pub const PREV_HASH: usize = 22;
}

impl<T: AsRef<[u8]>> TraceDepositPacket<T> {
    /// Wraps and checks a buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let frame = Frame::new_checked(buffer)?;
        let h = frame.header();
        if h.msg_type != MessageType::TraceDeposit {
            return Err(WireError::UnknownType(h.msg_type.to_u8()));
        }
        let body = match h.version {
            Version::V1 => TRACE_BODY_V1,
            Version::V2 => TRACE_BODY_V2,
        };
        let expected = HEADER_LEN + body + SIGNATURE_LEN;
        let got = frame.as_bytes().len();
        if got != expected {
            return Err(WireError::LengthMismatch { expected, got });
        }
        Ok(TraceDepositPacket { frame })
    }

    fn b(&self) -> &[u8] {
        self.frame.as_bytes()
    }

    /// The underlying frame view (header, signed range, signature).
    pub fn frame(&self) -> &Frame<T> {
        &self.frame
    }
    /// Sender timestamp.
    pub fn timestamp(&self) -> Timestamp {
        let b = self.b();
        u32::from_le_bytes([
            b[field::TIMESTAMP],
            b[field::TIMESTAMP + 1],
            b[field::TIMESTAMP + 2],
            b[field::TIMESTAMP + 3],
        ])
    }
    /// Quantity.
    pub fn quantity(&self) -> QuantityType {
        QuantityType::from_u8(self.b()[field::QUANTITY])
    }
    /// Reading.
    pub fn reading(&self) -> Reading {
        let b = self.b();
        i16::from_le_bytes([b[field::READING], b[field::READING + 1]])
    }
    /// Confidence.
    pub fn confidence(&self) -> Confidence {
        self.b()[field::CONFIDENCE]
    }
    /// Claimed weight.
    pub fn weight(&self) -> Weight {
        self.b()[field::WEIGHT]
    }
    /// Sequence number.
    pub fn seq(&self) -> u8 {
        self.b()[field::SEQ]
    }
    /// DAG parent prefix.
    pub fn prev_hash(&self) -> HashPrefix4 {
        let b = self.b();
        HashPrefix4([b[field::PREV_HASH], b[field::PREV_HASH + 1], b[field::PREV_HASH + 2], b[field::PREV_HASH + 3]])
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::types::Signature;
    use crate::wire::{Body, FrameRepr};

    /// TV13 (ES-8.6) with SPEC-NOTES 6 and 27 applied: the three lost bytes
    /// `01 01 .. 01` restored and 1707800000 encoded as `C0 F5 CA 65`.
    const TV13: [u8; 26] = [
        0x4B, 0x42, 0x01, 0x01, 0x18, 0x07, 0xF6, 0xE5, 0xD4, 0xC3, 0xB2, 0xA1, 0xC0, 0xF5, 0xCA, 0x65, 0x01, 0x06,
        0x09, 0xCC, 0xCC, 0x2A, 0x34, 0x12, 0xCD, 0xAB,
    ];

    fn tv13_repr() -> FrameRepr {
        FrameRepr {
            version: Version::V1,
            sender_id: DeviceId([0x18, 0x07, 0xF6, 0xE5, 0xD4, 0xC3, 0xB2, 0xA1]),
            body: Body::TraceDeposit(TraceDeposit {
                timestamp: 1_707_800_000,
                quantity: QuantityType::Temperature,
                reading: 2310,
                confidence: 204,
                weight: 204,
                seq: 42,
                prev_hash: HashPrefix4([0x34, 0x12, 0xCD, 0xAB]),
                vouch: None,
            }),
            signature: Signature([0x5A; 64]),
        }
    }

    fn tv13_bytes() -> [u8; 90] {
        let mut f = [0x5A; 90];
        f[..26].copy_from_slice(&TV13);
        f
    }

    #[test]
    fn deconstruct() {
        let f = tv13_bytes();
        let p = TraceDepositPacket::new_checked(&f[..]).unwrap();
        assert_eq!(p.timestamp(), 1_707_800_000);
        assert_eq!(p.quantity(), QuantityType::Temperature);
        assert_eq!(p.reading(), 2310);
        assert_eq!((p.confidence(), p.weight(), p.seq()), (204, 204, 42));
        assert_eq!(p.prev_hash(), HashPrefix4([0x34, 0x12, 0xCD, 0xAB]));
        assert_eq!(p.frame().signed_bytes(), &TV13[..]);
    }

    #[test]
    fn construct() {
        let mut out = [0u8; 90];
        assert_eq!(tv13_repr().emit(&mut out), Ok(90));
        assert_eq!(out, tv13_bytes());
        assert_eq!(tv13_repr().signed_len(), 26);
    }

    #[test]
    fn parse() {
        assert_eq!(FrameRepr::parse(&tv13_bytes()), Ok(tv13_repr()));
    }

    #[test]
    fn emit_v2_with_vouch_round_trips_and_v1_refuses_it() {
        let mut r = tv13_repr();
        r.version = Version::V2;
        if let Body::TraceDeposit(t) = &mut r.body {
            t.vouch = Some(GatewayVouch { gateway_id: DeviceId([7; 8]), dust_counter: 99 });
        }
        let mut out = [0u8; 128];
        let n = r.emit(&mut out).unwrap();
        assert_eq!(n, 103);
        assert_eq!(FrameRepr::parse(&out[..n]), Ok(r.clone()));
        r.version = Version::V1;
        assert!(matches!(r.emit(&mut out), Err(WireError::VersionMismatch { .. })));
    }

    #[test]
    fn malformed_frames_give_reasons() {
        let f = tv13_bytes();
        assert_eq!(FrameRepr::parse(&f[..89]), Err(WireError::TooShort { needed: 90, got: 89 }));
        let mut long = [0u8; 91];
        long[..90].copy_from_slice(&f);
        assert!(matches!(FrameRepr::parse(&long), Err(WireError::LengthMismatch { .. })));
        let mut bad = f;
        bad[0] = 0x4C;
        assert_eq!(FrameRepr::parse(&bad), Err(WireError::BadMagic([0x4C, 0x42])));
        bad = f;
        bad[2] = 3;
        assert_eq!(FrameRepr::parse(&bad), Err(WireError::UnknownVersion(3)));
        bad = f;
        bad[3] = 0xEE;
        assert_eq!(FrameRepr::parse(&bad), Err(WireError::UnknownType(0xEE)));
        assert_eq!(FrameRepr::parse(&f[..5]), Err(WireError::TooShort { needed: 12, got: 5 }));
    }
}
