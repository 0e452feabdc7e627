//! Flash layout and persistence (ES-14, ES-13.1 storage, ES-10.2 phase 1),
//! resolving SPEC-NOTES 37 (flash layout) and the persistence half of
//! SPEC-NOTES 11 (observed neonatal time), and replacing ES-14.3's "NVS
//! library" with two small power-cut-safe schemes of our own:
//!
//! - **Journal ring** ([`store::Journal`], krill_state): fixed-size records
//!   `[0x4B][kind][len][seq][payload][crc32]` appended into erased space over
//!   four sectors; the highest valid sequence wins. A torn record fails its
//!   CRC and the previous record stays newest. Only the oldest sector is ever
//!   erased. At one flush a minute a sector is erased every 272 min, ≈ 52
//!   years to 100 000 cycles (ES-14.3's wear concern).
//! - **A/B image banks** ([`store::Banks`], krill_meta, krill_dag,
//!   krill_profiles): a full image is written into the *other* bank (erase,
//!   payload, then the header last as the commit) so a cut anywhere leaves
//!   the previous bank valid. The DAG appends entries incrementally after its
//!   image (`[seq16][entry 62][crc32]`); restore reads them up to the first
//!   erased or invalid record, so an interrupted append loses only itself and
//!   an interrupted compaction (ES-14.3 item 2) leaves the old bank.
//!
//! Checksums are CRC-32/IEEE ([`flash::crc32`]); every record and image
//! carries one and a sequence number. Nothing here panics on flash
//! contents, and a copy that fails any check is never returned:
//! [`restore`] falls back per component (ES-14.3 step 6) and says why in
//! [`RestoreReport`].
//!
//! Field layouts are fixed and little-endian; see [`PersistedState`],
//! [`MetaRecord`], [`StoredProfile`] and the partition tables
//! [`ESP32_C3_LAYOUT`] / [`NRF52840_LAYOUT`]. A Dust node's own records
//! (ES-14.4 `dust_meta`, and the uplink counter in `dust_state`) are in
//! [`dust`], placed by [`NRF52840_DUST`]. Decisions and their tests:
//! `docs/spec-deviations.md`.

pub mod dust;
pub mod flash;
pub mod store;
#[cfg(test)]
mod tests;

pub use dust::{DustCounterStore, DustLayout, DustMeta, DUST_COUNTER_BLOCK, KIND_DUST_COUNTER};
pub use flash::{crc32, Crc32, Flash, FlashError, RamFlash, ERASED, SECTOR_SIZE};
pub use store::{Banks, Invalid, Journal, Partition, WriteError, BANK_HEADER};

use crate::crypto::PUF_BYTES;
use crate::dag::{DagEntry, LocalDag, SyncReport};
use crate::profile::{ProfileMode, ProfileSummary, SubjectKind};
use crate::types::{le, DeviceId, Hash20, PublicKey, QuantityType, Timestamp, Weight, MAX_PROFILE_BINS};

/// Record kind of krill_meta images.
pub const KIND_META: u8 = 1;
/// Record kind of krill_state journal records.
pub const KIND_STATE: u8 = 2;
/// Record kind of krill_dag images.
pub const KIND_DAG: u8 = 3;
/// Record kind of krill_profiles images.
pub const KIND_PROFILES: u8 = 4;

/// The `enrolled` marker: erased flash reads 0xFF and a cleared byte 0x00,
/// so neither can mean "enrolled" (SPEC-NOTES 37).
pub const ENROLLED_MARKER: u8 = 0xA5;

/// Lifecycle codes stored in [`PersistedState::lifecycle`], in ES-3.1 order.
pub mod lifecycle_code {
    /// OFFLINE.
    pub const OFFLINE: u8 = 0;
    /// BOOTING.
    pub const BOOTING: u8 = 1;
    /// NEONATAL.
    pub const NEONATAL: u8 = 2;
    /// NORMAL.
    pub const NORMAL: u8 = 3;
    /// PYREXIA.
    pub const PYREXIA: u8 = 4;
    /// INFLAMMATION.
    pub const INFLAMMATION: u8 = 5;
    /// REJECTION.
    pub const REJECTION: u8 = 6;
    /// QUARANTINE.
    pub const QUARANTINE: u8 = 7;
    /// APOPTOTIC.
    pub const APOPTOTIC: u8 = 8;
}

/// Quorum modes stored in [`PersistedState::quorum_mode`] (ES-3.2).
pub mod quorum_code {
    /// SOLO.
    pub const SOLO: u8 = 0;
    /// QUORUM.
    pub const QUORUM: u8 = 1;
    /// SWARM.
    pub const SWARM: u8 = 2;
}

/// Weight a node starts NEONATAL with (ES-3.1: 0.3 × 255).
pub const NEONATAL_WEIGHT: Weight = 77;

