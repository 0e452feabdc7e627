//! Metabolic messages: DEATH_CERTIFICATE (ES-2.9) and DATA_RETRACTION
//! (0x32, laid out here per SPEC-NOTES 8).
//!
//! Both carry a timestamp, so one layout serves both versions (SPEC-NOTES
//! 33 needs nothing more). Whether a PUF-failure certificate can be signed
//! at all (SPEC-NOTES 32) is the lifecycle's question, not the layout's.
//! Offsets: `docs/wire.md`.

use super::{BodyRepr, MessageType, Reader, Version, WireError, Writer};
use crate::types::{Hash32, QuantityType, Timestamp};

/// Why a device dies (ES-2.9 `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DeathReason {
    /// 0: the device judged itself compromised.
    SelfCompromise,
    /// 1: its PUF response no longer matches.
    PufAnomaly,
    /// 2: it failed to boot.
    BootFail,
    /// 3: an operator ordered it.
    OperatorCommand,
    /// 4: its energy ran out.
    EnergyDepleted,
}

impl DeathReason {
    /// Decodes the byte; codes above 4 are refused.
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        match v {
            0 => Ok(DeathReason::SelfCompromise),
            1 => Ok(DeathReason::PufAnomaly),
            2 => Ok(DeathReason::BootFail),
            3 => Ok(DeathReason::OperatorCommand),
            4 => Ok(DeathReason::EnergyDepleted),
            other => Err(WireError::InvalidField { field: "reason", value: other as u32 }),
        }
    }
    /// The byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            DeathReason::SelfCompromise => 0,
            DeathReason::PufAnomaly => 1,
            DeathReason::BootFail => 2,
            DeathReason::OperatorCommand => 3,
            DeathReason::EnergyDepleted => 4,
        }
    }
}

/// A DEATH_CERTIFICATE body (ES-2.9), signed with the key it invalidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DeathCertificate {
    /// Why.
    pub reason: DeathReason,
    /// Time of death.
    pub timestamp: Timestamp,
    /// BLAKE2s-256 of the public key being invalidated.
    pub old_pubkey_hash: Hash32,
}

/// Body length of DEATH_CERTIFICATE in both versions (frame 113 bytes).
pub const DEATH_CERTIFICATE_BODY: usize = 37;

impl BodyRepr for DeathCertificate {
    const MSG_TYPE: MessageType = MessageType::DeathCertificate;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(DeathCertificate {
            reason: DeathReason::from_u8(r.u8()?)?,
            timestamp: r.u32()?,
            old_pubkey_hash: Hash32(r.array()?),
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u8(self.reason.to_u8())?;
        w.u32(self.timestamp)?;
        w.put(self.old_pubkey_hash.as_bytes())
    }

    fn body_len(&self, _: Version) -> usize {
        DEATH_CERTIFICATE_BODY
    }
}

/// Why a sender withdraws its own traces (DATA_RETRACTION, our layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RetractionReason {
    /// 0: the sensor was found faulty for the period.
    SensorFault,
    /// 1: the readings were miscalibrated.
    Miscalibration,
    /// 2: an operator ordered it.
    OperatorCommand,
    /// 3: the key may have signed forged traces in the period.
    KeyCompromise,
}

impl RetractionReason {
    /// Decodes the byte; codes above 3 are refused.
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        match v {
            0 => Ok(RetractionReason::SensorFault),
            1 => Ok(RetractionReason::Miscalibration),
            2 => Ok(RetractionReason::OperatorCommand),
            3 => Ok(RetractionReason::KeyCompromise),
            other => Err(WireError::InvalidField { field: "reason", value: other as u32 }),
        }
    }
    /// The byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            RetractionReason::SensorFault => 0,
            RetractionReason::Miscalibration => 1,
            RetractionReason::OperatorCommand => 2,
            RetractionReason::KeyCompromise => 3,
        }
    }
}

/// A DATA_RETRACTION body (our layout): the sender withdraws every trace of
/// its own whose timestamp lies in `from_timestamp..=to_timestamp`, walking
/// forward modulo 2³² (so a range may span the 2106 wrap). Same in both
/// versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DataRetraction {
    /// Why.
    pub reason: RetractionReason,
    /// The quantity retracted; `None` (byte 0x00) retracts every quantity.
    pub quantity: Option<QuantityType>,
    /// First retracted trace time.
    pub from_timestamp: Timestamp,
    /// Last retracted trace time.
    pub to_timestamp: Timestamp,
    /// When the retraction was issued.
    pub timestamp: Timestamp,
}

/// Body length of DATA_RETRACTION in both versions (frame 90 bytes).
pub const DATA_RETRACTION_BODY: usize = 14;

