//! Enrollment and gateway messages: ENROLLMENT_REQUEST/RESPONSE (0x60/0x61,
//! ES-13.2), KEY_ROTATION (0x62, ES-13.2 step 4, laid out here per
//! SPEC-NOTES 8), PROVISIONER_CERTIFICATE (0x63, ours, the wire part of
//! SPEC-NOTES 41) and GATEWAY_STATUS (0x70, ES-16.4, laid out here).
//!
//! Version 1 is ES-13.2's table: the request's `hw_version` sits at 46+N and
//! its signature at 48+N; `network_key_enc` is 32 bytes on the wire
//! (SPEC-NOTES 37: a 16-byte NetKey sealed with ChaCha20-Poly1305, 16 bytes
//! of ciphertext then the 16-byte tag). Version 2 adds a request nonce that
//! the response echoes (SPEC-NOTES 33): a new device has no clock yet, so
//! freshness comes from the nonce, and a replayed old response (old NetKey,
//! old time) no longer matches. The v2 request also carries the device's
//! X25519 key (its own HKDF branch of the seed, `crypto::Identity::dh_public`)
//! under its self-signature, so the provisioner can seal the NetKey to it.
//!
//! The deployment root's certificate (104 bytes, `crypto::enroll`) does not
//! fit inside the response: 158 + 104 = 262 bytes, over ESP-NOW's 250
//! (ES-12.3). It travels in its own PROVISIONER_CERTIFICATE frame (180
//! bytes), sent before the response and before KEY_ROTATIONs, and found by
//! the header's `sender_id`. Every frame here stays within
//! [`MAX_ENROLLMENT_FRAME`]. KEY_ROTATION, PROVISIONER_CERTIFICATE and
//! GATEWAY_STATUS are ours and the same in both versions. Offsets:
//! `docs/wire.md`.

use super::presence::check_ext;
use super::{BodyRepr, MessageType, Reader, Version, WireError, Writer};
use crate::crypto::enroll::{ProvisionerCertificate, CERTIFICATE_LEN};
use crate::types::{hex_val, DeviceId, PublicKey, QuantityType, Timestamp};
use core::fmt;

/// Opaque bytes (ciphertexts, tags, cluster ids), printed and parsed as hex
/// in wire order by `krill decode`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes<const N: usize>(pub [u8; N]);

impl<const N: usize> Default for Bytes<N> {
    fn default() -> Self {
        Bytes([0u8; N])
    }
}

impl<const N: usize> Bytes<N> {
    /// The bytes in wire order.
    pub fn as_bytes(&self) -> &[u8; N] {
        &self.0
    }

    /// Parses `2 × N` hex digits (either case, optional `0x`).
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.strip_prefix("0x").unwrap_or(s).as_bytes();
        if s.len() != 2 * N {
            return None;
        }
        let mut out = [0u8; N];
        for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            *byte = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Some(Bytes(out))
    }
}

impl<const N: usize> fmt::Debug for Bytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes(")?;
        fmt::Display::fmt(self, f)?;
        write!(f, ")")
    }
}

impl<const N: usize> fmt::Display for Bytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
impl<const N: usize> serde::Serialize for Bytes<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de, const N: usize> serde::Deserialize<'de> for Bytes<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const M: usize>;
        impl<const M: usize> serde::de::Visitor<'_> for V<M> {
            type Value = Bytes<M>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} hex digits in wire order", 2 * M)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bytes<M>, E> {
                Bytes::from_hex(v).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(V::<N>)
    }
}

/// Most sensor types an ENROLLMENT_REQUEST may list (our bound: the spec
/// gives none; 16 keeps the v2 frame at 164 bytes at most).
pub const MAX_SENSOR_TYPES: usize = 16;

/// Largest frame of this module: ESP-NOW's 250-byte payload (ES-12.3), the
/// smaller of the two radios (BLE extended advertising takes 255, ES-12.2).
/// Enrollment runs over either, so every layout here fits 250.
pub const MAX_ENROLLMENT_FRAME: usize = 250;

/// The sensed quantities of an ENROLLMENT_REQUEST, at most [`MAX_SENSOR_TYPES`].
pub type SensorTypes = heapless::Vec<QuantityType, MAX_SENSOR_TYPES>;

