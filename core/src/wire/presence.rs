//! Quorum-sensing and proof-of-life messages: PRESENCE_PULSE (ES-2.4),
//! MODE_ANNOUNCE (0x11, laid out here per SPEC-NOTES 8) and HEARTBEAT
//! (ES-2.10).
//!
//! PRESENCE_PULSE version 2 adds a timestamp (SPEC-NOTES 33: Ed25519 is
//! deterministic, so a v1 pulse replays forever and keeps a dead node
//! "alive") and the sender's transmit power in dBm (SPEC-NOTES 34: without
//! it a node can fake its distance by lowering its power). HEARTBEAT already
//! carries a timestamp, and MODE_ANNOUNCE is ours, so both have one layout
//! for both versions. Offsets: `docs/wire.md`.
//!
//! The helpers shared by every body file live here too: [`mode_named`],
//! [`capability`] flags and [`check_ext`].

use super::{BodyRepr, MessageType, Reader, Version, WireError, Writer};
use crate::types::{HashPrefix2, Timestamp};

/// Quorum-sensing operating mode (ES-3.2), as carried in PRESENCE_PULSE,
/// MODE_ANNOUNCE and HEARTBEAT: the quorum machine's own type.
pub use crate::quorum::QuorumMode as Mode;

/// Decodes a mode byte held in the field `field`; anything above 2 names no
/// mode.
pub fn mode_named(field: &'static str, v: u8) -> Result<Mode, WireError> {
    Mode::from_u8(v).ok_or(WireError::InvalidField { field, value: v as u32 })
}

/// Bits of `capability_flags` (ES-13.2 bits 0–3, ES-16.4 bit 4). Unknown
/// bits are carried unchanged so newer nodes stay decodable.
pub mod capability {
    /// Bluetooth LE mesh.
    pub const BLE: u8 = 1 << 0;
    /// WiFi / ESP-NOW.
    pub const WIFI: u8 = 1 << 1;
    /// LoRa radio.
    pub const LORA: u8 = 1 << 2;
    /// Ultra-wideband ranging.
    pub const UWB: u8 = 1 << 3;
    /// Acts as an LPWAN gateway for Dust nodes (ES-16.4).
    pub const LPWAN_GATEWAY: u8 = 1 << 4;
}

/// Checks that a version-2 extension is present exactly when the version
/// is 2: a v1 frame cannot carry it and a v2 frame must.
pub fn check_ext<T>(msg_type: MessageType, version: Version, ext: &Option<T>) -> Result<(), WireError> {
    match (version, ext.is_some()) {
        (Version::V1, false) | (Version::V2, true) => Ok(()),
        _ => Err(WireError::VersionMismatch { msg_type: msg_type.to_u8(), version: version.to_u8() }),
    }
}

/// Version-2 fields of a PRESENCE_PULSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PresencePulseV2 {
    /// Send time on the sender's synced clock; receivers drop stale pulses.
    pub timestamp: Timestamp,
    /// Transmit power in dBm, so receivers compute path loss, not raw RSSI.
    pub tx_power_dbm: i8,
}

/// A PRESENCE_PULSE body (ES-2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PresencePulse {
    /// Sender's current quorum mode.
    pub mode: Mode,
    /// Neighbours the sender observes.
    pub neighbor_count: u8,
    /// Freshness and transmit power; `Some` exactly in version 2.
    pub v2: Option<PresencePulseV2>,
}

/// Body length of a version-1 PRESENCE_PULSE (frame 78 bytes).
pub const PRESENCE_BODY_V1: usize = 2;
/// Body length of a version-2 PRESENCE_PULSE (frame 83 bytes).
pub const PRESENCE_BODY_V2: usize = 7;

impl BodyRepr for PresencePulse {
    const MSG_TYPE: MessageType = MessageType::PresencePulse;

    fn parse_body(version: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mode = mode_named("mode", r.u8()?)?;
        let neighbor_count = r.u8()?;
        let v2 = match version {
            Version::V1 => None,
            Version::V2 => Some(PresencePulseV2 { timestamp: r.u32()?, tx_power_dbm: r.i8()? }),
        };
        Ok(PresencePulse { mode, neighbor_count, v2 })
    }

