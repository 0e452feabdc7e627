//! Dust frames over LoRa (ES-2.3 compressed variant, ES-12.4, ES-13.3),
//! resolving the wire part of SPEC-NOTES 21 and the Dust downlinks of
//! SPEC-NOTES 8. Layouts with offsets: `docs/wire.md`.
//!
//! Dust frames have no common header and no Ed25519 signature: a Dust node
//! cannot run Ed25519 (ES-13.3). The receiver tells the layouts apart by
//! direction, length and one marker byte:
//!
//! * uplink v1 is exactly the spec's 8 bytes, checked by CRC-8/SMBUS;
//! * uplink v2 is 16 bytes starting with the version byte `0x02` and ends
//!   with a frame counter and a 4-byte truncated AES-CMAC (SPEC-NOTES 21:
//!   CRC-8 authenticates nothing);
//! * downlinks start with their ES-2.2 type byte (`0x23` REJECTION_NOTICE,
//!   `0x26` VACCINE); v1 is the spec's 4- and 8-byte size, v2 puts `0x02`
//!   in byte 1 and appends a downlink counter and a MAC, so a forged
//!   REJECTION_NOTICE can no longer quarantine a node.
//!
//! The wire never computes a MAC: it carries the four bytes and says which
//! bytes they cover (`mac_input`); the crypto layer holds the per-device
//! AES-128 key. The first byte separates MAC domains: `0x02` for uplinks,
//! a type byte for downlinks, so an uplink MAC never verifies as a downlink.

use super::{Reader, Version, WireError, Writer};
use crate::types::{Confidence, DeviceId, QuantityType, Reading, PROTOCOL_VERSION_2};

/// Length of a v1 uplink (ES-2.3).
pub const UPLINK_V1_LEN: usize = 8;
/// Length of a v2 uplink.
pub const UPLINK_V2_LEN: usize = 16;
/// Length of a v1 REJECTION_NOTICE downlink (ES-12.4).
pub const REJECTION_V1_LEN: usize = 4;
/// Length of a v2 REJECTION_NOTICE downlink.
pub const REJECTION_V2_LEN: usize = 12;
/// Length of a v1 VACCINE downlink (ES-12.4).
pub const VACCINE_V1_LEN: usize = 8;
/// Length of a v2 VACCINE downlink.
pub const VACCINE_V2_LEN: usize = 17;
/// Length of the truncated AES-CMAC that ends every v2 Dust frame.
pub const MAC_LEN: usize = 4;
/// LoRa payload limit at SF12 in EU868 (ES-12.4); every layout here fits.
pub const LORA_MAX_PAYLOAD: usize = 51;
/// Type byte of a REJECTION_NOTICE downlink (ES-2.2 code).
pub const DOWNLINK_REJECTION: u8 = 0x23;
/// Type byte of a VACCINE downlink (ES-2.2 code).
pub const DOWNLINK_VACCINE: u8 = 0x26;
/// Highest ES-2.8 attack type (IMPERSONATION).
pub const MAX_ATTACK_TYPE: u8 = 4;
/// Type byte reported in [`WireError::VersionMismatch`] for uplinks: the
/// compressed variant of TRACE_DEPOSIT.
const UPLINK_MSG_TYPE: u8 = 0x01;

/// CRC-8 generator polynomial x⁸ + x² + x + 1 (CRC-8/SMBUS: init 0x00, no
/// reflection, xorout 0x00; check value of "123456789" is 0xF4).
pub const CRC8_POLY: u8 = 0x07;

const CRC8_TABLE: [u8; 256] = crc8_table();

const fn crc8_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u8;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x80 != 0 { (c << 1) ^ CRC8_POLY } else { c << 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// CRC-8/SMBUS of `data`, as carried in byte 7 of a v1 uplink.
pub fn crc8(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |crc, &b| CRC8_TABLE[(crc ^ b) as usize])
}

crate::types::byte_string!(
    /// `sender_id_short`: `device_id[0..2]` in wire order, printed as hex like
    /// the `device_id` it abbreviates (`1807` for `1807f6e5d4c3b2a1`). The
    /// gateway maps it back to the full id (ES-13.3) and should hand out
    /// unique ones (SPEC-NOTES 38).
    ShortId,
    2
);
crate::types::byte_string!(
    /// The first 4 bytes of an AES-128-CMAC tag, computed and checked by the
    /// crypto layer with the device's provisioned key (ES-13.3).
    Mac4,
    4
);