/// The critical state of ES-14.3 item 1, plus the mutable fields ES-14.2 put
/// in krill_meta (boot count, BER history, PUF warning), which change every
/// boot and so live in the journal rather than beside the write-once helper.
///
/// Layout (48 bytes, LE): 0 `lifecycle` · 1 `quorum_mode` · 2 `weight` ·
/// 3 `remediation_attempts` · 4 flags (bit 0 `profile_frozen`, bit 1
/// `puf_warning`, others 0) · 5 `quarantine_reason` · 6 `consecutive_pyrexia`
/// u16 · 8 `entered_at` · 12 `neonatal_start` · 16 `neonatal_observed_s` ·
/// 20 `last_heartbeat` · 24 `last_mode_change` · 28 `boot_count` ·
/// 32 `last_boot` (u32 each) · 36 `ber_history` [8] · 44 four zero bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PersistedState {
    /// Own lifecycle state, a [`lifecycle_code`] (0–8).
    pub lifecycle: u8,
    /// When the current state was entered.
    pub entered_at: Timestamp,
    /// When NEONATAL began (kept for reports; the timer runs on
    /// `neonatal_observed_s`).
    pub neonatal_start: Timestamp,
    /// Seconds of neonatal time actually observed, excluding SOLO time and
    /// time powered off (SPEC-NOTES 11); the neonatal period ends when this
    /// reaches `NEONATAL_DURATION`.
    pub neonatal_observed_s: u32,
    /// The self-signature is frozen (after NEONATAL).
    pub profile_frozen: bool,
    /// Own immunological weight.
    pub weight: Weight,
    /// Last own heartbeat sent.
    pub last_heartbeat: Timestamp,
    /// Quarantine remediation attempts so far.
    pub remediation_attempts: u8,
    /// Why the node is quarantined, if it is.
    pub quarantine_reason: u8,
    /// Epochs spent in PYREXIA.
    pub consecutive_pyrexia: u16,
    /// Quorum mode, a [`quorum_code`] (0–2).
    pub quorum_mode: u8,
    /// When the quorum mode last changed.
    pub last_mode_change: Timestamp,
    /// Boots so far (ES-14.3 step 1 increments it).
    pub boot_count: u32,
    /// When this node last booted.
    pub last_boot: Timestamp,
    /// PUF bit error rates of the last 8 boots, ×255 (ES-13.1).
    pub ber_history: [u8; 8],
    /// A boot saw BER above 12 % (ES-13.1 `PUF_DEGRADATION_WARNING`).
    pub puf_warning: bool,
}

impl PersistedState {
    /// Payload size in the journal.
    pub const LEN: usize = 48;

    /// The state of a node without a valid record: NEONATAL from `now`
    /// (ES-14.3 step 6), weight 0.3, SOLO.
    pub fn first_boot(now: Timestamp) -> Self {
        PersistedState {
            lifecycle: lifecycle_code::NEONATAL,
            entered_at: now,
            neonatal_start: now,
            neonatal_observed_s: 0,
            profile_frozen: false,
            weight: NEONATAL_WEIGHT,
            last_heartbeat: now,
            remediation_attempts: 0,
            quarantine_reason: 0,
            consecutive_pyrexia: 0,
            quorum_mode: quorum_code::SOLO,
            last_mode_change: now,
            boot_count: 0,
            last_boot: now,
            ber_history: [0; 8],
            puf_warning: false,
        }
    }

    /// The documented layout.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.lifecycle;
        b[1] = self.quorum_mode;
        b[2] = self.weight;
        b[3] = self.remediation_attempts;
        b[4] = self.profile_frozen as u8 | (self.puf_warning as u8) << 1;
        b[5] = self.quarantine_reason;
        b[6..8].copy_from_slice(&self.consecutive_pyrexia.to_le_bytes());
        let words = [
            self.entered_at,
            self.neonatal_start,
            self.neonatal_observed_s,
            self.last_heartbeat,
            self.last_mode_change,
            self.boot_count,
            self.last_boot,
        ];
        for (i, w) in words.iter().enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        b[36..44].copy_from_slice(&self.ber_history);
        b
    }

    /// Reads the layout; a code out of range or a reserved bit set is
    /// [`Invalid::BadField`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, Invalid> {
        let s = b.get(..Self::LEN).ok_or(Invalid::BadLength)?;
        let w = |i: usize| le::u32_at(s, 8 + 4 * i).unwrap_or(0);
        if s[0] > lifecycle_code::APOPTOTIC || s[1] > quorum_code::SWARM || s[4] & !3 != 0 || s[44..48] != [0; 4] {
            return Err(Invalid::BadField);
        }
        let mut ber = [0u8; 8];
        ber.copy_from_slice(&s[36..44]);
        Ok(PersistedState {
            lifecycle: s[0],
            quorum_mode: s[1],
            weight: s[2],
            remediation_attempts: s[3],
            profile_frozen: s[4] & 1 != 0,
            puf_warning: s[4] & 2 != 0,
            quarantine_reason: s[5],
            consecutive_pyrexia: le::u16_at(s, 6).unwrap_or(0),
            entered_at: w(0),
            neonatal_start: w(1),
            neonatal_observed_s: w(2),
            last_heartbeat: w(3),
            last_mode_change: w(4),
            boot_count: w(5),
            last_boot: w(6),
            ber_history: ber,
        })
    }
}

/// Sealed NetKey at rest: 16-byte ciphertext ‖ 16-byte tag (SPEC-NOTES 37).
pub const NETKEY_SEALED_LEN: usize = 32;

/// The enrollment record of krill_meta (ES-13.1 storage, ES-14.2), written
/// at enrollment and on KEY_ROTATION. Not serde: the helper is 4096 bytes.
///
/// Layout (4180 bytes, LE): 0 [`ENROLLED_MARKER`] · 1 `protocol_version` ·
/// 2 `hw_version` u16 · 4 `pubkey` [32] · 36 `device_id` [8] ·
/// 44 `enrolled_at` u32 · 48 `deployment_zone` u16 · 50 two zero bytes ·
/// 52 `netkey_sealed` [32] · 84 `helper` [4096].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaRecord {
    /// Protocol version at enrollment.
    pub protocol_version: u8,
    /// Hardware revision.
    pub hw_version: u16,
    /// Cached public key (for checks, not security).
    pub pubkey: PublicKey,
    /// Cached device id.
    pub device_id: DeviceId,
    /// When the device was enrolled.
    pub enrolled_at: Timestamp,
    /// Assigned zone.
    pub deployment_zone: u16,
    /// The NetKey sealed under a PUF-derived key (opaque here; the crypto
    /// layer seals and opens it, so a wrong PUF reconstruction is detected).
    pub netkey_sealed: [u8; NETKEY_SEALED_LEN],
    /// Fuzzy-extractor helper data `W` (public).
    pub helper: [u8; PUF_BYTES],
}