/// Version-2 fields of an ENROLLMENT_REQUEST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct EnrollmentRequestV2 {
    /// Random nonce the response must echo.
    pub request_nonce: u32,
    /// The device's X25519 public key (`Identity::dh_public`), which the
    /// provisioner seals the NetKey to. Inside the self-signed range, so a
    /// relay cannot swap in its own key.
    pub dh_pubkey: Bytes<32>,
}

/// An ENROLLMENT_REQUEST body (ES-13.2). The new device's `device_id` is the
/// header's `sender_id`; the frame is self-signed with `pubkey`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct EnrollmentRequest {
    /// The device's Ed25519 public key.
    pub pubkey: PublicKey,
    /// [`super::capability`] bits.
    pub capability_flags: u8,
    /// Sensed quantities (`sensor_count` on the wire is their number).
    pub sensor_types: SensorTypes,
    /// Hardware revision.
    pub hw_version: u16,
    /// Request nonce; `Some` exactly in version 2.
    pub v2: Option<EnrollmentRequestV2>,
}

impl BodyRepr for EnrollmentRequest {
    const MSG_TYPE: MessageType = MessageType::EnrollmentRequest;

    fn parse_body(version: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let pubkey = PublicKey(r.array()?);
        let capability_flags = r.u8()?;
        let count = r.u8()?;
        if count as usize > MAX_SENSOR_TYPES {
            return Err(WireError::InvalidField { field: "sensor_count", value: count as u32 });
        }
        let mut sensor_types = heapless::Vec::new();
        for &b in r.take(count as usize)? {
            sensor_types
                .push(QuantityType::from_u8(b))
                .map_err(|_| WireError::InvalidField { field: "sensor_count", value: count as u32 })?;
        }
        let hw_version = r.u16()?;
        let v2 = match version {
            Version::V1 => None,
            Version::V2 => Some(EnrollmentRequestV2 { request_nonce: r.u32()?, dh_pubkey: Bytes(r.array()?) }),
        };
        Ok(EnrollmentRequest { pubkey, capability_flags, sensor_types, hw_version, v2 })
    }

    fn emit_body(&self, version: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        check_ext(Self::MSG_TYPE, version, &self.v2)?;
        w.put(self.pubkey.as_bytes())?;
        w.u8(self.capability_flags)?;
        // The Vec's capacity (16) bounds the length, so it fits a u8.
        w.u8(self.sensor_types.len() as u8)?;
        for q in self.sensor_types.iter() {
            w.u8(q.to_u8())?;
        }
        w.u16(self.hw_version)?;
        if let Some(x) = self.v2 {
            w.u32(x.request_nonce)?;
            w.put(x.dh_pubkey.as_bytes())?;
        }
        Ok(())
    }

    fn body_len(&self, version: Version) -> usize {
        let v1 = 36 + self.sensor_types.len();
        match version {
            Version::V1 => v1,
            Version::V2 => v1 + 4 + 32,
        }
    }
}

/// Version-2 field of an ENROLLMENT_RESPONSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct EnrollmentResponseV2 {
    /// The `request_nonce` of the request being answered.
    pub request_nonce: u32,
}

/// An ENROLLMENT_RESPONSE body (ES-13.2), signed by the provisioner (the
/// header's `sender_id`, the spec's `provisioner_id`). In version 2 the
/// device accepts it only with a PROVISIONER_CERTIFICATE from the same
/// `sender_id` that verifies under its deployment root (SPEC-NOTES 41).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct EnrollmentResponse {
    /// The enrolling device.
    pub target_device_id: DeviceId,
    /// The provisioner's X25519 key for the Diffie-Hellman exchange: a
    /// one-time (ephemeral) key per response (`SealedNetKey::ephemeral_public`),
    /// not its Ed25519 identity, which the certificate carries.
    pub provisioner_pubkey: Bytes<32>,
    /// The sealed NetKey: 16 bytes of ciphertext then the 16-byte tag.
    pub network_key_enc: Bytes<32>,
    /// The provisioner's current time, to set the new device's clock.
    pub time_sync: Timestamp,
    /// Deployment zone assignment.
    pub deployment_zone: u16,
    /// Nonce echo; `Some` exactly in version 2.
    pub v2: Option<EnrollmentResponseV2>,
}