impl ShortId {
    /// The short id of a full `device_id`.
    pub fn of(id: &DeviceId) -> Self {
        ShortId([id.0[0], id.0[1]])
    }
    /// The spec's `u16 LE` reading of the same two bytes.
    pub fn to_u16(self) -> u16 {
        u16::from_le_bytes(self.0)
    }
}

/// The authentication tail of a v2 Dust frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DustAuth {
    /// Per-device, per-direction counter: +1 per frame, never reused under
    /// one key, so a receiver drops anything not above the last one it
    /// accepted (replays).
    pub counter: u32,
    /// Truncated AES-CMAC over every byte before it.
    pub mac: Mac4,
}

/// A Dust uplink trace (ES-2.3 compressed variant), v1 or v2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DustUplink {
    /// V1: the spec's 8 bytes with CRC-8; V2: counter and MAC.
    pub version: Version,
    /// `device_id[0..2]` of the sender.
    pub sender_id_short: ShortId,
    /// The reading in the quantity's wire unit (the gateway knows the
    /// device's quantity from its registration table).
    pub reading: Reading,
    /// Seconds since this device's previous trace.
    pub timestamp_delta: u16,
    /// Sender's confidence, 0–255.
    pub confidence: Confidence,
    /// Counter and MAC, present exactly in version 2.
    pub auth: Option<DustAuth>,
}

/// Byte offsets of the uplink fields. v2 shifts the v1 fields by the
/// version byte; the `V2_` offsets are absolute.
mod up {
    pub const V2_BASE: usize = 1;
    pub const SHORT_ID: usize = 0;
    pub const READING: usize = 2;
    pub const TIMESTAMP_DELTA: usize = 4;
    pub const CONFIDENCE: usize = 6;
    pub const CRC: usize = 7;
    pub const V2_COUNTER: usize = 8;
    pub const V2_MAC: usize = 12;
}

/// Zero-copy view of a Dust uplink.
///
/// [`DustUplinkPacket::new_checked`] settles the version and the exact
/// length; every accessor after that reads fixed offsets and cannot panic.
/// It does not check the CRC: [`DustUplinkPacket::check_crc`] does, so a
/// diagnostic tool can still show the fields of a corrupted frame.
#[derive(Debug, Clone)]
pub struct DustUplinkPacket<T: AsRef<[u8]>> {
    buffer: T,
    version: Version,
}

/// Which uplink layout `b` claims to be, with its exact-length check.
fn uplink_version(b: &[u8]) -> Result<Version, WireError> {
    let got = b.len();
    if got < UPLINK_V1_LEN {
        return Err(WireError::TooShort { needed: UPLINK_V1_LEN, got });
    }
    if got == UPLINK_V1_LEN {
        return Ok(Version::V1);
    }
    if b[0] != PROTOCOL_VERSION_2 {
        return Err(WireError::LengthMismatch { expected: UPLINK_V1_LEN, got });
    }
    if got != UPLINK_V2_LEN {
        let e = if got < UPLINK_V2_LEN {
            WireError::TooShort { needed: UPLINK_V2_LEN, got }
        } else {
            WireError::LengthMismatch { expected: UPLINK_V2_LEN, got }
        };
        return Err(e);
    }
    Ok(Version::V2)
}