    fn emit_body(&self, version: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        check_ext(Self::MSG_TYPE, version, &self.v2)?;
        w.u8(self.mode.to_u8())?;
        w.u8(self.neighbor_count)?;
        if let Some(x) = self.v2 {
            w.u32(x.timestamp)?;
            w.i8(x.tx_power_dbm)?;
        }
        Ok(())
    }

    fn body_len(&self, version: Version) -> usize {
        match version {
            Version::V1 => PRESENCE_BODY_V1,
            Version::V2 => PRESENCE_BODY_V2,
        }
    }
}

/// A MODE_ANNOUNCE body (our layout, SPEC-NOTES 8): the mode plus the
/// capability flags ES-16.4 says gateways advertise here. Same in v1 and v2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ModeAnnounce {
    /// The mode now in force.
    pub mode: Mode,
    /// The mode before the change (equal to `mode` on a periodic announce).
    pub previous_mode: Mode,
    /// Smoothed neighbour count that drove the decision.
    pub neighbor_count: u8,
    /// [`capability`] bits.
    pub capability_flags: u8,
    /// Send time on the sender's synced clock (SPEC-NOTES 33).
    pub timestamp: Timestamp,
}

/// Body length of MODE_ANNOUNCE in both versions (frame 84 bytes).
pub const MODE_ANNOUNCE_BODY: usize = 8;

impl BodyRepr for ModeAnnounce {
    const MSG_TYPE: MessageType = MessageType::ModeAnnounce;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ModeAnnounce {
            mode: mode_named("mode", r.u8()?)?,
            previous_mode: mode_named("previous_mode", r.u8()?)?,
            neighbor_count: r.u8()?,
            capability_flags: r.u8()?,
            timestamp: r.u32()?,
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u8(self.mode.to_u8())?;
        w.u8(self.previous_mode.to_u8())?;
        w.u8(self.neighbor_count)?;
        w.u8(self.capability_flags)?;
        w.u32(self.timestamp)
    }

    fn body_len(&self, _: Version) -> usize {
        MODE_ANNOUNCE_BODY
    }
}

/// A HEARTBEAT body (ES-2.10). Same in v1 and v2: it already carries a
/// timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Heartbeat {
    /// Send time on the sender's synced clock.
    pub timestamp: Timestamp,
    /// Seconds since the sender last booted.
    pub uptime: u32,
    /// Battery 0–254, or [`BATTERY_MAINS`].
    pub battery_level: u8,
    /// Sender's quorum mode.
    pub mode: Mode,
    /// First two bytes of the sender's newest DAG entry hash.
    pub dag_tip_hash: HashPrefix2,
}

/// `battery_level` of a mains-powered node (ES-2.10).
pub const BATTERY_MAINS: u8 = 0xFF;
/// Body length of HEARTBEAT in both versions (frame 88 bytes).
pub const HEARTBEAT_BODY: usize = 12;

impl BodyRepr for Heartbeat {
    const MSG_TYPE: MessageType = MessageType::Heartbeat;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Heartbeat {
            timestamp: r.u32()?,
            uptime: r.u32()?,
            battery_level: r.u8()?,
            mode: mode_named("mode", r.u8()?)?,
            dag_tip_hash: HashPrefix2(r.array()?),
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u32(self.timestamp)?;
        w.u32(self.uptime)?;
        w.u8(self.battery_level)?;
        w.u8(self.mode.to_u8())?;
        w.put(self.dag_tip_hash.as_bytes())
    }

