//! HGT module messages MODULE_ADVERTISE/REQUEST/TRANSFER/FITNESS
//! (0x40–0x43). ES-3.3 gives only the lifecycle (interface only, MVP
//! deferred), so the layouts are ours (SPEC-NOTES 8) and the same in both
//! versions.
//!
//! A module is named by `module_id` and `version` and its image is pinned by
//! the BLAKE2s `image_hash` in the advertisement, so transfer chunks are
//! content-addressed: a chunk carries no destination, and a replayed or
//! foreign chunk can only fail the image hash. A chunk holds at most
//! [`MAX_CHUNK`] = 160 bytes, so the largest TRANSFER frame is 249 bytes and
//! fits one 255-byte BLE extended advertisement (ES-12.2). Offsets:
//! `docs/wire.md`.

use super::{BodyRepr, MessageType, Reader, Version, WireError, Writer};
use crate::types::{DeviceId, Hash32, Timestamp};

/// Largest chunk a MODULE_TRANSFER carries.
pub const MAX_CHUNK: usize = 160;

/// A MODULE_ADVERTISE body: the sender offers a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ModuleAdvertise {
    /// Module identifier.
    pub module_id: u32,
    /// Module version.
    pub version: u16,
    /// Image size in bytes.
    pub size: u32,
    /// Number of chunks the image is split into.
    pub chunk_count: u16,
    /// BLAKE2s-256 of the whole image.
    pub image_hash: Hash32,
    /// Send time.
    pub timestamp: Timestamp,
}

/// Body length of MODULE_ADVERTISE (frame 124 bytes).
pub const MODULE_ADVERTISE_BODY: usize = 48;

impl BodyRepr for ModuleAdvertise {
    const MSG_TYPE: MessageType = MessageType::ModuleAdvertise;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ModuleAdvertise {
            module_id: r.u32()?,
            version: r.u16()?,
            size: r.u32()?,
            chunk_count: r.u16()?,
            image_hash: Hash32(r.array()?),
            timestamp: r.u32()?,
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u32(self.module_id)?;
        w.u16(self.version)?;
        w.u32(self.size)?;
        w.u16(self.chunk_count)?;
        w.put(self.image_hash.as_bytes())?;
        w.u32(self.timestamp)
    }

    fn body_len(&self, _: Version) -> usize {
        MODULE_ADVERTISE_BODY
    }
}

/// A MODULE_REQUEST body: asks the advertiser for a run of chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ModuleRequest {
    /// The advertiser asked.
    pub target_id: DeviceId,
    /// Module identifier.
    pub module_id: u32,
    /// Module version.
    pub version: u16,
    /// First chunk wanted.
    pub first_chunk: u16,
    /// Number of chunks wanted from `first_chunk`.
    pub chunk_count: u8,
    /// Send time.
    pub timestamp: Timestamp,
}

/// Body length of MODULE_REQUEST (frame 97 bytes).
pub const MODULE_REQUEST_BODY: usize = 21;

impl BodyRepr for ModuleRequest {
    const MSG_TYPE: MessageType = MessageType::ModuleRequest;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ModuleRequest {
            target_id: r.device_id()?,
            module_id: r.u32()?,
            version: r.u16()?,
            first_chunk: r.u16()?,
            chunk_count: r.u8()?,
            timestamp: r.u32()?,
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.device_id(&self.target_id)?;
        w.u32(self.module_id)?;
        w.u16(self.version)?;
        w.u16(self.first_chunk)?;
        w.u8(self.chunk_count)?;
        w.u32(self.timestamp)
    }

    fn body_len(&self, _: Version) -> usize {
        MODULE_REQUEST_BODY
    }
}

/// The bytes of one MODULE_TRANSFER chunk, at most [`MAX_CHUNK`].
pub type Chunk = heapless::Vec<u8, MAX_CHUNK>;

/// A MODULE_TRANSFER body: one chunk of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ModuleTransfer {
    /// Module identifier.
    pub module_id: u32,
    /// Module version.
    pub version: u16,
    /// Index of this chunk.
    pub chunk_index: u16,
    /// Send time.
    pub timestamp: Timestamp,
    /// The chunk (`chunk_len` on the wire is its length, ≤ 160).
    pub data: Chunk,
}

/// Body length of MODULE_TRANSFER without data (frame 89 + chunk bytes).
pub const MODULE_TRANSFER_FIXED: usize = 13;

impl BodyRepr for ModuleTransfer {
    const MSG_TYPE: MessageType = MessageType::ModuleTransfer;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let module_id = r.u32()?;
        let version = r.u16()?;
        let chunk_index = r.u16()?;
        let timestamp = r.u32()?;
        let len = r.u8()?;
        let invalid = WireError::InvalidField { field: "chunk_len", value: len as u32 };
        if len as usize > MAX_CHUNK {
            return Err(invalid);
        }
        let data = heapless::Vec::from_slice(r.take(len as usize)?).map_err(|_| invalid)?;
        Ok(ModuleTransfer { module_id, version, chunk_index, timestamp, data })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u32(self.module_id)?;
        w.u16(self.version)?;
        w.u16(self.chunk_index)?;
        w.u32(self.timestamp)?;
        // The Vec's capacity (160) bounds the length, so it fits a u8.
        w.u8(self.data.len() as u8)?;
        w.put(&self.data)
    }

    fn body_len(&self, _: Version) -> usize {
        MODULE_TRANSFER_FIXED + self.data.len()
    }
}

/// Where a module stands on the reporting node (ES-3.3 states after transfer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ModuleState {
    /// 0: running in the sandbox.
    Sandbox,
    /// 1: promoted to production.
    Production,
    /// 2: rolled back.
    Rejected,
    /// 3: revoked (key compromise).
    Revoked,
}

