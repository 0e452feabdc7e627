//! A Dust node's own records (ES-14.4): the factory record of `dust_meta`
//! and the uplink frame-counter reservations of `dust_state`.
//!
//! **Why the counter is persisted.** A gateway accepts a v2 uplink only if
//! its counter is above the last one it accepted from that device
//! (SPEC-NOTES 21). A Dust node that restarted its counter at 0 after a
//! reboot would have every uplink refused as a replay until the counter
//! passed the old value, possibly for weeks.
//!
//! **How.** Like a LoRaWAN frame counter: the node does not write its
//! counter on every uplink but reserves blocks of [`DUST_COUNTER_BLOCK`]
//! counters. A record holds a bound `R`: every counter ever sent is ≤ `R`.
//! Before an uplink whose counter `c` is above the persisted bound, the
//! bound `c − 1 + DUST_COUNTER_BLOCK` is written first
//! ([`DustCounterStore::cover`]); a node whose limit was set
//! ([`crate::node::Node::resume_dust_counter`]) refuses to send a counter
//! above the bound it was granted. After a reboot the node resumes at
//! `R + 1`: at most one block of counters is skipped, none is reused, and a
//! power cut while writing leaves the previous bound (the journal's CRC).
//! One 16-byte record per block: at one uplink per 2 min and blocks of 64,
//! a record every 2 h and each of the two sectors erased every ~45 days.

use super::flash::{crc32, Flash, ERASED};
use super::store::{Invalid, Journal, Partition, WriteError};
use super::{Status, ENROLLED_MARKER};
use crate::gateway::DustKey;
use crate::types::{le, DeviceId};

/// Record kind of dust_state journal records.
pub const KIND_DUST_COUNTER: u8 = 5;
/// Counters reserved per dust_state write.
pub const DUST_COUNTER_BLOCK: u32 = 64;

/// Where a board keeps a Dust node's two records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DustLayout {
    /// The factory record ([`DustMeta`]), one sector, never written by the firmware.
    pub meta: Partition,
    /// The counter reservation journal ([`DustCounterStore`]), two sectors or more.
    pub state: Partition,
}

/// ES-14.4 `dust_meta` ("enrolled flag, symmetric key, device_id"): what
/// a provisioning station writes before the node first boots.
///
/// Layout (36 bytes, LE): 0 magic `"KRD1"` · 4 [`ENROLLED_MARKER`] · 5 zero ·
/// 6 `short_id` u16 · 8 `device_id` (8 bytes) · 16 `key` (16 bytes) ·
/// 32 CRC-32 of bytes 0..32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DustMeta {
    /// The short id the gateway assigned (SPEC-NOTES 38).
    pub short_id: u16,
    /// The device id the gateway registered.
    pub device_id: DeviceId,
    /// The factory AES-128 key both ends hold (ES-13.3).
    pub key: DustKey,
}

const DUST_META_MAGIC: [u8; 4] = *b"KRD1";

impl DustMeta {
    /// Record size.
    pub const LEN: usize = 36;

    /// The documented layout (for provisioning stations and tests).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&DUST_META_MAGIC);
        b[4] = ENROLLED_MARKER;
        b[6..8].copy_from_slice(&self.short_id.to_le_bytes());
        b[8..16].copy_from_slice(&self.device_id.0);
        b[16..32].copy_from_slice(&self.key.0);
        let crc = crc32(&b[..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads the layout: another magic is [`Invalid::BadMagic`], a wrong CRC
    /// [`Invalid::BadChecksum`], anything but the marker in byte 4 or a
    /// non-zero byte 5 [`Invalid::BadField`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, Invalid> {
        let b = b.get(..Self::LEN).ok_or(Invalid::BadLength)?;
        if b[0..4] != DUST_META_MAGIC {
            return Err(Invalid::BadMagic);
        }
        if le::u32_at(b, 32) != Some(crc32(&b[..32])) {
            return Err(Invalid::BadChecksum);
        }
        if b[4] != ENROLLED_MARKER || b[5] != 0 {
            return Err(Invalid::BadField);
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&b[16..32]);
        Ok(DustMeta {
            short_id: le::u16_at(b, 6).unwrap_or(0),
            device_id: DeviceId::from_slice(&b[8..16]).unwrap_or_default(),
            key: DustKey(key),
        })
    }

    /// The record at the start of `part`: `Ok(None)` if erased (never
    /// provisioned).
    pub fn read<F: Flash>(flash: &mut F, part: Partition) -> Result<Option<Self>, Invalid> {
        let mut b = [0u8; Self::LEN];
        if (part.len as usize) < Self::LEN {
            return Err(Invalid::BadLength);
        }
        flash.read(part.offset, &mut b).map_err(Invalid::Flash)?;
        if b.iter().all(|&x| x == ERASED) {
            return Ok(None);
        }
        Self::from_bytes(&b).map(Some)
    }
}

/// The counter reservations in `dust_state`: a journal of 4-byte bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DustCounterStore {
    journal: Journal,
    reserved: u32,
}

impl DustCounterStore {
    /// Reads the newest valid bound. Blank flash (first boot) and a journal
    /// with no valid record both give 0; the second is a `Fallback` in the
    /// status, after which the gateway will refuse uplinks until the counter
    /// passes its last accepted one (nothing better is known).
    pub fn restore<F: Flash>(flash: &mut F, part: Partition) -> (Self, Status) {
        let mut b = [0u8; 4];
        let (journal, seq, bad, why) = Journal::scan(flash, part, KIND_DUST_COUNTER, &mut b);
        let reserved = if seq.is_some() { u32::from_le_bytes(b) } else { 0 };
        (DustCounterStore { journal, reserved }, Status::from_scan(seq, bad, why))
    }

    /// The persisted bound: no counter above it was ever sent.
    pub fn reserved(&self) -> u32 {
        self.reserved
    }

    /// Persist-before-use: makes sure counter `next` lies within a persisted
    /// reservation, writing a new bound `next − 1 + DUST_COUNTER_BLOCK` when
    /// it does not. Returns the bound in force; after an error the old one
    /// stays in force (and `next` must not be sent).
    pub fn cover<F: Flash>(&mut self, flash: &mut F, next: u32) -> Result<u32, WriteError> {
        if next <= self.reserved {
            return Ok(self.reserved);
        }
        let bound = next.saturating_sub(1).saturating_add(DUST_COUNTER_BLOCK);
        self.journal.append(flash, &bound.to_le_bytes())?;
        self.reserved = bound;
        Ok(bound)
    }
}