impl<T: AsRef<[u8]>> DustUplinkPacket<T> {
    /// Wraps a received LoRa payload: 8 bytes is v1, 16 bytes starting with
    /// `0x02` is v2, anything else is an error.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let version = uplink_version(buffer.as_ref())?;
        Ok(DustUplinkPacket { buffer, version })
    }

    fn at(&self, off: usize) -> u8 {
        let base = if self.version == Version::V2 { up::V2_BASE } else { 0 };
        self.buffer.as_ref()[base + off]
    }

    /// Layout version.
    pub fn version(&self) -> Version {
        self.version
    }
    /// `device_id[0..2]` of the sender.
    pub fn sender_id_short(&self) -> ShortId {
        ShortId([self.at(up::SHORT_ID), self.at(up::SHORT_ID + 1)])
    }
    /// Reading.
    pub fn reading(&self) -> Reading {
        i16::from_le_bytes([self.at(up::READING), self.at(up::READING + 1)])
    }
    /// Seconds since the previous trace.
    pub fn timestamp_delta(&self) -> u16 {
        u16::from_le_bytes([self.at(up::TIMESTAMP_DELTA), self.at(up::TIMESTAMP_DELTA + 1)])
    }
    /// Confidence.
    pub fn confidence(&self) -> Confidence {
        self.at(up::CONFIDENCE)
    }
    /// The CRC byte carried by a v1 frame.
    pub fn carried_crc(&self) -> Option<u8> {
        (self.version == Version::V1).then(|| self.at(up::CRC))
    }
    /// CRC-8 of `bytes[0..7]` of a v1 frame.
    pub fn computed_crc(&self) -> Option<u8> {
        (self.version == Version::V1).then(|| crc8(&self.buffer.as_ref()[..up::CRC]))
    }
    /// Checks the v1 CRC; v2 frames have none (their MAC is checked by the
    /// crypto layer over [`DustUplinkPacket::mac_input`]).
    pub fn check_crc(&self) -> Result<(), WireError> {
        match (self.computed_crc(), self.carried_crc()) {
            (Some(computed), Some(carried)) if computed != carried => Err(WireError::BadCrc { computed, carried }),
            _ => Ok(()),
        }
    }
    /// The uplink frame counter of a v2 frame.
    pub fn frame_counter(&self) -> Option<u32> {
        let b = self.buffer.as_ref();
        let o = up::V2_COUNTER;
        (self.version == Version::V2).then(|| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]))
    }
    /// The MAC carried by a v2 frame.
    pub fn mac(&self) -> Option<Mac4> {
        let b = self.buffer.as_ref();
        let o = up::V2_MAC;
        (self.version == Version::V2).then(|| Mac4([b[o], b[o + 1], b[o + 2], b[o + 3]]))
    }
    /// The bytes the MAC covers (`bytes[0..12]`), for a v2 frame.
    pub fn mac_input(&self) -> Option<&[u8]> {
        (self.version == Version::V2).then(|| &self.buffer.as_ref()[..UPLINK_V2_LEN - MAC_LEN])
    }
    /// The whole frame.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DustUplinkPacket<T> {
    /// Writes the MAC of a v2 frame after the crypto layer computed it over
    /// [`DustUplinkPacket::mac_input`].
    pub fn set_mac(&mut self, mac: &Mac4) -> Result<(), WireError> {
        if self.version != Version::V2 {
            return Err(WireError::VersionMismatch { msg_type: UPLINK_MSG_TYPE, version: 1 });
        }
        set_mac(self.buffer.as_mut(), mac)
    }
}

/// Overwrites the last [`MAC_LEN`] bytes of a v2 Dust frame: emit with a
/// placeholder MAC, compute the CMAC over all bytes but the last four, then
/// write it here.
pub fn set_mac(frame: &mut [u8], mac: &Mac4) -> Result<(), WireError> {
    let got = frame.len();
    let start = got.checked_sub(MAC_LEN).ok_or(WireError::BufferTooSmall { needed: MAC_LEN, got })?;
    frame[start..].copy_from_slice(mac.as_bytes());
    Ok(())
}

impl DustUplink {
    /// Parses and checks a received uplink (length, version, CRC for v1).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let p = DustUplinkPacket::new_checked(bytes)?;
        p.check_crc()?;
        Ok(Self::from_packet(&p))
    }

    /// The fields of a checked view, whatever its CRC says.
    pub fn from_packet<T: AsRef<[u8]>>(p: &DustUplinkPacket<T>) -> Self {
        let auth = match (p.frame_counter(), p.mac()) {
            (Some(counter), Some(mac)) => Some(DustAuth { counter, mac }),
            _ => None,
        };
        DustUplink {
            version: p.version(),
            sender_id_short: p.sender_id_short(),
            reading: p.reading(),
            timestamp_delta: p.timestamp_delta(),
            confidence: p.confidence(),
            auth,
        }
    }

    /// Length of the emitted frame.
    pub fn buffer_len(&self) -> usize {
        match self.version {
            Version::V1 => UPLINK_V1_LEN,
            Version::V2 => UPLINK_V2_LEN,
        }
    }

    /// Length of the MAC-covered prefix (v2 only).
    pub fn mac_input_len(&self) -> Option<usize> {
        (self.version == Version::V2).then_some(UPLINK_V2_LEN - MAC_LEN)
    }

    /// Writes the frame (computing the v1 CRC) and returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        let got = out.len();
        let out = out.get_mut(..len).ok_or(WireError::BufferTooSmall { needed: len, got })?;
        let mut w = Writer::new(out);
        match (self.version, self.auth) {
            (Version::V1, None) => {
                self.emit_fields(&mut w)?;
            }
            (Version::V2, Some(a)) => {
                w.u8(PROTOCOL_VERSION_2)?;
                self.emit_fields(&mut w)?;
                w.u32(a.counter)?;
                w.put(a.mac.as_bytes())?;
            }
            (v, _) => return Err(WireError::VersionMismatch { msg_type: UPLINK_MSG_TYPE, version: v.to_u8() }),
        }
        if self.version == Version::V1 {
            let crc = crc8(&out[..up::CRC]);
            out[up::CRC] = crc;
        }
        Ok(len)
    }

    fn emit_fields(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put(self.sender_id_short.as_bytes())?;
        w.i16(self.reading)?;
        w.u16(self.timestamp_delta)?;
        w.u8(self.confidence)?;
        if self.version == Version::V1 {
            w.u8(0)?;
        }
        Ok(())
    }
}