/// Body length of a version-1 ENROLLMENT_RESPONSE (frame 154 bytes).
pub const ENROLLMENT_RESPONSE_BODY_V1: usize = 78;
/// Body length of a version-2 ENROLLMENT_RESPONSE (frame 158 bytes).
pub const ENROLLMENT_RESPONSE_BODY_V2: usize = 82;

impl BodyRepr for EnrollmentResponse {
    const MSG_TYPE: MessageType = MessageType::EnrollmentResponse;

    fn parse_body(version: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut m = EnrollmentResponse {
            target_device_id: r.device_id()?,
            provisioner_pubkey: Bytes(r.array()?),
            network_key_enc: Bytes(r.array()?),
            time_sync: r.u32()?,
            deployment_zone: r.u16()?,
            v2: None,
        };
        if version == Version::V2 {
            m.v2 = Some(EnrollmentResponseV2 { request_nonce: r.u32()? });
        }
        Ok(m)
    }

    fn emit_body(&self, version: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        check_ext(Self::MSG_TYPE, version, &self.v2)?;
        w.device_id(&self.target_device_id)?;
        w.put(self.provisioner_pubkey.as_bytes())?;
        w.put(self.network_key_enc.as_bytes())?;
        w.u32(self.time_sync)?;
        w.u16(self.deployment_zone)?;
        if let Some(x) = self.v2 {
            w.u32(x.request_nonce)?;
        }
        Ok(())
    }

    fn body_len(&self, version: Version) -> usize {
        match version {
            Version::V1 => ENROLLMENT_RESPONSE_BODY_V1,
            Version::V2 => ENROLLMENT_RESPONSE_BODY_V2,
        }
    }
}

/// A KEY_ROTATION body (our layout for ES-13.2 step 4): a new NetKey for
/// one device, sealed to it with an ephemeral X25519 key and
/// ChaCha20-Poly1305 (`crypto::seal_netkey`). Signed by the provisioner (the
/// header's `sender_id`), whose PROVISIONER_CERTIFICATE precedes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KeyRotation {
    /// The device this copy of the key is for.
    pub target_device_id: DeviceId,
    /// Provisioner's ephemeral X25519 public key for this rotation.
    pub ephemeral_pubkey: Bytes<32>,
    /// Epoch of the new key; devices refuse epochs not above their current.
    pub key_epoch: u32,
    /// The sealed 16-byte NetKey: ciphertext then the 16-byte Poly1305 tag,
    /// so no separate tag field.
    pub new_netkey_enc: Bytes<32>,
    /// Devices that have not switched by this time leave the mesh (24 h).
    pub deadline: Timestamp,
}

/// Body length of KEY_ROTATION in both versions (frame 156 bytes).
pub const KEY_ROTATION_BODY: usize = 80;

impl BodyRepr for KeyRotation {
    const MSG_TYPE: MessageType = MessageType::KeyRotation;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(KeyRotation {
            target_device_id: r.device_id()?,
            ephemeral_pubkey: Bytes(r.array()?),
            key_epoch: r.u32()?,
            new_netkey_enc: Bytes(r.array()?),
            deadline: r.u32()?,
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.device_id(&self.target_device_id)?;
        w.put(self.ephemeral_pubkey.as_bytes())?;
        w.u32(self.key_epoch)?;
        w.put(self.new_netkey_enc.as_bytes())?;
        w.u32(self.deadline)
    }

    fn body_len(&self, _: Version) -> usize {
        KEY_ROTATION_BODY
    }
}

/// Body length of PROVISIONER_CERTIFICATE in both versions (frame 180 bytes).
pub const PROVISIONER_CERTIFICATE_BODY: usize = CERTIFICATE_LEN;

/// PROVISIONER_CERTIFICATE (0x63, ours, SPEC-NOTES 41): the body is the
/// deployment root's certificate as `ProvisionerCertificate::to_bytes` lays
/// it out (key, `not_before`, `not_after`, root signature). The frame is
/// signed by the certified key itself, so `crypto::verify_provisioned_frame`
/// checks it like the response it precedes. A certificate is public:
/// replaying the frame gives nothing without a response signed by that key.
impl BodyRepr for ProvisionerCertificate {
    const MSG_TYPE: MessageType = MessageType::ProvisionerCertificate;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let b = r.take(CERTIFICATE_LEN)?;
        ProvisionerCertificate::from_bytes(b)
            .ok_or(WireError::LengthMismatch { expected: CERTIFICATE_LEN, got: b.len() })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put(&self.to_bytes())
    }