impl MetaRecord {
    /// Payload size in the bank.
    pub const LEN: usize = 84 + PUF_BYTES;

    /// The documented layout, written into `out` (at least [`Self::LEN`] bytes).
    pub fn write_bytes(&self, out: &mut [u8]) -> Result<(), Invalid> {
        let b = out.get_mut(..Self::LEN).ok_or(Invalid::BadLength)?;
        b.fill(0);
        b[0] = ENROLLED_MARKER;
        b[1] = self.protocol_version;
        b[2..4].copy_from_slice(&self.hw_version.to_le_bytes());
        b[4..36].copy_from_slice(&self.pubkey.0);
        b[36..44].copy_from_slice(&self.device_id.0);
        b[44..48].copy_from_slice(&self.enrolled_at.to_le_bytes());
        b[48..50].copy_from_slice(&self.deployment_zone.to_le_bytes());
        b[52..84].copy_from_slice(&self.netkey_sealed);
        b[84..].copy_from_slice(&self.helper);
        Ok(())
    }

    /// Reads the layout; anything but [`ENROLLED_MARKER`] in byte 0 is
    /// [`Invalid::BadField`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, Invalid> {
        let b = b.get(..Self::LEN).ok_or(Invalid::BadLength)?;
        if b[0] != ENROLLED_MARKER || b[50..52] != [0, 0] {
            return Err(Invalid::BadField);
        }
        let mut netkey_sealed = [0u8; NETKEY_SEALED_LEN];
        netkey_sealed.copy_from_slice(&b[52..84]);
        let mut helper = [0u8; PUF_BYTES];
        helper.copy_from_slice(&b[84..]);
        Ok(MetaRecord {
            protocol_version: b[1],
            hw_version: le::u16_at(b, 2).unwrap_or(0),
            pubkey: PublicKey::from_slice(&b[4..36]).unwrap_or_default(),
            device_id: DeviceId::from_slice(&b[36..44]).unwrap_or_default(),
            enrolled_at: le::u32_at(b, 44).unwrap_or(0),
            deployment_zone: le::u16_at(b, 48).unwrap_or(0),
            netkey_sealed,
            helper,
        })
    }
}

/// One persisted profile: the subject, what it measures, its mode and the
/// PROFILE_SYNC summary (ES-14.3 item 3 as the summary, not the whole
/// profile; see `docs/spec-deviations.md`).
///
/// Layout (134 bytes, LE): 0 `device` [8] · 8 quantity code · 9 mode
/// (0 Learning, 1 Running, 2 Frozen) · 10 `profile_version` u32 ·
/// 14 `value_count` u32 · 18 `value_mean` f32 bits · 22 `value_var` f32 bits ·
/// 26 `value_min` i16 · 28 `value_max` i16 · 30 `last_updated` u32 ·
/// 34 `bins` 50 × u16.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StoredProfile {
    /// The profiled device.
    pub device: DeviceId,
    /// Its quantity.
    pub quantity: QuantityType,
    /// How the profile learns; `Frozen` marks the own self-signature.
    pub mode: ProfileMode,
    /// The statistics.
    pub summary: ProfileSummary,
}

impl StoredProfile {
    /// Record size.
    pub const LEN: usize = 34 + 2 * MAX_PROFILE_BINS;

    /// The documented layout.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        let s = &self.summary;
        b[0..8].copy_from_slice(&self.device.0);
        b[8] = self.quantity.to_u8();
        b[9] = match self.mode {
            ProfileMode::Learning => 0,
            ProfileMode::Running => 1,
            ProfileMode::Frozen => 2,
        };
        b[10..14].copy_from_slice(&s.profile_version.to_le_bytes());
        b[14..18].copy_from_slice(&s.value_count.to_le_bytes());
        b[18..22].copy_from_slice(&s.value_mean.to_bits().to_le_bytes());
        b[22..26].copy_from_slice(&s.value_var.to_bits().to_le_bytes());
        b[26..28].copy_from_slice(&s.value_min.to_le_bytes());
        b[28..30].copy_from_slice(&s.value_max.to_le_bytes());
        b[30..34].copy_from_slice(&s.last_updated.to_le_bytes());
        for (i, v) in s.bins.iter().enumerate() {
            b[34 + 2 * i..36 + 2 * i].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Reads the layout; an unknown mode is [`Invalid::BadField`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, Invalid> {
        let b = b.get(..Self::LEN).ok_or(Invalid::BadLength)?;
        let mode = match b[9] {
            0 => ProfileMode::Learning,
            1 => ProfileMode::Running,
            2 => ProfileMode::Frozen,
            _ => return Err(Invalid::BadField),
        };
        let u = |at| le::u32_at(b, at).unwrap_or(0);
        let mut bins = [0u16; MAX_PROFILE_BINS];
        for (i, v) in bins.iter_mut().enumerate() {
            *v = le::u16_at(b, 34 + 2 * i).unwrap_or(0);
        }
        Ok(StoredProfile {
            device: DeviceId::from_slice(b).unwrap_or_default(),
            quantity: QuantityType::from_u8(b[8]),
            mode,
            summary: ProfileSummary {
                profile_version: u(10),
                value_count: u(14),
                value_mean: f32::from_bits(u(18)),
                value_var: f32::from_bits(u(22)),
                value_min: le::i16_at(b, 26).unwrap_or(0),
                value_max: le::i16_at(b, 28).unwrap_or(0),
                last_updated: u(30),
                bins,
            },
        })
    }
}

/// A subject's standing that must survive a reboot: REJECTION or
/// QUARANTINE (ES-3.1, weight 0), the two states whose loss would give an
/// isolated device its weight back. Written in the krill_profiles image
/// after the profiles; see `docs/spec-deviations.md` "ES-14.3 — rejected
/// subjects survive a reboot".
///
/// Layout (16 bytes, LE): 0 `device` [8] · 8 `state` ([`lifecycle_code`]
/// REJECTION 6 or QUARANTINE 7) · 9 `kind` (0 Nano, 1 Dust) ·
/// 10 `remediation_attempts` · 11 zero · 12 `entered_at` u32 (Unix s: the
/// monotonic clock restarts at boot, so the REJECTION timeout is resumed
/// from the age at the boot's Unix time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SubjectStanding {
    /// The subject.
    pub device: DeviceId,
    /// [`lifecycle_code::REJECTION`] or [`lifecycle_code::QUARANTINE`].
    pub state: u8,
    /// Nano (signs its traces) or Dust (vouched for by a gateway).
    pub kind: SubjectKind,
    /// Failed remediations so far (QUARANTINE).
    pub remediation_attempts: u8,
    /// When the monitor entered `state`, Unix seconds.
    pub entered_at: Timestamp,
}

impl SubjectStanding {
    /// Record size.
    pub const LEN: usize = 16;