/// The `quantity` byte that means "all quantities" (0x00 is no quantity).
const ALL_QUANTITIES: u8 = 0x00;

impl DataRetraction {
    /// True if a trace stamped `t` falls in the retracted range.
    pub fn covers(&self, t: Timestamp) -> bool {
        t.wrapping_sub(self.from_timestamp) <= self.to_timestamp.wrapping_sub(self.from_timestamp)
    }
}

impl BodyRepr for DataRetraction {
    const MSG_TYPE: MessageType = MessageType::DataRetraction;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(DataRetraction {
            reason: RetractionReason::from_u8(r.u8()?)?,
            quantity: match r.u8()? {
                ALL_QUANTITIES => None,
                q => Some(QuantityType::from_u8(q)),
            },
            from_timestamp: r.u32()?,
            to_timestamp: r.u32()?,
            timestamp: r.u32()?,
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u8(self.reason.to_u8())?;
        let q = match self.quantity {
            None => ALL_QUANTITIES,
            // Would read back as "all quantities": refuse rather than widen.
            Some(q) if q.to_u8() == ALL_QUANTITIES => {
                return Err(WireError::InvalidField { field: "quantity", value: 0 })
            }
            Some(q) => q.to_u8(),
        };
        w.u8(q)?;
        w.u32(self.from_timestamp)?;
        w.u32(self.to_timestamp)?;
        w.u32(self.timestamp)
    }

    fn body_len(&self, _: Version) -> usize {
        DATA_RETRACTION_BODY
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil::*;
    use crate::wire::{Body, FrameRepr};

    #[test]
    fn death_certificate_is_the_spec_layout_in_both_versions() {
        let d =
            DeathCertificate { reason: DeathReason::PufAnomaly, timestamp: T0, old_pubkey_hash: Hash32([0xAA; 32]) };
        for (v, byte) in [(Version::V1, 1), (Version::V2, 2)] {
            let b = bytes(byte, 0x31, &[&[0x01], &TS, &[0xAA; 32]]);
            assert_eq!(b.len(), 113);
            check(&b, &repr(v, Body::DeathCertificate(d)), 49);
        }
        let bad = bytes(1, 0x31, &[&[0x05], &TS, &[0xAA; 32]]);
        assert_eq!(FrameRepr::parse(&bad), Err(WireError::InvalidField { field: "reason", value: 5 }));
        let good = bytes(1, 0x31, &[&[0x01], &TS, &[0xAA; 32]]);
        assert_eq!(FrameRepr::parse(&good[..100]), Err(WireError::TooShort { needed: 113, got: 100 }));
    }

    #[test]
    fn data_retraction_layout_and_range() {
        let r = DataRetraction {
            reason: RetractionReason::SensorFault,
            quantity: None,
            from_timestamp: T0 - 600,
            to_timestamp: T0,
            timestamp: T0 + 5,
        };
        let from = (T0 - 600).to_le_bytes();
        let b = bytes(2, 0x32, &[&[0x00, 0x00], &from, &TS, &[0xC5, 0xF5, 0xCA, 0x65]]);
        assert_eq!(b.len(), 90);
        check(&b, &repr(Version::V2, Body::DataRetraction(r)), 26);
        let co2 = DataRetraction { quantity: Some(QuantityType::Co2), ..r };
        let b = bytes(1, 0x32, &[&[0x00, 0x06], &from, &TS, &[0xC5, 0xF5, 0xCA, 0x65]]);
        check(&b, &repr(Version::V1, Body::DataRetraction(co2)), 26);

        assert!(r.covers(T0 - 600) && r.covers(T0) && r.covers(T0 - 1));
        assert!(!r.covers(T0 + 1) && !r.covers(T0 - 601));
        let wrap = DataRetraction { from_timestamp: u32::MAX - 10, to_timestamp: 10, ..r };
        assert!(wrap.covers(u32::MAX) && wrap.covers(0) && wrap.covers(10));
        assert!(!wrap.covers(11) && !wrap.covers(u32::MAX - 11));
    }

    #[test]
    fn data_retraction_malformed() {
        let bad = bytes(1, 0x32, &[&[0x04, 0x00], &TS, &TS, &TS]);
        assert_eq!(FrameRepr::parse(&bad), Err(WireError::InvalidField { field: "reason", value: 4 }));
        let zero_quantity = DataRetraction {
            reason: RetractionReason::KeyCompromise,
            quantity: Some(QuantityType::Reserved(0)),
            from_timestamp: 0,
            to_timestamp: 0,
            timestamp: 0,
        };
        let mut out = [0u8; 128];
        assert_eq!(
            repr(Version::V1, Body::DataRetraction(zero_quantity)).emit(&mut out),
            Err(WireError::InvalidField { field: "quantity", value: 0 })
        );
    }
}