/// REJECTION_NOTICE downlink: the gateway tells one Dust node to
/// quarantine itself (ES-10.6, ES-12.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DustRejection {
    /// V1: the spec's unauthenticated 4 bytes; V2: counter and MAC.
    pub version: Version,
    /// The Dust node to quarantine.
    pub target: ShortId,
    /// Counter and MAC, present exactly in version 2.
    pub auth: Option<DustAuth>,
}

/// VACCINE downlink: the ES-2.8 attack signature condensed for a Dust node
/// (ES-12.4). The origin, cluster, hop count and temporal pattern stay with
/// the gateway: a Dust node only needs to know what to watch for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DustVaccine {
    /// V1: the 8-byte condensed form; V2: counter and MAC.
    pub version: Version,
    /// ES-2.8 code: 0 VALUE_SPIKE … 4 IMPERSONATION.
    pub attack_type: u8,
    /// The quantity the attack targets.
    pub quantity: QuantityType,
    /// `vaccine_strength` as received by the gateway.
    pub strength: u8,
    /// Mean deviation of the attack, in the quantity's reading unit.
    pub deviation_mean: i16,
    /// Standard deviation of the attack, in the quantity's reading unit.
    pub deviation_std: u16,
    /// Counter and MAC, present exactly in version 2.
    pub auth: Option<DustAuth>,
}

/// A gateway → Dust downlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DustDownlink {
    /// Type byte 0x23.
    Rejection(DustRejection),
    /// Type byte 0x26.
    Vaccine(DustVaccine),
}