    /// The documented layout.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.device.0);
        b[8] = self.state;
        b[9] = match self.kind {
            SubjectKind::Nano => 0,
            SubjectKind::Dust => 1,
        };
        b[10] = self.remediation_attempts;
        b[12..16].copy_from_slice(&self.entered_at.to_le_bytes());
        b
    }

    /// Reads the layout; a state other than REJECTION/QUARANTINE, an unknown
    /// kind or a non-zero reserved byte is [`Invalid::BadField`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, Invalid> {
        let b = b.get(..Self::LEN).ok_or(Invalid::BadLength)?;
        let kind = match b[9] {
            0 => SubjectKind::Nano,
            1 => SubjectKind::Dust,
            _ => return Err(Invalid::BadField),
        };
        if !matches!(b[8], lifecycle_code::REJECTION | lifecycle_code::QUARANTINE) || b[11] != 0 {
            return Err(Invalid::BadField);
        }
        Ok(SubjectStanding {
            device: DeviceId::from_slice(b).unwrap_or_default(),
            state: b[8],
            kind,
            remediation_attempts: b[10],
            entered_at: le::u32_at(b, 12).unwrap_or(0),
        })
    }
}

/// A subject's learned offset from our own readings (`node::RelativeLevel`,
/// the relative-drift check): written in the krill_profiles image after the
/// standings, so a monitor that reboots still holds a slow drifter to the
/// level it had before the drift, not to where it has drifted by the boot.
/// See `docs/spec-deviations.md` "ES-14.3 — relative levels survive a
/// reboot".
///
/// Layout (28 bytes, LE): 0 `device` [8] · 8 `quantity` · 9 zero ·
/// 10 `samples` u16 · 12 `base_mean` f32 · 16 `base_m2` f32 · 20 `running`
/// f32 · 24 `hour` f32 (physical units of the quantity).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StoredRelative {
    /// The subject.
    pub device: DeviceId,
    /// The quantity whose offset is tracked.
    pub quantity: QuantityType,
    /// Offset samples learned (the offset is frozen at 32).
    pub samples: u16,
    /// The learned offset, subject minus us.
    pub base_mean: f32,
    /// Sum of squared deviations of the learned samples (Welford).
    pub base_m2: f32,
    /// The running offset.
    pub running: f32,
    /// The running offset's hour average.
    pub hour: f32,
}

impl StoredRelative {
    /// Record size.
    pub const LEN: usize = 28;

    /// The documented layout.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.device.0);
        b[8] = self.quantity.to_u8();
        b[10..12].copy_from_slice(&self.samples.to_le_bytes());
        for (at, v) in [(12, self.base_mean), (16, self.base_m2), (20, self.running), (24, self.hour)] {
            b[at..at + 4].copy_from_slice(&v.to_bits().to_le_bytes());
        }
        b
    }

    /// Reads the layout; a non-finite figure, a negative `base_m2` or a
    /// non-zero reserved byte is [`Invalid::BadField`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, Invalid> {
        let b = b.get(..Self::LEN).ok_or(Invalid::BadLength)?;
        let f = |at| f32::from_bits(le::u32_at(b, at).unwrap_or(0));
        let r = StoredRelative {
            device: DeviceId::from_slice(b).unwrap_or_default(),
            quantity: QuantityType::from_u8(b[8]),
            samples: le::u16_at(b, 10).unwrap_or(0),
            base_mean: f(12),
            base_m2: f(16),
            running: f(20),
            hour: f(24),
        };
        let finite = [r.base_mean, r.base_m2, r.running, r.hour].iter().all(|v| v.is_finite());
        if b[9] != 0 || !finite || r.base_m2 < 0.0 {
            return Err(Invalid::BadField);
        }
        Ok(r)
    }
}

/// DAG image prefix before the entries: `entry_count u16 | tip_hash [20] |
/// 2 zero bytes` (ES-14.3's header; its checksum is the bank's).
pub const DAG_IMAGE_HEADER: usize = 24;
/// DAG append record: sequence tag 2 + entry 62 + CRC 4.
pub const DAG_APPEND_RECORD: usize = DagEntry::LEN + 6;
/// Profile image prefix: `profile_count u16 | standing_count u16`, followed
/// by the profiles, the [`SubjectStanding`]s and then the
/// [`StoredRelative`]s, as many as the rest of the payload holds. Images
/// written before the standings existed have 0 in the second field (it was
/// reserved zero), and those written before the relative levels end after
/// the standings, so both restore unchanged.
pub const PROFILE_IMAGE_HEADER: usize = 4;
/// Journal record size of the critical state.
pub const STATE_RECORD: usize = store::journal_record_len(PersistedState::LEN);