impl ModuleState {
    /// Decodes the byte; codes above 3 are refused.
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        match v {
            0 => Ok(ModuleState::Sandbox),
            1 => Ok(ModuleState::Production),
            2 => Ok(ModuleState::Rejected),
            3 => Ok(ModuleState::Revoked),
            other => Err(WireError::InvalidField { field: "state", value: other as u32 }),
        }
    }
    /// The byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            ModuleState::Sandbox => 0,
            ModuleState::Production => 1,
            ModuleState::Rejected => 2,
            ModuleState::Revoked => 3,
        }
    }
}

/// A MODULE_FITNESS body: how a module performs on the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ModuleFitness {
    /// Module identifier.
    pub module_id: u32,
    /// Module version.
    pub version: u16,
    /// Fitness 0–255 for 0.0–1.0.
    pub fitness: u8,
    /// Lifecycle state on the sender.
    pub state: ModuleState,
    /// Epochs the module has run on the sender.
    pub observed_epochs: u16,
    /// Send time.
    pub timestamp: Timestamp,
}

/// Body length of MODULE_FITNESS (frame 90 bytes).
pub const MODULE_FITNESS_BODY: usize = 14;

impl BodyRepr for ModuleFitness {
    const MSG_TYPE: MessageType = MessageType::ModuleFitness;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ModuleFitness {
            module_id: r.u32()?,
            version: r.u16()?,
            fitness: r.u8()?,
            state: ModuleState::from_u8(r.u8()?)?,
            observed_epochs: r.u16()?,
            timestamp: r.u32()?,
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u32(self.module_id)?;
        w.u16(self.version)?;
        w.u8(self.fitness)?;
        w.u8(self.state.to_u8())?;
        w.u16(self.observed_epochs)?;
        w.u32(self.timestamp)
    }

    fn body_len(&self, _: Version) -> usize {
        MODULE_FITNESS_BODY
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil::*;
    use crate::wire::{Body, FrameRepr};

    #[test]
    fn advertise_request_fitness() {
        let a = ModuleAdvertise {
            module_id: 7,
            version: 2,
            size: 1000,
            chunk_count: 7,
            image_hash: Hash32([0x77; 32]),
            timestamp: T0,
        };
        let b = bytes(2, 0x40, &[&[7, 0, 0, 0, 2, 0, 0xE8, 0x03, 0, 0, 7, 0], &[0x77; 32], &TS]);
        assert_eq!(b.len(), 124);
        check(&b, &repr(Version::V2, Body::ModuleAdvertise(a)), 60);

        let r = ModuleRequest {
            target_id: DeviceId([0x22; 8]),
            module_id: 7,
            version: 2,
            first_chunk: 3,
            chunk_count: 4,
            timestamp: T0,
        };
        let b = bytes(1, 0x41, &[&[0x22; 8], &[7, 0, 0, 0, 2, 0, 3, 0, 4], &TS]);
        assert_eq!(b.len(), 97);
        check(&b, &repr(Version::V1, Body::ModuleRequest(r)), 33);

        let f = ModuleFitness {
            module_id: 7,
            version: 2,
            fitness: 200,
            state: ModuleState::Sandbox,
            observed_epochs: 1440,
            timestamp: T0,
        };
        let b = bytes(2, 0x43, &[&[7, 0, 0, 0, 2, 0, 200, 0, 0xA0, 0x05], &TS]);
        assert_eq!(b.len(), 90);
        check(&b, &repr(Version::V2, Body::ModuleFitness(f)), 26);
        let bad = bytes(2, 0x43, &[&[7, 0, 0, 0, 2, 0, 200, 4, 0xA0, 0x05], &TS]);
        assert_eq!(FrameRepr::parse(&bad), Err(WireError::InvalidField { field: "state", value: 4 }));
    }

    #[test]
    fn transfer_chunks_fit_one_extended_advertisement() {
        let data = [0xA5u8; MAX_CHUNK];
        let t = ModuleTransfer {
            module_id: 7,
            version: 2,
            chunk_index: 6,
            timestamp: T0,
            data: heapless::Vec::from_slice(&data).unwrap(),
        };
        let b = bytes(2, 0x42, &[&[7, 0, 0, 0, 2, 0, 6, 0], &TS, &[160], &data]);
        assert_eq!(b.len(), 249);
        check(&b, &repr(Version::V2, Body::ModuleTransfer(t.clone())), 185);
        let empty = ModuleTransfer { data: heapless::Vec::new(), ..t };
        let b = bytes(2, 0x42, &[&[7, 0, 0, 0, 2, 0, 6, 0], &TS, &[0]]);
        assert_eq!(b.len(), 89);
        check(&b, &repr(Version::V2, Body::ModuleTransfer(empty)), 25);
    }

    #[test]
    fn transfer_malformed() {
        let b = bytes(2, 0x42, &[&[7, 0, 0, 0, 2, 0, 6, 0], &TS, &[161], &[0; 161]]);
        assert_eq!(FrameRepr::parse(&b), Err(WireError::InvalidField { field: "chunk_len", value: 161 }));
        let b = bytes(2, 0x42, &[&[7, 0, 0, 0, 2, 0, 6, 0], &TS, &[10], &[0; 9]]);
        assert!(matches!(FrameRepr::parse(&b), Err(WireError::TooShort { .. })));
        let b = bytes(2, 0x42, &[&[7, 0, 0, 0, 2, 0, 6, 0], &TS, &[1], &[0; 2]]);
        assert!(matches!(FrameRepr::parse(&b), Err(WireError::LengthMismatch { .. })));
    }
}