    fn body_len(&self, _: Version) -> usize {
        PROVISIONER_CERTIFICATE_BODY
    }
}

/// A GATEWAY_STATUS body (our layout for ES-16.4). The gateway is the
/// header's `sender_id`. Informational: Nanos compute their own anomaly rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GatewayStatus {
    /// Dust devices registered at this gateway.
    pub dust_device_count: u16,
    /// Seconds since the gateway booted.
    pub uptime: u32,
    /// The gateway's own anomaly rate × 255.
    pub anomaly_rate_self_report: u8,
    /// Send time (SPEC-NOTES 33).
    pub timestamp: Timestamp,
}

/// Body length of GATEWAY_STATUS in both versions (frame 87 bytes).
pub const GATEWAY_STATUS_BODY: usize = 11;

impl BodyRepr for GatewayStatus {
    const MSG_TYPE: MessageType = MessageType::GatewayStatus;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(GatewayStatus {
            dust_device_count: r.u16()?,
            uptime: r.u32()?,
            anomaly_rate_self_report: r.u8()?,
            timestamp: r.u32()?,
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u16(self.dust_device_count)?;
        w.u32(self.uptime)?;
        w.u8(self.anomaly_rate_self_report)?;
        w.u32(self.timestamp)
    }

    fn body_len(&self, _: Version) -> usize {
        GATEWAY_STATUS_BODY
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::types::Signature;
    use crate::wire::testutil::*;
    use crate::wire::{Body, FrameRepr, HEADER_LEN, SIGNATURE_LEN};

    const TARGET: [u8; 8] = [0x22; 8];

    fn request(v2: Option<EnrollmentRequestV2>) -> EnrollmentRequest {
        EnrollmentRequest {
            pubkey: PublicKey([0x11; 32]),
            capability_flags: 0x05,
            sensor_types: heapless::Vec::from_slice(&[QuantityType::Temperature, QuantityType::Co2]).unwrap(),
            hw_version: 0x0102,
            v2,
        }
    }

    #[test]
    fn enrollment_request_offsets_follow_es_13_2() {
        let b = bytes(1, 0x60, &[&[0x11; 32], &[0x05, 0x02, 0x01, 0x06], &[0x02, 0x01]]);
        // N = 2: hw_version at 46+N = 48, signature at 48+N = 50, total 112+N.
        assert_eq!(b.len(), 114);
        assert_eq!(&b[48..50], &[0x02, 0x01]);
        check(&b, &repr(Version::V1, Body::EnrollmentRequest(request(None))), 50);
        let b = bytes(2, 0x60, &[&[0x11; 32], &[0x05, 0x02, 0x01, 0x06], &[0x02, 0x01], &[4, 3, 2, 1], &[0x99; 32]]);
        // v2: request_nonce at 48+N, dh_pubkey at 52+N, signature at 84+N.
        assert_eq!(b.len(), 150);
        assert_eq!(&b[50..54], &[4, 3, 2, 1]);
        assert_eq!(&b[54..86], &[0x99; 32]);
        let v2 = Some(EnrollmentRequestV2 { request_nonce: 0x0102_0304, dh_pubkey: Bytes([0x99; 32]) });
        check(&b, &repr(Version::V2, Body::EnrollmentRequest(request(v2))), 86);
    }

    #[test]
    fn enrollment_request_v2_without_its_dh_key_is_too_short() {
        let b = bytes(2, 0x60, &[&[0x11; 32], &[0x05, 0x02, 0x01, 0x06], &[0x02, 0x01], &[4, 3, 2, 1]]);
        assert_eq!(b.len(), 118);
        assert_eq!(FrameRepr::parse(&b), Err(WireError::TooShort { needed: 150, got: 118 }));
    }

    #[test]
    fn enrollment_request_sensor_count_is_bounded() {
        let mut body = std::vec![0x11; 32];
        body.extend_from_slice(&[0x05, 17]);
        body.extend_from_slice(&[0x01; 17]);
        body.extend_from_slice(&[0x02, 0x01]);
        let b = bytes(1, 0x60, &[&body]);
        assert_eq!(FrameRepr::parse(&b), Err(WireError::InvalidField { field: "sensor_count", value: 17 }));
        let b = bytes(1, 0x60, &[&[0x11; 32], &[0x05, 0x03, 0x01, 0x06], &[0x02, 0x01]]);
        assert!(matches!(FrameRepr::parse(&b), Err(WireError::TooShort { .. })));
    }

    #[test]
    fn enrollment_response_carries_a_32_byte_key() {
        let r = |v2| EnrollmentResponse {
            target_device_id: DeviceId(TARGET),
            provisioner_pubkey: Bytes([0x33; 32]),
            network_key_enc: Bytes([0x44; 32]),
            time_sync: T0,
            deployment_zone: 0x0007,
            v2,
        };
        let b = bytes(1, 0x61, &[&TARGET, &[0x33; 32], &[0x44; 32], &TS, &[0x07, 0x00]]);
        assert_eq!(b.len(), 154);
        assert_eq!(&b[52..84], &[0x44; 32]);
        check(&b, &repr(Version::V1, Body::EnrollmentResponse(r(None))), 90);
        let b = bytes(2, 0x61, &[&TARGET, &[0x33; 32], &[0x44; 32], &TS, &[0x07, 0x00], &[4, 3, 2, 1]]);
        assert_eq!(b.len(), 158);
        let v2 = Some(EnrollmentResponseV2 { request_nonce: 0x0102_0304 });
        check(&b, &repr(Version::V2, Body::EnrollmentResponse(r(v2))), 94);
        let mut out = [0u8; 256];
        assert_eq!(
            repr(Version::V1, Body::EnrollmentResponse(r(v2))).emit(&mut out),
            Err(WireError::VersionMismatch { msg_type: 0x61, version: 1 })
        );
    }

    #[test]
    fn key_rotation_and_gateway_status() {
        let k = KeyRotation {
            target_device_id: DeviceId(TARGET),
            ephemeral_pubkey: Bytes([0x55; 32]),
            key_epoch: 2,
            new_netkey_enc: Bytes([0x66; 32]),
            deadline: T0 + 86_400,
        };
        let deadline = (T0 + 86_400).to_le_bytes();
        let b = bytes(2, 0x62, &[&TARGET, &[0x55; 32], &[2, 0, 0, 0], &[0x66; 32], &deadline]);
        // No separate AEAD tag: the deadline follows the 32 sealed bytes.
        assert_eq!(b.len(), 156);
        assert_eq!(&b[88..92], &deadline);
        check(&b, &repr(Version::V2, Body::KeyRotation(k)), 92);
        let mut v1 = b.clone();
        v1[2] = 1;
        check(&v1, &repr(Version::V1, Body::KeyRotation(k)), 92);
        let mut with_old_tag = b[..92].to_vec();
        with_old_tag.extend_from_slice(&[0x77; 16]);
        with_old_tag.extend_from_slice(&[0x5A; 64]);
        assert_eq!(FrameRepr::parse(&with_old_tag), Err(WireError::LengthMismatch { expected: 156, got: 172 }));

        let g = GatewayStatus { dust_device_count: 300, uptime: 86_400, anomaly_rate_self_report: 13, timestamp: T0 };
        let b = bytes(2, 0x70, &[&[0x2C, 0x01, 0x80, 0x51, 0x01, 0x00, 13], &TS]);
        assert_eq!(b.len(), 87);
        check(&b, &repr(Version::V2, Body::GatewayStatus(g)), 23);
    }

    #[test]
    fn provisioner_certificate_frame_layout() {
        let cert = ProvisionerCertificate {
            provisioner_key: PublicKey([0x88; 32]),
            not_before: T0,
            not_after: T0 + 365 * 86_400,
            signature: Signature([0xAA; 64]),
        };
        let not_after = (T0 + 365 * 86_400).to_le_bytes();
        let b = bytes(2, 0x63, &[&[0x88; 32], &TS, &not_after, &[0xAA; 64]]);
        // key at 12, not_before at 44, not_after at 48, root signature at 52,
        // the sender's own signature at 116.
        assert_eq!(b.len(), 180);
        assert_eq!(&b[12..116], &cert.to_bytes());
        check(&b, &repr(Version::V2, Body::ProvisionerCertificate(cert)), 116);
        let mut v1 = b.clone();
        v1[2] = 1;
        check(&v1, &repr(Version::V1, Body::ProvisionerCertificate(cert)), 116);
        assert!(matches!(FrameRepr::parse(&b[..179]), Err(WireError::TooShort { .. })));
    }

    #[test]
    fn every_enrollment_frame_fits_esp_now() {
        let types = heapless::Vec::from_slice(&[QuantityType::Temperature; MAX_SENSOR_TYPES]).unwrap();
        let largest_request = EnrollmentRequest {
            sensor_types: types,
            v2: Some(EnrollmentRequestV2 { request_nonce: 0, dh_pubkey: Bytes([0; 32]) }),
            ..request(None)
        };
        let sizes = [
            repr(Version::V2, Body::EnrollmentRequest(largest_request)).buffer_len(),
            HEADER_LEN + ENROLLMENT_RESPONSE_BODY_V2 + SIGNATURE_LEN,
            HEADER_LEN + KEY_ROTATION_BODY + SIGNATURE_LEN,
            HEADER_LEN + PROVISIONER_CERTIFICATE_BODY + SIGNATURE_LEN,
        ];
        assert_eq!(sizes, [164, 158, 156, 180]);
        assert!(sizes.iter().all(|&n| n <= MAX_ENROLLMENT_FRAME));
        // What the certificate inside the response would have cost.
        assert!(sizes[1] + CERTIFICATE_LEN > MAX_ENROLLMENT_FRAME);
    }

    /// The whole v2 exchange with real keys: the request carries the
    /// device's X25519 key, the provisioner answers with its certificate and
    /// a sealed NetKey, and the device checks and opens both from the parsed
    /// frames alone.
    #[test]
    fn real_enrollment_exchange_round_trips() {
        use crate::crypto::{
            device_id_of, issue_provisioner_certificate, open_netkey, seal_netkey, sign_frame, verify_frame,
            verify_provisioned_frame, Crypto, EnrollError, Identity, NetKey, RealCrypto, SealContext, SealedNetKey,
            Seed, SEALED_NETKEY_LEN,
        };
        assert_eq!(SEALED_NETKEY_LEN, 32);
        let root = RealCrypto::new(&Identity::from_seed(&Seed([1; 32])));
        let prov_id = Identity::from_seed(&Seed([2; 32]));
        let prov = RealCrypto::new(&prov_id);
        let dev_id = Identity::from_seed(&Seed([3; 32]));
        let dev = RealCrypto::new(&dev_id);
        let signed = |c: &RealCrypto, f: &FrameRepr| {
            let mut out = [0u8; 256];
            let n = f.emit(&mut out).unwrap();
            sign_frame(c, &mut out[..n], f.signed_len()).unwrap();
            out[..n].to_vec()
        };

        let req = FrameRepr {
            version: Version::V2,
            sender_id: dev.device_id(),
            body: Body::EnrollmentRequest(EnrollmentRequest {
                pubkey: dev.public_key(),
                v2: Some(EnrollmentRequestV2 { request_nonce: 77, dh_pubkey: dev_id.dh_public() }),
                ..request(None)
            }),
            signature: Signature([0; 64]),
        };
        let req_bytes = signed(&dev, &req);
        let got = FrameRepr::parse(&req_bytes).unwrap();
        let Body::EnrollmentRequest(EnrollmentRequest { pubkey, v2: Some(ext), .. }) = got.body else {
            panic!("{got:?}")
        };
        assert_eq!(verify_frame(&prov, &pubkey, &req_bytes, got.signed_len()), Ok(()));

        let cert = issue_provisioner_certificate(&root, &prov.public_key(), T0, T0 + 86_400);
        let cert_frame = FrameRepr {
            version: Version::V2,
            sender_id: prov.device_id(),
            body: Body::ProvisionerCertificate(cert),
            signature: Signature([0; 64]),
        };
        let cert_bytes = signed(&prov, &cert_frame);
        let ctx = SealContext::Enrollment {
            provisioner_id: prov.device_id(),
            target_device_id: got.sender_id,
            time_sync: T0 + 60,
            deployment_zone: 7,
        };
        let netkey = NetKey([0x42; 16]);
        let sealed = seal_netkey(&[9; 32], &ext.dh_pubkey, &netkey, &ctx).unwrap();
        let resp = FrameRepr {
            version: Version::V2,
            sender_id: prov.device_id(),
            body: Body::EnrollmentResponse(EnrollmentResponse {
                target_device_id: got.sender_id,
                provisioner_pubkey: sealed.ephemeral_public,
                network_key_enc: sealed.ciphertext,
                time_sync: T0 + 60,
                deployment_zone: 7,
                v2: Some(EnrollmentResponseV2 { request_nonce: ext.request_nonce }),
            }),
            signature: Signature([0; 64]),
        };
        let resp_bytes = signed(&prov, &resp);
        assert_eq!((cert_bytes.len(), resp_bytes.len()), (180, 158));

        let Body::ProvisionerCertificate(c) = FrameRepr::parse(&cert_bytes).unwrap().body else { panic!() };
        assert_eq!(c, cert);
        let root_key = root.public_key();
        assert_eq!(verify_provisioned_frame(&dev, &root_key, &c, &cert_bytes, 116, T0 + 60), Ok(()));
        let parsed = FrameRepr::parse(&resp_bytes).unwrap();
        assert_eq!(parsed.sender_id, device_id_of(&c.provisioner_key));
        let Body::EnrollmentResponse(r) = parsed.body else { panic!() };
        assert_eq!(r.v2, Some(EnrollmentResponseV2 { request_nonce: 77 }));
        assert_eq!(verify_provisioned_frame(&dev, &root_key, &c, &resp_bytes, 94, r.time_sync), Ok(()));
        let opened = SealedNetKey { ephemeral_public: r.provisioner_pubkey, ciphertext: r.network_key_enc };
        let back = SealContext::Enrollment {
            provisioner_id: parsed.sender_id,
            target_device_id: r.target_device_id,
            time_sync: r.time_sync,
            deployment_zone: r.deployment_zone,
        };
        assert_eq!(open_netkey(&dev_id, &opened, &back), Ok(netkey));

        // A certificate from another root does not let the same frames in.
        let rogue = RealCrypto::new(&Identity::from_seed(&Seed([4; 32])));
        let forged = issue_provisioner_certificate(&rogue, &prov.public_key(), T0, T0 + 86_400);
        assert_eq!(
            verify_provisioned_frame(&dev, &root_key, &forged, &resp_bytes, 94, r.time_sync),
            Err(EnrollError::CertificateForged)
        );
    }

    #[test]
    fn real_key_rotation_round_trips() {
        use crate::crypto::{open_netkey, seal_netkey, Identity, NetKey, SealContext, SealedNetKey, Seed};
        let dev = Identity::from_seed(&Seed([3; 32]));
        let ctx = SealContext::KeyRotation {
            provisioner_id: DeviceId(SENDER),
            target_device_id: dev.device_id(),
            key_epoch: 2,
            deadline: T0 + 86_400,
        };
        let sealed = seal_netkey(&[8; 32], &dev.dh_public(), &NetKey([0x17; 16]), &ctx).unwrap();
        let k = KeyRotation {
            target_device_id: dev.device_id(),
            ephemeral_pubkey: sealed.ephemeral_public,
            key_epoch: 2,
            new_netkey_enc: sealed.ciphertext,
            deadline: T0 + 86_400,
        };
        let f = repr(Version::V2, Body::KeyRotation(k));
        let mut out = [0u8; 256];
        let n = f.emit(&mut out).unwrap();
        assert_eq!(n, 156);
        let Body::KeyRotation(back) = FrameRepr::parse(&out[..n]).unwrap().body else { panic!() };
        let opened = SealedNetKey { ephemeral_public: back.ephemeral_pubkey, ciphertext: back.new_netkey_enc };
        assert_eq!(open_netkey(&dev, &opened, &ctx), Ok(NetKey([0x17; 16])));
    }

    #[test]
    fn bytes_print_and_parse_as_hex() {
        let b = Bytes([0xAB, 0x01, 0xFF]);
        assert_eq!(std::format!("{b}"), "ab01ff");
        assert_eq!(Bytes::<3>::from_hex("AB01ff"), Some(b));
        assert_eq!(Bytes::<3>::from_hex("0xab01ff"), Some(b));
        assert_eq!(Bytes::<3>::from_hex("ab01f"), None);
        assert_eq!(Bytes::<3>::from_hex("ab01fg"), None);
    }
}