/// Bytes a DAG image of `n` entries takes in a bank, header included.
pub const fn dag_image_len(n: usize) -> usize {
    BANK_HEADER + DAG_IMAGE_HEADER + n * DagEntry::LEN
}
/// Bytes a profile image of `n` profiles takes in a bank, header included.
pub const fn profile_image_len(n: usize) -> usize {
    profile_image_len_with(n, 0)
}
/// Bytes a profile image of `n` profiles and `m` standings takes in a bank.
pub const fn profile_image_len_with(n: usize, m: usize) -> usize {
    profile_image_len_all(n, m, 0)
}
/// Bytes a profile image of `n` profiles, `m` standings and `k` relative
/// levels takes in a bank.
pub const fn profile_image_len_all(n: usize, m: usize, k: usize) -> usize {
    BANK_HEADER + PROFILE_IMAGE_HEADER + n * StoredProfile::LEN + m * SubjectStanding::LEN + k * StoredRelative::LEN
}
/// Bytes the meta image takes in a bank.
pub const META_IMAGE_LEN: usize = BANK_HEADER + MetaRecord::LEN;

/// A region that is not ours, kept for the overlap check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Its name in the partition table.
    pub name: &'static str,
    /// Where it is.
    pub part: Partition,
}

/// Where the KRILL partitions sit on one board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Flash size in bytes.
    pub flash_size: u32,
    /// Enrollment record, A/B banks.
    pub meta: Partition,
    /// Critical state journal.
    pub state: Partition,
    /// DAG, A/B banks with append log.
    pub dag: Partition,
    /// Profiles, A/B banks; `None` on a Dust node, which profiles nobody.
    pub profiles: Option<Partition>,
    /// Everything else on the chip (bootloader, tables, firmware, reserve,
    /// and a Dust node's records, whose places a [`DustLayout`] gives).
    pub others: &'static [Region],
}

const fn p(offset: u32, len: u32) -> Partition {
    Partition { offset, len }
}

/// ESP32-C3, 4 MB (ES-14.1 adapted, SPEC-NOTES 37): the ROM loads the
/// second-stage bootloader from 0x0 and the partition table from 0x8000, so
/// nothing else may sit there; app partitions are 64 KB aligned.
pub const ESP32_C3_LAYOUT: Layout = Layout {
    flash_size: 0x40_0000,
    meta: p(0x31_0000, 0x4000),
    state: p(0x31_4000, 0x4000),
    profiles: Some(p(0x32_0000, 0x2_0000)),
    dag: p(0x34_0000, 0xC_0000),
    others: &[
        Region { name: "bootloader", part: p(0x0, 0x8000) },
        Region { name: "partition_table", part: p(0x8000, 0x1000) },
        Region { name: "nvs", part: p(0x9000, 0x4000) },
        Region { name: "otadata", part: p(0xD000, 0x2000) },
        Region { name: "phy_init", part: p(0xF000, 0x1000) },
        Region { name: "app0", part: p(0x1_0000, 0x18_0000) },
        Region { name: "app1", part: p(0x19_0000, 0x18_0000) },
        Region { name: "krill_deploy", part: p(0x31_8000, 0x1000) },
        Region { name: "krill_reserve", part: p(0x31_9000, 0x7000) },
    ],
};

/// nRF52840, 1 MB (ES-14.4 adapted from the 256 KB nRF52832; 4 KB pages).
/// MBR + SoftDevice S140 at the bottom and the bootloader with its settings
/// pages at the top are kept free for a board that uses them. Both roles
/// share the map: a Nano uses the krill_* partitions (profiles included,
/// ES-14.3 item 3), a Dust node `dust_meta` and `dust_state`
/// ([`NRF52840_DUST`]); `dust_reserve` holds a board's own page (the
/// identity seed of a Nano without a PUF).
///
/// | range | name |
/// | --- | --- |
/// | 0x00000–0x27000 | mbr_softdevice |
/// | 0x27000–0xD0000 | application (676 KB) |
/// | 0xD0000–0xD8000 | krill_profiles, 2 banks × 16 KB |
/// | 0xD8000–0xE8000 | krill_dag, 2 banks × 32 KB |
/// | 0xE8000–0xEC000 | krill_meta, 2 banks × 8 KB |
/// | 0xEC000–0xF0000 | krill_state journal |
/// | 0xF0000–0xF1000 | dust_meta |
/// | 0xF1000–0xF3000 | dust_state journal |
/// | 0xF3000–0xF4000 | dust_reserve |
/// | 0xF4000–0x100000 | bootloader + settings |
pub const NRF52840_LAYOUT: Layout = Layout {
    flash_size: 0x10_0000,
    profiles: Some(p(0xD_0000, 0x8000)),
    dag: p(0xD_8000, 0x1_0000),
    meta: p(0xE_8000, 0x4000),
    state: p(0xE_C000, 0x4000),
    others: &[
        Region { name: "mbr_softdevice", part: p(0x0, 0x2_7000) },
        Region { name: "application", part: p(0x2_7000, 0xA_9000) },
        Region { name: "dust_meta", part: NRF52840_DUST.meta },
        Region { name: "dust_state", part: NRF52840_DUST.state },
        Region { name: "dust_reserve", part: p(0xF_3000, 0x1000) },
        Region { name: "bootloader", part: p(0xF_4000, 0xC000) },
    ],
};