    fn body_len(&self, _: Version) -> usize {
        HEARTBEAT_BODY
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil::*;
    use crate::wire::{Body, FrameRepr};

    #[test]
    fn presence_pulse_v1_is_the_spec_layout() {
        let b = frame_bytes(1, 0x10, &[0x01, 0x07]);
        assert_eq!(b.len(), 78);
        let body = PresencePulse { mode: Mode::Quorum, neighbor_count: 7, v2: None };
        check(&b, &repr(Version::V1, Body::PresencePulse(body)), 14);
    }

    #[test]
    fn presence_pulse_v2_adds_timestamp_and_tx_power() {
        let b = frame_bytes(2, 0x10, &[0x02, 0x0C, 0xC0, 0xF5, 0xCA, 0x65, 0xEC]);
        assert_eq!(b.len(), 83);
        let v2 = Some(PresencePulseV2 { timestamp: 1_707_800_000, tx_power_dbm: -20 });
        let body = PresencePulse { mode: Mode::Swarm, neighbor_count: 12, v2 };
        check(&b, &repr(Version::V2, Body::PresencePulse(body)), 19);
    }

    #[test]
    fn mode_announce_and_heartbeat() {
        let b = frame_bytes(2, 0x11, &[0x01, 0x00, 0x05, 0x11, 0xC0, 0xF5, 0xCA, 0x65]);
        assert_eq!(b.len(), 84);
        let m = ModeAnnounce {
            mode: Mode::Quorum,
            previous_mode: Mode::Solo,
            neighbor_count: 5,
            capability_flags: capability::BLE | capability::LPWAN_GATEWAY,
            timestamp: 1_707_800_000,
        };
        check(&b, &repr(Version::V2, Body::ModeAnnounce(m)), 20);

        let b = frame_bytes(1, 0x30, &[0xC0, 0xF5, 0xCA, 0x65, 0x10, 0x0E, 0x00, 0x00, 0xFF, 0x02, 0xAB, 0xCD]);
        assert_eq!(b.len(), 88);
        let h = Heartbeat {
            timestamp: 1_707_800_000,
            uptime: 3600,
            battery_level: BATTERY_MAINS,
            mode: Mode::Swarm,
            dag_tip_hash: HashPrefix2([0xAB, 0xCD]),
        };
        check(&b, &repr(Version::V1, Body::Heartbeat(h)), 24);
        check(&frame_bytes(2, 0x30, &b[12..24]), &repr(Version::V2, Body::Heartbeat(h)), 24);
    }

    #[test]
    fn malformed_presence_frames_give_reasons() {
        assert_eq!(
            FrameRepr::parse(&frame_bytes(1, 0x10, &[0x03, 0x07])),
            Err(WireError::InvalidField { field: "mode", value: 3 })
        );
        assert_eq!(
            FrameRepr::parse(&frame_bytes(2, 0x11, &[0x01, 0x09, 0, 0, 0, 0, 0, 0])),
            Err(WireError::InvalidField { field: "previous_mode", value: 9 })
        );
        // A v1-sized pulse labelled version 2: the timestamp read (bytes
        // 14..18, plus the signature) is the first to run out.
        assert_eq!(
            FrameRepr::parse(&frame_bytes(2, 0x10, &[0x01, 0x07])),
            Err(WireError::TooShort { needed: 82, got: 78 })
        );
        assert_eq!(
            FrameRepr::parse(&frame_bytes(1, 0x10, &[0x01, 0x07, 0x00])),
            Err(WireError::LengthMismatch { expected: 78, got: 79 })
        );
        let mut out = [0u8; 128];
        let v1_with_ext = repr(
            Version::V1,
            Body::PresencePulse(PresencePulse {
                mode: Mode::Solo,
                neighbor_count: 0,
                v2: Some(PresencePulseV2 { timestamp: 0, tx_power_dbm: 0 }),
            }),
        );
        assert_eq!(v1_with_ext.emit(&mut out), Err(WireError::VersionMismatch { msg_type: 0x10, version: 1 }));
        let v2_without =
            repr(Version::V2, Body::PresencePulse(PresencePulse { mode: Mode::Solo, neighbor_count: 0, v2: None }));
        assert_eq!(v2_without.emit(&mut out), Err(WireError::VersionMismatch { msg_type: 0x10, version: 2 }));
        assert_eq!(v2_without.emit(&mut out[..10]), Err(WireError::BufferTooSmall { needed: 83, got: 10 }));
    }
}