impl DustDownlink {
    /// Parses a downlink: type byte, then length and (v2) version byte.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let got = bytes.len();
        let (&ty, rest) = bytes.split_first().ok_or(WireError::TooShort { needed: REJECTION_V1_LEN, got })?;
        let (v1_len, v2_len) = match ty {
            DOWNLINK_REJECTION => (REJECTION_V1_LEN, REJECTION_V2_LEN),
            DOWNLINK_VACCINE => (VACCINE_V1_LEN, VACCINE_V2_LEN),
            other => return Err(WireError::UnknownType(other)),
        };
        let version = if got == v1_len {
            Version::V1
        } else if got < v1_len {
            return Err(WireError::TooShort { needed: v1_len, got });
        } else if rest.first() != Some(&PROTOCOL_VERSION_2) {
            return Err(WireError::LengthMismatch { expected: v1_len, got });
        } else if got < v2_len {
            return Err(WireError::TooShort { needed: v2_len, got });
        } else if got > v2_len {
            return Err(WireError::LengthMismatch { expected: v2_len, got });
        } else {
            Version::V2
        };
        let mut r = Reader::new(rest, 1);
        if version == Version::V2 {
            r.u8()?;
        }
        let d = if ty == DOWNLINK_REJECTION {
            if version == Version::V1 {
                let reserved = r.u8()?;
                if reserved != 0 {
                    return Err(WireError::InvalidField { field: "reserved", value: reserved as u32 });
                }
            }
            let target = ShortId(r.array()?);
            DustDownlink::Rejection(DustRejection { version, target, auth: read_auth(version, &mut r)? })
        } else {
            let attack_type = r.u8()?;
            if attack_type > MAX_ATTACK_TYPE {
                return Err(WireError::InvalidField { field: "attack_type", value: attack_type as u32 });
            }
            DustDownlink::Vaccine(DustVaccine {
                version,
                attack_type,
                quantity: QuantityType::from_u8(r.u8()?),
                strength: r.u8()?,
                deviation_mean: r.i16()?,
                deviation_std: r.u16()?,
                auth: read_auth(version, &mut r)?,
            })
        };
        r.finish()?;
        Ok(d)
    }

    /// The type byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            DustDownlink::Rejection(_) => DOWNLINK_REJECTION,
            DustDownlink::Vaccine(_) => DOWNLINK_VACCINE,
        }
    }

    /// Layout version.
    pub fn version(&self) -> Version {
        match self {
            DustDownlink::Rejection(r) => r.version,
            DustDownlink::Vaccine(v) => v.version,
        }
    }

    fn auth(&self) -> Option<DustAuth> {
        match self {
            DustDownlink::Rejection(r) => r.auth,
            DustDownlink::Vaccine(v) => v.auth,
        }
    }

    /// Length of the emitted frame.
    pub fn buffer_len(&self) -> usize {
        match (self, self.version()) {
            (DustDownlink::Rejection(_), Version::V1) => REJECTION_V1_LEN,
            (DustDownlink::Rejection(_), Version::V2) => REJECTION_V2_LEN,
            (DustDownlink::Vaccine(_), Version::V1) => VACCINE_V1_LEN,
            (DustDownlink::Vaccine(_), Version::V2) => VACCINE_V2_LEN,
        }
    }

    /// Length of the MAC-covered prefix `bytes[0..n]` (v2 only).
    pub fn mac_input_len(&self) -> Option<usize> {
        (self.version() == Version::V2).then(|| self.buffer_len() - MAC_LEN)
    }

    /// Writes the frame and returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let version = self.version();
        let auth = self.auth();
        if (version == Version::V2) != auth.is_some() {
            return Err(WireError::VersionMismatch { msg_type: self.type_byte(), version: version.to_u8() });
        }
        let len = self.buffer_len();
        let got = out.len();
        let out = out.get_mut(..len).ok_or(WireError::BufferTooSmall { needed: len, got })?;
        let mut w = Writer::new(out);
        w.u8(self.type_byte())?;
        if version == Version::V2 {
            w.u8(PROTOCOL_VERSION_2)?;
        }
        match self {
            DustDownlink::Rejection(r) => {
                if version == Version::V1 {
                    w.u8(0)?;
                }
                w.put(r.target.as_bytes())?;
            }
            DustDownlink::Vaccine(v) => {
                if v.attack_type > MAX_ATTACK_TYPE {
                    return Err(WireError::InvalidField { field: "attack_type", value: v.attack_type as u32 });
                }
                w.u8(v.attack_type)?;
                w.u8(v.quantity.to_u8())?;
                w.u8(v.strength)?;
                w.i16(v.deviation_mean)?;
                w.u16(v.deviation_std)?;
            }
        }
        if let Some(a) = auth {
            w.u32(a.counter)?;
            w.put(a.mac.as_bytes())?;
        }
        Ok(len)
    }
}