/// A Dust node's records on the nRF52840 (ES-14.4): `dust_meta` is ES-14.4's
/// 4 KB; `dust_state` is 8 KB rather than 4, since a power-cut-safe journal
/// needs two sectors.
pub const NRF52840_DUST: DustLayout = DustLayout { meta: p(0xF_0000, 0x1000), state: p(0xF_1000, 0x2000) };

/// How one component came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Status {
    /// Nothing was ever written (erased flash): first boot for this component.
    Blank,
    /// Restored from the copy with sequence `seq`; `skipped` copies that were
    /// written but invalid were passed over, the first for `why`.
    Restored {
        /// Sequence of the copy used.
        seq: u32,
        /// Invalid copies passed over.
        skipped: u16,
        /// Why the first of them was refused.
        why: Option<Invalid>,
    },
    /// Data was present but no copy was valid: the component starts empty
    /// (state: NEONATAL) — ES-14.3 step 6.
    Fallback {
        /// Why the last candidate was refused.
        why: Invalid,
    },
}

impl Status {
    fn from_scan(seq: Option<u32>, skipped: u16, why: Option<Invalid>) -> Self {
        match (seq, why) {
            (Some(seq), why) => Status::Restored { seq, skipped, why },
            (None, Some(why)) => Status::Fallback { why },
            (None, None) => Status::Blank,
        }
    }
}

/// What [`restore`] found, per partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RestoreReport {
    /// krill_meta.
    pub meta: Status,
    /// krill_state.
    pub state: Status,
    /// krill_dag image.
    pub dag: Status,
    /// Entries read from the DAG append log.
    pub dag_appended: u16,
    /// The append log ended on an invalid record (a torn append) rather than
    /// on erased flash.
    pub dag_tail: Option<Invalid>,
    /// What loading the entries into the DAG did (expired entries are dropped).
    pub dag_load: SyncReport,
    /// krill_profiles (`Blank` when the layout has none).
    pub profiles: Status,
    /// Stored profiles that did not fit the caller's capacity.
    pub profiles_dropped: u16,
}

/// Write handles for every partition, positioned by [`restore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Store {
    meta: Banks,
    state: Journal,
    dag: Banks,
    profiles: Option<Banks>,
}

/// Everything [`restore`] brings back.
#[derive(Debug)]
pub struct Restored<const D: usize, const P: usize> {
    /// The enrollment record; `None` means not enrolled (first boot).
    pub meta: Option<MetaRecord>,
    /// The critical state, or [`PersistedState::first_boot`] when lost.
    pub state: PersistedState,
    /// The DAG, entries re-hashed and re-linked.
    pub dag: LocalDag<D>,
    /// Stored profiles, in stored order.
    pub profiles: heapless::Vec<StoredProfile, P>,
    /// Rejected and quarantined subjects; beyond `P` they count in
    /// `report.profiles_dropped`.
    pub standings: heapless::Vec<SubjectStanding, P>,
    /// Learned offsets of subjects from our readings; beyond `P` they count
    /// in `report.profiles_dropped`.
    pub relatives: heapless::Vec<StoredRelative, P>,
    /// Which partitions fell back and why.
    pub report: RestoreReport,
    /// Handles to keep writing with.
    pub store: Store,
}

impl<const D: usize, const P: usize> Restored<D, P> {
    /// What `Node::restore` rebuilds the node from, taking the DAG out (an
    /// empty one is left behind); `meta`, `report` and `store` stay for the
    /// caller.
    pub fn node_image(&mut self) -> NodeImage<'_, D> {
        NodeImage {
            state: &self.state,
            dag: core::mem::take(&mut self.dag),
            profiles: &self.profiles,
            standings: &self.standings,
            relatives: &self.relatives,
        }
    }
}

/// Everything `Node::restore` needs from flash, in one value so that no part
/// can be forgotten: the standings used to be a second call, and a boot
/// that skipped it gave every subject the node had rejected its weight
/// back. Usually [`Restored::node_image`]; a literal must name each field
/// (`standings: &[]` is a visible choice).
#[derive(Debug)]
pub struct NodeImage<'a, const D: usize> {
    /// The own critical state.
    pub state: &'a PersistedState,
    /// The DAG, moved into the node.
    pub dag: LocalDag<D>,
    /// The krill_profiles image's profiles.
    pub profiles: &'a [StoredProfile],
    /// The krill_profiles image's rejected and quarantined subjects.
    pub standings: &'a [SubjectStanding],
    /// The krill_profiles image's learned relative levels.
    pub relatives: &'a [StoredRelative],
}

/// ES-14.3 boot restore: reads every partition of `layout`, takes the newest
/// valid copy of each and falls back per component. `now` is the best clock
/// at boot; it stamps a fallback state and bounds which DAG entries are kept.
/// Never panics and never returns a copy that failed a check.
pub fn restore<F: Flash, const D: usize, const P: usize>(
    flash: &mut F,
    layout: &Layout,
    now: Timestamp,
) -> Restored<D, P> {
    let (meta_banks, ms) = Banks::scan(flash, layout.meta, KIND_META);
    let mut meta = None;
    let mut meta_status = Status::from_scan(ms.seq, ms.invalid, ms.why);
    if meta_banks.has_image() {
        let mut buf = [0u8; MetaRecord::LEN];
        let r = if meta_banks.payload_len() as usize == MetaRecord::LEN {
            meta_banks.read_payload(flash, 0, &mut buf).and_then(|_| MetaRecord::from_bytes(&buf))
        } else {
            Err(Invalid::BadLength)
        };
        match r {
            Ok(m) => meta = Some(m),
            Err(why) => meta_status = Status::Fallback { why },
        }
    }

    let mut sbuf = [0u8; PersistedState::LEN];
    let (journal, seq, bad, why) = Journal::scan(flash, layout.state, KIND_STATE, &mut sbuf);
    let mut state_status = Status::from_scan(seq, bad, why);
    let mut state = PersistedState::first_boot(now);
    if seq.is_some() {
        match PersistedState::from_bytes(&sbuf) {
            Ok(s) => state = s,
            Err(why) => state_status = Status::Fallback { why },
        }
    }

    let mut report = RestoreReport {
        meta: meta_status,
        state: state_status,
        dag: Status::Blank,
        dag_appended: 0,
        dag_tail: None,
        dag_load: SyncReport::default(),
        profiles: Status::Blank,
        profiles_dropped: 0,
    };
    let (dag_banks, dag) = restore_dag::<F, D>(flash, layout.dag, now, &mut report);
    let mut profiles = heapless::Vec::new();
    let mut standings = heapless::Vec::new();
    let mut relatives = heapless::Vec::new();
    let profile_banks = layout
        .profiles
        .map(|part| restore_profiles(flash, part, &mut profiles, &mut standings, &mut relatives, &mut report));
    Restored {
        meta,
        state,
        dag,
        profiles,
        standings,
        relatives,
        report,
        store: Store { meta: meta_banks, state: journal, dag: dag_banks, profiles: profile_banks },
    }
}

fn restore_dag<F: Flash, const D: usize>(
    flash: &mut F,
    part: Partition,
    now: Timestamp,
    report: &mut RestoreReport,
) -> (Banks, LocalDag<D>) {
    let (mut banks, s) = Banks::scan(flash, part, KIND_DAG);
    report.dag = Status::from_scan(s.seq, s.invalid, s.why);
    let mut dag = LocalDag::new();
    if !banks.has_image() {
        return (banks, dag);
    }
    let mut head = [0u8; DAG_IMAGE_HEADER];
    let count = banks.read_payload(flash, 0, &mut head).and_then(|_| {
        let n = le::u16_at(&head, 0).unwrap_or(0) as usize;
        if dag_image_len(n) - BANK_HEADER != banks.payload_len() as usize {
            return Err(Invalid::BadLength);
        }
        if head[22..24] != [0, 0] {
            return Err(Invalid::BadField);
        }
        Ok(n)
    });
    let n = match count {
        Ok(n) => n,
        Err(why) => {
            report.dag = Status::Fallback { why };
            return (banks, dag);
        }
    };
    let mut buf = [0u8; DagEntry::LEN];
    let mut tip = Hash20::default();
    let mut load = SyncReport::default();
    let add = |e: DagEntry, dag: &mut LocalDag<D>, load: &mut SyncReport| {
        let r = dag.sync_accept(core::iter::once(e), now, |_| true);
        load.accepted += r.accepted;
        load.corrupted += r.corrupted;
        load.duplicate += r.duplicate;
        load.out_of_window += r.out_of_window;
        load.unverified += r.unverified;
    };
    for i in 0..n {
        let at = (DAG_IMAGE_HEADER + i * DagEntry::LEN) as u32;
        match banks
            .read_payload(flash, at, &mut buf)
            .and_then(|_| DagEntry::from_bytes(&buf).map_err(|_| Invalid::BadLength))
        {
            Ok(e) => {
                tip = e.hash;
                add(e, &mut dag, &mut load);
            }
            Err(why) => {
                report.dag = Status::Fallback { why };
                return (banks, LocalDag::new());
            }
        }
    }
    if Hash20::from_slice(&head[2..22]) != Some(tip) {
        report.dag = Status::Fallback { why: Invalid::BadField };
        return (banks, LocalDag::new());
    }
    let mut cursor = 0u32;
    loop {
        match banks.next_appended(flash, &mut cursor, &mut buf) {
            Ok(true) => {
                if let Ok(e) = DagEntry::from_bytes(&buf) {
                    report.dag_appended = report.dag_appended.saturating_add(1);
                    add(e, &mut dag, &mut load);
                }
            }
            Ok(false) => break,
            Err(why) => {
                report.dag_tail = Some(why);
                break;
            }
        }
    }
    report.dag_load = load;
    (banks, dag)
}

fn restore_profiles<F: Flash, const P: usize>(
    flash: &mut F,
    part: Partition,
    out: &mut heapless::Vec<StoredProfile, P>,
    standings: &mut heapless::Vec<SubjectStanding, P>,
    relatives: &mut heapless::Vec<StoredRelative, P>,
    report: &mut RestoreReport,
) -> Banks {
    let (banks, s) = Banks::scan(flash, part, KIND_PROFILES);
    report.profiles = Status::from_scan(s.seq, s.invalid, s.why);
    if !banks.has_image() {
        return banks;
    }
    let mut head = [0u8; PROFILE_IMAGE_HEADER];
    let r = banks.read_payload(flash, 0, &mut head).and_then(|_| {
        let n = le::u16_at(&head, 0).unwrap_or(0) as usize;
        let m = le::u16_at(&head, 2).unwrap_or(0) as usize;
        let rest = (banks.payload_len() as usize)
            .checked_sub(profile_image_len_with(n, m) - BANK_HEADER)
            .ok_or(Invalid::BadLength)?;
        if !rest.is_multiple_of(StoredRelative::LEN) {
            return Err(Invalid::BadLength);
        }
        let k = rest / StoredRelative::LEN;
        let mut buf = [0u8; StoredProfile::LEN];
        for i in 0..n {
            banks.read_payload(flash, (PROFILE_IMAGE_HEADER + i * StoredProfile::LEN) as u32, &mut buf)?;
            let sp = StoredProfile::from_bytes(&buf)?;
            if out.push(sp).is_err() {
                report.profiles_dropped = report.profiles_dropped.saturating_add(1);
            }
        }
        let base = PROFILE_IMAGE_HEADER + n * StoredProfile::LEN;
        let mut sbuf = [0u8; SubjectStanding::LEN];
        for i in 0..m {
            banks.read_payload(flash, (base + i * SubjectStanding::LEN) as u32, &mut sbuf)?;
            if standings.push(SubjectStanding::from_bytes(&sbuf)?).is_err() {
                report.profiles_dropped = report.profiles_dropped.saturating_add(1);
            }
        }
        let base = base + m * SubjectStanding::LEN;
        let mut rbuf = [0u8; StoredRelative::LEN];
        for i in 0..k {
            banks.read_payload(flash, (base + i * StoredRelative::LEN) as u32, &mut rbuf)?;
            if relatives.push(StoredRelative::from_bytes(&rbuf)?).is_err() {
                report.profiles_dropped = report.profiles_dropped.saturating_add(1);
            }
        }
        Ok(())
    });
    if let Err(why) = r {
        out.clear();
        standings.clear();
        relatives.clear();
        report.profiles_dropped = 0;
        report.profiles = Status::Fallback { why };
    }
    banks
}