fn read_auth(version: Version, r: &mut Reader<'_>) -> Result<Option<DustAuth>, WireError> {
    Ok(match version {
        Version::V1 => None,
        Version::V2 => Some(DustAuth { counter: r.u32()?, mac: Mac4(r.array()?) }),
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    /// Bit-at-a-time CRC-8/SMBUS, the reference for the table.
    fn crc8_naive(data: &[u8]) -> u8 {
        let mut crc = 0u8;
        for &b in data {
            crc ^= b;
            for _ in 0..8 {
                crc = if crc & 0x80 != 0 { (crc << 1) ^ 0x07 } else { crc << 1 };
            }
        }
        crc
    }

    /// A 23.10 °C reading from `1807…`, 5 s after the previous one.
    const UP_V1: [u8; 8] = [0x18, 0x07, 0x06, 0x09, 0x05, 0x00, 0x80, 0x42];
    const UP_V2: [u8; 16] =
        [0x02, 0x18, 0x07, 0x06, 0x09, 0x05, 0x00, 0x80, 0x2A, 0x00, 0x00, 0x00, 0xDE, 0xAD, 0xBE, 0xEF];

    fn up_v1() -> DustUplink {
        DustUplink {
            version: Version::V1,
            sender_id_short: ShortId([0x18, 0x07]),
            reading: 2310,
            timestamp_delta: 5,
            confidence: 128,
            auth: None,
        }
    }

    fn up_v2() -> DustUplink {
        DustUplink {
            version: Version::V2,
            auth: Some(DustAuth { counter: 42, mac: Mac4([0xDE, 0xAD, 0xBE, 0xEF]) }),
            ..up_v1()
        }
    }

    #[test]
    fn crc8_smbus_check_value() {
        assert_eq!(crc8(b"123456789"), 0xF4);
        assert_eq!(crc8(&[]), 0x00);
        assert_eq!(crc8(&UP_V1[..7]), 0x42);
    }

    #[test]
    fn deconstruct_uplink_v1() {
        let p = DustUplinkPacket::new_checked(&UP_V1[..]).unwrap();
        assert_eq!(p.version(), Version::V1);
        assert_eq!(p.sender_id_short(), ShortId::of(&DeviceId([0x18, 0x07, 0xF6, 0xE5, 0xD4, 0xC3, 0xB2, 0xA1])));
        assert_eq!(p.sender_id_short().to_u16(), 0x0718);
        assert_eq!((p.reading(), p.timestamp_delta(), p.confidence()), (2310, 5, 128));
        assert_eq!((p.computed_crc(), p.carried_crc()), (Some(0x42), Some(0x42)));
        assert_eq!((p.frame_counter(), p.mac(), p.mac_input()), (None, None, None));
    }

    #[test]
    fn deconstruct_uplink_v2() {
        let p = DustUplinkPacket::new_checked(&UP_V2[..]).unwrap();
        assert_eq!(p.version(), Version::V2);
        assert_eq!((p.reading(), p.timestamp_delta(), p.confidence()), (2310, 5, 128));
        assert_eq!(p.frame_counter(), Some(42));
        assert_eq!(p.mac(), Some(Mac4([0xDE, 0xAD, 0xBE, 0xEF])));
        assert_eq!(p.mac_input(), Some(&UP_V2[..12]));
        assert_eq!((p.carried_crc(), p.check_crc()), (None, Ok(())));
    }

    #[test]
    fn construct_and_parse_uplinks() {
        let mut out = [0u8; 20];
        assert_eq!(up_v1().emit(&mut out), Ok(8));
        assert_eq!(out[..8], UP_V1);
        assert_eq!(up_v2().emit(&mut out), Ok(16));
        assert_eq!(out[..16], UP_V2);
        assert_eq!(DustUplink::parse(&UP_V1), Ok(up_v1()));
        assert_eq!(DustUplink::parse(&UP_V2), Ok(up_v2()));
        assert_eq!(up_v2().mac_input_len(), Some(12));
    }

    #[test]
    fn uplink_errors_say_why() {
        let mut bad = UP_V1;
        bad[3] ^= 0x01;
        assert_eq!(DustUplink::parse(&bad), Err(WireError::BadCrc { computed: crc8(&bad[..7]), carried: 0x42 }));
        assert_eq!(DustUplink::parse(&UP_V1[..7]), Err(WireError::TooShort { needed: 8, got: 7 }));
        assert_eq!(DustUplink::parse(&[]), Err(WireError::TooShort { needed: 8, got: 0 }));
        assert_eq!(DustUplink::parse(&UP_V2[..9]), Err(WireError::TooShort { needed: 16, got: 9 }));
        assert_eq!(DustUplink::parse(&[0x02; 17]), Err(WireError::LengthMismatch { expected: 16, got: 17 }));
        assert_eq!(DustUplink::parse(&[0x18; 16]), Err(WireError::LengthMismatch { expected: 8, got: 16 }));
        let mut out = [0u8; 16];
        let v1_with_auth = DustUplink { version: Version::V1, ..up_v2() };
        assert_eq!(v1_with_auth.emit(&mut out), Err(WireError::VersionMismatch { msg_type: 0x01, version: 1 }));
        let v2_without = DustUplink { version: Version::V2, ..up_v1() };
        assert_eq!(v2_without.emit(&mut out), Err(WireError::VersionMismatch { msg_type: 0x01, version: 2 }));
        assert_eq!(up_v2().emit(&mut out[..15]), Err(WireError::BufferTooSmall { needed: 16, got: 15 }));
    }

    #[test]
    fn set_mac_fills_the_tail_after_emit() {
        let mut r = up_v2();
        r.auth = Some(DustAuth { counter: 42, mac: Mac4::default() });
        let mut out = [0u8; 16];
        r.emit(&mut out).unwrap();
        let mut p = DustUplinkPacket::new_checked(&mut out[..]).unwrap();
        p.set_mac(&Mac4([0xDE, 0xAD, 0xBE, 0xEF])).unwrap();
        assert_eq!(out, UP_V2);
        let mut v1 = UP_V1;
        let mut p1 = DustUplinkPacket::new_checked(&mut v1[..]).unwrap();
        assert!(matches!(p1.set_mac(&Mac4::default()), Err(WireError::VersionMismatch { .. })));
        assert_eq!(set_mac(&mut [0u8; 3], &Mac4::default()), Err(WireError::BufferTooSmall { needed: 4, got: 3 }));
    }

    const REJ_V1: [u8; 4] = [0x23, 0x00, 0x18, 0x07];
    const REJ_V2: [u8; 12] = [0x23, 0x02, 0x18, 0x07, 0x07, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04];
    const VAC_V1: [u8; 8] = [0x26, 0x01, 0x01, 0xC8, 0xF4, 0x01, 0x32, 0x00];
    const VAC_V2: [u8; 17] =
        [0x26, 0x02, 0x01, 0x01, 0xC8, 0xF4, 0x01, 0x32, 0x00, 0x08, 0x00, 0x00, 0x00, 0xAA, 0xBB, 0xCC, 0xDD];

    fn rej(version: Version, auth: Option<DustAuth>) -> DustDownlink {
        DustDownlink::Rejection(DustRejection { version, target: ShortId([0x18, 0x07]), auth })
    }

    fn vac(version: Version, auth: Option<DustAuth>) -> DustDownlink {
        DustDownlink::Vaccine(DustVaccine {
            version,
            attack_type: 1,
            quantity: QuantityType::Temperature,
            strength: 200,
            deviation_mean: 500,
            deviation_std: 50,
            auth,
        })
    }

    #[test]
    fn downlinks_construct_and_parse() {
        let a7 = Some(DustAuth { counter: 7, mac: Mac4([1, 2, 3, 4]) });
        let a8 = Some(DustAuth { counter: 8, mac: Mac4([0xAA, 0xBB, 0xCC, 0xDD]) });
        let cases: [(DustDownlink, &[u8]); 4] = [
            (rej(Version::V1, None), &REJ_V1),
            (rej(Version::V2, a7), &REJ_V2),
            (vac(Version::V1, None), &VAC_V1),
            (vac(Version::V2, a8), &VAC_V2),
        ];
        for (repr, bytes) in cases {
            let mut out = [0u8; 32];
            let n = repr.emit(&mut out).unwrap();
            assert_eq!(&out[..n], bytes);
            assert_eq!(DustDownlink::parse(bytes), Ok(repr));
            assert!(n <= LORA_MAX_PAYLOAD);
        }
        assert_eq!(rej(Version::V2, a7).mac_input_len(), Some(8));
        assert_eq!(vac(Version::V2, a8).mac_input_len(), Some(13));
        assert_eq!(vac(Version::V1, None).mac_input_len(), None);
    }

    #[test]
    fn downlink_errors_say_why() {
        assert_eq!(DustDownlink::parse(&[]), Err(WireError::TooShort { needed: 4, got: 0 }));
        assert_eq!(DustDownlink::parse(&[0x24, 0, 0, 0]), Err(WireError::UnknownType(0x24)));
        assert_eq!(DustDownlink::parse(&REJ_V1[..3]), Err(WireError::TooShort { needed: 4, got: 3 }));
        assert_eq!(
            DustDownlink::parse(&[0x23, 0x05, 0x18, 0x07]),
            Err(WireError::InvalidField { field: "reserved", value: 5 })
        );
        assert_eq!(DustDownlink::parse(&REJ_V2[..11]), Err(WireError::TooShort { needed: 12, got: 11 }));
        assert_eq!(
            DustDownlink::parse(&[0x23, 0x00, 0x18, 0x07, 0x00]),
            Err(WireError::LengthMismatch { expected: 4, got: 5 })
        );
        let mut long = [0u8; 18];
        long[..17].copy_from_slice(&VAC_V2);
        assert_eq!(DustDownlink::parse(&long), Err(WireError::LengthMismatch { expected: 17, got: 18 }));
        let mut bad = VAC_V1;
        bad[1] = 5;
        assert_eq!(DustDownlink::parse(&bad), Err(WireError::InvalidField { field: "attack_type", value: 5 }));
        let mut out = [0u8; 32];
        assert!(matches!(
            rej(Version::V2, None).emit(&mut out),
            Err(WireError::VersionMismatch { msg_type: 0x23, .. })
        ));
        assert!(matches!(
            vac(Version::V1, Some(DustAuth { counter: 0, mac: Mac4::default() })).emit(&mut out),
            Err(WireError::VersionMismatch { msg_type: 0x26, version: 1 })
        ));
        assert!(vac(Version::V2, None).emit(&mut out[..3]).is_err());
    }

    #[test]
    fn uplink_and_downlink_mac_inputs_never_collide() {
        // An uplink MAC input starts with 0x02, a downlink one with its type.
        assert_ne!(UP_V2[0], REJ_V2[0]);
        assert_ne!(UP_V2[0], VAC_V2[0]);
    }

    /// Semtech AN1200.13 time on air in µs, to pin the figures of
    /// `docs/spec-deviations.md` (explicit header, payload CRC on).
    fn lora_airtime_us(payload: u32, sf: u32, bw_hz: u32, cr: u32, preamble: u32) -> u64 {
        let t_sym_us = (1u64 << sf) * 1_000_000 / bw_hz as u64;
        let de = if sf >= 11 && bw_hz == 125_000 { 1 } else { 0 };
        let num = 8 * payload as i64 - 4 * sf as i64 + 28 + 16;
        let den = 4 * (sf as i64 - 2 * de);
        let n_payload = 8 + ((num + den - 1) / den).max(0) * (cr as i64 + 4);
        let t_preamble_x4 = (4 * preamble as u64 + 17) * t_sym_us;
        t_preamble_x4 / 4 + n_payload as u64 * t_sym_us
    }

    #[test]
    fn airtime_of_dust_frames_at_sf12() {
        assert_eq!(lora_airtime_us(8, 12, 125_000, 1, 8), 991_232);
        assert_eq!(lora_airtime_us(UPLINK_V2_LEN as u32, 12, 125_000, 1, 8), 1_318_912);
        assert_eq!(lora_airtime_us(REJECTION_V1_LEN as u32, 12, 125_000, 1, 8), 827_392);
        assert_eq!(lora_airtime_us(REJECTION_V2_LEN as u32, 12, 125_000, 1, 8), 1_155_072);
        assert_eq!(lora_airtime_us(VACCINE_V2_LEN as u32, 12, 125_000, 1, 8), 1_318_912);
    }

    proptest! {
        #[test]
        fn crc_table_matches_bitwise(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(crc8(&data), crc8_naive(&data));
        }

        #[test]
        fn any_single_bit_flip_breaks_the_v1_crc(bit in 0usize..64) {
            let mut f = UP_V1;
            f[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(DustUplink::parse(&f).is_err());
        }

        #[test]
        fn uplink_round_trips(id in any::<[u8; 2]>(), reading in any::<i16>(), dt in any::<u16>(), c in any::<u8>(),
                              auth in proptest::option::of((any::<u32>(), any::<[u8; 4]>()))) {
            let r = DustUplink {
                version: if auth.is_some() { Version::V2 } else { Version::V1 },
                sender_id_short: ShortId(id),
                reading,
                timestamp_delta: dt,
                confidence: c,
                auth: auth.map(|(counter, mac)| DustAuth { counter, mac: Mac4(mac) }),
            };
            let mut out = [0u8; 16];
            let n = r.emit(&mut out).unwrap();
            prop_assert_eq!(DustUplink::parse(&out[..n]), Ok(r));
        }

        #[test]
        fn decoders_never_panic_and_reparse_what_they_accept(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            if let Ok(u) = DustUplink::parse(&bytes) {
                let mut out = [0u8; 16];
                let n = u.emit(&mut out).unwrap();
                prop_assert_eq!(&out[..n], &bytes[..]);
            }
            if let Ok(d) = DustDownlink::parse(&bytes) {
                let mut out = [0u8; 32];
                let n = d.emit(&mut out).unwrap();
                prop_assert_eq!(&out[..n], &bytes[..]);
            }
        }
    }
}