impl Store {
    /// Appends the critical state to the journal (every TIMER_FLASH_FLUSH).
    pub fn save_state<F: Flash>(&mut self, flash: &mut F, s: &PersistedState) -> Result<u32, WriteError> {
        self.state.append(flash, &s.to_bytes())
    }

    /// Writes a new enrollment record into the other meta bank.
    pub fn save_meta<F: Flash>(&mut self, flash: &mut F, m: &MetaRecord) -> Result<u32, WriteError> {
        let mut buf = [0u8; MetaRecord::LEN];
        m.write_bytes(&mut buf).map_err(|_| WriteError::TooLarge)?;
        let mut w = self.meta.begin(flash)?;
        w.push(flash, &buf)?;
        self.meta.commit(flash, w)
    }

    /// Appends one entry to the DAG log. [`WriteError::NeedsCompaction`]
    /// when no image exists yet or the log is full: call
    /// [`Store::compact_dag`] (or use [`Store::record_dag`]).
    pub fn append_dag<F: Flash>(&mut self, flash: &mut F, e: &DagEntry) -> Result<(), WriteError> {
        self.dag.append(flash, &e.to_bytes())
    }

    /// Writes `entries` (oldest first) as a fresh DAG image into the other
    /// bank: after a GC, a death certificate's invalidation, or a full log.
    pub fn compact_dag<F: Flash>(&mut self, flash: &mut F, entries: &[DagEntry]) -> Result<u32, WriteError> {
        let n = u16::try_from(entries.len()).map_err(|_| WriteError::TooLarge)?;
        if dag_image_len(entries.len()) - BANK_HEADER > self.dag.capacity() as usize {
            return Err(WriteError::TooLarge);
        }
        let mut head = [0u8; DAG_IMAGE_HEADER];
        head[0..2].copy_from_slice(&n.to_le_bytes());
        head[2..22].copy_from_slice(&entries.last().map(|e| e.hash).unwrap_or_default().0);
        let mut w = self.dag.begin(flash)?;
        w.push(flash, &head)?;
        for e in entries {
            w.push(flash, &e.to_bytes())?;
        }
        self.dag.commit(flash, w)
    }

    /// Appends `new` (just added to `dag`), compacting `dag` when the log
    /// cannot take it.
    pub fn record_dag<F: Flash, const N: usize>(
        &mut self,
        flash: &mut F,
        dag: &LocalDag<N>,
        new: &DagEntry,
    ) -> Result<(), WriteError> {
        match self.append_dag(flash, new) {
            Err(WriteError::NeedsCompaction) | Err(WriteError::VerifyFailed) => {
                self.compact_dag(flash, dag.entries()).map(|_| ())
            }
            r => r,
        }
    }

    /// Writes the profile set as a fresh image with no standings. A monitor
    /// writes [`Store::save_profile_image`] instead, or a reboot forgets
    /// whom it rejected.
    pub fn save_profiles<F: Flash>(&mut self, flash: &mut F, profiles: &[StoredProfile]) -> Result<u32, WriteError> {
        self.save_profile_image(flash, profiles, &[], &[])
    }

    /// Writes the profiles, the rejected/quarantined subjects and the
    /// learned relative levels as a fresh krill_profiles image (every 10th
    /// epoch, and whenever a subject enters or leaves REJECTION/QUARANTINE).
    pub fn save_profile_image<F: Flash>(
        &mut self,
        flash: &mut F,
        profiles: &[StoredProfile],
        standings: &[SubjectStanding],
        relatives: &[StoredRelative],
    ) -> Result<u32, WriteError> {
        let banks = self.profiles.as_mut().ok_or(WriteError::TooLarge)?;
        let n = u16::try_from(profiles.len()).map_err(|_| WriteError::TooLarge)?;
        let m = u16::try_from(standings.len()).map_err(|_| WriteError::TooLarge)?;
        if profile_image_len_all(profiles.len(), standings.len(), relatives.len()) - BANK_HEADER
            > banks.capacity() as usize
        {
            return Err(WriteError::TooLarge);
        }
        let mut w = banks.begin(flash)?;
        let mut head = [0u8; PROFILE_IMAGE_HEADER];
        head[0..2].copy_from_slice(&n.to_le_bytes());
        head[2..4].copy_from_slice(&m.to_le_bytes());
        w.push(flash, &head)?;
        for sp in profiles {
            w.push(flash, &sp.to_bytes())?;
        }
        for st in standings {
            w.push(flash, &st.to_bytes())?;
        }
        for r in relatives {
            w.push(flash, &r.to_bytes())?;
        }
        banks.commit(flash, w)
    }
}
